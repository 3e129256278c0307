"""`raptorflow approvals|checkpoints|webhooks` against a real gateway (uvicorn on a free port)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from typer.testing import CliRunner

from raptorflow.cli import app
from raptorflow.stack import LocalStack
from shared.stores import webhooks
from tests.checkpoint_helpers import events_of, gate, submit, wait_pending, wait_status
from tests.helpers import KEYS, eventually, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
DONE = {"completed", "failed"}


@pytest.fixture
async def cli(redis_url, workspace) -> AsyncIterator:
    """Run a CLI command in a thread (it blocks on HTTP) while the gateway serves in this loop."""
    # The webhook URLs below are on 127.0.0.1: the operator allow-list lets them through.
    settings = settings_for(
        redis_url, api_keys=f"k-alice={workspace}:alice", egress_allow="127.0.0.1"
    )
    async with LocalStack(settings, with_gateway=True, start_redis=False) as stack:
        env = {"RAPTORFLOW_GATEWAY_URL": stack.gateway_url, "RAPTORFLOW_API_KEY": "k-alice"}

        async def run(*args: str, input: str | None = None):
            return await asyncio.to_thread(
                CliRunner().invoke, app, list(args), env=env, input=input
            )

        yield run


async def test_checkpoints_set_show_then_list_show_changes_approve_and_audit(cli, redis, workspace):
    config = gate(workspace, "research").model_dump(mode="json")
    del config["workspace_id"]
    result = await cli("checkpoints", "set", "-", "-w", workspace, input=json.dumps(config))
    assert result.exit_code == 0, result.output
    shown = await cli("checkpoints", "show", "-w", workspace)
    assert json.loads(shown.output)["checkpoints"][0]["name"] == "review"

    task_id = await submit(redis, workspace)
    (pending,) = await wait_pending(redis, workspace)
    listed = await cli("approvals", "list", "-w", workspace, "--json")
    assert [a["approval_id"] for a in json.loads(listed.output)] == [pending.approval_id]
    table = await cli("approvals", "list", "-w", workspace)
    assert "review" in table.output and "research" in table.output
    one = await cli("approvals", "show", pending.approval_id, "-w", workspace)
    assert json.loads(one.output)["stage_output"]

    changes = await cli(
        "approvals", "changes", pending.approval_id, "-w", workspace, "-c", "Add a 2024 source"
    )
    assert changes.exit_code == 0 and "changes_requested by alice" in changes.output
    conflict = await cli("approvals", "approve", pending.approval_id, "-w", workspace)
    assert conflict.exit_code == 1 and "409" in conflict.output

    async def revision():
        listed = await cli("approvals", "list", "-w", workspace, "--json")
        rows = json.loads(listed.output)
        return rows if rows and rows[0]["approval_id"] != pending.approval_id else None

    (second,) = await eventually(revision, 30)
    approved = await cli("approvals", "approve", second["approval_id"], "-w", workspace)
    assert approved.exit_code == 0 and "approved by alice" in approved.output
    assert await wait_status(redis, workspace, task_id, DONE) == "completed"

    trail = await cli("approvals", "audit", task_id, "-w", workspace, "--json")
    kinds = [(e["kind"], e["data"].get("decision")) for e in json.loads(trail.output)]
    assert kinds == [
        ("evaluation", None),
        ("decision", "changes_requested"),
        ("evaluation", None),
        ("decision", "approved"),
    ]
    text = await cli("approvals", "audit", task_id, "-w", workspace)
    assert "pending_approval" in text.output and "by alice" in text.output


async def test_reject_with_reason_and_impersonation_refused(cli, redis, workspace):
    task_id = await submit(redis, workspace, checkpoints=gate(workspace, "research"))
    (pending,) = await wait_pending(redis, workspace)
    impostor = await cli("approvals", "reject", pending.approval_id, "-w", workspace, "--by", "eve")
    assert impostor.exit_code == 1 and "403" in impostor.output
    rejected = await cli(
        "approvals", "reject", pending.approval_id, "-w", workspace, "-r", "wrong audience"
    )
    assert rejected.exit_code == 0, rejected.output
    assert await wait_status(redis, workspace, task_id, DONE) == "failed"
    (resolved,) = await events_of(redis, "ApprovalResolved", task_id)
    assert resolved["payload"]["reason"] == "wrong audience"


async def test_webhooks_set_generates_a_secret_once_and_show_hides_it(cli, redis, workspace):
    created = await cli("webhooks", "set", "-w", workspace, "--url", "http://127.0.0.1:9/hook")
    assert created.exit_code == 0, created.output
    secret = json.loads(created.output)["secret"]
    assert secret.startswith("whsec_")
    stored = await webhooks.load_config(redis, KEYS, workspace)
    assert stored is not None and stored.secret.get_secret_value() == secret
    again = await cli("webhooks", "set", "-w", workspace, "--url", "http://127.0.0.1:9/other")
    assert json.loads(again.output)["secret"] is None
    shown = await cli("webhooks", "show", "-w", workspace)
    assert secret not in shown.output and "other" in shown.output
