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
    TimeoutOutcome,
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


# --- a workspace's gates are policy: a task may add to them, not remove or weaken them ----

_TIMEOUT_STRICTNESS = {TimeoutOutcome.APPROVE: 0, TimeoutOutcome.ESCALATE: 1, TimeoutOutcome.REJECT: 2}


def _timeout_of(checkpoint: WorkflowCheckpoint, config: WorkflowCheckpoints) -> int:
    return checkpoint.timeout_seconds or config.default_timeout


def at_least_as_strict(
    task: WorkflowCheckpoint,
    task_config: WorkflowCheckpoints,
    workspace: WorkflowCheckpoint,
    workspace_config: WorkflowCheckpoints,
) -> bool:
    """Whether a task's version of a workspace gate lets through no more than the gate does:
    the same place; no rules at all (a human always decides), or every rule of the gate kept
    at the same or a higher threshold (a gate without rules admits no version with rules);
    and a timeout outcome that approves no sooner."""
    if task.condition != workspace.condition:
        return False
    if task.condition_params.get("stage") != workspace.condition_params.get("stage"):
        return False
    if task.auto_approve_if:  # without rules, a human always decides: the strictest
        if not workspace.auto_approve_if:
            return False
        for rule, threshold in workspace.auto_approve_if.items():
            if task.auto_approve_if.get(rule, -1.0) < threshold:
                return False
    if _TIMEOUT_STRICTNESS[task.on_timeout] < _TIMEOUT_STRICTNESS[workspace.on_timeout]:
        return False
    return not (
        task.on_timeout == TimeoutOutcome.APPROVE
        and _timeout_of(task, task_config) < _timeout_of(workspace, workspace_config)
    )


def weakenings(
    workspace: WorkflowCheckpoints | None, task: WorkflowCheckpoints | None
) -> list[str]:
    """What a task's checkpoints would remove or weaken of the workspace's (empty: they only
    add gates). Leaving a workspace gate out removes nothing: it still applies."""
    if workspace is None or task is None or not workspace.enabled or not workspace.checkpoints:
        return []
    found = []
    if not task.enabled:
        found.append("enabled: false would switch off the workspace's checkpoints")
    for gate in workspace.checkpoints:
        mine = task.find(gate.name)
        if mine is not None and not at_least_as_strict(mine, task, gate, workspace):
            found.append(f"checkpoints: {gate.name!r} is weaker than the workspace's")
    extra_users = sorted(set(task.auto_approve_for_users) - set(workspace.auto_approve_for_users))
    if extra_users:
        found.append(
            f"auto_approve_for_users: {', '.join(extra_users)} are not auto-approved by the workspace"
        )
    return found


def effective_checkpoints(
    workspace: WorkflowCheckpoints | None,
    task: WorkflowCheckpoints | None,
    *,
    replace: bool = False,
) -> WorkflowCheckpoints | None:
    """The gates a task runs under. Without `replace` (an admin key, or the workspace's
    `allow_task_overrides`), the workspace's gates all stay as they are, unless the task's
    version of one is at least as strict, and the task's other gates are added, each keeping
    the task's default timeout; the workspace's auto-approved users and timeouts hold."""
    if task is None:
        return workspace
    if replace or workspace is None or not workspace.enabled or not workspace.checkpoints:
        return task
    kept = []
    for gate in workspace.checkpoints:
        mine = task.find(gate.name)
        stricter = mine is not None and task.enabled and at_least_as_strict(mine, task, gate, workspace)
        kept.append(mine.model_copy(update={"timeout_seconds": _timeout_of(mine, task)})
                    if stricter and mine is not None else gate)
    names = {gate.name for gate in workspace.checkpoints}
    added = [
        gate.model_copy(update={"timeout_seconds": _timeout_of(gate, task)})
        for gate in task.checkpoints
        if task.enabled and gate.name not in names
    ]
    return workspace.model_copy(update={"checkpoints": [*kept, *added]})
