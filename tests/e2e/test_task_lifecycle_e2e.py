"""The task lifecycle end to end, through the Python client against a real gateway and every
service on a real Redis: wait, list, cancel in each state (during an approval, mid
self-correction), resume after a failure at the second stage, rerun, and a deadline that
passes while the service holding the task is down."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from raptorflow.client import (
    AsyncRaptorFlow,
    Conflict,
    Forbidden,
    NotFound,
    RaptorFlow,
    ValidationFailed,
    WaitTimeout,
)
from raptorflow.stack import LocalStack
from shared.contract.events import TaskRequested, new_envelope
from shared.contract.keys import goal_hash
from shared.contract.models import AgentContext
from shared.domain.llm_port import LLMError, LLMReply, LLMRequest
from shared.llm.offline import OfflineProvider
from shared.messaging.bus import publish
from shared.stores import approvals, webhooks
from tests.checkpoint_helpers import gate, wait_pending
from tests.helpers import KEYS, PLAIN, events_of_task, eventually, settings_for
from tests.integration.test_webhooks import SECRET, Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
GOAL = "Create a blog post about AI trends"
SEQUENCE = ["research", "content"]


class GatedProvider:
    """The offline provider, with two switches a test flips: critiques wait on `release`
    while `hold` is set (a stage caught mid self-correction), and the critique of the agent
    named `failing` raises LLMError (a stage that fails)."""

    name = "offline"
    model = "offline"

    def __init__(self) -> None:
        self.inner = OfflineProvider()
        self.hold = False
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.failing: str | None = None
        self.calls: Counter[str] = Counter()

    async def complete(self, request: LLMRequest) -> LLMReply:
        self.calls[request.purpose] += 1
        if request.purpose == "critique" and self.failing and f"'{self.failing}' agent" in (
            request.system
        ):
            raise LLMError(f"{self.failing} is down")
        if request.purpose == "critique" and self.hold:
            self.held.set()
            await self.release.wait()
        return await self.inner.complete(request)


@pytest.fixture
async def stack(redis_url):
    provider = GatedProvider()
    settings = settings_for(redis_url, egress_allow="127.0.0.1")  # the webhook receiver's address
    async with LocalStack(settings, with_gateway=True, start_redis=False,
                          provider=provider) as running:
        running.provider = provider
        yield running


async def _corrector_idle(redis) -> bool:
    """Every StageCleared read and settled by the corrector's group."""
    groups = await redis.xinfo_groups(PLAIN.stream("StageCleared"))
    [corrector] = [g for g in groups if g["name"] == b"corrector"]
    return corrector["pending"] == 0 and corrector["lag"] == 0


def _types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


async def test_the_client_submits_waits_lists_and_gets_typed_errors(stack, workspace):
    async with AsyncRaptorFlow(stack.gateway_url, workspace_id=workspace) as rf:
        accepted = await rf.submit(GOAL, agent_sequence=SEQUENCE, idempotency_key="k1")
        again = await rf.submit(GOAL, agent_sequence=SEQUENCE, idempotency_key="k1")
        assert again.task_id == accepted.task_id and again.replayed
        view = await rf.wait(accepted.task_id, timeout=60)
        assert view.status == "completed" and view.success is not None
        assert [s.agent for s in view.stages] and view.usage is not None
        page = await rf.list(status="completed")
        assert [t.task_id for t in page.tasks] == [accepted.task_id]
        with pytest.raises(Conflict):
            await rf.cancel(accepted.task_id)
        with pytest.raises(NotFound):
            await rf.get("no-such-task")
        with pytest.raises(ValidationFailed) as invalid:
            await rf.submit(GOAL, deadline_s=-1)
        assert invalid.value.field == "deadline_s"

    def sync_calls() -> None:
        with RaptorFlow(stack.gateway_url, workspace_id=workspace) as rf:
            assert rf.get(accepted.task_id).status == "completed"
            assert rf.wait(accepted.task_id, timeout=5).task_id == accepted.task_id

    await asyncio.to_thread(sync_calls)


