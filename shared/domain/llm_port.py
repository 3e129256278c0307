"""The LLM as the domain sees it: one request, one reply, behind a Protocol.

Domain logic (routing's planner, self-correction) calls an `LLMProvider`; the adapters in
`shared.llm` implement it (the official OpenAI client, the labelled offline provider).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from shared.contract.events import Usage

Purpose = Literal["generate", "critique", "revise", "plan"]
OFFLINE = "offline"


class ToolSpec(BaseModel):
    """A function the model may call (OpenAI function-calling shape)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        }
    )


class ToolCall(BaseModel):
    """One call the model asked for."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class LLMRequest(BaseModel):
    """One chat call. `facts` carries the structured inputs a deterministic provider needs.

    With `tools`, the model may answer with tool calls instead of text; `history` holds
    the conversation after the user message (assistant tool calls and tool results)."""

    purpose: Purpose
    system: str
    user: str
    json_schema: dict[str, Any] | None = Field(default=None, description="Ask for this JSON.")
    schema_name: str = "answer"
    facts: dict[str, Any] = Field(default_factory=dict)
    max_tokens: int = 1200
    tools: list[ToolSpec] = Field(default_factory=list)
    history: list[dict[str, Any]] = Field(default_factory=list)


class LLMReply(BaseModel):
    text: str
    usage: Usage
    provider: str
    model: str
    tool_calls: list[ToolCall] = Field(default_factory=list)


class LLMError(RuntimeError):
    """The LLM could not answer after the client's retries."""


class LLMProvider(Protocol):
    name: str
    model: str

    async def complete(self, request: LLMRequest) -> LLMReply: ...
