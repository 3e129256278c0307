"""The console at /ui: task list, one task, the workspace, live updates (pages, no JSON API).

Reading works without JavaScript; `console.js` (served from the package, no CDN) only
listens to /ui/events and updates the page in place. Access is the API's keys, through
`services.gateway.console.guard` (key cookie, CSRF token, Origin check).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from services.gateway.access import WORKSPACE_PATTERN, get_deps, key_ring
from services.gateway.auth import WILDCARD
from services.gateway.console import guard, live, reader, views
from services.gateway.console.decisions import decide_from_form
from shared.domain.experiments import NoEvidence
from shared.stores import approvals, experiment_store

TEMPLATES = Path(__file__).parents[1] / "templates"
STATIC = Path(__file__).parents[1] / "static"
templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.filters["svg"] = Markup
Workspace = Query(pattern=WORKSPACE_PATTERN)
OptionalKey = Query(default=None, max_length=guard.MAX_KEY_LENGTH)
router = APIRouter(prefix="/ui", include_in_schema=False)


def _without_key(request: Request) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "key"]
    return f"{request.url.path}?{urlencode(query)}" if query else request.url.path


def login_page(request: Request, workspace_id: str | None, error: str = "") -> Response:
    """The key form (401): the key goes back as `?key=` to the page asked for (a form post
    without a key goes back to the console's start)."""
    if request.method == "GET":
        action = request.url.path
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "key"]
    else:
        action, query = "/ui", [("workspace_id", workspace_id)] if workspace_id else []
    return templates.TemplateResponse(
        request,
        "console/login.html",
        {"workspace_id": workspace_id, "action": action, "error": error, "query": query},
        status_code=status.HTTP_401_UNAUTHORIZED,
    )


def take_key(request: Request, key: str, workspace_id: str | None) -> Response:
    """`?key=`: checked first; only a key that opens the workspace becomes a cookie."""
    if not key_ring(request).enabled:
        return RedirectResponse(_without_key(request), status_code=status.HTTP_303_SEE_OTHER)
    if not guard.key_opens(request, key, workspace_id):
        return login_page(request, workspace_id, error="That key does not open this workspace.")
    response = RedirectResponse(_without_key(request), status_code=status.HTTP_303_SEE_OTHER)
    guard.set_key_cookie(response, key)
    return response


def workspaces_of(request: Request) -> frozenset[str] | None:
    """The key's workspaces; None: every workspace (an admin key, or keys switched off)."""
    ring = key_ring(request)
    if not ring.enabled:
        return None
    key = guard.browser_key(request)
    grant = ring.workspaces_for(key) if key else frozenset()
    if grant is None:
        return frozenset()
    return None if WILDCARD in grant else grant


def gate(request: Request, workspace_id: str) -> tuple[Response | None, str | None]:
    """(a page to show instead, the key's user): the key form, or 403 for another workspace."""
    ring = key_ring(request)
    if not ring.enabled:
        return None, None
    key = guard.browser_key(request)
    if not key or ring.workspaces_for(key) is None:
        return login_page(request, workspace_id), None
    try:
        return None, ring.check(key, workspace_id)
    except HTTPException:
        return render(request, "console/error.html", None,
                      {"error": "This key does not open that workspace."}, status_code=403), None


def admit(
    request: Request, key: str | None, workspace_id: str
) -> tuple[Response | None, str | None]:
    """A page's entry: `?key=` taken first (checked, then a cookie), else the gate."""
    if key is not None:
        return take_key(request, key, workspace_id), None
    return gate(request, workspace_id)


def render(
    request: Request, name: str, workspace_id: str | None, context: dict[str, Any],
    status_code: int = 200,
) -> Response:
    """A console page with what every page shows (nav, picker, CSRF token)."""
    allowed = workspaces_of(request)
    base = {"workspace_id": workspace_id, "csrf": guard.csrf_token(request),
            "workspaces": sorted(allowed) if allowed is not None else None,
            "since_ms": int(time.time() * 1000) - live.CLOCK_SLACK_MS}
    response = templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)
    return guard.finish(request, response)


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
async def home(
    request: Request,
    key: str | None = OptionalKey,
    workspace_id: str | None = Query(default=None, pattern=WORKSPACE_PATTERN),
) -> Response:
    """One workspace: its task list; several (or an admin key): the picker."""
    if key is not None:
        return take_key(request, key, workspace_id)
    if workspace_id is not None:
        shown, _ = gate(request, workspace_id)
        target = f"/ui/tasks?{urlencode({'workspace_id': workspace_id})}"
        return shown or RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    ring = key_ring(request)
    if ring.enabled and (not guard.browser_key(request) or workspaces_of(request) == frozenset()):
        return login_page(request, None)
    allowed = workspaces_of(request)
    choices = sorted(allowed) if allowed is not None else await reader.workspaces_seen(
        get_deps(request).redis, get_deps(request).layout
    )
    if len(choices) == 1:
        target = f"/ui/tasks?{urlencode({'workspace_id': choices[0]})}"
        return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    return render(request, "console/picker.html", None, {"choices": choices})


