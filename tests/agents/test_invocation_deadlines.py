"""Durable invocation deadlines, swept by the corrector: a due one is retried, then fails the
task; a result that claimed it first is waited for, but never forever."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from services.corrector.app import RESULT_GRACE_S, expire_due_invocations
from shared.app.runtime import build_deps
from shared.contract.events import (
    AgentInvoked,
    CorrectionLoop,
    RoutingInfo,
    StageInput,
    TaskFailed,
    Workflow,
    envelope_class,
    new_envelope,
)
from shared.stores import agent_invocations as pending
from tests.helpers import KEYS, PLAIN, settings_for


def _invocation(workspace: str, attempt: int, max_attempts: int) -> object:
    workflow = Workflow(task_id="t1", goal="g", agent_sequence=["content"],
                        routing=RoutingInfo(source="requested", confidence=1))  # fmt: skip
    invoked = AgentInvoked(
        invocation_id=f"t1/0/0/1/{attempt}", agent="content", kind="llm", task_type="content_generation",
        stage_input=StageInput(goal="g"), iteration=1, attempt=attempt, max_attempts=max_attempts,
        deadline=datetime.now(UTC) - timedelta(seconds=1), reply_to="rf:stream:AgentResult",
        workflow=workflow, loop=CorrectionLoop(threshold=0.8, scope="t1/0/0", started_at=time.time()),
    )  # fmt: skip
    return new_envelope(invoked, workspace_id=workspace, correlation_id=f"task-{workspace}")


async def _store(redis, event) -> None:
    async with redis.pipeline(transaction=True) as tx:
        pending.add_pending(tx, KEYS, event)
        await tx.execute()


async def test_a_due_invocation_is_retried_then_fails_the_task(redis_url, redis, workspace):
    deps = await build_deps(settings_for(redis_url))
    try:
        first = _invocation(workspace, attempt=1, max_attempts=2)
        await _store(redis, first)
        assert await expire_due_invocations(deps, time.time()) >= 1
        retried = await pending.load_pending(redis, deps.keys, workspace, "t1/0/0/1/2")
        assert retried is not None and retried.payload.attempt == 2
        assert await redis.get(KEYS.agent_pending(workspace, "t1/0/0/1/1")) is None

        await redis.zadd(KEYS.agent_deadlines(workspace), {f"{workspace}|t1/0/0/1/2": 0})
        assert await expire_due_invocations(deps, time.time()) >= 1
        failures = await redis.xrange(PLAIN.stream(TaskFailed.event_type, workspace))
        mine = [envelope_class(TaskFailed).model_validate_json(f[b"__data__"]) for _, f in failures]
        mine = [e for e in mine if e.workspace_id == workspace]
        assert mine and mine[0].payload.reason == "agent_timeout"
    finally:
        await deps.close()


async def test_a_claimed_result_is_waited_for_but_not_forever(redis_url, redis, workspace):
    deps = await build_deps(settings_for(redis_url))
    try:
        event = _invocation(workspace, attempt=1, max_attempts=1)
        await _store(redis, event)
        assert await pending.claim(redis, deps.keys, workspace, "t1/0/0/1/1", "some-result-event")
        now = time.time()
        await expire_due_invocations(deps, now)
        score = await redis.zscore(KEYS.agent_deadlines(workspace), f"{workspace}|t1/0/0/1/1")
        assert score is not None and score > now  # postponed, still tracked
        assert await pending.load_pending(redis, deps.keys, workspace, "t1/0/0/1/1") is not None

        later = event.payload.deadline.timestamp() + RESULT_GRACE_S + 1
        assert await expire_due_invocations(deps, later) >= 1
        assert await pending.load_pending(redis, deps.keys, workspace, "t1/0/0/1/1") is None
        assert not await pending.claim(redis, deps.keys, workspace, "t1/0/0/1/1", "some-result-event")
    finally:
        await deps.close()
