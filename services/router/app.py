"""Router service: TaskRequested -> SequenceChosen (memory reuse or planner)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio.client import Pipeline

from services.router import logic
from shared.events import Envelope, TaskRequested
from shared.experiment_store import experiment_route
from shared.llm import LLMError
from shared.orchestrator import build_context, route
from shared.routing import PlanError
from shared.runtime import Deps, Service, new_service

SERVICE = "router"


async def on_task_requested(
    event: Envelope[TaskRequested], tx: Pipeline, *, deps: Deps
) -> Sequence[Envelope[Any]]:
    request = event.payload
    try:
        decision = (
            logic.requested_route(request, deps.catalog)
            or await experiment_route(deps, request.goal, event.workspace_id, event.correlation_id)
            or await route(deps, request.goal, event.workspace_id)
        )
    except (logic.InvalidRequestedSequence, PlanError, LLMError) as exc:
        return [event.follow(logic.routing_failed(request, str(exc)))]
    workflow = logic.workflow_for(event.correlation_id, request, decision)
    context = await build_context(deps, event.context, decision.neighbours)
    chosen = event.follow(logic.sequence_chosen(workflow, decision))
    return [chosen.model_copy(update={"context": context})]


def build(deps: Deps) -> Service:
    service, bus = new_service(SERVICE, deps)

    async def handle(event: Envelope[TaskRequested], tx: Pipeline) -> Sequence[Envelope[Any]]:
        return await on_task_requested(event, tx, deps=deps)

    bus.on(TaskRequested, handle, batched=False)  # may wait on the LLM planner
    return service
