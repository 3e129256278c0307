"""The self-correction loop as events, without I/O: invoke, result, critique, next step.

The same stopping rules as SelfCorrector.run (threshold, max_iterations, small
improvement, budget; the best attempt kept), one step per AgentResult, the state
in `CorrectionLoop`, which travels in each AgentInvoked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from shared.contract.events import (
    AgentInvoked,
    AgentResult,
    CorrectionLoop,
    SelfCorrectionMetadata,
    StageCleared,
    StageCompleted,
    StageInput,
    TaskFailed,
    Usage,
)
from shared.contract.models import SelfCorrectionConfig
from shared.domain.catalog import AgentSpec
from shared.domain.critique import Critique, overall_score
from shared.domain.self_correction import OUTPUT_LIMIT, IterationRecord, content_id_for

Step = Literal["invoke", "complete"]


@dataclass(frozen=True)
class Decision:
    """What follows a critique: another draft, or the stage completes with its best."""

    step: Step
    stop_reason: str = ""
    budget_exhausted: bool = False


def first_invocation(
    cleared: StageCleared,
    agent: AgentSpec,
    loop: CorrectionLoop,
    *,
    reply_to: str,
    now: datetime,
) -> AgentInvoked:
    """Draft 1; a reviewer's requested changes make it a revision of the draft they saw."""
    workflow = cleared.workflow
    revising = bool(cleared.revision_comments and cleared.previous_output)
    return AgentInvoked(
        invocation_id=f"{loop.scope}/1/1",
        agent=agent.name,
        kind=agent.kind,
        task_type=cleared.task_type,
        stage_input=StageInput(goal=workflow.goal, inputs=workflow.inputs),
        previous_output=None if revising else (cleared.previous_output or workflow.last_output),
        draft=cleared.previous_output if revising else None,
        issues=[f"reviewer: {c}" for c in cleared.revision_comments] if revising else [],
        iteration=1,
        attempt=1,
        max_attempts=agent.max_attempts,
        deadline=now + timedelta(seconds=agent.timeout_s),
        reply_to=reply_to,
        workflow=workflow,
        loop=loop,
    )


def retry(invoked: AgentInvoked, agent: AgentSpec, now: datetime) -> AgentInvoked:
    """The same request again (after a timeout or an error), as a new invocation."""
    attempt = invoked.attempt + 1
    return invoked.model_copy(
        update={
            "invocation_id": f"{invoked.loop.scope}/{invoked.iteration}/{attempt}",
            "attempt": attempt,
            "deadline": now + timedelta(seconds=agent.timeout_s),
        }
    )


def revision(
    invoked: AgentInvoked,
    agent: AgentSpec,
    loop: CorrectionLoop,
    draft: str,
    issues: list[str],
    now: datetime,
) -> AgentInvoked:
    """The next draft: the agent gets its last draft and the critic's numbered issues."""
    return invoked.model_copy(
        update={
            "invocation_id": f"{loop.scope}/{loop.iteration}/1",
            "draft": draft,
            "issues": issues or ["(no specific issues: tighten and polish)"],
            "iteration": loop.iteration,
            "attempt": 1,
            "deadline": now + timedelta(seconds=agent.timeout_s),
            "loop": loop,
        }
    )


def result_usage(result: AgentResult, agent: AgentSpec) -> Usage:
    """What an attempt spent: as reported; an agent that reports no cost is charged its
    catalog price per call; an attempt counts as at least one call."""
    usage = result.usage
    calls = max(usage.api_calls, 1)
    cost = usage.cost_usd if usage.cost_usd > 0 else agent.cost_per_call_usd * calls
    return usage.model_copy(update={"api_calls": calls, "cost_usd": round(cost, 8)})


def record_critique(
    loop: CorrectionLoop,
    output: str,
    critique: IterationRecord,
) -> CorrectionLoop:
    """The loop state after a draft was scored; the best attempt kept, not the last."""
    update: dict[str, object] = {"scores": [*loop.scores, critique.score]}
    if critique.score > loop.best_score:
        update |= {
            "best_output": output[:OUTPUT_LIMIT],
            "best_score": critique.score,
            "best_iteration": loop.iteration,
            "best_aspect_scores": critique.critique.aspect_scores,
        }
    return loop.model_copy(update=update)


def new_record(
    loop: CorrectionLoop, critique: Critique, config: SelfCorrectionConfig
) -> IterationRecord:
    """The IterationRecord of the draft just critiqued (its content id is deterministic)."""
    return IterationRecord(
        iteration=loop.iteration,
        content_id=content_id_for(loop.scope, loop.iteration),
        score=overall_score(critique, config.critique_aspects, config.aspect_weights),
        critique=critique,
    )


def decide(loop: CorrectionLoop, config: SelfCorrectionConfig, allows_two_calls: bool) -> Decision:
    """SelfCorrector.run's stopping rules, applied after the critique of `loop.iteration`."""
    score = loop.scores[-1]
    if score >= loop.threshold:
        return Decision("complete", "threshold_met")
    if loop.iteration >= config.max_iterations:
        return Decision("complete", "max_iterations")
    if len(loop.scores) > 1 and score - loop.scores[-2] < config.improvement_threshold:
        return Decision("complete", "small_improvement")
    if not allows_two_calls:
        return Decision("complete", "budget_exhausted", budget_exhausted=True)
    return Decision("invoke")


def stage_completed(
    invoked: AgentInvoked,
    loop: CorrectionLoop,
    decision: Decision,
    provider: str,
    now: float,
) -> StageCompleted:
    workflow = invoked.workflow
    metadata = SelfCorrectionMetadata(
        iterations=len(loop.scores),
        final_quality_score=loop.best_score,
        threshold_met=loop.best_score >= loop.threshold,
        attempts=loop.iteration,
        iteration_scores=loop.scores,
        aspect_scores=loop.best_aspect_scores,
        best_iteration=loop.best_iteration,
        stop_reason=decision.stop_reason,
        usage=loop.spent,
        duration_s=round(max(now - loop.started_at, 0.0), 4),
    )
    return StageCompleted(
        workflow=workflow.model_copy(update={"usage": workflow.usage.plus(loop.spent)}),
        agent=invoked.agent,
        task_type=invoked.task_type,
        output=loop.best_output or "",
        quality=loop.best_score,
        threshold_met=metadata.threshold_met,
        budget_exhausted=decision.budget_exhausted,
        provider=provider,
        self_correction_metadata=metadata,
    )


def stage_failed(
    invoked: AgentInvoked, loop: CorrectionLoop, reason: str, error: str
) -> TaskFailed:
    """The task ends here; what the stage spent still counts in the task's usage."""
    workflow = invoked.workflow
    return TaskFailed(
        workflow=workflow.model_copy(update={"usage": workflow.usage.plus(loop.spent)}),
        goal=workflow.goal,
        reason=reason,  # type: ignore[arg-type]
        error=error,
    )
