"""Corrector service: StageCleared -> CritiqueDone (each iteration) ... StageCompleted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio.client import Pipeline

from services.corrector import logic
from shared.critique import CritiqueParseError
from shared.events import Envelope, StageCleared
from shared.llm import LLMError
from shared.models import SelfCorrectionConfig
from shared.runtime import Deps, Service, new_service
from shared.self_correction import BudgetExhausted, IterationRecord, SelfCorrector

SERVICE = "corrector"


async def on_stage_cleared(
    event: Envelope[StageCleared], tx: Pipeline, *, deps: Deps
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

    try:
        result = await SelfCorrector(deps.provider).run(
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
    except BudgetExhausted as exc:
        return [event.follow(logic.stage_failed(cleared, "budget_exhausted", str(exc)))]
    except (LLMError, CritiqueParseError) as exc:
        return [*critiques, event.follow(logic.stage_failed(cleared, "error", str(exc)))]
    return [*critiques, event.follow(logic.stage_completed(cleared, result))]


def build(deps: Deps) -> Service:
    service, bus = new_service(SERVICE, deps)

    async def handle(event: Envelope[StageCleared], tx: Pipeline) -> Sequence[Envelope[Any]]:
        return await on_stage_cleared(event, tx, deps=deps)

    bus.on(StageCleared, handle)
    return service
