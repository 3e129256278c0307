"""Shared by the console tests: tasks submitted as a client would, and reading the pages."""

from __future__ import annotations

import re

from redis.asyncio import Redis

from shared.contract.events import TaskRequested, new_envelope
from shared.contract.models import AgentContext, SelfCorrectionConfig, WorkflowCheckpoints
from tests.helpers import PLAIN

GOAL = "Write a blog post about AI trends in healthcare"


async def request_task(
    redis: Redis,
    workspace: str,
    goal: str = GOAL,
    checkpoints: WorkflowCheckpoints | None = None,
    self_correction: SelfCorrectionConfig | None = None,
) -> str:
    """A task the router plans or reuses itself (no agent_sequence), so routing is shown."""
    event = new_envelope(
        TaskRequested(goal=goal, checkpoints=checkpoints, self_correction=self_correction),
        workspace_id=workspace,
        context=AgentContext(workspace_id=workspace),
    )
    # a plain XADD, as an upstream publisher does (independent of the bus's publish signature)
    await redis.xadd(PLAIN.stream_of(event), {"__data__": event.model_dump_json()})
    return event.correlation_id


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]*)"', html)
    assert found, "the form carries a CSRF token"
    return found.group(1)
