"""The task lifecycle at the gateway on a real Redis (no services running): status from the
moment of acceptance, idempotent submission, the list, cancel, the typed view."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime

import httpx
import pytest

from services.gateway.app import create_app
from shared.app.runtime import build_deps
from shared.messaging.bus import publish
from shared.stores import approvals, tasks
from tests.helpers import KEYS, PLAIN, eventually, settings_for


@pytest.fixture
async def client(redis_url):
    settings = settings_for(redis_url)
    deps = await build_deps(settings)
    app = create_app(settings, deps)
    app.state.deps = deps
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c
    await deps.close()


async def _requested(redis, task_id: str) -> list[dict]:
    """This task's TaskRequested entries (other tests leave garbage on the shared stream)."""
    out = []
    for _, fields in await redis.xrange(PLAIN.stream("TaskRequested")):
        try:
            data = json.loads(fields.get(b"__data__", b""))
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("correlation_id") == task_id:
            out.append(data)
    return out


async def test_status_is_accepted_the_moment_the_202_is_sent(client, workspace):
    response = await client.post("/tasks", json={"goal": "Write a blog", "workspace_id": workspace,
                                                 "deadline_s": 600})
    assert response.status_code == 202
    task_id = response.json()["task_id"]
    view = await client.get(f"/tasks/{task_id}", params={"workspace_id": workspace})
    assert view.status_code == 200
    body = view.json()
    assert body["status"] == "accepted" and body["goal"] == "Write a blog"
    created = datetime.fromisoformat(body["created_at"])
    deadline = datetime.fromisoformat(body["deadline_at"])
    assert 599 < (deadline - created).total_seconds() < 601