@router.get("/tasks", response_class=HTMLResponse)
async def task_list(
    request: Request,
    workspace_id: str = Workspace,
    key: str | None = OptionalKey,
    status_filter: str = Query(default="", alias="status", max_length=40),
    source: str = Query(default="", max_length=40),
    agent: str = Query(default="", max_length=100),
    q: str = Query(default="", max_length=200),
    page: int = Query(default=1, ge=1, le=10_000),
) -> Response:
    shown, _ = admit(request, key, workspace_id)
    if shown is not None:
        return shown
    deps = get_deps(request)
    redis = deps.redis
    filters = {"status": status_filter, "source": source, "agent": agent, "q": q}
    ids = await reader.recent_task_ids(redis, deps.keys, workspace_id)
    if not any(filters.values()):  # no filter: read only the page's views
        page_ids, pages = views.paged(ids, page)
        visible = _rows(page_ids, await reader.task_views(redis, deps.keys, workspace_id, page_ids))
        total = len(ids)
    else:
        rows = _rows(ids, await reader.task_views(redis, deps.keys, workspace_id, ids))
        chosen = [r for r in rows if views.matches(r, status_filter, source, agent, q)]
        visible, pages = views.paged(chosen, page)
        total = len(chosen)
    agents = sorted(set(deps.catalog.names) | {a for r in visible for a in r["agents"]})
    waiting = len(await approvals.list_pending(redis, deps.keys, workspace_id))
    return render(request, "console/tasks.html", workspace_id, {
        "waiting": waiting,
        "rows": visible, "page": min(page, pages), "pages": pages, "total": total,
        "filters": filters, "agents": agents, "scan": reader.LIST_SCAN,
        "statuses": ["requested", "running", "awaiting_approval", "completed", "failed", "rejected"],
        "sources": ["memory", "planner", "requested", "experiment"],
        "query": urlencode({"workspace_id": workspace_id, **{k: v for k, v in filters.items() if v}}),
    })


def _rows(ids: list[str], found: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [views.task_row(t, v) for t, v in zip(ids, found, strict=True)]


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(
    request: Request,
    task_id: str,
    workspace_id: str = Workspace,
    key: str | None = OptionalKey,
    message: str = Query(default="", alias="msg", max_length=300),
) -> Response:
    shown, user = admit(request, key, workspace_id)
    if shown is not None:
        return shown
    return await _task_page(request, workspace_id, task_id, user, message=message)


async def _task_page(
    request: Request, workspace_id: str, task_id: str, user: str | None,
    *, message: str = "", error: str = "", status_code: int = 200,
) -> Response:
    detail = await reader.task_detail(get_deps(request), workspace_id, task_id[:100])
    if detail is None:
        return render(request, "console/error.html", workspace_id,
                      {"error": "No such task in this workspace (yet)."}, status_code=404)
    row = views.task_row(task_id, detail.view)
    return render(request, "console/task.html", workspace_id, {
        "task": row, "view": detail.view, "user": user, "message": message, "error": error,
        "timeline": views.timeline(detail.events),
        "stages": views.stages(detail.events),
        "routing": views.routing_view(detail.routing, detail.neighbour_goals, detail.threshold),
        "usage": views.usage_of(detail.view), "audit": detail.audit,
        "pending": detail.pending, "letters": detail.letters,
        "terminal": row["status"] in views.TERMINAL,
    }, status_code=status_code)


@router.post("/tasks/{task_id}/approvals/{approval_id}/decide", response_class=HTMLResponse)
async def decide_on_task(
    request: Request,
    task_id: str,
    approval_id: str,
    workspace_id: str = Form(pattern=WORKSPACE_PATTERN),
    csrf_token: str = Form(default="", max_length=200),
    action: str = Form(pattern="^(approve|reject|changes)$"),
    decided_by: str = Form(default="", max_length=200),
    reason: str = Form(default="", max_length=2000),
    comments: str = Form(default="", max_length=8000),
) -> Response:
    shown, user = gate(request, workspace_id)
    if shown is not None:
        return shown
    guard.check_form(request, csrf_token)
    try:
        resolved = await decide_from_form(
            get_deps(request), user, workspace_id, approval_id,
            action=action, decided_by=decided_by, reason=reason, comments=comments,
        )  # fmt: skip
    except HTTPException as exc:
        return await _task_page(
            request, workspace_id, task_id, user, error=str(exc.detail), status_code=exc.status_code
        )
    except approvals.ApprovalNotFound:
        return await _task_page(
            request, workspace_id, task_id, user, error="no such approval", status_code=404
        )
    except approvals.ApprovalConflict as exc:
        return await _task_page(
            request, workspace_id, task_id, user, error=str(exc), status_code=409
        )
    decided = resolved.payload
    done = f"{decided.decision.replace('_', ' ')} by {decided.decided_by}"
    target = f"/ui/tasks/{quote(task_id[:100], safe='')}?{urlencode({'workspace_id': workspace_id, 'msg': done})}"
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)


