"""The gateway's `/metrics` (the process's whole registry: all services when run as one)
and its Kubernetes probes, on the app's own port."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from shared.observability.probes import redis_answers


def add_metrics_route(app: FastAPI) -> None:
    """Served on the app itself, so no extra port is needed behind the gateway's proxy.

    A plain `def`: FastAPI runs it in its thread pool, so rendering a large
    registry never stalls the gateway's event loop (and the services with it,
    when they share the process).
    """

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def add_probe_routes(app: FastAPI) -> None:
    """/livez answers from the event loop (a stuck loop times the probe out); /readyz also
    needs Redis to answer PING. Uvicorn stops accepting connections on SIGTERM by itself."""

    @app.get("/livez", include_in_schema=False)
    async def livez() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> PlainTextResponse:
        reason = await redis_answers(request.app.state.deps.redis)()
        return PlainTextResponse(f"{reason or 'ok'}\n", status_code=503 if reason else 200)
