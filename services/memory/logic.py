"""What the memory service stores, as pure functions of the events it consumes."""

from __future__ import annotations

import json
from typing import Any

from shared.contract.events import (
    ApprovalNeeded,
    ApprovalResolved,
    CritiqueDone,
    Envelope,
    SequenceChosen,
    StageCompleted,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskRequested,
)
from shared.contract.keys import goal_hash
from shared.contract.models import SelfCorrectionConfig
from shared.contract.records import TaskRecord


def record_of_completion(done: TaskCompleted, now: float) -> TaskRecord | None:
    """A finished task for history; a below-threshold run only when store_failures is on."""
    workflow = done.workflow
    config = workflow.self_correction or SelfCorrectionConfig()
    if not done.success and not config.store_failures:
        return None
    failed_stages = [o.agent for o in workflow.outcomes if not o.threshold_met]
    return TaskRecord(
        goal=workflow.goal,
        agent_sequence=workflow.agent_sequence,
        success=done.success,
        execution_time=done.execution_time_s,
        error=None if done.success else f"quality below threshold in: {', '.join(failed_stages)}",
        result_quality=done.quality,
        goal_hash=goal_hash(workflow.goal),
        task_id=workflow.task_id,
        stored_at=now,
        provider=",".join(sorted({o.provider for o in workflow.outcomes})),
    )


def record_of_failure(failed: TaskFailed, now: float) -> TaskRecord | None:
    """A task that ended early is stored as failed (store_failures), with its error."""
    workflow = failed.workflow
    if workflow is None:
        return None
    config = workflow.self_correction or SelfCorrectionConfig()
    if not config.store_failures:
        return None
    qualities = [o.quality for o in workflow.outcomes]
    return TaskRecord(
        goal=workflow.goal,
        agent_sequence=workflow.agent_sequence,
        success=False,
        execution_time=failed.execution_time_s,
        error=f"{failed.reason}: {failed.error}"[:2000],
        result_quality=round(sum(qualities) / len(qualities), 4) if qualities else 0.0,
        goal_hash=goal_hash(workflow.goal),
        task_id=workflow.task_id,
        stored_at=now,
    )


def index_attributes(record: TaskRecord) -> dict[str, Any]:
    return {
        "success": record.success,
        "quality": record.result_quality,
        "agent_sequence": record.agent_sequence,
        "goal_hash": record.goal_hash,
    }


def critique_fields(critique: CritiqueDone) -> dict[str, str]:
    """The seed's critique fields (content_id, critique, issues, issue_count), plus ours."""
    return {
        "content_id": critique.content_id,
        "critique": critique.critique,
        "issues": json.dumps(critique.issues),
        "issue_count": str(len(critique.issues)),
        "score": str(critique.score),
        "aspect_scores": json.dumps(critique.aspect_scores),
        "task_id": critique.task_id,
        "stage_index": str(critique.stage_index),
        "agent": critique.agent,
        "iteration": str(critique.iteration),
        "provider": critique.provider,
    }


def routing_fields(chosen: SequenceChosen, now: float) -> dict[str, str]:
    routing = chosen.workflow.routing
    return {
        "task_id": chosen.workflow.task_id,
        "goal_hash": goal_hash(chosen.workflow.goal),
        "source": routing.source,
        "confidence": str(routing.confidence),
        "agent_sequence": json.dumps(chosen.workflow.agent_sequence),
        "matched_goal_hash": routing.matched_goal_hash or "",
        "neighbours": json.dumps([n.model_dump() for n in chosen.neighbours]),
        "decided_at": str(now),
        "candidate_sequence": json.dumps(routing.candidate_sequence),
        "candidate_logit": json.dumps(routing.candidate_logit),
    }


def view_of_request(request: TaskRequested, accepted_at: float) -> dict[str, str]:
    """The first view of a task (the gateway writes the same at acceptance)."""
    view = {
        "status": "accepted",
        "goal": request.goal,
        "created_at": repr(accepted_at),
        "updated_at": repr(accepted_at),
    }
    if request.deadline_s is not None:
        view["deadline_at"] = repr(accepted_at + request.deadline_s)
    return view


def view_of_cancel(cancelled: TaskCancelled, now: float) -> dict[str, str]:
    return {
        "status": "cancelled",
        "cancelled_by": cancelled.cancelled_by or "",
        "cancel_reason": cancelled.reason,
        "updated_at": repr(now),
    }


def snapshot_of(failed: Envelope[TaskFailed]) -> str:
    """What a resume needs: the workflow where it stopped and the task's context."""
    assert failed.payload.workflow is not None
    return json.dumps({
        "workflow": failed.payload.workflow.model_dump(mode="json"),
        "context": failed.context.model_dump(mode="json"),
        "user_id": failed.user_id,
    })


def view_of_sequence(chosen: SequenceChosen, now: float) -> dict[str, str]:
    workflow = chosen.workflow
    return {
        "status": "running",
        "goal": workflow.goal,
        "agent_sequence": json.dumps(workflow.agent_sequence),
        "routing_source": workflow.routing.source,
        "routing_confidence": str(workflow.routing.confidence),
        "updated_at": str(now),
    }


def view_of_stage(completed: StageCompleted) -> str:
    return json.dumps(
        {
            "stage_index": completed.workflow.stage_index,
            "agent": completed.agent,
            "task_type": completed.task_type,
            "output": completed.output,
            "quality": completed.quality,
            "threshold_met": completed.threshold_met,
            "budget_exhausted": completed.budget_exhausted,
            "provider": completed.provider,
            "usage": completed.self_correction_metadata.usage.model_dump(mode="json"),
            "self_correction_metadata": completed.self_correction_metadata.model_dump(mode="json"),
        }
    )


def view_of_budget_stop(completed: StageCompleted) -> dict[str, str]:
    """Marks the task when a stage stopped for budget (it keeps running with its best)."""
    return {"budget_exhausted": "true"} if completed.budget_exhausted else {}


def view_of_approval(needed: ApprovalNeeded, now: float) -> dict[str, str]:
    return {
        "status": "awaiting_approval",
        "approval_id": needed.approval_id,
        "checkpoint": needed.checkpoint,
        "updated_at": str(now),
    }


def view_of_decision(resolved: ApprovalResolved, now: float) -> dict[str, str]:
    status = "running" if resolved.decision != "rejected" else "rejected"
    return {
        "status": status,
        "last_decision": resolved.decision,
        "decided_by": resolved.decided_by,
        "updated_at": str(now),
    }


def view_of_completion(done: TaskCompleted, now: float) -> dict[str, str]:
    return {
        "status": "completed",
        "success": json.dumps(done.success),
        "quality": str(done.quality),
        "final_output": done.final_output,
        "execution_time_s": str(done.execution_time_s),
        "usage": done.workflow.usage.model_dump_json(),
        "providers": ",".join(sorted({o.provider for o in done.workflow.outcomes})),
        "updated_at": str(now),
    }


def view_of_failure(failed: TaskFailed, now: float) -> dict[str, str]:
    view = {
        "status": "failed",
        "failure_reason": failed.reason,
        "error": failed.error[:2000],
        "goal": failed.workflow.goal if failed.workflow else failed.goal,
        "updated_at": str(now),
    }
    if failed.workflow is not None:
        view["usage"] = failed.workflow.usage.model_dump_json()
    if failed.reason == "budget_exhausted":
        view["budget_exhausted"] = "true"
    return view
