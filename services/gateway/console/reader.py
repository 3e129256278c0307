"""Everything the console reads from Redis, in one module.

The task list takes the workspace's newest task ids from the per-workspace task index
(`Keys.task_index`), else (tasks published straight onto the stream) from the workspace's
TaskRequested stream read backwards (bounded by `LIST_SCAN`), and joins each task's status
view; only `recent_task_ids` knows where the ids come from. A task's timeline is read from
the event streams between its creation and its last update (stream ids are milliseconds),
each stream bounded by `EVENT_SCAN`, keeping only entries whose envelope names this task and
workspace.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from shared.app.runtime import Deps
from shared.contract.events import EVENT_TYPES
from shared.contract.keys import Keys
from shared.contract.topology import Topology
from shared.domain.bandit import BanditConfig, posterior_mean
from shared.domain.experiments import ExperimentReport
from shared.memory.store import RoutingRecord
from shared.messaging import dead_letters
from shared.messaging.codec import DATA_FIELD
from shared.stores import agent_registry, approvals, audit, experiment_store, webhooks

LIST_SCAN = 2000  # newest TaskRequested entries read for the list (all workspaces' share them)
EVENT_SCAN = 2000  # entries read per event stream for one task's timeline
PAGE_READ = 500
SLACK_MS = 60_000  # memory stamps created_at when it reads TaskRequested, after the entry


def text_of(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def parse_entry(fields: dict[bytes, bytes], needle: str | None = None) -> dict[str, Any] | None:
    """The envelope of a stream entry as a dict; None when it is not readable JSON, or when
    `needle` (a task or workspace id the caller will compare exactly) is not in its text:
    most entries of a shared stream are someone else's, and a substring test is far cheaper
    than parsing them."""
    raw = fields.get(DATA_FIELD.encode())
    if not raw or (needle is not None and needle.encode() not in raw):
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def stream_ms(entry_id: bytes | str) -> int:
    return int(text_of(entry_id).split("-", 1)[0])


async def recent_task_ids(
    redis: Redis, keys: Keys, workspace_id: str, scan: int = LIST_SCAN
) -> list[str]:
    """The workspace's newest task ids: from the per-workspace task index (the lifecycle's),
    else from the TaskRequested stream."""
    ids = await redis.zrevrange(keys.task_index(workspace_id), 0, scan - 1)
    if ids:
        return [text_of(i) for i in ids]
    return await requested_task_ids(redis, keys, workspace_id, scan)


async def requested_task_ids(
    redis: Redis, keys: Keys, workspace_id: str, scan: int = LIST_SCAN
) -> list[str]:
    """The workspace's task ids, newest first, from the last `scan` TaskRequested entries."""
    stream = keys.layout.stream("TaskRequested", workspace_id)
    out: dict[str, None] = {}
    top = "+"
    seen = 0
    while seen < scan:
        page = await redis.xrevrange(stream, max=top, count=min(PAGE_READ, scan - seen))
        if not page:
            break
        seen += len(page)
        for _, fields in page:
            data = parse_entry(fields, workspace_id)
            if data and data.get("workspace_id") == workspace_id:
                out.setdefault(str(data.get("correlation_id", "")), None)
        top = f"({text_of(page[-1][0])}"
    out.pop("", None)
    return list(out)


async def workspaces_seen(redis: Redis, layout: Topology, scan: int = LIST_SCAN) -> list[str]:
    """Workspaces with recent tasks (the admin's picker), from every TaskRequested partition."""
    found: set[str] = set()
    for stream in layout.streams("TaskRequested"):
        for _, fields in await redis.xrevrange(stream, count=scan):
            data = parse_entry(fields)
            if data and isinstance(data.get("workspace_id"), str):
                found.add(data["workspace_id"])
    return sorted(found)


async def task_views(
    redis: Redis, keys: Keys, workspace_id: str, task_ids: list[str]
) -> list[dict[str, str]]:
    """Each task's status view (an empty dict when memory has not written it yet)."""
    async with redis.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.hgetall(keys.task_view(workspace_id, task_id))
        rows = await pipe.execute()
    return [{text_of(k): text_of(v) for k, v in row.items()} for row in rows]


