"""The typed task view from the stored strings, and the lifecycle's pure decisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from services.gateway import lifecycle
from services.memory import logic as memory_logic
from shared.contract.events import RoutingInfo, StageOutcome, TaskRequested, Usage, Workflow
from shared.contract.models import AgentContext
from shared.contract.task_view import task_view_of


def test_strings_become_booleans_numbers_lists_and_times():
    view = task_view_of("t", "w", {
        "status": "completed", "success": "false", "quality": "0.91", "created_at": "1700000000.5",
        "agent_sequence": '["content", "blog_writer"]', "providers": "offline,openai",
        "usage": json.dumps({"api_calls": 4, "cost_usd": 0.02}), "budget_exhausted": "true",
        "feedback_rating": "4",
    }, {"0": json.dumps({"stage_index": 0, "agent": "content", "quality": 0.8,
                          "threshold_met": True})})
    assert view.success is False and view.quality == 0.91 and view.budget_exhausted is True
    assert view.created_at == datetime.fromtimestamp(1700000000.5, UTC)
    assert view.agent_sequence == ["content", "blog_writer"]
    assert view.providers == ["offline", "openai"] and view.usage.api_calls == 4
    assert view.feedback_rating == 4 and view.stages[0].agent == "content" and view.terminal


def test_bad_stored_values_never_break_the_view():
    view = task_view_of("t", "w", {
        "status": "weird", "quality": "nan", "created_at": "soon", "agent_sequence": "{",
        "routing_confidence": "7",
    }, {"0": "not json", "1": json.dumps({"stage_index": 1})})
    assert view.status == "running" and view.quality is None and view.created_at is None
    assert view.agent_sequence == [] and view.stages == []
    legacy = task_view_of("t", "w", {"status": "requested"}, {})
    assert legacy.status == "accepted" and not legacy.terminal


def test_the_first_view_is_accepted_with_its_deadline():
    view = memory_logic.view_of_request(TaskRequested(goal="g", deadline_s=60), 1000.0)
    assert view["status"] == "accepted" and float(view["deadline_at"]) == 1060.0


def _snapshot() -> lifecycle.Snapshot:
    workflow = Workflow(
        task_id="old", goal="g", agent_sequence=["research", "content"], stage_index=1,
        revision=2, routing=RoutingInfo(source="planner", confidence=0.0),
        outcomes=[StageOutcome(stage_index=0, agent="research", task_type="research",
                               quality=0.9, threshold_met=True, iterations=1,
                               provider="offline")],
        last_output="research notes", usage=Usage(api_calls=7),
    )
    context = AgentContext(workspace_id="w", correlation_id="old",
                           budget_constraints={"max_api_calls": 10})
    return lifecycle.Snapshot(workflow=workflow, context=context)


def test_resume_continues_at_the_unfinished_stage_with_what_is_left_of_the_budget():
    event = lifecycle.resumed(_snapshot(), "new", None, datetime.now(UTC))
    workflow = event.payload.workflow
    assert event.correlation_id == workflow.task_id == event.context.correlation_id == "new"
    assert workflow.stage_index == 1 and workflow.revision == 0
    assert workflow.last_output == "research notes" and workflow.outcomes[0].agent == "research"
    assert workflow.usage.api_calls == 7  # the corrector allows 10 - 7 more calls
    assert event.context.budget_constraints == {"max_api_calls": 10}


def test_resume_with_new_limits_starts_a_fresh_count():
    event = lifecycle.resumed(_snapshot(), "new", {"max_api_calls": 50}, datetime.now(UTC))
    assert event.payload.workflow.usage.api_calls == 0
    assert event.context.budget_constraints == {"max_api_calls": 50}
