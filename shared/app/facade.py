"""The seed's orchestrator API on top of the shared pieces.

`route_with_context`, `select_best_agent`, `execute_with_self_correction` and
`evaluate_checkpoint` as the seed names them. The services call the same
functions on events; the gateway and the demo call them directly.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from shared.app.runtime import Deps
from shared.contract.events import Neighbour
from shared.contract.models import (
    AgentContext,
    CheckpointEvaluation,
    SelfCorrectionConfig,
    WorkflowCheckpoints,
)
from shared.domain.bandit import BanditConfig, SelectionDecision, choose_agent
from shared.domain.checkpoints import evaluate_checkpoint as _evaluate_checkpoint
from shared.domain.performance import AgentPerformance
from shared.domain.recalibration import WorkspaceCalibration
from shared.domain.routing import (
    ReuseCandidate,
    RouteDecision,
    best_reuse,
    centroid_cosines,
    decide_without_planner,
    load_params,
    plan_sequence,
)
from shared.domain.self_correction import OnCritique, SelfCorrectionResult, SelfCorrector
from shared.memory.shared_pool import POOL_WORKSPACE, merge_pooled, opted_in
from shared.memory.store import TaskRecord


def summarise_neighbours(neighbours: list[Neighbour], limit: int) -> list[dict[str, Any]]:
    return [n.model_dump() for n in neighbours[:limit]]


def summarise_history(records: list[TaskRecord]) -> list[dict[str, Any]]:
    return [
        {
            "goal": r.goal[:200],
            "agent_sequence": r.agent_sequence,
            "success": r.success,
            "result_quality": r.result_quality,
        }
        for r in records
    ]


@dataclass(frozen=True)
class ContextInputs:
    """What a task's context carries besides the route's neighbours."""

    history: list[TaskRecord]
    performance: dict[str, Any]


async def context_inputs(deps: Deps, workspace_id: str) -> ContextInputs:
    """The workspace's recent tasks and agent performance: independent reads, concurrently
    (and, in the router, concurrently with choosing the route)."""
    history, performance = await asyncio.gather(
        deps.memory.recent_tasks(workspace_id, deps.settings.context_history_limit),
        deps.memory.performance_data(workspace_id),
    )
    return ContextInputs(history, performance)


def context_with(
    base: AgentContext, neighbours: list[Neighbour], inputs: ContextInputs, limit: int
) -> AgentContext:
    """The comprehensive context: memory, history and performance, capped in size."""
    return base.model_copy(
        update={
            "past_successes": summarise_neighbours(neighbours, limit),
            "task_history": summarise_history(inputs.history),
            "performance_data": inputs.performance,
        }
    )


async def build_context(
    deps: Deps, base: AgentContext, neighbours: list[Neighbour]
) -> AgentContext:
    """The comprehensive context: memory, history and performance, capped in size."""
    inputs = await context_inputs(deps, base.workspace_id)
    return context_with(base, neighbours, inputs, deps.settings.context_history_limit)


class Recalled(NamedTuple):
    """What memory says about a goal: the inputs of the reuse confidence."""

    neighbours: list[Neighbour]
    distinct: int
    stored: int
    centroids: dict[tuple[str, ...], float]


async def recall(deps: Deps, goal: str, workspace_id: str) -> Recalled:
    """Neighbours, distinct sequences, stored tasks, and the goal's cosine to the centroid
    of each neighbour sequence, which the confidence is computed from.

    A workspace opted in to shared learning with little history of its own also
    draws on the anonymised pool (sequences and vectors of others, never goals).
    """
    k = deps.settings.memory_neighbours
    vector = await deps.memory.embed_async(goal)
    # Independent reads, concurrently: the route's latency is one round trip, not three.
    neighbours, counts = await asyncio.gather(
        deps.memory.similar_tasks(workspace_id, goal, k, vector=vector),
        deps.memory.sequence_counts(workspace_id),
    )
    distinct, stored = len(counts), sum(counts.values())
    pooled = stored < deps.settings.shared_learning_min_history and opted_in(deps.settings, workspace_id)
    if pooled:
        from_pool = await deps.memory.similar_tasks(POOL_WORKSPACE, goal, k, vector=vector)
        neighbours = merge_pooled(neighbours, from_pool, workspace_id, k)
        pool_counts = await deps.memory.sequence_counts(POOL_WORKSPACE)
        distinct = max(distinct, len(pool_counts))
        stored = max(stored, sum(pool_counts.values()))
    sequences = sorted({json.dumps(n.agent_sequence) for n in neighbours if n.success and n.agent_sequence})
    sums = await deps.memory.sequence_vector_sums(workspace_id, sequences)
    missing = [s for s in sequences if s not in sums]
    if pooled and missing:
        sums |= await deps.memory.sequence_vector_sums(POOL_WORKSPACE, missing)
    return Recalled(neighbours, distinct, stored, centroid_cosines(vector, sums))


async def _none() -> None:
    return None


async def workspace_calibration(deps: Deps, workspace_id: str) -> WorkspaceCalibration:
    """The workspace's learned correction of the global confidence (the prior when it has none)."""
    return WorkspaceCalibration.from_hash(
        await deps.redis.hgetall(deps.keys.routing_calibration(workspace_id))
    )


async def _reuse_candidate(
    deps: Deps, goal: str, workspace_id: str
) -> tuple[list[Neighbour], ReuseCandidate | None]:
    """The goal's neighbours and memory's best remembered sequence, if any."""
    use_calibration = deps.settings.routing_recalibration != "off"
    (neighbours, distinct, stored, centroids), calibration = await asyncio.gather(
        recall(deps, goal, workspace_id),
        workspace_calibration(deps, workspace_id) if use_calibration else _none(),
    )
    candidate = best_reuse(
        neighbours,
        distinct,
        load_params(),
        stored_tasks=stored,
        centroids=centroids,
        cost=deps.catalog.sequence_cost,
        cost_tolerance=deps.settings.routing_cost_tolerance,
        calibration=calibration if neighbours else None,
        recalibration=deps.settings.routing_recalibration,
    )
    return neighbours, candidate


async def route(
    deps: Deps, goal: str, workspace_id: str, *, use_planner: bool = True
) -> RouteDecision:
    """Reuse a proven sequence when confident, else plan (or, without planner, say so).

    Every decision carries memory's candidate and its global logit, reused or
    not, so that the memory service can label the outcome and correct this
    workspace's calibration; `settings.routing_recalibration` says how that
    correction is applied (off: not read at all).
    """
    neighbours, candidate = await _reuse_candidate(deps, goal, workspace_id)
    reuse, reason = decide_without_planner(candidate, deps.settings.reuse_confidence, deps.catalog)
    seen_sequence = candidate.agent_sequence if candidate else None
    seen_logit = candidate.global_logit if candidate else None
    if reuse and candidate is not None:
        return RouteDecision(
            agent_sequence=candidate.agent_sequence,
            source="memory",
            confidence=candidate.confidence,
            neighbours=neighbours,
            matched_goal_hash=candidate.matched_goal_hash,
            reason=reason,
            provider="memory",
            candidate_sequence=seen_sequence,
            candidate_logit=seen_logit,
        )
    confidence = candidate.confidence if candidate else 0.0
    if not use_planner:
        return RouteDecision(
            agent_sequence=candidate.agent_sequence if candidate else ["planner"],
            source="planner",
            confidence=confidence,
            neighbours=neighbours,
            reason=reason,
            provider="none",
            candidate_sequence=seen_sequence,
            candidate_logit=seen_logit,
        )
    plan, usage = await plan_sequence(deps.provider, goal, deps.catalog)
    return RouteDecision(
        agent_sequence=plan.agent_sequence,
        source="planner",
        confidence=confidence,
        neighbours=neighbours,
        reason=f"{reason}; planned: {plan.reason}".strip("; "),
        provider=deps.provider.name,
        usage=usage,
        candidate_sequence=seen_sequence,
        candidate_logit=seen_logit,
    )


async def route_with_context(
    deps: Deps,
    goal: str,
    workspace_id: str,
    user_id: str | None = None,
    base_context: AgentContext | None = None,
) -> tuple[list[str], AgentContext, RouteDecision]:
    decision = await route(deps, goal, workspace_id)
    base = base_context or AgentContext(workspace_id=workspace_id, user_id=user_id)
    context = await build_context(deps, base, decision.neighbours)
    return decision.agent_sequence, context, decision


async def select_best_agent(
    deps: Deps,
    task_type: str,
    workspace_id: str,
    fallback_agent: str | None = None,
    *,
    rng: random.Random | None = None,
) -> SelectionDecision:
    """The best agent for a task type in this workspace; the fallback when there is no history.

    As in the seed, with no history the fallback (default: the catalog's first
    agent for the type) is returned as is (`reason="no_history_fallback"`).
    Otherwise a discounted Thompson draw over the catalog's agents for the type
    reads the memory service's running aggregates (O(agents) hash reads, never a
    history scan). The decision's `agent` is the seed's return value; the rest
    says why (posterior means, explore or exploit, the fallback).
    """
    fallback = fallback_agent or deps.catalog.default_agent(task_type)
    stats: Mapping[str, AgentPerformance] = await deps.memory.bandit_stats(workspace_id, task_type)
    step = await deps.memory.performance_step(workspace_id, task_type)
    candidates = deps.catalog.candidates(task_type) or [fallback]
    return choose_agent(
        candidates,
        stats,
        fallback=fallback,
        step=step,
        rng=rng or random.Random(),
        config=BanditConfig(),
    )


async def execute_with_self_correction(
    deps: Deps,
    agent_name: str,
    payload: dict[str, Any],
    context: AgentContext,
    config: SelfCorrectionConfig | None = None,
    *,
    scope: str,
    on_critique: OnCritique | None = None,
) -> SelfCorrectionResult:
    """Generate, critique, revise until good enough; the threshold follows the seed's rules."""
    agent = deps.catalog.get(agent_name)
    goal = str(payload.get("goal") or payload.get("topic") or "")
    if not goal:
        raise ValueError("payload.goal is required")
    inputs = {k: v for k, v in payload.items() if k != "goal"}
    threshold = quality_threshold(deps, config, context, agent.task_type)
    return await SelfCorrector(deps.provider).run(
        agent=agent,
        goal=goal,
        inputs=inputs,
        context=context,
        config=config or SelfCorrectionConfig(),
        threshold=threshold,
        scope=scope,
        on_critique=on_critique,
    )


def quality_threshold(
    deps: Deps, config: SelfCorrectionConfig | None, context: AgentContext, task_type: str
) -> float:
    """The request's min_quality_score when given, else the workspace's threshold for the type."""
    if config is not None:
        return config.min_quality_score
    key = deps.catalog.quality_key(task_type)
    return context.quality_thresholds.get(key, SelfCorrectionConfig().min_quality_score)


def evaluate_checkpoint(
    checkpoint_name: str,
    checkpoints_config: WorkflowCheckpoints,
    context: AgentContext,
    execution_data: Mapping[str, Any],
) -> CheckpointEvaluation:
    return _evaluate_checkpoint(checkpoint_name, checkpoints_config, context, execution_data)
