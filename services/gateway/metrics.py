"""The gateway's `/metrics`: the process's whole registry (all services when run as one)."""

from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


def add_metrics_route(app: FastAPI) -> None:
    """Served on the app itself, so no extra port is needed behind the gateway's proxy.

    A plain `def`: FastAPI runs it in its thread pool, so rendering a large
    registry never stalls the gateway's event loop (and the services with it,
    when they share the process).
    """

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
