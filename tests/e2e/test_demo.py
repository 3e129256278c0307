"""`make run`'s demo: all six flows hold on a real Redis, and the CLI's contract commands work."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from raptorflow.cli import app
from raptorflow.demo import run_demo
from tests.helpers import eventually, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_the_demo_runs_all_six_flows(redis_url):
    console = Console(record=True, width=120)
    ok = await run_demo(settings_for(redis_url), console, start_redis=False)
    text = console.export_text()
    assert ok, text
    for flow in (
        "1. Memory-aware routing",
        "2. Adaptive agent selection",
        "3. Self-correction loop",
        "4. Human-in-the-loop checkpoints",
        "5. Context propagation",
        "6. Complete workflow",
    ):
        assert f"{flow}" in text
    assert "OFFLINE provider" in text
    assert "'Write a blog about machine learning': memory" in text


async def test_demo_serve_keeps_the_console_up_until_stopped(redis_url):
    console = Console(record=True, width=200)
    stop = asyncio.Event()
    settings = settings_for(redis_url)
    demo = asyncio.create_task(
        run_demo(settings, console, start_redis=False, serve=True, serve_until=stop.wait)
    )

    async def console_line() -> str | None:
        text = console.export_text(clear=False)
        return text if "Console: http" in text else None

    text = await eventually(console_line, timeout=120)
    url = text.split("Console: ", 1)[1].split()[0]
    async with httpx.AsyncClient(timeout=30) as client:
        page = await client.get(url)
    stop.set()
    assert await demo
    assert page.status_code == 200 and "<table id=\"tasks\"" in page.text


def test_schema_command_prints_the_envelope_schema():
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "Envelope_TaskRequested_" in schema["$defs"]


def test_unknown_service_is_a_clear_error():
    result = CliRunner().invoke(app, ["service", "nope"])
    assert result.exit_code == 2 and "unknown service" in result.output
