import pytest
from pydantic import ValidationError

from shared.contract.models import (
    AgentContext,
    CheckpointAction,
    CheckpointCondition,
    SelfCorrectionConfig,
    WorkflowCheckpoint,
    WorkflowCheckpoints,
)


def test_agent_context_has_every_seed_field_and_threshold_defaults():
    ctx = AgentContext(workspace_id="demo")
    for name in (
        "workspace_id",
        "correlation_id",
        "user_id",
        "brand_voice",
        "target_icps",
        "past_successes",
        "user_preferences",
        "task_history",
        "performance_data",
        "quality_thresholds",
        "budget_constraints",
    ):
        assert name in AgentContext.model_fields
    assert ctx.quality_thresholds == {
        "content_quality": 0.7,
        "strategy_viability": 0.8,
        "research_depth": 0.75,
    }


def test_partial_quality_thresholds_keep_the_other_defaults():
    ctx = AgentContext(workspace_id="demo", quality_thresholds={"content_quality": 0.8})
    assert ctx.quality_thresholds["content_quality"] == 0.8
    assert ctx.quality_thresholds["research_depth"] == 0.75


@pytest.mark.parametrize(
    "bad",
    [
        {"quality_thresholds": {"content_quality": 1.5}},
        {"budget_constraints": {"max_api_calls": -1}},
        {"workspace_id": "a:b"},
        {"workspace_id": ""},
    ],
)
def test_agent_context_rejects_bad_values(bad):
    with pytest.raises(ValidationError):
        AgentContext(**{"workspace_id": "demo", **bad})


def test_self_correction_defaults_match_the_seed():
    config = SelfCorrectionConfig()
    assert (config.max_iterations, config.min_quality_score, config.improvement_threshold) == (
        3,
        0.8,
        0.1,
    )
    assert len(config.critique_aspects) == 5 and "clarity" in config.critique_aspects
    assert config.store_failures is True


def test_checkpoint_models_match_the_seed():
    config = WorkflowCheckpoints(workspace_id="demo")
    assert config.enabled is True and config.auto_approve_for_users == []
    assert config.default_timeout == 3600
    assert {c.name for c in CheckpointCondition} == {"AFTER_STAGE", "BEFORE_EXECUTION"}
    assert {a.name for a in CheckpointAction} == {"REQUEST_APPROVAL"}
    checkpoint = WorkflowCheckpoint(
        name="x", condition=CheckpointCondition.AFTER_STAGE, auto_approve_if={"quality_above": 0.85}
    )
    assert checkpoint.action == CheckpointAction.REQUEST_APPROVAL


def test_unknown_auto_approve_rule_is_rejected_with_its_name():
    with pytest.raises(ValidationError, match="cost_below"):
        WorkflowCheckpoint(
            name="x", condition=CheckpointCondition.AFTER_STAGE, auto_approve_if={"cost_below": 1}
        )
