"""Pure logic of the router, selector, corrector, memory and gateway services."""

import random

import pytest

from services.corrector import logic as corrector
from services.gateway import logic as gateway
from services.gateway.auth import KeyRing
from services.gateway.schemas import TaskSubmission
from services.memory import logic as memory
from services.router import logic as router
from services.selector import logic as selector
from shared.contract.events import (
    RoutingInfo,
    StageOutcome,
    TaskCompleted,
    TaskFailed,
    TaskRequested,
    Workflow,
)
from shared.contract.models import AgentContext, SelfCorrectionConfig
from shared.domain.bandit import BanditConfig
from shared.domain.catalog import load_catalog
from shared.domain.performance import AgentPerformance
from shared.domain.routing import RouteDecision

CATALOG = load_catalog()


def wf(**kw):
    base = dict(
        task_id="t",
        goal="Write a blog",
        agent_sequence=["content", "blog_writer"],
        routing=RoutingInfo(source="planner", confidence=0.1),
    )
    return Workflow(**{**base, **kw})


def test_catalog_has_the_seed_agents_and_defaults():
    for name in ("content", "blog_writer", "strategy", "research"):
        assert name in CATALOG.names
    assert CATALOG.default_agent("content_generation") == "content"


def test_router_requested_sequence_is_checked():
    ok = router.requested_route(TaskRequested(goal="g", agent_sequence=["content"]), CATALOG)
    assert ok is not None and ok.source == "requested"
    assert router.requested_route(TaskRequested(goal="g"), CATALOG) is None
    with pytest.raises(router.InvalidRequestedSequence, match="ghost"):
        router.requested_route(TaskRequested(goal="g", agent_sequence=["ghost"]), CATALOG)


def test_router_builds_the_workflow_from_the_decision():
    decision = RouteDecision(
        agent_sequence=["content"],
        source="memory",
        confidence=0.9,
        reason="r",
        provider="memory",
        matched_goal_hash="abc",
    )
    workflow = router.workflow_for("t1", TaskRequested(goal="g", inputs={"x": 1}), decision)
    assert workflow.routing.source == "memory" and workflow.inputs == {"x": 1}
    assert workflow.stage_index == 0 and workflow.agent_sequence == ["content"]


def test_selector_falls_back_without_history_and_records_the_choice():
    decision = selector.select_for_stage(wf(), CATALOG, {}, 0, random.Random(1), BanditConfig())
    assert decision.agent == "content" and decision.reason == "no_history_fallback"
    assigned = selector.stage_assigned(wf(), "content_generation", decision)
    assert assigned.workflow.assigned_agents == ["content"]
    assert assigned.selection.planned_agent == "content"


def test_selector_swaps_a_failing_agent():
    stats = {
        "content": AgentPerformance(agent="content", runs=30, disc_failure=30.0, at_step=30),
        "copywriter": AgentPerformance(
            agent="copywriter",
            runs=30,
            successes=30,
            quality_sum=27,
            disc_success=27,
            disc_failure=3,
            at_step=30,
        ),
    }
    rng = random.Random(3)
    picks = [
        selector.select_for_stage(wf(), CATALOG, stats, 30, rng, BanditConfig()).agent
        for _ in range(50)
    ]
    assert picks.count("copywriter") > 40


def test_corrector_threshold_follows_request_then_workspace():
    ctx = AgentContext(workspace_id="w", quality_thresholds={"research_depth": 0.6})
    assert (
        corrector.threshold_for(
            SelfCorrectionConfig(min_quality_score=0.9), ctx, "research", CATALOG
        )
        == 0.9
    )
    assert corrector.threshold_for(None, ctx, "research", CATALOG) == 0.6
    assert corrector.threshold_for(None, ctx, "strategy", CATALOG) == 0.8


def _outcome(met=True, quality=0.9):
    return StageOutcome(
        stage_index=0,
        agent="content",
        task_type="content_generation",
        quality=quality,
        threshold_met=met,
        iterations=1,
        provider="offline",
    )


def test_memory_records_successes_and_failures_by_store_failures():
    done = TaskCompleted(
        workflow=wf(outcomes=[_outcome()]),
        success=True,
        quality=0.9,
        final_output="x",
        execution_time_s=1.0,
    )
    record = memory.record_of_completion(done, now=1.0)
    assert record is not None and record.success and record.error is None
    low = TaskCompleted(
        workflow=wf(outcomes=[_outcome(False, 0.4)]),
        success=False,
        quality=0.4,
        final_output="x",
        execution_time_s=1.0,
    )
    failed = memory.record_of_completion(low, now=1.0)
    assert failed is not None and not failed.success and "content" in (failed.error or "")
    no_store = low.model_copy(
        update={
            "workflow": wf(
                outcomes=[_outcome(False)],
                self_correction=SelfCorrectionConfig(store_failures=False),
            )
        }
    )
    assert memory.record_of_completion(no_store, now=1.0) is None
    rejected = TaskFailed(workflow=wf(), reason="rejected", error="no")
    assert memory.record_of_failure(rejected, now=1.0).error == "rejected: no"


def test_memory_critique_fields_are_the_seeds():
    from shared.contract.events import CritiqueDone

    critique = CritiqueDone(
        task_id="t",
        stage_index=0,
        agent="content",
        iteration=1,
        content_id="c1",
        score=0.5,
        aspect_scores={"clarity": 0.5},
        issues=["a", "b"],
        critique="meh",
        threshold=0.8,
        provider="offline",
    )
    fields = memory.critique_fields(critique)
    assert fields["content_id"] == "c1" and fields["issue_count"] == "2"
    assert fields["issues"] == '["a", "b"]'


def test_gateway_submission_becomes_task_requested_with_context():
    body = TaskSubmission(
        goal="g",
        workspace_id="w",
        user_id="u",
        brand_voice={"tone": "warm"},
        budget_constraints={"max_api_calls": 5},
    )
    event = gateway.task_requested(body, task_id="t1")
    assert event.correlation_id == "t1" and event.context.brand_voice == {"tone": "warm"}
    assert event.context.correlation_id == "t1" and event.user_id == "u"


def test_key_ring_parses_and_scopes():
    ring = KeyRing.parse("k1=ws1|ws2, k2=*")
    assert ring.enabled and ring.workspaces_for("k1") == {"ws1", "ws2"}
    assert ring.workspaces_for("nope") is None
    assert not KeyRing.parse(None).enabled
    with pytest.raises(ValueError):
        KeyRing.parse("broken")
