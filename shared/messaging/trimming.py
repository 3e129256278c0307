"""Keep streams near their cap without ever dropping an entry a consumer group still needs.

`XADD ... MAXLEN ~ N` trims by length alone: a group that lags past N loses entries for
good. Instead, XADD never trims, and each service trims the streams it reads, on a timer:

- Redis 8.2 and later: `XTRIM key MAXLEN N ACKED` removes only entries that every
  group has acknowledged (the server checks the groups' positions and pending lists).
- Older servers: `XTRIM key MINID ~ id`, where `id` is the oldest entry some group still
  needs (its oldest pending entry, or the first one after its last delivered), computed
  from XINFO GROUPS and XPENDING.

A stream that stays over its cap because a group lags is reported (the
`raptorflow_stream_over_cap` gauge, alerted on in deploy/prometheus), never trimmed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from shared.observability import telemetry

log = logging.getLogger("raptorflow.trimming")

ACKED_SINCE = (8, 2)


@dataclass(frozen=True)
class GroupPosition:
    """Where one consumer group stands on a stream."""

    last_delivered: str
    oldest_pending: str | None


def parse_id(stream_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = stream_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def next_id(stream_id: str) -> str:
    """The smallest id after `stream_id`."""
    milliseconds, sequence = parse_id(stream_id)
    return f"{milliseconds}-{sequence + 1}"


def oldest_needed(groups: Sequence[GroupPosition]) -> str | None:
    """The oldest entry some group still needs; None when the stream has no group.

    Entries below it were delivered to every group and acknowledged by all of them.
    """
    needed = []
    for group in groups:
        needed.append(group.oldest_pending or next_id(group.last_delivered))
    return min(needed, key=parse_id) if needed else None


def server_version(info: dict[str, Any]) -> tuple[int, int]:
    major, minor, *_ = str(info.get("redis_version", "0.0")).split(".")
    return int(major), int(minor)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class StreamTrimmer:
    """Trims streams to about `cap` entries, never past what a group has not acknowledged."""

    redis: Redis
    cap: int
    acked: bool

    @classmethod
    async def for_server(cls, redis: Redis, cap: int) -> StreamTrimmer:
        """ACKED trimming where the server has it, else MINID from the groups' positions."""
        version = server_version(await redis.info("server"))
        return cls(redis=redis, cap=cap, acked=version >= ACKED_SINCE)

    async def trim(self, stream: str) -> int:
        """Trim one stream; returns how many entries it still holds beyond the cap."""
        if self.acked:
            # Exact: with `~`, Redis 8.2.3 trims nothing under ACKED (measured); the cost is
            # one step per removed entry, every interval.
            await self.redis.execute_command("XTRIM", stream, "MAXLEN", self.cap, "ACKED")
        else:
            await self._trim_by_min_id(stream)
        return max(0, int(await self.redis.xlen(stream)) - self.cap)

    async def _trim_by_min_id(self, stream: str) -> None:
        if int(await self.redis.xlen(stream)) <= self.cap:
            return
        oldest = oldest_needed(await self._positions(stream))
        if oldest is None:
            await self.redis.xtrim(stream, maxlen=self.cap, approximate=True)
        else:
            await self.redis.xtrim(stream, minid=oldest, approximate=True)

    async def _positions(self, stream: str) -> list[GroupPosition]:
        positions = []
        for info in await self.redis.xinfo_groups(stream):
            fields = {_text(k): v for k, v in info.items()}
            name = _text(fields["name"])
            oldest = None
            if int(fields.get("pending") or 0) > 0:
                summary = await self.redis.xpending(stream, name)
                oldest = _text(summary["min"]) if summary.get("min") else None
            positions.append(GroupPosition(_text(fields["last-delivered-id"]), oldest))
        return positions

    async def trim_all(self, streams: Sequence[str]) -> None:
        """Trim each stream and report what a lagging group keeps over the cap."""
        for stream in streams:
            over = await self.trim(stream)
            telemetry.STREAM_OVER_CAP.labels(stream).set(over)
            if over:
                log.warning(
                    "stream over its cap: a consumer group has not acknowledged its entries",
                    extra={"stream": stream, "over_cap": over, "cap": self.cap},
                )
