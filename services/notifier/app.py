"""Notifier service: ApprovalNeeded, ApprovalWithdrawn -> signed webhook deliveries, retried
with backoff.

Its own consumer group on the ApprovalNeeded stream, so a slow or failing
webhook never delays gating. The handler only records the delivery and queues
it in a durable outbox (a sorted set by next attempt time); a background loop
leases due entries, POSTs them, and records every attempt, so a crash loses
no notification and a retry survives a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import httpx

from services.notifier import logic
from shared.app.runtime import Deps, Service, every, new_service
from shared.contract import keys
from shared.contract.events import ApprovalNeeded, ApprovalWithdrawn, Envelope
from shared.messaging.tx import Tx
from shared.stores import approvals, tasks, webhooks

SERVICE = "notifier"
LEASE_S = 30.0
HTTP_TIMEOUT_S = 10.0
BATCH = 20

log = logging.getLogger("raptorflow.notifier")

# Atomically take due outbox entries and push them LEASE_S ahead, so two replicas
# never send the same attempt and a crashed one's entries come due again.
_LEASE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], member) end
return due
"""


async def on_approval_needed(
    event: Envelope[ApprovalNeeded], tx: Tx, *, deps: Deps
) -> Sequence[Envelope[Any]]:
    stopped = await tasks.stop_reason(deps.redis, event.workspace_id, event.correlation_id)
    if stopped is not None:
        # The checkpoint created this approval while the task was being cancelled (or ran
        # out of time): nobody is asked; it is withdrawn instead (once, under WATCH).
        await approvals.withdraw(
            deps.redis, event.workspace_id, event.payload.approval_id,
            reason="cancelled" if stopped == "cancelled" else "deadline",
        )
        return ()
    config = await webhooks.load_config(deps.redis, event.workspace_id)
    if config is None or not config.urls:
        return ()
    webhooks.add_delivery(
        tx,
        event.workspace_id,
        event.payload.approval_id,
        logic.notification_body(event),
        [str(u) for u in config.urls],
        time.time(),
    )
    return ()


async def on_approval_withdrawn(
    event: Envelope[ApprovalWithdrawn], tx: Tx, *, deps: Deps
) -> Sequence[Envelope[Any]]:
    """Tell the webhook that a pending approval no longer needs a decision."""
    config = await webhooks.load_config(deps.redis, event.workspace_id)
    if config is None or not config.urls:
        return ()
    webhooks.add_delivery(
        tx,
        event.workspace_id,
        f"{event.payload.approval_id}.withdrawn",
        logic.withdrawal_body(event),
        [str(u) for u in config.urls],
        time.time(),
        event_type="ApprovalWithdrawn",
    )
    return ()


async def lease_due(deps: Deps, now: float, limit: int = BATCH) -> list[tuple[str, str, int]]:
    """Due entries of every partition's outbox (one sorted set per partition)."""
    leased: list[tuple[str, str, int]] = []
    for outbox in keys.all_webhook_outboxes():
        members = await deps.redis.eval(
            _LEASE_DUE, 1, outbox, str(now), str(now + LEASE_S), str(limit)
        )
        leased += [webhooks.parse_outbox_member(m) for m in members]
    return leased


async def deliver_one(
    deps: Deps, client: httpx.AsyncClient, workspace_id: str, approval_id: str, target: int
) -> logic.Verdict:
    """One attempt at one target; records the attempt and reschedules or finishes it."""
    key = keys.webhook_delivery(workspace_id, approval_id)
    member = webhooks.outbox_member(workspace_id, approval_id, target)
    body, url, attempts_raw, event_type = await deps.redis.hmget(
        key, ["body", f"{target}:url", f"{target}:attempts", "event"]
    )
    config = await webhooks.load_config(deps.redis, workspace_id)
    if body is None or url is None or config is None:
        await deps.redis.zrem(keys.webhook_outbox(workspace_id), member)
        return "failed"
    attempts = int(attempts_raw or b"0") + 1
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        webhooks.SIGNATURE_HEADER: webhooks.sign(config.secret.get_secret_value(), timestamp, body),
        webhooks.EVENT_HEADER: event_type.decode() if event_type else "ApprovalNeeded",
        webhooks.DELIVERY_HEADER: f"{approval_id}/{target}",
    }
    status_code: int | None = None
    error = ""
    try:
        response = await client.post(url.decode(), content=body, headers=headers)
        status_code = response.status_code
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    verdict = logic.verdict(status_code, attempts)
    now = time.time()
    fields: dict[str, str] = {
        f"{target}:attempts": str(attempts),
        f"{target}:last_status": str(status_code or ""),
        f"{target}:last_error": error,
        f"{target}:status": "pending" if verdict == "retry" else verdict,
    }
    async with deps.redis.pipeline(transaction=True) as tx:
        if verdict == "delivered":
            fields[f"{target}:delivered_at"] = str(now)
            tx.zrem(keys.webhook_outbox(workspace_id), member)
        elif verdict == "failed":
            tx.zrem(keys.webhook_outbox(workspace_id), member)
        else:
            next_at = now + logic.backoff_s(attempts)
            fields[f"{target}:next_attempt_at"] = str(next_at)
            tx.zadd(keys.webhook_outbox(workspace_id), {member: next_at})
        tx.hset(key, mapping=fields)
        await tx.execute()
    log.info(
        "webhook attempt",
        extra={
            "service": SERVICE,
            "workspace_id": workspace_id,
            "reason": verdict,
            "error": error or f"HTTP {status_code}",
        },
    )
    return verdict


async def dispatch_once(deps: Deps, client: httpx.AsyncClient) -> int:
    due = await lease_due(deps, time.time())
    await asyncio.gather(*(deliver_one(deps, client, *entry) for entry in due))
    return len(due)


async def dispatch_forever(deps: Deps) -> None:
    interval = max(deps.settings.poll_interval_ms / 1000, 0.05)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
        await every(interval, lambda: dispatch_once(deps, client), "webhook dispatch")


def build(deps: Deps) -> Service:
    service, bus = new_service(SERVICE, deps)

    async def needed(event: Envelope[ApprovalNeeded], tx: Tx) -> Sequence[Envelope[Any]]:
        return await on_approval_needed(event, tx, deps=deps)

    async def withdrawn(
        event: Envelope[ApprovalWithdrawn], tx: Tx
    ) -> Sequence[Envelope[Any]]:
        return await on_approval_withdrawn(event, tx, deps=deps)

    bus.on(ApprovalNeeded, needed)
    bus.on(ApprovalWithdrawn, withdrawn)
    service.background.append(lambda: dispatch_forever(deps))
    return service