async def task_view(redis: Redis, keys: Keys, workspace_id: str, task_id: str) -> dict[str, str]:
    return (await task_views(redis, keys, workspace_id, [task_id]))[0]


async def task_events(
    redis: Redis, layout: Topology, workspace_id: str, task_id: str, view: dict[str, str]
) -> list[dict[str, Any]]:
    """Every event of the task on the streams, in stream order, each with `_ms` (its id time)."""
    start = _ms_of(view.get("created_at"), default=0) - SLACK_MS
    end = (
        "+"
        if view.get("status") not in {"completed", "failed", "rejected"}
        else str(_ms_of(view.get("updated_at"), default=0) + 60_000)
    )
    found: list[dict[str, Any]] = []
    for event_type in EVENT_TYPES:
        stream = layout.stream(event_type, workspace_id)
        entries = await redis.xrange(stream, min=str(max(start, 0)), max=end, count=EVENT_SCAN)
        for entry_id, fields in entries:
            data = parse_entry(fields, task_id)
            if (
                data is not None
                and data.get("correlation_id") == task_id
                and data.get("workspace_id") == workspace_id
            ):
                data["_ms"] = stream_ms(entry_id)
                data["_id"] = text_of(entry_id)
                found.append(data)
    found.sort(key=lambda d: (d["_ms"], d["_id"]))
    return found


def _ms_of(seconds: str | None, default: int) -> int:
    try:
        return int(float(seconds or "") * 1000)
    except ValueError:
        return default


@dataclass
class TaskDetail:
    """What one task's page needs, as read."""

    view: dict[str, str]
    events: list[dict[str, Any]]
    routing: RoutingRecord | None
    neighbour_goals: dict[str, str]
    audit: list[audit.AuditEntry]
    pending: list[approvals.ApprovalRecord]
    letters: list[dead_letters.DeadLetter]
    threshold: float
    stages_view: list[dict[str, Any]] = field(default_factory=list)


async def task_detail(deps: Deps, workspace_id: str, task_id: str) -> TaskDetail | None:
    """None when the workspace has no such task (another workspace's task is 'no such task')."""
    redis = deps.redis
    view = await task_view(redis, deps.keys, workspace_id, task_id)
    if not view:
        return None
    routing = await deps.memory.routing_decision(workspace_id, task_id)
    goals: dict[str, str] = {}
    for neighbour in routing.neighbours if routing else []:
        record = await deps.memory.task_record(workspace_id, neighbour.goal_hash)
        if record is not None:
            goals[neighbour.goal_hash] = record.goal
    pending = [
        r
        for r in await approvals.list_pending(redis, deps.keys, workspace_id)
        if r.needed.correlation_id == task_id
    ]
    stages_raw = await redis.hgetall(deps.keys.task_stages(workspace_id, task_id))
    return TaskDetail(
        view=view,
        events=await task_events(redis, deps.layout, workspace_id, task_id, view),
        routing=routing,
        neighbour_goals=goals,
        audit=await audit.list_for_task(redis, deps.keys, workspace_id, task_id),
        pending=pending,
        letters=await task_letters(redis, deps.keys, workspace_id, task_id),
        threshold=deps.settings.reuse_confidence,
        stages_view=[json.loads(v) for v in stages_raw.values()],
    )


async def task_letters(
    redis: Redis, keys: Keys, workspace_id: str, task_id: str
) -> list[dead_letters.DeadLetter]:
    letters = await dead_letters.list_letters(
        redis, keys.layout, workspace_id=workspace_id, limit=1000
    )
    out = []
    for letter in letters:
        try:
            data = json.loads(letter.data)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("correlation_id") == task_id:
            out.append(letter)
    return out


@dataclass
class WorkspaceDetail:
    """What the workspace page needs, as read."""

    performance: list[dict[str, Any]]
    routing: list[RoutingRecord]
    memory_items: int
    experiments: list[ExperimentReport]
    checkpoints: str | None
    webhook_urls: list[str]
    deliveries: dict[str, list[webhooks.TargetStatus]]
    live_agents: list[dict[str, Any]]


