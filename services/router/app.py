"""Router service: TaskRequested -> SequenceChosen (memory reuse or planner)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from services.router import logic
from services.router.experiment_routing import experiment_route
from shared.app.facade import context_inputs, context_with, route
from shared.app.runtime import Deps, Service, new_service
from shared.contract.events import Envelope, TaskRequested
from shared.domain.llm_port import LLMError
from shared.domain.patterns import PatternError
from shared.domain.routing import PlanError, RouteDecision
from shared.messaging.tx import Tx
from shared.stores import tasks
from shared.stores.agent_registry import catalog_for

SERVICE = "router"


async def on_task_requested(
    event: Envelope[TaskRequested], tx: Tx, *, deps: Deps
) -> Sequence[Envelope[Any]]:
    request = event.payload
    # The context's reads do not depend on the route: they run while the route is chosen.
    decision, inputs = await asyncio.gather(
        _decide(deps, event), context_inputs(deps, event.workspace_id)
    )
    if isinstance(decision, str):
        return [event.follow(logic.routing_failed(request, decision))]
    workflow = logic.workflow_for(event.correlation_id, request, decision)
    limit = deps.settings.context_history_limit
    context = context_with(event.context, decision.neighbours, inputs, limit)
    chosen = event.follow(logic.sequence_chosen(workflow, decision))
    return [chosen.model_copy(update={"context": context})]


async def _decide(deps: Deps, event: Envelope[TaskRequested]) -> RouteDecision | str:
    """The route (the request's own, an experiment's, memory's or the planner's), or why
    none could be chosen."""
    request = event.payload
    try:
        catalog = await catalog_for(deps.redis, deps.catalog, event.workspace_id)
        return (
            logic.requested_route(request, catalog)
            or await experiment_route(deps, request.goal, event.workspace_id, event.correlation_id)
            or await route(deps, request.goal, event.workspace_id)
        )
    except (logic.InvalidRequestedSequence, PlanError, LLMError) as exc:
        return str(exc)
    except PatternError as exc:  # a stored experiment from before today's pattern rules
        return f"a stored experiment cannot run: {exc}; stop it or create it again"


def build(deps: Deps) -> Service:
    service, bus = new_service(SERVICE, deps)

    async def handle(event: Envelope[TaskRequested], tx: Tx) -> Sequence[Envelope[Any]]:
        return await on_task_requested(event, tx, deps=deps)

    bus.on(
        TaskRequested, tasks.unless_stopped(deps.redis, deps.keys, handle), batched=False
    )  # may wait on the LLM planner
    return service
