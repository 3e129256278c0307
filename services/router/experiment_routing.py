"""The router's experiment routing: a running A/B experiment that matches the goal picks
the task's sequence (one arm, by a stable hash of the task id).

Only the router uses it, so it lives here; the experiment store it reads is shared
(the gateway and the CLI write experiments, the memory service records outcomes).
"""

from __future__ import annotations

import asyncio

from shared.app.facade import recall
from shared.app.runtime import Deps
from shared.domain.experiments import ArmStats, assign_arm, first_match
from shared.domain.routing import RouteDecision
from shared.stores.experiment_store import running


async def experiment_route(
    deps: Deps, goal: str, workspace_id: str, task_id: str
) -> RouteDecision | None:
    """The arm's sequence when a running experiment matches the goal, else None
    (PatternError when a stored pattern cannot run: the caller fails the task with it).

    Confidence is the arm's posterior mean success rate so far (Beta(1, 1) prior):
    an experiment deliberately runs a sequence it is not yet sure of. Neighbours
    are still recalled so the task's context carries its past successes.
    """
    candidates = await running(deps.redis, deps.keys, workspace_id)
    if not candidates:
        return None
    # RE2 is linear and releases the GIL: in a thread, a match never stalls the event loop.
    experiment = await asyncio.to_thread(first_match, candidates, goal)
    if experiment is None:
        return None
    arm = assign_arm(experiment, task_id)
    raw = await deps.redis.hgetall(
        deps.keys.experiment_arm(workspace_id, experiment.experiment_id, arm)
    )
    neighbours = (await recall(deps, goal, workspace_id)).neighbours
    return RouteDecision(
        agent_sequence=experiment.sequence(arm),
        source="experiment",
        confidence=round(ArmStats.from_hash(raw).posterior_mean(), 4),
        reason=f"A/B experiment {experiment.name!r} ({experiment.experiment_id}): arm {arm}",
        provider="experiment",
        neighbours=neighbours,
        experiment_id=experiment.experiment_id,
        experiment_arm=arm,
    )
