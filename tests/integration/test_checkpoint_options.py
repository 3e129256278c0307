"""Every checkpoint option of the seed, through all services on a real Redis, plus decisions,
auth of deciders, timeouts and the audit trail."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from raptorflow.stack import LocalStack
from services.gateway.app import create_app
from shared.contract.models import CheckpointCondition, TimeoutOutcome
from shared.domain.catalog import BUNDLED_CATALOG
from shared.stores import approvals, audit
from tests.checkpoint_helpers import (
    events_of,
    gate,
    submit,
    task_status,
    wait_past,
    wait_pending,
    wait_status,
)
from tests.helpers import KEYS, eventually, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
DONE = {"completed", "failed"}


@pytest.fixture
def single_agent_catalog(tmp_path) -> str:
    """The bundled catalog without research's alternative, so the selector cannot explore
    away from `research` and the success-rate rule always sees the agent that ran."""
    text = BUNDLED_CATALOG.read_text()
    start = text.index('name = "deep_researcher"')
    block_start = text.rindex("[[agents]]", 0, start)
    path = tmp_path / "agents.toml"
    path.write_text(text[:block_start])
    return str(path)


@pytest.fixture
async def stack(
    redis_url: str, workspace: str, single_agent_catalog: str
) -> AsyncIterator[LocalStack]:
    settings = settings_for(
        redis_url,
        api_keys=f"k-alice={workspace}:alice,k-team={workspace}",
        catalog_path=single_agent_catalog,
    )
    async with LocalStack(settings, start_redis=False) as running:
        yield running


@pytest.fixture
async def api(stack: LocalStack) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(stack.settings, stack.deps)
    app.state.deps = stack.deps
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as client:
        yield client


async def _decide(redis, workspace, approval_id, decision="approved", **kw):
    return await approvals.decide(
        redis, KEYS, workspace, approval_id, decision=decision, decided_by=kw.pop("by", "bob"), **kw
    )


async def test_after_stage_gates_only_its_stage_and_audits_evaluation_and_decision(
    stack, redis, workspace
):
    task_id = await submit(redis, workspace, checkpoints=gate(workspace, "content"))
    (pending,) = await wait_pending(redis, workspace)
    needed = pending.needed.payload
    assert needed.agent == "content" and needed.workflow.stage_index == 1
    assert needed.stage_output and needed.evaluation.status == "pending_approval"
    assert "no auto-approval rules: a human must approve" in needed.evaluation.reasons

    await _decide(redis, workspace, pending.approval_id)
    assert await wait_status(redis, workspace, task_id, DONE) == "completed"
    entries = await audit.list_for_task(redis, stack.deps.keys, workspace, task_id)
    assert [(e.kind, e.checkpoint) for e in entries] == [
        ("evaluation", "review"),
        ("decision", "review"),
    ]
    assert entries[0].data["approval_id"] == pending.approval_id
    assert entries[0].data["agent"] == "content"
    assert entries[1].data["decided_by"] == "bob" and entries[1].data["decision"] == "approved"


async def test_before_execution_pauses_before_the_first_stage_runs(stack, redis, workspace):
    config = gate(workspace, None, condition=CheckpointCondition.BEFORE_EXECUTION)
    task_id = await submit(redis, workspace, checkpoints=config)
    (pending,) = await wait_pending(redis, workspace)
    assert pending.needed.payload.stage_output is None
    assert pending.needed.payload.agent == "research"
    assert await events_of(redis, "StageCompleted", task_id) == []

    await _decide(redis, workspace, pending.approval_id)
    assert await wait_status(redis, workspace, task_id, DONE) == "completed"
    assert len(await events_of(redis, "StageCompleted", task_id)) == 2


async def test_auto_approve_if_needs_every_rule(stack, redis, workspace):
    both = gate(workspace, "research", rules={"quality_above": 0.0, "success_rate_above": 0.5})
    first_id = await submit(redis, workspace, checkpoints=both)
    (pending,) = await wait_pending(redis, workspace)
    rules = {r.rule: r for r in pending.needed.payload.evaluation.rules}
    assert rules["quality_above"].passed, "quality passes..."
    assert not rules["success_rate_above"].passed and rules["success_rate_above"].value is None
    assert "success_rate_above: n/a not > 0.5" in pending.needed.payload.evaluation.reasons
    await _decide(redis, workspace, pending.approval_id)
    assert await wait_status(redis, workspace, first_id, DONE) == "completed"

    # now the workspace has a record of research succeeding: both rules hold
    second_id = await submit(redis, workspace, checkpoints=both)
    assert await wait_status(redis, workspace, second_id, DONE) == "completed"
    (entry,) = await audit.list_for_task(redis, stack.deps.keys, workspace, second_id)
    assert entry.data["status"] == "auto_approved"
    assert [r["passed"] for r in entry.data["rules"]] == [True, True]
    assert await approvals.list_pending(redis, stack.deps.keys, workspace) == []


async def test_disabled_and_auto_approved_users_never_pause(stack, redis, workspace):
    off = gate(workspace, "research", enabled=False)
    off_id = await submit(redis, workspace, checkpoints=off)
    trusted = gate(workspace, "research", auto_approve_for_users=["carol"])
    trusted_id = await submit(redis, workspace, checkpoints=trusted, user="carol")
    assert await wait_status(redis, workspace, off_id, DONE) == "completed"
    assert await wait_status(redis, workspace, trusted_id, DONE) == "completed"
    assert await approvals.list_pending(redis, stack.deps.keys, workspace) == []
    (entry,) = await audit.list_for_task(redis, stack.deps.keys, workspace, trusted_id)
    assert entry.data["reasons"] == ["user carol is in auto_approve_for_users"]


async def test_timeout_defaults_to_default_timeout(stack, redis, workspace):
    await submit(redis, workspace, checkpoints=gate(workspace, "research", default_timeout=1234))
    (pending,) = await wait_pending(redis, workspace)
    assert pending.needed.payload.evaluation.timeout_seconds == 1234
    assert 1230 < pending.deadline - pending.created_at <= 1234.5


async def test_workspace_config_set_via_api_applies_and_a_task_cannot_switch_it_off(
    stack, api, redis, workspace
):
    """The workspace's gates are policy (issue 17): a task's `enabled: false` neither
    passes the gateway (403 for a tenant's key) nor, published upstream, lifts the gate;
    once the workspace opts in to per-task overrides, it does."""
    headers = {"X-API-Key": "k-team"}
    body = gate(workspace, "research").model_dump(mode="json")
    put = await api.put(f"/workspaces/{workspace}/checkpoints", json=body, headers=headers)
    assert put.status_code == 200, put.text
    got = await api.get(f"/workspaces/{workspace}/checkpoints", headers=headers)
    assert got.json()["checkpoints"][0]["name"] == "review"

    gated = await submit(redis, workspace)
    (pending,) = await wait_pending(redis, workspace)
    assert pending.needed.payload.workflow.task_id == gated

    off = gate(workspace, "research", enabled=False)
    refused = await api.post(
        "/tasks",
        json={"goal": "No gates please", "workspace_id": workspace,
              "checkpoints": off.model_dump(mode="json")},
        headers=headers,
    )  # fmt: skip
    assert refused.status_code == 403, refused.text
    assert "enabled" in refused.json()["detail"]

    still_gated = await submit(redis, workspace, checkpoints=off)
    await wait_pending(redis, workspace, count=2)
    assert await task_status(redis, workspace, still_gated) == "awaiting_approval"

    body["allow_task_overrides"] = True
    put = await api.put(f"/workspaces/{workspace}/checkpoints", json=body, headers=headers)
    assert put.status_code == 200, put.text
    free = await submit(redis, workspace, checkpoints=off)
    assert await wait_status(redis, workspace, free, DONE) == "completed"
    assert await task_status(redis, workspace, gated) == "awaiting_approval"


async def test_api_decisions_record_who_refuse_impostors_and_conflict_with_409(
    stack, api, redis, workspace
):
    task_id = await submit(redis, workspace, checkpoints=gate(workspace, "research"))
    (pending,) = await wait_pending(redis, workspace)
    url = f"/approvals/{pending.approval_id}/decision"
    reject = {"workspace_id": workspace, "decision": "rejected", "reason": "off brand"}

    impostor = await api.post(
        url, json={**reject, "decided_by": "mallory"}, headers={"X-API-Key": "k-alice"}
    )
    assert impostor.status_code == 403 and "alice" in impostor.json()["detail"]
    anonymous = await api.post(url, json=reject, headers={"X-API-Key": "k-team"})
    assert anonymous.status_code == 422
    other = await api.post(
        url, json={**reject, "workspace_id": "elsewhere"}, headers={"X-API-Key": "k-alice"}
    )
    assert other.status_code == 403

    ok = await api.post(url, json=reject, headers={"X-API-Key": "k-alice"})
    assert ok.status_code == 200 and ok.json()["decided_by"] == "alice"
    again = await api.post(
        url, json={**reject, "decision": "approved"}, headers={"X-API-Key": "k-alice"}
    )
    assert again.status_code == 409 and "already rejected" in again.json()["detail"]

    assert await wait_status(redis, workspace, task_id, DONE) == "failed"
    (failed,) = await events_of(redis, "TaskFailed", task_id)
    assert failed["payload"]["reason"] == "rejected"
    assert "off brand" in failed["payload"]["error"] and "alice" in failed["payload"]["error"]
    (resolved,) = await events_of(redis, "ApprovalResolved", task_id)
    assert resolved["payload"]["decided_by"] == "alice" and resolved["payload"]["decided_at"]

    trail = await api.get(
        f"/tasks/{task_id}/audit",
        params={"workspace_id": workspace},
        headers={"X-API-Key": "k-team"},
    )
    assert [e["kind"] for e in trail.json()] == ["evaluation", "decision"]


async def test_requested_changes_revise_the_stage_with_the_comments(stack, redis, workspace):
    task_id = await submit(redis, workspace, checkpoints=gate(workspace, "research"))
    (first,) = await wait_pending(redis, workspace)
    await _decide(
        redis,
        workspace,
        first.approval_id,
        "changes_requested",
        comments=["Cite two sources from 2024"],
    )

    async def revision() -> approvals.ApprovalRecord | None:
        pending = await approvals.list_pending(redis, KEYS, workspace)
        return next((p for p in pending if p.approval_id != first.approval_id), None)

    second = await eventually(revision, 30)
    assert second.needed.payload.workflow.revision == 1
    revised = (second.needed.payload.stage_output or "").lower()
    assert "addressed reviewer comment: cite two sources from 2024" in revised
    await _decide(redis, workspace, second.approval_id)
    assert await wait_status(redis, workspace, task_id, DONE) == "completed"


@pytest.mark.parametrize(
    "outcome,final", [(TimeoutOutcome.APPROVE, "completed"), (TimeoutOutcome.REJECT, "failed")]
)
async def test_on_timeout_approve_or_reject(stack, redis, workspace, outcome, final):
    task_id = await submit(
        redis, workspace, checkpoints=gate(workspace, "research", timeout=1, on_timeout=outcome)
    )
    assert await wait_status(redis, workspace, task_id, DONE) == final
    (resolved,) = await events_of(redis, "ApprovalResolved", task_id)
    assert resolved["payload"]["expired"] and resolved["payload"]["decided_by"] == "system:timeout"


async def test_on_timeout_escalate_extends_once_then_rejects(stack, redis, workspace):
    config = gate(workspace, "research", timeout=1, on_timeout=TimeoutOutcome.ESCALATE)
    task_id = await submit(redis, workspace, checkpoints=config)
    (pending,) = await wait_pending(redis, workspace)

    async def escalated() -> approvals.ApprovalRecord | None:
        record = await approvals.get_approval(redis, KEYS, workspace, pending.approval_id)
        return record if record.escalated else None

    record = await eventually(escalated, 10)
    assert record.status == "pending" and record.deadline > pending.deadline
    await wait_past(record.deadline)
    assert await wait_status(redis, workspace, task_id, DONE) == "failed"
    kinds = [e.kind for e in await audit.list_for_task(redis, stack.deps.keys, workspace, task_id)]
    assert kinds == ["evaluation", "escalation", "decision"]
