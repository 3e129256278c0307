"""Helpers for the reliability tests: submit a batch, wait for it, count every effect.

"Exactly-once effect" is checked on what a duplicate would change: a second
stream entry with the same event id, a second terminal event for a task, a
counter incremented twice (memory's successful-sequence counts), a history or
critique key too many.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from shared.contract.events import EVENT_TYPES, TaskRequested, new_envelope
from shared.contract.keys import Keys
from shared.contract.models import AgentContext
from shared.contract.topology import Topology
from shared.messaging.bus import publish
from tests.helpers import KEYS, PLAIN, eventually

SEQUENCE = ["research", "content"]
TERMINAL = ("TaskCompleted", "TaskFailed")


async def submit_batch(
    redis: Redis, workspace: str, n: int, *, tag: str = "", sequence: list[str] | None = None
) -> list[str]:
    """Publish `n` TaskRequested (distinct goals, so each has its own history key)."""
    events = [
        new_envelope(
            TaskRequested(
                goal=f"Write a short note on topic {tag}{i} for the reliability suite",
                agent_sequence=list(sequence or SEQUENCE),
            ),
            workspace_id=workspace,
            context=AgentContext(workspace_id=workspace),
        )
        for i in range(n)
    ]
    await publish(redis, PLAIN, events)
    return [e.correlation_id for e in events]


async def finished(redis: Redis, workspace: str, task_ids: Iterable[str]) -> int:
    """How many of the tasks have a terminal status in their view (memory wrote it)."""
    ids = list(task_ids)
    async with redis.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.hget(KEYS.task_view(workspace, task_id), "status")
        statuses = await pipe.execute()
    return sum(1 for s in statuses if s in (b"completed", b"failed"))


async def wait_finished(
    redis: Redis, workspace: str, task_ids: list[str], timeout: float = 120.0
) -> None:
    async def probe() -> bool:
        return await finished(redis, workspace, task_ids) == len(task_ids)

    try:
        await eventually(probe, timeout, interval=0.2)
    except AssertionError:
        done = await finished(redis, workspace, task_ids)
        raise AssertionError(
            f"only {done}/{len(task_ids)} tasks finished in {timeout}s; {await diagnose(redis)}"
        ) from None


async def wait_progress(
    redis: Redis, workspace: str, task_ids: list[str], at_least: int, timeout: float = 60.0
) -> int:
    async def probe() -> int:
        done = await finished(redis, workspace, task_ids)
        return done if done >= at_least else 0

    try:
        return await eventually(probe, timeout, interval=0.05)
    except AssertionError:
        raise AssertionError(
            f"fewer than {at_least} tasks finished in {timeout}s; {await diagnose(redis)}"
        ) from None


async def diagnose(redis: Redis, layout: Topology = PLAIN) -> str:
    """Stream lengths and each group's lag and pending count, for a failure message."""
    lines = []
    for event_type in EVENT_TYPES:
        for stream in layout.streams(event_type):
            if not await redis.exists(stream):
                continue
            groups = await redis.xinfo_groups(stream)
            summary = ", ".join(
                f"{g['name'].decode()}: pending {g['pending']} lag {g.get('lag')}" for g in groups
            )
            lines.append(f"{stream} len {await redis.xlen(stream)} [{summary}]")
    return "\n".join(lines)


@dataclass
class Effects:
    """Everything a duplicate would show, for one workspace."""

    entries_per_event: dict[str, Counter[str]] = field(default_factory=dict)
    terminal_per_task: Counter[str] = field(default_factory=Counter)
    completed_per_task: Counter[str] = field(default_factory=Counter)
    critique_ids: set[str] = field(default_factory=set)
    critique_keys: int = 0
    history_entries: int = 0
    successful_sequences: int = 0
    successes: int = 0

    def duplicated_events(self) -> dict[str, list[str]]:
        return {
            t: [e for e, n in c.items() if n > 1]
            for t, c in self.entries_per_event.items()
            if any(n > 1 for n in c.values())
        }


