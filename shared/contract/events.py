"""The event contract: one versioned envelope and a typed payload per event.

Events are named in the past tense. The plan and the current stage travel in
the payload (`Workflow`), so no service needs to look up workflow state.
"""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from shared.contract.models import (
    MAX_GOAL_CHARS,
    AgentContext,
    AgentSequence,
    CheckpointCondition,
    CheckpointEvaluation,
    ContractModel,
    Goal,
    Id,
    JsonObject,
    SelfCorrectionConfig,
    Text,
    UserId,
    WorkflowCheckpoints,
    WorkspaceId,
)
from shared.contract.topology import STREAM_PREFIX

SCHEMA_VERSION = 1
MAX_DEADLINE_S = 30 * 24 * 3600.0
_EVENT_NAMESPACE = uuid.UUID("6f1f6d3e-8c1e-4a3e-9f55-6b0e6e1f0a01")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Payload(ContractModel):
    """Base of every event payload; the class name is the event type."""

    model_config = ConfigDict(extra="forbid")
    event_type: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.event_type = cls.__name__

    @property
    def channel(self) -> str:
        """What names this payload's stream (with the layout's partition suffix): its type."""
        return self.event_type


class Usage(ContractModel):
    """LLM usage, counted from the API's usage fields."""

    api_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def plus(self, other: Usage) -> Usage:
        return Usage(
            api_calls=self.api_calls + other.api_calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 8),
        )


class RoutingInfo(ContractModel):
    source: Literal["memory", "planner", "requested", "experiment"] = Field(
        description="memory: a proven sequence reused; planner: newly planned; requested: given; "
        "experiment: an A/B test's arm (experiment_id, experiment_arm)."
    )
    confidence: float = Field(ge=0, le=1, description="Probability the reused sequence is right.")
    matched_goal_hash: str | None = None
    provider: str = Field(default="offline", description="LLM provider used for planning.")
    experiment_id: str | None = Field(default=None, description="Set when source is experiment.")
    experiment_arm: Literal["A", "B"] | None = None
    candidate_sequence: list[str] | None = Field(
        default=None, description="Memory's best candidate, reused or not; the outcome says whether "
        "it was right, which corrects the workspace's routing calibration.")
    candidate_logit: float | None = Field(
        default=None, description="The candidate's logit under the global calibrator, before the "
        "workspace's correction.")


class StageOutcome(ContractModel):
    """The summary of one finished stage, kept in the workflow."""

    stage_index: int
    agent: str
    task_type: str
    quality: float
    threshold_met: bool
    iterations: int
    provider: str
    cost_usd: float = 0.0
    duration_s: float = 0.0


class Workflow(ContractModel):
    """The plan and the progress of one task; travels in every payload after routing."""

    task_id: str
    goal: str = Field(max_length=MAX_GOAL_CHARS)
    inputs: JsonObject = Field(default_factory=dict, description="Extra request inputs.")
    agent_sequence: list[str] = Field(min_length=1, description="The planned agents, in order.")
    stage_index: int = Field(default=0, ge=0)
    revision: int = Field(default=0, ge=0, description="Reviewer-requested reruns of this stage.")
    assigned_agents: list[str] = Field(
        default_factory=list, description="Agents actually selected for stages so far."
    )
    outcomes: list[StageOutcome] = Field(default_factory=list)
    last_output: str | None = Field(default=None, description="Output of the previous stage.")
    usage: Usage = Field(default_factory=Usage, description="Task-wide LLM usage so far.")
    routing: RoutingInfo
    self_correction: SelfCorrectionConfig | None = None
    checkpoints: WorkflowCheckpoints | None = Field(
        default=None, description="The task's own checkpoints, added to the workspace's."
    )
    replace_checkpoints: bool = Field(
        default=False, description="The task's checkpoints replace the workspace's (see TaskRequested)."
    )
    started_at: datetime = Field(default_factory=utcnow)

    @property
    def current_agent(self) -> str:
        return self.agent_sequence[self.stage_index]

    @property
    def is_last_stage(self) -> bool:
        return self.stage_index >= len(self.agent_sequence) - 1


# --- payloads, in the order of the flow -------------------------------------


class TaskRequested(Payload):
    """A user or an upstream system asks for a goal to be done."""

    goal: Goal = Field(examples=["Create a blog post about AI trends"])
    inputs: JsonObject = Field(default_factory=dict, examples=[{"topic": "AI in healthcare"}])
    agent_sequence: AgentSequence | None = Field(
        default=None, description="Skip routing and run exactly these agents."
    )
    self_correction: SelfCorrectionConfig | None = None
    checkpoints: WorkflowCheckpoints | None = Field(
        default=None,
        description="Gates of this task, added to the workspace's; a version of a workspace "
        "gate counts only when it is at least as strict.",
    )
    replace_checkpoints: bool = Field(
        default=False,
        description="The task's checkpoints replace the workspace's (may remove or weaken "
        "gates). The gateway sets it only for an admin key (a workspace with "
        "allow_task_overrides needs no flag); an upstream publisher that sets it is trusted "
        "as an operator.",
    )
    deadline_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_DEADLINE_S,
        allow_inf_nan=False,
        description="End the task as failed (reason `deadline`) this many seconds after "
        "`occurred_at`, wherever it is.",
        examples=[600],
    )


