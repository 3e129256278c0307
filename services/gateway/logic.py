"""Gateway decisions without I/O: events from requests, views for responses."""

from __future__ import annotations

from typing import Any

from services.gateway.schemas import TaskSubmission
from shared.contract.events import Envelope, TaskRequested, new_envelope
from shared.contract.models import AgentContext
from shared.contract.records import ApprovalRecord


def task_requested(body: TaskSubmission, *, task_id: str) -> Envelope[TaskRequested]:
    """The TaskRequested a submission becomes, with the caller's context."""
    context = AgentContext(
        workspace_id=body.workspace_id,
        correlation_id=task_id,
        user_id=body.user_id,
        brand_voice=body.brand_voice,
        target_icps=body.target_icps,
        user_preferences=body.user_preferences,
        quality_thresholds=body.quality_thresholds,
        budget_constraints=body.budget_constraints,
    )
    return new_envelope(
        TaskRequested(
            goal=body.goal,
            inputs=body.inputs,
            agent_sequence=body.agent_sequence,
            self_correction=body.self_correction,
            checkpoints=body.checkpoints,
            deadline_s=body.deadline_s,
        ),
        workspace_id=body.workspace_id,
        context=context,
        user_id=body.user_id,
        correlation_id=task_id,
    )


def approval_summary(record: ApprovalRecord) -> dict[str, Any]:
    needed = record.needed.payload
    return {
        "approval_id": record.approval_id,
        "workspace_id": record.workspace_id,
        "task_id": needed.workflow.task_id,
        "status": record.status,
        "checkpoint": needed.checkpoint,
        "condition": needed.condition,
        "agent": needed.agent,
        "goal": needed.workflow.goal,
        "stage_output": needed.stage_output,
        "evaluation": needed.evaluation.model_dump(),
        "deadline": record.deadline_iso,
        "decided_by": record.decided_by,
    }
