"""Liveness: the gateway answers and its Redis does."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from services.gateway.access import get_deps
from shared.app.runtime import Deps

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(d: Deps = Depends(get_deps)) -> dict[str, Any]:
    await d.redis.ping()
    return {"status": "ok", "provider": d.provider.name, "index": d.index.kind}
