"""Small helpers shared by tests: settings for a given Redis, polling with a deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import SecretStr
from redis.asyncio import Redis

from raptorflow.redis_server import free_port
from shared.contract.events import EVENT_TYPES
from shared.contract.keys import Keys
from shared.contract.topology import Topology
from shared.settings import Settings

T = TypeVar("T")

# The single-Redis layout (one partition, no hash tags): what `settings_for` gives a test
# stack unless the test asks for partitions. Tests of other layouts build their own.
PLAIN = Topology()
KEYS = Keys(PLAIN)


def settings_for(redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_provider": "offline",
        "claim_min_idle_ms": 500,
        "poll_interval_ms": 20,
        "gateway_port": free_port(),
        **overrides,
    }
    base = Settings(**values)
    return base.model_copy(update={"redis_url": SecretStr(redis_url)})


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout: float = 20.0, interval: float = 0.05
) -> T:
    """Poll until `probe` returns something truthy; fail with the last value at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


async def events_of_task(
    redis: Redis, task_id: str, layout: Topology = PLAIN
) -> list[dict[str, Any]]:
    """Every event of one task, from every stream, in stream order per type."""
    out = []
    for event_type in EVENT_TYPES:
        for stream in layout.streams(event_type):
            for _, fields in await redis.xrange(stream):
                data = json.loads(fields[b"__data__"])
                if data["correlation_id"] == task_id:
                    out.append(data)
    return out
