"""The seed's orchestration models: AgentContext, SelfCorrectionConfig, checkpoints.

Every field and default the seed lists is here; what we add says so in its
description.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

# --- limits: what a request may hold (docs/security.md lists them) ------------------

MAX_GOAL_CHARS = 4000
MAX_TEXT_CHARS = 2000
"""Free text fields: reasons, comments, descriptions, feedback."""
MAX_JSON_DEPTH = 16
"""Nesting of a free-form JSON field (inputs, brand_voice, payload...): far below the
~250 levels at which the services' JSON parser gives up."""
MAX_JSON_VALUES = 10_000
MAX_JSON_STRING_CHARS = 20_000
MAX_JSON_KEY_CHARS = 256
MAX_AGENTS_PER_SEQUENCE = 20
MAX_LIST_ITEMS = 50
MAX_CHECKPOINTS = 50
MAX_TIMEOUT_S = 30 * 24 * 3600
"""An approval waits at most 30 days."""
MAX_BUDGET = 1e9
JSON_INT_BOUND = 2**63

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"


class ContractModel(BaseModel):
    """Base of the contract's models: a float is a finite number (JSON has no NaN or
    Infinity; the services' parser turns them into errors, so the edge refuses them)."""

    model_config = ConfigDict(allow_inf_nan=False)


def printable(text: str, limit: int = 40) -> str:
    """A short excerpt of untrusted text that any JSON encoder can write."""
    cut = text[:limit] + ("…" if len(text) > limit else "")
    return cut.encode("utf-8", "backslashreplace").decode("utf-8")


def _string_problem(text: str, limit: int) -> str | None:
    if len(text) > limit:
        return f"longer than {limit} characters"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid Unicode (a lone surrogate)"
    return None


def json_problem(
    value: Any, *, max_depth: int = MAX_JSON_DEPTH, max_values: int = MAX_JSON_VALUES
) -> str | None:
    """Why a decoded JSON value is unfit to travel (None: it is fine): nesting, size,
    strings, non-finite or out-of-range numbers, lone surrogates, or a non-JSON type.
    The answer names where, e.g. `a.b[3]: not a finite number`. A fit value costs one
    quick pass; only an unfit one is walked again to say where."""
    if _fits(value, max_depth, max_values):
        return None
    return _explain(value, max_depth, max_values)


