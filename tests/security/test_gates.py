"""A workspace's gates are policy: a task may add gates, never remove or weaken them
(unless an admin key or the workspace's opt-in lets it replace them)."""

from __future__ import annotations

import pytest

from shared.contract.models import (
    CheckpointCondition,
    TimeoutOutcome,
    WorkflowCheckpoint,
    WorkflowCheckpoints,
)
from shared.domain.checkpoints import effective_checkpoints, weakenings

AFTER = CheckpointCondition.AFTER_STAGE


def gate(name: str = "review", stage: str = "research", **kw: object) -> WorkflowCheckpoint:
    return WorkflowCheckpoint.model_validate(
        {"name": name, "condition": AFTER, "condition_params": {"stage": stage}, **kw}
    )


def config(*gates: WorkflowCheckpoint, **kw: object) -> WorkflowCheckpoints:
    return WorkflowCheckpoints.model_validate(
        {"workspace_id": "ws", "checkpoints": [g.model_dump() for g in gates], **kw}
    )


WORKSPACE = config(
    gate(auto_approve_if={"quality_above": 0.8}, timeout_seconds=600),
    gate("legal", "content"),
    auto_approve_for_users=["lead"],
)


@pytest.mark.parametrize(
    ("task", "why"),
    [
        (config(enabled=False), "enabled"),
        (config(gate(auto_approve_if={"quality_above": 0.5})), "review"),
        (config(gate("legal", "content", auto_approve_if={"quality_above": 0.99})), "legal"),
        (config(gate(stage="content", auto_approve_if={"quality_above": 0.9})), "review"),
        (config(gate(auto_approve_if={"quality_above": 0.9}, on_timeout=TimeoutOutcome.APPROVE)), "review"),
        (config(auto_approve_for_users=["mallory"]), "mallory"),
    ],
)
def test_removing_or_weakening_a_workspace_gate_is_named(task: WorkflowCheckpoints, why: str):
    found = weakenings(WORKSPACE, task)
    assert found and any(why in f for f in found), found
    effective = effective_checkpoints(WORKSPACE, task)
    assert effective is not None and effective.enabled
    assert effective.checkpoints[:2] == WORKSPACE.checkpoints, "the workspace's gates stand"
    assert effective.auto_approve_for_users == ["lead"]


def test_adding_gates_and_tightening_rules_is_allowed_and_applied() -> None:
    task = config(
        gate(auto_approve_if={"quality_above": 0.95, "success_rate_above": 0.5}, timeout_seconds=60),
        gate("extra", "content", timeout_seconds=None),
        default_timeout=120,
    )
    assert weakenings(WORKSPACE, task) == []
    effective = effective_checkpoints(WORKSPACE, task)
    assert effective is not None
    by_name = {g.name: g for g in effective.checkpoints}
    assert by_name["review"].auto_approve_if == {"quality_above": 0.95, "success_rate_above": 0.5}
    assert by_name["legal"] == WORKSPACE.checkpoints[1], "left out: still applies"
    assert by_name["extra"].timeout_seconds == 120, "the task's default travels with its gate"
    assert effective.default_timeout == WORKSPACE.default_timeout


def test_a_version_without_rules_always_waits_for_a_human_so_it_is_stricter() -> None:
    task = config(gate(auto_approve_if={}))
    assert weakenings(WORKSPACE, task) == []
    effective = effective_checkpoints(WORKSPACE, task)
    assert effective is not None and effective.checkpoints[0].auto_approve_if == {}
    assert weakenings(config(gate()), config(gate(auto_approve_if={"quality_above": 0.99})))


def test_replace_and_no_workspace_gates_take_the_tasks_as_they_are() -> None:
    off = config(enabled=False)
    assert effective_checkpoints(WORKSPACE, off, replace=True) == off
    assert effective_checkpoints(None, off) == off
    assert weakenings(None, off) == []
    assert effective_checkpoints(config(enabled=False), off) == off
    assert effective_checkpoints(WORKSPACE, None) == WORKSPACE
