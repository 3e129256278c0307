"""Pending agent invocations and their durable deadlines (as approval deadlines are).

An AgentInvoked envelope is stored until its AgentResult settles it, with its
deadline in a per-partition sorted set, written in the same transaction that
publishes it. Whoever settles an invocation first (a result, or the timeout
sweep) claims it with SET NX, so a late answer and a timeout never both act.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from shared.contract.events import AgentInvoked, Envelope, envelope_class
from shared.contract.keys import Keys

TIMEOUT_OWNER = "timeout"
KEEP_AFTER_DEADLINE_S = 24 * 3600


def add_pending(tx: Pipeline, keys: Keys, event: Envelope[AgentInvoked]) -> None:
    """Queue the invocation and its deadline (inside the publishing transaction)."""
    invoked = event.payload
    ws = event.workspace_id
    ttl = int(max(invoked.deadline.timestamp() - event.occurred_at.timestamp(), 0))
    tx.set(
        keys.agent_pending(ws, invoked.invocation_id),
        event.model_dump_json(),
        ex=ttl + KEEP_AFTER_DEADLINE_S,
    )
    tx.zadd(
        keys.agent_deadlines(ws), {_member(ws, invoked.invocation_id): invoked.deadline.timestamp()}
    )


def settle(tx: Pipeline, keys: Keys, workspace_id: str, invocation_id: str) -> None:
    """Queue the removal of a settled invocation and its deadline."""
    tx.delete(keys.agent_pending(workspace_id, invocation_id))
    tx.zrem(keys.agent_deadlines(workspace_id), _member(workspace_id, invocation_id))


async def load_pending(
    redis: Redis, keys: Keys, workspace_id: str, invocation_id: str
) -> Envelope[AgentInvoked] | None:
    raw = await redis.get(keys.agent_pending(workspace_id, invocation_id))
    if raw is None:
        return None
    model: type[Envelope[Any]] = envelope_class(AgentInvoked)
    return model.model_validate_json(raw)


async def claim(
    redis: Redis, keys: Keys, workspace_id: str, invocation_id: str, owner: str
) -> bool:
    """True for whoever settles the invocation: the first claimer, or that same one again."""
    key = keys.agent_answered(workspace_id, invocation_id)
    if await redis.set(key, owner, nx=True, ex=KEEP_AFTER_DEADLINE_S):
        return True
    current = await redis.get(key)
    return current is not None and current.decode() == owner


async def due(redis: Redis, keys: Keys, now: float, limit: int = 100) -> list[tuple[str, str]]:
    """(workspace, invocation id) of every overdue invocation, all partitions."""
    out: list[tuple[str, str]] = []
    for deadlines in keys.all_agent_deadlines():
        members = await redis.zrangebyscore(deadlines, "-inf", now, start=0, num=limit)
        for member in members:
            workspace_id, _, invocation_id = member.decode().partition("|")
            out.append((workspace_id, invocation_id))
    return out


async def postpone(
    redis: Redis, keys: Keys, workspace_id: str, invocation_id: str, at: float
) -> None:
    """Look at an invocation's deadline again at `at` (a result is being handled)."""
    await redis.zadd(keys.agent_deadlines(workspace_id), {_member(workspace_id, invocation_id): at})


async def take_over(
    redis: Redis, keys: Keys, workspace_id: str, invocation_id: str, owner: str
) -> None:
    """Claim an invocation whose first claimer never settled it."""
    key = keys.agent_answered(workspace_id, invocation_id)
    await redis.set(key, owner, ex=KEEP_AFTER_DEADLINE_S)


async def forget(redis: Redis, keys: Keys, workspace_id: str, invocation_id: str) -> None:
    await redis.zrem(keys.agent_deadlines(workspace_id), _member(workspace_id, invocation_id))


def _member(workspace_id: str, invocation_id: str) -> str:
    return f"{workspace_id}|{invocation_id}"
