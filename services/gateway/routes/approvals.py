"""Pending approvals of a workspace, one approval, and the human's decision on it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status

from services.gateway import logic
from services.gateway.access import IdPath, WorkspaceQuery, allow, get_deps
from services.gateway.auth import decider
from services.gateway.schemas import DecisionRequest
from shared.app.runtime import Deps
from shared.stores import approvals

router = APIRouter(tags=["approvals"])


@router.get("/approvals")
async def list_approvals(
    request: Request, workspace_id: str = WorkspaceQuery, d: Deps = Depends(get_deps)
) -> list[dict[str, Any]]:
    allow(request, workspace_id)
    return [
        logic.approval_summary(r)
        for r in await approvals.list_pending(d.redis, d.keys, workspace_id)
    ]


@router.get("/approvals/{approval_id}")
async def get_approval(
    request: Request,
    approval_id: str = IdPath(),
    workspace_id: str = WorkspaceQuery,
    d: Deps = Depends(get_deps),
) -> dict[str, Any]:
    allow(request, workspace_id)
    try:
        record = await approvals.get_approval(d.redis, d.keys, workspace_id, approval_id)
    except approvals.ApprovalNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such approval") from exc
    return logic.approval_summary(record)


@router.post("/approvals/{approval_id}/decision")
async def decide(
    body: DecisionRequest,
    request: Request,
    approval_id: str = IdPath(),
    d: Deps = Depends(get_deps),
) -> dict[str, Any]:
    decided_by = decider(allow(request, body.workspace_id), body.decided_by)
    if body.decision == "changes_requested" and not body.comments:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="comments: required when requesting changes",
        )
    try:
        resolved = await approvals.decide(
            d.redis,
            d.keys,
            body.workspace_id,
            approval_id,
            decision=body.decision,
            decided_by=decided_by,
            reason=body.reason,
            comments=body.comments,
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
