"""What the fault tests share: a Redis of each module's own, with AOF, and a client to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from raptorflow.redis_server import RedisServer
from shared.messaging.bus import make_redis
from tests.helpers import settings_for


@pytest.fixture(scope="module")
def aof_redis() -> Iterator[RedisServer]:
    """A Redis of this module's own, with AOF, that tests may kill and restart."""
    server = RedisServer(appendonly=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client(aof_redis: RedisServer) -> AsyncIterator[Redis]:
    redis = make_redis(settings_for(aof_redis.url))  # retries: it outlives a Redis restart
    try:
        yield redis
    finally:
        await redis.aclose()
