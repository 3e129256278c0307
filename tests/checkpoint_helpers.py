"""Test helpers for checkpoints: gate a task, find its approvals, read its events."""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

from shared.contract.events import TaskRequested, new_envelope
from shared.contract.models import (
    AgentContext,
    CheckpointCondition,
    TimeoutOutcome,
    WorkflowCheckpoint,
    WorkflowCheckpoints,
)
from shared.messaging.bus import publish
from shared.stores import approvals
from tests.helpers import KEYS, PLAIN, eventually

SEQUENCE = ["research", "content"]


def gate(
    workspace: str,
    stage: str | None = "research",
    *,
    condition: CheckpointCondition = CheckpointCondition.AFTER_STAGE,
    timeout: int | None = None,
    on_timeout: TimeoutOutcome = TimeoutOutcome.REJECT,
    rules: dict[str, float] | None = None,
    name: str = "review",
    **config: Any,
) -> WorkflowCheckpoints:
    """One checkpoint on `stage` (no auto-approval rules unless given)."""
    return WorkflowCheckpoints(
        workspace_id=workspace,
        checkpoints=[
            WorkflowCheckpoint(
                name=name,
                condition=condition,
                condition_params={"stage": stage} if stage else {},
                auto_approve_if=rules or {},
                timeout_seconds=timeout,
                on_timeout=on_timeout,
            )
        ],
        **config,
    )


async def submit(
    redis: Redis,
    workspace: str,
    goal: str = "Create a blog post about AI trends",
    *,
    sequence: list[str] | None = None,
    checkpoints: WorkflowCheckpoints | None = None,
    user: str | None = None,
) -> str:
    """Publish a TaskRequested straight onto its stream, as an upstream system would."""
    event = new_envelope(
        TaskRequested(
            goal=goal, agent_sequence=sequence or list(SEQUENCE), checkpoints=checkpoints
        ),
        workspace_id=workspace,
        user_id=user,
        context=AgentContext(workspace_id=workspace, user_id=user),
    )
    await publish(redis, PLAIN, [event])
    return event.correlation_id


async def wait_pending(
    redis: Redis, workspace: str, count: int = 1, timeout: float = 30
) -> list[approvals.ApprovalRecord]:
    async def probe() -> list[approvals.ApprovalRecord] | None:
        pending = await approvals.list_pending(redis, KEYS, workspace)
        return pending if len(pending) >= count else None

    return await eventually(probe, timeout)


async def task_status(redis: Redis, workspace: str, task_id: str) -> str | None:
    raw = await redis.hget(KEYS.task_view(workspace, task_id), "status")
    return raw.decode() if raw else None


async def wait_status(
    redis: Redis, workspace: str, task_id: str, statuses: set[str], timeout: float = 30
) -> str:
    async def probe() -> str | None:
        status = await task_status(redis, workspace, task_id)
        return status if status in statuses else None

    return await eventually(probe, timeout)


async def events_of(redis: Redis, event_type: str, task_id: str) -> list[dict[str, Any]]:
    """Every event of one type for one task, in stream order."""
    out = []
    for _, fields in await redis.xrange(PLAIN.stream(event_type)):
        data = json.loads(fields[b"__data__"])
        if data["correlation_id"] == task_id:
            out.append(data)
    return out


async def wait_past(deadline: float, timeout: float = 30) -> None:
    """Poll the clock until `deadline` (epoch seconds) has passed."""

    async def probe() -> bool:
        return time.time() > deadline

    await eventually(probe, timeout)
