"""Webhook notifications: per-workspace config, signatures, and delivery records in Redis.

The gateway writes the config, the notifier service delivers, and a receiver
verifies with `verify_signature`. The signature is HMAC-SHA256 over
`"{timestamp}.{body}"` with the workspace's secret, sent as
`X-RaptorFlow-Signature: t=<timestamp>,v1=<hex>` (the scheme Stripe uses, so
receivers know how to check it and reject replays by the timestamp).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr
from redis.asyncio import Redis

from shared.contract.keys import Keys
from shared.messaging.tx import Tx
from shared.stores.stored import ConfigUnreadable as ConfigUnreadable  # callers catch it here
from shared.stores.stored import load

SIGNATURE_HEADER = "X-RaptorFlow-Signature"
EVENT_HEADER = "X-RaptorFlow-Event"
DELIVERY_HEADER = "X-RaptorFlow-Delivery"
DEFAULT_TOLERANCE_S = 300
DELIVERY_TTL_S = 30 * 24 * 3600


class WebhookConfig(BaseModel):
    """Where a workspace's approval notifications go, and the secret that signs them."""

    urls: list[AnyHttpUrl] = Field(default_factory=list, max_length=10)
    secret: SecretStr = Field(description="HMAC-SHA256 key; never logged, never returned by GET.")

    def stored_json(self) -> str:
        return json.dumps(
            {"urls": [str(u) for u in self.urls], "secret": self.secret.get_secret_value()}
        )


class TargetStatus(BaseModel):
    """Delivery of one notification to one URL."""

    url: str
    status: str = Field(description="pending, delivered or failed (attempts exhausted).")
    attempts: int = 0
    last_status: int | None = Field(default=None, description="Last HTTP status (None: no reply).")
    last_error: str = ""
    delivered_at: float | None = None
    next_attempt_at: float | None = None


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for a body sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: str, header: str, body: bytes, now: float, tolerance_s: int = DEFAULT_TOLERANCE_S
) -> bool:
    """What a receiver runs: the signature matches and the timestamp is recent."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


async def load_config(redis: Redis, keys: Keys, workspace_id: str) -> WebhookConfig | None:
    """The workspace's configuration (None: none set); ConfigUnreadable when it is stored
    but does not load, so the caller can say so instead of failing."""
    return await load(
        redis,
        keys.webhooks_config(workspace_id),
        WebhookConfig,
        "webhook configuration",
        f"PUT /workspaces/{workspace_id}/webhooks replaces it",
    )


async def save_config(redis: Redis, keys: Keys, workspace_id: str, config: WebhookConfig) -> None:
    await redis.set(keys.webhooks_config(workspace_id), config.stored_json())


def add_delivery(
    tx: Tx, keys: Keys,
    workspace_id: str,
    approval_id: str,
    body: bytes,
    urls: list[str],
    now: float,
    event_type: str = "ApprovalNeeded",
) -> None:
    """Queue a delivery record and its outbox entries (inside the notifier's transaction).
    `approval_id` names the delivery: an approval's later notices use `<id>.<suffix>`."""
    key = keys.webhook_delivery(workspace_id, approval_id)
    fields: dict[str, Any] = {"body": body, "targets": str(len(urls)), "event": event_type}
    for n, url in enumerate(urls):
        fields |= {f"{n}:url": url, f"{n}:status": "pending", f"{n}:attempts": "0"}
    tx.hset(key, mapping=fields)
    tx.expire(key, DELIVERY_TTL_S)
    tx.zadd(
        keys.webhook_outbox(workspace_id),
        {outbox_member(workspace_id, approval_id, n): now for n in range(len(urls))},
    )


def outbox_member(workspace_id: str, approval_id: str, target: int) -> str:
    return f"{workspace_id}|{approval_id}|{target}"


def parse_outbox_member(member: bytes | str) -> tuple[str, str, int]:
    text = member.decode() if isinstance(member, bytes) else member
    workspace_id, approval_id, target = text.split("|", 2)
    return workspace_id, approval_id, int(target)


def _target(fields: dict[str, str], n: int) -> TargetStatus:
    def number(name: str) -> float | None:
        value = fields.get(f"{n}:{name}")
        return float(value) if value else None

    last_status = fields.get(f"{n}:last_status")
    return TargetStatus(
        url=fields[f"{n}:url"],
        status=fields.get(f"{n}:status", "pending"),
        attempts=int(fields.get(f"{n}:attempts", "0")),
        last_status=int(last_status) if last_status else None,
        last_error=fields.get(f"{n}:last_error", ""),
        delivered_at=number("delivered_at"),
        next_attempt_at=number("next_attempt_at"),
    )


async def delivery_status(
    redis: Redis, keys: Keys, workspace_id: str, approval_id: str
) -> list[TargetStatus]:
    """Per target URL: attempts, last HTTP status, delivered_at (empty: no webhooks)."""
    raw = await redis.hgetall(keys.webhook_delivery(workspace_id, approval_id))
    fields = {k.decode(): v.decode() for k, v in raw.items() if k != b"body"}
    return [_target(fields, n) for n in range(int(fields.get("targets", "0")))]
