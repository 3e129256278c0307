"""The task lifecycle over HTTP: submit (idempotent), status (long-poll), list, cancel,
resume and rerun. Every answer about a task is the typed `TaskView`."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    status,
)
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.gateway import lifecycle, logic
from services.gateway.access import WorkspaceQuery, allow, get_deps, is_admin
from services.gateway.routes.agents import require_known_agents
from services.gateway.schemas import CancelRequest, RerunRequest, ResumeRequest, TaskSubmission
from shared.app.runtime import Deps
from shared.contract.events import Envelope, TaskRequested
from shared.contract.models import ID_PATTERN
from shared.contract.task_view import (
    RESUMABLE_STATES,
    TaskAccepted,
    TaskPage,
    TaskState,
    TaskView,
)
from shared.domain.checkpoints import weakenings
from shared.messaging.codec import decode_envelope
from shared.stores import checkpoints, tasks

router = APIRouter(tags=["tasks"])
# Task ids in paths: never ':' (the key separator), so one cannot reach another task's
# keys; an envelope's correlation_id follows the same pattern, so every task has such an id.
TaskIdPath = Annotated[str, Path(pattern=ID_PATTERN)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key", max_length=255, pattern=r"^[\x21-\x7e]+$",
        description="Retry-safe submission: the same key and body within 24 h answer the "
        "same task; the same key with another body gets 422.",
    ),
]


@router.post("/tasks", response_model=TaskAccepted, status_code=status.HTTP_202_ACCEPTED)
async def submit_task(
    body: TaskSubmission,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    d: Deps = Depends(get_deps),
) -> TaskAccepted:
    """Accept a task: its view (status `accepted`) and its TaskRequested commit together."""
    user = allow(request, body.workspace_id)
    if user is not None and body.user_id not in (None, user):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"user_id: this API key belongs to {user}; it cannot submit as {body.user_id}",
        )
    await require_known_agents(d, body.workspace_id, body.agent_sequence)
    replace = await _checkpoints_policy(body, request, d)
    body = body.model_copy(update={"user_id": user or body.user_id})
    try:
        event = logic.task_requested(
            body, task_id=body.task_id or str(uuid.uuid4()), replace_checkpoints=replace
        )
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    problem = _undecodable(event)
    if problem:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=problem)
    now = event.occurred_at.timestamp()
    fields = tasks.acceptance_fields(event, tasks.request_hash(body.model_dump(mode="json")), now)
    try:
        accepted = await tasks.accept(
            d.redis, d.keys, event, fields, idempotency_key=idempotency_key, now=now
        )
    except tasks.IdempotencyMismatch as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=f"Idempotency-Key: {exc}") from exc
    except tasks.TaskConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"task_id: {exc}") from exc
    if accepted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return TaskAccepted(task_id=accepted.task_id, workspace_id=body.workspace_id,
                        status=accepted.status, replayed=accepted.replayed)


def _undecodable(event: Envelope[TaskRequested]) -> str | None:
    """Why the services could not decode this event (None: they can). The edge and the
    services share their models, so this should never answer; it is the check that an
    accepted task is one the services can process, whatever a later change loosens."""
    _, reason = decode_envelope(event.model_dump_json().encode(), TaskRequested)
    return reason or None


async def _checkpoints_policy(body: TaskSubmission, request: Request, d: Deps) -> bool:
    """A task's checkpoints may add gates to the workspace's; removing or weakening them
    (403) needs an admin key or the workspace's `allow_task_overrides`. Whether the task's
    checkpoints replace the workspace's (an admin key)."""
    task = body.checkpoints
    if task is None:
        return False
    if task.workspace_id != body.workspace_id:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="checkpoints.workspace_id: must be the task's workspace_id",
        )
    if is_admin(request):
        return True
    try:
        stored = await checkpoints.load_config(d.redis, d.keys, body.workspace_id)
    except checkpoints.ConfigUnreadable:
        return False  # the checkpoint service fails the task, saying why
    if stored is not None and stored.allow_task_overrides:
        return False  # the checkpoint service lets it replace them
    found = weakenings(stored, task)
    if found:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="checkpoints: a task may add gates, not remove or weaken the workspace's ("
            + "; ".join(found)
            + "); that needs an admin key or the workspace's allow_task_overrides",
        )
    return False


def _as_caller(event: Envelope[Any], request: Request, user: str | None) -> Envelope[Any]:
    """A copy (resume, rerun) runs with its caller's rights, not the original submitter's:
    an admin's override of the workspace's gates does not carry over to another key, nor
    does the original user (whom `auto_approve_for_users` may name) to a key naming another."""
    if is_admin(request):
        return event
    payload = event.payload
    workflow = vars(payload).get("workflow")
    if workflow is not None:
        payload = payload.model_copy(
            update={"workflow": workflow.model_copy(update={"replace_checkpoints": False})}
        )
    elif isinstance(payload, TaskRequested):
        payload = payload.model_copy(update={"replace_checkpoints": False})
    update: dict[str, Any] = {"payload": payload}
    if user is not None:
        update |= {"user_id": user, "context": event.context.model_copy(update={"user_id": user})}
    return event.model_copy(update=update)


async def _view_or_404(d: Deps, workspace_id: str, task_id: str) -> TaskView:
    view = await tasks.read(d.redis, d.keys, workspace_id, task_id)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail=f"no task {task_id} in workspace {workspace_id}")
    return view


