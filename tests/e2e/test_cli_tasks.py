"""`raptorflow submit --wait` and `raptorflow tasks ...` against a real gateway and services."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from raptorflow.cli import app
from raptorflow.stack import LocalStack
from tests.helpers import settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_submit_wait_summarises_and_tasks_commands_use_the_typed_view(redis_url, workspace):
    settings = settings_for(redis_url)
    async with LocalStack(settings, with_gateway=True, start_redis=False) as stack:
        gw = ["--gateway", stack.gateway_url]
        ws = ["-w", workspace]

        async def cli(*args: str) -> tuple[int, str]:
            result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
            return result.exit_code, result.output

        code, out = await cli("submit", "Create a blog post about AI trends", *ws, "--wait", *gw)
        assert code == 0, out
        assert "completed" in out and "route:" in out and "confidence" in out
        assert "iterations" in out and "cost $" in out

        code, out = await cli("submit", "Write a blog about robots", *ws, "--wait", "--json", *gw)
        assert code == 0, out
        document = json.loads(out[out.index("{"):])
        assert document["status"] == "completed" and isinstance(document["stages"], list)
        task_id = document["task_id"]

        code, out = await cli("tasks", "list", *ws, "--json", *gw)
        page = json.loads(out)
        assert code == 0 and page["tasks"][0]["task_id"] == task_id
        code, out = await cli("tasks", "list", *ws, *gw)
        assert code == 0 and task_id in out
        code, out = await cli("tasks", "show", task_id, *ws, *gw)
        assert code == 0 and task_id in out and "completed" in out
        code, out = await cli("tasks", "cancel", task_id, *ws, *gw)
        assert code == 1 and "409" in out
        code, out = await cli("tasks", "rerun", task_id, *ws, "--json", *gw)
        assert code == 0 and json.loads(out)["task_id"] != task_id
        code, out = await cli("tasks", "resume", task_id, *ws, *gw)
        assert code == 1 and "409" in out
