"""A deterministic provider for running without any LLM: rule-based, and labelled offline.

It writes a templated draft, critiques it with fixed checks (structure,
sources, coverage of the goal, call to action, brand tone), and revises by
adding what the critique asked for. Good enough to exercise every path of the
system; not a language model, and every result says `provider: "offline"`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.contract.events import Usage
from shared.domain.llm_port import OFFLINE, LLMReply, LLMRequest, ToolCall

_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "about",
        "for",
        "of",
        "to",
        "and",
        "or",
        "in",
        "on",
        "with",
        "our",
        "your",
        "my",
        "we",
        "create",
        "write",
        "make",
        "draft",
        "generate",
        "produce",
        "please",
        "some",
        "new",
        "into",
        "from",
        "by",
        "at",
        "is",
        "are",
        "be",
        "this",
        "that",
        "it",
    ]
)
_WORD = re.compile(r"[a-z0-9]+")

_FIX_TEXT = {
    "clarity": "Add a title and section headings so the structure is scannable.",
    "accuracy": "Back the claims with a Sources section.",
    "completeness": "Cover every part of the goal and end with a conclusion.",
    "persuasiveness": "Close with a concrete call to action.",
    "brand_alignment": "Match the brand voice ({tone}) explicitly.",
}


def keywords(text: str) -> list[str]:
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if word not in _STOPWORDS and len(word) > 1:
            seen.setdefault(word, None)
    return list(seen)


def _tone_words(brand_voice: dict[str, Any]) -> list[str]:
    return [str(v).lower() for v in brand_voice.values() if isinstance(v, str) and v]


def _estimate_usage(*texts: str) -> Usage:
    prompt = sum(len(t.split()) for t in texts[:-1])
    completion = len(texts[-1].split())
    return Usage(
        api_calls=1, prompt_tokens=int(prompt * 1.3), completion_tokens=int(completion * 1.3)
    )


def score_aspects(
    draft: str, goal: str, aspects: list[str], brand_voice: dict[str, Any]
) -> dict[str, float]:
    """The offline critic's fixed checks, one score per aspect in [0, 1]."""
    lower = draft.lower()
    goal_words = keywords(goal)
    coverage = sum(w in lower for w in goal_words) / len(goal_words) if goal_words else 1.0
    tones = _tone_words(brand_voice)
    tone_hits = sum(t in lower for t in tones) / len(tones) if tones else 1.0
    has_title = draft.lstrip().startswith("# ")
    has_sections = "\n## " in draft
    checks = {
        "clarity": 0.5 + 0.2 * has_title + 0.25 * has_sections,
        "accuracy": 0.6 + 0.3 * ("## sources" in lower),
        "completeness": 0.45 * coverage + 0.45 * ("## conclusion" in lower) + 0.05,
        "persuasiveness": 0.55 + 0.35 * ("call to action" in lower),
        "brand_alignment": 0.5 + 0.4 * tone_hits if tones else 0.85,
    }
    generic = 0.6 + 0.15 * has_sections + 0.15 * ("## conclusion" in lower)
    return {a: round(min(checks.get(a, generic), 1.0), 4) for a in aspects}


def _issues(scores: dict[str, float], brand_voice: dict[str, Any]) -> list[str]:
    tone = ", ".join(_tone_words(brand_voice)) or "neutral"
    issues = []
    for aspect, score in scores.items():
        if score < 0.8:
            template = _FIX_TEXT.get(aspect, f"Improve {aspect} with more specific detail.")
            issues.append(template.format(tone=tone))
    return issues


def _draft(facts: dict[str, Any]) -> str:
    goal = str(facts.get("goal", "the task"))
    agent = str(facts.get("agent", "agent"))
    words = keywords(goal)
    topic = str(facts.get("inputs", {}).get("topic", "")) if facts.get("inputs") else ""
    bullets = "\n".join(f"- {w.capitalize()}: what it means for the reader." for w in words[:6])
    previous = facts.get("previous_output")
    basis = f"\nBuilds on the previous stage ({len(str(previous))} chars).\n" if previous else ""
    about = f" Topic: {topic}." if topic else ""
    return (
        f"# {goal.rstrip('.').capitalize()}\n\n"
        f"Draft by the {agent} agent.{about}{basis}\n"
        f"## Key points\n{bullets}\n"
    )


