"""The write side of a workspace's routing calibration (the math is in shared.domain.recalibration).

The memory service calls `record_outcome` when a task ends; `raptorflow eval
routing` calls it when it stores a replayed row, so both learn the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from services.memory.store import update_once
from shared.contract.keys import TASK_HISTORY_TTL_S, Keys
from shared.domain.recalibration import (
    DEFAULT_CONFIG,
    CalibrationOutcome,
    RecalibrationConfig,
    WorkspaceCalibration,
    prior,
    update,
)
from shared.messaging.tx import Tx


async def record_outcome(
    redis: Redis, keys: Keys,
    workspace_id: str,
    outcome: CalibrationOutcome,
    *,
    marker: str,
    marker_ttl_s: int,
    config: RecalibrationConfig = DEFAULT_CONFIG,
) -> WorkspaceCalibration | None:
    """Fold one labelled decision into the workspace's calibration, exactly once.

    A read-modify-write (the update is not a counter), so it WATCHes the state
    and the marker: a concurrent replica's update is never lost, and a
    redelivered event (its marker already set) changes nothing. Returns the new
    state, or None when the marker says it was applied before.
    """
    key = keys.routing_calibration(workspace_id)

    async def plan() -> Callable[[Tx], WorkspaceCalibration]:
        raw = await redis.hgetall(key)
        state = WorkspaceCalibration.from_hash(raw) if raw else prior(config)
        new = update(state, outcome.global_logit, outcome.right, config)

        def write(tx: Tx) -> WorkspaceCalibration:
            tx.hset(key, mapping=new.to_hash())
            tx.expire(key, TASK_HISTORY_TTL_S)
            return new

        return write

    return await update_once(redis, [key], marker, marker_ttl_s, plan)
