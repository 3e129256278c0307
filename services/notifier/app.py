"""Notifier service: ApprovalNeeded, ApprovalWithdrawn -> signed webhook deliveries, retried
with backoff.

Its own consumer group on the ApprovalNeeded stream, so a slow or failing
webhook never delays gating. The handler only records the delivery and queues
it in a durable outbox (a sorted set by next attempt time); a background loop
leases due entries, POSTs them, and records every attempt, so a crash loses
no notification and a retry survives a restart.

The URLs are tenants': every POST goes through the outbound-address guard
(`shared.egress`), a refused one fails at once, and the record a tenant reads says
only "refused by policy" or "delivery failed" (the network's error goes to the log).
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
from shared.contract.events import ApprovalNeeded, ApprovalWithdrawn, Envelope
from shared.egress import guard
from shared.messaging.tx import Tx
from shared.stores import approvals, tasks, webhooks

SERVICE = "notifier"
LEASE_S = 30.0
HTTP_TIMEOUT_S = 10.0
ATTEMPT_TIMEOUT_S = 20.0  # the whole attempt: a receiver trickling headers cannot hold it longer
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
    stopped = await tasks.stop_reason(
        deps.redis, deps.keys, event.workspace_id, event.correlation_id
    )
    if stopped is not None:
        # The checkpoint created this approval while the task was being cancelled (or ran
        # out of time): nobody is asked; it is withdrawn instead (once, under WATCH).
        await approvals.withdraw(
            deps.redis,
            deps.keys,
            event.workspace_id,
            event.payload.approval_id,
            reason="cancelled" if stopped == "cancelled" else "deadline",
        )
        return ()
    try:
        config = await webhooks.load_config(deps.redis, deps.keys, event.workspace_id)
    except webhooks.ConfigUnreadable as exc:  # no URL to send to; the approval still waits
        log.warning("webhooks not sent", extra={"service": SERVICE, "error": str(exc)})
        return ()
    if config is None or not config.urls:
        return ()
    webhooks.add_delivery(
        tx,
        deps.keys,
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
    config = await webhooks.load_config(deps.redis, deps.keys, event.workspace_id)
    if config is None or not config.urls:
        return ()
    webhooks.add_delivery(
        tx,
        deps.keys,
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
    for outbox in deps.keys.all_webhook_outboxes():
        members = await deps.redis.eval(
            _LEASE_DUE, 1, outbox, str(now), str(now + LEASE_S), str(limit)
        )
        leased += [webhooks.parse_outbox_member(m) for m in members]
    return leased


async def _post(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], workspace_id: str
) -> tuple[int | None, str, bool]:
    """(HTTP status, what the tenant may see of a failure, refused by policy). Streamed and
    never read, so a receiver's body cannot fill our memory; bounded in time as a whole."""
    try:
        async with (
            asyncio.timeout(ATTEMPT_TIMEOUT_S),
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            return response.status_code, "", False
    except (httpx.HTTPError, TimeoutError) as exc:
        log.warning(
            "webhook attempt failed",
            extra={
                "service": SERVICE,
                "workspace_id": workspace_id,
                "error": f"{type(exc).__name__}: {exc}"[:500],
            },
        )
        return None, guard.tenant_message(exc), isinstance(exc, guard.EgressRefused)


async def deliver_one(
    deps: Deps, client: httpx.AsyncClient, workspace_id: str, approval_id: str, target: int
) -> logic.Verdict:
    """One attempt at one target; records the attempt and reschedules or finishes it."""
    key = deps.keys.webhook_delivery(workspace_id, approval_id)
    member = webhooks.outbox_member(workspace_id, approval_id, target)
    body, url, attempts_raw, event_type = await deps.redis.hmget(
        key, ["body", f"{target}:url", f"{target}:attempts", "event"]
    )
    try:
        config = await webhooks.load_config(deps.redis, deps.keys, workspace_id)
    except webhooks.ConfigUnreadable:
        config = None
    if body is None or url is None or config is None:
        await deps.redis.zrem(deps.keys.webhook_outbox(workspace_id), member)
        return "failed"
    attempts = int(attempts_raw or b"0") + 1
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        webhooks.SIGNATURE_HEADER: webhooks.sign(config.secret.get_secret_value(), timestamp, body),
        webhooks.EVENT_HEADER: event_type.decode() if event_type else "ApprovalNeeded",
        webhooks.DELIVERY_HEADER: f"{approval_id}/{target}",
    }
    status_code, error, refused = await _post(client, url.decode(), body, headers, workspace_id)
    verdict = "failed" if refused else logic.verdict(status_code, attempts)
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
            tx.zrem(deps.keys.webhook_outbox(workspace_id), member)
        elif verdict == "failed":
            tx.zrem(deps.keys.webhook_outbox(workspace_id), member)
        else:
            next_at = now + logic.backoff_s(attempts)
            fields[f"{target}:next_attempt_at"] = str(next_at)
            tx.zadd(deps.keys.webhook_outbox(workspace_id), {member: next_at})
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
    policy = guard.policy_for(deps.settings.egress_allow)
    async with guard.guarded_client(policy, timeout=HTTP_TIMEOUT_S) as client:
        await every(interval, lambda: dispatch_once(deps, client), "webhook dispatch")


def build(deps: Deps) -> Service:
    service, bus = new_service(SERVICE, deps)

    async def needed(event: Envelope[ApprovalNeeded], tx: Tx) -> Sequence[Envelope[Any]]:
        return await on_approval_needed(event, tx, deps=deps)

    async def withdrawn(event: Envelope[ApprovalWithdrawn], tx: Tx) -> Sequence[Envelope[Any]]:
        return await on_approval_withdrawn(event, tx, deps=deps)

    # A lost notification leaves the approval waiting (on the approvals page): the task goes on.
    bus.on(ApprovalNeeded, needed, dead_letter_ends_task=False)
    bus.on(ApprovalWithdrawn, withdrawn, dead_letter_ends_task=False)
    service.background.append(lambda: dispatch_forever(deps))
    return service
