"""The seed's routing example, decision records, shared learning and the eval command, on real Redis."""

import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from raptorflow.cli import app
from raptorflow.redis_server import RedisServer
from services.memory import logic, store
from services.memory.app import _routing_outcome
from shared.app.facade import recall, route
from shared.app.runtime import Deps, build_deps
from shared.contract.events import Neighbour, RoutingInfo, SequenceChosen, Workflow
from shared.contract.keys import goal_hash
from shared.memory.store import TaskRecord
from tests.helpers import KEYS, settings_for

BLOG = "Create a blog post about AI trends"


async def remember(deps: Deps, ws: str, goal: str, seq: list[str], quality: float) -> None:
    """Store a finished task exactly as the memory service does."""
    record = TaskRecord(goal=goal, agent_sequence=seq, success=True, result_quality=quality,
                        goal_hash=goal_hash(goal), task_id=goal_hash(goal), stored_at=1.0)
    vector = await store.index_task(deps, ws, record)
    async with deps.redis.pipeline(transaction=True) as tx:
        store.add_task_record(tx, deps.keys, ws, record, vector)
        await tx.execute()


@pytest.fixture(params=["redis8", "redis7"])
async def deps(request: pytest.FixtureRequest, redis_url: str, redis7_binary: str) -> AsyncIterator[Deps]:
    """Deps on Redis 8 (vector sets) and on Redis 7 (exact in-process index)."""
    server = RedisServer(binary=redis7_binary).start() if request.param == "redis7" else None
    built = await build_deps(settings_for(server.url if server else redis_url))
    try:
        assert built.index.kind == ("exact" if server else "vset")
        yield built
    finally:
        await built.close()
        if server:
            server.stop()


async def test_seed_example_reuses_the_blog_sequence(deps: Deps, workspace: str) -> None:
    await remember(deps, workspace, BLOG, ["content", "blog_writer"], 0.92)
    similar = await route(deps, "Write a blog about machine learning", workspace, use_planner=False)
    assert similar.source == "memory" and similar.agent_sequence == ["content", "blog_writer"]
    assert similar.confidence > 0.8
    unrelated = await route(deps, "Audit our Kubernetes cluster costs", workspace, use_planner=False)
    assert unrelated.source == "planner" and unrelated.confidence < 0.8


async def test_sequence_vector_sums_add_up_in_redis_and_give_the_centroid_cosine(
    deps: Deps, workspace: str
) -> None:
    blog, other = json.dumps(["content", "blog_writer"]), json.dumps(["research"])
    goals = [BLOG, "Write a blog about machine learning"]
    for goal in goals:
        await remember(deps, workspace, goal, ["content", "blog_writer"], 0.9)
    expected = sum(deps.memory.embed(goal).astype(np.float64) for goal in goals)
    sums = await deps.memory.sequence_vector_sums(workspace, [blog, other])
    assert list(sums) == [blog]
    np.testing.assert_allclose(sums[blog], expected, rtol=1e-9)
    request = "Draft a blog post on generative AI"
    recalled = await recall(deps, request, workspace)
    query = deps.memory.embed(request)
    assert recalled.centroids == {
        ("content", "blog_writer"): pytest.approx(float(query @ expected) / float(np.linalg.norm(expected)))
    }


async def test_routing_decision_is_joined_with_its_outcome(deps: Deps, workspace: str) -> None:
    workflow = Workflow(task_id="t1", goal="Write a blog", agent_sequence=["content", "blog_writer"],
                        routing=RoutingInfo(source="memory", confidence=0.93, matched_goal_hash="m1",
                                            candidate_sequence=["content", "blog_writer"],
                                            candidate_logit=1.7))
    chosen = SequenceChosen(workflow=workflow, neighbours=[Neighbour(
        goal_hash="m1", similarity=0.63, quality=0.92, success=True, agent_sequence=["content", "blog_writer"])])
    async with deps.redis.pipeline(transaction=True) as tx:
        tx.hset(KEYS.routing_decision(workspace, "t1"), mapping=logic.routing_fields(chosen, 5.0))
        await tx.execute()
    pending = await deps.memory.routing_decision(workspace, "t1")
    assert pending and pending.confidence == 0.93 and pending.outcome_success is None
    assert pending.neighbours[0].goal_hash == "m1"
    assert pending.candidate_sequence == ["content", "blog_writer"] and pending.candidate_logit == 1.7
    async with deps.redis.pipeline(transaction=True) as tx:
        _routing_outcome(tx, deps.keys, workspace, "t1", True, 0.88)
        await tx.execute()
    done = await deps.memory.routing_decision(workspace, "t1")
    assert done and done.reuse_was_right is True and done.outcome_quality == 0.88
    assert await deps.memory.routing_decision(workspace, "nope") is None


async def test_shared_learning_helps_a_new_opted_in_workspace_only(redis_url: str, workspace: str) -> None:
    sharing = f"{workspace}-a"
    fresh = f"{workspace}-b"
    deps = await build_deps(settings_for(redis_url, shared_learning_workspaces=f"{sharing},{fresh}"))
    try:
        await remember(deps, sharing, BLOG, ["content", "blog_writer"], 0.92)
        helped = await route(deps, "Write a blog about machine learning", fresh, use_planner=False)
        assert helped.source == "memory" and helped.agent_sequence == ["content", "blog_writer"]
        assert helped.matched_goal_hash != goal_hash(BLOG)  # anonymous id, not the goal's hash
        pool = await deps.redis.execute_command("VSIM", KEYS.vector_set("__shared_pool__"), "ELE",
                                                helped.matched_goal_hash, "WITHATTRIBS")
        assert BLOG not in str(pool) and "blog_writer" in str(pool)
        deps.settings = deps.settings.model_copy(update={"shared_learning_workspaces": sharing})
        alone = await route(deps, "Write a blog about machine learning", fresh, use_planner=False)
        assert alone.source == "planner" and not alone.neighbours
    finally:
        await deps.redis.delete(KEYS.vector_set("__shared_pool__"))
        await deps.close()


def test_eval_command_on_a_tiny_file(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    rows = [
        {"goal": BLOG, "agent_sequence": ["content", "blog_writer"]},            # empty memory
        {"goal": "Write a blog about machine learning", "agent_sequence": ["content", "blog_writer"]},
        {"goal": "Audit our Kubernetes cluster costs", "agent_sequence": []},   # novel
    ]
    data = tmp_path / "tiny.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = CliRunner().invoke(app, ["eval", "routing", "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["rows"] == 3 and metrics["reuses"] == 1
    assert metrics["reuse_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert metrics["reuse_precision"] == 1.0
    assert metrics["oracle_coverage"] == pytest.approx(1 / 3, abs=1e-4)
    assert metrics["recall_of_reusable"] == 1.0
    assert metrics["novel_rows"] == 1 and metrics["false_reuse_rate_novel"] == 0.0
    assert 0 <= metrics["ece"] <= 0.2 and metrics["p99_route_ms"] >= metrics["p50_route_ms"] > 0