@router.get("/workspace", response_class=HTMLResponse)
async def workspace_page(
    request: Request,
    workspace_id: str = Workspace,
    key: str | None = OptionalKey,
    message: str = Query(default="", alias="msg", max_length=300),
) -> Response:
    shown, _ = admit(request, key, workspace_id)
    if shown is not None:
        return shown
    detail = await reader.workspace_detail(get_deps(request), workspace_id)
    bins = views.calibration_bins(detail.routing)
    return render(
        request,
        "console/workspace.html",
        workspace_id,
        {
            "detail": detail,
            "bins": bins,
            "reliability": views.reliability_svg(bins),
            "bar": views.bar_svg,
            "message": message,
            "decided": sum(1 for r in detail.routing if r.outcome_success is not None),
            "reused": int(sum(b["count"] for b in bins)),
        },
    )


@router.post("/workspace/experiments/{experiment_id}/stop", response_class=HTMLResponse)
async def stop_experiment(
    request: Request,
    experiment_id: str,
    workspace_id: str = Form(pattern=WORKSPACE_PATTERN),
    csrf_token: str = Form(default="", max_length=200),
    promote: bool = Form(default=False),
) -> Response:
    shown, _ = gate(request, workspace_id)
    if shown is not None:
        return shown
    guard.check_form(request, csrf_token)
    deps = get_deps(request)
    try:
        await experiment_store.stop(
            deps.redis, deps.keys, workspace_id, experiment_id[:100], promote=promote
        )
        done = f"experiment {experiment_id[:40]} {'promoted' if promote else 'stopped'}"
    except experiment_store.ExperimentNotFound:
        return render(
            request,
            "console/error.html",
            workspace_id,
            {"error": "No such experiment in this workspace."},
            status_code=404,
        )
    except (experiment_store.ExperimentConflict, NoEvidence) as exc:
        done = str(exc)[:200]
    target = f"/ui/workspace?{urlencode({'workspace_id': workspace_id, 'msg': done})}"
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)


@router.get("/events")
async def events(
    request: Request,
    workspace_id: str = Workspace,
    task_id: str | None = Query(default=None, max_length=100),
    since: int | None = Query(default=None, ge=0),
) -> Response:
    """SSE: the workspace's task events as they happen (one task's, with task_id), from the
    moment the page was rendered (`since`, ms) so nothing between render and connect is lost."""
    shown, _ = gate(request, workspace_id)
    if shown is not None:
        return Response(status_code=shown.status_code)
    deps = get_deps(request)
    redis = deps.redis
    if task_id is not None and not await reader.task_view(redis, deps.keys, workspace_id, task_id):
        return Response(status_code=404)
    if live.busy():
        return Response(status_code=503, headers={"Retry-After": "5"})
    stream = live.task_events(
        redis, deps.layout, workspace_id, request.is_disconnected, task_id, since
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/static/console.js")
async def console_js() -> FileResponse:
    return FileResponse(STATIC / "console.js", media_type="text/javascript")
