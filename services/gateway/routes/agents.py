"""Agents managed while the system runs: register, read, list and remove.

`?workspace_id=` scopes a registration to one workspace (its key must open it);
without it the registration is global and needs a key that opens every workspace
(`*`). Each change is validated against the catalog it joins and recorded with a version.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, Field, ValidationError

from services.gateway.access import WORKSPACE_PATTERN, allow, get_deps
from shared.app.runtime import Deps
from shared.domain.catalog import AGENT_NAME_PATTERN, AgentSpec, mcp_command_allowed
from shared.egress import guard
from shared.stores import agent_registry as registry

log = logging.getLogger("raptorflow.gateway")
router = APIRouter(tags=["agents"])
MCP_ALLOWLIST_ENV = "RAPTORFLOW_MCP_ALLOWED_COMMANDS"
ScopeQuery = Query(default=None, pattern=WORKSPACE_PATTERN, description="Omit for global.")


class AgentView(BaseModel):
    """One agent as a workspace sees it: its spec, where it comes from, its live replicas."""

    spec: AgentSpec
    source: str = Field(description="file, global or workspace")
    replicas: list[registry.Replica] = Field(default_factory=list)
    changes: list[registry.AgentChange] = Field(default_factory=list)


def _scope(request: Request, workspace_id: str | None) -> tuple[str, str | None]:
    """The registry scope and the key's user; global needs a key opening every workspace."""
    scope = workspace_id or registry.GLOBAL_SCOPE
    return scope, allow(request, scope)


def _validated(name: str, body: dict[str, Any], allowed: str) -> AgentSpec:
    """The spec, or 422 naming the field; MCP commands only from `allowed` (the operator's
    `Settings.mcp_allowed_commands`)."""
    try:
        spec = AgentSpec.model_validate({**body, "name": name, "version": 0})
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, json.loads(exc.json())) from exc
    refused = [
        n for n, m in spec.mcp_servers.items() if not mcp_command_allowed(m.command, allowed)
    ]
    if refused:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"mcp_servers: {', '.join(refused)} start a command the operator has not allowed "
            f"({MCP_ALLOWLIST_ENV}); MCP servers run on RaptorFlow's hosts",
        )
    return spec


async def _view(d: Deps, name: str, workspace_id: str | None, detail: bool) -> AgentView:
    catalog = await registry.catalog_for(d.redis, d.catalog, workspace_id or "")
    if name not in catalog.names:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no agent {name!r}")
    spec = catalog.get(name)
    runtime = await registry.runtime_specs(d.redis)
    source = "file"
    if (registry.GLOBAL_SCOPE, name) in runtime:
        source = "global"
    if workspace_id and (workspace_id, name) in runtime:
        source = "workspace"
    replicas = await registry.replicas(d.redis, name) if spec.kind == "worker" else []
    changes = await registry.changes(d.redis, name, count=20) if detail else []
    return AgentView(spec=spec, source=source, replicas=replicas, changes=changes)


NamePath = Path(pattern=AGENT_NAME_PATTERN)


@router.put("/agents/{name}", response_model=AgentSpec)
async def register_agent(
    request: Request,
    name: str = NamePath,
    workspace_id: str | None = ScopeQuery,
    body: dict[str, Any] = Body(..., examples=[{"kind": "worker", "task_types": ["research"]}]),
    d: Deps = Depends(get_deps),
) -> AgentSpec:
    """Register or replace an agent (422 naming the field when invalid); returns its version."""
    scope, user = _scope(request, workspace_id)
    spec = _validated(name, body, d.settings.mcp_allowed_commands)
    if spec.url is not None:
        try:
            await guard.policy_for(d.settings.egress_allow).check_url(str(spec.url))
        except guard.EgressRefused as exc:
            log.info("agent URL refused", extra={"workspace_id": scope, "error": str(exc)})
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"url: {guard.REFUSED}"
            ) from exc
    try:
        return await registry.put_agent(d.redis, d.catalog, spec, scope, by=user or "")
    except registry.NameTaken as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


@router.get("/agents", response_model=list[AgentView])
async def list_agents(
    request: Request, workspace_id: str | None = ScopeQuery, d: Deps = Depends(get_deps)
) -> list[AgentView]:
    """Every agent the workspace (or, without one, every workspace) sees, with live replicas."""
    _scope(request, workspace_id)
    catalog = await registry.catalog_for(d.redis, d.catalog, workspace_id or "")
    return [await _view(d, name, workspace_id, detail=False) for name in catalog.names]


@router.get("/agents/{name}", response_model=AgentView)
async def show_agent(
    request: Request,
    name: str = NamePath,
    workspace_id: str | None = ScopeQuery,
    d: Deps = Depends(get_deps),
) -> AgentView:
    _scope(request, workspace_id)
    return await _view(d, name, workspace_id, detail=True)


@router.delete("/agents/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_agent(
    request: Request,
    name: str = NamePath,
    workspace_id: str | None = ScopeQuery,
    d: Deps = Depends(get_deps),
) -> Response:
    """Remove a registration (the file's agents cannot be removed here: 404)."""
    scope, user = _scope(request, workspace_id)
    if await registry.delete_agent(d.redis, name, scope, by=user or "") is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no agent {name!r} registered in {scope}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def require_known_agents(d: Deps, workspace_id: str, names: list[str] | None) -> None:
    """422 when a request names an agent the workspace does not know."""
    if not names:
        return
    catalog = await registry.catalog_for(d.redis, d.catalog, workspace_id)
    unknown = catalog.unknown_agents(names)
    if unknown:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"agent_sequence: unknown agents {', '.join(unknown)}",
        )