async def live_agents(deps: Deps, workspace_id: str) -> list[dict[str, Any]]:
    """The worker agents this workspace can use, each with its replicas and when each was
    last seen (heartbeats of the last hour)."""
    catalog = await agent_registry.catalog_for(deps.redis, deps.catalog, workspace_id)
    rows = []
    now = time.time()
    for spec in sorted(catalog.agents, key=lambda a: a.name):
        if spec.kind != "worker":
            continue
        seen = await agent_registry.replicas(deps.redis, spec.name)
        rows.append(
            {
                "agent": spec.name,
                "task_types": ", ".join(spec.task_types),
                "live": sum(r.live for r in seen),
                "replicas": [
                    {
                        "replica": r.replica,
                        "ago_s": max(0, round(now - r.last_seen)),
                        "live": r.live,
                    }
                    for r in seen[:10]
                ],
            }
        )
    return rows


async def workspace_detail(deps: Deps, workspace_id: str) -> WorkspaceDetail:
    redis = deps.redis
    task_ids = await recent_task_ids(redis, deps.keys, workspace_id)
    config = await webhooks.load_config(redis, deps.keys, workspace_id)
    raw_checkpoints = await redis.get(deps.keys.checkpoints_config(workspace_id))
    return WorkspaceDetail(
        performance=await performance_rows(deps, workspace_id),
        routing=await routing_records(redis, deps.keys, workspace_id, task_ids),
        memory_items=await deps.index.count(workspace_id),
        experiments=[
            await experiment_store.get_report(redis, deps.keys, workspace_id, e.experiment_id)
            for e in await experiment_store.list_all(redis, deps.keys, workspace_id)
        ],
        checkpoints=text_of(raw_checkpoints) if raw_checkpoints else None,
        webhook_urls=[str(u) for u in config.urls] if config else [],
        deliveries=await recent_deliveries(redis, deps.keys, workspace_id) if config else {},
        live_agents=await live_agents(deps, workspace_id),
    )


async def performance_rows(deps: Deps, workspace_id: str) -> list[dict[str, Any]]:
    """Per task type and agent: runs, success, quality and the bandit's posterior mean now."""
    bandit = BanditConfig()
    rows = []
    for task_type, agents in sorted((await deps.memory.performance(workspace_id)).items()):
        step = await deps.memory.performance_step(workspace_id, task_type)
        for agent, perf in sorted(agents.items()):
            rows.append(
                {
                    "task_type": task_type,
                    "agent": agent,
                    "runs": perf.runs,
                    "success_rate": perf.success_rate,
                    "mean_quality": perf.mean_quality,
                    "posterior": posterior_mean(perf, step=step, config=bandit),
                }
            )
    return rows


async def routing_records(
    redis: Redis, keys: Keys, workspace_id: str, task_ids: list[str]
) -> list[RoutingRecord]:
    """The stored routing decisions of these tasks (for the reliability diagram)."""
    async with redis.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.hgetall(keys.routing_decision(workspace_id, task_id))
        rows = await pipe.execute()
    out = []
    for row in rows:
        if row:
            try:
                out.append(RoutingRecord.from_hash(row))
            except ValueError:
                continue
    return out


async def recent_deliveries(
    redis: Redis, keys: Keys, workspace_id: str, scan: int = 500
) -> dict[str, list[webhooks.TargetStatus]]:
    """Webhook deliveries of the workspace's last approvals (from the ApprovalNeeded stream)."""
    stream = keys.layout.stream("ApprovalNeeded", workspace_id)
    out: dict[str, list[webhooks.TargetStatus]] = {}
    for _, fields in await redis.xrevrange(stream, count=scan):
        data = parse_entry(fields, workspace_id)
        if not data or data.get("workspace_id") != workspace_id:
            continue
        approval_id = str(data.get("payload", {}).get("approval_id", ""))
        if approval_id and approval_id not in out and len(out) < 20:
            out[approval_id] = await webhooks.delivery_status(
                redis, keys, workspace_id, approval_id
            )
    return {k: v for k, v in out.items() if v}
