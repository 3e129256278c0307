"""The write side of memory: the only code that writes the memory deps.keys.

Two exactly-once mechanisms meet here, on purpose:

- Writes that only *add* (task records, views, critiques, routing decisions, arm and
  pool counters) are queued on the handler's `Tx`, like every other service's: they
  commit with the event's processed marker and its XACK, once.
- Folds of an aggregate a concurrent replica may be changing too (agent performance,
  feedback ratings, the routing calibration) are read-modify-writes. Queued on the
  handler's transaction they would lose updates: the bus WATCHes only the processed
  markers, and in batched mode the write is replayed after other handlers ran, so two
  replicas that read the same value both write value + 1 (a conflict would also abort
  the whole batch). `update_once` runs each fold in a transaction of its own that
  WATCHes the aggregate and a marker of its own (per event and stage or agent), so it
  is retried on a conflict and applied once on a redelivery.
  tests/integration/test_memory_exactly_once.py shows the lost update and the fix.

The vector index upsert (`index_task`) is keyed by goal hash: repeating it on a
redelivery writes the same entry, so it needs neither.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import WatchError

from services.memory.logic import index_attributes
from shared.app.runtime import Deps
from shared.contract.events import StageOutcome
from shared.contract.keys import CRITIQUE_TTL_S, TASK_HISTORY_TTL_S, Keys
from shared.domain.bandit import BanditConfig
from shared.domain.performance import (
    AgentPerformance,
    from_redis_hash,
    record_outcome,
    to_redis_hash,
)
from shared.memory import shared_pool as shared_learning
from shared.memory.embeddings.base import Vectors as Vector
from shared.memory.store import TaskRecord
from shared.messaging.tx import Tx
from shared.stores import tasks

T = TypeVar("T")
Plan = Callable[[], Awaitable[Callable[[Tx], T]]]


async def update_once(
    redis: Redis, watched: Sequence[str], marker: str, marker_ttl_s: int, plan: Plan[T]
) -> T | None:
    """A read-modify-write applied exactly once (the marker) without losing a concurrent
    replica's update (WATCH on `watched` and the marker; retried when either changes).

    `plan` reads the current state and returns the writes to queue (and their result).
    Its reads go through the client, not the watching pipeline: a cluster pipeline cannot
    run commands between WATCH and MULTI, and a change after WATCH still aborts the EXEC.
    Returns None when the marker says the update was applied before.
    """
    async with redis.pipeline(transaction=True) as tx:
        while True:
            try:
                await tx.watch(*watched, marker)
                # The marker check and the plan's reads are independent: one round trip's wait.
                applied, write = await asyncio.gather(redis.exists(marker), plan())
                if applied:
                    return None
                tx.multi()
                result = write(tx)
                tx.set(marker, b"1", ex=marker_ttl_s)
                await tx.execute()
                return result
            except WatchError:
                continue


# Adds a vector (float64 bytes) to the one stored in a hash field, in Redis, so that
# concurrent replicas' additions are never lost; a stored sum of another dimension
# (the embedder changed) is replaced.
_ADD_VECTOR = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
local add = ARGV[2]
if (not current) or (#current ~= #add) then
  redis.call('HSET', KEYS[1], ARGV[1], add)
  return 1
end
local n = #add / 8
local format = '<' .. string.rep('d', n)
local sum = {struct.unpack(format, current)}
local more = {struct.unpack(format, add)}
for i = 1, n do sum[i] = sum[i] + more[i] end
sum[n + 1] = nil  -- struct.unpack also returned the next position
redis.call('HSET', KEYS[1], ARGV[1], struct.pack(format, unpack(sum)))
return 1
"""


def add_sequence_vector(tx: Tx, key: str, sequence: list[str], vector: Vector) -> None:
    """Queue the addition of a success's goal vector to its sequence's sum (a centroid feature)."""
    blob = np.asarray(vector, dtype="<f8").tobytes()
    tx.eval(_ADD_VECTOR, 1, key, json.dumps(sequence), blob)


def add_task_record(
    tx: Tx, keys: Keys, workspace_id: str, record: TaskRecord, vector: Vector | None = None
) -> None:
    """The seed's task history hash with its 30-day TTL, plus the recent-history index;
    a success also counts for its sequence and, given its goal vector, adds to the
    sequence's vector sum."""
    key = keys.task_history(workspace_id, record.goal_hash)
    tx.delete(key)
    tx.hset(key, mapping=record.to_hash())
    tx.expire(key, TASK_HISTORY_TTL_S)
    tx.zadd(keys.task_history_index(workspace_id), {record.goal_hash: record.stored_at})
    if record.success:
        tx.hincrby(keys.sequence_counts(workspace_id), json.dumps(record.agent_sequence), 1)
        if vector is not None:
            add_sequence_vector(tx, keys.sequence_vectors(workspace_id), record.agent_sequence, vector)


