"""Checkpoint service: gates stages before and after execution, and resumes after decisions.

StageAssigned -> StageCleared | ApprovalNeeded
StageCompleted -> StageAdvanced | TaskCompleted | ApprovalNeeded
ApprovalResolved -> StageCleared | StageAdvanced | TaskCompleted | TaskFailed
TaskCancelled -> its pending approvals withdrawn (ApprovalWithdrawn)
A background sweep turns overdue approvals into their timeout outcome, and tasks past
their deadline into TaskFailed(deadline).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from services.checkpoint import logic
from shared.app.runtime import Deps, Service, every, new_service
from shared.contract.events import (
    ApprovalNeeded,
    ApprovalResolved,
    Envelope,
    StageAssigned,
    StageCompleted,
    StageOutcome,
    TaskCancelled,
    TaskFailed,
    Workflow,
)
from shared.contract.keys import Keys
from shared.contract.models import CheckpointCondition, WorkflowCheckpoints
from shared.domain.checkpoints import effective_checkpoints
from shared.messaging.tx import Tx
from shared.stores import approvals, audit, checkpoints, tasks

SERVICE = "checkpoint"
SWEEP_INTERVAL_S = 1.0
TIMEOUT_ACTOR = "system:timeout"

log = logging.getLogger("raptorflow.checkpoint")


async def load_config(
    deps: Deps, workspace_id: str, workflow: Workflow
) -> WorkflowCheckpoints | None:
    """The gates the task runs under: the workspace's, plus the task's own (which replace
    them only when the task may: `effective_checkpoints`). ConfigUnreadable when the
    workspace's stored configuration does not load."""
    if workflow.replace_checkpoints and workflow.checkpoints is not None:
        return workflow.checkpoints
    stored = await checkpoints.load_config(deps.redis, deps.keys, workspace_id)
    replace = stored is not None and stored.allow_task_overrides
    return effective_checkpoints(stored, workflow.checkpoints, replace=replace)


def unreadable_config(workflow: Workflow, exc: checkpoints.ConfigUnreadable) -> TaskFailed:
    """A stored configuration that no longer loads fails the task at once, saying why."""
    return TaskFailed(workflow=workflow, reason="error", error=str(exc))


async def agent_success_rate(
    deps: Deps, workspace_id: str, task_type: str, agent: str
) -> float | None:
    perf = (await deps.memory.bandit_stats(workspace_id, task_type)).get(agent)
    return perf.success_rate if perf is not None and perf.runs else None


def _audit_evaluations(
    tx: Tx, keys: Keys,
    workspace_id: str,
    evaluated: logic.Evaluated,
    needed: ApprovalNeeded | None,
    agent: str = "",
    workflow: Workflow | None = None,
) -> None:
    """Audit every evaluation in the handler's transaction, beside the outputs it caused."""
    flow = needed.workflow if needed is not None else workflow
    if flow is None:
        return
    for checkpoint, evaluation in evaluated:
        waits = needed is not None and needed.checkpoint == checkpoint.name
        audit.add_entry(
            tx, keys,
            workspace_id,
            audit.evaluation_entry(
                flow.task_id,
                evaluation,
                condition=checkpoint.condition,
                agent=needed.agent if needed is not None else agent,
                stage_index=flow.stage_index,
                approval_id=needed.approval_id if waits and needed is not None else None,
            ),
        )
        if waits:
            break  # later checkpoints of this stage were not asked; do not audit them


async def _gate(
    deps: Deps,
    tx: Tx,
    event: Envelope[StageAssigned] | Envelope[StageCompleted],
    condition: CheckpointCondition,
    quality: float | None,
    *,
    output: str | None = None,
    outcome: StageOutcome | None = None,
) -> Envelope[ApprovalNeeded] | None:
    """Evaluate the checkpoints that apply here, audit them, and create the approval the
    workflow must wait on (None: it may go on)."""
    stage = event.payload
    workflow = stage.workflow
    config = await load_config(deps, event.workspace_id, workflow)
    agents = {stage.agent, workflow.current_agent}
    # The success rate costs a read of the agent's aggregates; only a checkpoint uses it
    # (most stages have none: issue 10's profile found this read 2/3 of the handler's time).
    applies = bool(logic.applicable_checkpoints(config, condition, agents, workflow.stage_index))
    data = {
        "quality_score": quality,
        "agent_success_rate": await agent_success_rate(
            deps, event.workspace_id, stage.task_type, stage.agent
        ) if applies else None,
    }
    evaluated = logic.evaluate_applicable(
        config, condition, agents, workflow.stage_index, event.context, data
    )
    pending = logic.first_pending_of(evaluated)
    if pending is None or config is None:
        _audit_evaluations(
            tx, deps.keys, event.workspace_id, evaluated, None, stage.agent, workflow
        )
        return None
    checkpoint, evaluation = pending
    now = datetime.now(UTC)
    needed = event.follow(
        logic.approval_needed(
            checkpoint=checkpoint,
            evaluation=evaluation,
            config=config,
            workflow=workflow,
            agent=stage.agent,
            task_type=stage.task_type,
            now=now,
            output=output,
            outcome=outcome,
        )
    )
    approvals.add_create(tx, deps.keys, needed, now.timestamp())
    _audit_evaluations(tx, deps.keys, event.workspace_id, evaluated, needed.payload)
    return needed


async def on_stage_assigned(
    event: Envelope[StageAssigned], tx: Tx, *, deps: Deps
) -> Sequence[Envelope[Any]]:
    workflow = event.payload.workflow
    previous_quality = workflow.outcomes[-1].quality if workflow.outcomes else None
    try:
        needed = await _gate(
            deps, tx, event, CheckpointCondition.BEFORE_EXECUTION, previous_quality
        )
    except checkpoints.ConfigUnreadable as exc:
        return [event.follow(unreadable_config(workflow, exc))]
    return [needed or event.follow(logic.cleared(event.payload))]


