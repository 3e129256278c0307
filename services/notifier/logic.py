"""Notifier decisions without I/O: what a notification says, and when to try again."""

from __future__ import annotations

import json
from typing import Literal

from shared.contract.events import ApprovalNeeded, ApprovalWithdrawn, Envelope

MAX_ATTEMPTS = 8
BASE_BACKOFF_S = 0.5
MAX_BACKOFF_S = 300.0
Verdict = Literal["delivered", "retry", "failed"]


def notification_body(needed: Envelope[ApprovalNeeded]) -> bytes:
    """The JSON a webhook receives: enough to decide, or to link to the approvals page."""
    p = needed.payload
    ctx = needed.context
    return json.dumps(
        {
            "type": "ApprovalNeeded",
            "event_id": needed.event_id,
            "approval_id": p.approval_id,
            "workspace_id": needed.workspace_id,
            "task_id": p.workflow.task_id,
            "user_id": needed.user_id,
            "goal": p.workflow.goal,
            "checkpoint": p.checkpoint,
            "condition": str(p.condition),
            "agent": p.agent,
            "stage_index": p.workflow.stage_index,
            "stage_output": p.stage_output,
            "evaluation": p.evaluation.model_dump(mode="json"),
            "context_summary": {
                "brand_voice": ctx.brand_voice,
                "target_icps": ctx.target_icps,
                "past_successes": len(ctx.past_successes),
                "task_history": len(ctx.task_history),
            },
            "deadline": p.deadline.isoformat(),
        },
        sort_keys=True,
    ).encode()


def verdict(status_code: int | None, attempts: int, max_attempts: int = MAX_ATTEMPTS) -> Verdict:
    """2xx delivers; anything else retries until the attempts run out."""
    if status_code is not None and 200 <= status_code < 300:
        return "delivered"
    return "failed" if attempts >= max_attempts else "retry"


def backoff_s(attempts: int, base: float = BASE_BACKOFF_S, cap: float = MAX_BACKOFF_S) -> float:
    """Exponential: base, 2*base, 4*base, ... after the 1st, 2nd, 3rd failed attempt."""
    return float(min(base * 2 ** max(attempts - 1, 0), cap))


def withdrawal_body(withdrawn: Envelope[ApprovalWithdrawn]) -> bytes:
    """The JSON a webhook receives when an approval it was told about needs no decision."""
    p = withdrawn.payload
    return json.dumps(
        {
            "type": "ApprovalWithdrawn",
            "event_id": withdrawn.event_id,
            "approval_id": p.approval_id,
            "workspace_id": withdrawn.workspace_id,
            "task_id": p.task_id,
            "reason": p.reason,
            "withdrawn_at": p.withdrawn_at.isoformat(),
        }
    ).encode()