def _revise(facts: dict[str, Any]) -> str:
    draft = str(facts.get("draft", ""))
    issues = [str(i).lower() for i in facts.get("issues", [])]
    goal = str(facts.get("goal", ""))
    brand_voice = facts.get("brand_voice") or {}
    additions: list[str] = []
    if any("title" in i or "heading" in i for i in issues) and not draft.startswith("# "):
        draft = f"# {goal.capitalize()}\n\n{draft}"
    if any("goal" in i or "conclusion" in i for i in issues):
        covered = " ".join(keywords(goal))
        additions.append(f"## Conclusion\nThis covers {covered}.")
    if any("sources" in i for i in issues):
        additions.append("## Sources\n- Internal performance data\n- Industry reports")
    if any("call to action" in i for i in issues):
        additions.append("## Call to action\nBook a demo to see it work for your team.")
    if any("brand voice" in i for i in issues):
        additions.append(f"Written in a {' and '.join(_tone_words(brand_voice))} voice.")
    for issue in issues:
        if issue.startswith("reviewer:"):
            additions.append(
                f"Addressed reviewer comment: {issue.removeprefix('reviewer:').strip()}"
            )
    return draft.rstrip() + "\n\n" + "\n\n".join(additions) + "\n" if additions else draft


def _plan(facts: dict[str, Any]) -> str:
    goal_words = set(keywords(str(facts.get("goal", ""))))
    rules: list[tuple[set[str], list[str]]] = [
        ({"blog", "article", "post", "posts", "blogpost"}, ["content", "blog_writer"]),
        (
            {"tweet", "tweets", "social", "linkedin", "instagram", "thread"},
            ["content", "social_writer"],
        ),
        ({"email", "newsletter", "emails"}, ["content", "email_writer"]),
        (
            {"strategy", "plan", "positioning", "campaign", "roadmap", "launch"},
            ["research", "strategy"],
        ),
        (
            {
                "research",
                "analyze",
                "analyse",
                "competitor",
                "competitors",
                "market",
                "audit",
                "trends",
            },
            ["research"],
        ),
    ]
    for words, sequence in rules:
        if goal_words & words:
            return json.dumps({"agent_sequence": sequence, "reason": "offline keyword plan"})
    return json.dumps({"agent_sequence": ["research", "content"], "reason": "offline default plan"})


class OfflineProvider:
    """Deterministic stand-in for an LLM; its name is what every output is labelled with."""

    name = OFFLINE
    model = "offline-rules-v1"

    async def complete(self, request: LLMRequest) -> LLMReply:
        facts = request.facts
        tool_results = [m for m in request.history if m.get("role") == "tool"]
        if request.tools and not tool_results:
            return self._call_first_tool(request)
        if request.purpose == "generate":
            text = _draft(facts)
        elif request.purpose == "revise":
            text = _revise(facts)
        elif request.purpose == "critique":
            aspects = list(facts.get("aspects", []))
            brand_voice = facts.get("brand_voice") or {}
            scores = score_aspects(
                str(facts.get("draft", "")), str(facts.get("goal", "")), aspects, brand_voice
            )
            issues = _issues(scores, brand_voice)
            text = json.dumps(
                {
                    "aspect_scores": scores,
                    "issues": issues,
                    "critique": f"offline rule-based critique: {len(issues)} issue(s)",
                }
            )
        else:
            text = _plan(facts)
        if tool_results:
            notes = "\n".join(f"- {str(m.get('content', ''))[:500]}" for m in tool_results)
            text = f"{text.rstrip()}\n\n## Tool findings\n{notes}\n"
        return LLMReply(
            text=text,
            usage=_estimate_usage(request.system, request.user, text),
            provider=self.name,
            model=self.model,
        )

    def _call_first_tool(self, request: LLMRequest) -> LLMReply:
        """Deterministic tool use: the first tool, asked about the goal, once."""
        tool = request.tools[0]
        goal = str(request.facts.get("goal", ""))
        call = ToolCall(id="offline-call-1", name=tool.name, arguments={"query": goal})
        return LLMReply(
            text="",
            usage=_estimate_usage(request.system, request.user),
            provider=self.name,
            model=self.model,
            tool_calls=[call],
        )
