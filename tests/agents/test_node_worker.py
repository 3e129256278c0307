"""The Node.js example worker (examples/node-worker, plain `redis` npm client) end to end:
npm install, run it as a separate process, and a stage runs on it, critiqued and revised."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import pytest

from raptorflow.stack import LocalStack, wait_for_task
from shared.domain.catalog import AgentSpec
from shared.stores import agent_registry
from tests.agents.test_worker_agents import submit
from tests.helpers import events_of_task, eventually, settings_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node-worker"


async def _npm_install(directory: Path) -> str | None:
    """None when installed; else why not (then the test skips, saying so)."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return "node/npm are not installed on this machine"
    proc = await asyncio.create_subprocess_exec(
        npm, "install", "--no-audit", "--no-fund", cwd=directory,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 180)
    except TimeoutError:
        proc.kill()
        return "npm install timed out (registry unreachable?)"
    if proc.returncode != 0:
        text = out.decode(errors="replace")
        if any(s in text for s in ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "network")):
            return f"npm cannot reach the registry: {text[-300:]}"
        pytest.fail(f"npm install failed: {text[-2000:]}")
    return None


async def test_node_worker_runs_a_stage_end_to_end(redis_url, redis, workspace, tmp_path):
    directory = tmp_path / "node-worker"
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns("node_modules"))
    why = await _npm_install(directory)
    if why:
        pytest.skip(why)
    name = f"node_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "REDIS_URL": redis_url, "AGENT_NAME": name, "CLAIM_IDLE_MS": "2000"}
    async with LocalStack(settings_for(redis_url), start_redis=False) as stack:
        assert stack.deps is not None
        spec = AgentSpec(name=name, kind="worker", task_types=["research"])
        await agent_registry.put_agent(redis, stack.deps.catalog, spec, workspace)
        node = await asyncio.create_subprocess_exec(
            "node", "worker.js", cwd=directory, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await eventually(lambda: agent_registry.live_workers(redis, [name]), 30)
            task_id = await submit(redis, workspace, [name])
            view = await wait_for_task(stack.deps, workspace, task_id, timeout=60)
        finally:
            node.terminate()
            await asyncio.wait_for(node.wait(), 15)
    assert view["status"] == "completed", view
    events = await events_of_task(redis, task_id)
    completed = next(e for e in events if e["type"] == "StageCompleted")["payload"]
    assert completed["agent"] == name and completed["provider"] == "node"
    assert completed["self_correction_metadata"]["attempts"] >= 2  # revised with the issues
    assert "fixed 1:" in completed["output"]
    assert await agent_registry.replicas(redis, name) == []  # it said goodbye on SIGTERM
