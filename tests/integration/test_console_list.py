"""The console's task list over many tasks: newest first, 25 a page, filters over all of
them, and never another workspace's task (no services needed: the entries and views are
written as the pipeline would)."""

from __future__ import annotations

import json
import re
import time

import httpx

from services.gateway.app import create_app
from shared.app.runtime import build_deps
from shared.contract.events import TaskRequested, new_envelope
from shared.contract.models import AgentContext
from tests.helpers import KEYS, PLAIN, settings_for


async def add_task(redis, workspace: str, goal: str, status: str, source: str) -> str:
    event = new_envelope(TaskRequested(goal=goal), workspace_id=workspace,
                         context=AgentContext(workspace_id=workspace))
    await redis.xadd(PLAIN.stream_of(event), {"__data__": event.model_dump_json()})
    await redis.hset(KEYS.task_view(workspace, event.correlation_id), mapping={
        "status": status, "goal": goal, "created_at": str(time.time()),
        "routing_source": source, "agent_sequence": json.dumps(["content"])})
    return event.correlation_id


async def test_paging_filters_and_isolation(redis_url, redis, workspace):
    other = f"{workspace}-x"
    mine = [await add_task(redis, workspace, f"Goal number {n}", "completed" if n % 3 else "failed",
                           "memory" if n < 4 else "planner") for n in range(30)]
    theirs = [await add_task(redis, other, f"Goal number {n}", "completed", "memory") for n in range(5)]
    deps = await build_deps(settings_for(redis_url))
    app = create_app(deps.settings, deps)
    app.state.deps = deps
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            first = (await c.get("/ui/tasks", params={"workspace_id": workspace})).text
            second = (await c.get("/ui/tasks", params={"workspace_id": workspace, "page": 2})).text
            failed = (await c.get("/ui/tasks", params={"workspace_id": workspace, "status": "failed"})).text
            found = (await c.get("/ui/tasks", params={"workspace_id": workspace, "q": "NUMBER 2",
                                                      "source": "planner"})).text
    finally:
        await deps.close()

    def ids(html: str) -> list[str]:
        return re.findall(r'data-task-id="([^"]+)"', html)

    assert ids(first) == mine[::-1][:25] and "page 1 of 2" in first and 'id="older"' in first
    assert ids(second) == mine[::-1][25:] and "page 2 of 2" in second
    assert ids(failed) == [t for n, t in enumerate(mine) if n % 3 == 0][::-1]
    assert set(ids(found)) == {mine[n] for n in (2, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29) if n >= 4}
    assert not {*theirs} & {*ids(first), *ids(second), *ids(failed), *ids(found)}
