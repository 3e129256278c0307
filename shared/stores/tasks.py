"""Task views and their lifecycle in Redis: acceptance, the workspace index, cancel, deadlines.

The view is a hash per task, updated field by field by whoever learns something (the
gateway at acceptance, memory as events arrive, a cancel, the deadline sweep) through
one Lua script, so a status only moves forward and reaching an end is announced once,
on a one-entry stream that long-polls block on. Every write here that ends a task
commits in the same transaction as the event that says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import WatchError

from shared.contract.events import (
    Envelope,
    Payload,
    TaskCancelled,
    TaskFailed,
    TaskRequested,
    new_envelope,
)
from shared.contract.keys import TASK_VIEW_TTL_S, Keys
from shared.contract.task_view import TERMINAL_STATES, TaskPage, TaskState, TaskView, task_view_of
from shared.messaging import task_views
from shared.messaging.bus import add_publish
from shared.messaging.tx import Tx

VIEW_TTL_S = TASK_VIEW_TTL_S
IDEMPOTENCY_TTL_S = 24 * 3600
LIST_EXAMINE_LIMIT = 1000  # index entries one list call reads at most (filters skip some)
MAX_WAIT_S = 60.0

P = TypeVar("P", bound=Payload)
Handler = Callable[[Envelope[P], Tx], Awaitable[Sequence[Envelope[Any]]]]

# The status rules (a status only moves forward, an end is announced once): one Lua
# function shared with the dead-letter script, in shared.messaging.task_views.
_UPDATE_VIEW = task_views.UPDATE_VIEW


class TaskNotFound(KeyError):
    pass


class TaskConflict(Exception):
    """The request does not fit the task's state (finished, or a different body)."""


class IdempotencyMismatch(Exception):
    """The Idempotency-Key was used before with a different body."""


@dataclass(frozen=True)
class Acceptance:
    task_id: str
    status: TaskState
    replayed: bool


def queue_view(tx: Tx, keys: Keys, workspace_id: str, task_id: str, fields: dict[str, str],
               now: float) -> None:
    """Queue an update of the view (status rules above) and its index entry."""
    args = [str(VIEW_TTL_S), fields.get("status", ""), repr(now), task_id]
    for name, value in fields.items():
        if name != "status":
            args += [name, value]
    tx.eval(_UPDATE_VIEW, 3, keys.task_view(workspace_id, task_id),
            keys.task_ended(workspace_id, task_id), keys.task_index(workspace_id), *args)


def queue_stage(
    tx: Tx, keys: Keys, workspace_id: str, task_id: str, index: int, stage: str
) -> None:
    key = keys.task_stages(workspace_id, task_id)
    tx.hset(key, str(index), stage)
    tx.expire(key, VIEW_TTL_S)


def queue_deadline(tx: Tx, keys: Keys, workspace_id: str, task_id: str, deadline: float) -> None:
    """Register the deadline (NX: a redelivered request never moves it)."""
    tx.zadd(keys.task_deadlines(workspace_id), {f"{workspace_id}|{task_id}": deadline}, nx=True)


def _text(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode(errors="replace") for k, v in raw.items()}


async def read(redis: Redis, keys: Keys, workspace_id: str, task_id: str) -> TaskView | None:
    async with redis.pipeline(transaction=False) as reads:
        reads.hgetall(keys.task_view(workspace_id, task_id))
        reads.hgetall(keys.task_stages(workspace_id, task_id))
        view, stages = await reads.execute()
    if not view:
        return None
    return task_view_of(task_id, workspace_id, _text(view), _text(stages))


async def read_many(
    redis: Redis, keys: Keys, workspace_id: str, task_ids: Sequence[str]
) -> list[TaskView | None]:
    """Several views in one round trip (a list page)."""
    async with redis.pipeline(transaction=False) as reads:
        for task_id in task_ids:
            reads.hgetall(keys.task_view(workspace_id, task_id))
            reads.hgetall(keys.task_stages(workspace_id, task_id))
        rows = await reads.execute()
    return [
        task_view_of(task_id, workspace_id, _text(view), _text(stages)) if view else None
        for task_id, view, stages in zip(task_ids, rows[::2], rows[1::2], strict=True)
    ]


