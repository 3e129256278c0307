"""The typed status of a task, as `GET /tasks/{id}` and `GET /tasks` return it.

Redis keeps the view as a flat hash of strings (cheap to update field by field from
many services); this module is the one place that turns it into booleans, numbers,
lists and ISO-8601 times, so every reader (the gateway, the CLI, the console, the
Python client) sees the same documented model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, ValidationError

from shared.contract.events import SelfCorrectionMetadata, Usage

TaskState = Literal[
    "accepted", "running", "awaiting_approval", "completed", "failed", "rejected", "cancelled"
]
TERMINAL_STATES: frozenset[str] = frozenset({"completed", "failed", "rejected", "cancelled"})
RESUMABLE_STATES: frozenset[str] = frozenset({"failed", "rejected"})
_KNOWN_STATES = frozenset(get_args(TaskState))
_LEGACY_STATES = {"requested": "accepted"}


class StageView(BaseModel):
    """One finished stage: who ran it, how good it got, what it cost."""

    stage_index: int = Field(ge=0)
    agent: str
    task_type: str = ""
    output: str = ""
    quality: float = Field(ge=0, le=1, description="Best critique score of the stage.")
    threshold_met: bool
    budget_exhausted: bool = False
    provider: str = ""
    usage: Usage = Field(default_factory=Usage)
    self_correction_metadata: SelfCorrectionMetadata | None = None

    @property
    def iterations(self) -> int:
        return self.self_correction_metadata.iterations if self.self_correction_metadata else 0


class TaskView(BaseModel):
    """Where a task stands. Present from the moment the gateway answered 202."""

    task_id: str
    workspace_id: str
    status: TaskState = Field(description="accepted, running, awaiting_approval, or an end: "
                              "completed, failed, rejected, cancelled.")
    goal: str | None = None
    created_at: datetime | None = Field(default=None, description="When it was accepted.")
    updated_at: datetime | None = None
    deadline_at: datetime | None = Field(default=None, description="It fails past this time.")
    agent_sequence: list[str] = Field(default_factory=list, description="The planned agents.")
    routing_source: str | None = Field(
        default=None, description="memory, planner, requested or experiment."
    )
    routing_confidence: float | None = Field(default=None, ge=0, le=1)
    approval_id: str | None = Field(default=None, description="The approval it waits on.")
    checkpoint: str | None = None
    last_decision: str | None = None
    decided_by: str | None = None
    success: bool | None = Field(default=None, description="Completed with every stage "
                                 "above its threshold.")
    quality: float | None = Field(default=None, ge=0, le=1)
    final_output: str | None = None
    execution_time_s: float | None = Field(default=None, ge=0)
    usage: Usage | None = Field(default=None, description="LLM calls, tokens and cost so far.")
    providers: list[str] = Field(default_factory=list)
    budget_exhausted: bool = False
    failure_reason: str | None = Field(
        default=None, description="rejected, budget_exhausted, error, invalid_plan, expired, "
        "deadline, agent_timeout."
    )
    error: str | None = None
    cancelled_by: str | None = None
    cancel_reason: str | None = None
    resumed_from: str | None = Field(default=None, description="The task this one resumes.")
    rerun_of: str | None = Field(default=None, description="The task this one copies.")
    resumed_by: str | None = Field(default=None, description="The task that resumed this one.")
    feedback_rating: int | None = Field(default=None, ge=1, le=5)
    feedback_comment: str | None = None
    stages: list[StageView] = Field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATES

    @property
    def cost_usd(self) -> float:
        return self.usage.cost_usd if self.usage else 0.0


class TaskPage(BaseModel):
    """One page of a workspace's tasks, newest first."""

    tasks: list[TaskView]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; absent on the last."
    )


class TaskAccepted(BaseModel):
    """The answer to a submission: the task's id and its status now."""

    task_id: str
    workspace_id: str
    status: TaskState = "accepted"
    replayed: bool = Field(
        default=False, description="True when an Idempotency-Key (or task_id) matched an "
        "earlier submission: nothing was submitted twice."
    )


def _time(value: str | None) -> datetime | None:
    number = _number(value)
    return datetime.fromtimestamp(number, UTC) if number is not None else None


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _json(value: str | None) -> Any:
    try:
        return json.loads(value) if value else None
    except ValueError:
        return None


def _flag(value: str | None) -> bool:
    return value in ("true", "1", "True")


def view_fields(raw: Mapping[str, str]) -> dict[str, Any]:
    """The hash's strings as typed values (unknown or unparseable fields left out)."""
    sequence = _json(raw.get("agent_sequence"))
    usage = _json(raw.get("usage"))
    rating = _number(raw.get("feedback_rating"))
    status = _LEGACY_STATES.get(raw.get("status", ""), raw.get("status") or "accepted")
    fields: dict[str, Any] = {
        "status": status if status in _KNOWN_STATES else "running",
        "created_at": _time(raw.get("created_at")),
        "updated_at": _time(raw.get("updated_at")),
        "deadline_at": _time(raw.get("deadline_at")),
        "agent_sequence": sequence if isinstance(sequence, list) else [],
        "routing_confidence": _number(raw.get("routing_confidence")),
        "success": _flag(raw["success"]) if raw.get("success") else None,
        "quality": _number(raw.get("quality")),
        "execution_time_s": _number(raw.get("execution_time_s")),
        "usage": usage if isinstance(usage, dict) else None,
        "providers": [p for p in raw.get("providers", "").split(",") if p],
        "budget_exhausted": _flag(raw.get("budget_exhausted")),
        "feedback_rating": int(rating) if rating is not None else None,
    }
    for name in ("goal", "routing_source", "approval_id", "checkpoint", "last_decision",
                 "decided_by", "final_output", "failure_reason", "error", "cancelled_by",
                 "cancel_reason", "resumed_from", "rerun_of", "resumed_by", "feedback_comment"):
        if raw.get(name):
            fields[name] = raw[name]
    return fields


def stage_of(raw: str) -> StageView | None:
    try:
        return StageView.model_validate_json(raw)
    except ValidationError:
        return None


def task_view_of(
    task_id: str, workspace_id: str, raw: Mapping[str, str], stages: Mapping[str, str]
) -> TaskView:
    """The typed view of the stored hash and stage records (a bad record is skipped, not a 500)."""
    parsed = [s for s in (stage_of(v) for v in stages.values()) if s is not None]
    fields = view_fields(raw)
    try:
        view = TaskView(task_id=task_id, workspace_id=workspace_id, **fields)
    except ValidationError:  # a field out of range: the status and goal still tell the story
        view = TaskView(task_id=task_id, workspace_id=workspace_id, status=fields["status"],
                        goal=fields.get("goal"))
    return view.model_copy(update={"stages": sorted(parsed, key=lambda s: s.stage_index)})
