"""Outcomes of a workspace's routing decisions shift its confidence, through the memory service."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from raptorflow.stack import LocalStack
from services.memory import calibration
from services.router.logic import workflow_for
from shared.app.facade import route, workspace_calibration
from shared.app.runtime import build_deps
from shared.contract.events import Envelope, TaskCompleted, TaskRequested, new_envelope
from shared.domain.recalibration import outcome_of
from shared.domain.routing import RouteDecision
from shared.messaging.bus import publish
from tests.helpers import eventually, settings_for
from tests.integration.test_memory_routing import BLOG, remember

SIMILAR = "Write a blog about machine learning"


def finished(workspace: str, decision: RouteDecision, *, success: bool) -> Envelope[TaskCompleted]:
    """A task routed by `decision` that ran its sequence and ended with `success`."""
    task_id = str(uuid.uuid4())
    workflow = workflow_for(task_id, TaskRequested(goal=SIMILAR), decision)
    done = TaskCompleted(workflow=workflow, success=success, quality=0.9 if success else 0.3,
                         final_output="x", execution_time_s=1.0)
    return new_envelope(done, workspace_id=workspace, correlation_id=task_id)


async def test_failed_reuses_lower_the_workspace_confidence_and_only_its_own(
    redis_url: str, redis: Redis, workspace: str
) -> None:
    other = f"{workspace}-other"
    # "cautious" and "full" both apply a learned lowering (the default, "off", does not: checked below).
    settings = settings_for(redis_url, claim_min_idle_ms=15_000, routing_recalibration="cautious")
    deps = await build_deps(settings)
    try:
        for ws in (workspace, other):
            await remember(deps, ws, BLOG, ["content", "blog_writer"], 0.92)
        before = await route(deps, SIMILAR, workspace, use_planner=False)
        assert before.source == "memory" and before.confidence > 0.8
        assert before.candidate_sequence == ["content", "blog_writer"]
        assert before.candidate_logit is not None

        failures = [finished(workspace, before, success=False) for _ in range(3)]
        async with LocalStack(settings, services=["memory"], start_redis=False):
            # Each event twice: a redelivered outcome must not count again.
            await publish(redis, deps.layout, [*failures, *failures])

            async def learned() -> bool:
                return (await workspace_calibration(deps, workspace)).outcomes == 3

            await eventually(learned)

        after = await route(deps, SIMILAR, workspace, use_planner=False)
        assert after.source == "planner" and after.confidence < 0.8 < before.confidence
        assert after.candidate_logit == before.candidate_logit  # memory itself did not change
        untouched = await route(deps, SIMILAR, other, use_planner=False)
        assert untouched.confidence == before.confidence
        # routing_recalibration=off: the outcomes are still learned, but the router ignores them.
        deps.settings = deps.settings.model_copy(update={"routing_recalibration": "off"})
        ignored = await route(deps, SIMILAR, workspace, use_planner=False)
        assert ignored.source == "memory" and ignored.confidence == before.confidence
    finally:
        await deps.close()


async def test_right_outcomes_raise_the_confidence_only_when_recalibration_is_full(
    redis_url: str, workspace: str
) -> None:
    """cautious: outcomes can make a workspace more careful, never more eager than the global model."""
    deps = await build_deps(settings_for(redis_url))
    try:
        await remember(deps, workspace, BLOG, ["content", "blog_writer"], 0.92)
        before = await route(deps, SIMILAR, workspace, use_planner=False)
        assert before.candidate_logit is not None
        for i in range(10):
            outcome = outcome_of(before.candidate_sequence, before.candidate_logit,
                                 ["content", "blog_writer"], success=True)
            assert outcome is not None and outcome.right
            await calibration.record_outcome(deps.redis, deps.keys, workspace, outcome, marker=f"{workspace}:m{i}",
                                             marker_ttl_s=60)
        confidence = {}
        for mode in ("off", "cautious", "full"):
            deps.settings = deps.settings.model_copy(update={"routing_recalibration": mode})
            confidence[mode] = (await route(deps, SIMILAR, workspace, use_planner=False)).confidence
        assert confidence["off"] == confidence["cautious"] == before.confidence
        assert confidence["full"] > confidence["cautious"]
    finally:
        await deps.close()