async def wait_ended(
    redis: Redis, keys: Keys, workspace_id: str, task_id: str, timeout_s: float
) -> bool:
    """Block (no polling) until the task ends or `timeout_s` passes; True when it ended."""
    key = keys.task_ended(workspace_id, task_id)
    block_ms = max(1, int(min(timeout_s, MAX_WAIT_S) * 1000))
    return bool(await redis.xread({key: "0"}, count=1, block=block_ms))


def request_hash(body: dict[str, Any]) -> str:
    """The canonical hash of a submission, what an idempotent retry must match."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def acceptance_fields(
    event: Envelope[TaskRequested], digest: str, now: float, links: dict[str, str] | None = None
) -> dict[str, str]:
    fields = {
        "status": "accepted",
        "goal": event.payload.goal,
        "created_at": repr(now),
        "updated_at": repr(now),
        "request_hash": digest,
        **(links or {}),
    }
    if event.payload.deadline_s is not None:
        fields["deadline_at"] = repr(now + event.payload.deadline_s)
    return fields


def queue_acceptance(
    tx: Tx, keys: Keys, event: Envelope[Any], fields: dict[str, str], now: float
) -> None:
    """The view (status accepted), index, deadline, the request kept for a rerun, and the
    event that starts the task: all in the caller's MULTI."""
    workspace_id, task_id = event.workspace_id, event.correlation_id
    queue_view(tx, keys, workspace_id, task_id, fields, now)
    if "deadline_at" in fields:
        queue_deadline(tx, keys, workspace_id, task_id, float(fields["deadline_at"]))
    if isinstance(event.payload, TaskRequested):
        tx.set(keys.task_request(workspace_id, task_id), event.model_dump_json(), ex=VIEW_TTL_S)
    add_publish(tx, keys.layout, event)


async def _replay(
    redis: Redis, keys: Keys, event: Envelope[Any], digest: str, idem: str | None
) -> Acceptance | None:
    """The earlier acceptance this request repeats (same key or task id), else None."""
    workspace_id = event.workspace_id
    if idem is not None:
        stored = await redis.get(idem)
        if stored:
            earlier = json.loads(stored)
            if earlier["request_hash"] != digest:
                raise IdempotencyMismatch("Idempotency-Key reused with a different body")
            return await _acceptance_of(redis, keys, workspace_id, earlier["task_id"])
    existing = await redis.hget(keys.task_view(workspace_id, event.correlation_id), "request_hash")
    if existing is not None:
        if existing.decode() != digest:
            raise TaskConflict(f"task {event.correlation_id} exists with a different body")
        return await _acceptance_of(redis, keys, workspace_id, event.correlation_id)
    return None


async def _acceptance_of(redis: Redis, keys: Keys, workspace_id: str, task_id: str) -> Acceptance:
    view = await read(redis, keys, workspace_id, task_id)
    return Acceptance(task_id, view.status if view else "accepted", replayed=True)


