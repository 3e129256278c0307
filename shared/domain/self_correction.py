"""The self-correction loop: generate, critique, revise; keep the best attempt.

Used by the corrector service for every stage and by the gateway's
`POST /execute/self-correct`. The LLM arrives as a parameter.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from shared.contract.events import CritiqueDone, SelfCorrectionMetadata, Usage
from shared.contract.models import AgentContext, SelfCorrectionConfig
from shared.domain.catalog import AgentSpec
from shared.domain.critique import (
    Critique,
    CritiqueParseError,
    critique_json_schema,
    overall_score,
    parse_critique,
)
from shared.domain.llm_port import LLMError, LLMProvider, LLMReply, LLMRequest, ToolCall, ToolSpec

_CONTENT_NS = uuid.UUID("0b7e2c44-5f7a-4d36-8b1b-2a0f4c9a7d11")
OUTPUT_LIMIT = 20_000


class BudgetExhausted(RuntimeError):
    """The task's budget does not allow the next call this stage needs."""


class Budget(BaseModel):
    """What is left of the task-wide budget when a stage starts (None: no limit).

    A call's cost is only known after it returns, so the cost limit is enforced on a
    projection: the calls still needed times the most expensive call seen so far.
    """

    api_calls_left: int | None = None
    cost_left_usd: float | None = None

    @classmethod
    def from_context(cls, context: AgentContext, spent: Usage) -> Budget:
        limits = context.budget_constraints
        calls = limits.get("max_api_calls")
        cost = limits.get("max_cost_usd")
        return cls(
            api_calls_left=None if calls is None else int(calls) - spent.api_calls,
            cost_left_usd=None if cost is None else cost - spent.cost_usd,
        )

    def allows(self, calls: int, spent: Usage, call_cost_usd: float = 0.0) -> bool:
        """Whether `calls` more calls fit, given what this stage has `spent` so far."""
        if self.api_calls_left is not None and spent.api_calls + calls > self.api_calls_left:
            return False
        if self.cost_left_usd is None:
            return True
        if spent.cost_usd >= self.cost_left_usd:
            return False
        return spent.cost_usd + calls * call_cost_usd <= self.cost_left_usd


class IterationRecord(BaseModel):
    iteration: int
    content_id: str
    score: float
    critique: Critique

    def critique_done(
        self, *, task_id: str, stage_index: int, agent: str, threshold: float, provider: str
    ) -> CritiqueDone:
        """The CritiqueDone event of this iteration (corrector stages and the sync endpoint)."""
        return CritiqueDone(
            task_id=task_id,
            stage_index=stage_index,
            agent=agent,
            iteration=self.iteration,
            content_id=self.content_id,
            score=self.score,
            aspect_scores=self.critique.aspect_scores,
            issues=self.critique.issues,
            critique=self.critique.critique,
            threshold=threshold,
            provider=provider,
        )


class SelfCorrectionResult(BaseModel):
    output: str
    quality: float
    threshold: float
    threshold_met: bool
    budget_exhausted: bool
    provider: str
    metadata: SelfCorrectionMetadata
    iterations: list[IterationRecord] = Field(default_factory=list)

    def as_seed_result(self) -> dict[str, Any]:
        """The seed's result shape: output plus `self_correction_metadata`."""
        return {
            "output": self.output,
            "quality_score": self.quality,
            "provider": self.provider,
            "budget_exhausted": self.budget_exhausted,
            "self_correction_metadata": self.metadata.model_dump(mode="json"),
        }


OnCritique = Callable[[IterationRecord, str], Awaitable[None]]
TOOL_RESULT_LIMIT = 8000


@dataclass(frozen=True)
class Tooling:
    """An llm agent's tools for one attempt: what the model sees, and how a call runs
    (returning the tool's text and what it spent). Rounds are bounded."""

    specs: list[ToolSpec]
    run: Callable[[ToolCall], Awaitable[tuple[str, Usage]]]
    max_rounds: int = 3


def _assistant_calls(reply: LLMReply) -> dict[str, Any]:
    """The assistant message that asked for tools, as the conversation records it."""
    return {
        "role": "assistant",
        "content": reply.text or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in reply.tool_calls
        ],
    }


def content_id_for(scope: str, iteration: int) -> str:
    """Deterministic, so a retried stage stores its critiques under the same ids."""
    return str(uuid.uuid5(_CONTENT_NS, f"{scope}/{iteration}"))


def _context_brief(context: AgentContext) -> str:
    parts = []
    if context.brand_voice:
        parts.append(f"Brand voice: {json.dumps(context.brand_voice)}")
    if context.target_icps:
        parts.append(f"Target customers: {', '.join(context.target_icps)}")
    if context.user_preferences:
        parts.append(f"Preferences: {json.dumps(context.user_preferences)}")
    return "\n".join(parts)


