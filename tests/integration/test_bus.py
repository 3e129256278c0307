"""The bus on a real Redis: ack with effects, idempotency, retries, dead letters."""

from __future__ import annotations

import json

from faststream import FastStream

from shared.contract.events import FeedbackGiven, TaskRequested, new_envelope
from shared.messaging.bus import ServiceBus, make_broker, publish
from shared.messaging.codec import DATA_FIELD
from tests.helpers import PLAIN, eventually, settings_for

STREAM = PLAIN.stream(FeedbackGiven.event_type)


async def start_bus(redis, redis_url, handler, name, **overrides):
    settings = settings_for(redis_url, consumer_name=f"{name}-1", **overrides)
    broker = make_broker(settings)
    bus = ServiceBus(name, broker, redis, settings)
    bus.on(FeedbackGiven, handler)
    app = FastStream(broker, logger=None)
    await app.start()
    return app, bus, settings


def feedback(workspace, rating=5):
    return new_envelope(FeedbackGiven(task_id="t", rating=rating), workspace_id=workspace)


async def dead_letters_for(redis, service):
    entries = await redis.xrange(PLAIN.dead_letters()[0])
    return [
        {k.decode(): v for k, v in f.items()}
        for _, f in entries
        if f[b"service"].decode() == service
    ]


async def test_handler_effects_and_ack_happen_together_and_redelivery_is_ignored(
    redis, redis_url, workspace
):
    calls = []

    async def handler(event, tx):
        calls.append(event.event_id)
        tx.incr(f"test:{workspace}:count")
        return []

    app, bus, _settings = await start_bus(redis, redis_url, handler, f"svc-{workspace}")
    try:
        event = feedback(workspace)
        await publish(redis, PLAIN, [event, event])
        await eventually(lambda: redis.get(f"test:{workspace}:count"))
        await eventually(lambda: _no_pending(redis, bus.service))
        assert int(await redis.get(f"test:{workspace}:count")) == 1
        assert calls == [event.event_id]
    finally:
        await app.stop()


async def _no_pending(redis, group):
    info = await redis.xpending(STREAM, group)
    return info["pending"] == 0


async def test_malformed_messages_go_to_the_dead_letter_stream_with_a_reason(
    redis, redis_url, workspace
):
    seen = []

    async def handler(event, tx):
        seen.append(event)
        return []

    service = f"svc-{workspace}"
    app, _bus, _settings = await start_bus(redis, redis_url, handler, service)
    try:
        good = json.loads(feedback(workspace).model_dump_json())
        bodies = [
            b"{not json",
            json.dumps({**good, "schema_version": 7}),
            json.dumps({k: v for k, v in good.items() if k != "workspace_id"}),
            json.dumps({**good, "payload": {"task_id": "t", "rating": "great"}}),
            new_envelope(TaskRequested(goal="g"), workspace_id=workspace).model_dump_json(),
        ]
        for body in bodies:
            await redis.xadd(STREAM, {DATA_FIELD: body})
        await publish(redis, PLAIN, [feedback(workspace)])
        letters = await eventually(lambda: _at_least(dead_letters_for(redis, service), len(bodies)))
        reasons = " | ".join(letter["error"].decode() for letter in letters)
        for expected in (
            "schema_version",
            "workspace_id",
            "payload.rating",
            "on the stream of FeedbackGiven",
        ):
            assert expected in reasons
        assert all(letter["reason"] == b"invalid" for letter in letters)
        await eventually(lambda: _truthy(len(seen) == 1))
        await eventually(lambda: _no_pending(redis, service))
    finally:
        await app.stop()


async def _at_least(coro, n):
    items = await coro
    return items if len(items) >= n else None


async def _truthy(value):
    return value


async def test_failing_handler_is_retried_then_dead_lettered(redis, redis_url, workspace):
    attempts = []

    async def handler(event, tx):
        attempts.append(1)
        raise RuntimeError("boom: downstream unavailable")

    service = f"svc-{workspace}"
    app, _bus, _settings = await start_bus(
        redis, redis_url, handler, service, max_deliveries=3, claim_min_idle_ms=100
    )
    try:
        await publish(redis, PLAIN, [feedback(workspace)])
        letters = await eventually(lambda: _at_least(dead_letters_for(redis, service), 1), 30)
        letter = letters[0]
        assert letter["reason"] == b"max_deliveries"
        assert b"boom: downstream unavailable" in letter["error"]
        assert int(letter["delivery_count"]) > 3
        assert len(attempts) == 3
        await eventually(lambda: _no_pending(redis, service))
    finally:
        await app.stop()


async def test_a_flaky_handler_succeeds_on_retry(redis, redis_url, workspace):
    attempts = []

    async def handler(event, tx):
        attempts.append(1)
        if len(attempts) < 2:
            raise RuntimeError("transient")
        tx.set(f"test:{workspace}:done", 1)
        return []

    service = f"svc-{workspace}"
    app, _, _settings = await start_bus(redis, redis_url, handler, service, claim_min_idle_ms=100)
    try:
        await publish(redis, PLAIN, [feedback(workspace)])
        await eventually(lambda: redis.get(f"test:{workspace}:done"), 20)
        assert len(attempts) == 2
        assert not await dead_letters_for(redis, service)
    finally:
        await app.stop()
