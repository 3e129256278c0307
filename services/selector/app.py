"""Selector service: SequenceChosen / StageAdvanced -> StageAssigned (best agent per stage)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from services.selector import logic
from shared.app.runtime import Deps, Service, new_service
from shared.contract.events import Envelope, SequenceChosen, StageAdvanced
from shared.domain.bandit import BanditConfig
from shared.messaging.tx import Tx
from shared.stores import tasks
from shared.stores.agent_registry import catalog_for, live_workers

SERVICE = "selector"


async def assign_stage(
    event: Envelope[SequenceChosen] | Envelope[StageAdvanced], *, deps: Deps, rng: random.Random
) -> Sequence[Envelope[Any]]:
    workflow = event.payload.workflow
    catalog = await catalog_for(deps.redis, deps.catalog, event.workspace_id)
    task_type = logic.task_type_of(workflow.current_agent, catalog)
    stats = await deps.memory.bandit_stats(event.workspace_id, task_type)
    step = await deps.memory.performance_step(event.workspace_id, task_type)
    workers = logic.workers_to_check(workflow, catalog)
    live = await live_workers(deps.redis, workers) if workers else set()
    dead = frozenset(workers) - live
    decision = logic.select_for_stage(
        workflow, catalog, stats, step, rng, BanditConfig(), dead=dead
    )
    return [event.follow(logic.stage_assigned(workflow, task_type, decision, dead))]


def build(deps: Deps) -> Service:
    service, bus = new_service(SERVICE, deps)
    rng = random.Random()

    async def on_sequence(event: Envelope[SequenceChosen], tx: Tx) -> Sequence[Envelope[Any]]:
        return await assign_stage(event, deps=deps, rng=rng)

    async def on_advance(event: Envelope[StageAdvanced], tx: Tx) -> Sequence[Envelope[Any]]:
        return await assign_stage(event, deps=deps, rng=rng)

    bus.on(SequenceChosen, tasks.unless_stopped(deps.redis, deps.keys, on_sequence))
    bus.on(StageAdvanced, tasks.unless_stopped(deps.redis, deps.keys, on_advance))
    return service
