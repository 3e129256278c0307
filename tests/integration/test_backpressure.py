"""A slow consumer under a fast producer: bounded work in flight.

A consumer never holds more than its read batch plus its handler concurrency; the
backlog stays in Redis (trimmed only once every group has acknowledged it: see
tests/integration/test_trimming.py).
"""

from __future__ import annotations

import asyncio

import pytest
from faststream import FastStream

from shared.contract.events import FeedbackGiven, new_envelope
from shared.messaging.bus import ServiceBus, make_broker, publish
from tests.helpers import PLAIN, settings_for

pytestmark = pytest.mark.slow

STREAM = PLAIN.stream(FeedbackGiven.event_type)


async def test_slow_consumer_keeps_in_flight_work_bounded(redis, redis_url, workspace):
    settings = settings_for(
        redis_url,
        consumer_name="slow-1",
        read_batch=8,
        handler_concurrency=4,
    )
    in_flight = 0
    peak = 0
    handled = 0

    async def slow_handler(event, tx):
        nonlocal in_flight, peak, handled
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.005)
        in_flight -= 1
        handled += 1
        return []

    broker = make_broker(settings)
    bus = ServiceBus(f"slow-{workspace}", broker, redis, settings)
    bus.on(FeedbackGiven, slow_handler)
    app = FastStream(broker, logger=None)
    await app.start()
    pendings = []
    try:
        for _ in range(15):
            batch = [
                new_envelope(FeedbackGiven(task_id="t", rating=4), workspace_id=workspace)
                for _ in range(100)
            ]
            await publish(redis, PLAIN, batch)
            pendings.append((await redis.xpending(STREAM, bus.service))["pending"])
            await asyncio.sleep(0)
    finally:
        await app.stop()
    assert peak <= settings.handler_concurrency
    assert max(pendings) <= settings.read_batch + settings.handler_concurrency, pendings
    assert handled > 0
