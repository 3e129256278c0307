"""A group that lags far past a stream's cap loses nothing: trimming keeps what it needs.

On Redis 8.2+ the trimmer uses `XTRIM ... ACKED`; on Redis 7 it computes MINID from the
groups' positions. Both are run here on a server of their own (other tests' idle groups on
the shared server would hold the stream back, which is the point, but not this test's).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from faststream import FastStream
from redis.asyncio import Redis

from raptorflow.redis_server import RedisServer
from shared.contract.events import FeedbackGiven, new_envelope
from shared.messaging.bus import ServiceBus, make_broker, publish
from shared.messaging.trimming import StreamTrimmer
from shared.observability import telemetry
from tests.helpers import PLAIN, eventually, settings_for

pytestmark = pytest.mark.slow

STREAM = PLAIN.stream(FeedbackGiven.event_type)
CAP = 100
PUBLISHED = 8 * CAP


@pytest.fixture(params=["redis8", "redis7"])
async def own_redis(request: pytest.FixtureRequest, redis7_binary: str) -> AsyncIterator[str]:
    server = RedisServer(binary=redis7_binary) if request.param == "redis7" else RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


async def start_group(redis: Redis, url: str, name: str, seen: Counter[str]) -> FastStream:
    async def handler(event, tx):
        seen[event.event_id] += 1
        return []

    settings = settings_for(url, consumer_name=f"{name}-1", read_batch=50)
    broker = make_broker(settings)
    bus = ServiceBus(name, broker, redis, settings)
    bus.on(FeedbackGiven, handler)
    await bus.ensure_groups()
    app = FastStream(broker, logger=None)
    await app.start()
    return app


def count_reaches(seen: Counter[str], n: int):
    async def probe() -> bool:
        return len(seen) == n

    return probe


def all_acknowledged(redis: Redis, group: str):
    async def probe() -> bool:
        return (await redis.xpending(STREAM, group))["pending"] == 0

    return probe


async def test_a_group_far_past_the_cap_gets_every_entry_once(own_redis):
    redis = Redis.from_url(own_redis)
    trimmer = await StreamTrimmer.for_server(redis, CAP)
    fast_seen: Counter[str] = Counter()
    slow_seen: Counter[str] = Counter()
    # The slow group exists from the start but reads nothing until every entry is out.
    await redis.xgroup_create(STREAM, "slow", id="0", mkstream=True)
    fast = await start_group(redis, own_redis, "fast", fast_seen)
    ids: list[str] = []
    try:
        for _ in range(PUBLISHED // 50):
            batch = [
                new_envelope(FeedbackGiven(task_id="t", rating=4), workspace_id="ws-trim")
                for _ in range(50)
            ]
            ids += [e.event_id for e in batch]
            await publish(redis, PLAIN, batch)
            await trimmer.trim_all([STREAM])
            await asyncio.sleep(0)
        await eventually(count_reaches(fast_seen, PUBLISHED))
        await trimmer.trim_all([STREAM])
        over_cap = telemetry.STREAM_OVER_CAP.labels(STREAM)._value.get()
        assert over_cap >= PUBLISHED - CAP - 100, "the lagging group's backlog is reported"
        assert await redis.xlen(STREAM) >= PUBLISHED, "nothing the slow group needs was trimmed"

        slow = await start_group(redis, own_redis, "slow", slow_seen)
        try:
            await eventually(count_reaches(slow_seen, PUBLISHED))
            await eventually(all_acknowledged(redis, "slow"))
        finally:
            await slow.stop()
        assert set(slow_seen) == set(ids) and set(slow_seen.values()) == {1}
        assert set(fast_seen.values()) == {1}

        await trimmer.trim_all([STREAM])
        # Redis 7 trims by MINID approximately: whole macro nodes (up to 100 entries).
        assert await redis.xlen(STREAM) <= CAP + 100
        assert telemetry.STREAM_OVER_CAP.labels(STREAM)._value.get() <= 100
    finally:
        await fast.stop()
        await redis.aclose()
