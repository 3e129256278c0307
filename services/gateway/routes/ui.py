"""The approvals page: server-rendered HTML with plain forms, no build step.

Auth is the API's KeyRing. A browser cannot send the X-API-Key header, so the
page also accepts the key once as `?key=...`: checked first, then moved into an
HttpOnly, SameSite=Strict cookie, with a redirect to a URL without it. Decision
forms carry a CSRF token and must come from the gateway's own origin
(services.gateway.console.guard), the same rules as the console's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.gateway.access import WORKSPACE_PATTERN, get_deps, key_ring
from services.gateway.console import guard
from services.gateway.console.decisions import decide_from_form
from shared.stores import approvals

templates = Jinja2Templates(directory=str(Path(__file__).parents[1] / "templates"))


def _key(request: Request) -> str | None:
    return guard.browser_key(request)


def view_of(record: approvals.ApprovalRecord, now: float) -> dict[str, Any]:
    """What the page shows of one approval."""
    needed = record.needed
    p = needed.payload
    ctx = needed.context
    return {
        "id": record.approval_id,
        "task_id": p.workflow.task_id,
        "goal": p.workflow.goal,
        "checkpoint": p.checkpoint,
        "condition": str(p.condition),
        "agent": p.agent,
        "stage": f"{p.workflow.stage_index + 1} of {len(p.workflow.agent_sequence)}",
        "sequence": " → ".join(p.workflow.agent_sequence),
        "stage_output": p.stage_output,
        "quality": p.stage_outcome.quality if p.stage_outcome else None,
        "rules": [r.model_dump() for r in p.evaluation.rules],
        "reasons": p.evaluation.reasons,
        "deadline": record.deadline_iso,
        "seconds_left": max(int(record.deadline - now), 0),
        "escalated": record.escalated,
        "requested_by": needed.user_id,
        "context": {
            "user": ctx.user_id or "—",
            "brand voice": ", ".join(f"{k}: {v}" for k, v in ctx.brand_voice.items()) or "—",
            "target ICPs": ", ".join(ctx.target_icps) or "—",
            "past successes": len(ctx.past_successes),
            "task history": len(ctx.task_history),
            "budget": ", ".join(f"{k}: {v}" for k, v in ctx.budget_constraints.items()) or "—",
        },
    }


router = APIRouter(prefix="/ui", include_in_schema=False)


def identity(request: Request, workspace_id: str) -> tuple[bool, str | None]:
    """(allowed, the key's user); a missing or wrong key shows the key form instead."""
    ring = key_ring(request)
    if not ring.enabled:
        return True, None
    try:
        return True, ring.check(_key(request), workspace_id)
    except HTTPException as exc:
        if exc.status_code == status.HTTP_401_UNAUTHORIZED:
            return False, None
        raise


async def page(
    request: Request,
    workspace_id: str,
    *,
    message: str = "",
    error: str = "",
    status_code: int = 200,
) -> Response:
    allowed, user = identity(request, workspace_id)
    if not allowed:
        return key_form(request, workspace_id)
    deps = get_deps(request)
    now = datetime.now(UTC).timestamp()
    pending = await approvals.list_pending(deps.redis, deps.keys, workspace_id)
    response = templates.TemplateResponse(
        request,
        "approvals.html",
        {
            "workspace_id": workspace_id,
            "user": user,
            "approvals": [view_of(r, now) for r in pending],
            "message": message,
            "error": error,
            "csrf": guard.csrf_token(request),
        },
        status_code=status_code,
    )
    return guard.finish(request, response)


def key_form(request: Request, workspace_id: str, error: str = "") -> Response:
    return templates.TemplateResponse(
        request,
        "key.html",
        {"workspace_id": workspace_id, "error": error},
        status_code=status.HTTP_401_UNAUTHORIZED,
    )


@router.get("/approvals", response_class=HTMLResponse)
async def approvals_page(
    request: Request,
    workspace_id: str = Query(pattern=WORKSPACE_PATTERN),
    key: str | None = Query(default=None, max_length=guard.MAX_KEY_LENGTH),
    msg: str = Query(default="", max_length=300),
) -> Response:
    if key is not None and key_ring(request).enabled:
        if not guard.key_opens(request, key, workspace_id):
            return key_form(request, workspace_id, "That key does not open this workspace.")
        target = f"/ui/approvals?{urlencode({'workspace_id': workspace_id})}"
        response = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
        guard.set_key_cookie(response, key)
        return response
    return await page(request, workspace_id, message=msg)


@router.post("/approvals/{approval_id}/decide", response_class=HTMLResponse)
async def decide_form(
    approval_id: str,
    request: Request,
    workspace_id: str = Form(pattern=WORKSPACE_PATTERN),
    action: str = Form(pattern="^(approve|reject|changes)$"),
    csrf_token: str = Form(default="", max_length=200),
    decided_by: str = Form(default="", max_length=200),
    reason: str = Form(default="", max_length=2000),
    comments: str = Form(default="", max_length=8000),
) -> Response:
    allowed, user = identity(request, workspace_id)
    if not allowed:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing or invalid API key")
    guard.check_form(request, csrf_token)
    try:
        resolved = await decide_from_form(
            get_deps(request), user, workspace_id, approval_id,
            action=action, decided_by=decided_by, reason=reason, comments=comments,
        )  # fmt: skip
    except HTTPException as exc:
        return await page(request, workspace_id, error=str(exc.detail), status_code=exc.status_code)
    except approvals.ApprovalNotFound:
        return await page(request, workspace_id, error="no such approval", status_code=404)
    except approvals.ApprovalConflict as exc:
        return await page(request, workspace_id, error=str(exc), status_code=409)
    decided = resolved.payload
    done = f"{decided.decision.replace('_', ' ')}: approval {approval_id[:8]} by {decided.decided_by}"
    target = f"/ui/approvals?{urlencode({'workspace_id': workspace_id, 'msg': done})}"
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
