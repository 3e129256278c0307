"""The console over real HTTP (a running gateway): keys and cookies, CSRF and Origin, pages,
workspace isolation in pages and in the SSE stream. The browser tests are in test_console_browser."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from raptorflow.stack import LocalStack
from shared.messaging import dead_letters
from tests.checkpoint_helpers import gate, wait_pending, wait_status
from tests.e2e.console_helpers import csrf_of, request_task
from tests.helpers import KEYS, PLAIN, eventually, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
DONE = {"completed", "failed"}


@pytest.fixture
async def stack(redis_url, workspace):
    keys = f"k-a={workspace}:alice,k-b={workspace}-other,k-admin=*"
    settings = settings_for(redis_url, api_keys=keys)
    async with LocalStack(settings, with_gateway=True, start_redis=False) as running:
        yield running


def client_for(stack: LocalStack, key: str | None = None) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=stack.gateway_url, timeout=30)
    if key:
        client.cookies.set("raptorflow_key", key)
    return client


async def test_key_is_checked_before_it_becomes_a_cookie(stack, workspace):
    async with client_for(stack) as client:
        locked = await client.get("/ui/tasks", params={"workspace_id": workspace})
        assert locked.status_code == 401 and 'name="key"' in locked.text
        for wrong in ("nope", "k-b"):
            refused = await client.get("/ui/tasks", params={"workspace_id": workspace, "key": wrong})
            assert refused.status_code == 401 and "set-cookie" not in refused.headers
        page = await client.get("/ui/approvals", params={"workspace_id": workspace, "key": "nope"})
        assert page.status_code == 401 and "set-cookie" not in page.headers
        opened = await client.get("/ui/tasks", params={"workspace_id": workspace, "key": "k-a"})
        assert opened.status_code == 303 and "key=" not in opened.headers["location"]
        cookie = opened.headers["set-cookie"]
        assert "raptorflow_key=k-a" in cookie and "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()


async def test_pages_forms_and_isolation(stack, redis, workspace):
    first = await request_task(redis, workspace)
    assert await wait_status(redis, workspace, first, DONE, timeout=120) == "completed"
    task_id = await request_task(redis, workspace, checkpoints=gate(workspace, None))
    (pending,) = await wait_pending(redis, workspace)
    async with client_for(stack, "k-a") as alice, client_for(stack, "k-b") as other:
        listing = await alice.get("/ui/tasks", params={"workspace_id": workspace})
        assert listing.status_code == 200 and first in listing.text and task_id in listing.text
        found = await alice.get("/ui/tasks", params={"workspace_id": workspace, "q": "nothing like it"})
        assert first not in found.text
        await poison(redis, workspace, first)
        page = await alice.get(f"/ui/tasks/{first}", params={"workspace_id": workspace})
        assert page.status_code == 200
        for shown in ("TaskRequested", "SequenceChosen", "CritiqueDone", "TaskCompleted", "<svg",
                      'id="dead-letters"', "invalid"):
            assert shown in page.text, shown
        ws_page = await alice.get("/ui/workspace", params={"workspace_id": workspace})
        assert ws_page.status_code == 200 and "reliability diagram" in ws_page.text

        # another workspace's key: refused on the page, and the task is unknown in its own
        assert (await other.get("/ui/tasks", params={"workspace_id": workspace})).status_code == 403
        theirs = await other.get(f"/ui/tasks/{first}", params={"workspace_id": f"{workspace}-other"})
        assert theirs.status_code == 404 and "Write a blog post" not in theirs.text
        own = await other.get("/ui/tasks", params={"workspace_id": f"{workspace}-other"})
        assert first not in own.text and task_id not in own.text

        gated = await alice.get(f"/ui/tasks/{task_id}", params={"workspace_id": workspace})
        token = csrf_of(gated.text)
        action = f"/ui/tasks/{task_id}/approvals/{pending.approval_id}/decide"
        form = {"workspace_id": workspace, "action": "approve", "csrf_token": token}
        own_origin = {"Origin": stack.gateway_url}
        assert (await alice.post(action, data=form)).status_code == 403, "no Origin"
        evil = {"Origin": "http://evil.example"}
        assert (await alice.post(action, data=form, headers=evil)).status_code == 403
        forged = {**form, "csrf_token": "0" * 64}
        assert (await alice.post(action, data=forged, headers=own_origin)).status_code == 403
        assert (await other.post(action, data=form, headers=own_origin)).status_code == 403
        done = await alice.post(action, data=form, headers=own_origin)
        assert done.status_code == 303 and "approved+by+alice" in done.headers["location"]
        again = await alice.post(action, data=form, headers=own_origin)
        assert again.status_code == 409 and "already approved" in again.text
    assert await wait_status(redis, workspace, task_id, DONE | {"awaiting_approval"}) != "failed"


async def poison(redis, workspace: str, task_id: str) -> None:
    """An unreadable StageCompleted of the task: a service dead-letters it."""
    body = {"type": "StageCompleted", "correlation_id": task_id, "workspace_id": workspace,
            "payload": {"nonsense": True}}
    await redis.xadd(PLAIN.stream("StageCompleted", workspace), {"__data__": json.dumps(body)})

    async def lettered() -> bool:
        letters = await dead_letters.list_letters(redis, PLAIN, workspace_id=workspace)
        return any(task_id in letter.data.decode() for letter in letters)

    await eventually(lettered, timeout=60)


async def _frames(client: httpx.AsyncClient, workspace: str, seen: list[dict], stop: asyncio.Event):
    async with client.stream("GET", "/ui/events", params={"workspace_id": workspace}) as reply:
        assert reply.status_code == 200
        async for line in reply.aiter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
            if stop.is_set():
                return


async def test_event_stream_carries_only_its_workspace(stack, redis, workspace):
    other_ws = f"{workspace}-other"
    seen_b: list[dict] = []
    stop = asyncio.Event()
    async with client_for(stack, "k-b") as other:
        listener = asyncio.create_task(_frames(other, other_ws, seen_b, stop))
        await asyncio.sleep(0.5)  # the stream is open before anything is published
        mine = await request_task(redis, workspace)
        theirs = await request_task(redis, other_ws)
        assert await wait_status(redis, workspace, mine, DONE)
        assert await wait_status(redis, other_ws, theirs, DONE)
        for _ in range(100):
            if any(f["status"] == "completed" for f in seen_b):
                break
            await asyncio.sleep(0.1)
        stop.set()
        listener.cancel()
    ids = {f["task_id"] for f in seen_b}
    assert ids == {theirs}, ids
    assert {"requested", "running", "completed"} <= {f["status"] for f in seen_b}


async def test_admin_key_gets_the_picker_and_a_workspace_key_goes_straight_in(
    stack, redis, workspace
):
    task_id = await request_task(redis, workspace)
    await wait_status(redis, workspace, task_id, DONE, timeout=120)
    async with client_for(stack, "k-admin") as admin, client_for(stack, "k-a") as alice:
        picker = await admin.get("/ui")
        assert picker.status_code == 200 and f'href="/ui/tasks?workspace_id={workspace}"' in picker.text
        theirs = await admin.get("/ui/tasks", params={"workspace_id": workspace})
        assert theirs.status_code == 200 and task_id in theirs.text and 'id="picker"' in theirs.text
        straight = await alice.get("/ui")
        assert straight.status_code == 303
        assert straight.headers["location"] == f"/ui/tasks?workspace_id={workspace}"


async def test_without_keys_the_forms_use_a_session_cookie(redis_url, redis, workspace):
    from shared.domain.experiments import ExperimentSpec
    from shared.stores import experiment_store

    settings = settings_for(redis_url)
    async with LocalStack(settings, with_gateway=True, start_redis=False) as running:
        experiment = await experiment_store.create(redis, KEYS, workspace, ExperimentSpec(
            name="e", goal_pattern="x", arm_a=["content"], arm_b=["research"]))
        action = f"/ui/workspace/experiments/{experiment.experiment_id}/stop"
        async with client_for(running) as browser:
            page = await browser.get("/ui/workspace", params={"workspace_id": workspace})
            assert "raptorflow_session" in page.headers["set-cookie"]
            form = {"workspace_id": workspace, "csrf_token": csrf_of(page.text)}
            own = {"Origin": running.gateway_url}
            assert (await browser.post(action, data=form)).status_code == 403
            async with client_for(running) as stranger:  # the token without its cookie
                assert (await stranger.post(action, data=form, headers=own)).status_code == 403
            done = await browser.post(action, data=form, headers=own)
            assert done.status_code == 303 and "stopped" in done.headers["location"]
    (stopped,) = await experiment_store.list_all(redis, KEYS, workspace)
    assert stopped.status == "stopped"


async def test_workspace_page_shows_live_worker_agents_of_its_workspace_only(
    stack, redis, workspace
):
    from shared.domain.catalog import AgentSpec
    from shared.stores import agent_registry

    name = f"w{workspace.replace('-', '_')}"[:40]
    spec = AgentSpec(name=name, kind="worker", task_types=["research"])
    await agent_registry.put_agent(redis, stack.deps.catalog, spec, workspace)
    await agent_registry.heartbeat(redis, name, "host-1")
    try:
        async with client_for(stack, "k-a") as alice, client_for(stack, "k-b") as other:
            page = await alice.get("/ui/workspace", params={"workspace_id": workspace})
            assert page.status_code == 200
            assert 'id="live-agents"' in page.text and name in page.text
            assert "<code>host-1</code>" in page.text
            theirs = await other.get("/ui/workspace", params={"workspace_id": f"{workspace}-other"})
            assert theirs.status_code == 200 and name not in theirs.text
    finally:
        await agent_registry.delete_agent(redis, name, workspace)
