"""Durable approvals with real processes: SIGKILL the checkpoint service while it waits.

The stream services run as separate OS processes (`python -m services.NAME`);
the checkpoint service is killed and restarted while an approval is pending,
and while its deadline passes, with one and with two replicas.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from services.gateway.app import create_app
from shared.app.runtime import build_deps
from shared.contract.models import TimeoutOutcome
from shared.stores import approvals
from tests.checkpoint_helpers import (
    events_of,
    gate,
    submit,
    wait_past,
    wait_pending,
    wait_status,
)
from tests.helpers import KEYS, settings_for
from tests.procs import ProcessGroup, service_processes

pytestmark = [pytest.mark.fault, pytest.mark.slow]

SWEEP_GRACE_S = 2.5  # more than two sweeps of the checkpoint service (1 s apart)


@pytest.fixture(scope="module")
def workers(redis_url: str) -> Iterator[ProcessGroup]:
    """Router, selector, corrector and memory as processes, for the whole module."""
    with service_processes(redis_url, "router", "selector", "corrector", "memory", "agents") as group:
        yield group


@pytest.fixture
def checkpoints(redis_url: str) -> Iterator[ProcessGroup]:
    """The checkpoint service's processes of one test (started by the test)."""
    with service_processes(redis_url) as group:
        yield group


async def _holds_for(probe, duration: float) -> None:
    """Assert `probe` stays true for `duration` seconds (used to prove nothing fires twice)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert await probe()
        await asyncio.sleep(0.1)


async def test_killed_while_pending_then_restarted_and_approved_via_gateway(
    workers, checkpoints, redis_url, redis, workspace
):
    (first,) = checkpoints.start("checkpoint")
    task_id = await submit(redis, workspace, checkpoints=gate(workspace, "research"))
    (pending,) = await wait_pending(redis, workspace)

    assert first.kill() == -9
    checkpoints.start("checkpoint")

    settings = settings_for(redis_url, api_keys=f"k-alice={workspace}:alice")
    deps = await build_deps(settings)
    app = create_app(settings, deps)
    app.state.deps = deps
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as client:
        response = await client.post(
            f"/approvals/{pending.approval_id}/decision",
            json={"workspace_id": workspace, "decision": "approved"},
            headers={"X-API-Key": "k-alice"},
        )
    await deps.close()
    assert response.status_code == 200, response.text
    assert response.json()["decided_by"] == "alice"

    assert await wait_status(redis, workspace, task_id, {"completed"}) == "completed"
    (resolved,) = await events_of(redis, "ApprovalResolved", task_id)
    assert resolved["payload"]["decided_by"] == "alice"
    assert len(await events_of(redis, "TaskCompleted", task_id)) == 1


async def test_deadline_passes_while_down_and_fires_once_after_restart(
    workers, checkpoints, redis, workspace
):
    (first,) = checkpoints.start("checkpoint")
    task_id = await submit(redis, workspace, checkpoints=gate(workspace, "research", timeout=1))
    (pending,) = await wait_pending(redis, workspace)
    first.kill()

    await wait_past(pending.deadline + 0.5)
    record = await approvals.get_approval(redis, KEYS, workspace, pending.approval_id)
    assert record.status == "pending", "nothing may decide while the service is down"

    checkpoints.start("checkpoint")
    assert await wait_status(redis, workspace, task_id, {"failed"}) == "failed"

    async def exactly_once() -> bool:
        resolved = await events_of(redis, "ApprovalResolved", task_id)
        failed = await events_of(redis, "TaskFailed", task_id)
        return len(resolved) == 1 and len(failed) == 1

    await _holds_for(exactly_once, SWEEP_GRACE_S)
    (resolved,) = await events_of(redis, "ApprovalResolved", task_id)
    assert resolved["payload"]["expired"] is True
    assert resolved["payload"]["decided_by"] == "system:timeout"
    (failed,) = await events_of(redis, "TaskFailed", task_id)
    assert failed["payload"]["reason"] == "expired"
    assert (
        await redis.zscore(KEYS.approval_deadlines(workspace), f"{workspace}|{pending.approval_id}") is None
    )


async def test_two_replicas_race_for_overdue_approvals_and_each_fires_once(
    workers, checkpoints, redis, workspace
):
    (first,) = checkpoints.start("checkpoint")
    config = gate(workspace, "research", timeout=1, on_timeout=TimeoutOutcome.APPROVE)
    task_ids = [await submit(redis, workspace, checkpoints=config) for _ in range(4)]
    pending = await wait_pending(redis, workspace, count=4)
    first.kill()
    await wait_past(max(p.deadline for p in pending) + 0.5)

    checkpoints.start("checkpoint", "checkpoint")
    for task_id in task_ids:
        assert await wait_status(redis, workspace, task_id, {"completed"}, 60) == "completed"

    async def exactly_once() -> bool:
        for task_id in task_ids:
            if len(await events_of(redis, "ApprovalResolved", task_id)) != 1:
                return False
            if len(await events_of(redis, "TaskCompleted", task_id)) != 1:
                return False
        return True

    await _holds_for(exactly_once, SWEEP_GRACE_S)
    for task_id in task_ids:
        (resolved,) = await events_of(redis, "ApprovalResolved", task_id)
        assert resolved["payload"]["decision"] == "approved" and resolved["payload"]["expired"]
