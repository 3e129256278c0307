"""The seed's orchestration models: AgentContext, SelfCorrectionConfig, checkpoints.

Every field and default the seed lists is here; what we add says so in its
description.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

WorkspaceId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"),
    Field(
        description="Workspace id (a UUID or a slug: letters, digits, _ . -); scopes every key.",
        examples=["demo", "3f0c9a56-8a4e-4d0b-9a7e-2b1d1c1e6f10"],
    ),
]
UserId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,127}$"),
    Field(description="User id (a UUID or a slug).", examples=["alice"]),
]

UnitScore = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
QualityThresholds = dict[str, UnitScore]
BudgetConstraints = dict[str, NonNegative]

DEFAULT_QUALITY_THRESHOLDS: dict[str, float] = {
    "content_quality": 0.7,
    "strategy_viability": 0.8,
    "research_depth": 0.75,
}

DEFAULT_CRITIQUE_ASPECTS: list[str] = [
    "clarity",
    "accuracy",
    "completeness",
    "persuasiveness",
    "brand_alignment",
]


class AgentContext(BaseModel):
    """Context carried through the whole execution chain, in every event."""

    model_config = ConfigDict(extra="forbid")

    workspace_id: WorkspaceId
    correlation_id: str = Field(default="", description="The task this context belongs to.")
    user_id: UserId | None = None
    brand_voice: dict[str, Any] = Field(
        default_factory=dict,
        description="Brand voice profile, e.g. tone and style.",
        examples=[{"tone": "professional", "style": "conversational"}],
    )
    target_icps: list[str] = Field(default_factory=list, description="Target customer profiles.")
    past_successes: list[dict[str, Any]] = Field(
        default_factory=list, description="Similar successful tasks from memory (capped)."
    )
    user_preferences: dict[str, Any] = Field(default_factory=dict)
    task_history: list[dict[str, Any]] = Field(
        default_factory=list, description="Recent tasks of the workspace (capped)."
    )
    performance_data: dict[str, Any] = Field(
        default_factory=dict, description="Agent performance per task type for this workspace."
    )
    quality_thresholds: QualityThresholds = Field(
        default_factory=lambda: dict(DEFAULT_QUALITY_THRESHOLDS),
        description="Minimum quality per kind of work; missing keys take the defaults.",
    )
    budget_constraints: BudgetConstraints = Field(
        default_factory=dict,
        description="Task-wide limits: max_api_calls, and optionally max_cost_usd.",
        examples=[{"max_api_calls": 100}],
    )

    @field_validator("quality_thresholds")
    @classmethod
    def _merge_threshold_defaults(cls, value: dict[str, float]) -> dict[str, float]:
        return {**DEFAULT_QUALITY_THRESHOLDS, **value}


class SelfCorrectionConfig(BaseModel):
    """How hard the corrector tries before accepting an output."""

    model_config = ConfigDict(extra="forbid")

    max_iterations: int = Field(default=3, ge=1, le=10, description="Maximum correction attempts.")
    min_quality_score: float = Field(
        default=0.8, ge=0.0, le=1.0, description="Minimum acceptable quality (0.0-1.0)."
    )
    improvement_threshold: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Minimum improvement to continue."
    )
    critique_aspects: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CRITIQUE_ASPECTS),
        min_length=1,
        description="What to critique.",
    )
    aspect_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Ours: weight per aspect in the overall score (missing aspects weigh 1).",
    )
    store_failures: bool = Field(default=True, description="Store failed attempts in memory.")


class CheckpointCondition(StrEnum):
    AFTER_STAGE = "after_stage"
    BEFORE_EXECUTION = "before_execution"


class CheckpointAction(StrEnum):
    REQUEST_APPROVAL = "request_approval"


class TimeoutOutcome(StrEnum):
    """Ours: what an approval that nobody decided in time turns into."""

    REJECT = "reject"
    APPROVE = "approve"
    ESCALATE = "escalate"


class WorkflowCheckpoint(BaseModel):
    """One place in a workflow where a human may have to approve."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    condition: CheckpointCondition
    condition_params: dict[str, Any] = Field(
        default_factory=dict,
        description="AFTER_STAGE: {'stage': agent name}; BEFORE_EXECUTION: optional stage.",
    )
    action: CheckpointAction = CheckpointAction.REQUEST_APPROVAL
    auto_approve_if: dict[str, float] = Field(
        default_factory=dict,
        description="Rules that must all hold: quality_above, success_rate_above.",
        examples=[{"quality_above": 0.85, "success_rate_above": 0.8}],
    )
    timeout_seconds: int | None = Field(
        default=None, gt=0, description="Defaults to the config's default_timeout."
    )
    on_timeout: TimeoutOutcome = Field(default=TimeoutOutcome.REJECT, description="Ours.")

    @field_validator("auto_approve_if")
    @classmethod
    def _known_rules(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - set(AUTO_APPROVE_RULES)
        if unknown:
            raise ValueError(f"unknown auto_approve_if rules: {sorted(unknown)}")
        return value


AUTO_APPROVE_RULES: dict[str, str] = {
    "quality_above": "quality_score",
    "success_rate_above": "agent_success_rate",
}


class WorkflowCheckpoints(BaseModel):
    """A workspace's checkpoint configuration."""

    model_config = ConfigDict(extra="forbid")

    workspace_id: WorkspaceId
    checkpoints: list[WorkflowCheckpoint] = Field(default_factory=list)
    enabled: bool = True
    auto_approve_for_users: list[str] = Field(default_factory=list)
    default_timeout: int = Field(default=3600, gt=0)

    def find(self, name: str) -> WorkflowCheckpoint | None:
        return next((c for c in self.checkpoints if c.name == name), None)


class RuleResult(BaseModel):
    rule: str
    threshold: float
    value: float | None
    passed: bool


class CheckpointEvaluation(BaseModel):
    """What `evaluate_checkpoint` answers, with the reasons."""

    checkpoint: str
    status: Literal["auto_approved", "pending_approval", "not_applicable"]
    reasons: list[str] = Field(default_factory=list)
    rules: list[RuleResult] = Field(default_factory=list)
    timeout_seconds: int | None = None