class Neighbour(ContractModel):
    goal_hash: str
    similarity: float
    quality: float
    success: bool
    agent_sequence: list[str]


class SequenceChosen(Payload):
    """The router decided which agents run, from memory or from the planner."""

    workflow: Workflow
    neighbours: list[Neighbour] = Field(default_factory=list)
    reason: str = ""


class SelectionInfo(ContractModel):
    planned_agent: str
    reason: str
    fallback: str
    explored: bool = False
    posterior_means: dict[str, float] = Field(default_factory=dict)
    skipped: dict[str, str] = Field(
        default_factory=dict, description="Candidates passed over, and why (no live worker)."
    )


class StageAssigned(Payload):
    """The selector picked the agent for the current stage."""

    workflow: Workflow
    agent: str
    task_type: str
    selection: SelectionInfo


class StageCleared(Payload):
    """Checkpoints before execution passed; the corrector may run the stage."""

    workflow: Workflow
    agent: str
    task_type: str
    revision_comments: list[str] = Field(
        default_factory=list, description="A reviewer's requested changes, used as critique."
    )
    previous_output: str | None = Field(default=None, description="Draft the reviewer saw.")


class CritiqueDone(Payload):
    """One critique of one iteration of the self-correction loop."""

    task_id: str
    stage_index: int
    agent: str
    iteration: int = Field(ge=1)
    content_id: str
    score: float = Field(ge=0, le=1)
    aspect_scores: dict[str, float]
    issues: list[str]
    critique: str
    threshold: float
    provider: str


class SelfCorrectionMetadata(ContractModel):
    """Exactly the seed's four fields, plus ours after them."""

    iterations: int
    final_quality_score: float
    threshold_met: bool
    attempts: int
    iteration_scores: list[float] = Field(default_factory=list)
    aspect_scores: dict[str, float] = Field(default_factory=dict)
    best_iteration: int = 1
    stop_reason: str = ""
    usage: Usage = Field(default_factory=Usage)
    duration_s: float = 0.0


class StageCompleted(Payload):
    """The corrector finished a stage (best attempt kept)."""

    workflow: Workflow
    agent: str
    task_type: str
    output: str
    quality: float
    threshold_met: bool
    budget_exhausted: bool = False
    provider: str
    self_correction_metadata: SelfCorrectionMetadata


class StageAdvanced(Payload):
    """The workflow moves to its next stage (stage_index already advanced)."""

    workflow: Workflow


class ApprovalNeeded(Payload):
    """A checkpoint paused the workflow for a human."""

    approval_id: str
    checkpoint: str
    condition: CheckpointCondition
    evaluation: CheckpointEvaluation
    workflow: Workflow
    agent: str
    task_type: str
    stage_output: str | None = None
    stage_outcome: StageOutcome | None = Field(
        default=None, description="AFTER_STAGE: the finished stage under review."
    )
    deadline: datetime


class ApprovalResolved(Payload):
    """A human (or the timeout) decided on an approval."""

    approval_id: str
    decision: Literal["approved", "rejected", "changes_requested"]
    decided_by: str
    decided_at: datetime = Field(default_factory=utcnow)
    reason: Text = ""
    comments: list[Text] = Field(default_factory=list, max_length=20)
    expired: bool = False


class TaskCompleted(Payload):
    """Every stage ran; success means every stage met its threshold."""

    workflow: Workflow
    success: bool
    quality: float
    final_output: str
    execution_time_s: float


class TaskFailed(Payload):
    """The task ended without completing (rejected, budget, error)."""

    workflow: Workflow | None = None
    goal: str = ""
    reason: Literal[
        "rejected", "budget_exhausted", "error", "invalid_plan", "expired", "deadline",
        "agent_timeout",
    ]
    error: str
    execution_time_s: float = 0.0


class FeedbackGiven(Payload):
    """A user rated a task's result."""

    task_id: Id
    rating: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=2000)


class ExperimentConcluded(Payload):
    """An A/B test of sequences was stopped with promotion: memory stores the winner's route."""

    experiment_id: str
    winner: Literal["A", "B"]
    agent_sequence: list[str] = Field(min_length=1)
    mean_quality: float = Field(ge=0, le=1)


