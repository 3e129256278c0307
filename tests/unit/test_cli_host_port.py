"""`raptorflow run` and `raptorflow demo` take --host/--port over the environment, as uvicorn does."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from raptorflow.cli import app
from raptorflow.cli_serve import settings_with
from shared.settings import Settings


def test_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAPTORFLOW_GATEWAY_PORT", "9100")
    assert settings_with(Settings(), None, None).gateway_port == 9100
    chosen = settings_with(Settings(), "0.0.0.0", 9200)
    assert (chosen.gateway_host, chosen.gateway_port) == ("0.0.0.0", 9200)


def test_help_lists_the_options() -> None:
    for command in ("run", "demo"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "--host" in result.output and "--port" in result.output
    assert "--serve" in CliRunner().invoke(app, ["demo", "--help"]).output
    bad = CliRunner().invoke(app, ["run", "--port", "70000"])
    assert bad.exit_code == 2
