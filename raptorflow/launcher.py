"""Entry point of `python -m services.NAME`: one service against REDIS_URL."""

from __future__ import annotations

import asyncio

from raptorflow.logs import configure_logging
from shared.settings import get_settings


def main(name: str) -> None:
    configure_logging(service=name)
    settings = get_settings()
    if name == "gateway":
        from services.gateway.server import serve

        asyncio.run(serve(settings))
        return
    from raptorflow.registry import STREAM_SERVICES
    from shared.app.runtime import run_services

    asyncio.run(run_services([STREAM_SERVICES[name]], settings))