async def effects_of(redis: Redis, workspace: str, keys: Keys = KEYS) -> Effects:
    """Read every stream and the memory keys of one workspace (in `keys`' layout)."""
    out = Effects()
    for event_type in EVENT_TYPES:
        counter: Counter[str] = Counter()
        async for data in _all_partitions(redis, keys.layout, event_type):
            if data.get("workspace_id") != workspace:
                continue
            counter[data["event_id"]] += 1
            task = data["correlation_id"]
            if event_type in TERMINAL:
                out.terminal_per_task[task] += 1
            if event_type == "TaskCompleted":
                out.completed_per_task[task] += 1
                if data["payload"].get("success"):
                    out.successes += 1
            if event_type == "CritiqueDone":
                out.critique_ids.add(data["payload"]["content_id"])
        out.entries_per_event[event_type] = counter
    out.critique_keys = len(
        [k async for k in redis.scan_iter(match=keys.critique(workspace, "*"), count=1000)]
    )
    out.history_entries = int(await redis.zcard(keys.task_history_index(workspace)))
    counts = await redis.hvals(keys.sequence_counts(workspace))
    out.successful_sequences = sum(int(v) for v in counts)
    return out


async def _all_partitions(redis: Redis, layout: Topology, event_type: str) -> Any:
    for stream in layout.streams(event_type):
        async for data in _stream_events(redis, stream):
            yield data


async def _stream_events(redis: Redis, stream: str) -> Any:
    start = "-"
    while True:
        page = await redis.xrange(stream, min=start, count=1000)
        if not page:
            return
        for _, fields in page:
            raw = fields.get(b"__data__")
            if raw is not None:
                yield json.loads(raw)
        last = page[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else last)


async def wait_drained(redis: Redis, timeout: float = 60.0, layout: Topology = PLAIN) -> None:
    """Every group has read and acknowledged everything (memory lags the terminal event)."""

    async def probe() -> bool:
        for event_type in EVENT_TYPES:
            for stream in layout.streams(event_type):
                if not await redis.exists(stream):
                    continue
                for group in await redis.xinfo_groups(stream):
                    if group["pending"] or group.get("lag"):
                        return False
        return True

    try:
        await eventually(probe, timeout, interval=0.1)
    except AssertionError:
        raise AssertionError(
            f"streams not drained in {timeout}s; {await diagnose(redis, layout)}"
        ) from None


async def entries_read(redis: Redis, stream: str, group: str) -> int:
    """How many entries of `stream` the group has been delivered (XINFO GROUPS entries-read)."""
    try:
        groups = await redis.xinfo_groups(stream)
    except Exception:
        return 0
    for info in groups:
        if info["name"].decode() == group:
            return int(info.get("entries-read") or 0)
    return 0


async def wait_entries_read(
    redis: Redis, stream: str, group: str, at_least: int, timeout: float = 60.0
) -> int:
    async def probe() -> int:
        n = await entries_read(redis, stream, group)
        return n if n >= at_least else 0

    return await eventually(probe, timeout, interval=0.01)


async def assert_exactly_once(
    redis: Redis,
    workspace: str,
    task_ids: list[str],
    drain_timeout: float = 60.0,
    keys: Keys = KEYS,
) -> Effects:
    """Every task ended exactly once and no effect happened twice."""
    await wait_drained(redis, drain_timeout, keys.layout)
    effects = await effects_of(redis, workspace, keys)
    assert effects.duplicated_events() == {}, effects.duplicated_events()
    assert {t: effects.terminal_per_task[t] for t in task_ids} == dict.fromkeys(task_ids, 1)
    assert {t: effects.completed_per_task[t] for t in task_ids} == dict.fromkeys(task_ids, 1)
    assert effects.history_entries == len(task_ids)
    assert effects.successful_sequences == effects.successes
    assert effects.critique_keys == len(effects.critique_ids)
    return effects


def wait_log(path_text: Any, needle: str, timeout: float = 30.0) -> None:
    """Poll a process's log until `needle` appears (e.g. that it saw Redis go away)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in path_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not logged within {timeout}s")