async def accept(
    redis: Redis,
    keys: Keys,
    event: Envelope[Any],
    fields: dict[str, str],
    *,
    idempotency_key: str | None,
    now: float,
) -> Acceptance:
    """Accept a task exactly once per Idempotency-Key (24 h, per workspace) and per task id:
    WATCH the key and the view, so of two racing identical requests one commits and the
    other, retried, finds it and answers the same task."""
    workspace_id, task_id = event.workspace_id, event.correlation_id
    digest = fields["request_hash"]
    idem = (
        keys.idempotency(workspace_id, hashlib.sha256(idempotency_key.encode()).hexdigest())
        if idempotency_key
        else None
    )
    watched = [keys.task_view(workspace_id, task_id), *([idem] if idem else [])]
    async with redis.pipeline(transaction=True) as tx:
        while True:
            try:
                await tx.watch(*watched)
                earlier = await _replay(redis, keys, event, digest, idem)
                if earlier is not None:
                    return earlier
                tx.multi()
                if idem is not None:
                    record = json.dumps({"task_id": task_id, "request_hash": digest})
                    tx.set(idem, record, ex=IDEMPOTENCY_TTL_S)
                queue_acceptance(tx, keys, event, fields, now)
                await tx.execute()
                return Acceptance(task_id, "accepted", replayed=False)
            except WatchError:
                continue


async def _end(
    redis: Redis,
    keys: Keys,
    workspace_id: str,
    task_id: str,
    make: Callable[[TaskView], tuple[Envelope[Any], dict[str, str], str] | None],
    *,
    now: float,
) -> TaskView:
    """End a live task from outside: `make` returns (event, view fields, stop reason), or
    None to leave it; the stop marker, view, deadline removal and event commit together."""
    view_key = keys.task_view(workspace_id, task_id)
    async with redis.pipeline(transaction=True) as tx:
        while True:
            try:
                await tx.watch(view_key)
                view = await read(redis, keys, workspace_id, task_id)
                if view is None:
                    raise TaskNotFound(task_id)
                planned = make(view)
                if planned is None:
                    return view
                event, fields, reason = planned
                tx.multi()
                tx.set(keys.task_stopped(workspace_id, task_id), reason, ex=VIEW_TTL_S)
                queue_view(tx, keys, workspace_id, task_id, fields, now)
                tx.zrem(keys.task_deadlines(workspace_id), f"{workspace_id}|{task_id}")
                add_publish(tx, keys.layout, event)
                await tx.execute()
                return await read(redis, keys, workspace_id, task_id) or view
            except WatchError:
                continue


async def cancel(
    redis: Redis,
    keys: Keys,
    workspace_id: str,
    task_id: str,
    *,
    by: str | None,
    reason: str,
    now: float,
) -> TaskView:
    """Cancel a live task (TaskCancelled); a cancelled one is returned as it is (a second
    cancel is a no-op); any other end raises TaskConflict."""

    def plan(view: TaskView) -> tuple[Envelope[Any], dict[str, str], str] | None:
        if view.status == "cancelled":
            return None
        if view.terminal:
            raise TaskConflict(f"task {task_id} already {view.status}")
        event = new_envelope(
            TaskCancelled(task_id=task_id, cancelled_by=by, reason=reason),
            workspace_id=workspace_id,
            user_id=None,
            correlation_id=task_id,
        )
        fields = {
            "status": "cancelled",
            "cancelled_by": by or "",
            "cancel_reason": reason,
            "updated_at": repr(now),
        }
        return event, fields, "cancelled"

    return await _end(redis, keys, workspace_id, task_id, plan, now=now)


async def expire(redis: Redis, keys: Keys, workspace_id: str, task_id: str, *, now: float) -> bool:
    """End a task whose deadline passed as failed (reason `deadline`); False when it had
    already ended (its deadline entry is dropped either way)."""
    ended = False

    def plan(view: TaskView) -> tuple[Envelope[Any], dict[str, str], str] | None:
        nonlocal ended
        if view.terminal:
            return None
        ended = True
        error = "the task's deadline passed before it finished"
        event = new_envelope(
            TaskFailed(goal=view.goal or "", reason="deadline", error=error),
            workspace_id=workspace_id,
            correlation_id=task_id,
        )
        fields = {
            "status": "failed",
            "failure_reason": "deadline",
            "error": error,
            "updated_at": repr(now),
        }
        return event, fields, "deadline"

    with contextlib.suppress(TaskNotFound):
        await _end(redis, keys, workspace_id, task_id, plan, now=now)
    if not ended:
        await redis.zrem(keys.task_deadlines(workspace_id), f"{workspace_id}|{task_id}")
    return ended


