"""Garbage on a stream never crashes a consumer: every bad entry lands in the dead-letter
stream with a reason, once per consuming service, and the stream keeps flowing.

Hypothesis writes raw entries (random bytes, random JSON, mutated valid envelopes:
missing keys, wrong types, wrong schema_version, unknown keys, huge strings, the
wrong event type, entries without `__data__`) straight onto `TaskRequested`, which
the running router and memory services both consume. Examples are bounded so the
test stays well under 30 s.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from raptorflow.stack import LocalStack, wait_for_task
from shared.contract.events import TaskRequested, new_envelope
from shared.contract.models import AgentContext
from shared.messaging.codec import DATA_FIELD, decode_envelope
from tests.checkpoint_helpers import submit
from tests.helpers import PLAIN, eventually, settings_for

pytestmark = [pytest.mark.slow]

STREAM = PLAIN.stream(TaskRequested.event_type)
CONSUMERS = ("router", "memory")  # every service with a group on TaskRequested
REQUIRED = ("type", "correlation_id", "workspace_id", "context", "payload")


def valid_envelope() -> dict[str, Any]:
    event = new_envelope(
        TaskRequested(goal="Write a note about fuzzing", agent_sequence=["content"]),
        workspace_id="fuzz",
        context=AgentContext(workspace_id="fuzz"),
    )
    data: dict[str, Any] = json.loads(event.model_dump_json())
    return data


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid TaskRequested envelope with one thing broken."""
    data = valid_envelope()
    kind = draw(
        st.sampled_from(["drop", "wrong_type", "version", "extra", "huge", "event_type", "payload"])
    )
    if kind == "drop":
        del data[draw(st.sampled_from(REQUIRED))]
    elif kind == "wrong_type":
        key = draw(st.sampled_from(sorted(data)))
        data[key] = [] if isinstance(data[key], dict) else {"unexpected": data[key]}
    elif kind == "version":
        data["schema_version"] = draw(st.integers().filter(lambda v: v != 1) | st.text(max_size=5))
    elif kind == "extra":
        data[draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in data))] = draw(
            json_values
        )
    elif kind == "huge":
        target = draw(st.sampled_from(["workspace_id", "correlation_id", "goal"]))
        huge = "x" * draw(st.integers(min_value=5_000, max_value=200_000))
        if target == "goal":
            data["payload"]["goal"] = huge
        else:
            data[target] = huge
    elif kind == "event_type":
        data["type"] = draw(st.sampled_from(["StageCompleted", "TaskCompleted", "", "Nope"]))
    else:
        data["payload"] = draw(json_values)
    return json.dumps(data).encode()


def is_invalid(body: bytes) -> bool:
    return decode_envelope(body, TaskRequested)[0] is None


bad_bodies = st.one_of(
    st.binary(max_size=2_000),
    json_values.map(lambda v: json.dumps(v).encode()),
    mutated(),
).filter(is_invalid)
# An entry is a dict of fields: usually `__data__`, sometimes something else entirely.
bad_entries = st.one_of(
    bad_bodies.map(lambda body: {DATA_FIELD: body}),
    st.dictionaries(
        st.text(min_size=1, max_size=12).filter(lambda k: k != DATA_FIELD),
        st.binary(max_size=200),
        min_size=1,
        max_size=3,
    ),
)


@pytest.fixture
async def stack(redis_url: str) -> AsyncIterator[LocalStack]:
    async with LocalStack(settings_for(redis_url), start_redis=False) as running:
        yield running


async def letters_for(redis: Redis, message_id: str) -> dict[str, dict[bytes, bytes]]:
    """service -> dead-letter fields, for one original message (recent entries only)."""
    out = {}
    for _, fields in await redis.xrevrange(PLAIN.dead_letters()[0], count=200):
        if (
            fields.get(b"stream") == STREAM.encode()
            and fields[b"message_id"].decode() == message_id
        ):
            out[fields[b"service"].decode()] = fields
    return out


async def pending(redis: Redis) -> dict[str, int]:
    return {g["name"].decode(): int(g["pending"]) for g in await redis.xinfo_groups(STREAM)}


@settings(
    max_examples=50,
    deadline=None,
    # No shrinking: each example waits on live consumers, so shrinking a failure would run
    # for minutes; the failing entry is printed as it was generated.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much],
)  # fmt: skip
@given(entry=bad_entries)
async def test_bad_entries_are_dead_lettered_with_a_reason(
    stack: LocalStack, redis: Redis, entry: dict[str, bytes]
):
    message_id = (await redis.xadd(STREAM, entry)).decode()  # type: ignore[arg-type]

    async def all_lettered() -> dict[str, dict[bytes, bytes]] | None:
        found = await letters_for(redis, message_id)
        return found if set(CONSUMERS) <= set(found) else None

    found = await eventually(all_lettered, timeout=10)
    for service in CONSUMERS:
        fields = found[service]
        assert fields[b"reason"] == b"invalid", fields
        assert fields[b"error"].strip(), "the dead letter says what was wrong"
        kept = fields[DATA_FIELD.encode()]
        if entry.get(DATA_FIELD):
            assert kept == entry[DATA_FIELD][:1_000_000], "the original body is kept"
        else:  # no body: the entry's fields, readable, so an operator sees what came
            assert len(json.loads(kept)) == len(entry), kept[:200]


async def test_consumers_survive_the_garbage_and_leave_nothing_pending(
    stack: LocalStack, redis: Redis, workspace: str
):
    """Runs after the property test in file order; on its own it still checks liveness."""
    await redis.xadd(STREAM, {DATA_FIELD: b"\xff\xfe not json"})
    await redis.xadd(STREAM, {"foo": b"bar"})
    task_id = await submit(redis, workspace, sequence=["content"])
    assert stack.deps is not None
    view = await wait_for_task(stack.deps, workspace, task_id, timeout=60)
    assert view["status"] == "completed", view

    async def drained() -> bool:
        counts = await pending(redis)
        return all(counts.get(s) == 0 for s in CONSUMERS)

    await eventually(drained, timeout=30)
