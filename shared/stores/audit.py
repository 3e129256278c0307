"""The checkpoint audit trail: one capped Redis stream per workspace.

Entries are queued on the caller's transaction (the checkpoint handler's `tx`,
or `approvals.decide`'s), so an evaluation or a decision is audited exactly
when its effects are committed, never without them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from shared.contract.keys import Keys
from shared.contract.models import CheckpointEvaluation
from shared.messaging.tx import Tx

AUDIT_MAXLEN = 10_000
AuditKind = Literal["evaluation", "decision", "escalation"]


class AuditEntry(BaseModel):
    """One audited fact about a checkpoint of a task."""

    kind: AuditKind
    task_id: str
    checkpoint: str = ""
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    entry_id: str = Field(default="", description="The stream entry id (set when read).")
    data: dict[str, Any] = Field(default_factory=dict)


def evaluation_entry(
    task_id: str,
    evaluation: CheckpointEvaluation,
    *,
    condition: str,
    agent: str,
    stage_index: int,
    approval_id: str | None = None,
) -> AuditEntry:
    return AuditEntry(
        kind="evaluation",
        task_id=task_id,
        checkpoint=evaluation.checkpoint,
        data={
            "status": evaluation.status,
            "reasons": evaluation.reasons,
            "rules": [r.model_dump() for r in evaluation.rules],
            "condition": condition,
            "agent": agent,
            "stage_index": stage_index,
            "approval_id": approval_id,
        },
    )


def add_entry(tx: Tx, keys: Keys, workspace_id: str, entry: AuditEntry) -> None:
    """Queue an XADD of the entry on the workspace's audit stream."""
    tx.xadd(
        keys.audit(workspace_id),
        {
            "kind": entry.kind,
            "task_id": entry.task_id,
            "checkpoint": entry.checkpoint,
            "at": entry.at.isoformat(),
            "data": json.dumps(entry.data, default=str),
        },
        maxlen=AUDIT_MAXLEN,
        approximate=True,
    )


def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> AuditEntry:
    values = {k.decode(): v.decode() for k, v in fields.items()}
    return AuditEntry(
        kind=values["kind"],  # type: ignore[arg-type]
        task_id=values["task_id"],
        checkpoint=values.get("checkpoint", ""),
        at=datetime.fromisoformat(values["at"]),
        entry_id=entry_id.decode(),
        data=json.loads(values.get("data", "{}")),
    )


async def list_for_task(
    redis: Redis, keys: Keys, workspace_id: str, task_id: str, *, scan: int = AUDIT_MAXLEN
) -> list[AuditEntry]:
    """Entries of one task, oldest first (scans the workspace's capped stream)."""
    raw = await redis.xrevrange(keys.audit(workspace_id), count=scan)
    entries = [
        _entry(entry_id, fields)
        for entry_id, fields in raw
        if fields.get(b"task_id", b"").decode() == task_id
    ]
    return entries[::-1]
