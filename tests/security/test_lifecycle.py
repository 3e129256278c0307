"""An accepted task is never lost, a workspace's gates hold, a mismatched envelope is
dead-lettered, and a Redis that refuses writes gives 503: the probe's cases, through the
whole stack on a real Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from raptorflow.redis_server import RedisServer, free_port
from raptorflow.stack import LocalStack
from services.gateway.app import create_app
from shared.contract.events import TaskRequested, new_envelope
from shared.contract.models import AgentContext
from shared.messaging import dead_letters
from tests.checkpoint_helpers import gate, wait_pending
from tests.helpers import KEYS, PLAIN, eventually, settings_for

pytestmark = [pytest.mark.slow]

KEY = "k-tenant-" + uuid.uuid4().hex
ADMIN = "k-admin-" + uuid.uuid4().hex


@pytest.fixture
async def stack(redis_url: str, workspace: str) -> AsyncIterator[LocalStack]:
    settings = settings_for(redis_url, api_keys=f"{KEY}={workspace},{ADMIN}=*")
    async with LocalStack(settings, start_redis=False) as running:
        yield running


@pytest.fixture
async def api(stack: LocalStack) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(stack.settings, stack.deps)
    app.state.deps = stack.deps
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw", headers={"X-API-Key": KEY}
    ) as client:
        yield client


async def status_of(api: httpx.AsyncClient, workspace: str, task_id: str) -> dict[str, Any] | None:
    r = await api.get(f"/tasks/{task_id}", params={"workspace_id": workspace})
    assert r.status_code in (200, 404), r.text
    return r.json() if r.status_code == 200 else None


async def ended(api: httpx.AsyncClient, workspace: str, task_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        view = await status_of(api, workspace, task_id)
        return view if view and view["status"] in {"completed", "failed", "rejected"} else None

    return await eventually(probe, timeout=60)


async def test_a_task_dead_lettered_after_acceptance_ends_failed_with_the_letter(
    stack: LocalStack, api: httpx.AsyncClient, redis: Any, workspace: str
) -> None:
    """The bus fails the task of any letter; here a TaskRequested that no service can
    decode (an upstream publisher's inputs nested past the parser's limit)."""
    task_id = str(uuid.uuid4())
    envelope = new_envelope(
        TaskRequested(goal="Write a note"), workspace_id=workspace, correlation_id=task_id
    ).model_dump(mode="json")
    deep: Any = []
    for _ in range(300):
        deep = [deep]
    envelope["payload"]["inputs"] = {"deep": deep}
    data = json.dumps(envelope).encode()
    await redis.xadd("rf:stream:TaskRequested", {"__data__": data})
    view = await ended(api, workspace, task_id)
    assert view["status"] == "failed"
    assert view["failure_reason"] == dead_letters.FAILURE_REASON
    assert view["dead_letter_service"] in {"router", "memory"}
    letter = await dead_letters.get_letter(redis, PLAIN, view["dead_letter_id"])
    assert letter is not None and letter.workspace_id == workspace
    assert view["goal"] == "Write a note"


async def test_an_accepted_task_whose_event_is_dead_lettered_ends_and_wakes_its_long_poll(
    stack: LocalStack, api: httpx.AsyncClient, redis: Any, workspace: str
) -> None:
    """Accepted through the gateway and waiting on an approval; an event of it that no
    service can read (here a malformed decision) fails it, and a long-poll hears the end."""
    config = gate(workspace, "research").model_dump(mode="json")
    assert (await api.put(f"/workspaces/{workspace}/checkpoints", json=config)).status_code == 200
    r = await api.post("/tasks", json={
        "goal": "Write a note", "workspace_id": workspace, "agent_sequence": ["research", "content"]})
    task_id = r.json()["task_id"]
    await wait_pending(redis, workspace)
    poll = asyncio.create_task(
        api.get(f"/tasks/{task_id}", params={"workspace_id": workspace, "wait": 30})
    )
    bad = {"event_id": str(uuid.uuid4()), "type": "ApprovalResolved", "workspace_id": workspace,
           "correlation_id": task_id, "context": {"workspace_id": workspace},
           "occurred_at": "2026-01-01T00:00:00Z", "payload": {"approval_id": 7}}  # fmt: skip
    await redis.xadd("rf:stream:ApprovalResolved", {"__data__": json.dumps(bad)})
    view = (await asyncio.wait_for(poll, 30)).json()
    assert view["status"] == "failed", view
    assert view["failure_reason"] == "dead_lettered" and view["dead_letter_id"]
    assert "approval_id" in view["error"]


async def test_a_stored_checkpoint_config_that_no_longer_loads_fails_tasks_visibly_and_is_fixable(
    stack: LocalStack, api: httpx.AsyncClient, redis: Any, workspace: str
) -> None:
    """A timeout of 1e20 was once stored (older rules): the next task fails at once saying
    why (no OverflowError, no task left running), the config stays readable, a PUT fixes it."""
    bad = {"workspace_id": workspace, "checkpoints": [
        {"name": "review", "condition": "after_stage", "timeout_seconds": 1e20}]}  # fmt: skip
    await redis.set(KEYS.checkpoints_config(workspace), json.dumps(bad))
    r = await api.post("/tasks", json={"goal": "Write a note", "workspace_id": workspace})
    assert r.status_code == 202, r.text
    view = await ended(api, workspace, r.json()["task_id"])
    assert view["status"] == "failed"
    assert "checkpoint configuration" in view["error"]
    assert "PUT /workspaces" in view["error"]

    shown = await api.get(f"/workspaces/{workspace}/checkpoints")
    assert shown.status_code == 409
    assert "timeout_seconds" in shown.json()["detail"]["error"]
    assert json.loads(shown.json()["detail"]["stored"]) == bad

    fixed = gate(workspace, "research", timeout=600).model_dump(mode="json")
    assert (await api.put(f"/workspaces/{workspace}/checkpoints", json=fixed)).status_code == 200
    r = await api.post(
        "/tasks",
        json={"goal": "Write a note", "workspace_id": workspace,
              "agent_sequence": ["research", "content"]},
    )  # fmt: skip
    (pending,) = await wait_pending(redis, workspace)
    assert pending.needed.payload.workflow.task_id == r.json()["task_id"]


async def test_a_task_cannot_switch_off_its_workspaces_gates(
    stack: LocalStack, api: httpx.AsyncClient, redis: Any, workspace: str
) -> None:
    config = gate(workspace, "research").model_dump(mode="json")
    assert (await api.put(f"/workspaces/{workspace}/checkpoints", json=config)).status_code == 200
    task = {"goal": "Write a note", "workspace_id": workspace, "agent_sequence": ["research", "content"]}
    for weaker in [
        {"workspace_id": workspace, "enabled": False},
        {"workspace_id": workspace, "auto_approve_for_users": ["mallory"]},
        {**config, "checkpoints": [{**config["checkpoints"][0], "auto_approve_if": {"quality_above": 0.0}}]},
        {**config, "checkpoints": [{**config["checkpoints"][0], "condition_params": {"stage": "nobody"}}]},
    ]:
        r = await api.post("/tasks", json={**task, "checkpoints": weaker})
        assert r.status_code == 403, (weaker, r.text)

    other = {"workspace_id": "someone-else", "checkpoints": []}
    r = await api.post("/tasks", json={**task, "checkpoints": other})
    assert r.status_code == 422 and "checkpoints.workspace_id" in r.text

    # Adding a gate is fine, and the workspace's still applies.
    more = {"workspace_id": workspace, "checkpoints": [
        {"name": "extra", "condition": "after_stage", "condition_params": {"stage": "content"}}]}  # fmt: skip
    r = await api.post("/tasks", json={**task, "checkpoints": more})
    assert r.status_code == 202, r.text
    (pending,) = await wait_pending(redis, workspace)
    assert pending.needed.payload.checkpoint == "review"

    # An admin key may replace them: that task runs through.
    r = await api.post(
        "/tasks",
        json={**task, "checkpoints": {"workspace_id": workspace, "enabled": False}},
        headers={"X-API-Key": ADMIN},
    )
    assert r.status_code == 202, r.text
    admins = r.json()["task_id"]
    assert (await ended(api, workspace, admins))["status"] == "completed"

    # A tenant's rerun of the admin's task does not inherit the override: it is gated.
    r = await api.post(f"/tasks/{admins}/rerun", json={"workspace_id": workspace})
    assert r.status_code == 202, r.text
    await wait_pending(redis, workspace, count=2)
    rerun = await status_of(api, workspace, r.json()["task_id"])
    assert rerun is not None and rerun["status"] == "awaiting_approval"


async def test_an_envelope_whose_context_names_another_workspace_is_dead_lettered(
    stack: LocalStack, redis: Any, workspace: str
) -> None:
    task_id = str(uuid.uuid4())
    event = new_envelope(
        TaskRequested(goal="Write a note", agent_sequence=["content"]),
        workspace_id=workspace,
        context=AgentContext(workspace_id=workspace, correlation_id=task_id),
        correlation_id=task_id,
    )
    data = event.model_dump(mode="json")
    data["context"]["workspace_id"] = "victim-workspace"
    await redis.xadd("rf:stream:TaskRequested", {"__data__": json.dumps(data)})

    async def letters() -> list[dead_letters.DeadLetter] | None:
        found = await dead_letters.list_letters(redis, PLAIN, workspace_id=workspace, limit=1000)
        mine = [x for x in found if task_id.encode() in x.data]
        return mine if len(mine) >= 2 else None  # the router's and the memory service's

    for letter in await eventually(letters):
        assert "context.workspace_id" in letter.error and "victim-workspace" in letter.error
    assert not await redis.exists(KEYS.task_view("victim-workspace", task_id))
    view = await redis.hgetall(KEYS.task_view(workspace, task_id))
    assert view[b"status"] == b"failed"


@pytest.fixture
def own_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_redis_that_refuses_writes_gives_503_and_not_ready(own_redis: RedisServer):
    """Full (maxmemory, noeviction) and read-only (a replica): 503 with Retry-After, never
    500, and /readyz not ready until writes succeed again; /healthz still answers."""
    from redis.asyncio import Redis

    admin = Redis.from_url(own_redis.url)
    app = create_app(settings_for(own_redis.url))
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as api,
        ):
            task = {"goal": "Write a note", "workspace_id": "w"}
            assert (await api.post("/tasks", json=task)).status_code == 202
            assert (await api.get("/readyz")).status_code == 200
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", "1")  # already above it: every write is refused
            for refused in ("full", "read-only"):
                r = await api.post("/tasks", json=task)
                assert r.status_code == 503, (refused, r.status_code, r.text)
                assert r.headers["retry-after"].isdigit()
                ready = await api.get("/readyz")
                assert ready.status_code == 503 and ready.headers["retry-after"], refused
                assert (await api.get("/healthz")).status_code == 200
                await admin.config_set("maxmemory", "0")
                await admin.replicaof("127.0.0.1", str(free_port()))  # a master that is not there
            await admin.replicaof("NO", "ONE")
            assert (await api.get("/readyz")).status_code == 200
            assert (await api.post("/tasks", json=task)).status_code == 202
    finally:
        await admin.aclose()
