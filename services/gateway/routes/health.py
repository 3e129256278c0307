"""Liveness (the gateway answers and its Redis does) and readiness (Redis takes writes)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from services.gateway.access import get_deps
from services.gateway.limits import RETRY_AFTER_S, refuses_writes
from shared.app.runtime import Deps
from shared.contract import keys

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(d: Deps = Depends(get_deps)) -> dict[str, Any]:
    await d.redis.ping()
    return {"status": "ok", "provider": d.provider.name, "index": d.index.kind}


@router.get("/readyz", response_model=None)
async def readyz(d: Deps = Depends(get_deps)) -> dict[str, Any] | JSONResponse:
    """Ready while Redis accepts a write: a full (noeviction) or read-only Redis, or none,
    makes the gateway not ready (503), so a load balancer stops sending it new tasks."""
    try:
        await d.redis.set(keys.readiness_probe(d.settings.consumer_name), b"1", px=10_000)
    except RedisError as exc:
        if not refuses_writes(exc):
            raise
        return JSONResponse(
            {"status": "not_ready", "reason": "redis refuses writes"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    return {"status": "ready"}
