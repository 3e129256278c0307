"""What `python -m services.NAME` runs: one service against REDIS_URL.

Each service's `__main__` calls this with its own `build`, so a service needs only
`shared.app` to start, never `raptorflow` (which imports every service).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from shared.app.runtime import Deps, Service, run_services
from shared.observability.logs import configure_logging
from shared.settings import Settings


def run_service(name: str, build: Callable[[Deps], Service]) -> None:
    """Run one stream service until SIGINT or SIGTERM."""
    configure_logging(service=name)
    asyncio.run(run_services([build], Settings()))


def run_server(name: str, serve: Callable[[Settings], Coroutine[Any, Any, None]]) -> None:
    """Run a service that is a server of its own (the gateway) until it stops."""
    configure_logging(service=name)
    asyncio.run(serve(Settings()))