async def test_wait_times_out_without_busy_polling(stack, workspace):
    stack.provider.hold = True
    async with AsyncRaptorFlow(stack.gateway_url, workspace_id=workspace) as rf:
        accepted = await rf.submit(GOAL, agent_sequence=SEQUENCE)
        await stack.provider.held.wait()
        with pytest.raises(WaitTimeout) as waited:
            await rf.wait(accepted.task_id, timeout=1.0)
        assert waited.value.view.status == "running"
        await rf.cancel(accepted.task_id)
    stack.provider.release.set()


async def test_cancel_mid_self_correction_stops_the_loop(stack, redis, workspace):
    stack.provider.hold = True
    async with AsyncRaptorFlow(stack.gateway_url, workspace_id=workspace) as rf:
        accepted = await rf.submit(
            GOAL, agent_sequence=SEQUENCE,
            self_correction={"min_quality_score": 0.99, "max_iterations": 3},
        )
        await stack.provider.held.wait()
        calls_before = dict(stack.provider.calls)
        view = await rf.cancel(accepted.task_id, reason="changed my mind")
        assert view.status == "cancelled" and view.cancel_reason == "changed my mind"
        stack.provider.release.set()
        again = await rf.cancel(accepted.task_id)
        assert again.status == "cancelled"

    await eventually(lambda: _corrector_idle(redis), 30)
    events = _types(await events_of_task(redis, accepted.task_id))
    assert "StageCompleted" not in events and "TaskCompleted" not in events
    assert events.count("TaskCancelled") == 1
    # The held critique finished; no revision or further critique was asked for.
    assert stack.provider.calls["revise"] == calls_before.get("revise", 0)
    assert stack.provider.calls["critique"] == calls_before["critique"]
    assert await redis.exists(KEYS.task_history(workspace, goal_hash(GOAL))) == 0


async def test_cancel_during_an_approval_withdraws_it_and_tells_the_webhook(
    stack, redis, workspace
):
    with Receiver(failures=0) as receiver:
        await webhooks.save_config(
            redis, stack.deps.keys, workspace, webhooks.WebhookConfig(urls=[receiver.url], secret=SECRET)
        )
        checkpoints = gate(workspace, "research").model_dump(mode="json")
        async with AsyncRaptorFlow(stack.gateway_url, workspace_id=workspace) as rf:
            accepted = await rf.submit(GOAL, agent_sequence=SEQUENCE, checkpoints=checkpoints)
            [pending] = await wait_pending(redis, workspace)
            assert (await rf.get(accepted.task_id)).status == "awaiting_approval"
            view = await rf.cancel(accepted.task_id)
            assert view.status == "cancelled"

            async def withdrawn() -> list[dict] | None:
                bodies = [json.loads(r["body"]) for r in receiver.requests]
                return [b for b in bodies if b["type"] == "ApprovalWithdrawn"] or None

            [notice] = await eventually(withdrawn, 30)
            assert notice["approval_id"] == pending.approval_id and notice["reason"] == "cancelled"
            assert await rf.approvals() == []
            with pytest.raises(Conflict):
                await rf.decide(pending.approval_id, "approved", decided_by="alice")
    record = await approvals.get_approval(redis, stack.deps.keys, workspace, pending.approval_id)
    assert record.status == "withdrawn"


async def test_cancel_right_after_acceptance_reaches_no_agent(stack, redis, workspace):
    async with AsyncRaptorFlow(stack.gateway_url, workspace_id=workspace) as rf:
        accepted = await rf.submit(GOAL, agent_sequence=SEQUENCE, task_id="early-1")
        await rf.cancel(accepted.task_id)
        # A later task of the same workspace passes through every service: by then the
        # cancelled one's events were dropped at whatever hop they reached.
        later = await rf.submit(GOAL, agent_sequence=SEQUENCE)
        await rf.wait(later.task_id, timeout=60)
        view = await rf.get(accepted.task_id)
    assert view.status == "cancelled" and not view.stages
    assert "TaskCompleted" not in _types(await events_of_task(redis, accepted.task_id))


