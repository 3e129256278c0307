"""Durable approvals: one hash per approval, deadlines in a sorted set.

A decision (by a person or by the timeout) moves an approval out of `pending`
and publishes `ApprovalResolved` in the same Redis transaction, so it happens
exactly once however many gateways or checkpoint replicas race for it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from shared.contract.events import (
    ApprovalNeeded,
    ApprovalResolved,
    ApprovalWithdrawn,
    Envelope,
    new_envelope,
)
from shared.contract.keys import Keys
from shared.contract.records import ApprovalRecord
from shared.messaging.bus import add_publish
from shared.messaging.tx import Tx
from shared.observability.telemetry import observe_approval_decided
from shared.stores import audit

APPROVAL_TTL_S = 30 * 24 * 3600
Decision = Literal["approved", "rejected", "changes_requested"]
log = logging.getLogger("raptorflow.approvals")


class ApprovalConflict(Exception):
    """The approval is no longer pending (already decided or expired)."""

    def __init__(self, approval_id: str, status: str):
        super().__init__(f"approval {approval_id} is already {status}")
        self.status = status


class ApprovalNotFound(KeyError):
    pass


class ApprovalUnreadable(ApprovalNotFound):
    """A stored approval that today's models refuse (written under an older version's
    looser limits): treated as absent, and logged, rather than failing every listing."""


def _deadline_member(workspace_id: str, approval_id: str) -> str:
    return f"{workspace_id}|{approval_id}"


def parse_deadline_member(member: bytes | str) -> tuple[str, str]:
    text = member.decode() if isinstance(member, bytes) else member
    workspace_id, approval_id = text.split("|", 1)
    return workspace_id, approval_id


def add_create(tx: Tx, keys: Keys, needed: Envelope[ApprovalNeeded], now: float) -> None:
    """Queue the writes that create a pending approval (inside a handler's transaction)."""
    p = needed.payload
    key = keys.approval(needed.workspace_id, p.approval_id)
    deadline = p.deadline.timestamp()
    tx.hset(
        key,
        mapping={
            "approval_id": p.approval_id,
            "workspace_id": needed.workspace_id,
            "status": "pending",
            "deadline": str(deadline),
            "created_at": str(now),
            "needed": needed.model_dump_json(),
        },
    )
    tx.expire(key, APPROVAL_TTL_S)
    tx.zadd(
        keys.approval_deadlines(needed.workspace_id),
        {_deadline_member(needed.workspace_id, p.approval_id): deadline}
    )
    tx.sadd(keys.approvals_pending(needed.workspace_id), p.approval_id)


def _record(raw: dict[bytes, bytes]) -> ApprovalRecord:
    data: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
    try:
        data["needed"] = Envelope[ApprovalNeeded].model_validate_json(data.get("needed", ""))
        data["escalated"] = data.get("escalated") == "1"
        return ApprovalRecord.model_validate(data)
    except ValidationError as exc:
        approval_id = data.get("approval_id", "?")
        log.warning("stored approval does not load", extra={"error": f"{approval_id}: {exc}"[:500]})
        raise ApprovalUnreadable(approval_id) from exc


async def _watched(redis: Redis, tx: Pipeline, key: str, approval_id: str) -> ApprovalRecord:
    """WATCH an approval and read it, so a concurrent change aborts the caller's EXEC.

    Read on the client, not on the watching pipeline: a cluster pipeline cannot run
    commands between WATCH and MULTI, and a read after WATCH on any connection is as
    safe (a change after WATCH aborts the EXEC; one before it is seen by the read)."""
    await tx.watch(key)
    raw = await redis.hgetall(key)
    if not raw:
        raise ApprovalNotFound(approval_id)
    return _record(raw)


async def get_approval(
    redis: Redis, keys: Keys, workspace_id: str, approval_id: str
) -> ApprovalRecord:
    raw = await redis.hgetall(keys.approval(workspace_id, approval_id))
    if not raw:
        raise ApprovalNotFound(approval_id)
    return _record(raw)


async def list_pending(redis: Redis, keys: Keys, workspace_id: str) -> list[ApprovalRecord]:
    ids = sorted(m.decode() for m in await redis.smembers(keys.approvals_pending(workspace_id)))
    records = []
    for approval_id in ids:
        try:
            records.append(await get_approval(redis, keys, workspace_id, approval_id))
        except ApprovalNotFound:
            continue
    return sorted(records, key=lambda r: r.deadline)


async def decide(
    redis: Redis,
    keys: Keys,
    workspace_id: str,
    approval_id: str,
    *,
    decision: Decision,
    decided_by: str,
    reason: str = "",
    comments: list[str] | None = None,
    expired: bool = False,
) -> Envelope[ApprovalResolved]:
    """Atomically decide a pending approval and publish ApprovalResolved (exactly once)."""
    key = keys.approval(workspace_id, approval_id)
    async with redis.pipeline(transaction=True) as tx:
        while True:
            try:
                record = await _watched(redis, tx, key, approval_id)
                if record.status != "pending":
                    raise ApprovalConflict(approval_id, record.status)
                now = datetime.now(UTC)
                if expired and record.deadline > now.timestamp():
                    # another replica escalated it after this one saw it due
                    raise ApprovalConflict(approval_id, "escalated")
                needed = record.needed
                resolved = new_envelope(
                    ApprovalResolved(
                        approval_id=approval_id,
                        decision=decision,
                        decided_by=decided_by,
                        decided_at=now,
                        reason=reason,
                        comments=comments or [],
                        expired=expired,
                    ),
                    workspace_id=workspace_id,
                    context=needed.context,
                    user_id=needed.user_id,
                    correlation_id=needed.correlation_id,
                    causation_id=needed.event_id,
                )
                tx.multi()
                _queue_decision(tx, keys, needed, resolved)
                await tx.execute()
                observe_approval_decided(decision, expired, now.timestamp() - record.created_at)
                return resolved
            except WatchError:
                continue


def _queue_decision(
    tx: Pipeline,
    keys: Keys,
    needed: Envelope[ApprovalNeeded],
    resolved: Envelope[ApprovalResolved],
) -> None:
    """The decision's writes: the record, out of the deadline and pending sets, the event
    and the audit entry, all in the caller's transaction."""
    workspace_id, decided = resolved.workspace_id, resolved.payload
    approval_id = decided.approval_id
    tx.hset(
        keys.approval(workspace_id, approval_id),
        mapping={
            "status": "expired" if decided.expired else decided.decision,
            "decided_by": decided.decided_by,
            "decided_at": str(decided.decided_at.timestamp()),
            "reason": decided.reason,
        },
    )
    tx.zrem(keys.approval_deadlines(workspace_id), _deadline_member(workspace_id, approval_id))
    tx.srem(keys.approvals_pending(workspace_id), approval_id)
    add_publish(tx, keys.layout, resolved)
    audit.add_entry(tx, keys, workspace_id, decision_entry(needed.payload, decided))


async def withdraw(
    redis: Redis,
    keys: Keys,
    workspace_id: str,
    approval_id: str,
    *,
    reason: Literal["cancelled", "deadline"],
) -> Envelope[ApprovalWithdrawn] | None:
    """Take a pending approval off the list because its task ended (ApprovalWithdrawn, once);
    None when it was no longer pending."""
    key = keys.approval(workspace_id, approval_id)
    async with redis.pipeline(transaction=True) as tx:
        while True:
            try:
                record = await _watched(redis, tx, key, approval_id)
                if record.status != "pending":
                    return None
                needed = record.needed
                withdrawn = needed.follow(
                    ApprovalWithdrawn(
                        approval_id=approval_id,
                        task_id=needed.payload.workflow.task_id,
                        reason=reason,
                    )
                )
                tx.multi()
                tx.hset(key, mapping={"status": "withdrawn", "reason": f"task {reason}"})
                tx.zrem(
                    keys.approval_deadlines(workspace_id),
                    _deadline_member(workspace_id, approval_id),
                )
                tx.srem(keys.approvals_pending(workspace_id), approval_id)
                add_publish(tx, keys.layout, withdrawn)
                await tx.execute()
                return withdrawn
            except WatchError:
                continue


async def withdraw_for_task(
    redis: Redis,
    keys: Keys,
    workspace_id: str,
    task_id: str,
    *,
    reason: Literal["cancelled", "deadline"],
) -> list[Envelope[ApprovalWithdrawn]]:
    """Withdraw every pending approval of one task (its workspace's pending list is short)."""
    withdrawn = []
    for record in await list_pending(redis, keys, workspace_id):
        if record.needed.correlation_id == task_id:
            event = await withdraw(redis, keys, workspace_id, record.approval_id, reason=reason)
            if event is not None:
                withdrawn.append(event)
    return withdrawn


async def escalate(
    redis: Redis, keys: Keys, workspace_id: str, approval_id: str, extend_s: float
) -> bool:
    """Give a timed-out approval one more period (once, across racing replicas)."""
    key = keys.approval(workspace_id, approval_id)
    async with redis.pipeline(transaction=True) as tx:
        while True:
            try:
                record = await _watched(redis, tx, key, approval_id)
                if record.escalated or record.status != "pending":
                    return False
                deadline = datetime.now(UTC).timestamp() + extend_s
                member = _deadline_member(workspace_id, approval_id)
                tx.multi()
                tx.hset(key, mapping={"escalated": "1", "deadline": str(deadline)})
                tx.zadd(keys.approval_deadlines(workspace_id), {member: deadline})
                audit.add_entry(
                    tx,
                    keys,
                    workspace_id,
                    audit.AuditEntry(
                        kind="escalation",
                        task_id=record.needed.payload.workflow.task_id,
                        checkpoint=record.needed.payload.checkpoint,
                        data={"approval_id": approval_id, "new_deadline": deadline},
                    ),
                )
                await tx.execute()
                return True
            except WatchError:
                continue


def decision_entry(needed: ApprovalNeeded, resolved: ApprovalResolved) -> audit.AuditEntry:
    """The audit entry of a decision: who, when, what, and why."""
    return audit.AuditEntry(
        kind="decision",
        task_id=needed.workflow.task_id,
        checkpoint=needed.checkpoint,
        at=resolved.decided_at,
        data={
            "approval_id": resolved.approval_id,
            "decision": resolved.decision,
            "decided_by": resolved.decided_by,
            "reason": resolved.reason,
            "comments": resolved.comments,
            "expired": resolved.expired,
        },
    )


async def due_approvals(
    redis: Redis, keys: Keys, now: float, limit: int = 100
) -> list[tuple[str, str]]:
    """Overdue approvals of every partition (one sorted set per partition)."""
    due: list[tuple[str, str]] = []
    for deadlines in keys.all_approval_deadlines():
        members = await redis.zrangebyscore(deadlines, "-inf", now, start=0, num=limit)
        due += [parse_deadline_member(m) for m in members]
    return due