async def index_task(
    deps: Deps,
    workspace_id: str,
    record: TaskRecord,
    *,
    vector: Vector | None = None,
    tx: Tx | None = None,
) -> Vector:
    """Embed the goal (unless given) and upsert it in the workspace's vector index (idempotent);
    returns the goal's vector.

    A success of a workspace that opted in to shared learning also goes to the
    shared pool, as (vector, sequence, quality) under an anonymous id: never its goal.
    """
    embedded = await deps.memory.embed_async(record.goal) if vector is None else vector
    await deps.index.add(workspace_id, record.goal_hash, embedded, index_attributes(record))
    if record.success and shared_learning.opted_in(deps.settings, workspace_id):
        item = shared_learning.pool_item_id(workspace_id, record.goal_hash)
        await deps.index.add(
            shared_learning.POOL_WORKSPACE,
            item,
            embedded,
            shared_learning.pool_attributes(record, workspace_id),
        )
        # Counter and sum are not idempotent: on the handler's transaction they count once
        # per event.
        def queue(pipe: Tx) -> None:
            pipe.hincrby(
                deps.keys.pool_sequence_counts(workspace_id), json.dumps(record.agent_sequence), 1
            )
            add_sequence_vector(
                pipe, deps.keys.pool_sequence_vectors(workspace_id), record.agent_sequence, embedded
            )

        if tx is not None:
            queue(tx)
        else:
            async with deps.redis.pipeline(transaction=True) as own:
                queue(own)
                await own.execute()
    return embedded


def add_critique(
    tx: Tx, keys: Keys, workspace_id: str, content_id: str, fields: dict[str, str]
) -> None:
    key = keys.critique(workspace_id, content_id)
    tx.hset(key, mapping=fields)
    tx.expire(key, CRITIQUE_TTL_S)


def add_view(tx: Tx, keys: Keys, workspace_id: str, task_id: str, fields: dict[str, str]) -> None:
    """The task view's update (a status only moves forward: shared.stores.tasks)."""
    tasks.queue_view(tx, keys, workspace_id, task_id, fields, time.time())


def add_stage_view(
    tx: Tx, keys: Keys, workspace_id: str, task_id: str, index: int, stage: str
) -> None:
    tasks.queue_stage(tx, keys, workspace_id, task_id, index, stage)


async def record_stage_outcomes(
    redis: Redis,
    keys: Keys,
    workspace_id: str,
    event_id: str,
    outcomes: list[StageOutcome],
    config: BanditConfig,
    marker_ttl_s: int,
) -> None:
    """Fold each stage's outcome into its agent's running aggregates, exactly once each.

    Optimistic locking (WATCH) keeps concurrent replicas from losing updates; a
    marker per (event, stage) written in the same transaction makes a redelivered
    event change nothing twice.
    """
    for outcome in outcomes:
        marker = keys.processed(workspace_id, "memory-perf", f"{event_id}:{outcome.stage_index}")
        await _record_one(redis, keys, workspace_id, outcome, config, marker, marker_ttl_s)


async def _record_one(
    redis: Redis,
    keys: Keys,
    workspace_id: str,
    outcome: StageOutcome,
    config: BanditConfig,
    marker: str,
    marker_ttl_s: int,
) -> None:
    def fold(perf: AgentPerformance, step: int) -> AgentPerformance:
        return record_outcome(
            perf,
            success=outcome.threshold_met,
            quality=outcome.quality,
            latency_s=outcome.duration_s,
            cost_usd=outcome.cost_usd,
            step=step,
            gamma=config.gamma,
        )

    await update_arm_once(
        redis,
        keys,
        workspace_id,
        outcome.task_type,
        outcome.agent,
        fold,
        marker=marker,
        marker_ttl_s=marker_ttl_s,
        advance_step=True,
    )


async def update_arm_once(
    redis: Redis,
    keys: Keys,
    workspace_id: str,
    task_type: str,
    agent: str,
    change: Callable[[AgentPerformance, int], AgentPerformance],
    *,
    marker: str,
    marker_ttl_s: int,
    advance_step: bool,
) -> None:
    """Apply `change` to one agent's aggregates exactly once (the marker) without losing a
    concurrent replica's update (WATCH on the arm, the task type's step and the marker).

    Outcomes advance the task type's step (the bandit's discounting clock); ratings do not.
    """
    arm_key = keys.agent_performance(workspace_id, task_type, agent)
    step_key = keys.performance_step(workspace_id, task_type)

    async def plan() -> Callable[[Tx], None]:
        async with redis.pipeline(transaction=False) as reads:  # one round trip for both
            reads.hgetall(arm_key)
            reads.get(step_key)
            raw, current_step = await reads.execute()
        step = int(current_step or 0) + (1 if advance_step else 0)
        updated = change(from_redis_hash(raw) if raw else AgentPerformance(agent=agent), step)

        def write(tx: Tx) -> None:
            tx.hset(arm_key, mapping=to_redis_hash(updated))
            if advance_step:
                tx.set(step_key, step)
            tx.sadd(keys.performance_index(workspace_id), f"{task_type}:{agent}")

        return write

    await update_once(redis, [arm_key, step_key], marker, marker_ttl_s, plan)
