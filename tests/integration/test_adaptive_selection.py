"""Adaptive selection on a real Redis, through a running memory service.

Outcomes reach the aggregates only the way they do in production: TaskCompleted
events consumed by the memory service. Then `select_best_agent` reads them.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter

from redis.asyncio import Redis

from raptorflow.stack import LocalStack
from services.memory import store
from shared.app.facade import build_context, select_best_agent
from shared.app.runtime import Deps, build_deps
from shared.contract.events import (
    Envelope,
    RoutingInfo,
    StageOutcome,
    TaskCompleted,
    Workflow,
    new_envelope,
)
from shared.contract.models import AgentContext
from shared.domain.bandit import BanditConfig
from shared.messaging.bus import publish
from shared.settings import Settings
from tests.helpers import PLAIN, eventually, settings_for

TASK_TYPE = "content_generation"
CLAIM_IDLE_MS = 15_000
"""Far above any handler's time (the first embedding loads the model), so the
reclaimer never steals a message the live consumer is still working on."""


def completed(
    workspace: str, agent: str, *, success: bool, quality: float, goal: str | None = None
) -> Envelope[TaskCompleted]:
    """A one-stage task that `agent` ran, as the checkpoint service would publish it."""
    task_id = str(uuid.uuid4())
    workflow = Workflow(
        task_id=task_id,
        goal=goal or f"Write launch copy {task_id[:8]}",
        agent_sequence=[agent],
        assigned_agents=[agent],
        routing=RoutingInfo(source="planner", confidence=0.0),
        outcomes=[
            StageOutcome(
                stage_index=0,
                agent=agent,
                task_type=TASK_TYPE,
                quality=quality,
                threshold_met=success,
                iterations=1,
                provider="offline",
                cost_usd=0.002,
                duration_s=1.5,
            )
        ],
    )
    return new_envelope(
        TaskCompleted(
            workflow=workflow,
            success=success,
            quality=quality,
            final_output="draft",
            execution_time_s=1.5,
        ),
        workspace_id=workspace,
        correlation_id=task_id,
    )


async def runs_of(deps: Deps, workspace: str, agent: str) -> int:
    stats = await deps.memory.bandit_stats(workspace, TASK_TYPE)
    return stats[agent].runs if agent in stats else 0


async def wait_runs(deps: Deps, workspace: str, expected: dict[str, int]) -> None:
    async def probe() -> bool:
        return all([await runs_of(deps, workspace, a) == n for a, n in expected.items()])

    await eventually(probe, timeout=30)


async def drained(redis: Redis) -> bool:
    """The memory group has read and acknowledged everything on TaskCompleted."""
    groups = await redis.xinfo_groups(PLAIN.stream(TaskCompleted.event_type))
    group = next(g for g in groups if g["name"] in (b"memory", "memory"))
    return group["pending"] == 0 and group["lag"] == 0


async def draw(deps: Deps, workspace: str, n: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    picks = [
        (await select_best_agent(deps, TASK_TYPE, workspace, "content", rng=rng)).agent
        for _ in range(n)
    ]
    return Counter(picks)


def memory_stack(settings: Settings) -> LocalStack:
    return LocalStack(settings, services=["memory"], start_redis=False)


async def test_no_history_returns_the_fallback_and_says_so(redis_url: str, workspace: str) -> None:
    deps = await build_deps(settings_for(redis_url))
    try:
        decision = await select_best_agent(deps, TASK_TYPE, workspace, "copywriter")
        assert decision.agent == "copywriter"
        assert decision.reason == "no_history_fallback" and decision.fallback == "copywriter"
        default = await select_best_agent(deps, TASK_TYPE, workspace)
        assert default.agent == "content" and default.reason == "no_history_fallback"
        other_ws = await select_best_agent(deps, "research", workspace, "deep_researcher")
        assert other_ws.agent == "deep_researcher"
    finally:
        await deps.close()


async def test_selector_swaps_away_from_an_agent_that_starts_failing(
    redis_url: str, redis: Redis, workspace: str
) -> None:
    settings = settings_for(redis_url, claim_min_idle_ms=CLAIM_IDLE_MS)
    async with memory_stack(settings) as stack:
        assert stack.deps is not None
        deps = stack.deps
        good = [completed(workspace, "content", success=True, quality=0.9) for _ in range(10)]
        fair = [completed(workspace, "copywriter", success=True, quality=0.75) for _ in range(4)]
        await publish(redis, deps.layout, [*good, *fair])
        await wait_runs(deps, workspace, {"content": 10, "copywriter": 4})

        before = await draw(deps, workspace, 200, seed=1)
        assert before["content"] > 120, before

        failing = [completed(workspace, "content", success=False, quality=0.2) for _ in range(20)]
        await publish(redis, deps.layout, failing)
        await wait_runs(deps, workspace, {"content": 30})

        after = await draw(deps, workspace, 200, seed=1)
        assert after["copywriter"] > 160, after
        decision = await select_best_agent(
            deps, TASK_TYPE, workspace, "content", rng=random.Random(5)
        )
        means = decision.posterior_means
        assert means["copywriter"] > means["content"], means
        assert decision.fallback == "content"
        assert decision.reason in {"thompson_exploit", "thompson_explore"}
        context = await build_context(deps, AgentContext(workspace_id=workspace), [])
        content = context.performance_data[TASK_TYPE]["content"]
        assert content["runs"] == 30 and content["success_rate"] == round(10 / 30, 4)
        assert content["trend"] < 0 and content["mean_latency_s"] == 1.5


async def test_aggregates_survive_a_memory_service_restart_without_double_counting(
    redis_url: str, redis: Redis, workspace: str
) -> None:
    settings = settings_for(redis_url, claim_min_idle_ms=CLAIM_IDLE_MS)
    first = [completed(workspace, "content", success=True, quality=0.8) for _ in range(5)]
    async with memory_stack(settings) as stack:
        assert stack.deps is not None
        await publish(redis, stack.deps.layout, first)
        await wait_runs(stack.deps, workspace, {"content": 5})
        before = (await stack.deps.memory.bandit_stats(workspace, TASK_TYPE))["content"]
        step_before = await stack.deps.memory.performance_step(workspace, TASK_TYPE)

    # While the service is down: two new outcomes, and the first five delivered again.
    later = [completed(workspace, "content", success=False, quality=0.3) for _ in range(2)]
    await publish(redis, settings.layout(), [*first, *later])

    async with memory_stack(settings) as stack:
        assert stack.deps is not None
        deps = stack.deps
        await wait_runs(deps, workspace, {"content": 7})
        await eventually(lambda: drained(redis), timeout=30)
        # A replica re-applying an outcome it already folded in (crash before ack).
        await store.record_stage_outcomes(
            redis, deps.keys,
            workspace,
            first[0].event_id,
            first[0].payload.workflow.outcomes,
            BanditConfig(),
            settings.processed_ttl_s,
        )
        after = (await deps.memory.bandit_stats(workspace, TASK_TYPE))["content"]
        assert after.runs == 7 and after.successes == 5
        assert after.quality_sum == before.quality_sum + 0.6
        assert await deps.memory.performance_step(workspace, TASK_TYPE) == step_before + 2
