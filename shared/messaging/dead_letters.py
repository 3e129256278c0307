"""The dead-letter stream: written (`write`), read and managed (list, show, replay, purge).

The bus writes an entry when a message is malformed or keeps failing; an operator
fixes the cause and replays it. Replay re-publishes the original `__data__` to its
stream and removes the entry in one transaction, so a crash never both keeps and
replays a letter. A replayed event whose effects had already committed is ignored
by the processed markers, so replaying too much is harmless.

An accepted task is never lost: when the letter is a task's event, the same script
that writes it ends the task's view as `failed` (`failure_reason: dead_lettered`, the
letter's id and the service), unless the task had already ended; GET /tasks/{id}
shows it. The view is created when the letter is the TaskRequested itself, so a task
the memory service never saw still answers.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from shared.contract.events import utcnow
from shared.contract.keys import TASK_VIEW_TTL_S, Keys
from shared.contract.models import ID_PATTERN, MAX_GOAL_CHARS
from shared.contract.topology import DEAD_LETTER_STREAM, STREAM_PREFIX, Topology
from shared.messaging import task_views

DATA_FIELD = "__data__"
# Only our own event streams may be replayed into: a forged entry must not write elsewhere.
REPLAYABLE_PREFIX = STREAM_PREFIX
MAX_LETTER_BYTES = 1_000_000
FAILURE_REASON = "dead_lettered"
_WORKSPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_TASK_ID = re.compile(ID_PATTERN)

# Ends the task of a letter under the view's own rules (`task_views`): a task that already
# ended keeps its status and reason (a cancelled one is left alone) and is only told the
# letter's id; any other fails, its end announced to long-polls. The view is created only
# for a TaskRequested (a task the memory service never saw), never for another event's id.
_FAIL_TASK = task_views.UPDATE_VIEW_FUNCTION + f"""
local function fail_task(view, ended, index, letter, a)
  -- a: ttl, create, now, task_id, service, error, goal
  if redis.call('EXISTS', view) == 0 and a[2] ~= '1' then return end
  local current = redis.call('HGET', view, 'status')
  local terminal = {task_views.TERMINAL_LUA}
  if current == 'cancelled' then return end
  if current and terminal[current] then
    redis.call('HSET', view, 'dead_letter_id', letter, 'dead_letter_service', a[5])
    return
  end
  local fields = {{'failure_reason', 'dead_lettered', 'error', a[6], 'dead_letter_id', letter,
                  'dead_letter_service', a[5], 'updated_at', a[3]}}
  if #a[7] > 0 and not redis.call('HGET', view, 'goal') then
    fields[#fields + 1] = 'goal'
    fields[#fields + 1] = a[7]
  end
  if not redis.call('HGET', view, 'created_at') then
    fields[#fields + 1] = 'created_at'
    fields[#fields + 1] = a[3]
  end
  update_view(view, ended, index, a[1], 'failed', a[3], a[4], fields)
end
"""

# KEYS: dead-letter stream, source stream, handler-error key[, view, ended stream, index]
# ARGV: group, message id, field count, fields..., then the task's seven arguments
_WRITE = _FAIL_TASK + """
local n = tonumber(ARGV[3])
local fields = {}
for i = 4, 3 + n do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[3])
if KEYS[4] then
  local a = {}
  for i = 4 + n, #ARGV do a[#a + 1] = ARGV[i] end
  fail_task(KEYS[4], KEYS[5], KEYS[6], id, a)
end
return id
"""

# KEYS: view, ended stream, index; ARGV: letter id, then the task's seven arguments
_FAIL_ONLY = _FAIL_TASK + """
local a = {}
for i = 2, #ARGV do a[#a + 1] = ARGV[i] end
fail_task(KEYS[1], KEYS[2], KEYS[3], ARGV[1], a)
return 1
"""


@dataclass(frozen=True)
class TaskOfLetter:
    """The task a dead-lettered message belongs to, as far as its JSON says."""

    workspace_id: str
    task_id: str
    event_type: str
    goal: str


def task_of(body: bytes) -> TaskOfLetter | None:
    """The workspace, task, type and goal a message names (None: it names no task we can
    scope safely: unreadable JSON, or ids that are not ids)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    workspace, task, kind = data.get("workspace_id"), data.get("correlation_id"), data.get("type")
    if not (isinstance(workspace, str) and _WORKSPACE.match(workspace)):
        return None
    if not (isinstance(task, str) and _TASK_ID.match(task)):
        return None
    payload = data.get("payload")
    goal = payload.get("goal") if isinstance(payload, dict) else None
    return TaskOfLetter(
        workspace_id=workspace,
        task_id=task,
        event_type=kind if isinstance(kind, str) else "",
        goal=_utf8(goal[:MAX_GOAL_CHARS]) if isinstance(goal, str) else "",
    )


def _utf8(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


async def write(
    redis: Redis,
    keys: Keys,
    *,
    stream: str,
    group: str,
    message_id: str,
    body: bytes,
    error: str,
    reason: str,
    deliveries: int,
    ends_task: bool = True,
) -> str:
    """Move a message to its partition's dead-letter stream (XADD, XACK, clear its failure
    count) and, when `ends_task`, fail the task it belongs to: in the same script when the
    task's view shares the stream's partition (one cluster slot), else right after.
    Answers the letter's id."""
    dlq = keys.layout.dead_letter_for(stream)
    fields: list[str | bytes] = []
    for name, value in (
        ("stream", stream),
        ("message_id", message_id),
        ("service", group),
        ("reason", reason),
        ("error", error[:4000]),
        ("delivery_count", str(deliveries)),
        ("failed_at", utcnow().isoformat()),
        (DATA_FIELD, body[:MAX_LETTER_BYTES]),
    ):
        fields += [name, value]
    task = task_of(body) if ends_task else None
    script_keys = [dlq, stream, keys.handler_error(group, stream, message_id)]
    args: list[str | bytes] = [group, message_id, str(len(fields)), *fields]
    if task is None:
        return _entry_id(await redis.eval(_WRITE, len(script_keys), *script_keys, *args))
    ws, task_id = task.workspace_id, task.task_id
    task_keys = [keys.task_view(ws, task_id), keys.task_ended(ws, task_id), keys.task_index(ws)]
    first_line = (error.strip().splitlines() or [""])[0][:300]
    now = repr(time.time())
    task_args = [
        str(TASK_VIEW_TTL_S),
        "1" if task.event_type == "TaskRequested" else "0",
        now,
        task_id,
        group,
        _utf8(f"dead-lettered by {group} ({reason}): {first_line}"),
        task.goal,
    ]
    if dlq == keys.layout.dead_letter_for(keys.layout.stream("TaskRequested", ws)):
        return _entry_id(await redis.eval(
            _WRITE, len(script_keys) + 3, *script_keys, *task_keys, *args, *task_args
        ))
    letter_id = _entry_id(await redis.eval(_WRITE, len(script_keys), *script_keys, *args))
    await redis.eval(_FAIL_ONLY, 3, *task_keys, letter_id, *task_args)
    return letter_id


def _entry_id(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class DeadLetter:
    """One entry of the dead-letter stream."""

    id: str
    stream: str
    message_id: str
    service: str
    reason: str
    error: str
    delivery_count: int
    failed_at: str
    data: bytes
    dead_letter_stream: str = DEAD_LETTER_STREAM  # its partition's, when streams are partitioned

    @property
    def workspace_id(self) -> str | None:
        """The workspace the original message claims, when it is readable JSON."""
        try:
            value = json.loads(self.data).get("workspace_id")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stream": self.stream,
            "message_id": self.message_id,
            "service": self.service,
            "reason": self.reason,
            "delivery_count": self.delivery_count,
            "failed_at": self.failed_at,
            "workspace_id": self.workspace_id,
            "error": self.error.splitlines()[0][:200] if self.error else "",
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "error": self.error,
            "data": self.data.decode(errors="replace"),
        }


def _text(fields: dict[bytes, bytes], name: str) -> str:
    return fields.get(name.encode(), b"").decode(errors="replace")


def _letter(
    entry_id: bytes | str, fields: dict[bytes, bytes], dead_letter_stream: str = DEAD_LETTER_STREAM
) -> DeadLetter:
    count = _text(fields, "delivery_count")
    return DeadLetter(
        id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
        stream=_text(fields, "stream"),
        message_id=_text(fields, "message_id"),
        service=_text(fields, "service"),
        reason=_text(fields, "reason"),
        error=_text(fields, "error"),
        delivery_count=int(count) if count.isdigit() else 0,
        failed_at=_text(fields, "failed_at"),
        data=fields.get(DATA_FIELD.encode(), b""),
        dead_letter_stream=dead_letter_stream,
    )


async def list_letters(
    redis: Redis,
    layout: Topology,
    *,
    service: str | None = None,
    stream: str | None = None,
    workspace_id: str | None = None,
    limit: int = 100,
) -> list[DeadLetter]:
    """Oldest first, filtered; reads each partition's stream in pages so a large DLQ is never
    loaded whole."""
    out: list[DeadLetter] = []
    for dlq in layout.dead_letters():
        out += await _list_one(redis, dlq, service, stream, workspace_id, limit)
    out.sort(key=lambda letter: tuple(int(part) for part in letter.id.split("-")))
    return out[:limit]


async def _list_one(
    redis: Redis, dlq: str, service: str | None, stream: str | None,
    workspace_id: str | None, limit: int,
) -> list[DeadLetter]:
    out: list[DeadLetter] = []
    start = "-"
    while len(out) < limit:
        page = await redis.xrange(dlq, min=start, count=500)
        if not page:
            break
        for entry_id, fields in page:
            letter = _letter(entry_id, fields, dlq)
            if service and letter.service != service:
                continue
            if stream and letter.stream != stream:
                continue
            if workspace_id and letter.workspace_id != workspace_id:
                continue
            out.append(letter)
            if len(out) >= limit:
                break
        start = "(" + _letter(page[-1][0], page[-1][1]).id
    return out


async def get_letter(redis: Redis, layout: Topology, entry_id: str) -> DeadLetter | None:
    for dlq in layout.dead_letters():
        page = await redis.xrange(dlq, min=entry_id, max=entry_id, count=1)
        if page:
            return _letter(page[0][0], page[0][1], dlq)
    return None


async def count(redis: Redis, layout: Topology) -> int:
    return sum([int(await redis.xlen(dlq)) for dlq in layout.dead_letters()])


class NotReplayable(ValueError):
    """The entry names no stream of ours or carries no message."""


async def replay(redis: Redis, letter: DeadLetter) -> str:
    """Re-publish the original message to its stream and drop the entry; the new stream id."""
    if not letter.stream.startswith(REPLAYABLE_PREFIX) or letter.stream.startswith(DEAD_LETTER_STREAM):
        raise NotReplayable(f"{letter.id}: stream {letter.stream!r} is not an event stream")
    if not letter.data:
        raise NotReplayable(f"{letter.id}: no message data")
    async with redis.pipeline(transaction=True) as tx:
        tx.xadd(letter.stream, {DATA_FIELD: letter.data})
        tx.xdel(letter.dead_letter_stream, letter.id)
        new_id, _ = await tx.execute()
    return new_id.decode() if isinstance(new_id, bytes) else str(new_id)


async def purge(redis: Redis, layout: Topology, entry_ids: list[str] | None = None) -> int:
    """Delete the given entries, or every entry when `entry_ids` is None; how many went."""
    removed = 0
    for dlq in layout.dead_letters():
        if entry_ids is None:
            # Trim rather than DEL: the stream key (and anything watching it) stays.
            removed += int(await redis.xtrim(dlq, maxlen=0, approximate=False))
        elif entry_ids:
            removed += int(await redis.xdel(dlq, *entry_ids))
    return removed
