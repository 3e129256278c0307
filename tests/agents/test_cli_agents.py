"""`raptorflow agents register|list|show|remove` against a real gateway."""

from __future__ import annotations

import asyncio
import json
import uuid

from typer.testing import CliRunner

from raptorflow.cli import app
from raptorflow.stack import LocalStack
from shared.stores import agent_registry
from tests.helpers import settings_for


async def test_agents_cli_register_list_show_remove(redis_url, redis, workspace):
    name = f"c_{uuid.uuid4().hex[:8]}"
    async with LocalStack(settings_for(redis_url), with_gateway=True, start_redis=False) as stack:
        env = {"RAPTORFLOW_GATEWAY_URL": stack.gateway_url}

        async def run(*args: str, input: str | None = None):
            return await asyncio.to_thread(
                CliRunner().invoke, app, list(args), env=env, input=input
            )

        spec = json.dumps({"kind": "worker", "task_types": ["research"]})
        done = await run("agents", "register", name, "-w", workspace, "-f", "-", input=spec)
        assert done.exit_code == 0 and "version" in done.output, done.output
        await agent_registry.heartbeat(redis, name, "host-1")
        listed = await run("agents", "list", "-w", workspace)
        assert name in listed.output and "host-1 (live" in listed.output, listed.output
        shown = await run("agents", "show", name, "-w", workspace)
        assert json.loads(shown.output)["spec"]["kind"] == "worker"
        bad = await run("agents", "register", "Bad", "-w", workspace, "-f", "-", input=spec)
        assert bad.exit_code == 1 and "422" in bad.output
        gone = await run("agents", "remove", name, "-w", workspace)
        assert gone.exit_code == 0
        again = await run("agents", "show", name, "-w", workspace)
        assert again.exit_code == 1 and "404" in again.output