async def test_resume_after_a_failure_at_the_second_stage_reuses_the_first(
    stack, redis, workspace
):
    stack.provider.failing = "content"
    async with AsyncRaptorFlow(stack.gateway_url, workspace_id=workspace) as rf:
        first = await rf.submit(GOAL, agent_sequence=SEQUENCE, deadline_s=600)
        failed = await rf.wait(first.task_id, timeout=60)
        assert failed.status == "failed" and failed.failure_reason == "error"
        assert [s.agent for s in failed.stages] == ["research"]
        stack.provider.failing = None
        resumed = await rf.resume(first.task_id, idempotency_key="resume-1")
        retried = await rf.resume(first.task_id, idempotency_key="resume-1")
        assert retried.task_id == resumed.task_id and retried.replayed
        done = await rf.wait(resumed.task_id, timeout=60)
        assert done.status == "completed" and done.resumed_from == first.task_id
        assert (await rf.get(first.task_id)).resumed_by == resumed.task_id
        rerun = await rf.rerun(first.task_id)
        copy = await rf.wait(rerun.task_id, timeout=60)
        assert copy.status == "completed" and copy.rerun_of == first.task_id
    events = await events_of_task(redis, resumed.task_id)
    assert "SequenceChosen" not in _types(events)  # no routing again
    stages = [e["payload"]["workflow"]["stage_index"] for e in events
              if e["type"] == "StageCompleted"]
    assert stages == [1]  # the research stage's output was reused, not run again
    cleared = [e for e in events if e["type"] == "StageCleared"]
    assert cleared[0]["payload"]["workflow"]["outcomes"][0]["agent"] == "research"
    assert cleared[0]["payload"]["workflow"]["last_output"]
    with pytest.raises(Conflict):
        async with AsyncRaptorFlow(stack.gateway_url, workspace_id=workspace) as rf:
            await rf.resume(resumed.task_id)


async def test_forbidden_outside_the_keys_workspace(redis_url, workspace):
    settings = settings_for(redis_url, api_keys=f"key-a={workspace}")
    async with (
        LocalStack(settings, with_gateway=True, start_redis=False, services=[]) as running,
        AsyncRaptorFlow(running.gateway_url, api_key="key-a") as rf,
    ):
        await rf.submit(GOAL, workspace_id=workspace)
        with pytest.raises(Forbidden):
            await rf.list(workspace_id="someone-else")


async def test_a_deadline_passes_while_the_service_holding_the_task_is_down(
    redis_url, redis, workspace
):
    settings = settings_for(redis_url)
    without_corrector = ["router", "selector", "checkpoint", "memory", "notifier"]
    async with (
        LocalStack(settings, with_gateway=True, start_redis=False,
                   services=without_corrector) as running,
        AsyncRaptorFlow(running.gateway_url, workspace_id=workspace) as rf,
    ):
        accepted = await rf.submit(GOAL, agent_sequence=SEQUENCE, deadline_s=1.5)
        view = await rf.wait(accepted.task_id, timeout=30)
    assert view.status == "failed" and view.failure_reason == "deadline"
    events = _types(await events_of_task(redis, accepted.task_id))
    assert "StageCleared" in events and "StageCompleted" not in events
    # The corrector comes back: it drops the stale stage instead of running it.
    async with LocalStack(settings, start_redis=False, services=["corrector"]):
        await eventually(lambda: _corrector_idle(redis), 30)
    assert "StageCompleted" not in _types(await events_of_task(redis, accepted.task_id))


async def test_a_task_from_the_stream_is_listed_and_its_deadline_holds_mid_stage(
    stack, redis, workspace
):
    stack.provider.hold = True
    event = new_envelope(
        TaskRequested(goal=GOAL, agent_sequence=SEQUENCE, deadline_s=1.0),
        workspace_id=workspace,
        context=AgentContext(workspace_id=workspace),
    )
    await publish(redis, stack.deps.layout, [event])
    async with AsyncRaptorFlow(stack.gateway_url, workspace_id=workspace) as rf:
        await stack.provider.held.wait()
        page = await rf.list()
        assert [t.task_id for t in page.tasks] == [event.correlation_id]
        assert page.tasks[0].deadline_at is not None
        view = await rf.wait(event.correlation_id, timeout=30)
        stack.provider.release.set()
    assert view.status == "failed" and view.failure_reason == "deadline"
    await eventually(lambda: _corrector_idle(redis), 30)
    assert "StageCompleted" not in _types(await events_of_task(redis, event.correlation_id))
