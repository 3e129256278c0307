from datetime import UTC, datetime, timedelta

from services.checkpoint import logic
from shared.contract.events import ApprovalResolved, RoutingInfo, StageOutcome, Workflow
from shared.contract.models import (
    AgentContext,
    CheckpointCondition,
    TimeoutOutcome,
    WorkflowCheckpoint,
    WorkflowCheckpoints,
)
from shared.domain.checkpoints import evaluate_checkpoint

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CTX = AgentContext(workspace_id="w", user_id="bob")


def config(**kwargs):
    checkpoint = WorkflowCheckpoint(
        name="strategy_review",
        condition=CheckpointCondition.AFTER_STAGE,
        condition_params={"stage": "strategy"},
        auto_approve_if={"quality_above": 0.85, "success_rate_above": 0.8},
        timeout_seconds=60,
    )
    return WorkflowCheckpoints(workspace_id="w", checkpoints=[checkpoint], **kwargs)


def workflow(stage_index=0, sequence=("research", "strategy")):
    return Workflow(
        task_id="t",
        goal="g",
        agent_sequence=list(sequence),
        stage_index=stage_index,
        routing=RoutingInfo(source="planner", confidence=0.0),
        started_at=NOW,
    )


def outcome(quality=0.9):
    return StageOutcome(
        stage_index=0,
        agent="strategy",
        task_type="strategy",
        quality=quality,
        threshold_met=True,
        iterations=1,
        provider="offline",
    )


def test_seed_example_auto_approves_with_reasons():
    result = evaluate_checkpoint(
        "strategy_review", config(), CTX, {"quality_score": 0.9, "agent_success_rate": 0.85}
    )
    assert result.status == "auto_approved"
    assert [r.passed for r in result.rules] == [True, True]
    assert "quality_above: 0.900 > 0.85" in result.reasons


def test_one_failing_rule_pauses_and_says_which():
    result = evaluate_checkpoint(
        "strategy_review", config(), CTX, {"quality_score": 0.9, "agent_success_rate": 0.5}
    )
    assert result.status == "pending_approval" and result.timeout_seconds == 60
    assert any("success_rate_above: 0.500 not > 0.8" in r for r in result.reasons)


def test_auto_approve_users_and_disabled_config():
    assert (
        evaluate_checkpoint(
            "strategy_review", config(auto_approve_for_users=["bob"]), CTX, {}
        ).status
        == "auto_approved"
    )
    assert (
        evaluate_checkpoint("strategy_review", config(enabled=False), CTX, {}).status
        == "auto_approved"
    )


def test_after_stage_matches_only_its_stage():
    assert (
        logic.first_pending(
            config(), CheckpointCondition.AFTER_STAGE, "research", 0, CTX, {"quality_score": 0.1}
        )
        is None
    )
    pending = logic.first_pending(
        config(), CheckpointCondition.AFTER_STAGE, "strategy", 1, CTX, {"quality_score": 0.1}
    )
    assert pending is not None and pending[0].name == "strategy_review"


def test_before_execution_without_stage_gates_only_the_first_stage():
    before = WorkflowCheckpoints(
        workspace_id="w",
        checkpoints=[
            WorkflowCheckpoint(name="pre", condition=CheckpointCondition.BEFORE_EXECUTION)
        ],
    )
    assert logic.first_pending(before, CheckpointCondition.BEFORE_EXECUTION, "a", 0, CTX, {})
    assert (
        logic.first_pending(before, CheckpointCondition.BEFORE_EXECUTION, "b", 1, CTX, {}) is None
    )


def test_finish_stage_advances_then_completes():
    advanced = logic.finish_stage(workflow(0), outcome(), "out", NOW)
    assert advanced.workflow.stage_index == 1 and advanced.workflow.last_output == "out"
    done = logic.finish_stage(workflow(1), outcome(0.8), "final", NOW + timedelta(seconds=2))
    assert done.success and done.final_output == "final" and done.execution_time_s == 2.0


def test_deadline_uses_checkpoint_timeout_then_default():
    cfg = config()
    assert logic.deadline_for(cfg.checkpoints[0], cfg, NOW) == NOW + timedelta(seconds=60)
    no_timeout = cfg.checkpoints[0].model_copy(update={"timeout_seconds": None})
    assert logic.deadline_for(no_timeout, cfg, NOW) == NOW + timedelta(seconds=3600)


def _needed(condition=CheckpointCondition.AFTER_STAGE):
    cfg = config()
    evaluation = evaluate_checkpoint("strategy_review", cfg, CTX, {})
    return logic.approval_needed(
        checkpoint=cfg.checkpoints[0],
        evaluation=evaluation,
        config=cfg,
        workflow=workflow(1),
        agent="strategy",
        task_type="strategy",
        now=NOW,
        output="draft",
        outcome=outcome(),
    )


def _resolved(decision, comments=(), expired=False):
    return ApprovalResolved(
        approval_id="a",
        decision=decision,
        decided_by="alice",
        comments=list(comments),
        expired=expired,
    )


def test_decisions_continue_reject_or_revise():
    needed = _needed()
    assert (
        type(logic.after_decision(needed, _resolved("approved"), NOW)).__name__ == "TaskCompleted"
    )
    rejected = logic.after_decision(needed, _resolved("rejected"), NOW)
    assert rejected.reason == "rejected" and "alice" in rejected.error
    expired = logic.after_decision(needed, _resolved("rejected", expired=True), NOW)
    assert expired.reason == "expired"
    revise = logic.after_decision(needed, _resolved("changes_requested", ["shorter"]), NOW)
    assert revise.revision_comments == ["shorter"] and revise.previous_output == "draft"
    assert revise.workflow.revision == 1


def test_approval_ids_are_deterministic_per_revision():
    a = logic.approval_id_for("t", 1, CheckpointCondition.AFTER_STAGE, "x", 0)
    assert a == logic.approval_id_for("t", 1, CheckpointCondition.AFTER_STAGE, "x", 0)
    assert a != logic.approval_id_for("t", 1, CheckpointCondition.AFTER_STAGE, "x", 1)


def test_timeout_outcomes():
    assert logic.timeout_decision(TimeoutOutcome.REJECT, False) == "rejected"
    assert logic.timeout_decision(TimeoutOutcome.APPROVE, False) == "approved"
    assert logic.timeout_decision(TimeoutOutcome.ESCALATE, False) == "escalate"
    assert logic.timeout_decision(TimeoutOutcome.ESCALATE, True) == "rejected"


def test_stage_matches_the_planned_or_the_assigned_agent():
    gate = config()
    for names in ({"strategy", "strategist_pro"}, "strategy"):
        assert logic.first_pending(gate, CheckpointCondition.AFTER_STAGE, names, 1, CTX, {})
    assert not logic.first_pending(gate, CheckpointCondition.AFTER_STAGE, {"research"}, 0, CTX, {})
