"""Deciding an approval from a console form, under one set of rules for both pages that
offer it (the approvals page and a task's page)."""

from __future__ import annotations

from fastapi import HTTPException, status

from services.gateway.auth import decider
from shared.app.runtime import Deps
from shared.contract.events import ApprovalResolved, Envelope
from shared.stores import approvals

ACTIONS: dict[str, approvals.Decision] = {
    "approve": "approved",
    "reject": "rejected",
    "changes": "changes_requested",
}


async def decide_from_form(
    deps: Deps,
    user: str | None,
    workspace_id: str,
    approval_id: str,
    *,
    action: str,
    decided_by: str,
    reason: str,
    comments: str,
) -> Envelope[ApprovalResolved]:
    """The decision, made as `user` (a key's user overrides the name typed in the form).
    422 when changes are requested without a comment; ApprovalNotFound or ApprovalConflict
    from the store."""
    lines = [c.strip() for c in comments.splitlines() if c.strip()]
    who = decider(user, decided_by.strip() or None)
    if action == "changes" and not lines:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="comments are required")
    return await approvals.decide(
        deps.redis,
        deps.keys,
        workspace_id,
        approval_id,
        decision=ACTIONS[action],
        decided_by=who,
        reason=reason.strip(),
        comments=lines,
    )
