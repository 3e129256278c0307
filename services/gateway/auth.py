"""API keys: when configured, every request needs a key, and a key opens only its workspaces."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import HTTPException, Request, status

WILDCARD = "*"


@dataclass(frozen=True)
class KeyRing:
    """key -> workspaces it may use ('*' for all). Empty ring: auth is off."""

    grants: dict[str, frozenset[str]]

    @classmethod
    def parse(cls, spec: str | None) -> KeyRing:
        """`key1=ws1|ws2,key2=*` (from RAPTORFLOW_API_KEYS)."""
        grants: dict[str, set[str]] = {}
        for item in (spec or "").split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, workspaces = item.partition("=")
            if not sep or not key or not workspaces:
                raise ValueError("RAPTORFLOW_API_KEYS entries must look like key=workspace")
            grants.setdefault(key.strip(), set()).update(w.strip() for w in workspaces.split("|"))
        return cls({k: frozenset(v) for k, v in grants.items()})

    @property
    def enabled(self) -> bool:
        return bool(self.grants)

    def workspaces_for(self, presented: str) -> frozenset[str] | None:
        for key, workspaces in self.grants.items():
            if hmac.compare_digest(key.encode(), presented.encode()):
                return workspaces
        return None


def presented_key(request: Request) -> str | None:
    header = request.headers.get("x-api-key")
    if header:
        return header
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


def authorize(request: Request, ring: KeyRing, workspace_id: str) -> None:
    """401 without a valid key, 403 for a workspace the key does not open."""
    if not ring.enabled:
        return
    key = presented_key(request)
    workspaces = ring.workspaces_for(key) if key else None
    if workspaces is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if WILDCARD not in workspaces and workspace_id not in workspaces:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"this API key may not access workspace {workspace_id}",
        )
