"""Task lifecycle decisions without I/O: what a resume or a rerun publishes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.contract.events import (
    Envelope,
    StageAdvanced,
    TaskRequested,
    Usage,
    Workflow,
    new_envelope,
)
from shared.contract.models import AgentContext, BudgetConstraints


class Snapshot(BaseModel):
    """Where a failed task stopped: its workflow (finished stages' outcomes, the stage that
    did not finish, usage so far) and its context, as memory kept them."""

    workflow: Workflow
    context: AgentContext
    user_id: str | None = None


def resumed(
    snapshot: Snapshot, new_id: str, budget: BudgetConstraints | None, now: datetime
) -> Envelope[StageAdvanced]:
    """Continue at the stage that did not finish, reusing the finished stages' outputs.

    Without new limits the usage so far stays on the workflow, so the corrector allows only
    what is left of the original budget; new limits start a fresh count."""
    workflow = snapshot.workflow.model_copy(
        update={
            "task_id": new_id,
            "revision": 0,
            "started_at": now,
            "usage": Usage() if budget is not None else snapshot.workflow.usage,
        }
    )
    context_update: dict[str, Any] = {"correlation_id": new_id}
    if budget is not None:
        context_update["budget_constraints"] = budget
    return new_envelope(
        StageAdvanced(workflow=workflow),
        workspace_id=snapshot.context.workspace_id,
        context=snapshot.context.model_copy(update=context_update),
        user_id=snapshot.user_id,
        correlation_id=new_id,
    )


def rerun(original: Envelope[TaskRequested], new_id: str) -> Envelope[TaskRequested]:
    """A fresh copy of the original request (same goal, inputs and context), a new task."""
    return new_envelope(
        original.payload,
        workspace_id=original.workspace_id,
        context=original.context.model_copy(update={"correlation_id": new_id}),
        user_id=original.user_id,
        correlation_id=new_id,
    )


def resumed_fields(snapshot: Snapshot, original_id: str, now: float) -> dict[str, str]:
    """The new task's first view: accepted, linked to the task it resumes."""
    workflow = snapshot.workflow
    return {
        "status": "accepted",
        "goal": workflow.goal,
        "created_at": repr(now),
        "updated_at": repr(now),
        "agent_sequence": json.dumps(workflow.agent_sequence),
        "routing_source": workflow.routing.source,
        "routing_confidence": str(workflow.routing.confidence),
        "resumed_from": original_id,
    }
