"""What the built-in runner sends and accepts, without I/O: the wire shapes of an attempt."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.contract.events import AgentInvoked, AgentResult, Envelope, Usage


class AgentAnswer(BaseModel):
    """What an http agent (or a tool) answers: an output or an error, and what it spent."""

    model_config = ConfigDict(extra="ignore")
    output: str | None = Field(default=None, max_length=200_000)
    error: str | None = Field(default=None, max_length=4000)
    usage: Usage = Field(default_factory=Usage)
    self_score: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)


def request_body(event: Envelope[AgentInvoked]) -> bytes:
    """The JSON an http agent receives: the invocation without the corrector's state."""
    invoked = event.payload
    body: dict[str, Any] = invoked.model_dump(mode="json", exclude={"workflow", "loop"})
    body |= {
        "task_id": event.correlation_id,
        "workspace_id": event.workspace_id,
        "context": event.context.model_dump(mode="json"),
    }
    return json.dumps(body).encode()


def result_of(invoked: AgentInvoked, answer: AgentAnswer, provider: str) -> AgentResult:
    """An AgentResult from an answer; an answer with neither output nor error is an error."""
    output = answer.output if answer.output and answer.output.strip() else None
    error = answer.error
    if output is None and error is None:
        error = "the agent answered with no output"
    return AgentResult(
        invocation_id=invoked.invocation_id,
        agent=invoked.agent,
        attempt=invoked.attempt,
        output=None if error is not None else output,
        error=error,
        usage=answer.usage,
        self_score=answer.self_score,
        provider=provider,
    )


def error_result(invoked: AgentInvoked, error: str, usage: Usage | None = None) -> AgentResult:
    return AgentResult(
        invocation_id=invoked.invocation_id,
        agent=invoked.agent,
        attempt=invoked.attempt,
        error=error[:4000],
        usage=usage or Usage(),
    )