@router.get("/tasks/{task_id}", response_model=TaskView)
async def task_status(
    task_id: TaskIdPath,
    request: Request,
    workspace_id: str = WorkspaceQuery,
    wait: float = Query(default=0, ge=0, le=tasks.MAX_WAIT_S, allow_inf_nan=False,
                        description="Hold the answer up to this many seconds until the task "
                        "ends (a blocking read on the server, no polling)."),
    d: Deps = Depends(get_deps),
) -> TaskView:
    allow(request, workspace_id)
    view = await _view_or_404(d, workspace_id, task_id)
    if wait > 0 and not view.terminal and await tasks.wait_ended(
        d.redis, d.keys, workspace_id, task_id, wait
    ):
        view = await _view_or_404(d, workspace_id, task_id)
    return view


@router.get("/tasks", response_model=TaskPage)
async def list_tasks(
    request: Request,
    workspace_id: str = WorkspaceQuery,
    status_: TaskState | None = Query(default=None, alias="status"),
    source: str | None = Query(default=None, max_length=32, description="Routing source."),
    agent: str | None = Query(default=None, max_length=128),
    since: datetime | None = Query(default=None, description="Accepted at or after (ISO-8601)."),
    cursor: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=20, ge=1, le=100),
    d: Deps = Depends(get_deps),
) -> TaskPage:
    """The workspace's tasks, newest first, from its index (never a scan of Redis)."""
    allow(request, workspace_id)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    wanted = tasks.TaskFilter(status=status_, source=source, agent=agent,
                              since=since.timestamp() if since else None)
    try:
        return await tasks.list_page(
            d.redis, d.keys, workspace_id, wanted, cursor=cursor, limit=limit
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc


@router.post("/tasks/{task_id}/cancel", response_model=TaskView)
async def cancel_task(
    task_id: TaskIdPath, body: CancelRequest, request: Request, d: Deps = Depends(get_deps)
) -> TaskView:
    """Stop a task wherever it is; a second cancel answers the same; a finished task 409."""
    user = allow(request, body.workspace_id)
    try:
        return await tasks.cancel(
            d.redis,
            d.keys,
            body.workspace_id,
            task_id,
            by=user or body.cancelled_by,
            reason=body.reason,
            now=time.time(),
        )
    except tasks.TaskNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no task {task_id}") from exc
    except tasks.TaskConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc


async def _start_copy(
    d: Deps,
    event: Envelope[Any],
    fields: dict[str, str],
    original: str,
    idempotency_key: str | None,
) -> TaskAccepted:
    """Accept the new task (once per Idempotency-Key); a resumed one keeps the original's
    request (so it can be rerun too) and the original links to it."""
    try:
        accepted = await tasks.accept(
            d.redis,
            d.keys,
            event,
            fields,
            idempotency_key=idempotency_key,
            now=float(fields["created_at"]),
        )
    except tasks.IdempotencyMismatch as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"Idempotency-Key: {exc}"
        ) from exc
    if not accepted.replayed and "resumed_from" in fields:
        ws, new_id = event.workspace_id, event.correlation_id
        request = await d.redis.get(d.keys.task_request(ws, original))
        if request is not None:
            await d.redis.set(d.keys.task_request(ws, new_id), request, ex=tasks.VIEW_TTL_S)
        await d.redis.hset(d.keys.task_view(ws, original), "resumed_by", new_id)
    return TaskAccepted(
        task_id=accepted.task_id,
        workspace_id=event.workspace_id,
        status=accepted.status,
        replayed=accepted.replayed,
    )


@router.post(
    "/tasks/{task_id}/resume", response_model=TaskAccepted, status_code=status.HTTP_202_ACCEPTED
)
async def resume_task(
    task_id: TaskIdPath,
    body: ResumeRequest,
    request: Request,
    idempotency_key: IdempotencyKey = None,
    d: Deps = Depends(get_deps),
) -> TaskAccepted:
    """Continue a failed, rejected or timed-out task from the stage that did not finish."""
    user = allow(request, body.workspace_id)
    view = await _view_or_404(d, body.workspace_id, task_id)
    raw = await d.redis.get(d.keys.task_snapshot(body.workspace_id, task_id))
    if view.status not in RESUMABLE_STATES or raw is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"task {task_id} is {view.status}: only a failed or rejected task that "
            "reached a stage can resume (POST /tasks/{id}/rerun starts a fresh copy)",
        )
    snapshot = lifecycle.Snapshot.model_validate_json(raw)
    now = datetime.now(UTC)
    new_id = str(uuid.uuid4())
    event = _as_caller(
        lifecycle.resumed(snapshot, new_id, body.budget_constraints, now), request, user
    )
    fields = lifecycle.resumed_fields(snapshot, task_id, now.timestamp())
    fields["request_hash"] = tasks.request_hash(
        {"resume": task_id, "budget": body.budget_constraints}
    )
    return await _start_copy(d, event, fields, task_id, idempotency_key)


@router.post(
    "/tasks/{task_id}/rerun", response_model=TaskAccepted, status_code=status.HTTP_202_ACCEPTED
)
async def rerun_task(
    task_id: TaskIdPath,
    body: RerunRequest,
    request: Request,
    idempotency_key: IdempotencyKey = None,
    d: Deps = Depends(get_deps),
) -> TaskAccepted:
    """Start a fresh copy of a task (same request, new id), whatever its state."""
    user = allow(request, body.workspace_id)
    raw = await d.redis.get(d.keys.task_request(body.workspace_id, task_id))
    if raw is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no request kept for {task_id}")
    original = Envelope[TaskRequested].model_validate_json(raw)
    event = _as_caller(lifecycle.rerun(original, str(uuid.uuid4())), request, user)
    now = event.occurred_at.timestamp()
    digest = tasks.request_hash({"rerun": task_id})
    fields = tasks.acceptance_fields(event, digest, now, {"rerun_of": task_id})
    return await _start_copy(d, event, fields, task_id, idempotency_key)