class TaskCancelled(Payload):
    """A person or a system stopped the task: every service drops it at its next hop."""

    task_id: str = Field(min_length=1, max_length=100)
    cancelled_by: str | None = Field(default=None, max_length=128, description="Who cancelled.")
    reason: str = Field(default="", max_length=2000)
    cancelled_at: datetime = Field(default_factory=utcnow)


class ApprovalWithdrawn(Payload):
    """A pending approval no longer needs a decision: its task was cancelled or ran out of time."""

    approval_id: str
    task_id: str
    reason: Literal["cancelled", "deadline"]
    withdrawn_at: datetime = Field(default_factory=utcnow)


class CorrectionLoop(BaseModel):
    """The corrector's self-correction state for one stage, carried across attempts.

    Workers ignore it; the corrector reads it back from the pending invocation."""

    threshold: float = Field(ge=0, le=1)
    scope: str = Field(description="Names the content ids of this stage run.")
    iteration: int = Field(default=1, ge=1, description="The draft being asked for.")
    scores: list[float] = Field(default_factory=list, description="Critique score per draft.")
    best_output: str | None = None
    best_score: float = -1.0
    best_iteration: int = 1
    best_aspect_scores: dict[str, float] = Field(default_factory=dict)
    spent: Usage = Field(default_factory=Usage, description="This stage's usage so far.")
    call_cost_usd: float = Field(default=0.0, description="The dearest call seen so far.")
    started_at: float = Field(description="Unix seconds when the stage started.")


class StageInput(BaseModel):
    """What the task asks of the stage."""

    goal: str = Field(max_length=4000)
    inputs: dict[str, Any] = Field(default_factory=dict)


class AgentInvoked(Payload):
    """One attempt of a stage, addressed to an agent; answered by an AgentResult.

    llm and http agents are served by the built-in runner on `rf:stream:AgentInvoked`;
    a worker agent's invocations go to its own stream `rf:stream:AgentInvoked:<agent>`."""

    invocation_id: str = Field(description="Echo it in the AgentResult.")
    agent: str
    kind: Literal["llm", "worker", "http"]
    task_type: str
    stage_input: StageInput
    previous_output: str | None = Field(default=None, description="The previous stage's output.")
    draft: str | None = Field(default=None, description="On a revision: the draft to revise.")
    issues: list[str] = Field(
        default_factory=list, description="On a revision: the issues to fix, numbered from 1."
    )
    iteration: int = Field(ge=1, description="Which draft of the stage this is (1: first).")
    attempt: int = Field(ge=1, description="Which try of this invocation (retries after timeouts).")
    max_attempts: int = Field(ge=1)
    deadline: datetime = Field(description="Answer before this; once the timeout sweep has settled the invocation, "
        "a late answer is ignored.")
    reply_to: str = Field(description="The stream to XADD the AgentResult envelope to.")
    workflow: Workflow
    loop: CorrectionLoop

    @property
    def channel(self) -> str:
        """Worker agents' invocations go to the agent's own stream, the rest to the runner's."""
        return agent_channel(self.agent) if self.kind == "worker" else self.event_type


def agent_channel(agent: str) -> str:
    """The channel of a worker agent's invocations: `rf:stream:AgentInvoked:<agent>`."""
    return f"AgentInvoked:{agent}"


class AgentResult(Payload):
    """An agent's answer to one AgentInvoked: an output, or an error."""

    invocation_id: str = Field(min_length=1, max_length=200)
    agent: str = Field(min_length=1, max_length=64)
    attempt: int = Field(default=1, ge=1, le=100)
    output: str | None = Field(default=None, max_length=200_000)
    usage: Usage = Field(default_factory=Usage, description="Calls, tokens and cost it spent.")
    self_score: float | None = Field(
        default=None, ge=0, le=1, allow_inf_nan=False, description="Optional self-assessment."
    )
    error: str | None = Field(default=None, max_length=4000)
    provider: str = Field(default="", max_length=100, description="Who produced it.")

    @model_validator(mode="after")
    def _output_or_error(self) -> AgentResult:
        if (self.output is None) == (self.error is None):
            raise ValueError("exactly one of output and error")
        if self.output is not None and not self.output.strip():
            raise ValueError("output is empty")
        return self


EVENT_TYPES: dict[str, type[Payload]] = {
    cls.event_type: cls
    for cls in (
        TaskRequested,
        SequenceChosen,
        StageAssigned,
        StageCleared,
        CritiqueDone,
        StageCompleted,
        StageAdvanced,
        ApprovalNeeded,
        ApprovalResolved,
        TaskCompleted,
        TaskFailed,
        FeedbackGiven,
        ExperimentConcluded,
        TaskCancelled,
        ApprovalWithdrawn,
        AgentInvoked,
        AgentResult,
    )
}

P = TypeVar("P", bound=Payload)
Q = TypeVar("Q", bound=Payload)


