"""The self-correction loop: generate, critique, revise; keep the best attempt.

Used by the corrector service for every stage and by the gateway's
`POST /execute/self-correct`. The LLM arrives as a parameter.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, Field

from shared.catalog import AgentSpec
from shared.critique import (
    Critique,
    CritiqueParseError,
    critique_json_schema,
    overall_score,
    parse_critique,
)
from shared.events import SelfCorrectionMetadata, Usage
from shared.llm import LLMProvider, LLMReply, LLMRequest
from shared.models import AgentContext, SelfCorrectionConfig

_CONTENT_NS = uuid.UUID("0b7e2c44-5f7a-4d36-8b1b-2a0f4c9a7d11")
OUTPUT_LIMIT = 20_000


class BudgetExhausted(RuntimeError):
    """The task's budget does not allow even the first call of a stage."""


class Budget(BaseModel):
    """What is left of the task-wide budget (None: no limit)."""

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

    def allows(self, calls: int, spent: Usage) -> bool:
        if self.api_calls_left is not None and spent.api_calls + calls > self.api_calls_left:
            return False
        return not (self.cost_left_usd is not None and spent.cost_usd >= self.cost_left_usd)


class IterationRecord(BaseModel):
    iteration: int
    content_id: str
    score: float
    critique: Critique


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


class SelfCorrector:
    """Runs the loop for one agent on one goal."""

    def __init__(self, provider: LLMProvider):
        self.provider = provider

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
        budget = Budget.from_context(context, spent_before or Usage())
        usage = Usage()
        aspects = config.critique_aspects
        if not budget.allows(2, usage):
            raise BudgetExhausted(f"budget leaves too few calls to run agent {agent.name}")

        draft, usage = await self._first_draft(
            agent, goal, inputs, context, previous_output, reviewer_comments, usage
        )
        records: list[IterationRecord] = []
        best_output, best_score, best_iteration = draft, -1.0, 1
        stop_reason, budget_exhausted = "max_iterations", False
        attempts = 1
        for iteration in range(1, config.max_iterations + 1):
            critique, usage = await self._critique(agent, goal, draft, context, aspects, usage)
            score = overall_score(critique, aspects, config.aspect_weights)
            record = IterationRecord(
                iteration=iteration,
                content_id=content_id_for(scope, iteration),
                score=score,
                critique=critique,
            )
            records.append(record)
            if on_critique is not None:
                await on_critique(record, draft)
            if score > best_score:
                best_output, best_score, best_iteration = draft, score, iteration
            if score >= threshold:
                stop_reason = "threshold_met"
                break
            if iteration == config.max_iterations:
                break
            if iteration > 1 and score - records[-2].score < config.improvement_threshold:
                stop_reason = "small_improvement"
                break
            if not budget.allows(2, usage):
                stop_reason, budget_exhausted = "budget_exhausted", True
                break
            draft, usage = await self._revise(agent, goal, draft, critique.issues, context, usage)
            attempts += 1

        metadata = SelfCorrectionMetadata(
            iterations=len(records),
            final_quality_score=best_score,
            threshold_met=best_score >= threshold,
            attempts=attempts,
            iteration_scores=[r.score for r in records],
            aspect_scores=records[best_iteration - 1].critique.aspect_scores,
            best_iteration=best_iteration,
            stop_reason=stop_reason,
            usage=usage,
            duration_s=round(time.perf_counter() - started, 4),
        )
        return SelfCorrectionResult(
            output=best_output[:OUTPUT_LIMIT],
            quality=best_score,
            threshold=threshold,
            threshold_met=metadata.threshold_met,
            budget_exhausted=budget_exhausted,
            provider=self.provider.name,
            metadata=metadata,
            iterations=records,
        )

    async def _call(self, request: LLMRequest, usage: Usage) -> tuple[LLMReply, Usage]:
        reply = await self.provider.complete(request)
        return reply, usage.plus(reply.usage)

    async def _first_draft(
        self,
        agent: AgentSpec,
        goal: str,
        inputs: dict[str, Any],
        context: AgentContext,
        previous_output: str | None,
        reviewer_comments: list[str] | None,
        usage: Usage,
    ) -> tuple[str, Usage]:
        if reviewer_comments and previous_output:
            issues = [f"reviewer: {c}" for c in reviewer_comments]
            return await self._revise(agent, goal, previous_output, issues, context, usage)
        user = f"Goal: {goal}\n"
        if inputs:
            user += f"Inputs: {json.dumps(inputs)}\n"
        if previous_output:
            user += f"\nOutput of the previous stage, to build on:\n{previous_output}\n"
        brief = _context_brief(context)
        request = LLMRequest(
            purpose="generate",
            system=f"{agent.prompt}\n{brief}".strip(),
            user=user,
            facts={
                "goal": goal,
                "agent": agent.name,
                "inputs": inputs,
                "previous_output": previous_output,
            },
        )
        reply, usage = await self._call(request, usage)
        return reply.text, usage

    async def _critique(
        self,
        agent: AgentSpec,
        goal: str,
        draft: str,
        context: AgentContext,
        aspects: list[str],
        usage: Usage,
    ) -> tuple[Critique, Usage]:
        brand = json.dumps(context.brand_voice) if context.brand_voice else "none given"
        system = (
            "You are a demanding editor. Score the draft on each aspect from 0 to 1 "
            "(0.9+ only for publishable work) and list concrete, fixable issues, each naming "
            "where in the draft it occurs and what to change. For brand_alignment, judge "
            f"against this brand voice: {brand}. Answer only with JSON: "
            '{"aspect_scores": {aspect: score}, "issues": [..], "critique": ".."}'
        )
        user = f"Goal: {goal}\nAspects: {', '.join(aspects)}\n\nDraft:\n{draft}"
        request = LLMRequest(
            purpose="critique",
            system=system,
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
        reply, usage = await self._call(request, usage)
        try:
            return parse_critique(reply.text, aspects), usage
        except CritiqueParseError as first_error:
            repair = request.model_copy(
                update={
                    "user": f"{user}\n\nYour previous answer was invalid ({first_error}). "
                    "Answer again with valid JSON only.",
                }
            )
            reply, usage = await self._call(repair, usage)
            try:
                return parse_critique(reply.text, aspects), usage
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
        usage: Usage,
    ) -> tuple[str, Usage]:
        issue_list = "\n".join(f"- {i}" for i in issues) or "- (no specific issues)"
        brief = _context_brief(context)
        request = LLMRequest(
            purpose="revise",
            system=f"{agent.prompt}\n{brief}\nRevise the draft so that every issue is fixed; "
            "keep what works; return only the revised draft.".strip(),
            user=f"Goal: {goal}\n\nIssues to fix:\n{issue_list}\n\nPrevious draft:\n{draft}",
            facts={
                "draft": draft,
                "issues": issues,
                "goal": goal,
                "brand_voice": context.brand_voice,
            },
        )
        reply, usage = await self._call(request, usage)
        return reply.text, usage
