"""`make run`'s agent flows: a worker agent in its own process, and an llm agent with a tool.

`writer` is also the README's "Write your own agent" example: a worker in a few lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from raptorflow.agent_sdk import AgentRequest, Worker, agent
from shared.domain.catalog import AgentSpec
from shared.stores import agent_registry
from shared.stores.agent_registry import GLOBAL_SCOPE

if TYPE_CHECKING:
    from raptorflow.demo import Demo

WRITER = "demo_writer"
FACTS = "demo_facts"
RESEARCHER = "demo_researcher"


@agent(WRITER)
async def writer(request: AgentRequest) -> str:
    """A first draft, then revisions that fix the critic's numbered issues."""
    if request.draft is None:
        return f"Notes on {request.goal}."
    fixes = "\n".join(f"- fixed {n}: {issue}" for n, issue in enumerate(request.issues, 1))
    return (
        f"# {request.goal}\n\n{request.draft}\n\n## Key points\nThis covers {request.goal}.\n\n"
        "## Sources\n- Industry reports\n\n## Conclusion\nWhat to do next.\n\n"
        f"Call to action: book a demo.\n\n## Changes\n{fixes}\n"
    )


@agent(FACTS)
async def facts(request: AgentRequest) -> str:
    """A tool: what our (pretend) knowledge base says about a query."""
    return f"Knowledge base: '{request.goal}' is trending up 40% year on year."


async def _live(demo: Demo, name: str) -> bool:
    for _ in range(200):
        if await agent_registry.live_workers(demo.deps.redis, [name]):
            return True
        await asyncio.sleep(0.05)
    return False


@contextlib.asynccontextmanager
async def worker_process(demo: Demo) -> AsyncIterator[asyncio.subprocess.Process]:
    """`raptorflow agent serve raptorflow.demo_agents:writer` as a separate process."""
    env = {**os.environ, "REDIS_URL": demo.stack.settings.redis_url_value()}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "raptorflow.cli", "agent", "serve",
        "raptorflow.demo_agents:writer", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield process
    finally:
        process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 15)


async def _register(demo: Demo, **fields: Any) -> None:
    spec = AgentSpec.model_validate(fields)
    # global: each run uses a fresh workspace, and an agent's name is one agent everywhere
    await agent_registry.put_agent(demo.deps.redis, demo.deps.catalog, spec, GLOBAL_SCOPE)


async def flow_worker_agent(demo: Demo) -> None:
    """7. A worker agent in another process is chosen, critiqued, revised and completes."""
    await _register(demo, name=WRITER, kind="worker", task_types=["content_generation"],
                    description="An external writer process (raptorflow.demo_agents:writer).")  # fmt: skip
    async with worker_process(demo) as process:
        live = await _live(demo, WRITER)
        view = await demo.submit("Write about edge AI for retailers", agent_sequence=[WRITER])
        stage = await _stage(demo, view["task_id"])
    meta = stage.get("self_correction_metadata", {})
    ok = (live and view["status"] == "completed" and stage.get("agent") == WRITER
          and meta.get("iterations", 0) >= 2)  # fmt: skip
    demo.say(
        "7. Bring your own agent (a worker process)",
        [
            f"worker process pid {process.pid} registered {WRITER} (kind worker); live: {live}",
            f"explicit sequence ({WRITER}) -> stage run by {stage.get('agent')} "
            f"(provider {stage.get('provider')})",
            f"critique scores per draft {meta.get('iteration_scores')}: the worker got the "
            "numbered issues and revised",
            f"status {view['status']}, quality {float(stage.get('quality', 0)):.2f}",
        ],
        ok,
    )


async def flow_tool(demo: Demo) -> None:
    """8. An llm agent calls a tool (a worker agent on the same protocol)."""
    await _register(demo, name=FACTS, kind="worker", task_types=["research"],
                    description="Looks a query up in the knowledge base.")  # fmt: skip
    await _register(demo, name=RESEARCHER, task_types=["research"], tools=[FACTS],
                    prompt="You are a researcher. Use the knowledge base tool, then summarise.")  # fmt: skip
    worker = Worker(facts, demo.deps.redis, demo.deps.layout)
    running = asyncio.create_task(worker.run())
    try:
        await _live(demo, FACTS)
        view = await demo.submit("Research edge AI chips", agent_sequence=[RESEARCHER])
        stage = await _stage(demo, view["task_id"])
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
    output = str(stage.get("output", ""))
    ok = view["status"] == "completed" and worker.handled >= 1 and "Knowledge base" in output
    demo.say(
        "8. An llm agent with a tool",
        [
            f"{RESEARCHER} (kind llm, tools: {FACTS}) called {FACTS} {worker.handled} time(s)",
            "the draft cites: "
            + next((line for line in output.splitlines() if "Knowledge base" in line), "-"),
            f"status {view['status']}, usage {stage.get('self_correction_metadata', {}).get('usage')}",
        ],
        ok,
    )


async def _stage(demo: Demo, task_id: str) -> dict[str, Any]:
    raw = await demo.deps.redis.hgetall(demo.deps.keys.task_stages(demo.workspace, task_id))
    stages = [json.loads(v) for v in raw.values()]
    return stages[0] if stages else {}
