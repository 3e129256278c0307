"""Gateway routes for a workspace's webhooks, webhook delivery status, and the audit trail."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr

from services.gateway.auth import KeyRing, authorize
from shared.app.runtime import Deps
from shared.stores import audit, webhooks

WORKSPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


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


def _deps(request: Request) -> Deps:
    return request.app.state.deps  # type: ignore[no-any-return]


def router(ring: KeyRing) -> APIRouter:
    api = APIRouter()

    @api.put("/workspaces/{workspace_id}/webhooks", response_model=WebhooksView)
    async def put_webhooks(
        body: WebhooksRequest,
        request: Request,
        workspace_id: str = Path(pattern=WORKSPACE_PATTERN),
    ) -> WebhooksView:
        authorize(request, ring, workspace_id)
        redis = _deps(request).redis
        current = await webhooks.load_config(redis, workspace_id)
        generated = None
        if body.secret is not None:
            secret = body.secret
        elif current is not None:
            secret = current.secret.get_secret_value()
        else:
            secret = generated = webhooks.new_secret()
        config = webhooks.WebhookConfig(urls=body.urls, secret=SecretStr(secret))
        await webhooks.save_config(redis, workspace_id, config)
        return WebhooksView(
            workspace_id=workspace_id,
            urls=[str(u) for u in config.urls],
            secret_set=True,
            secret=generated,
        )

    @api.get("/workspaces/{workspace_id}/webhooks", response_model=WebhooksView)
    async def get_webhooks(
        request: Request, workspace_id: str = Path(pattern=WORKSPACE_PATTERN)
    ) -> WebhooksView:
        authorize(request, ring, workspace_id)
        config = await webhooks.load_config(_deps(request).redis, workspace_id)
        return WebhooksView(
            workspace_id=workspace_id,
            urls=[str(u) for u in config.urls] if config else [],
            secret_set=config is not None,
        )

    @api.get("/approvals/{approval_id}/deliveries")
    async def get_deliveries(
        approval_id: str, request: Request, workspace_id: str = Query(pattern=WORKSPACE_PATTERN)
    ) -> list[webhooks.TargetStatus]:
        authorize(request, ring, workspace_id)
        return await webhooks.delivery_status(_deps(request).redis, workspace_id, approval_id)

    @api.get("/tasks/{task_id}/audit")
    async def get_audit(
        task_id: str, request: Request, workspace_id: str = Query(pattern=WORKSPACE_PATTERN)
    ) -> list[dict[str, Any]]:
        authorize(request, ring, workspace_id)
        entries = await audit.list_for_task(_deps(request).redis, workspace_id, task_id)
        return [e.model_dump(mode="json") for e in entries]

    return api
