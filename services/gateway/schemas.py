"""HTTP request and response bodies (validated: a bad body gets 422 naming the field).

Request fields use the contract's own types (`shared.contract.models`), the ones the
services decode with, so what the gateway accepts the services can process.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contract.models import (
    MAX_LIST_ITEMS,
    AgentName,
    AgentSequence,
    BudgetConstraints,
    Goal,
    JsonObject,
    Label,
    QualityThresholds,
    SelfCorrectionConfig,
    Text,
    UserId,
    WorkflowCheckpoints,
    WorkspaceId,
)


class OrchestrateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goal: Goal = Field(examples=["Create a blog post about AI"])
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

    agent_name: AgentName
    payload: JsonObject = Field(examples=[{"goal": "Generate blog post", "topic": "AI"}])
    workspace_id: WorkspaceId
    user_id: UserId | None = None
    config: SelfCorrectionConfig | None = None
    brand_voice: JsonObject = Field(default_factory=dict)
    quality_thresholds: QualityThresholds = Field(default_factory=dict)
    budget_constraints: BudgetConstraints = Field(default_factory=dict)


class TaskSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goal: Goal = Field(examples=["Create a blog post about AI trends"])
    workspace_id: WorkspaceId
    user_id: UserId | None = None
    inputs: JsonObject = Field(default_factory=dict)
    agent_sequence: AgentSequence | None = None
    brand_voice: JsonObject = Field(default_factory=dict)
    target_icps: list[Label] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    user_preferences: JsonObject = Field(default_factory=dict)
    quality_thresholds: QualityThresholds = Field(default_factory=dict)
    budget_constraints: BudgetConstraints = Field(default_factory=dict)
    self_correction: SelfCorrectionConfig | None = None
    checkpoints: WorkflowCheckpoints | None = None


class TaskAccepted(BaseModel):
    task_id: str
    workspace_id: str
    status: Literal["accepted"] = "accepted"


class TaskStatus(BaseModel):
    task_id: str
    workspace_id: str
    status: str
    goal: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    stages: list[dict[str, Any]] = Field(default_factory=list)


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: WorkspaceId
    decision: Literal["approved", "rejected", "changes_requested"]
    decided_by: UserId | None = Field(
        default=None, description="Required unless the API key names its user (then it must match)."
    )
    reason: Text = ""
    comments: list[Text] = Field(default_factory=list, max_length=20)
