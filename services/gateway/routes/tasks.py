"""Submitting a task (202, then the services take it over) and reading its status."""

from __future__ import annotations

import json
import uuid

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.gateway import logic
from services.gateway.access import IdPath, WorkspaceQuery, allow, get_deps, is_admin
from services.gateway.schemas import TaskAccepted, TaskStatus, TaskSubmission
from shared.app.runtime import Deps
from shared.contract import keys
from shared.domain.checkpoints import weakenings
from shared.messaging.bus import publish
from shared.stores import checkpoints

router = APIRouter(tags=["tasks"])


@router.post("/tasks", response_model=TaskAccepted, status_code=status.HTTP_202_ACCEPTED)
async def submit_task(
    body: TaskSubmission, request: Request, d: Deps = Depends(get_deps)
) -> TaskAccepted:
    user = allow(request, body.workspace_id)
    if user is not None and body.user_id not in (None, user):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"user_id: this API key belongs to {user}; it cannot submit as {body.user_id}",
        )
    replace = await _checkpoints_policy(body, request, d)
    body = body.model_copy(update={"user_id": user or body.user_id})
    try:
        event = logic.task_requested(body, task_id=str(uuid.uuid4()), replace_checkpoints=replace)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    problem = logic.undecodable(event)
    if problem:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=problem)
    await publish(d.redis, [event], d.settings.stream_maxlen)
    return TaskAccepted(task_id=event.correlation_id, workspace_id=body.workspace_id)


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
        stored = await checkpoints.load_config(d.redis, body.workspace_id)
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


@router.get("/tasks/{task_id}", response_model=TaskStatus)
async def task_status(
    request: Request,
    task_id: str = IdPath(),
    workspace_id: str = WorkspaceQuery,
    d: Deps = Depends(get_deps),
) -> TaskStatus:
    allow(request, workspace_id)
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