async def test_same_key_and_body_answer_the_same_task_and_submit_once(client, redis, workspace):
    body = {"goal": "Write a blog", "workspace_id": workspace}
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post("/tasks", json=body, headers=headers)
    again = await client.post("/tasks", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["task_id"] == first.json()["task_id"]
    assert again.json()["replayed"] is True and again.headers["Idempotent-Replayed"] == "true"
    assert len(await _requested(redis, first.json()["task_id"])) == 1
    [idem] = [k async for k in redis.scan_iter(match=f"rf:ws:{workspace}:idempotency:*")]
    assert 23 * 3600 < await redis.ttl(idem) <= 24 * 3600
    other = await client.post("/tasks", json={**body, "goal": "Other"}, headers=headers)
    assert other.status_code == 422 and "Idempotency-Key" in other.text


async def test_idempotency_keys_are_scoped_to_the_workspace(client, workspace):
    headers = {"Idempotency-Key": "same-key"}
    a = await client.post("/tasks", json={"goal": "g", "workspace_id": workspace}, headers=headers)
    b = await client.post("/tasks", json={"goal": "g", "workspace_id": workspace + "-b"},
                          headers=headers)
    assert a.json()["task_id"] != b.json()["task_id"]


async def test_an_idempotent_retry_racing_the_first_request_makes_one_task(
    client, redis, workspace
):
    body = {"goal": "Write a blog", "workspace_id": workspace}
    answers = await asyncio.gather(*(
        client.post("/tasks", json=body, headers={"Idempotency-Key": "race"}) for _ in range(8)
    ))
    assert {a.status_code for a in answers} == {202}
    task_ids = {a.json()["task_id"] for a in answers}
    assert len(task_ids) == 1
    assert sum(not a.json()["replayed"] for a in answers) == 1
    assert len(await _requested(redis, task_ids.pop())) == 1
    assert await redis.zcard(KEYS.task_index(workspace)) == 1


async def test_a_caller_given_task_id_is_idempotent_too(client, workspace):
    body = {"goal": "g", "workspace_id": workspace, "task_id": "order-7"}
    assert (await client.post("/tasks", json=body)).json()["task_id"] == "order-7"
    assert (await client.post("/tasks", json=body)).json()["replayed"] is True
    clash = await client.post("/tasks", json={**body, "goal": "another"})
    assert clash.status_code == 409
    sneaky = await client.post("/tasks", json={**body, "task_id": "order-7:stages"})
    assert sneaky.status_code == 422 and "task_id" in sneaky.text


async def test_the_list_is_newest_first_with_a_cursor_and_filters(client, redis, workspace):
    ids = []
    for n in range(5):
        response = await client.post("/tasks", json={"goal": f"goal {n}",
                                                     "workspace_id": workspace})
        ids.append(response.json()["task_id"])
    page = (await client.get("/tasks", params={"workspace_id": workspace, "limit": 2})).json()
    assert [t["task_id"] for t in page["tasks"]] == ids[::-1][:2]
    seen = [t["task_id"] for t in page["tasks"]]
    while page["next_cursor"]:
        page = (await client.get("/tasks", params={"workspace_id": workspace, "limit": 2,
                                                   "cursor": page["next_cursor"]})).json()
        seen += [t["task_id"] for t in page["tasks"]]
    assert seen == ids[::-1]
    await client.post(f"/tasks/{ids[1]}/cancel", json={"workspace_id": workspace})
    cancelled = (await client.get("/tasks", params={"workspace_id": workspace,
                                                    "status": "cancelled"})).json()
    assert [t["task_id"] for t in cancelled["tasks"]] == [ids[1]]
    async with redis.pipeline(transaction=True) as tx:
        tasks.queue_view(tx, KEYS, workspace, ids[2], {"status": "running", "routing_source": "memory",
                                                 "agent_sequence": '["research"]'}, time.time())
        await tx.execute()
    by_agent = (await client.get("/tasks", params={"workspace_id": workspace, "agent": "research",
                                                   "source": "memory"})).json()
    assert [t["task_id"] for t in by_agent["tasks"]] == [ids[2]]
    future = (await client.get("/tasks", params={"workspace_id": workspace,
                                                 "since": "2999-01-01T00:00:00Z"})).json()
    assert future == {"tasks": [], "next_cursor": None}
    for cursor in ("x:y", "nan:y", "inf:y", "1.5:", "12"):
        bad = await client.get("/tasks", params={"workspace_id": workspace, "cursor": cursor})
        assert bad.status_code == 422, cursor


async def test_cancel_ends_a_live_task_once_and_refuses_a_finished_one(client, redis, workspace):
    task_id = (await client.post("/tasks", json={"goal": "g", "workspace_id": workspace}))
    task_id = task_id.json()["task_id"]
    first = await client.post(f"/tasks/{task_id}/cancel",
                              json={"workspace_id": workspace, "reason": "not needed"})
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    second = await client.post(f"/tasks/{task_id}/cancel", json={"workspace_id": workspace})
    assert second.status_code == 200 and second.json() == first.json()
    cancels = [e for _, e in await redis.xrange(PLAIN.stream("TaskCancelled"))
               if json.loads(e[b"__data__"])["correlation_id"] == task_id]
    assert len(cancels) == 1
    assert await tasks.stop_reason(redis, KEYS, workspace, task_id) == "cancelled"

    done = (await client.post("/tasks", json={"goal": "g2", "workspace_id": workspace}))
    done_id = done.json()["task_id"]
    async with redis.pipeline(transaction=True) as tx:
        tasks.queue_view(tx, KEYS, workspace, done_id, {"status": "completed"}, time.time())
        await tx.execute()
    refused = await client.post(f"/tasks/{done_id}/cancel", json={"workspace_id": workspace})
    assert refused.status_code == 409
    missing = await client.post("/tasks/nope/cancel", json={"workspace_id": workspace})
    assert missing.status_code == 404


async def test_the_view_is_typed(client, redis, workspace):
    task_id = (await client.post("/tasks", json={"goal": "g", "workspace_id": workspace}))
    task_id = task_id.json()["task_id"]
    async with redis.pipeline(transaction=True) as tx:
        tasks.queue_view(tx, KEYS, workspace, task_id, {
            "status": "completed", "success": "true", "quality": "0.91",
            "agent_sequence": json.dumps(["content", "blog_writer"]),
            "usage": json.dumps({"api_calls": 3, "cost_usd": 0.01}),
            "providers": "offline", "routing_confidence": "0.5", "routing_source": "planner",
        }, time.time())
        await tx.execute()
    body = (await client.get(f"/tasks/{task_id}", params={"workspace_id": workspace})).json()
    assert body["success"] is True and body["quality"] == 0.91
    assert body["agent_sequence"] == ["content", "blog_writer"]
    assert body["usage"]["api_calls"] == 3 and body["providers"] == ["offline"]
    assert isinstance(body["routing_confidence"], float)
    datetime.fromisoformat(body["updated_at"])


async def test_a_long_poll_returns_when_the_task_ends(client, redis, workspace):
    task_id = (await client.post("/tasks", json={"goal": "g", "workspace_id": workspace}))
    task_id = task_id.json()["task_id"]

    async def finish_later() -> None:
        await asyncio.sleep(0.3)
        async with redis.pipeline(transaction=True) as tx:
            tasks.queue_view(tx, KEYS, workspace, task_id, {"status": "failed"}, time.time())
            await tx.execute()

    finisher = asyncio.create_task(finish_later())
    body = (await client.get(f"/tasks/{task_id}",
                             params={"workspace_id": workspace, "wait": 30})).json()
    await finisher
    assert body["status"] == "failed"


def test_the_task_view_is_in_the_openapi_document(redis_url):
    app = create_app(settings_for(redis_url))
    schema = app.openapi()
    view = schema["components"]["schemas"]["TaskView"]["properties"]
    assert view["success"]["anyOf"][0]["type"] == "boolean"
    assert view["created_at"]["anyOf"][0]["format"] == "date-time"
    assert "TaskPage" in schema["components"]["schemas"]


async def test_an_approval_created_while_its_task_was_cancelled_is_withdrawn(
    redis_url, redis, workspace
):
    """The race a cancel can lose: the checkpoint's handler was already creating the approval
    when the cancel committed. The notifier, which reads every ApprovalNeeded after it
    commits, withdraws it instead of asking anyone."""
    from raptorflow.stack import LocalStack
    from tests.integration.test_gateway import _pending_approval

    await redis.set(KEYS.task_stopped(workspace, "t1"), "cancelled")
    async with LocalStack(settings_for(redis_url), start_redis=False, services=["notifier"]):
        await _pending_approval(redis, workspace)
        needed = await approvals.get_approval(redis, KEYS, workspace, "ap-1")
        await publish(redis, PLAIN, [needed.needed])

        async def withdrawn() -> bool:
            return (await approvals.get_approval(redis, KEYS, workspace, "ap-1")).status == "withdrawn"

        await eventually(withdrawn, 20)
    assert await approvals.list_pending(redis, KEYS, workspace) == []
    notices = [json.loads(e[b"__data__"]) for _, e in
               await redis.xrange(PLAIN.stream("ApprovalWithdrawn"))]
    assert [n["payload"]["reason"] for n in notices
            if n["workspace_id"] == workspace] == ["cancelled"]
