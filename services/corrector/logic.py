"""Corrector decisions without I/O: thresholds, and the events a finished loop yields."""

from __future__ import annotations

from shared.contract.events import (
    CritiqueDone,
    StageCleared,
    StageCompleted,
    TaskFailed,
    Usage,
    Workflow,
)
from shared.contract.models import AgentContext, SelfCorrectionConfig
from shared.domain.catalog import AgentCatalog
from shared.domain.self_correction import IterationRecord, SelfCorrectionResult


def threshold_for(
    config: SelfCorrectionConfig | None,
    context: AgentContext,
    task_type: str,
    catalog: AgentCatalog,
) -> float:
    """The request's min_quality_score if it gave a config; else the workspace's threshold."""
    if config is not None:
        return config.min_quality_score
    return context.quality_thresholds[catalog.quality_key(task_type)]


def stage_scope(workflow: Workflow) -> str:
    """Names the content ids of one stage run (a requested revision is a new run)."""
    return f"{workflow.task_id}/{workflow.stage_index}/{workflow.revision}"


def critique_done(
    cleared: StageCleared, record: IterationRecord, threshold: float, provider: str
) -> CritiqueDone:
    return record.critique_done(
        task_id=cleared.workflow.task_id,
        stage_index=cleared.workflow.stage_index,
        agent=cleared.agent,
        threshold=threshold,
        provider=provider,
    )


def stage_completed(cleared: StageCleared, result: SelfCorrectionResult) -> StageCompleted:
    workflow = cleared.workflow
    usage = workflow.usage.plus(result.metadata.usage)
    return StageCompleted(
        workflow=workflow.model_copy(update={"usage": usage}),
        agent=cleared.agent,
        task_type=cleared.task_type,
        output=result.output,
        quality=result.quality,
        threshold_met=result.threshold_met,
        budget_exhausted=result.budget_exhausted,
        provider=result.provider,
        self_correction_metadata=result.metadata,
    )


def stage_failed(
    cleared: StageCleared, reason: str, error: str, spent: Usage | None = None
) -> TaskFailed:
    """The task ends here; the calls this stage made still count in the task's usage."""
    workflow = cleared.workflow
    if spent is not None:
        workflow = workflow.model_copy(update={"usage": workflow.usage.plus(spent)})
    return TaskFailed(
        workflow=workflow,
        goal=cleared.workflow.goal,
        reason=reason,  # type: ignore[arg-type]
        error=error,
    )