async def on_stage_completed(
    event: Envelope[StageCompleted], tx: Tx, *, deps: Deps
) -> Sequence[Envelope[Any]]:
    completed = event.payload
    outcome = logic.stage_outcome(completed)
    try:
        needed = await _gate(
            deps,
            tx,
            event,
            CheckpointCondition.AFTER_STAGE,
            completed.quality,
            output=completed.output,
            outcome=outcome,
        )
    except checkpoints.ConfigUnreadable as exc:
        return [event.follow(unreadable_config(completed.workflow, exc))]
    if needed is not None:
        return [needed]
    finished = logic.finish_stage(completed.workflow, outcome, completed.output, datetime.now(UTC))
    return [event.follow(finished)]


async def on_approval_resolved(
    event: Envelope[ApprovalResolved], tx: Tx, *, deps: Deps
) -> Sequence[Envelope[Any]]:
    record = await approvals.get_approval(
        deps.redis, deps.keys, event.workspace_id, event.payload.approval_id
    )
    needed: ApprovalNeeded = record.needed.payload
    follow_up = logic.after_decision(needed, event.payload, datetime.now(UTC))
    return [event.follow(follow_up)]


async def expire_due_approvals(deps: Deps, now: float) -> int:
    """Apply each overdue approval's timeout outcome; the atomic decide makes it exactly once."""
    fired = 0
    for workspace_id, approval_id in await approvals.due_approvals(deps.redis, deps.keys, now):
        try:
            record = await approvals.get_approval(deps.redis, deps.keys, workspace_id, approval_id)
        except approvals.ApprovalNotFound:
            await deps.redis.zrem(
                deps.keys.approval_deadlines(workspace_id), f"{workspace_id}|{approval_id}"
            )
            continue
        try:
            config = await load_config(deps, workspace_id, record.needed.payload.workflow)
        except checkpoints.ConfigUnreadable:
            config = None  # the gate's own outcome is unknown: the default, reject
        checkpoint = config.find(record.needed.payload.checkpoint) if config else None
        outcome = checkpoint.on_timeout if checkpoint else logic.TimeoutOutcome.REJECT
        decision = logic.timeout_decision(outcome, record.escalated)
        if decision == "escalate":
            timeout = (checkpoint.timeout_seconds if checkpoint else None) or (
                config.default_timeout if config else 3600
            )
            await approvals.escalate(deps.redis, deps.keys, workspace_id, approval_id, timeout)
            continue
        try:
            await approvals.decide(
                deps.redis,
                deps.keys,
                workspace_id,
                approval_id,
                decision="approved" if decision == "approved" else "rejected",
                decided_by=TIMEOUT_ACTOR,
                reason="approval timed out",
                expired=True,
            )
            fired += 1
        except approvals.ApprovalConflict:
            continue
    return fired


async def on_task_cancelled(
    event: Envelope[TaskCancelled], tx: Tx, *, deps: Deps
) -> Sequence[Envelope[Any]]:
    """A cancelled task's pending approval leaves the list (its webhook hears ApprovalWithdrawn)."""
    await approvals.withdraw_for_task(
        deps.redis,
        deps.keys,
        event.workspace_id,
        event.correlation_id,
        reason="cancelled",
    )
    return ()


async def expire_due_tasks(deps: Deps, now: float) -> int:
    """End each task past its deadline as failed (reason deadline), wherever it is: this
    sweep needs nothing from the service that holds the task, so it fires even while that
    service is down. Its pending approval is withdrawn."""
    fired = 0
    for workspace_id, task_id in await tasks.due_deadlines(deps.redis, deps.keys, now):
        if await tasks.expire(deps.redis, deps.keys, workspace_id, task_id, now=now):
            fired += 1
            await approvals.withdraw_for_task(
                deps.redis,
                deps.keys,
                workspace_id,
                task_id,
                reason="deadline",
            )
    return fired


async def sweep_once(deps: Deps) -> None:
    now = datetime.now(UTC).timestamp()
    await expire_due_approvals(deps, now)
    await expire_due_tasks(deps, now)


async def sweep_forever(deps: Deps) -> None:
    await every(SWEEP_INTERVAL_S, lambda: sweep_once(deps), "approval and task deadline sweep")


def build(deps: Deps) -> Service:
    service, bus = new_service(SERVICE, deps)

    async def assigned(event: Envelope[StageAssigned], tx: Tx) -> Sequence[Envelope[Any]]:
        return await on_stage_assigned(event, tx, deps=deps)

    async def completed(event: Envelope[StageCompleted], tx: Tx) -> Sequence[Envelope[Any]]:
        return await on_stage_completed(event, tx, deps=deps)

    async def resolved(event: Envelope[ApprovalResolved], tx: Tx) -> Sequence[Envelope[Any]]:
        return await on_approval_resolved(event, tx, deps=deps)

    async def cancelled(event: Envelope[TaskCancelled], tx: Tx) -> Sequence[Envelope[Any]]:
        return await on_task_cancelled(event, tx, deps=deps)

    # A cancelled or expired task's events are dropped here, its next hop.
    bus.on(StageAssigned, tasks.unless_stopped(deps.redis, deps.keys, assigned))
    bus.on(StageCompleted, tasks.unless_stopped(deps.redis, deps.keys, completed))
    bus.on(ApprovalResolved, tasks.unless_stopped(deps.redis, deps.keys, resolved))
    bus.on(TaskCancelled, cancelled)
    service.background.append(lambda: sweep_forever(deps))
    return service
