"""What every route needs from the request: the process's `Deps`, and the key check.

Both live on `app.state` (set by `create_app`), so each router is a plain module-level
`APIRouter` that can be mounted and tested on its own.
"""

from __future__ import annotations

from fastapi import Path, Query, Request

from services.gateway.auth import KeyRing, authorize
from shared.app.runtime import Deps

WORKSPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
WorkspaceQuery = Query(pattern=WORKSPACE_PATTERN)
WorkspacePath = Path(pattern=WORKSPACE_PATTERN)


def get_deps(request: Request) -> Deps:
    """The process's dependencies (a FastAPI dependency)."""
    return request.app.state.deps  # type: ignore[no-any-return]


def key_ring(request: Request) -> KeyRing:
    """The configured API keys; an empty ring when none are set (open access)."""
    return request.app.state.key_ring  # type: ignore[no-any-return]


def allow(request: Request, workspace_id: str) -> str | None:
    """401 without a valid key, 403 outside the key's workspaces; else the key's user."""
    return authorize(request, key_ring(request), workspace_id)
