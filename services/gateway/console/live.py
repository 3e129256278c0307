"""Server-Sent Events for the console, fed from the event streams.

One XREAD BLOCK per open page over the workspace's partition of every event stream, from
'$' (only what happens from now on). Entries of other workspaces are dropped here, before
anything is written to the browser. Each event says which task moved and, where the event
decides it, the task's new status; the page then updates itself (no polling loop).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.gateway.console.reader import parse_entry, text_of
from services.gateway.console.views import STATUS_OF_EVENT
from shared.contract.events import EVENT_TYPES
from shared.contract.topology import Topology

BLOCK_MS = 1000  # how long a stopping server waits for a stream to notice, at most
HEARTBEAT_S = 15.0
MAX_STREAM_S = 600.0  # the browser's EventSource reconnects by itself after this
MAX_OPEN = 64  # open event streams per gateway process
CLOCK_SLACK_MS = 1000  # a page asks for events from a little before it was rendered
MAX_REPLAY_MS = 300_000  # and never from further back than this
_open = asyncio.Semaphore(MAX_OPEN)
_running: set[asyncio.Event] = set()


def close_all() -> None:
    """End every open event stream of this process (the server is stopping: uvicorn waits
    for open responses, and an event stream never ends by itself)."""
    for stop in list(_running):
        stop.set()


def status_after(event: dict[str, object]) -> str | None:
    """The status an event puts its task in, when the event alone decides it."""
    kind = str(event.get("type", ""))
    if kind == "ApprovalResolved":
        payload = event.get("payload")
        decision = payload.get("decision") if isinstance(payload, dict) else None
        return "rejected" if decision == "rejected" else "running"
    return STATUS_OF_EVENT.get(kind)


def frame(event: dict[str, object]) -> str:
    """One SSE message: `event: task` and a small JSON body (no payload contents)."""
    body = {
        "task_id": event.get("correlation_id"),
        "type": event.get("type"),
        "status": status_after(event),
    }
    return f"event: task\ndata: {json.dumps(body)}\n\n"


async def _starts(
    redis: Redis, layout: Topology, workspace_id: str, since_ms: int | None
) -> dict[str, str]:
    """Where each stream is read from: `since_ms` (bounded), else each stream's last id, so
    nothing between two XREADs is skipped."""
    now_ms = int(time.time() * 1000)
    if since_ms is not None:
        start = f"{max(min(since_ms, now_ms), now_ms - MAX_REPLAY_MS)}-0"
        return {layout.stream(t, workspace_id): start for t in EVENT_TYPES}
    streams = {}
    for event_type in EVENT_TYPES:
        name = layout.stream(event_type, workspace_id)
        info = await redis.xinfo_stream(name) if await redis.exists(name) else None
        streams[name] = text_of(info["last-generated-id"]) if info else "0-0"
    return streams


def busy() -> bool:
    return _open.locked()


async def task_events(
    redis: Redis,
    layout: Topology,
    workspace_id: str,
    disconnected: Callable[[], object],
    task_id: str | None = None,
    since_ms: int | None = None,
) -> AsyncIterator[str]:
    """SSE text for the workspace's events (one task's only, when given) from `since_ms`
    (else from now) until the client leaves or `MAX_STREAM_S` passes."""
    stop = asyncio.Event()
    _running.add(stop)
    try:
        async with _open:
            streams = await _starts(redis, layout, workspace_id, since_ms)
            yield "retry: 2000\n: connected\n\n"
            async for chunk in _follow(redis, streams, workspace_id, task_id, disconnected, stop):
                yield chunk
    except (RedisError, OSError):
        return  # Redis went away: the browser reconnects by itself
    finally:
        _running.discard(stop)


async def _follow(
    redis: Redis,
    streams: dict[str, str],
    workspace_id: str,
    task_id: str | None,
    disconnected: Callable[[], object],
    stop: asyncio.Event,
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MAX_STREAM_S
    beat = loop.time() + HEARTBEAT_S
    while loop.time() < deadline and not stop.is_set():
        if await disconnected():  # type: ignore[misc]
            return
        replies = await redis.xread(streams, block=BLOCK_MS, count=100)  # type: ignore[arg-type]
        if not replies and loop.time() >= beat:
            beat = loop.time() + HEARTBEAT_S
            yield ": idle\n\n"
        for chunk in _frames(replies or [], streams, workspace_id, task_id):
            yield chunk


def _frames(
    replies: list[Any], streams: dict[str, str], workspace_id: str, task_id: str | None
) -> list[str]:
    """The workspace's events of one XREAD, in time order across the streams (a reply
    lists stream by stream), and each stream's position moved past what was read."""
    found: list[tuple[tuple[int, int], str]] = []
    for stream, entries in replies:
        name = text_of(stream)
        for entry_id, fields in entries:
            streams[name] = text_of(entry_id)
            data = parse_entry(fields, task_id or workspace_id)
            if data is None or data.get("workspace_id") != workspace_id:
                continue
            if task_id is not None and data.get("correlation_id") != task_id:
                continue
            ms, _, seq = streams[name].partition("-")
            found.append(((int(ms), int(seq or 0)), frame(data)))
    return [text for _, text in sorted(found, key=lambda item: item[0])]
