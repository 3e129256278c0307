"""Gateway: the HTTP API. It publishes TaskRequested and decisions; it never writes memory."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status

from services.gateway import logic, ui, workspace_api
from services.gateway.auth import KeyRing, authorize, decider
from services.gateway.learning_routes import learning_router
from services.gateway.metrics import add_metrics_route, add_probe_routes
from services.gateway.schemas import (
    ContextSummary,
    DecisionRequest,
    OrchestrateRequest,
    OrchestrateResponse,
    SelfCorrectRequest,
    TaskAccepted,
    TaskStatus,
    TaskSubmission,
)
from shared.app.facade import (
    execute_with_self_correction,
    quality_threshold,
    route_with_context,
)
from shared.app.runtime import Deps, build_deps
from shared.contract import keys
from shared.contract.events import Envelope, new_envelope
from shared.contract.models import AgentContext, WorkflowCheckpoints
from shared.domain.critique import CritiqueParseError
from shared.domain.llm_port import LLMError
from shared.domain.self_correction import BudgetExhausted, IterationRecord
from shared.messaging.bus import publish
from shared.settings import Settings
from shared.stores import approvals

WORKSPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
WorkspaceQuery = Query(pattern=WORKSPACE_PATTERN)
WorkspacePath = Path(pattern=WORKSPACE_PATTERN)


def create_app(settings: Settings, deps: Deps | None = None) -> FastAPI:
    """The FastAPI app; `deps` may be given (single-process run, tests)."""
    ring = KeyRing.parse(settings.api_keys.get_secret_value() if settings.api_keys else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = deps is None
        app.state.deps = deps or await build_deps(settings)
        try:
            yield
        finally:
            if owned:
                await app.state.deps.close()

    app = FastAPI(
        title="RaptorFlow gateway",
        version="1.0",
        description="Memory-aware orchestration of LLM agents over Redis Streams.",
        lifespan=lifespan,
    )

    def get_deps(request: Request) -> Deps:
        return request.app.state.deps  # type: ignore[no-any-return]

    @app.get("/healthz")
    async def healthz(d: Deps = Depends(get_deps)) -> dict[str, Any]:
        await d.redis.ping()
        return {"status": "ok", "provider": d.provider.name, "index": d.index.kind}

    @app.post("/orchestrate", response_model=OrchestrateResponse)
    async def orchestrate(
        body: OrchestrateRequest, request: Request, d: Deps = Depends(get_deps)
    ) -> OrchestrateResponse:
        authorize(request, ring, body.workspace_id)
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

    @app.post("/execute/self-correct")
    async def self_correct(
        body: SelfCorrectRequest, request: Request, d: Deps = Depends(get_deps)
    ) -> dict[str, Any]:
        authorize(request, ring, body.workspace_id)
        if body.agent_name not in d.catalog.names:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"agent_name: unknown agent {body.agent_name!r}",
            )
        if not (body.payload.get("goal") or body.payload.get("topic")):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, detail="payload.goal: field required"
            )
        correlation_id = str(uuid.uuid4())
        context = AgentContext(
            workspace_id=body.workspace_id,
            correlation_id=correlation_id,
            user_id=body.user_id,
            brand_voice=body.brand_voice,
            quality_thresholds=body.quality_thresholds,
            budget_constraints=body.budget_constraints,
        )
        critiques: list[Envelope[Any]] = []
        agent = d.catalog.get(body.agent_name)
        threshold = quality_threshold(d, body.config, context, agent.task_type)

        async def record(iteration: IterationRecord, draft: str) -> None:
            critiques.append(
                new_envelope(
                    iteration.critique_done(
                        task_id=correlation_id,
                        stage_index=0,
                        agent=body.agent_name,
                        threshold=threshold,
                        provider=d.provider.name,
                    ),
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
            await publish(d.redis, critiques, d.settings.stream_maxlen)
            raise HTTPException(
                status.HTTP_409_CONFLICT, detail=f"budget_exhausted: {exc}"
            ) from exc
        except (LLMError, CritiqueParseError) as exc:
            # The critiques made before the failure are still worth keeping.
            await publish(d.redis, critiques, d.settings.stream_maxlen)
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail=f"llm_error: {exc}") from exc
        await publish(d.redis, critiques, d.settings.stream_maxlen)
        return {
            "correlation_id": correlation_id,
            "agent_name": body.agent_name,
            "threshold": threshold,
            **result.as_seed_result(),
        }

    @app.post("/tasks", response_model=TaskAccepted, status_code=status.HTTP_202_ACCEPTED)
    async def submit_task(
        body: TaskSubmission, request: Request, d: Deps = Depends(get_deps)
    ) -> TaskAccepted:
        authorize(request, ring, body.workspace_id)
        event = logic.task_requested(body, task_id=str(uuid.uuid4()))
        await publish(d.redis, [event], d.settings.stream_maxlen)
        return TaskAccepted(task_id=event.correlation_id, workspace_id=body.workspace_id)

    @app.get("/tasks/{task_id}", response_model=TaskStatus)
    async def task_status(
        task_id: str,
        request: Request,
        workspace_id: str = WorkspaceQuery,
        d: Deps = Depends(get_deps),
    ) -> TaskStatus:
        authorize(request, ring, workspace_id)
        view = await d.redis.hgetall(keys.task_view(workspace_id, task_id))
        if not view:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                detail=f"no task {task_id} in workspace {workspace_id} (yet)",
            )
        details = {k.decode(): v.decode() for k, v in view.items()}
        stages_raw = await d.redis.hgetall(keys.task_stages(workspace_id, task_id))
        stages = sorted(
            (json.loads(v) for v in stages_raw.values()), key=lambda s: int(s["stage_index"])
        )
        return TaskStatus(
            task_id=task_id,
            workspace_id=workspace_id,
            status=details.pop("status", "unknown"),
            goal=details.pop("goal", None),
            details=details,
            stages=stages,
        )

    @app.get("/approvals")
    async def list_approvals(
        request: Request, workspace_id: str = WorkspaceQuery, d: Deps = Depends(get_deps)
    ) -> list[dict[str, Any]]:
        authorize(request, ring, workspace_id)
        return [
            logic.approval_summary(r) for r in await approvals.list_pending(d.redis, workspace_id)
        ]

    @app.get("/approvals/{approval_id}")
    async def get_approval(
        approval_id: str,
        request: Request,
        workspace_id: str = WorkspaceQuery,
        d: Deps = Depends(get_deps),
    ) -> dict[str, Any]:
        authorize(request, ring, workspace_id)
        try:
            record = await approvals.get_approval(d.redis, workspace_id, approval_id)
        except approvals.ApprovalNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such approval") from exc
        return logic.approval_summary(record)

    @app.post("/approvals/{approval_id}/decision")
    async def decide(
        approval_id: str, body: DecisionRequest, request: Request, d: Deps = Depends(get_deps)
    ) -> dict[str, Any]:
        decided_by = decider(authorize(request, ring, body.workspace_id), body.decided_by)
        if body.decision == "changes_requested" and not body.comments:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail="comments: required when requesting changes",
            )
        try:
            resolved = await approvals.decide(
                d.redis,
                body.workspace_id,
                approval_id,
                decision=body.decision,
                decided_by=decided_by,
                reason=body.reason,
                comments=body.comments,
                maxlen=d.settings.stream_maxlen,
            )
        except approvals.ApprovalNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such approval") from exc
        except approvals.ApprovalConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
        return {
            "approval_id": approval_id,
            "decision": body.decision,
            "decided_by": decided_by,
            "event_id": resolved.event_id,
            "decided_at": resolved.payload.decided_at,
        }

    @app.put("/workspaces/{workspace_id}/checkpoints")
    async def put_checkpoints(
        body: WorkflowCheckpoints,
        request: Request,
        workspace_id: str = WorkspacePath,
        d: Deps = Depends(get_deps),
    ) -> WorkflowCheckpoints:
        authorize(request, ring, workspace_id)
        if body.workspace_id != workspace_id:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, detail="workspace_id: must match the path"
            )
        await d.redis.set(keys.checkpoints_config(workspace_id), body.model_dump_json())
        return body

    @app.get("/workspaces/{workspace_id}/checkpoints")
    async def get_checkpoints(
        request: Request, workspace_id: str = WorkspacePath, d: Deps = Depends(get_deps)
    ) -> WorkflowCheckpoints:
        authorize(request, ring, workspace_id)
        raw = await d.redis.get(keys.checkpoints_config(workspace_id))
        if not raw:
            return WorkflowCheckpoints(workspace_id=workspace_id)
        return WorkflowCheckpoints.model_validate_json(raw)

    app.include_router(workspace_api.router(ring))
    app.include_router(ui.router(ring))
    add_metrics_route(app)
    add_probe_routes(app)
    app.include_router(learning_router(ring))
    return app
