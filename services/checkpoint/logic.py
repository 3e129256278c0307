"""Checkpoint flow decisions without I/O: clear, pause for approval, advance, finish."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from shared.contract.events import (
    ApprovalNeeded,
    ApprovalResolved,
    Payload,
    StageAdvanced,
    StageAssigned,
    StageCleared,
    StageCompleted,
    StageOutcome,
    TaskCompleted,
    TaskFailed,
    Workflow,
)
from shared.contract.models import (
    AgentContext,
    CheckpointCondition,
    CheckpointEvaluation,
    TimeoutOutcome,
    WorkflowCheckpoint,
    WorkflowCheckpoints,
)
from shared.domain.checkpoints import StageNames, applicable_checkpoints, evaluate_checkpoint

_APPROVAL_NS = uuid.UUID("a4c3f0de-7d7b-4c2a-9c71-3f7e0b8e5a22")


def approval_id_for(
    task_id: str, stage_index: int, condition: CheckpointCondition, name: str, revision: int
) -> str:
    """Deterministic: a redelivered event creates the same approval, not a second one."""
    return str(uuid.uuid5(_APPROVAL_NS, f"{task_id}/{stage_index}/{condition}/{name}/{revision}"))


Evaluated = list[tuple[WorkflowCheckpoint, CheckpointEvaluation]]


def evaluate_applicable(
    config: WorkflowCheckpoints | None,
    condition: CheckpointCondition,
    agent: StageNames,
    stage_index: int,
    context: AgentContext,
    execution_data: dict[str, float | None],
) -> Evaluated:
    """Every applicable checkpoint with its evaluation, in order (each one is audited)."""
    if config is None:
        return []
    return [
        (checkpoint, evaluate_checkpoint(checkpoint.name, config, context, execution_data))
        for checkpoint in applicable_checkpoints(config, condition, agent, stage_index)
    ]


def first_pending_of(
    evaluated: Evaluated,
) -> tuple[WorkflowCheckpoint, CheckpointEvaluation] | None:
    """The first checkpoint that does not auto-approve: the workflow waits on it alone."""
    return next((pair for pair in evaluated if pair[1].status == "pending_approval"), None)


def first_pending(
    config: WorkflowCheckpoints | None,
    condition: CheckpointCondition,
    agent: StageNames,
    stage_index: int,
    context: AgentContext,
    execution_data: dict[str, float | None],
) -> tuple[WorkflowCheckpoint, CheckpointEvaluation] | None:
    """The first applicable checkpoint that does not auto-approve, with its evaluation."""
    return first_pending_of(
        evaluate_applicable(config, condition, agent, stage_index, context, execution_data)
    )


def deadline_for(
    checkpoint: WorkflowCheckpoint, config: WorkflowCheckpoints, now: datetime
) -> datetime:
    return now + timedelta(seconds=checkpoint.timeout_seconds or config.default_timeout)


def stage_outcome(completed: StageCompleted) -> StageOutcome:
    return StageOutcome(
        stage_index=completed.workflow.stage_index,
        agent=completed.agent,
        task_type=completed.task_type,
        quality=completed.quality,
        threshold_met=completed.threshold_met,
        iterations=completed.self_correction_metadata.iterations,
        provider=completed.provider,
        cost_usd=completed.self_correction_metadata.usage.cost_usd,
        duration_s=completed.self_correction_metadata.duration_s,
    )


def finish_stage(
    workflow: Workflow, outcome: StageOutcome, output: str, now: datetime
) -> StageAdvanced | TaskCompleted:
    """Record the stage and move on: the next stage, or the end of the task."""
    done = workflow.model_copy(
        update={"outcomes": [*workflow.outcomes, outcome], "last_output": output, "revision": 0}
    )
    if not workflow.is_last_stage:
        return StageAdvanced(
            workflow=done.model_copy(update={"stage_index": workflow.stage_index + 1})
        )
    qualities = [o.quality for o in done.outcomes]
    return TaskCompleted(
        workflow=done,
        success=all(o.threshold_met for o in done.outcomes),
        quality=round(sum(qualities) / len(qualities), 4),
        final_output=output,
        execution_time_s=round((now - workflow.started_at).total_seconds(), 4),
    )


def cleared(assigned: StageAssigned, comments: list[str] | None = None) -> StageCleared:
    return StageCleared(
        workflow=assigned.workflow,
        agent=assigned.agent,
        task_type=assigned.task_type,
        revision_comments=comments or [],
    )


def approval_needed(
    *,
    checkpoint: WorkflowCheckpoint,
    evaluation: CheckpointEvaluation,
    config: WorkflowCheckpoints,
    workflow: Workflow,
    agent: str,
    task_type: str,
    now: datetime,
    output: str | None = None,
    outcome: StageOutcome | None = None,
) -> ApprovalNeeded:
    return ApprovalNeeded(
        approval_id=approval_id_for(
            workflow.task_id,
            workflow.stage_index,
            checkpoint.condition,
            checkpoint.name,
            workflow.revision,
        ),
        checkpoint=checkpoint.name,
        condition=checkpoint.condition,
        evaluation=evaluation,
        workflow=workflow,
        agent=agent,
        task_type=task_type,
        stage_output=output,
        stage_outcome=outcome,
        deadline=deadline_for(checkpoint, config, now),
    )


def after_decision(needed: ApprovalNeeded, resolved: ApprovalResolved, now: datetime) -> Payload:
    """Continue, end as rejected, or revise the stage with the reviewer's comments."""
    workflow = needed.workflow
    if resolved.decision == "rejected":
        reason = "expired" if resolved.expired else "rejected"
        detail = resolved.reason or f"checkpoint {needed.checkpoint} {reason}"
        return TaskFailed(
            workflow=workflow,
            goal=workflow.goal,
            reason=reason,
            error=f"{detail} (by {resolved.decided_by})",
            execution_time_s=round((now - workflow.started_at).total_seconds(), 4),
        )
    comments = resolved.comments if resolved.decision == "changes_requested" else []
    if needed.condition == CheckpointCondition.AFTER_STAGE and needed.stage_outcome is not None:
        if comments:
            return StageCleared(
                workflow=workflow.model_copy(update={"revision": workflow.revision + 1}),
                agent=needed.agent,
                task_type=needed.task_type,
                revision_comments=comments,
                previous_output=needed.stage_output,
            )
        return finish_stage(workflow, needed.stage_outcome, needed.stage_output or "", now)
    if comments:
        workflow = workflow.model_copy(
            update={"inputs": {**workflow.inputs, "reviewer_comments": comments}}
        )
    return StageCleared(workflow=workflow, agent=needed.agent, task_type=needed.task_type)


def timeout_decision(outcome: TimeoutOutcome, already_escalated: bool) -> str:
    """What an expired approval becomes: approved, rejected, or escalated once."""
    if outcome == TimeoutOutcome.APPROVE:
        return "approved"
    if outcome == TimeoutOutcome.ESCALATE and not already_escalated:
        return "escalate"
    return "rejected"
