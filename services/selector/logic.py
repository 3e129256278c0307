"""Selector decisions without I/O: which agent runs the current stage, and why."""

from __future__ import annotations

import random
from collections.abc import Mapping

from shared.contract.events import SelectionInfo, StageAssigned, Workflow
from shared.domain.bandit import BanditConfig, SelectionDecision, choose_agent
from shared.domain.catalog import AgentCatalog
from shared.domain.performance import AgentPerformance


def task_type_of(planned_agent: str, catalog: AgentCatalog) -> str:
    return catalog.get(planned_agent).task_type


def workers_to_check(workflow: Workflow, catalog: AgentCatalog) -> list[str]:
    """The worker agents among the stage's candidates: their liveness decides."""
    task_type = task_type_of(workflow.current_agent, catalog)
    names = [workflow.current_agent, *catalog.candidates(task_type)]
    return [n for n in dict.fromkeys(names) if catalog.get(n).kind == "worker"]


def select_for_stage(
    workflow: Workflow,
    catalog: AgentCatalog,
    stats: Mapping[str, AgentPerformance],
    step: int,
    rng: random.Random,
    config: BanditConfig,
    dead: frozenset[str] = frozenset(),
) -> SelectionDecision:
    """Bandit choice among the live agents for the planned agent's task type; an agent the
    request named is kept as it is.

    A worker agent with no live replica (`dead`) is never chosen: the planned agent's
    place goes to the next live candidate. When no candidate is live, the planned
    agent stays (its invocation then times out visibly rather than never starting)."""
    planned = workflow.current_agent
    if workflow.routing.source == "requested" and planned not in dead:
        # "run exactly these agents": the bandit does not swap a requested agent
        return SelectionDecision(agent=planned, reason="requested", fallback=planned, step=step)
    task_type = task_type_of(planned, catalog)
    candidates = [c for c in catalog.candidates(task_type) if c not in dead]
    fallback = planned
    if planned in dead and candidates:
        fallback = candidates[0]
    if not candidates:
        candidates = [planned]
    return choose_agent(candidates, stats, fallback=fallback, step=step, rng=rng, config=config)


def stage_assigned(
    workflow: Workflow,
    task_type: str,
    decision: SelectionDecision,
    dead: frozenset[str] = frozenset(),
) -> StageAssigned:
    assigned = [*workflow.assigned_agents[: workflow.stage_index], decision.agent]
    return StageAssigned(
        workflow=workflow.model_copy(update={"assigned_agents": assigned}),
        agent=decision.agent,
        task_type=task_type,
        selection=SelectionInfo(
            planned_agent=workflow.current_agent,
            reason=decision.reason,
            fallback=decision.fallback,
            explored=decision.explored,
            posterior_means={k: round(v, 4) for k, v in decision.posterior_means.items()},
            skipped={name: "no live worker" for name in sorted(dead)},
        ),
    )
