"""Worker agents end to end on a real Redis: a stage run by an external worker, critiqued,
revised and completed; a killed worker's attempt reclaimed by another replica; an agent that
never answers retried, then the task fails `agent_timeout`; garbage answers dead-lettered;
the selector passing over an agent with no live worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from raptorflow.agent_sdk import GROUP, AgentDefinition, AgentRequest, Worker, agent
from raptorflow.stack import LocalStack, wait_for_task
from shared.contract.events import (
    AgentResult,
    TaskRequested,
    agent_channel,
    new_envelope,
)
from shared.domain.catalog import AgentSpec
from shared.messaging.bus import publish
from shared.stores import agent_registry
from tests.agents.sample_agents import improving_answer
from tests.helpers import PLAIN, events_of_task, eventually, settings_for


def _name() -> str:
    return f"w_{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def running_stack(redis_url: str) -> AsyncIterator[LocalStack]:
    async with LocalStack(settings_for(redis_url), start_redis=False) as stack:
        yield stack


async def register(stack: LocalStack, workspace: str, name: str, **fields: Any) -> AgentSpec:
    assert stack.deps is not None
    spec = AgentSpec.model_validate(
        {"name": name, "kind": "worker", "task_types": ["research"], **fields}
    )
    return await agent_registry.put_agent(stack.deps.redis, stack.deps.catalog, spec, workspace)


async def submit(
    redis: Redis, workspace: str, agents: list[str], goal: str = "Research AI trends"
) -> str:
    event = new_envelope(TaskRequested(goal=goal, agent_sequence=agents), workspace_id=workspace)
    await publish(redis, PLAIN, [event])
    return event.correlation_id


@contextlib.asynccontextmanager
async def worker_running(
    definition: AgentDefinition, redis: Redis, **kw: Any
) -> AsyncIterator[Worker]:
    worker = Worker(definition, redis, PLAIN, **kw)
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: agent_registry.live_workers(redis, [definition.name]), 10)
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def test_worker_agent_runs_a_stage_critiqued_revised_and_completed(
    redis_url, redis, workspace
):
    name = _name()
    seen: list[AgentRequest] = []

    @agent(name)
    async def improving(request: AgentRequest) -> str:
        seen.append(request)
        return improving_answer(request)

    async with running_stack(redis_url) as stack:
        await register(stack, workspace, name)
        async with worker_running(improving, redis):
            task_id = await submit(redis, workspace, [name])
            view = await wait_for_task(stack.deps, workspace, task_id, timeout=60)
    assert view["status"] == "completed", view
    assert len(seen) >= 2 and seen[0].draft is None
    revision = seen[1]
    assert revision.draft is not None and revision.draft.startswith("Some notes")
    assert revision.issues and revision.iteration == 2  # the critic's numbered issues
    events = await events_of_task(redis, task_id)
    types = [e["type"] for e in events]
    assert types.count("StageCompleted") == 1 and types.count("CritiqueDone") >= 2
    completed = next(e for e in events if e["type"] == "StageCompleted")["payload"]
    assert completed["agent"] == name and completed["self_correction_metadata"]["attempts"] >= 2
    assert completed["workflow"]["usage"]["api_calls"] >= 4  # two worker attempts + critiques


async def test_killed_worker_attempt_is_reclaimed_and_the_stage_completes_once(
    redis_url, redis, workspace
):
    name = _name()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "RF_TEST_AGENT": name,
        "RAPTORFLOW_AGENT_CLAIM_IDLE_MS": "1000",
    }
    async with running_stack(redis_url) as stack:
        await register(stack, workspace, name, timeout_s=60)
        stuck = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "raptorflow.cli", "agent", "serve",
            "tests.agents.sample_agents:stuck_once",
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await eventually(lambda: agent_registry.live_workers(redis, [name]), 30)
            task_id = await submit(redis, workspace, [name])
            await eventually(lambda: redis.keys(f"rf:test:started:{task_id}/*"), 30)
        finally:
            stuck.send_signal(signal.SIGKILL)
            await stuck.wait()

        @agent(name)
        async def replacement(request: AgentRequest) -> str:
            return improving_answer(request)

        async with worker_running(replacement, redis, claim_idle_ms=1000) as worker:
            view = await wait_for_task(stack.deps, workspace, task_id, timeout=60)
    assert view["status"] == "completed", view
    assert worker.handled >= 1
    types = [e["type"] for e in await events_of_task(redis, task_id)]
    assert types.count("StageCompleted") == 1 and types.count("TaskCompleted") == 1


async def test_an_agent_that_never_answers_is_retried_then_the_task_fails_agent_timeout(
    redis_url, redis, workspace
):
    name = _name()
    async with running_stack(redis_url) as stack:
        await register(stack, workspace, name, timeout_s=0.3, max_attempts=2)
        await agent_registry.heartbeat(redis, name, "silent-replica")  # live, but never reads
        task_id = await submit(redis, workspace, [name])
        view = await wait_for_task(stack.deps, workspace, task_id, timeout=60)
    assert view["status"] == "failed", view
    events = await events_of_task(redis, task_id)
    failed = next(e for e in events if e["type"] == "TaskFailed")["payload"]
    assert failed["reason"] == "agent_timeout" and "2 attempt(s)" in failed["error"]
    invocations = await redis.xrange(PLAIN.stream(agent_channel(name), workspace))
    attempts = [json.loads(f[b"__data__"])["payload"]["attempt"] for _, f in invocations]
    assert [a for a in attempts] == [1, 2]


async def test_a_garbage_answer_is_dead_lettered_and_the_attempt_retried(
    redis_url, redis, workspace
):
    name = _name()
    stream = PLAIN.stream(agent_channel(name), workspace)
    async with running_stack(redis_url) as stack:
        await register(stack, workspace, name, timeout_s=1.0, max_attempts=3)
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        await agent_registry.heartbeat(redis, name, "garbage-replica")
        task_id = await submit(redis, workspace, [name])

        async def read_one() -> Any:
            reply = await redis.xreadgroup(GROUP, "garbage", {stream: ">"}, count=1, block=100)
            return reply or None

        reply = await eventually(read_one, 30)
        message_id, fields = reply[0][1][0]
        invocation = json.loads(fields[b"__data__"])
        garbage = {
            **invocation,
            "type": "AgentResult",
            "event_id": str(uuid.uuid4()),
            "payload": {
                "invocation_id": invocation["payload"]["invocation_id"],
                "agent": name,
                "output": 42,
                "bogus": True,
            },
        }
        await redis.xadd(invocation["payload"]["reply_to"], {"__data__": json.dumps(garbage)})
        await redis.xack(stream, GROUP, message_id)

        @agent(name)
        async def honest(request: AgentRequest) -> str:
            return improving_answer(request)

        async with worker_running(honest, redis):
            view = await wait_for_task(stack.deps, workspace, task_id, timeout=60)
    assert view["status"] == "completed", view
    letters = await redis.xrange(PLAIN.dead_letters()[0])
    mine = [f for _, f in letters if task_id.encode() in f[b"__data__"]]
    assert mine and mine[0][b"stream"] == PLAIN.stream(AgentResult.event_type, workspace).encode()
    assert mine[0][b"reason"] == b"invalid" and b"output" in mine[0][b"error"]


async def test_the_selector_passes_over_an_agent_with_no_live_worker(redis_url, redis, workspace):
    name = _name()
    async with running_stack(redis_url) as stack:
        await register(stack, workspace, name)  # never started: no heartbeat
        task_id = await submit(redis, workspace, [name])
        view = await wait_for_task(stack.deps, workspace, task_id, timeout=60)
    assert view["status"] == "completed", view
    assigned = next(e for e in await events_of_task(redis, task_id) if e["type"] == "StageAssigned")
    assert assigned["payload"]["agent"] != name
    assert assigned["payload"]["selection"]["skipped"] == {name: "no live worker"}


@pytest.mark.parametrize("bad", ["not json", json.dumps({"type": "AgentInvoked"})])
async def test_a_worker_drops_an_invalid_invocation(redis, bad):
    name = _name()

    @agent(name)
    async def never(request: AgentRequest) -> str:
        raise AssertionError("must not be called")

    stream = PLAIN.stream(agent_channel(name), "ws")
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    await redis.xadd(stream, {"__data__": bad})
    async with worker_running(never, redis):

        async def acked() -> bool:
            info = await redis.xpending(stream, GROUP)
            return info["pending"] == 0 and (await redis.xinfo_groups(stream))[0]["lag"] == 0

        await eventually(acked, 10)


async def test_a_raw_worker_written_from_the_docs_with_only_the_required_fields(
    redis_url, redis, workspace
):
    """docs/agents.md sections 2-5 with plain Redis commands, no SDK: the minimal answer."""
    name = _name()
    stream = PLAIN.stream(agent_channel(name), workspace)
    async with running_stack(redis_url) as stack:
        await register(stack, workspace, name)
        with contextlib.suppress(Exception):
            await redis.xgroup_create(stream, "workers", id="0", mkstream=True)
        await redis.zadd(f"rf:agent:replicas:{name}", {"raw-1": int(time.time() * 1000)})
        task_id = await submit(redis, workspace, [name])
        answered = 0
        while answered < 5:
            reply = await redis.xreadgroup("workers", "raw-1", {stream: ">"}, count=1, block=200)
            view = await redis.hget(f"rf:ws:{workspace}:task:{task_id}", "status")
            if not reply:
                if view in (b"completed", b"failed"):
                    break
                continue
            message_id, fields = reply[0][1][0]
            env = json.loads(fields[b"__data__"])
            inv = env["payload"]
            output = improving_answer(
                AgentRequest(invocation_id=inv["invocation_id"], agent=name, task_id=task_id,
                             workspace_id=workspace, goal=inv["stage_input"]["goal"],
                             draft=inv["draft"], issues=inv["issues"], deadline=inv["deadline"])
            )  # fmt: skip
            result = {
                "type": "AgentResult",
                "correlation_id": env["correlation_id"],
                "workspace_id": env["workspace_id"],
                "context": env["context"],
                "payload": {"invocation_id": inv["invocation_id"], "agent": name, "output": output},
            }
            async with redis.pipeline(transaction=True) as tx:
                tx.xadd(inv["reply_to"], {"__data__": json.dumps(result)})
                tx.xack(stream, "workers", message_id)
                await tx.execute()
            answered += 1
        view = await wait_for_task(stack.deps, workspace, task_id, timeout=60)
    assert view["status"] == "completed", view
    assert answered >= 2
