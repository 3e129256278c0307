"""Submitting a task (202, then the services take it over) and reading its status."""

from __future__ import annotations

import json
import uuid

from fastapi import APIRouter, Depends, HTTPException, Request, status

from services.gateway import logic
from services.gateway.access import WorkspaceQuery, allow, get_deps
from services.gateway.routes.agents import require_known_agents
from services.gateway.schemas import TaskAccepted, TaskStatus, TaskSubmission
from shared.app.runtime import Deps
from shared.contract import keys
from shared.messaging.bus import publish

router = APIRouter(tags=["tasks"])


@router.post("/tasks", response_model=TaskAccepted, status_code=status.HTTP_202_ACCEPTED)
async def submit_task(
    body: TaskSubmission, request: Request, d: Deps = Depends(get_deps)
) -> TaskAccepted:
    allow(request, body.workspace_id)
    await require_known_agents(d, body.workspace_id, body.agent_sequence)
    event = logic.task_requested(body, task_id=str(uuid.uuid4()))
    await publish(d.redis, [event], d.settings.stream_maxlen)
    return TaskAccepted(task_id=event.correlation_id, workspace_id=body.workspace_id)


@router.get("/tasks/{task_id}", response_model=TaskStatus)
async def task_status(
    task_id: str,
    request: Request,
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
