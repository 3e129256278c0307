"""HTTP request and response bodies (validated: a bad body gets 422 naming the field)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.contract.events import MAX_DEADLINE_S
from shared.contract.models import (
    BudgetConstraints,
    QualityThresholds,
    SelfCorrectionConfig,
    UserId,
    WorkflowCheckpoints,
    WorkspaceId,
)

# No ':' (the key separator): a task id must never name another task's key.
TaskId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")]


class OrchestrateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goal: str = Field(min_length=1, max_length=4000, examples=["Create a blog post about AI"])
    workspace_id: WorkspaceId
    user_id: UserId | None = None


class ContextSummary(BaseModel):
    past_successes: int
    task_history: int
    performance_data: dict[str, Any]


class OrchestrateResponse(BaseModel):
    agent_sequence: list[str]
    context_summary: ContextSummary
    routing: dict[str, Any]


class SelfCorrectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_name: str = Field(min_length=1, examples=["content"])
    payload: dict[str, Any] = Field(examples=[{"goal": "Generate blog post", "topic": "AI"}])
    workspace_id: WorkspaceId
    user_id: UserId | None = None
    config: SelfCorrectionConfig | None = None
    brand_voice: dict[str, Any] = Field(default_factory=dict)
    quality_thresholds: QualityThresholds = Field(default_factory=dict)
    budget_constraints: BudgetConstraints = Field(default_factory=dict)


class TaskSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goal: str = Field(
        min_length=1, max_length=4000, examples=["Create a blog post about AI trends"]
    )
    workspace_id: WorkspaceId
    user_id: UserId | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    agent_sequence: list[str] | None = None
    brand_voice: dict[str, Any] = Field(default_factory=dict)
    target_icps: list[str] = Field(default_factory=list)
    user_preferences: dict[str, Any] = Field(default_factory=dict)
    quality_thresholds: QualityThresholds = Field(default_factory=dict)
    budget_constraints: BudgetConstraints = Field(default_factory=dict)
    self_correction: SelfCorrectionConfig | None = None
    checkpoints: WorkflowCheckpoints | None = None
    task_id: TaskId | None = Field(
        default=None, description="The caller's own id for the task; a repeat with the same "
        "body answers the same task, with a different body 409."
    )
    deadline_s: float | None = Field(
        default=None, gt=0, le=MAX_DEADLINE_S, allow_inf_nan=False,
        description="Seconds from acceptance after which the task fails (reason deadline).",
    )


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: WorkspaceId
    cancelled_by: UserId | None = Field(
        default=None, description="Who cancels, unless the API key names its user."
    )
    reason: str = Field(default="", max_length=2000)


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: WorkspaceId
    budget_constraints: BudgetConstraints | None = Field(
        default=None, description="New limits for the resumed run; without them it carries "
        "what is left of the original budget."
    )


class RerunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: WorkspaceId


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: WorkspaceId
    decision: Literal["approved", "rejected", "changes_requested"]
    decided_by: UserId | None = Field(
        default=None, description="Required unless the API key names its user (then it must match)."
    )
    reason: str = Field(default="", max_length=2000)
    comments: list[str] = Field(default_factory=list, max_length=20)
