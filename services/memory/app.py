"""Memory service: the only writer of memory. Stores outcomes, critiques, routing
decisions and agent performance, and keeps the task view for GET /tasks/{id}."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from services.memory import calibration, learning, logic, store
from shared.app.runtime import Deps, Service, new_service
from shared.contract.events import (
    ApprovalNeeded,
    ApprovalResolved,
    CritiqueDone,
    Envelope,
    SequenceChosen,
    StageCompleted,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskRequested,
    Workflow,
)
from shared.contract.keys import TASK_HISTORY_TTL_S, Keys
from shared.domain.bandit import BanditConfig
from shared.domain.recalibration import outcome_of
from shared.memory.store import TaskRecord
from shared.messaging.tx import Tx
from shared.observability import telemetry
from shared.stores import tasks

SERVICE = "memory"
NOTHING: Sequence[Envelope[Any]] = ()


async def _store_record(
    deps: Deps, tx: Tx, workspace_id: str, record: TaskRecord | None
) -> None:
    if record is None:
        return
    vector = await store.index_task(deps, workspace_id, record, tx=tx)
    store.add_task_record(tx, deps.keys, workspace_id, record, vector)


def _routing_outcome(
    tx: Tx, keys: Keys, workspace_id: str, task_id: str, success: bool, quality: float
) -> None:
    key = keys.routing_decision(workspace_id, task_id)
    tx.hset(key, mapping={"outcome_success": str(success).lower(), "outcome_quality": str(quality)})
    tx.expire(key, TASK_HISTORY_TTL_S)


async def _recalibrate(
    deps: Deps, event: Envelope[Any], workflow: Workflow, success: bool
) -> None:
    """Teach the workspace's routing calibration whether memory's candidate was right."""
    routing = workflow.routing
    outcome = outcome_of(
        routing.candidate_sequence, routing.candidate_logit, workflow.agent_sequence, success
    )
    if outcome is None:
        return
    marker = deps.keys.processed(event.workspace_id, "memory-calibration", event.event_id)
    await calibration.record_outcome(
        deps.redis, deps.keys, event.workspace_id, outcome,
        marker=marker, marker_ttl_s=deps.settings.processed_ttl_s,
    )


async def on_task_cancelled(
    deps: Deps, event: Envelope[TaskCancelled], tx: Tx
) -> Sequence[Envelope[Any]]:
    """Neither a success nor a failure: no history, no agent outcome, no calibration; the
    view says cancelled, and a TaskCancelled published straight onto the stream stops the
    task here too."""
    tx.set(deps.keys.task_stopped(event.workspace_id, event.correlation_id), "cancelled",
           ex=tasks.VIEW_TTL_S, nx=True)
    store.add_view(tx, deps.keys, event.workspace_id, event.correlation_id,
                   logic.view_of_cancel(event.payload, time.time()))
    key = deps.keys.routing_decision(event.workspace_id, event.correlation_id)
    if await deps.redis.exists(key):
        tx.hset(key, "outcome_cancelled", "true")
    return NOTHING


async def _ended_elsewhere(deps: Deps, event: Envelope[Any], reason: str | None) -> bool:
    """An outcome that raced a cancel or a deadline (published before the stop was seen):
    the task already ended, so it teaches routing and selection nothing."""
    stopped = await tasks.stop_reason(
        deps.redis, deps.keys, event.workspace_id, event.correlation_id
    )
    return stopped is not None and stopped != reason


async def on_requested(
    event: Envelope[TaskRequested], tx: Tx, *, keys: Keys
) -> Sequence[Envelope[Any]]:
    # The gateway wrote all this at acceptance; a task published straight onto the
    # stream gets its view, index entry, deadline and kept request here.
    accepted_at = event.occurred_at.timestamp()
    fields = logic.view_of_request(event.payload, accepted_at)
    store.add_view(tx, keys, event.workspace_id, event.correlation_id, fields)
    if "deadline_at" in fields:
        tasks.queue_deadline(
            tx, keys, event.workspace_id, event.correlation_id, float(fields["deadline_at"])
        )
    tx.set(
        keys.task_request(event.workspace_id, event.correlation_id),
        event.model_dump_json(),
        ex=tasks.VIEW_TTL_S,
        nx=True,
    )
    return NOTHING


async def on_sequence(
    event: Envelope[SequenceChosen], tx: Tx, *, keys: Keys
) -> Sequence[Envelope[Any]]:
    now = time.time()
    key = keys.routing_decision(event.workspace_id, event.correlation_id)
    tx.hset(key, mapping=logic.routing_fields(event.payload, now))
    learning.record_assignment(tx, keys, event.workspace_id, event.payload.workflow)
    tx.expire(key, TASK_HISTORY_TTL_S)
    store.add_view(
        tx,
        keys,
        event.workspace_id,
        event.correlation_id,
        logic.view_of_sequence(event.payload, now),
    )
    return NOTHING


async def on_critique(
    event: Envelope[CritiqueDone], tx: Tx, *, keys: Keys
) -> Sequence[Envelope[Any]]:
    store.add_critique(
        tx, keys, event.workspace_id, event.payload.content_id, logic.critique_fields(event.payload)
    )
    return NOTHING


async def on_stage(
    event: Envelope[StageCompleted], tx: Tx, *, keys: Keys
) -> Sequence[Envelope[Any]]:
    store.add_stage_view(
        tx,
        keys,
        event.workspace_id,
        event.correlation_id,
        event.payload.workflow.stage_index,
        logic.view_of_stage(event.payload),
    )
    budget_stop = logic.view_of_budget_stop(event.payload)
    if budget_stop:
        store.add_view(tx, keys, event.workspace_id, event.correlation_id, budget_stop)
    return NOTHING


async def on_approval(
    event: Envelope[ApprovalNeeded], tx: Tx, *, keys: Keys
) -> Sequence[Envelope[Any]]:
    store.add_view(
        tx,
        keys,
        event.workspace_id,
        event.correlation_id,
        logic.view_of_approval(event.payload, time.time()),
    )
    return NOTHING


async def on_decision(
    event: Envelope[ApprovalResolved], tx: Tx, *, keys: Keys
) -> Sequence[Envelope[Any]]:
    store.add_view(
        tx,
        keys,
        event.workspace_id,
        event.correlation_id,
        logic.view_of_decision(event.payload, time.time()),
    )
    return NOTHING


async def on_completed(
    event: Envelope[TaskCompleted], tx: Tx, *, deps: Deps, bandit: BanditConfig
) -> Sequence[Envelope[Any]]:
    if await _ended_elsewhere(deps, event, None):
        return NOTHING
    done = event.payload
    now = time.time()
    await store.record_stage_outcomes(
        deps.redis,
        deps.keys,
        event.workspace_id,
        event.event_id,
        done.workflow.outcomes,
        bandit,
        deps.settings.processed_ttl_s,
    )
    await _recalibrate(deps, event, done.workflow, done.success)
    await _store_record(deps, tx, event.workspace_id, logic.record_of_completion(done, now))
    _routing_outcome(
        tx, deps.keys, event.workspace_id, event.correlation_id, done.success, done.quality
    )
    learning.record_arm_outcome(
        tx, deps.keys, event.workspace_id, done.workflow, done.success, done.quality
    )
    store.add_view(
        tx, deps.keys, event.workspace_id, event.correlation_id, logic.view_of_completion(done, now)
    )
    return NOTHING


async def on_failed(
    event: Envelope[TaskFailed], tx: Tx, *, deps: Deps, bandit: BanditConfig
) -> Sequence[Envelope[Any]]:
    if await _ended_elsewhere(deps, event, event.payload.reason):
        return NOTHING
    failed = event.payload
    now = time.time()
    if failed.workflow is not None:
        await store.record_stage_outcomes(
            deps.redis,
            deps.keys,
            event.workspace_id,
            event.event_id,
            failed.workflow.outcomes,
            bandit,
            deps.settings.processed_ttl_s,
        )
        await _recalibrate(deps, event, failed.workflow, False)
        _routing_outcome(tx, deps.keys, event.workspace_id, event.correlation_id, False, 0.0)
        learning.record_arm_outcome(tx, deps.keys, event.workspace_id, failed.workflow, False, 0.0)
    await _store_record(deps, tx, event.workspace_id, logic.record_of_failure(failed, now))
    if failed.workflow is not None:  # where a resume continues from
        tx.set(
            deps.keys.task_snapshot(event.workspace_id, event.correlation_id),
            logic.snapshot_of(event),
            ex=tasks.VIEW_TTL_S,
        )
    store.add_view(
        tx, deps.keys, event.workspace_id, event.correlation_id, logic.view_of_failure(failed, now)
    )
    return NOTHING


def build(deps: Deps) -> Service:
    service, bus = new_service(SERVICE, deps)
    bandit = BanditConfig()
    bus.on(TaskRequested, partial(on_requested, keys=deps.keys))
    bus.on(SequenceChosen, partial(on_sequence, keys=deps.keys))
    bus.on(CritiqueDone, partial(on_critique, keys=deps.keys))
    bus.on(StageCompleted, partial(on_stage, keys=deps.keys))
    bus.on(ApprovalNeeded, partial(on_approval, keys=deps.keys))
    bus.on(ApprovalResolved, partial(on_decision, keys=deps.keys))
    # One at a time: concurrent outcomes of one agent only collide on its WATCHed aggregates.
    completed = partial(on_completed, deps=deps, bandit=bandit)
    bus.on(TaskCompleted, completed, after_commit=telemetry.observe_task_outcome, concurrency=1)
    failed = partial(on_failed, deps=deps, bandit=bandit)
    bus.on(TaskFailed, failed, after_commit=telemetry.observe_task_outcome, concurrency=1)
    bus.on(TaskCancelled, functools.partial(on_task_cancelled, deps))
    learning.subscribe(bus, deps, bandit)
    return service
