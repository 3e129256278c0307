"""The dead-letter stream, read and managed: list, show, replay, purge.

The bus writes an entry when a message is malformed or keeps failing; an operator
fixes the cause and replays it. Replay re-publishes the original `__data__` to its
stream and removes the entry in one transaction, so a crash never both keeps and
replays a letter. A replayed event whose effects had already committed is ignored
by the processed markers, so replaying too much is harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from shared.contract.events import DEAD_LETTER_STREAM, STREAM_PREFIX, dead_letter_streams

DATA_FIELD = "__data__"
# Only our own event streams may be replayed into: a forged entry must not write elsewhere.
REPLAYABLE_PREFIX = STREAM_PREFIX


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
    *,
    service: str | None = None,
    stream: str | None = None,
    workspace_id: str | None = None,
    limit: int = 100,
) -> list[DeadLetter]:
    """Oldest first, filtered; reads each partition's stream in pages so a large DLQ is never
    loaded whole."""
    out: list[DeadLetter] = []
    for dlq in dead_letter_streams():
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


async def get_letter(redis: Redis, entry_id: str) -> DeadLetter | None:
    for dlq in dead_letter_streams():
        page = await redis.xrange(dlq, min=entry_id, max=entry_id, count=1)
        if page:
            return _letter(page[0][0], page[0][1], dlq)
    return None


async def count(redis: Redis) -> int:
    return sum([int(await redis.xlen(dlq)) for dlq in dead_letter_streams()])


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


async def purge(redis: Redis, entry_ids: list[str] | None = None) -> int:
    """Delete the given entries, or every entry when `entry_ids` is None; how many went."""
    removed = 0
    for dlq in dead_letter_streams():
        if entry_ids is None:
            # Trim rather than DEL: the stream key (and anything watching it) stays.
            removed += int(await redis.xtrim(dlq, maxlen=0, approximate=False))
        elif entry_ids:
            removed += int(await redis.xdel(dlq, *entry_ids))
    return removed
