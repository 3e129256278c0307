"""Corrector service: StageCleared -> CritiqueDone (each iteration) ... StageCompleted.

Budget: a stage the task's budget cannot start (or whose first critique cannot be
repaired within it) ends the task as TaskFailed(budget_exhausted); a stage that runs
out mid-loop completes with its best attempt, flagged budget_exhausted, and the next
stage then fails the task. An LLM that still fails after the client's retries ends the
task as TaskFailed(error) naming the call. Either way the critiques already made are
published with the outcome, in the same transaction that acks the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.corrector import logic
from shared.app.runtime import Deps, Service, new_service
from shared.contract.events import Envelope, StageCleared
from shared.contract.models import SelfCorrectionConfig
from shared.domain.critique import CritiqueParseError
from shared.domain.llm_port import LLMError
from shared.domain.self_correction import BudgetExhausted, IterationRecord, SelfCorrector
from shared.messaging.tx import Tx
from shared.stores import tasks

SERVICE = "corrector"


class TaskStopped(Exception):
    """The task was cancelled or ran out of time while its stage ran."""


async def on_stage_cleared(
    event: Envelope[StageCleared], tx: Tx, *, deps: Deps
) -> Sequence[Envelope[Any]]:
    cleared = event.payload
    workflow = cleared.workflow
    agent = deps.catalog.get(cleared.agent)
    threshold = logic.threshold_for(
        workflow.self_correction, event.context, cleared.task_type, deps.catalog
    )
    critiques: list[Envelope[Any]] = []

    async def publish_critique(record: IterationRecord, draft: str) -> None:
        payload = logic.critique_done(cleared, record, threshold, deps.provider.name)
        critiques.append(event.follow(payload, key=str(record.iteration)))
        # Between iterations: a task cancelled (or past its deadline) mid-loop makes no
        # further LLM calls.
        if await tasks.stop_reason(deps.redis, event.workspace_id, event.correlation_id):
            raise TaskStopped(event.correlation_id)

    corrector = SelfCorrector(deps.provider)
    try:
        result = await corrector.run(
            agent=agent,
            goal=workflow.goal,
            inputs=workflow.inputs,
            context=event.context,
            config=workflow.self_correction or SelfCorrectionConfig(),
            threshold=threshold,
            scope=logic.stage_scope(workflow),
            previous_output=cleared.previous_output or workflow.last_output,
            reviewer_comments=cleared.revision_comments,
            spent_before=workflow.usage,
            on_critique=publish_critique,
        )
    except TaskStopped:
        return critiques
    except BudgetExhausted as exc:
        failed = logic.stage_failed(cleared, "budget_exhausted", str(exc), corrector.spent)
        return [*critiques, event.follow(failed)]
    except (LLMError, CritiqueParseError) as exc:
        failed = logic.stage_failed(cleared, "error", str(exc), corrector.spent)
        return [*critiques, event.follow(failed)]
    return [*critiques, event.follow(logic.stage_completed(cleared, result))]


def build(deps: Deps) -> Service:
    service, bus = new_service(SERVICE, deps)

    async def handle(event: Envelope[StageCleared], tx: Tx) -> Sequence[Envelope[Any]]:
        return await on_stage_cleared(event, tx, deps=deps)

    bus.on(StageCleared, tasks.unless_stopped(deps.redis, handle), batched=False)  # waits on the LLM
    return service
