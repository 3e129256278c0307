"""All services and the gateway on a real Redis: three tasks over HTTP to completion."""

from __future__ import annotations

import httpx
import pytest

from raptorflow.stack import LocalStack
from shared.contract.keys import goal_hash
from tests.helpers import KEYS, events_of_task, eventually, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GOALS = [
    "Create a blog post about AI trends",
    "Write a blog about machine learning",
    "Plan a launch strategy for our analytics product",
]
EXPECTED_PARENT = {
    "SequenceChosen": {"TaskRequested"},
    "StageAssigned": {"SequenceChosen", "StageAdvanced"},
    "StageCleared": {"StageAssigned", "ApprovalResolved"},
    "AgentInvoked": {"StageCleared", "AgentResult"},
    "AgentResult": {"AgentInvoked"},
    "CritiqueDone": {"AgentResult"},
    "StageCompleted": {"AgentResult"},
    "StageAdvanced": {"StageCompleted", "ApprovalResolved"},
    "TaskCompleted": {"StageCompleted", "ApprovalResolved"},
}


async def _finished(client: httpx.AsyncClient, task_id: str, workspace: str) -> dict | None:
    response = await client.get(f"/tasks/{task_id}", params={"workspace_id": workspace})
    if response.status_code != 200:
        return None
    body = response.json()
    return body if body["status"] in {"completed", "failed"} else None


async def test_three_tasks_complete_with_causation_chain_and_memory(redis_url, redis, workspace):
    settings = settings_for(redis_url)
    stack = LocalStack(settings, with_gateway=True, start_redis=False)
    async with (
        stack,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.gateway_port}", timeout=10
        ) as client,
    ):
        task_ids = []
        for goal in GOALS:
            response = await client.post("/tasks", json={"goal": goal, "workspace_id": workspace})
            assert response.status_code == 202, response.text
            task_ids.append(response.json()["task_id"])
            status = await eventually(lambda t=task_ids[-1]: _finished(client, t, workspace), 30)
            assert status["status"] == "completed", status
            assert status["providers"] == ["offline"]
            assert len(status["stages"]) == len(status["agent_sequence"])

        second = await client.get(f"/tasks/{task_ids[1]}", params={"workspace_id": workspace})
        assert second.json()["routing_source"] == "memory"

    for task_id in task_ids:
        events = await events_of_task(redis, task_id)
        by_id = {e["event_id"]: e for e in events}
        types = [e["type"] for e in events]
        assert types.count("TaskRequested") == 1 and types.count("TaskCompleted") == 1
        for event in events:
            assert event["workspace_id"] == workspace
            if event["type"] == "TaskRequested":
                assert event["causation_id"] is None
                continue
            parent = by_id[event["causation_id"]]
            assert parent["type"] in EXPECTED_PARENT[event["type"]], (event["type"], parent["type"])
            assert event["context"]["workspace_id"] == workspace

    goal_key = KEYS.task_history(workspace, goal_hash(GOALS[0]))
    record = await redis.hgetall(goal_key)
    assert set(record) >= {
        b"goal",
        b"agent_sequence",
        b"success",
        b"execution_time",
        b"result_quality",
    }
    assert 29 * 86400 < await redis.ttl(goal_key) <= 30 * 86400
    critique_keys = [k async for k in redis.scan_iter(match=f"memory:critique:{workspace}:*")]
    assert critique_keys
    for key in critique_keys:
        fields = await redis.hgetall(key)
        assert set(fields) >= {b"content_id", b"critique", b"issues", b"issue_count"}
        assert 6 * 86400 < await redis.ttl(key) <= 7 * 86400
