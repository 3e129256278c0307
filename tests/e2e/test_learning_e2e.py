"""Learning from outcomes, end to end on a real Redis: user feedback and A/B experiments.

Every service and the gateway run (offline LLM provider); requests go over HTTP
or straight onto the TaskRequested stream, as an upstream system would publish.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

from raptorflow.cli import app as cli_app
from raptorflow.stack import LocalStack, wait_for_task
from shared.app.facade import route, select_best_agent
from shared.app.runtime import Deps
from shared.contract.events import TaskRequested, new_envelope
from shared.contract.keys import goal_hash
from shared.domain.experiments import Experiment, assign_arm
from shared.messaging.bus import publish
from tests.helpers import KEYS, eventually, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLAIM_IDLE_MS = 15_000
"""Above any handler's time, so a live consumer's message is never reclaimed mid-flight."""


@pytest.fixture
async def stack(redis_url: str) -> AsyncIterator[tuple[LocalStack, httpx.AsyncClient]]:
    settings = settings_for(redis_url, claim_min_idle_ms=CLAIM_IDLE_MS)
    local = LocalStack(settings, with_gateway=True, start_redis=False)
    async with (
        local,
        httpx.AsyncClient(base_url=local.gateway_url, timeout=10) as client,
    ):
        yield local, client


def deps_of(stack: LocalStack) -> Deps:
    assert stack.deps is not None
    return stack.deps


async def run_cli(stack: LocalStack, *args: str) -> str:
    """The real CLI against the running gateway (in a thread: it blocks on HTTP)."""
    result = await asyncio.to_thread(
        CliRunner().invoke, cli_app, [*args, "--gateway", stack.gateway_url]
    )
    assert result.exit_code == 0, result.output
    return result.output


async def submit(stack: LocalStack, workspace: str, goal: str, task_id: str | None = None) -> str:
    event = new_envelope(TaskRequested(goal=goal), workspace_id=workspace, correlation_id=task_id)
    deps = deps_of(stack)
    await publish(deps.redis, deps.layout, [event])
    return event.correlation_id


async def test_a_low_rating_stops_reuse_and_lowers_the_agents_posterior(
    stack: tuple[LocalStack, httpx.AsyncClient], redis: Redis, workspace: str
) -> None:
    local, client = stack
    deps = deps_of(local)
    goal, similar = "Create a blog post about AI trends", "Write a blog about AI trends in 2025"
    response = await client.post("/tasks", json={"goal": goal, "workspace_id": workspace})
    task_id = response.json()["task_id"]
    view = await wait_for_task(deps, workspace, task_id, timeout=30)
    assert view["status"] == "completed" and view["success"] == "true", view
    stages = [
        json.loads(s) for s in (await redis.hgetall(KEYS.task_stages(workspace, task_id))).values()
    ]
    ran = {(s["task_type"], s["agent"]) for s in stages}

    before = await route(deps, similar, workspace, use_planner=False)
    assert before.source == "memory", before
    means_before = {
        agent: (
            await select_best_agent(deps, t, workspace, agent, rng=random.Random(1))
        ).posterior_means[agent]
        for t, agent in ran
    }

    bad = await client.post(
        f"/tasks/{task_id}/feedback", json={"workspace_id": workspace, "rating": 6}
    )
    assert bad.status_code == 422
    missing = await client.post(
        "/tasks/nope/feedback", json={"workspace_id": workspace, "rating": 1}
    )
    assert missing.status_code == 404
    output = await run_cli(
        local,
        "feedback",
        task_id,
        "--workspace",
        workspace,
        "--rating",
        "1",
        "--comment",
        "off-brand",
    )
    assert "feedback" in output

    record_key = KEYS.task_history(workspace, goal_hash(goal))

    async def rated() -> dict[bytes, bytes] | None:
        record = await redis.hgetall(record_key)
        return record if record.get(b"feedback_rating") == b"1" else None

    record = await eventually(rated)
    assert json.loads(record[b"success"]) is False
    assert float(record[b"result_quality"]) < float(view["quality"])

    after = await route(deps, similar, workspace, use_planner=False)
    assert after.source != "memory" and after.confidence < before.confidence, after
    for t, agent in ran:
        decision = await select_best_agent(deps, t, workspace, agent, rng=random.Random(1))
        assert decision.posterior_means[agent] < means_before[agent], (agent, decision)
    status = (await client.get(f"/tasks/{task_id}", params={"workspace_id": workspace})).json()
    assert status["feedback_rating"] == 1
    assert status["feedback_comment"] == "off-brand"


def ids_for_arms(experiment: Experiment, per_arm: int) -> list[tuple[str, str]]:
    """Task ids chosen so that each arm gets exactly `per_arm` tasks (assignment is a hash)."""
    picked: dict[str, list[str]] = {"A": [], "B": []}
    while min(len(v) for v in picked.values()) < per_arm:
        task_id = str(uuid.uuid4())
        arm = assign_arm(experiment, task_id)
        if len(picked[arm]) < per_arm:
            picked[arm].append(task_id)
    return [(arm, t) for arm in ("A", "B") for t in picked[arm]]


async def test_experiment_lifecycle_from_split_to_promoted_winner(
    stack: tuple[LocalStack, httpx.AsyncClient], redis: Redis, workspace: str
) -> None:
    local, client = stack
    deps = deps_of(local)
    await run_cli(
        local, "experiments", "create", "launch emails", "--workspace", workspace,
        "--pattern", r"launch e-?mail", "--arm-a", "content,email_writer", "--arm-b", "email_writer",
    )  # fmt: skip
    listed = (await client.get(f"/workspaces/{workspace}/experiments")).json()
    assert len(listed) == 1
    experiment = Experiment.model_validate(listed[0]["experiment"])
    bad = await client.post(
        f"/workspaces/{workspace}/experiments",
        json={"name": "x", "goal_pattern": "x", "arm_a": ["nobody"], "arm_b": ["content"]},
    )
    assert bad.status_code == 422

    topics = ["pricing page", "mobile app", "API v2", "dark mode", "team plan", "SSO"]
    tasks: list[tuple[str, str]] = []
    for i, (arm, task_id) in enumerate(ids_for_arms(experiment, per_arm=3)):
        await submit(local, workspace, f"Write a product launch email for our {topics[i]}", task_id)
        tasks.append((arm, task_id))
    outsider = await submit(local, workspace, "Plan a launch strategy for our analytics product")

    for arm, task_id in tasks:
        view = await wait_for_task(deps, workspace, task_id, timeout=60)
        assert view["routing_source"] == "experiment", view
        assert json.loads(view["agent_sequence"]) == experiment.sequence(arm)  # type: ignore[arg-type]
    assert (await wait_for_task(deps, workspace, outsider, timeout=60))[
        "routing_source"
    ] != "experiment"

    report: dict[str, Any] = (
        await client.get(f"/workspaces/{workspace}/experiments/{experiment.experiment_id}")
    ).json()
    for arm in ("A", "B"):
        assert report["arms"][arm]["assigned"] == 3 and report["arms"][arm]["finished"] == 3
        assert 0.0 <= report["arms"][arm]["mean_quality"] <= 1.0
    significance = report["significance"]
    assert 0.0 <= significance["p_b_beats_a"] <= 1.0 and 0.0 <= significance["p_value"] <= 1.0
    shown = await run_cli(
        local, "experiments", "show", experiment.experiment_id, "--workspace", workspace
    )
    assert "P(B beats A)" in shown

    await run_cli(
        local,
        "experiments",
        "stop",
        experiment.experiment_id,
        "--workspace",
        workspace,
        "--promote",
    )
    stopped = (
        await client.get(f"/workspaces/{workspace}/experiments/{experiment.experiment_id}")
    ).json()["experiment"]
    assert stopped["status"] == "stopped" and stopped["promoted"] is True
    winner = experiment.sequence(stopped["winner"])
    again = await client.post(
        f"/workspaces/{workspace}/experiments/{experiment.experiment_id}/stop", json={}
    )
    assert again.status_code == 409

    promoted_key = KEYS.task_history(
        workspace, goal_hash(f"Write a product launch email for our {topics[0]}")
    )

    async def promoted() -> bool:
        task = await redis.hget(promoted_key, "task_id")
        return task == f"experiment:{experiment.experiment_id}".encode()

    await eventually(promoted)
    decision = await route(deps, "Write a product launch email for our new billing page", workspace,
                           use_planner=False)  # fmt: skip
    assert decision.source == "memory" and decision.agent_sequence == winner, decision
    after = await submit(local, workspace, "Write a product launch email for the partner portal")
    view = await wait_for_task(deps, workspace, after, timeout=60)
    assert view["routing_source"] == "memory" and json.loads(view["agent_sequence"]) == winner