ASPECT_GUIDE: dict[str, str] = {
    "clarity": "structure, headings, sentence length; a reader gets the point on one pass",
    "accuracy": "claims are correct, specific and sourced; no invented numbers",
    "completeness": "every part of the goal and inputs is covered; nothing promised is missing",
    "persuasiveness": "benefits for the target reader, evidence, a concrete call to action",
    "brand_alignment": "tone, style and vocabulary match the brand voice given below",
}


def critique_system_prompt(agent: AgentSpec, aspects: list[str], brand_voice: str) -> str:
    """The critic's instructions: calibrated scores and issues a reviser can act on."""
    guide = "\n".join(
        f"- {a}: {ASPECT_GUIDE.get(a, 'judge this aspect as its name says')}" for a in aspects
    )
    return (
        "You are a demanding senior editor. Review a draft written by the "
        f"'{agent.name}' agent ({agent.description}).\n"
        f"Score each aspect from 0.0 to 1.0:\n{guide}\n"
        f"Brand voice for brand_alignment: {brand_voice}.\n"
        "Scale: 0.9 or more only when publishable as is; 0.7-0.9 good but needs edits; "
        "below 0.5 major problems. Do not inflate scores.\n"
        "issues: every concrete, fixable problem, one per item, written as "
        '"[aspect] where (quote a few words or name the section): what is wrong -> what to '
        'change". No generic advice. Every aspect below 0.9 needs at least one issue.\n'
        "critique: two sentences on the draft as a whole.\n"
        'Answer only with JSON: {"aspect_scores": {"<aspect>": <score>, ...}, '
        '"issues": ["..."], "critique": "..."}'
    )


def revise_system_prompt(agent: AgentSpec, brief: str) -> str:
    """The reviser's instructions: fix every issue, keep the rest, return only the draft."""
    return (
        f"{agent.prompt}\n{brief}\n"
        "You are revising your previous draft after an editor's review. Fix every listed "
        "issue, in order, at the place it names; keep what works; do not add new claims "
        "without support. Return only the complete revised draft: no preamble, no list of "
        "changes."
    ).strip()


@dataclass
class _Progress:
    """Where one run's loop stands: the current draft, every critique, the best so far."""

    draft: str
    best_output: str
    records: list[IterationRecord] = field(default_factory=list)
    best_score: float = -1.0
    best_iteration: int = 1
    stop_reason: str = "max_iterations"
    budget_exhausted: bool = False
    attempts: int = 1


