"""Experiment arms on a real Redis: the memory service counts outcomes once, the report is significant."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from raptorflow.stack import LocalStack
from shared.contract.events import (
    Envelope,
    RoutingInfo,
    StageOutcome,
    TaskCompleted,
    Workflow,
    new_envelope,
)
from shared.domain.experiments import Arm, Experiment, ExperimentSpec
from shared.messaging.bus import publish
from shared.stores import experiment_store
from tests.helpers import KEYS, PLAIN, eventually, settings_for


def arm_outcome(
    experiment: Experiment, arm: Arm, *, success: bool, quality: float
) -> Envelope[TaskCompleted]:
    task_id = str(uuid.uuid4())
    sequence = experiment.sequence(arm)
    workflow = Workflow(
        task_id=task_id,
        goal=f"Write a launch email {task_id[:6]}",
        agent_sequence=sequence,
        routing=RoutingInfo(
            source="experiment",
            confidence=0.5,
            experiment_id=experiment.experiment_id,
            experiment_arm=arm,
        ),
        outcomes=[
            StageOutcome(
                stage_index=i,
                agent=agent,
                task_type="email" if agent == "email_writer" else "content_generation",
                quality=quality,
                threshold_met=success,
                iterations=1,
                provider="offline",
            )
            for i, agent in enumerate(sequence)
        ],
    )
    return new_envelope(
        TaskCompleted(
            workflow=workflow,
            success=success,
            quality=quality,
            final_output="x",
            execution_time_s=1.0,
        ),
        workspace_id=experiment.workspace_id,
        correlation_id=task_id,
    )


async def test_arm_outcomes_are_counted_once_and_the_winner_is_significant(
    redis_url: str, redis: Redis, workspace: str
) -> None:
    settings = settings_for(redis_url, claim_min_idle_ms=15_000)
    spec = ExperimentSpec(
        name="emails", goal_pattern="launch email", arm_a=["email_writer"], arm_b=["content"]
    )
    experiment = await experiment_store.create(redis, KEYS, workspace, spec)
    wins = [arm_outcome(experiment, "A", success=True, quality=0.9) for _ in range(12)]
    losses = [arm_outcome(experiment, "B", success=i < 3, quality=0.5) for i in range(12)]
    async with LocalStack(settings, services=["memory"], start_redis=False):
        # Every event twice: a redelivery must not count again.
        await publish(redis, PLAIN, [*wins, *losses, *wins, *losses])

        async def finished() -> bool:
            a, b = await experiment_store.arm_stats(redis, KEYS, workspace, experiment.experiment_id)
            return a.tasks == 12 and b.tasks == 12

        await eventually(finished, timeout=30)
        report = await experiment_store.get_report(redis, KEYS, workspace, experiment.experiment_id)
        assert report.arms["A"].successes == 12 and report.arms["B"].successes == 3
        assert report.arms["A"].mean_quality == 0.9 and report.arms["B"].mean_quality == 0.5
        sig = report.significance
        assert sig.leader == "A" and sig.significant and sig.p_b_beats_a < 0.001
        assert sig.z < -3 and sig.p_value < 0.001

        stopped = await experiment_store.stop(
            redis, KEYS, workspace, experiment.experiment_id, promote=True
        )
        assert stopped.winner == "A" and stopped.status == "stopped"
        assert await experiment_store.running(redis, KEYS, workspace) == []
