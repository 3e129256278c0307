"""What the console's pages cost to render, against how much is in the streams.

The task list reads the last 2,000 TaskRequested entries (`reader.LIST_SCAN`) and joins each
of the workspace's tasks' status views; a task's page reads every event stream from the
task's creation on (at most 2,000 entries each). This fills an embedded Redis with
`--tasks` tasks split over two workspaces (each with a TaskRequested, a SequenceChosen,
three CritiqueDone and a TaskCompleted entry, and its status view), then times the
list, a filtered list, one task's page and the workspace page through the real app.

    .venv/bin/python bench/console_pages.py            # 4,000 tasks
    .venv/bin/python bench/console_pages.py --quick    # 500 tasks
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from raptorflow.redis_server import RedisServer  # noqa: E402
from services.gateway.app import create_app  # noqa: E402
from shared.app.runtime import build_deps  # noqa: E402
from shared.contract.keys import Keys  # noqa: E402
from shared.contract.topology import Topology  # noqa: E402
from shared.settings import Settings  # noqa: E402

WORKSPACES = ("bench-a", "bench-b")

PLAIN = Topology()  # the single-Redis layout this benchmark runs
KEYS = Keys(PLAIN)


def entry(kind: str, task_id: str, workspace: str, payload: dict[str, Any]) -> dict[str, str]:
    body = {"type": kind, "event_id": str(uuid.uuid4()), "correlation_id": task_id,
            "workspace_id": workspace, "occurred_at": "2026-01-01T00:00:00Z", "payload": payload}
    return {"__data__": json.dumps(body)}


async def fill(redis: Redis, tasks: int) -> list[str]:
    """Stream entries and status views of `tasks` tasks, alternating workspaces."""
    ids = []
    now = time.time()
    wf = {"stage_index": 0, "agent_sequence": ["content", "blog_writer"],
          "routing": {"source": "planner"}}
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(tasks):
            ws, task_id = WORKSPACES[n % 2], str(uuid.uuid4())
            ids.append(task_id)
            pipe.xadd(PLAIN.stream("TaskRequested"), entry("TaskRequested", task_id, ws, {"goal": f"Goal {n}"}))
            pipe.xadd(PLAIN.stream("SequenceChosen"), entry("SequenceChosen", task_id, ws, {"workflow": wf}))
            for i in range(3):
                pipe.xadd(PLAIN.stream("CritiqueDone"), entry("CritiqueDone", task_id, ws, {
                    "stage_index": 0, "iteration": i + 1, "score": 0.6 + 0.1 * i, "threshold": 0.8,
                    "aspect_scores": {"clarity": 0.5 + 0.1 * i, "accuracy": 0.7}, "issues": []}))
            pipe.xadd(PLAIN.stream("TaskCompleted"), entry("TaskCompleted", task_id, ws, {"success": True}))
            pipe.hset(KEYS.task_view(ws, task_id), mapping={
                "status": "completed", "goal": f"Goal {n} about things", "created_at": str(now - 1),
                "updated_at": str(now), "routing_source": "planner", "routing_confidence": "0.1",
                "agent_sequence": json.dumps(wf["agent_sequence"]), "execution_time_s": "1.0",
                "usage": json.dumps({"api_calls": 9, "cost_usd": 0.001})})
        await pipe.execute()
    return ids


async def timed(client: httpx.AsyncClient, url: str, runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        reply = await client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert reply.status_code == 200, (url, reply.status_code)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


async def run(tasks: int, runs: int) -> dict[str, Any]:
    server = RedisServer().start()
    try:
        settings = Settings(llm_provider="offline").model_copy(
            update={"redis_url": SecretStr(server.url)})
        deps = await build_deps(settings)
        ids = await fill(deps.redis, tasks)
        app = create_app(settings, deps)
        app.state.deps = deps
        ws = WORKSPACES[0]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            out = {"tasks": tasks, "runs": runs}
            out["list"] = await timed(c, f"/ui/tasks?workspace_id={ws}", runs)
            out["list_filtered"] = await timed(c, f"/ui/tasks?workspace_id={ws}&q=goal+1&status=completed", runs)
            out["task_newest"] = await timed(c, f"/ui/tasks/{ids[-2]}?workspace_id={ws}", runs)
            out["workspace"] = await timed(c, f"/ui/workspace?workspace_id={ws}", runs)
        await deps.close()
        return out
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.runs = 500, 5
    print(json.dumps(asyncio.run(run(args.tasks, args.runs)), indent=2))


if __name__ == "__main__":
    main()
