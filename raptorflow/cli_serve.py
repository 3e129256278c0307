"""What `raptorflow run` and `raptorflow demo` share: --host/--port over the environment."""

from __future__ import annotations

from shared.settings import Settings


def settings_with(settings: Settings, host: str | None, port: int | None) -> Settings:
    """`settings` (the environment's) with --host/--port over them, as uvicorn does."""
    update = {k: v for k, v in (("gateway_host", host), ("gateway_port", port)) if v is not None}
    return settings.model_copy(update=update) if update else settings
