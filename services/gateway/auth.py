"""API keys: when configured, every request needs a key, and a key opens only its workspaces.

A key may also name the user who holds it (`key=ws:alice`): decisions made
with it are then recorded as that user's and cannot claim to be anyone else's.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import HTTPException, Request, status

WILDCARD = "*"
KEY_COOKIE = "raptorflow_key"


@dataclass(frozen=True)
class KeyRing:
    """key -> {workspace ('*' for all): user the key names there, or None}. Empty: auth off."""

    grants: dict[str, dict[str, str | None]]

    @classmethod
    def parse(cls, spec: str | None) -> KeyRing:
        """`key1=ws1|ws2,key2=*,key3=ws1:alice|ws2:alice` (from RAPTORFLOW_API_KEYS)."""
        grants: dict[str, dict[str, str | None]] = {}
        for item in (spec or "").split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, workspaces = item.partition("=")
            if not sep or not key or not workspaces:
                raise ValueError("RAPTORFLOW_API_KEYS entries must look like key=workspace")
            entry = grants.setdefault(key.strip(), {})
            for grant in workspaces.split("|"):
                workspace, has_user, user = grant.strip().partition(":")
                if not workspace or (has_user and not user.strip()):
                    raise ValueError(
                        "RAPTORFLOW_API_KEYS grants must look like workspace or workspace:user"
                    )
                entry[workspace] = user.strip() or None
        return cls(grants)

    @property
    def enabled(self) -> bool:
        return bool(self.grants)

    def _grant(self, presented: str) -> dict[str, str | None] | None:
        for key, grant in self.grants.items():
            if hmac.compare_digest(key.encode(), presented.encode()):
                return grant
        return None

    def is_admin(self, presented: str | None) -> bool:
        """Whether the key opens every workspace (`key=*`): an operator's key."""
        grant = self._grant(presented) if presented else None
        return grant is not None and WILDCARD in grant

    def workspaces_for(self, presented: str) -> frozenset[str] | None:
        grant = self._grant(presented)
        return None if grant is None else frozenset(grant)

    def check(self, presented: str | None, workspace_id: str) -> str | None:
        """The user the key names in this workspace (None: an unnamed key); raises 401/403."""
        grant = self._grant(presented) if presented else None
        if grant is None:
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail="missing or invalid API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if workspace_id in grant:
            return grant[workspace_id]
        if WILDCARD in grant:
            return grant[WILDCARD]
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"this API key may not access workspace {workspace_id}",
        )


def presented_key(request: Request) -> str | None:
    header = request.headers.get("x-api-key")
    if header:
        return header
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


def authorize(request: Request, ring: KeyRing, workspace_id: str) -> str | None:
    """401 without a valid key, 403 for a workspace the key does not open; else the key's user."""
    if not ring.enabled:
        return None
    return ring.check(presented_key(request), workspace_id)


def decider(key_user: str | None, claimed: str | None) -> str:
    """Who a decision is recorded as: the key's user; a different claim is refused (403)."""
    if key_user is not None:
        if claimed is not None and claimed != key_user:
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"this API key belongs to {key_user}; it cannot decide as {claimed}",
            )
        return key_user
    if not claimed:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="decided_by: required when the API key names no user",
        )
    return claimed
