"""A purpose-aware responder for ScriptedOpenAIServer: plays generate, critique, revise, plan.

Why: the self-correction loop makes several kinds of chat call; a test scripts the
*quality* of each draft version and lets the responder answer every call from the
prompt, so the tests do not depend on the order or number of calls. It tells the
purposes apart by their system prompts (shared/self_correction.py, shared/routing.py).

Drafts are "DRAFT v<n> ..."; generate writes v1, a revision of v<n> writes v<n+1>; the
critic scores v<n> with `scores[n]` (the last entry for any later version).
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.openai_server import ErrorReply, Reply, TextReply, error, text

PROMPT_TOKENS = 100
COMPLETION_TOKENS = 50
_VERSION = re.compile(r"DRAFT v(\d+)")


def purpose_of(body: dict[str, Any]) -> str:
    """Which call this is, from its system prompt."""
    system = str(body["messages"][0]["content"])
    if "demanding senior editor" in system:
        return "critique"
    if "revising your previous draft" in system:
        return "revise"
    if "You plan which agents run" in system:
        return "plan"
    return "generate"


def _version(after: str, user: str) -> int:
    tail = user.split(after, 1)[-1]
    match = _VERSION.search(tail)
    return int(match.group(1)) if match else 1


@dataclass
class PurposeScript:
    """Scores per draft version, optional per-aspect overrides, and switches for failures."""

    scores: list[float]
    aspects: list[str] = field(default_factory=lambda: ["clarity", "persuasiveness"])
    aspect_overrides: dict[str, float] = field(default_factory=dict)
    plan: list[str] = field(default_factory=lambda: ["content"])
    reject_structured_outputs: bool = False
    calls: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def score_of(self, version: int) -> float:
        return self.scores[min(version, len(self.scores)) - 1]

    def critique_body(self, version: int, aspects: list[str]) -> dict[str, Any]:
        value = self.score_of(version)
        return {
            "aspect_scores": {a: self.aspect_overrides.get(a, value) for a in aspects},
            "issues": [
                f'[clarity] opening line "DRAFT v{version}": too vague -> name the benefit',
                "[persuasiveness] ending: no call to action -> add one",
            ],
            "critique": f"v{version} is readable but generic.",
        }

    def __call__(self, body: dict[str, Any]) -> Reply:
        purpose = purpose_of(body)
        with self._lock:
            self.calls[purpose] += 1
        user = str(body["messages"][1]["content"])
        if purpose == "critique" and self.reject_structured_outputs and "response_format" in body:
            return self._reject_structured()
        if purpose == "critique":
            aspects = _aspects_in(user) or self.aspects
            content = json.dumps(self.critique_body(_version("Draft:\n", user), aspects))
        elif purpose == "revise":
            content = f"DRAFT v{_version('Previous draft:', user) + 1}: revised, with a CTA."
        elif purpose == "plan":
            content = json.dumps({"agent_sequence": self.plan, "reason": "scripted plan"})
        else:
            content = "DRAFT v1: a first take on the goal."
        return self.reply(content)

    @staticmethod
    def reply(content: str) -> TextReply:
        return text(content, prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS)

    @staticmethod
    def _reject_structured() -> ErrorReply:
        return error(
            400,
            {
                "error": {
                    "message": "response_format json_schema is not supported by this server",
                    "type": "invalid_request_error",
                    "param": "response_format",
                    "code": None,
                }
            },
        )


def _aspects_in(user: str) -> list[str]:
    for line in user.splitlines():
        if line.startswith("Aspects: "):
            return [a.strip() for a in line.removeprefix("Aspects: ").split(",") if a.strip()]
    return []
