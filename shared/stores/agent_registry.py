"""Agents registered while the system runs, merged over the TOML catalog; worker liveness.

Registry: one hash of specs (field `<scope>|<name>`, scope `*` for global or a
workspace id), a counter that gives every change its version, and a stream that
records each change (who, what, which version). Lookups are merged as file <
global < workspace and cached per process until the counter moves, so the hot
path costs one GET.

Liveness: each worker replica ZADDs itself to `rf:agent:replicas:<name>` with the
time of its heartbeat (unix ms); a replica seen within HEARTBEAT_TTL_S is live.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from shared.domain.catalog import AgentCatalog, AgentSpec

GLOBAL_SCOPE = "*"
REGISTRY_KEY = "rf:{agents}:registry"
VERSION_KEY = "rf:{agents}:version"
CHANGES_STREAM = "rf:{agents}:changes"
WORKERS_KEY = "rf:{agents}:workers"
CHANGES_MAXLEN = 10_000
MAX_AGENTS_PER_SCOPE = 200
HEARTBEAT_TTL_S = 15.0
HEARTBEAT_INTERVAL_S = 5.0


class NameTaken(ValueError):
    """The name belongs to an agent of another scope."""


def replicas_key(agent: str) -> str:
    """Sorted set: replica id -> last heartbeat (unix ms). Written by every worker replica."""
    return f"rf:agent:replicas:{agent}"


class AgentChange(BaseModel):
    """One recorded change of the registry."""

    version: int
    op: str = Field(description="put or delete")
    scope: str
    name: str
    by: str = ""
    at: float
    spec: dict[str, object] | None = None


class Replica(BaseModel):
    replica: str
    last_seen: float = Field(description="Unix seconds of the last heartbeat.")
    live: bool


def _field(scope: str, name: str) -> str:
    return f"{scope}|{name}"


async def put_agent(
    redis: Redis, base: AgentCatalog, spec: AgentSpec, scope: str, by: str = ""
) -> AgentSpec:
    """Validate `spec` against the merged catalog it joins, then store it with a new version.

    Raises ValueError (the caller's 422) when the merged catalog would be invalid
    (unknown task type, a tool that is not a worker or http agent)."""
    current = await runtime_specs(redis)
    elsewhere = sorted(sc for (sc, name) in current if name == spec.name and sc != scope)
    if elsewhere or (scope != GLOBAL_SCOPE and spec.name in base.names):
        # a worker agent's stream and heartbeats are named by the agent alone, so one
        # name must mean one agent: another workspace's worker must never get these tasks
        where = (
            "the catalog file"
            if not elsewhere
            else ("global" if "*" in elsewhere else "another workspace")
        )
        raise NameTaken(f"agent name {spec.name!r} is taken ({where}); choose another")
    in_scope = {name for (sc, name) in current if sc == scope}
    if spec.name not in in_scope and len(in_scope) >= MAX_AGENTS_PER_SCOPE:
        raise ValueError(f"{scope} already has {MAX_AGENTS_PER_SCOPE} registered agents")
    scoped = [s for (sc, _), s in current.items() if sc in (GLOBAL_SCOPE, scope)]
    base.merged([*scoped, spec])  # raises ValueError when inconsistent
    version = int(await redis.incr(VERSION_KEY))
    stored = spec.model_copy(update={"version": version})
    body = stored.model_dump(mode="json")
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(REGISTRY_KEY, _field(scope, spec.name), json.dumps(body))
        if spec.kind == "worker":
            pipe.sadd(WORKERS_KEY, spec.name)
        pipe.xadd(
            CHANGES_STREAM,
            _change(version, "put", scope, spec.name, by, body),
            approximate=True,
        )
        await pipe.execute()
    return stored


async def delete_agent(redis: Redis, name: str, scope: str, by: str = "") -> int | None:
    """Remove a registered agent; its version, or None when it was not registered there."""
    if not await redis.hdel(REGISTRY_KEY, _field(scope, name)):
        return None
    version = int(await redis.incr(VERSION_KEY))
    await redis.xadd(
        CHANGES_STREAM,
        _change(version, "delete", scope, name, by, None),
        approximate=True,
    )
    return version


def _change(
    version: int, op: str, scope: str, name: str, by: str, spec: dict[str, object] | None
) -> dict[str, str]:
    change = AgentChange(
        version=version, op=op, scope=scope, name=name, by=by, at=time.time(), spec=spec
    )
    return {"change": change.model_dump_json()}


async def changes(redis: Redis, name: str | None = None, count: int = 100) -> list[AgentChange]:
    """The latest recorded changes, newest first (optionally of one agent)."""
    entries = await redis.xrevrange(CHANGES_STREAM, count=count)
    out = [AgentChange.model_validate_json(fields[b"change"]) for _, fields in entries]
    return [c for c in out if name is None or c.name == name]


async def runtime_specs(redis: Redis) -> dict[tuple[str, str], AgentSpec]:
    """(scope, name) -> spec of every registered agent."""
    raw = await redis.hgetall(REGISTRY_KEY)
    specs: dict[tuple[str, str], AgentSpec] = {}
    for field, body in raw.items():
        scope, _, name = field.decode().partition("|")
        specs[(scope, name)] = AgentSpec.model_validate_json(body)
    return specs


@dataclass
class _Cached:
    version: int
    catalogs: dict[str, AgentCatalog]


_cache: dict[int, _Cached] = {}


async def catalog_for(redis: Redis, base: AgentCatalog, workspace_id: str) -> AgentCatalog:
    """The catalog a workspace sees: the file, then global, then its own registrations."""
    raw = await redis.get(VERSION_KEY)
    version = int(raw or 0)
    if version == 0:
        return base
    cached = _cache.get(id(base))
    if cached is None or cached.version != version:
        cached = _Cached(version, {})
        _cache[id(base)] = cached
    catalog = cached.catalogs.get(workspace_id)
    if catalog is None:
        specs = await runtime_specs(redis)
        ordered = [s for (sc, _), s in specs.items() if sc == GLOBAL_SCOPE]
        ordered += [s for (sc, _), s in specs.items() if sc == workspace_id]
        try:
            catalog = base.merged(ordered)
        except ValueError:
            catalog = base  # a registration made inconsistent by a later one: keep serving
        if len(cached.catalogs) < 10_000:
            cached.catalogs[workspace_id] = catalog
    return catalog


async def heartbeat(redis: Redis, agent: str, replica: str, now: float | None = None) -> None:
    """What a worker replica sends every HEARTBEAT_INTERVAL_S (the SDK does it)."""
    await redis.zadd(replicas_key(agent), {replica: int((now or time.time()) * 1000)})


async def replicas(redis: Redis, agent: str, now: float | None = None) -> list[Replica]:
    """Every replica seen in the last hour, newest first; older ones are pruned."""
    now = now or time.time()
    key = replicas_key(agent)
    await redis.zremrangebyscore(key, 0, int((now - 3600) * 1000))
    rows = await redis.zrevrange(key, 0, 99, withscores=True)
    return [
        Replica(
            replica=member.decode(),
            last_seen=score / 1000,
            live=now - score / 1000 <= HEARTBEAT_TTL_S,
        )
        for member, score in rows
    ]


async def live_workers(redis: Redis, agents: list[str], now: float | None = None) -> set[str]:
    """Which of `agents` have at least one replica seen within HEARTBEAT_TTL_S."""
    since = int(((now or time.time()) - HEARTBEAT_TTL_S) * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        for agent in agents:
            pipe.zcount(replicas_key(agent), since, "+inf")
        counts = await pipe.execute()
    return {agent for agent, count in zip(agents, counts, strict=True) if count}


async def worker_agent_names(redis: Redis, base: AgentCatalog) -> list[str]:
    """Every worker agent ever registered or in the file (for the live-replicas gauge)."""
    registered = {m.decode() for m in await redis.smembers(WORKERS_KEY)}
    return sorted(registered | {a.name for a in base.agents if a.kind == "worker"})
