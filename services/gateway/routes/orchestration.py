"""The spec's synchronous endpoints: `/orchestrate` (route) and `/execute/self-correct`."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status

from services.gateway.access import allow, get_deps
from services.gateway.schemas import (
    ContextSummary,
    OrchestrateRequest,
    OrchestrateResponse,
    SelfCorrectRequest,
)
from shared.app.facade import execute_with_self_correction, quality_threshold, route_with_context
from shared.app.runtime import Deps
from shared.contract.events import Envelope, new_envelope
from shared.contract.models import MAX_GOAL_CHARS, AgentContext
from shared.domain.critique import CritiqueParseError
from shared.domain.llm_port import LLMError
from shared.domain.self_correction import BudgetExhausted, IterationRecord
from shared.messaging.bus import publish

router = APIRouter(tags=["orchestration"])


@router.post("/orchestrate", response_model=OrchestrateResponse)
async def orchestrate(
    body: OrchestrateRequest, request: Request, d: Deps = Depends(get_deps)
) -> OrchestrateResponse:
    allow(request, body.workspace_id)
    sequence, context, decision = await route_with_context(
        d, body.goal, body.workspace_id, body.user_id
    )
    return OrchestrateResponse(
        agent_sequence=sequence,
        context_summary=ContextSummary(
            past_successes=len(context.past_successes),
            task_history=len(context.task_history),
            performance_data=context.performance_data,
        ),
        routing={
            "source": decision.source,
            "confidence": decision.confidence,
            "reason": decision.reason,
            "provider": decision.provider,
        },
    )


def _checked_context(body: SelfCorrectRequest, d: Deps) -> AgentContext:
    """422 for an unknown agent or a payload without a goal; else the attempt's context."""
    if body.agent_name not in d.catalog.names:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"agent_name: unknown agent {body.agent_name!r}",
        )
    goal = body.payload.get("goal") or body.payload.get("topic")
    if not goal:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail="payload.goal: field required"
        )
    if not isinstance(goal, str) or len(goal) > MAX_GOAL_CHARS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"payload.goal: a string of at most {MAX_GOAL_CHARS} characters",
        )
    return AgentContext(
        workspace_id=body.workspace_id,
        correlation_id=str(uuid.uuid4()),
        user_id=body.user_id,
        brand_voice=body.brand_voice,
        quality_thresholds=body.quality_thresholds,
        budget_constraints=body.budget_constraints,
    )


@router.post("/execute/self-correct")
async def self_correct(
    body: SelfCorrectRequest, request: Request, d: Deps = Depends(get_deps)
) -> dict[str, Any]:
    allow(request, body.workspace_id)
    context = _checked_context(body, d)
    correlation_id = context.correlation_id
    threshold = quality_threshold(d, body.config, context, d.catalog.get(body.agent_name).task_type)
    critiques: list[Envelope[Any]] = []

    async def record(iteration: IterationRecord, draft: str) -> None:
        done = iteration.critique_done(
            task_id=correlation_id,
            stage_index=0,
            agent=body.agent_name,
            threshold=threshold,
            provider=d.provider.name,
        )
        critiques.append(
            new_envelope(
                done,
                workspace_id=body.workspace_id,
                context=context,
                user_id=body.user_id,
                correlation_id=correlation_id,
            )
        )

    try:
        result = await execute_with_self_correction(
            d,
            body.agent_name,
            body.payload,
            context,
            body.config,
            scope=correlation_id,
            on_critique=record,
        )
    except BudgetExhausted as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"budget_exhausted: {exc}") from exc
    except (LLMError, CritiqueParseError) as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail=f"llm_error: {exc}") from exc
    finally:
        # The critiques made before a failure are still worth keeping.
        await publish(d.redis, d.layout, critiques)
    return {
        "correlation_id": correlation_id,
        "agent_name": body.agent_name,
        "threshold": threshold,
        **result.as_seed_result(),
    }