class Envelope(ContractModel, Generic[P]):
    """What travels on every stream. Upstream systems may publish TaskRequested."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1, max_length=100)
    type: str = Field(max_length=64, description="The payload's event type, e.g. TaskRequested.")
    schema_version: int = Field(default=SCHEMA_VERSION, description="Envelope schema version.")
    occurred_at: datetime = Field(default_factory=utcnow)
    correlation_id: Id = Field(description="The task id.")
    causation_id: str | None = Field(
        default=None, max_length=100, description="The event that caused this one."
    )
    workspace_id: WorkspaceId
    user_id: UserId | None = None
    context: AgentContext
    payload: P
    trace_context: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = Field(
        default=None,
        # Left out when absent, so without tracing the JSON is exactly what consumers of
        # version 1 always read (a field rule: a model serializer would take pydantic's
        # encoding off its fast path for every event).
        exclude_if=lambda value: value is None,
        max_length=8,
        description="Optional W3C trace context (traceparent, tracestate) of the publisher.",
        examples=[{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}],
    )

    @field_validator("schema_version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(
                f"unsupported schema_version {value}; this build reads {SCHEMA_VERSION}"
            )
        return value

    @model_validator(mode="after")
    def _one_workspace(self) -> Envelope[P]:
        """The workspace that scopes the keys is the envelope's; a context naming another
        would carry that workspace's data into this one's task (dead-lettered instead)."""
        if self.context.workspace_id != self.workspace_id:
            raise ValueError(
                f"context.workspace_id {self.context.workspace_id!r} differs from the "
                f"envelope's workspace_id {self.workspace_id!r}"
            )
        # vars(): a missing attribute through pydantic's __getattr__ costs an exception.
        fields = vars(self.payload)
        workflow = fields.get("workflow")
        for gates in (fields.get("checkpoints"), workflow.checkpoints if workflow else None):
            if gates is not None and gates.workspace_id != self.workspace_id:
                raise ValueError(
                    f"checkpoints.workspace_id {gates.workspace_id!r} differs from the "
                    f"envelope's workspace_id {self.workspace_id!r}"
                )
        return self

    def follow(self, payload: Q, *, key: str = "") -> Envelope[Q]:
        """The next event in the chain; its id is derived so a redelivery yields the same id."""
        event_type = type(payload).event_type
        return envelope_class(type(payload))(
            event_id=str(uuid.uuid5(_EVENT_NAMESPACE, f"{self.event_id}/{event_type}/{key}")),
            type=event_type,
            correlation_id=self.correlation_id,
            causation_id=self.event_id,
            workspace_id=self.workspace_id,
            user_id=self.user_id,
            context=self.context,
            payload=payload,
        )

    @property
    def channel(self) -> str:
        """What names the stream this event travels on (`Topology.stream_of` adds the
        partition)."""
        return self.payload.channel if isinstance(self.payload, Payload) else self.type


def envelope_class(payload_type: type[P]) -> type[Envelope[P]]:
    """The parametrised envelope model for one payload type."""
    return _envelope_classes(payload_type)


@functools.cache
def _envelope_classes(payload_type: type[Payload]) -> type[Envelope[Any]]:
    """pydantic caches `Envelope[X]` too, but its lookup (generic keys, typing introspection)
    cost ~4% of a delivery in the bus-floor profile; this is one dict lookup."""
    return Envelope[payload_type]  # type: ignore[valid-type]


def new_envelope(
    payload: P,
    *,
    workspace_id: str,
    context: AgentContext | None = None,
    user_id: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    event_id: str | None = None,
) -> Envelope[P]:
    """The first event of a chain (or one started by a person, like a decision)."""
    task_id = correlation_id or str(uuid.uuid4())
    ctx = context or AgentContext(
        workspace_id=workspace_id, correlation_id=task_id, user_id=user_id
    )
    return envelope_class(type(payload))(
        event_id=event_id or str(uuid.uuid4()),
        type=type(payload).event_type,
        correlation_id=task_id,
        causation_id=causation_id,
        workspace_id=workspace_id,
        user_id=user_id,
        context=ctx,
        payload=payload,
    )


def envelope_json_schema() -> dict[str, Any]:
    """JSON Schema of the envelope for every event type (a oneOf), for upstream publishers."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (envelope_class(cls), "validation") for cls in EVENT_TYPES.values()
    ]
    refs, schema = models_json_schema(models, ref_template="#/$defs/{model}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "RaptorFlow event envelope",
        "description": (
            f"Schema version {SCHEMA_VERSION}. Publish on stream '{STREAM_PREFIX}<type>' as "
            f"the single field '__data__' holding this JSON; 'type' names the payload."
        ),
        "oneOf": [refs[model] for model in models],
        "$defs": schema["$defs"],
    }