def _fits(value: Any, max_depth: int, max_values: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > max_values:
            return False
        kind = type(item)
        if kind is dict or kind is list:
            if depth > max_depth or not _push(item, depth, stack):
                return False
        elif _scalar_problem(item) is not None:
            return False
    return True


def _push(item: dict[Any, Any] | list[Any], depth: int, stack: list[tuple[Any, int]]) -> bool:
    if type(item) is list:
        stack.extend([(child, depth + 1) for child in item])
        return True
    for key, child in item.items():  # type: ignore[union-attr]
        if type(key) is not str or _string_problem(key, MAX_JSON_KEY_CHARS):
            return False
        stack.append((child, depth + 1))
    return True


def _scalar_problem(item: Any) -> str | None:
    if isinstance(item, str):
        return _string_problem(item, MAX_JSON_STRING_CHARS)
    if item is None or isinstance(item, bool):
        return None
    if isinstance(item, int):
        return None if -JSON_INT_BOUND <= item < JSON_INT_BOUND else "integer out of range (64 bits)"
    if isinstance(item, float):
        return None if math.isfinite(item) else "not a finite number"
    return f"not a JSON value ({type(item).__name__})"


def _explain(value: Any, max_depth: int, max_values: int) -> str | None:
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    seen = 0
    while stack:
        item, depth, where = stack.pop()
        seen += 1
        if seen > max_values:
            return f"more than {max_values} values"
        here = where or "<root>"
        if isinstance(item, dict | list):
            if depth > max_depth:
                return f"{here}: nested deeper than {max_depth} levels"
            problem = _push_named(item, depth, where, stack)
        else:
            problem = _scalar_problem(item)
            problem = f"{here}: {problem}" if problem else None
        if problem:
            return problem
    return None


def _push_named(
    item: dict[Any, Any] | list[Any], depth: int, where: str, stack: list[tuple[Any, int, str]]
) -> str | None:
    if isinstance(item, list):
        stack.extend((child, depth + 1, f"{where}[{n}]") for n, child in enumerate(item))
        return None
    for key, child in item.items():
        if not isinstance(key, str):
            return f"{where or '<root>'}: keys must be strings"
        problem = _string_problem(key, MAX_JSON_KEY_CHARS)
        if problem:
            return f"{where or '<root>'}: a key is {problem}"
        stack.append((child, depth + 1, f"{where}.{printable(key)}" if where else printable(key)))
    return None


def _bounded_json(value: Any) -> Any:
    if not value:  # most events carry empty ones: no walk
        return value
    problem = json_problem(value)
    if problem:
        raise ValueError(problem)
    return value


JsonObject = Annotated[
    dict[str, Any],
    AfterValidator(_bounded_json),
    Field(
        description=f"Free-form JSON object: at most {MAX_JSON_DEPTH} levels deep, "
        f"{MAX_JSON_VALUES} values, strings of {MAX_JSON_STRING_CHARS} characters, "
        "finite numbers."
    ),
]
"""A free-form JSON object from a request, bounded so that every service can decode it."""
Goal = Annotated[str, Field(min_length=1, max_length=MAX_GOAL_CHARS)]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Name = Annotated[str, Field(min_length=1, max_length=100)]
Label = Annotated[str, Field(min_length=1, max_length=200)]
Id = Annotated[
    str,
    StringConstraints(pattern=ID_PATTERN),
    Field(description="An id: letters, digits, _ . - (at most 100)."),
]
AgentName = Annotated[
    str, Field(min_length=1, max_length=64, description="An agent of the catalog.", examples=["content"])
]
AgentSequence = Annotated[
    list[AgentName], Field(min_length=1, max_length=MAX_AGENTS_PER_SEQUENCE)
]
TimeoutSeconds = Annotated[int, Field(gt=0, le=MAX_TIMEOUT_S)]

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
NonNegative = Annotated[float, Field(ge=0.0, le=MAX_BUDGET, allow_inf_nan=False)]
Key = Annotated[str, Field(min_length=1, max_length=64)]
QualityThresholds = Annotated[dict[Key, UnitScore], Field(max_length=32)]
BudgetConstraints = Annotated[dict[Key, NonNegative], Field(max_length=16)]

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


class AgentContext(ContractModel):
    """Context carried through the whole execution chain, in every event."""

    model_config = ConfigDict(extra="forbid")

    workspace_id: WorkspaceId
    correlation_id: str = Field(default="", description="The task this context belongs to.")
    user_id: UserId | None = None
    brand_voice: JsonObject = Field(
        default_factory=dict,
        description="Brand voice profile, e.g. tone and style.",
        examples=[{"tone": "professional", "style": "conversational"}],
    )
    target_icps: list[Label] = Field(
        default_factory=list, max_length=MAX_LIST_ITEMS, description="Target customer profiles."
    )
    # Built by the services from memory (never taken from a request), so not walked again
    # on every decode: these three travel in every event.
    past_successes: list[dict[str, Any]] = Field(
        default_factory=list, max_length=100, description="Similar successful tasks from memory (capped)."
    )
    user_preferences: JsonObject = Field(default_factory=dict)
    task_history: list[dict[str, Any]] = Field(
        default_factory=list, max_length=100, description="Recent tasks of the workspace (capped)."
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


class SelfCorrectionConfig(ContractModel):
    """How hard the corrector tries before accepting an output."""

    model_config = ConfigDict(extra="forbid")

    max_iterations: int = Field(default=3, ge=1, le=10, description="Maximum correction attempts.")
    min_quality_score: float = Field(
        default=0.8, ge=0.0, le=1.0, description="Minimum acceptable quality (0.0-1.0)."
    )
    improvement_threshold: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Minimum improvement to continue."
    )
    critique_aspects: list[Key] = Field(
        default_factory=lambda: list(DEFAULT_CRITIQUE_ASPECTS),
        min_length=1,
        max_length=20,
        description="What to critique.",
    )
    aspect_weights: dict[Key, Annotated[float, Field(ge=0.0, le=100.0)]] = Field(
        default_factory=dict,
        max_length=20,
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


class WorkflowCheckpoint(ContractModel):
    """One place in a workflow where a human may have to approve."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Text = ""
    condition: CheckpointCondition
    condition_params: JsonObject = Field(
        default_factory=dict,
        description="AFTER_STAGE: {'stage': agent name}; BEFORE_EXECUTION: optional stage.",
    )
    action: CheckpointAction = CheckpointAction.REQUEST_APPROVAL
    auto_approve_if: dict[str, UnitScore] = Field(
        default_factory=dict,
        description="Rules that must all hold: quality_above, success_rate_above.",
        examples=[{"quality_above": 0.85, "success_rate_above": 0.8}],
    )
    timeout_seconds: TimeoutSeconds | None = Field(
        default=None, description="Defaults to the config's default_timeout (at most 30 days)."
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


class WorkflowCheckpoints(ContractModel):
    """A workspace's checkpoint configuration."""

    model_config = ConfigDict(extra="forbid")

    workspace_id: WorkspaceId
    checkpoints: list[WorkflowCheckpoint] = Field(default_factory=list, max_length=MAX_CHECKPOINTS)
    enabled: bool = True
    auto_approve_for_users: list[UserId] = Field(default_factory=list, max_length=100)
    default_timeout: TimeoutSeconds = Field(default=3600, description="Seconds (at most 30 days).")
    allow_task_overrides: bool = Field(
        default=False,
        description="Ours. As a workspace's configuration: a task's own checkpoints may replace "
        "these (remove or weaken gates). Off: a task may only add gates, unless its key is an "
        "admin key.",
    )

    def find(self, name: str) -> WorkflowCheckpoint | None:
        return next((c for c in self.checkpoints if c.name == name), None)


class RuleResult(ContractModel):
    rule: str
    threshold: float
    value: float | None
    passed: bool


class CheckpointEvaluation(ContractModel):
    """What `evaluate_checkpoint` answers, with the reasons."""

    checkpoint: str
    status: Literal["auto_approved", "pending_approval", "not_applicable"]
    reasons: list[str] = Field(default_factory=list)
    rules: list[RuleResult] = Field(default_factory=list)
    timeout_seconds: int | None = None