async def due_deadlines(
    redis: Redis, keys: Keys, now: float, limit: int = 100
) -> list[tuple[str, str]]:
    """Tasks past their deadline, in every partition."""
    due: list[tuple[str, str]] = []
    for key in keys.all_task_deadlines():
        for member in await redis.zrangebyscore(key, "-inf", now, start=0, num=limit):
            workspace_id, task_id = member.decode().split("|", 1)
            due.append((workspace_id, task_id))
    return due


async def stop_reason(redis: Redis, keys: Keys, workspace_id: str, task_id: str) -> str | None:
    """Why the task was stopped from outside (cancelled, deadline), or None while it may run."""
    raw = await redis.get(keys.task_stopped(workspace_id, task_id))
    return raw.decode() if raw else None


def unless_stopped(redis: Redis, keys: Keys, handler: Handler[P]) -> Handler[P]:
    """The handler, except for a stopped task's events: those are acked and dropped (the
    next hop of a cancelled or expired task does nothing)."""

    async def guarded(event: Envelope[P], tx: Tx) -> Sequence[Envelope[Any]]:
        if await redis.exists(keys.task_stopped(event.workspace_id, event.correlation_id)):
            return ()
        return await handler(event, tx)

    return guarded


def _decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    if not cursor:
        return None
    score, _, member = cursor.partition(":")
    try:
        value = float(score)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not member:
        raise ValueError("cursor: not one this API returned")
    return value, member


async def _index_batch(
    redis: Redis, keys: Keys, workspace_id: str, after: tuple[float, str] | None, count: int
) -> list[tuple[str, float]]:
    """Index entries older than `after` (newest first; ties broken by id, descending)."""
    top: float | str = after[0] if after else "+inf"
    rows = await redis.zrevrangebyscore(
        keys.task_index(workspace_id), top, "-inf", start=0, num=count + 64, withscores=True
    )
    out = [(m.decode(), float(s)) for m, s in rows]
    if after is not None:
        out = [(m, s) for m, s in out if s < after[0] or m < after[1]]
    return out[:count]


@dataclass(frozen=True)
class TaskFilter:
    status: str | None = None
    source: str | None = None
    agent: str | None = None
    since: float | None = None

    def matches(self, view: TaskView) -> bool:
        return (
            (self.status is None or view.status == self.status)
            and (self.source is None or view.routing_source == self.source)
            and (
                self.agent is None
                or self.agent in view.agent_sequence
                or any(s.agent == self.agent for s in view.stages)
            )
        )


async def list_page(
    redis: Redis,
    keys: Keys,
    workspace_id: str,
    wanted: TaskFilter,
    *,
    cursor: str | None,
    limit: int,
) -> TaskPage:
    """A page of the workspace's tasks, newest first, read from its index (never a scan);
    at most LIST_EXAMINE_LIMIT entries are read per call, so a rare filter returns a short
    page with a cursor rather than walking the whole index."""
    after = _decode_cursor(cursor)
    found: list[TaskView] = []
    examined = 0
    while len(found) < limit and examined < LIST_EXAMINE_LIMIT:
        batch = await _index_batch(redis, keys, workspace_id, after, min(limit * 2, 200))
        if wanted.since is not None:
            batch = [(m, s) for m, s in batch if s >= wanted.since]
        if not batch:
            return TaskPage(tasks=found)
        views = await read_many(redis, keys, workspace_id, [m for m, _ in batch])
        for (task_id, score), view in zip(batch, views, strict=True):
            examined += 1
            after = (score, task_id)
            if view is not None and wanted.matches(view):
                found.append(view)
                if len(found) == limit:
                    break
    cursor_out = f"{after[0]!r}:{after[1]}" if after else None
    return TaskPage(tasks=found, next_cursor=cursor_out)


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATES
