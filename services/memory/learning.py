"""The memory service's writes for learning: A/B arm outcomes, promotion, user feedback.

I/O only; the decisions live in `shared.domain.experiments` and `services.memory.feedback`.
Arm counters are queued on the handler's transaction, which also marks the
event processed, so each outcome counts exactly once. Agent ratings change
performance hashes outside that transaction (WATCH, like stage outcomes) with a
marker per (event, agent), so a redelivered feedback event changes nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from services.memory import store
from services.memory.feedback import rated_agents, rated_record
from services.memory.logic import index_attributes
from shared.app.runtime import Deps
from shared.contract.events import Envelope, ExperimentConcluded, FeedbackGiven, Workflow
from shared.contract.keys import Keys, goal_hash
from shared.domain.bandit import BanditConfig
from shared.domain.catalog import AgentCatalog
from shared.domain.performance import apply_feedback
from shared.memory.store import TaskRecord
from shared.messaging.bus import ServiceBus
from shared.messaging.tx import Tx
from shared.stores.agent_registry import catalog_for

log = logging.getLogger("raptorflow.memory.learning")
NOTHING: Sequence[Envelope[Any]] = ()


def _arm_key(keys: Keys, workspace_id: str, workflow: Workflow) -> str | None:
    routing = workflow.routing
    if routing.source != "experiment" or not routing.experiment_id or not routing.experiment_arm:
        return None
    return keys.experiment_arm(workspace_id, routing.experiment_id, routing.experiment_arm)


def record_assignment(tx: Tx, keys: Keys, workspace_id: str, workflow: Workflow) -> None:
    """Count a task the router put into an experiment arm (at SequenceChosen)."""
    key = _arm_key(keys, workspace_id, workflow)
    if key is not None:
        tx.hincrby(key, "assigned", 1)


def record_arm_outcome(
    tx: Tx, keys: Keys, workspace_id: str, workflow: Workflow, success: bool, quality: float
) -> None:
    """Fold a finished experiment task into its arm, and remember its goal for promotion."""
    key = _arm_key(keys, workspace_id, workflow)
    if key is None or workflow.routing.experiment_id is None:
        return
    q = min(max(quality, 0.0), 1.0)
    tx.hincrby(key, "tasks", 1)
    tx.hincrby(key, "successes", 1 if success else 0)
    tx.hincrbyfloat(key, "quality_sum", q)
    tx.hincrbyfloat(key, "quality_sq_sum", q * q)
    tx.hset(
        keys.experiment_goals(workspace_id, workflow.routing.experiment_id),
        goal_hash(workflow.goal),
        workflow.goal,
    )


async def promote_winner(
    deps: Deps, tx: Tx, workspace_id: str, concluded: ExperimentConcluded
) -> int:
    """Store the winner as the proven route for every goal the experiment covered.

    Overwriting each goal's record (same goal hash) both adds the winner and
    retires the loser's records for those goals, so neighbours vote for the
    winner. The records carry the winner arm's mean quality.
    """
    raw = await deps.redis.hgetall(
        deps.keys.experiment_goals(workspace_id, concluded.experiment_id)
    )
    goals = sorted((k.decode(), v.decode()) for k, v in raw.items())
    if not goals:
        return 0
    vectors = await asyncio.to_thread(deps.embedder.embed, [goal for _, goal in goals])
    now = time.time()
    for (hashed, goal), vector in zip(goals, vectors, strict=True):
        record = TaskRecord(
            goal=goal,
            agent_sequence=concluded.agent_sequence,
            success=True,
            result_quality=concluded.mean_quality,
            goal_hash=hashed,
            task_id=f"experiment:{concluded.experiment_id}",
            stored_at=now,
            provider="experiment",
        )
        await store.index_task(deps, workspace_id, record, vector=vector, tx=tx)
        store.add_task_record(tx, deps.keys, workspace_id, record, vector)
    return len(goals)


def _planned_agents(view: dict[str, str], catalog: AgentCatalog) -> list[tuple[str, str]]:
    """(task_type, agent) of the planned sequence, when no stage ever finished."""
    sequence = json.loads(view.get("agent_sequence", "[]"))
    known = set(catalog.names)
    return list(dict.fromkeys((catalog.get(a).task_type, a) for a in sequence if a in known))


async def _rate_record(
    deps: Deps, tx: Tx, workspace_id: str, feedback: FeedbackGiven, view: dict[str, str]
) -> str | None:
    """Fold the rating into the task's history record and its index entry (when the record
    is this task's); the critic quality the view keeps."""
    critic_quality = view.get("critic_quality") or view.get("quality")
    goal = view.get("goal")
    record = (
        await deps.memory.task_record(workspace_id, goal_hash(goal)) if goal else None
    )
    if record is None or record.task_id != feedback.task_id:
        return critic_quality
    critic = float(critic_quality) if critic_quality else record.result_quality
    updated = rated_record(
        record,
        critic_quality=critic,
        rating=feedback.rating,
        completed=view.get("status") == "completed",
    )
    tx.hset(deps.keys.task_history(workspace_id, record.goal_hash), mapping=updated.to_hash())
    try:
        await deps.index.set_attributes(workspace_id, record.goal_hash, index_attributes(updated))
    except KeyError:
        log.info("rated task is not in the vector index", extra={"task_id": feedback.task_id})
    return str(critic)


async def apply_rating(
    deps: Deps,
    tx: Tx,
    workspace_id: str,
    event_id: str,
    feedback: FeedbackGiven,
    bandit: BanditConfig,
) -> bool:
    """Fold a rating into the task view, its history record, its index entry and its agents.

    Returns False when the task is unknown (nothing to rate; the event is dropped).
    """
    view_key = deps.keys.task_view(workspace_id, feedback.task_id)
    raw_view = await deps.redis.hgetall(view_key)
    if not raw_view:
        log.warning("feedback for an unknown task", extra={"task_id": feedback.task_id})
        return False
    view = {k.decode(): v.decode() for k, v in raw_view.items()}
    raw_stages = await deps.redis.hgetall(deps.keys.task_stages(workspace_id, feedback.task_id))
    catalog = await catalog_for(deps.redis, deps.catalog, workspace_id)
    agents = rated_agents([json.loads(v) for v in raw_stages.values()]) or _planned_agents(
        view, catalog
    )
    critic_quality = await _rate_record(deps, tx, workspace_id, feedback, view)
    view_update = {"feedback_rating": str(feedback.rating), "feedback_comment": feedback.comment}
    if critic_quality:
        view_update["critic_quality"] = critic_quality
    tx.hset(view_key, mapping=view_update)
    for task_type, agent in agents:
        marker = deps.keys.processed(
            workspace_id, "memory-feedback", f"{event_id}:{task_type}:{agent}"
        )
        await _rate_agent(
            deps.redis,
            deps.keys,
            workspace_id,
            task_type,
            agent,
            feedback.rating,
            bandit,
            marker,
            deps.settings.processed_ttl_s,
        )
    return True


async def _rate_agent(
    redis: Redis,
    keys: Keys,
    workspace_id: str,
    task_type: str,
    agent: str,
    rating: int,
    bandit: BanditConfig,
    marker: str,
    marker_ttl_s: int,
) -> None:
    """apply_feedback on one arm, once, under optimistic locking."""
    await store.update_arm_once(
        redis,
        keys,
        workspace_id,
        task_type,
        agent,
        lambda perf, step: apply_feedback(perf, rating, step, bandit.gamma),
        marker=marker,
        marker_ttl_s=marker_ttl_s,
        advance_step=False,
    )


def subscribe(bus: ServiceBus, deps: Deps, bandit: BanditConfig) -> None:
    """Register the feedback and experiment-conclusion consumers on the memory service."""

    async def on_feedback(event: Envelope[FeedbackGiven], tx: Tx) -> Sequence[Envelope[Any]]:
        await apply_rating(deps, tx, event.workspace_id, event.event_id, event.payload, bandit)
        return NOTHING

    async def on_concluded(event: Envelope[ExperimentConcluded], tx: Tx) -> Sequence[Envelope[Any]]:
        await promote_winner(deps, tx, event.workspace_id, event.payload)
        return NOTHING

    bus.on(FeedbackGiven, on_feedback)
    bus.on(ExperimentConcluded, on_concluded)
