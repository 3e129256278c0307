"""Batch commits on a real Redis: one read's messages commit together, a failing one alone
stays behind (with none of its writes), and concurrency 1 keeps stream order."""

from __future__ import annotations

import asyncio
import random

from faststream import FastStream

from shared.contract.events import FeedbackGiven, new_envelope
from shared.messaging.bus import ServiceBus, make_broker, publish
from tests.helpers import PLAIN, eventually, settings_for

STREAM = PLAIN.stream(FeedbackGiven.event_type)


async def start(redis, redis_url, name, handler, **on_options):
    settings = settings_for(redis_url, consumer_name=f"{name}-1", claim_min_idle_ms=200)
    broker = make_broker(settings)
    bus = ServiceBus(name, broker, redis, settings)
    bus.on(FeedbackGiven, handler, **on_options)
    # at the stream's end: the session's Redis holds other tests' FeedbackGiven events
    await redis.xgroup_create(STREAM, name, id="$", mkstream=True)
    app = FastStream(broker, logger=None)
    return app, bus, settings


def feedback(workspace, rating):
    return new_envelope(FeedbackGiven(task_id="t", rating=rating), workspace_id=workspace)


async def nothing_pending(redis, group) -> bool:
    return (await redis.xpending(STREAM, group))["pending"] == 0


async def test_a_failing_message_stays_behind_without_its_writes_and_the_rest_commit_together(
    redis, redis_url, workspace
):
    count, partial = f"test:{workspace}:count", f"test:{workspace}:partial"
    attempts: dict[str, int] = {}

    async def handler(event, tx):
        attempts[event.event_id] = attempts.get(event.event_id, 0) + 1
        tx.incr(count)
        if event.payload.rating == 1 and attempts[event.event_id] == 1:
            tx.incr(partial)  # queued, then the handler fails: must never be applied
            raise RuntimeError("first attempt fails")
        return []

    service = f"svc-{workspace}"
    app, bus, _settings = await start(redis, redis_url, service, handler)
    committed_batches: list[int] = []
    commit = bus._commit_batch

    async def observed(tx, stream, handled, duplicates):
        done = await commit(tx, stream, handled, duplicates)
        committed_batches.append(len(done))
        return done

    bus._commit_batch = observed  # type: ignore[method-assign]
    events = [feedback(workspace, rating) for rating in (5, 4, 1, 3, 2, 5)]
    await publish(redis, PLAIN, events)  # on the stream before the first read
    await app.start()
    try:
        await eventually(lambda: _equals(redis.get(count), b"6"), timeout=15)
        await eventually(lambda: nothing_pending(redis, service))
        assert await redis.get(partial) is None
        assert committed_batches[0] == 5, committed_batches  # one transaction for the five
        assert sorted(attempts.values()) == [1, 1, 1, 1, 1, 2]
        assert bus.handled == 6
    finally:
        await app.stop()


async def test_concurrency_one_handles_a_batch_in_stream_order(redis, redis_url, workspace):
    seen: list[int] = []

    async def handler(event, tx):
        await asyncio.sleep(random.uniform(0, 0.01))  # would reorder concurrent handlers
        seen.append(event.payload.rating)
        return []

    service = f"svc-{workspace}"
    app, _bus, _settings = await start(redis, redis_url, service, handler, concurrency=1)
    ratings = [random.randint(1, 5) for _ in range(12)]
    await publish(redis, PLAIN, [feedback(workspace, r) for r in ratings])
    await app.start()
    try:
        await eventually(lambda: nothing_pending(redis, service))
        assert seen == ratings
    finally:
        await app.stop()


async def test_unbatched_subscription_commits_each_message(redis, redis_url, workspace):
    count = f"test:{workspace}:count"

    async def handler(event, tx):
        tx.incr(count)
        return []

    service = f"svc-{workspace}"
    app, _bus, _settings = await start(redis, redis_url, service, handler, batched=False)
    await publish(redis, PLAIN, [feedback(workspace, 5) for _ in range(4)])
    await app.start()
    try:
        await eventually(lambda: _equals(redis.get(count), b"4"))
        await eventually(lambda: nothing_pending(redis, service))
    finally:
        await app.stop()


async def _equals(coro, expected):
    return (await coro) == expected
