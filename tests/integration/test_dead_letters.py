"""Dead letters end to end: a bad message lands in the DLQ; `raptorflow dlq` lists, shows,
replays (the fixed handler then processes it) and purges it."""

from __future__ import annotations

import asyncio
import json

from faststream import FastStream
from typer.testing import CliRunner

from raptorflow.cli import app
from shared.contract.events import FeedbackGiven, new_envelope
from shared.messaging import dead_letters
from shared.messaging.bus import ServiceBus, make_broker, publish
from shared.messaging.codec import DATA_FIELD
from tests.helpers import PLAIN, eventually, settings_for


async def _cli(redis_url: str, *args: str):
    return await asyncio.to_thread(
        CliRunner().invoke, app, list(args), env={"REDIS_URL": redis_url}
    )


async def test_failing_message_is_dead_lettered_then_replayed_after_the_fix(
    redis, redis_url, workspace
):
    broken = {"on": True}
    handled: list[str] = []

    async def handler(event, tx):
        if broken["on"]:
            raise RuntimeError("downstream is broken")
        handled.append(event.event_id)
        return []

    service = f"svc-{workspace}"
    settings = settings_for(redis_url, consumer_name=f"{service}-1", max_deliveries=2)
    broker = make_broker(settings)
    bus = ServiceBus(service, broker, redis, settings)
    bus.on(FeedbackGiven, handler)
    stream_app = FastStream(broker, logger=None)
    await stream_app.start()
    try:
        event = new_envelope(FeedbackGiven(task_id="t", rating=4), workspace_id=workspace)
        await publish(redis, PLAIN, [event])

        async def letter():
            found = await dead_letters.list_letters(redis, PLAIN, service=service)
            return found[0] if found else None

        dead = await eventually(letter, timeout=60)
        assert dead.reason == "max_deliveries"
        assert "downstream is broken" in dead.error
        assert json.loads(dead.data)["event_id"] == event.event_id

        listed = await _cli(redis_url, "dlq", "list", "--service", service, "--json")
        assert listed.exit_code == 0, listed.output
        assert [e["id"] for e in json.loads(listed.output)] == [dead.id]
        shown = await _cli(redis_url, "dlq", "show", dead.id)
        assert shown.exit_code == 0 and "downstream is broken" in shown.output

        broken["on"] = False
        replayed = await _cli(redis_url, "dlq", "replay", dead.id)
        assert replayed.exit_code == 0, replayed.output
        await eventually(lambda: _true(handled == [event.event_id]), timeout=30)
        assert await dead_letters.get_letter(redis, PLAIN, dead.id) is None
    finally:
        await stream_app.stop()


async def _true(value: bool) -> bool:
    return value


async def test_purge_needs_confirmation_and_removes_only_what_it_names(redis, redis_url, workspace):
    ids = [
        await redis.xadd(
            "rf:stream:dead-letter",
            {
                "stream": "rf:stream:FeedbackGiven",
                "service": f"svc-{workspace}",
                "reason": "invalid",
                "error": "x",
                "delivery_count": "1",
                "failed_at": "now",
                DATA_FIELD: b"{not json",
            },
        )
        for _ in range(2)
    ]
    first, second = (i.decode() for i in ids)
    refused = await _cli(redis_url, "dlq", "purge", first)
    assert refused.exit_code == 2
    assert await dead_letters.get_letter(redis, PLAIN, first) is not None

    done = await _cli(redis_url, "dlq", "purge", first, "--yes")
    assert done.exit_code == 0, done.output
    assert await dead_letters.get_letter(redis, PLAIN, first) is None
    assert await dead_letters.get_letter(redis, PLAIN, second) is not None
    await dead_letters.purge(redis, PLAIN, [second])


async def test_replay_refuses_a_letter_naming_a_foreign_stream(redis, redis_url, workspace):
    entry = await redis.xadd(
        "rf:stream:dead-letter",
        {
            "stream": "some:other:key",
            "service": f"svc-{workspace}",
            "reason": "invalid",
            "error": "x",
            "delivery_count": "1",
            "failed_at": "now",
            DATA_FIELD: b"{}",
        },
    )
    result = await _cli(redis_url, "dlq", "replay", entry.decode())
    assert result.exit_code == 1
    assert not await redis.exists("some:other:key")
    await dead_letters.purge(redis, PLAIN, [entry.decode()])
