"""Configurations stored as JSON: a stored one that no longer loads is reported, not a crash.

A workspace's stored configuration can stop loading: written by hand, or under the looser
rules of an older version (a checkpoint timeout of 1e20 once was accepted). Readers get
`ConfigUnreadable` with the reason, so a task that needs it fails saying so, and the API
can still show what is stored and take a replacement.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis

M = TypeVar("M", bound=BaseModel)


class ConfigUnreadable(ValueError):
    """A stored configuration does not load; `raw` is what is stored (bytes, bounded)."""

    def __init__(self, message: str, raw: bytes):
        super().__init__(message)
        self.raw = raw


def reason_of(exc: ValidationError) -> str:
    """The first problems of a validation error, without echoing the stored values."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_input=False)[:3]
    )


async def load(redis: Redis, key: str, model: type[M], what: str, fix: str) -> M | None:
    """The configuration stored at `key` (None: none), or ConfigUnreadable saying why and
    how to fix it."""
    raw = await redis.get(key)
    if not raw:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ConfigUnreadable(
            f"the stored {what} does not load ({reason_of(exc)}); {fix}", bytes(raw[:100_000])
        ) from exc