class SelfCorrector:
    """Runs the loop for one agent on one goal (one run at a time per instance).

    `spent` is this run's usage so far, readable after a failure too, so the task's
    accounting includes the calls of a stage that failed.
    """

    def __init__(self, provider: LLMProvider):
        self.provider = provider
        self.spent = Usage()
        self._call_cost_usd = 0.0
        self._budget = Budget()
        self._tooling: Tooling | None = None

    async def run(
        self,
        *,
        agent: AgentSpec,
        goal: str,
        inputs: dict[str, Any],
        context: AgentContext,
        config: SelfCorrectionConfig,
        threshold: float,
        scope: str,
        previous_output: str | None = None,
        reviewer_comments: list[str] | None = None,
        spent_before: Usage | None = None,
        on_critique: OnCritique | None = None,
    ) -> SelfCorrectionResult:
        started = time.perf_counter()
        before = spent_before or Usage()
        self._budget = Budget.from_context(context, before)
        self.spent = Usage()
        self._call_cost_usd = before.cost_usd / before.api_calls if before.api_calls else 0.0
        if not self._allows(2):
            raise BudgetExhausted(
                f"budget leaves too few calls to run agent {agent.name} "
                f"(spent before this stage: {before.api_calls} calls, ${before.cost_usd:.6f})"
            )

        draft = await self._first_draft(
            agent, goal, inputs, context, previous_output, reviewer_comments
        )
        progress = _Progress(draft=draft, best_output=draft)
        await self._iterate(progress, agent, goal, context, config, threshold, scope, on_critique)
        return self._result(progress, threshold, started)

    async def _iterate(
        self,
        p: _Progress,
        agent: AgentSpec,
        goal: str,
        context: AgentContext,
        config: SelfCorrectionConfig,
        threshold: float,
        scope: str,
        on_critique: OnCritique | None,
    ) -> None:
        """Critique, keep the best draft, revise, until a stop reason (recorded in `p`)."""
        aspects = config.critique_aspects
        for iteration in range(1, config.max_iterations + 1):
            try:
                critique = await self._critique(agent, goal, p.draft, context, aspects)
            except BudgetExhausted:
                if not p.records:
                    raise
                p.stop_reason, p.budget_exhausted = "budget_exhausted", True
                return
            score = overall_score(critique, aspects, config.aspect_weights)
            record = IterationRecord(
                iteration=iteration,
                content_id=content_id_for(scope, iteration),
                score=score,
                critique=critique,
            )
            p.records.append(record)
            if on_critique is not None:
                await on_critique(record, p.draft)
            if score > p.best_score:
                p.best_output, p.best_score, p.best_iteration = p.draft, score, iteration
            reason = self._stop_reason(p, score, iteration, config, threshold)
            if reason is not None:
                p.stop_reason, p.budget_exhausted = reason, reason == "budget_exhausted"
                return
            p.draft = await self._revise(agent, goal, p.draft, critique.issues, context)
            p.attempts += 1

    def _stop_reason(
        self,
        p: _Progress,
        score: float,
        iteration: int,
        config: SelfCorrectionConfig,
        threshold: float,
    ) -> str | None:
        if score >= threshold:
            return "threshold_met"
        if iteration == config.max_iterations:
            return "max_iterations"
        if iteration > 1 and score - p.records[-2].score < config.improvement_threshold:
            return "small_improvement"
        if not self._allows(2):
            return "budget_exhausted"
        return None

    def _result(self, p: _Progress, threshold: float, started: float) -> SelfCorrectionResult:
        metadata = SelfCorrectionMetadata(
            iterations=len(p.records),
            final_quality_score=p.best_score,
            threshold_met=p.best_score >= threshold,
            attempts=p.attempts,
            iteration_scores=[r.score for r in p.records],
            aspect_scores=p.records[p.best_iteration - 1].critique.aspect_scores,
            best_iteration=p.best_iteration,
            stop_reason=p.stop_reason,
            usage=self.spent,
            duration_s=round(time.perf_counter() - started, 4),
        )
        return SelfCorrectionResult(
            output=p.best_output[:OUTPUT_LIMIT],
            quality=p.best_score,
            threshold=threshold,
            threshold_met=metadata.threshold_met,
            budget_exhausted=p.budget_exhausted,
            provider=self.provider.name,
            metadata=metadata,
            iterations=p.records,
        )

    def _allows(self, calls: int) -> bool:
        return self._budget.allows(calls, self.spent, self._call_cost_usd)

    # --- the event-driven path: one step at a time, the loop state kept by the caller ---

    def resume(
        self, context: AgentContext, before: Usage, stage_spent: Usage, call_cost_usd: float | None
    ) -> None:
        """Continue a stage's accounting where its loop state left it (None: a new stage)."""
        self._budget = Budget.from_context(context, before)
        self.spent = stage_spent
        if call_cost_usd is None:
            call_cost_usd = before.cost_usd / before.api_calls if before.api_calls else 0.0
        self._call_cost_usd = call_cost_usd

    @property
    def call_cost_usd(self) -> float:
        """The dearest call seen so far: the cost projection's unit."""
        return self._call_cost_usd

    def allows(self, calls: int) -> bool:
        """Whether `calls` more calls fit in the task's budget."""
        return self._allows(calls)

    def count(self, usage: Usage) -> None:
        """Add usage spent elsewhere (an agent's attempt) to this stage's accounting."""
        self.spent = self.spent.plus(usage)
        if usage.api_calls:
            self._call_cost_usd = max(self._call_cost_usd, usage.cost_usd / usage.api_calls)

    async def critique(
        self, agent: AgentSpec, goal: str, draft: str, context: AgentContext, aspects: list[str]
    ) -> Critique:
        """One critique of a draft (with one repair of an invalid answer)."""
        return await self._critique(agent, goal, draft, context, aspects)

    async def attempt(
        self,
        agent: AgentSpec,
        *,
        goal: str,
        inputs: dict[str, Any],
        context: AgentContext,
        previous_output: str | None,
        draft: str | None,
        issues: list[str],
        tooling: Tooling | None = None,
    ) -> str:
        """An llm agent's answer to one invocation: a first draft, or a revision of `draft`."""
        self._tooling = tooling
        if draft is not None:
            return await self._revise(agent, goal, draft, issues, context)
        return await self._first_draft(agent, goal, inputs, context, previous_output, None)

    async def _call(self, request: LLMRequest) -> LLMReply:
        if self._tooling is not None and request.purpose in ("generate", "revise"):
            return await self._call_with_tools(request, self._tooling)
        return await self._call_once(request)

    async def _call_with_tools(self, request: LLMRequest, tooling: Tooling) -> LLMReply:
        """The tool-calling loop: the model calls tools until it answers in text, for at
        most `max_rounds` rounds; every model call and tool call counts in the budget."""
        history: list[dict[str, Any]] = []
        reply = await self._call_once(request.model_copy(update={"tools": tooling.specs}))
        for _ in range(tooling.max_rounds):
            if not reply.tool_calls:
                return reply
            if not self._allows(len(reply.tool_calls) + 1):
                raise BudgetExhausted("the budget leaves no room for the tool calls asked for")
            history.append(_assistant_calls(reply))
            for call in reply.tool_calls:
                text, usage = await tooling.run(call)
                self.spent = self.spent.plus(usage)
                history.append(
                    {"role": "tool", "tool_call_id": call.id, "content": text[:TOOL_RESULT_LIMIT]}
                )
            update = {"tools": tooling.specs, "history": list(history)}
            reply = await self._call_once(request.model_copy(update=update))
        if reply.tool_calls and not reply.text.strip():
            raise LLMError(f"the model still asked for tools after {tooling.max_rounds} rounds")
        return reply

    async def _call_once(self, request: LLMRequest) -> LLMReply:
        reply = await self.provider.complete(request)
        self.spent = self.spent.plus(reply.usage)
        self._call_cost_usd = max(self._call_cost_usd, reply.usage.cost_usd)
        return reply

    async def _first_draft(
        self,
        agent: AgentSpec,
        goal: str,
        inputs: dict[str, Any],
        context: AgentContext,
        previous_output: str | None,
        reviewer_comments: list[str] | None,
    ) -> str:
        if reviewer_comments and previous_output:
            issues = [f"reviewer: {c}" for c in reviewer_comments]
            return await self._revise(agent, goal, previous_output, issues, context)
        user = f"Goal: {goal}\n"
        if inputs:
            user += f"Inputs: {json.dumps(inputs)}\n"
        if previous_output:
            user += f"\nOutput of the previous stage, to build on:\n{previous_output}\n"
        brief = _context_brief(context)
        request = LLMRequest(
            purpose="generate",
            system=f"{agent.prompt}\n{brief}\nReturn only the deliverable itself.".strip(),
            user=user,
            facts={
                "goal": goal,
                "agent": agent.name,
                "inputs": inputs,
                "previous_output": previous_output,
            },
        )
        return (await self._call(request)).text

    async def _critique(
        self,
        agent: AgentSpec,
        goal: str,
        draft: str,
        context: AgentContext,
        aspects: list[str],
    ) -> Critique:
        brand = json.dumps(context.brand_voice) if context.brand_voice else "none given"
        user = f"Goal: {goal}\nAspects: {', '.join(aspects)}\n\nDraft:\n{draft}"
        request = LLMRequest(
            purpose="critique",
            system=critique_system_prompt(agent, aspects, brand),
            user=user,
            json_schema=critique_json_schema(aspects),
            schema_name="critique",
            facts={
                "draft": draft,
                "goal": goal,
                "aspects": aspects,
                "brand_voice": context.brand_voice,
            },
        )
        reply = await self._call(request)
        try:
            return parse_critique(reply.text, aspects)
        except CritiqueParseError as first_error:
            if not self._allows(1):
                raise BudgetExhausted(
                    f"critique was invalid ({first_error}) and the budget leaves no call to "
                    "repair it"
                ) from first_error
            repair = request.model_copy(
                update={
                    "user": f"{user}\n\nYour previous answer was invalid ({first_error}). "
                    "Answer again with valid JSON only, scoring every aspect listed.",
                }
            )
            reply = await self._call(repair)
            try:
                return parse_critique(reply.text, aspects)
            except CritiqueParseError as second_error:
                raise CritiqueParseError(
                    f"critic gave no valid critique after one repair: {second_error}"
                ) from second_error

    async def _revise(
        self,
        agent: AgentSpec,
        goal: str,
        draft: str,
        issues: list[str],
        context: AgentContext,
    ) -> str:
        issue_list = (
            "\n".join(f"{n}. {i}" for n, i in enumerate(issues, 1))
            or "1. (no specific issues: tighten and polish)"
        )
        request = LLMRequest(
            purpose="revise",
            system=revise_system_prompt(agent, _context_brief(context)),
            user=f"Goal: {goal}\n\nIssues to fix:\n{issue_list}\n\nPrevious draft:\n{draft}",
            facts={
                "draft": draft,
                "issues": issues,
                "goal": goal,
                "brand_voice": context.brand_voice,
            },
        )
        return (await self._call(request)).text
