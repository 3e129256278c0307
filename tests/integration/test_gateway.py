"""The gateway over HTTP on a real Redis: validation, auth, approvals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.gateway.app import create_app
from shared.app.runtime import build_deps
from shared.contract.events import ApprovalNeeded, RoutingInfo, Workflow, new_envelope
from shared.contract.models import CheckpointCondition, CheckpointEvaluation
from shared.messaging.bus import publish
from shared.stores import approvals
from tests.helpers import KEYS, PLAIN, settings_for


@pytest.fixture
async def gateway(redis_url):
    async def make(**overrides):
        settings = settings_for(redis_url, **overrides)
        deps = await build_deps(settings)
        app = create_app(settings, deps)
        app.state.deps = deps
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        made.append((client, deps))
        return client

    made: list = []
    yield make
    for client, deps in made:
        await client.aclose()
        await deps.close()


@pytest.mark.parametrize(
    "body,field",
    [
        ({"workspace_id": "w"}, "goal"),
        ({"goal": "", "workspace_id": "w"}, "goal"),
        ({"goal": "g"}, "workspace_id"),
        ({"goal": "g", "workspace_id": "bad:id"}, "workspace_id"),
        (
            {"goal": "g", "workspace_id": "w", "quality_thresholds": {"content_quality": 3}},
            "quality_thresholds",
        ),
        ({"goal": "g", "workspace_id": "w", "surprise": 1}, "surprise"),
    ],
)
async def test_invalid_task_bodies_get_422_naming_the_field(gateway, body, field):
    client = await gateway()
    response = await client.post("/tasks", json=body)
    assert response.status_code == 422
    assert any(
        field in [str(p) for p in err["loc"]] or field in err["msg"]
        for err in response.json()["detail"]
    ), response.json()


async def test_seed_endpoints_answer_in_the_seed_shapes(gateway, workspace):
    client = await gateway()
    routed = await client.post(
        "/orchestrate", json={"goal": "Create a blog post about AI", "workspace_id": workspace}
    )
    assert routed.status_code == 200
    body = routed.json()
    assert body["agent_sequence"] and set(body["context_summary"]) == {
        "past_successes",
        "task_history",
        "performance_data",
    }
    corrected = await client.post(
        "/execute/self-correct",
        json={
            "agent_name": "content",
            "payload": {"goal": "Generate blog post", "topic": "AI"},
            "workspace_id": workspace,
        },
    )
    assert corrected.status_code == 200
    meta = corrected.json()["self_correction_metadata"]
    assert {"iterations", "final_quality_score", "threshold_met", "attempts"} <= set(meta)
    assert corrected.json()["provider"] == "offline"
    bad = await client.post(
        "/execute/self-correct",
        json={"agent_name": "nobody", "payload": {"goal": "x"}, "workspace_id": workspace},
    )
    assert bad.status_code == 422 and "agent_name" in bad.text


async def test_api_keys_are_required_and_scoped(gateway, workspace):
    client = await gateway(api_keys=f"secret-a={workspace},secret-admin=*")
    body = {"goal": "g", "workspace_id": workspace}
    assert (await client.post("/tasks", json=body)).status_code == 401
    assert (
        await client.post("/tasks", json=body, headers={"X-API-Key": "wrong"})
    ).status_code == 401
    ok = await client.post("/tasks", json=body, headers={"X-API-Key": "secret-a"})
    assert ok.status_code == 202
    other = await client.post(
        "/tasks",
        json={"goal": "g", "workspace_id": "someone-else"},
        headers={"Authorization": "Bearer secret-a"},
    )
    assert other.status_code == 403
    admin = await client.get(
        "/approvals", params={"workspace_id": "someone-else"}, headers={"X-API-Key": "secret-admin"}
    )
    assert admin.status_code == 200
    assert (await client.get("/healthz")).status_code == 200


async def _pending_approval(redis, workspace):
    workflow = Workflow(
        task_id="t1",
        goal="g",
        agent_sequence=["strategy"],
        routing=RoutingInfo(source="planner", confidence=0.0),
    )
    needed = new_envelope(
        ApprovalNeeded(
            approval_id="ap-1",
            checkpoint="strategy_review",
            condition=CheckpointCondition.AFTER_STAGE,
            evaluation=CheckpointEvaluation(
                checkpoint="strategy_review", status="pending_approval"
            ),
            workflow=workflow,
            agent="strategy",
            task_type="strategy",
            stage_output="draft",
            deadline=datetime.now(UTC) + timedelta(hours=1),
        ),
        workspace_id=workspace,
        correlation_id="t1",
    )
    async with redis.pipeline(transaction=True) as tx:
        approvals.add_create(tx, KEYS, needed, datetime.now(UTC).timestamp())
        await tx.execute()
    await publish(redis, PLAIN, [])


async def test_a_decided_approval_gets_409_and_other_workspaces_see_nothing(
    gateway, redis, workspace
):
    client = await gateway()
    await _pending_approval(redis, workspace)
    listed = (await client.get("/approvals", params={"workspace_id": workspace})).json()
    assert [a["approval_id"] for a in listed] == ["ap-1"]
    assert (await client.get("/approvals", params={"workspace_id": "other"})).json() == []
    assert (
        await client.get("/approvals/ap-1", params={"workspace_id": "other"})
    ).status_code == 404
    decision = {"workspace_id": workspace, "decision": "approved", "decided_by": "alice"}
    first = await client.post("/approvals/ap-1/decision", json=decision)
    assert first.status_code == 200
    again = await client.post("/approvals/ap-1/decision", json=decision)
    assert again.status_code == 409 and "already approved" in again.text
    changes = await client.post(
        "/approvals/ap-1/decision", json={**decision, "decision": "changes_requested"}
    )
    assert changes.status_code == 422 and "comments" in changes.text
