"""Outcomes of a workspace's routing decisions shift its confidence, through the memory service."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from raptorflow.stack import LocalStack
from services.router.logic import workflow_for
from shared.bus import publish
from shared.events import Envelope, TaskCompleted, TaskRequested, new_envelope
from shared.orchestrator import route, workspace_calibration
from shared.routing import RouteDecision
from shared.runtime import build_deps
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
    settings = settings_for(redis_url, claim_min_idle_ms=15_000)
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
            await publish(redis, [*failures, *failures], settings.stream_maxlen)

            async def learned() -> bool:
                return (await workspace_calibration(deps, workspace)).outcomes == 3

            await eventually(learned)

        after = await route(deps, SIMILAR, workspace, use_planner=False)
        assert after.source == "planner" and after.confidence < 0.8 < before.confidence
        assert after.candidate_logit == before.candidate_logit  # memory itself did not change
        untouched = await route(deps, SIMILAR, other, use_planner=False)
        assert untouched.confidence == before.confidence
    finally:
        await deps.close()
