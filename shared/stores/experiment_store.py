"""Experiments in Redis: config writes (gateway/CLI), reads (router, reports).

The config (`memory:experiment:{ws}:{id}`) is the only experiment key written
here; arm outcomes are written by the memory service alone
(services/memory/learning.py). Stopping with promotion publishes
`ExperimentConcluded` in the same transaction as the status change, so the
memory service, not the gateway, writes the winner into routing memory.
"""

from __future__ import annotations

import time
import uuid

from redis.asyncio import Redis
from redis.exceptions import WatchError

from shared.contract.events import Envelope, ExperimentConcluded, new_envelope
from shared.contract.keys import Keys
from shared.domain.experiments import (
    MAX_RUNNING,
    Arm,
    ArmStats,
    Experiment,
    ExperimentReport,
    ExperimentSpec,
    choose_winner,
    report,
)
from shared.messaging.bus import add_publish


class ExperimentNotFound(LookupError):
    pass


class ExperimentConflict(RuntimeError):
    """The experiment is not in a state that allows the operation."""


async def create(redis: Redis, keys: Keys, workspace_id: str, spec: ExperimentSpec) -> Experiment:
    """Store a new running experiment; it applies to the next matching request.

    At most MAX_RUNNING run at once (ExperimentConflict): the router matches every
    task's goal against each running pattern."""
    if await redis.scard(keys.experiments_running(workspace_id)) >= MAX_RUNNING:
        raise ExperimentConflict(
            f"{MAX_RUNNING} experiments are already running in this workspace; stop one first"
        )
    experiment = Experiment(
        **spec.model_dump(),
        experiment_id=uuid.uuid4().hex[:12],
        workspace_id=workspace_id,
        created_at=time.time(),
    )
    async with redis.pipeline(transaction=True) as tx:
        tx.set(
            keys.experiment(workspace_id, experiment.experiment_id), experiment.model_dump_json()
        )
        tx.zadd(
            keys.experiments_index(workspace_id), {experiment.experiment_id: experiment.created_at}
        )
        tx.sadd(keys.experiments_running(workspace_id), experiment.experiment_id)
        await tx.execute()
    return experiment


async def get(redis: Redis, keys: Keys, workspace_id: str, experiment_id: str) -> Experiment:
    raw = await redis.get(keys.experiment(workspace_id, experiment_id))
    if raw is None:
        raise ExperimentNotFound(experiment_id)
    return Experiment.model_validate_json(raw)


async def _load(redis: Redis, keys: Keys, workspace_id: str, ids: list[bytes]) -> list[Experiment]:
    if not ids:
        return []
    raws = await redis.mget([keys.experiment(workspace_id, i.decode()) for i in ids])
    return [Experiment.model_validate_json(r) for r in raws if r is not None]


async def list_all(redis: Redis, keys: Keys, workspace_id: str) -> list[Experiment]:
    """Every experiment of the workspace, oldest first."""
    return await _load(
        redis, keys, workspace_id, await redis.zrange(keys.experiments_index(workspace_id), 0, -1)
    )


async def running(redis: Redis, keys: Keys, workspace_id: str) -> list[Experiment]:
    """Running experiments only: two round trips, whatever the workspace's history."""
    ids = await redis.smembers(keys.experiments_running(workspace_id))
    return await _load(redis, keys, workspace_id, sorted(ids))


async def arm_stats(
    redis: Redis, keys: Keys, workspace_id: str, experiment_id: str
) -> tuple[ArmStats, ArmStats]:
    async with redis.pipeline(transaction=False) as pipe:
        for arm in ("A", "B"):
            pipe.hgetall(keys.experiment_arm(workspace_id, experiment_id, arm))
        raw_a, raw_b = await pipe.execute()
    return ArmStats.from_hash(raw_a), ArmStats.from_hash(raw_b)


async def get_report(
    redis: Redis, keys: Keys, workspace_id: str, experiment_id: str
) -> ExperimentReport:
    experiment = await get(redis, keys, workspace_id, experiment_id)
    a, b = await arm_stats(redis, keys, workspace_id, experiment_id)
    return report(experiment, a, b)


async def stop(
    redis: Redis,
    keys: Keys,
    workspace_id: str,
    experiment_id: str,
    *,
    promote: bool,
    winner: Arm | None = None,
) -> Experiment:
    """Stop routing tasks into the experiment; with `promote`, hand the winner to memory.

    WATCH on the config makes a double stop (two CLI calls racing) fail cleanly
    instead of publishing two conclusions.
    """
    key = keys.experiment(workspace_id, experiment_id)
    async with redis.pipeline(transaction=True) as tx:
        while True:
            try:
                await tx.watch(key)
                raw = await redis.get(key)  # on the client: see shared.stores.approvals._watched
                if raw is None:
                    raise ExperimentNotFound(experiment_id)
                experiment = Experiment.model_validate_json(raw)
                if experiment.status != "running":
                    raise ExperimentConflict(f"experiment {experiment_id} is already stopped")
                chosen: Arm | None = None
                if promote:
                    a, b = await arm_stats(redis, keys, workspace_id, experiment_id)
                    chosen = choose_winner(a, b, winner)
                stopped = experiment.model_copy(
                    update={
                        "status": "stopped",
                        "stopped_at": time.time(),
                        "winner": chosen,
                        "promoted": promote,
                    }
                )
                tx.multi()
                tx.set(key, stopped.model_dump_json())
                tx.srem(keys.experiments_running(workspace_id), experiment_id)
                if promote and chosen is not None:
                    stats = a if chosen == "A" else b
                    add_publish(tx, keys.layout, _conclusion(stopped, chosen, stats))
                await tx.execute()
                return stopped
            except WatchError:
                continue


def _conclusion(
    experiment: Experiment, winner: Arm, stats: ArmStats
) -> Envelope[ExperimentConcluded]:
    return new_envelope(
        ExperimentConcluded(
            experiment_id=experiment.experiment_id,
            winner=winner,
            agent_sequence=experiment.sequence(winner),
            mean_quality=round(min(max(stats.mean_quality, 0.0), 1.0), 4),
        ),
        workspace_id=experiment.workspace_id,
        correlation_id=f"experiment-{experiment.experiment_id}",
    )
