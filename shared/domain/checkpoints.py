"""Checkpoint rules as pure functions: which checkpoints apply, and whether they auto-approve."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from shared.contract.models import (
    AUTO_APPROVE_RULES,
    AgentContext,
    CheckpointCondition,
    CheckpointEvaluation,
    RuleResult,
    WorkflowCheckpoint,
    WorkflowCheckpoints,
)

StageNames = str | Collection[str]


def checkpoint_applies(
    checkpoint: WorkflowCheckpoint,
    condition: CheckpointCondition,
    agent: StageNames,
    stage_index: int,
) -> bool:
    """AFTER_STAGE matches `condition_params.stage` (every stage when absent);
    BEFORE_EXECUTION matches its `stage` when given, else the first stage only.

    A stage is known by the planned agent and by the agent the selector assigned
    (they differ when the selector swaps in a better agent); either name matches."""
    if checkpoint.condition != condition:
        return False
    stage = checkpoint.condition_params.get("stage")
    if stage is not None:
        names = {agent} if isinstance(agent, str) else set(agent)
        return str(stage) in names
    return condition == CheckpointCondition.AFTER_STAGE or stage_index == 0


def applicable_checkpoints(
    config: WorkflowCheckpoints | None,
    condition: CheckpointCondition,
    agent: StageNames,
    stage_index: int,
) -> list[WorkflowCheckpoint]:
    if config is None or not config.enabled:
        return []
    return [c for c in config.checkpoints if checkpoint_applies(c, condition, agent, stage_index)]


def _rule_results(
    checkpoint: WorkflowCheckpoint, execution_data: Mapping[str, Any]
) -> list[RuleResult]:
    results = []
    for rule, threshold in checkpoint.auto_approve_if.items():
        raw = execution_data.get(AUTO_APPROVE_RULES[rule])
        value = float(raw) if raw is not None else None
        results.append(
            RuleResult(
                rule=rule,
                threshold=threshold,
                value=value,
                passed=value is not None and value > threshold,
            )
        )
    return results


def evaluate_checkpoint(
    checkpoint_name: str,
    checkpoints_config: WorkflowCheckpoints,
    context: AgentContext,
    execution_data: Mapping[str, Any],
) -> CheckpointEvaluation:
    """The seed's evaluation: auto-approve when every given rule holds, else wait for a human."""
    checkpoint = checkpoints_config.find(checkpoint_name)
    if checkpoint is None:
        raise KeyError(f"no checkpoint named {checkpoint_name!r}")
    timeout = checkpoint.timeout_seconds or checkpoints_config.default_timeout
    if not checkpoints_config.enabled:
        return CheckpointEvaluation(
            checkpoint=checkpoint_name,
            status="auto_approved",
            reasons=["checkpoints are disabled for this workspace"],
        )
    if context.user_id and context.user_id in checkpoints_config.auto_approve_for_users:
        return CheckpointEvaluation(
            checkpoint=checkpoint_name,
            status="auto_approved",
            reasons=[f"user {context.user_id} is in auto_approve_for_users"],
        )
    rules = _rule_results(checkpoint, execution_data)
    reasons = [
        f"{r.rule}: {'n/a' if r.value is None else f'{r.value:.3f}'} "
        f"{'>' if r.passed else 'not >'} {r.threshold}"
        for r in rules
    ]
    if rules and all(r.passed for r in rules):
        status = "auto_approved"
    else:
        status = "pending_approval"
        if not rules:
            reasons.append("no auto-approval rules: a human must approve")
    return CheckpointEvaluation(
        checkpoint=checkpoint_name,
        status=status,
        reasons=reasons,
        rules=rules,
        timeout_seconds=timeout,
    )
