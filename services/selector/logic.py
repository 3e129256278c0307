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


def select_for_stage(
    workflow: Workflow,
    catalog: AgentCatalog,
    stats: Mapping[str, AgentPerformance],
    step: int,
    rng: random.Random,
    config: BanditConfig,
) -> SelectionDecision:
    """Bandit choice among the catalog's agents for the planned agent's task type."""
    planned = workflow.current_agent
    task_type = task_type_of(planned, catalog)
    return choose_agent(
        catalog.candidates(task_type), stats, fallback=planned, step=step, rng=rng, config=config
    )


def stage_assigned(
    workflow: Workflow, task_type: str, decision: SelectionDecision
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
        ),
    )
