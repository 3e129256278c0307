"""Which services exist and how each is built: data, in one place."""

from __future__ import annotations

from collections.abc import Callable

from services.agents.app import build as build_agents
from services.checkpoint.app import build as build_checkpoint
from services.corrector.app import build as build_corrector
from services.memory.app import build as build_memory
from services.notifier.app import build as build_notifier
from services.router.app import build as build_router
from services.selector.app import build as build_selector
from shared.app.runtime import Deps, Service

STREAM_SERVICES: dict[str, Callable[[Deps], Service]] = {
    "router": build_router,
    "selector": build_selector,
    "checkpoint": build_checkpoint,
    "corrector": build_corrector,
    "memory": build_memory,
    "notifier": build_notifier,
    "agents": build_agents,
}
ALL_SERVICES = [*STREAM_SERVICES, "gateway"]
