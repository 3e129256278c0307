"""Gateway: the HTTP API. It publishes TaskRequested and decisions; it never writes memory.

`create_app` only assembles: the routers of `services.gateway.routes`, the metrics route
and the lifespan that owns `Deps` when the caller gives none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.gateway.auth import KeyRing
from services.gateway.limits import add_edge_guards
from services.gateway.metrics import add_metrics_route
from services.gateway.routes import (
    agents,
    approvals,
    console,
    experiments,
    health,
    orchestration,
    tasks,
    ui,
    workspaces,
)
from shared.app.runtime import Deps, build_deps
from shared.settings import Settings

ROUTERS = (health, orchestration, tasks, approvals, workspaces, ui, experiments, console, agents)


def create_app(settings: Settings, deps: Deps | None = None) -> FastAPI:
    """The FastAPI app; `deps` may be given (single-process run, tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = deps is None
        app.state.deps = deps or await build_deps(settings)
        try:
            yield
        finally:
            if owned:
                await app.state.deps.close()

    app = FastAPI(
        title="RaptorFlow gateway",
        version="1.0",
        description="Memory-aware orchestration of LLM agents over Redis Streams.",
        lifespan=lifespan,
    )
    secret = settings.api_keys.get_secret_value() if settings.api_keys else None
    app.state.key_ring = KeyRing.parse(secret)
    app.state.ui_origins = frozenset(
        o.strip().rstrip("/").lower() for o in settings.ui_origins.split(",") if o.strip()
    )
    for module in ROUTERS:
        app.include_router(module.router)
    add_metrics_route(app)
    add_edge_guards(app, settings.max_body_bytes)
    return app
