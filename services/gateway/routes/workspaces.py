"""A workspace's configuration: checkpoints, webhooks (and their deliveries), and the audit trail."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr

from services.gateway.access import IdPath, WorkspacePath, WorkspaceQuery, allow, get_deps
from shared.app.runtime import Deps
from shared.contract.models import WorkflowCheckpoints
from shared.egress import guard
from shared.stores import audit, checkpoints, webhooks


class WebhooksRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    urls: list[AnyHttpUrl] = Field(max_length=10, examples=[["https://hooks.example.com/rf"]])
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        description="Signing secret; omit to keep the current one (or get a new one generated).",
    )


class WebhooksView(BaseModel):
    workspace_id: str
    urls: list[str]
    secret_set: bool
    secret: str | None = Field(
        default=None, description="Only when the server generated it: shown this once."
    )
    error: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Only when the stored configuration does not load (PUT a new one).",
    )


log = logging.getLogger("raptorflow.gateway")
router = APIRouter(tags=["workspaces"])


@router.put("/workspaces/{workspace_id}/webhooks", response_model=WebhooksView)
async def put_webhooks(
    body: WebhooksRequest,
    request: Request,
    workspace_id: str = WorkspacePath,
) -> WebhooksView:
    allow(request, workspace_id)
    d = get_deps(request)
    policy = guard.policy_for(d.settings.egress_allow)
    for n, url in enumerate(body.urls):
        try:
            await policy.check_url(str(url))
        except guard.EgressRefused as exc:
            log.info("webhook URL refused", extra={"workspace_id": workspace_id, "error": str(exc)})
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"urls[{n}]: {guard.REFUSED}"
            ) from exc
    redis = d.redis
    try:
        current = await webhooks.load_config(redis, d.keys, workspace_id)
    except webhooks.ConfigUnreadable:
        current = None  # replaced below: this is how an unreadable one is fixed
    generated = None
    if body.secret is not None:
        secret = body.secret
    elif current is not None:
        secret = current.secret.get_secret_value()
    else:
        secret = generated = webhooks.new_secret()
    config = webhooks.WebhookConfig(urls=body.urls, secret=SecretStr(secret))
    await webhooks.save_config(redis, d.keys, workspace_id, config)
    return WebhooksView(
        workspace_id=workspace_id,
        urls=[str(u) for u in config.urls],
        secret_set=True,
        secret=generated,
    )


@router.get("/workspaces/{workspace_id}/webhooks", response_model=WebhooksView)
async def get_webhooks(request: Request, workspace_id: str = WorkspacePath) -> WebhooksView:
    allow(request, workspace_id)
    try:
        config = await webhooks.load_config(
            get_deps(request).redis, get_deps(request).keys, workspace_id
        )
    except webhooks.ConfigUnreadable as exc:
        return WebhooksView(workspace_id=workspace_id, urls=[], secret_set=True, error=str(exc))
    return WebhooksView(
        workspace_id=workspace_id,
        urls=[str(u) for u in config.urls] if config else [],
        secret_set=config is not None,
    )


@router.get("/approvals/{approval_id}/deliveries")
async def get_deliveries(
    request: Request, approval_id: str = IdPath(), workspace_id: str = WorkspaceQuery
) -> list[webhooks.TargetStatus]:
    allow(request, workspace_id)
    return await webhooks.delivery_status(
        get_deps(request).redis, get_deps(request).keys, workspace_id, approval_id
    )


@router.get("/tasks/{task_id}/audit")
async def get_audit(
    request: Request, task_id: str = IdPath(), workspace_id: str = WorkspaceQuery
) -> list[dict[str, Any]]:
    allow(request, workspace_id)
    entries = await audit.list_for_task(
        get_deps(request).redis, get_deps(request).keys, workspace_id, task_id
    )
    return [e.model_dump(mode="json") for e in entries]


@router.put("/workspaces/{workspace_id}/checkpoints")
async def put_checkpoints(
    body: WorkflowCheckpoints,
    request: Request,
    workspace_id: str = WorkspacePath,
    d: Deps = Depends(get_deps),
) -> WorkflowCheckpoints:
    allow(request, workspace_id)
    if body.workspace_id != workspace_id:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail="workspace_id: must match the path"
        )
    await checkpoints.save_config(d.redis, d.keys, workspace_id, body)
    return body


@router.get("/workspaces/{workspace_id}/checkpoints")
async def get_checkpoints(
    request: Request, workspace_id: str = WorkspacePath, d: Deps = Depends(get_deps)
) -> WorkflowCheckpoints:
    allow(request, workspace_id)
    try:
        stored = await checkpoints.load_config(d.redis, d.keys, workspace_id)
    except checkpoints.ConfigUnreadable as exc:
        # Still readable, and a PUT replaces it; meanwhile the workspace's tasks fail saying so.
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail={"error": str(exc), "stored": exc.raw[:4000].decode("utf-8", "replace")},
        ) from exc
    return stored or WorkflowCheckpoints(workspace_id=workspace_id)
