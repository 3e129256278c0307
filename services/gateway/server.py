"""Serve the gateway with uvicorn (alone, or beside the other services in one process)."""

from __future__ import annotations

import math
from types import FrameType

import uvicorn

from services.gateway.app import create_app
from services.gateway.console import live
from shared.app.runtime import Deps
from shared.settings import Settings


class GatewayServer(uvicorn.Server):
    """uvicorn, ending the console's event streams on a stop signal (it waits for every
    open response to finish, and an event stream does not finish by itself)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        live.close_all()
        super().handle_exit(sig, frame)


def make_server(settings: Settings, deps: Deps | None = None) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings, deps),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_level="warning",
        lifespan="on",
        # On SIGTERM: stop accepting, give open requests this long, then close.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
    )
    return GatewayServer(config)


async def serve(settings: Settings, deps: Deps | None = None) -> None:
    await make_server(settings, deps).serve()
