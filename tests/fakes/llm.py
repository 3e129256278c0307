"""A provider we own for unit tests of logic that calls an LLM: answers from a script."""

from __future__ import annotations

import json
from collections.abc import Callable

from shared.contract.events import Usage
from shared.domain.llm_port import LLMReply, LLMRequest


def critique_json(scores: dict[str, float], issues: list[str] | None = None) -> str:
    return json.dumps(
        {"aspect_scores": scores, "issues": issues or ["be more specific"], "critique": "scripted"}
    )


class ScriptedProvider:
    """Answers each purpose from its own queue (or a function); records every request."""

    name = "scripted"
    model = "scripted-1"

    def __init__(self, **queues: list[str] | Callable[[LLMRequest], str]):
        self.queues = queues
        self.requests: list[LLMRequest] = []

    async def complete(self, request: LLMRequest) -> LLMReply:
        self.requests.append(request)
        source = self.queues.get(request.purpose)
        if source is None:
            raise AssertionError(f"no scripted reply for purpose {request.purpose}")
        text = source(request) if callable(source) else source.pop(0)
        return LLMReply(
            text=text,
            usage=Usage(api_calls=1, prompt_tokens=10, completion_tokens=5, cost_usd=0.001),
            provider=self.name,
            model=self.model,
        )

    def count(self, purpose: str) -> int:
        return sum(1 for r in self.requests if r.purpose == purpose)
