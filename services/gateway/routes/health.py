"""Health: `/healthz` (the gateway answers and its Redis does, with what it runs), and the
Kubernetes probes: `/livez` answers from the event loop (a stuck loop times the probe out),
`/readyz` also needs Redis to answer PING and to take a write (a full or read-only Redis
leaves the gateway unable to accept tasks: not ready, 503 with Retry-After, until writes
succeed again). Uvicorn stops accepting connections on SIGTERM."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from services.gateway.access import get_deps
from services.gateway.limits import RETRY_AFTER_S
from shared.app.runtime import Deps
from shared.observability.probes import redis_answers, redis_takes_writes

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(d: Deps = Depends(get_deps)) -> dict[str, Any]:
    await d.redis.ping()
    return {"status": "ok", "provider": d.provider.name, "index": d.index.kind}


@router.get("/livez", include_in_schema=False)
async def livez() -> PlainTextResponse:
    return PlainTextResponse("ok\n")


@router.get("/readyz", include_in_schema=False)
async def readyz(d: Deps = Depends(get_deps)) -> PlainTextResponse:
    probe_key = d.keys.readiness_probe(d.settings.consumer_name)
    reason = await redis_answers(d.redis)() or await redis_takes_writes(d.redis, probe_key)()
    if reason:
        return PlainTextResponse(
            f"{reason}\n", status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}
        )
    return PlainTextResponse("ok\n")
