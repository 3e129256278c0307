"""Exact cosine search for servers without vector search (Redis 7): vectors live in Redis
hashes (durable, shared by replicas) and each process keeps a numpy copy per workspace,
kept in step through a small change-log stream, so a search is one cheap Redis round
trip plus one matmul."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis

from shared.contract.keys import Keys
from shared.memory.vector_index.base import (
    DEFAULT_DIM,
    ScriptArg,
    Vector,
    VectorHit,
    check_ids,
    clamp_cosine,
    encode_attributes,
    log_start,
    prepare_vector,
    text,
)


@dataclass
class _Segment:
    """Rows of one success class: a growable matrix with O(1) swap-delete.

    The matrix is one contiguous float32 block (float16 would halve its memory,
    but NumPy has no fast float16 matrix-vector product: measured ~20x slower),
    and the score buffer is kept between searches so a search allocates only the
    argpartition indices.
    """

    dim: int
    matrix: Vector = field(init=False)
    scores: Vector = field(init=False)
    ids: list[str] = field(default_factory=list)
    attrs: list[dict[str, Any]] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matrix = np.empty((16, self.dim), dtype=np.float32)
        self.scores = np.empty(16, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    def upsert(self, item_id: str, vector: Vector, attrs: dict[str, Any]) -> None:
        row = self.rows.get(item_id)
        if row is None:
            row = len(self.ids)
            self._grow_to(row + 1)
            self.ids.append(item_id)
            self.attrs.append(attrs)
            self.rows[item_id] = row
        else:
            self.attrs[row] = attrs
        self.matrix[row] = vector

    def delete(self, item_id: str) -> bool:
        row = self.rows.pop(item_id, None)
        if row is None:
            return False
        last = len(self.ids) - 1
        if row != last:
            moved = self.ids[last]
            self.matrix[row] = self.matrix[last]
            self.ids[row], self.attrs[row] = moved, self.attrs[last]
            self.rows[moved] = row
        self.ids.pop()
        self.attrs.pop()
        return True

    def top_k(self, query: Vector, k: int) -> list[tuple[float, str, dict[str, Any]]]:
        """Exact cosine of every row in one matmul, then a partial sort."""
        n = len(self.ids)
        if n == 0:
            return []
        sims = np.matmul(self.matrix[:n], query, out=self.scores[:n])
        best = np.argpartition(sims, n - k)[n - k :] if k < n else np.arange(n)
        return [(float(sims[i]), self.ids[i], self.attrs[i]) for i in best]

    def _grow_to(self, rows: int) -> None:
        if rows > self.matrix.shape[0]:
            capacity = max(rows, 2 * self.matrix.shape[0])
            bigger = np.empty((capacity, self.dim), dtype=np.float32)
            bigger[: len(self.ids)] = self.matrix[: len(self.ids)]
            self.matrix = bigger
            self.scores = np.empty(capacity, dtype=np.float32)


@dataclass
class _WorkspaceCache:
    """In-process copy of one workspace, split by success so filtering is free."""

    dim: int
    segments: dict[bool, _Segment] = field(init=False)
    last_change: str | None = None
    loaded: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.segments = {True: _Segment(self.dim), False: _Segment(self.dim)}
        self.last_change = None
        self.loaded = False

    def upsert(self, item_id: str, vector: Vector, attrs: dict[str, Any]) -> None:
        success = bool(attrs.get("success"))
        self.segments[not success].delete(item_id)
        self.segments[success].upsert(item_id, vector, attrs)

    def delete(self, item_id: str) -> None:
        for segment in self.segments.values():
            segment.delete(item_id)

    def size(self, only_successful: bool) -> int:
        return sum(len(s) for s in self._pick(only_successful))

    def top_k(self, query: Vector, k: int, only_successful: bool) -> list[VectorHit]:
        found = [hit for s in self._pick(only_successful) for hit in s.top_k(query, k)]
        found.sort(key=lambda hit: hit[0], reverse=True)
        return [
            VectorHit(item_id=item, similarity=clamp_cosine(sim), attributes=dict(attrs))
            for sim, item, attrs in found[:k]
        ]

    def _pick(self, only_successful: bool) -> Sequence[_Segment]:
        segs = self.segments
        return [segs[True]] if only_successful else [segs[True], segs[False]]


_ADD_LUA: Final = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'id', ARGV[1])
return 1
"""

_SET_ATTR_LUA: Final = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'id', ARGV[1])
return 1
"""

_REMOVE_LUA: Final = """
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if n == 1 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'id', ARGV[1])
end
return n
"""


def binary_client(redis: aioredis.Redis) -> aioredis.Redis:
    """A client on the same server that returns raw bytes (vectors are binary).

    Shares the caller's pool unless it decodes responses, in which case a
    sibling pool with identical settings but `decode_responses=False` is made.
    """
    pool = getattr(redis, "connection_pool", None)  # a cluster client has one per node
    if pool is None or not pool.connection_kwargs.get("decode_responses"):
        return redis
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    raw_pool = aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    return aioredis.Redis(connection_pool=raw_pool)


class ExactIndex:
    """Exact cosine search for servers without vector search (e.g. Redis 7).

    Redis holds the truth (two hashes + a change-log stream, all written
    atomically by Lua); each process lazily loads a workspace into numpy on its
    first search and afterwards replays only the change-log entries it has not
    seen - one XRANGE round trip when nothing changed.
    """

    kind = "exact"

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        dim: int = DEFAULT_DIM,
        changelog_len: int = 10_000,
        max_workspaces: int = 64,
        thread_offload_rows: int = 20_000,
    ) -> None:
        self._redis = binary_client(redis)
        self._names = keys
        self._owns_client = self._redis is not redis
        self._dim = dim
        self._changelog_len = changelog_len
        self._max_workspaces = max_workspaces
        self._offload_rows = thread_offload_rows
        self._caches: OrderedDict[str, _WorkspaceCache] = OrderedDict()
        self._add = self._redis.register_script(_ADD_LUA)
        self._set_attr = self._redis.register_script(_SET_ATTR_LUA)
        self._remove = self._redis.register_script(_REMOVE_LUA)

    async def aclose(self) -> None:
        """Close the bytes-mode sibling client if we had to create one."""
        if self._owns_client:
            await self._redis.aclose()
            await self._redis.connection_pool.disconnect()

    # ---- writes: Redis only; local copies (ours included) catch up on next search

    async def add(
        self, workspace_id: str, item_id: str, vector: npt.ArrayLike, attributes: dict[str, Any]
    ) -> None:
        check_ids(workspace_id, item_id)
        blob = prepare_vector(vector, self._dim).tobytes()
        args: list[ScriptArg] = [item_id, blob, encode_attributes(attributes), self._changelog_len]
        await self._add(keys=self._keys(workspace_id), args=args)

    async def set_attributes(
        self, workspace_id: str, item_id: str, attributes: dict[str, Any]
    ) -> None:
        check_ids(workspace_id, item_id)
        args: list[ScriptArg] = [item_id, encode_attributes(attributes), self._changelog_len]
        if not await self._set_attr(keys=self._keys(workspace_id), args=args):
            raise KeyError(item_id)

    async def remove(self, workspace_id: str, item_id: str) -> bool:
        check_ids(workspace_id, item_id)
        args: list[ScriptArg] = [item_id, self._changelog_len]
        return bool(await self._remove(keys=self._keys(workspace_id), args=args))

    async def count(self, workspace_id: str) -> int:
        check_ids(workspace_id)
        return int(await self._redis.hlen(self._names.vector_hash(workspace_id)))

    # ---- search

    async def search(
        self, workspace_id: str, vector: npt.ArrayLike, k: int, *, only_successful: bool = True
    ) -> list[VectorHit]:
        check_ids(workspace_id)
        if k <= 0:
            return []
        query = prepare_vector(vector, self._dim)
        cache = self._cache(workspace_id)
        async with cache.lock:
            await self._sync(workspace_id, cache)
            if cache.size(only_successful) >= self._offload_rows:
                # numpy drops the GIL in the matmul: keep the event loop responsive.
                return await asyncio.to_thread(cache.top_k, query, k, only_successful)
            return cache.top_k(query, k, only_successful)

    # ---- keeping the in-process copy in step

    def _keys(self, workspace_id: str) -> list[str]:
        names = self._names
        return [
            names.vector_hash(workspace_id),
            names.vector_attributes(workspace_id),
            names.vector_changes(workspace_id),
        ]

    def _cache(self, workspace_id: str) -> _WorkspaceCache:
        """LRU of workspace copies so a process serving many workspaces stays bounded."""
        cache = self._caches.get(workspace_id)
        if cache is None:
            cache = self._caches[workspace_id] = _WorkspaceCache(self._dim)
            while len(self._caches) > self._max_workspaces:
                self._caches.popitem(last=False)
        self._caches.move_to_end(workspace_id)
        return cache

    async def _sync(self, workspace_id: str, cache: _WorkspaceCache) -> None:
        """Bring `cache` up to date: replay the change log, or reload if it has a gap."""
        for _ in range(3):
            if not cache.loaded:
                await self._full_load(workspace_id, cache)
            touched = await self._changes_since(workspace_id, cache.last_change)
            if touched is not None:
                ids, last = touched
                await self._apply(workspace_id, cache, ids)
                cache.last_change = last
                return
            cache.reset()  # our position was trimmed away: start over
        raise RuntimeError(f"could not sync vector cache for workspace {workspace_id!r}")

    async def _changes_since(
        self, workspace_id: str, last: str | None, page: int = 1000
    ) -> tuple[list[str], str | None] | None:
        """Item ids touched after `last` and the newest entry id; None on a gap.

        The first read starts *at* `last` (inclusive): if that entry is not the
        first one returned, it was trimmed away and changes may be lost. When
        nothing changed this is a single XRANGE returning one entry.
        """
        key, ids, newest = self._names.vector_changes(workspace_id), list[str](), last
        inclusive = last is not None
        while True:
            start = log_start(last if inclusive else None, newest)
            entries = await self._read_log(key, start, page + inclusive)
            if inclusive:
                if not entries or entries[0][0] != last:
                    return None
                entries, inclusive = entries[1:], False
            ids.extend(item_id for _, item_id in entries)
            if entries:
                newest = entries[-1][0]
            if len(entries) < page:
                return list(dict.fromkeys(ids)), newest
            if len(ids) > self._changelog_len:
                return None  # further behind than the log keeps: a reload is cheaper

    async def _read_log(self, key: str, start: str, count: int) -> list[tuple[str, str]]:
        """(entry id, item id) pairs of the change log from `start` on."""
        entries = cast(
            "list[tuple[bytes, dict[bytes, bytes]]]",
            await self._redis.xrange(key, min=start, max="+", count=count),
        )
        return [(text(entry_id), text(fields[b"id"])) for entry_id, fields in entries]

    async def _full_load(self, workspace_id: str, cache: _WorkspaceCache) -> None:
        """Snapshot both hashes with HSCAN (no long blocking HGETALL).

        The change-log position is read *before* scanning, so every write the
        scan might have half-seen is replayed afterwards by `_sync`.
        """
        cache.reset()
        newest = cast(
            "list[tuple[bytes, Any]]",
            await self._redis.xrevrange(self._names.vector_changes(workspace_id), count=1),
        )
        vectors = await self._scan(self._names.vector_hash(workspace_id))
        attrs = await self._scan(self._names.vector_attributes(workspace_id))
        for item_id in vectors.keys() & attrs.keys():
            vector = np.frombuffer(vectors[item_id], dtype="<f4")
            cache.upsert(item_id, vector, json.loads(attrs[item_id]))
        cache.last_change = text(newest[0][0]) if newest else None
        cache.loaded = True

    async def _scan(self, key: str) -> dict[str, bytes]:
        return {text(name): value async for name, value in self._redis.hscan_iter(key, count=1000)}

    async def _apply(self, workspace_id: str, cache: _WorkspaceCache, ids: list[str]) -> None:
        """Fetch the current state of touched items atomically and mirror it."""
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hmget(self._names.vector_hash(workspace_id), chunk)
                pipe.hmget(self._names.vector_attributes(workspace_id), chunk)
                vectors, attrs = await pipe.execute()
            for item_id, vector, attr in zip(chunk, vectors, attrs, strict=True):
                if vector is None or attr is None:
                    cache.delete(item_id)
                else:
                    cache.upsert(item_id, np.frombuffer(vector, dtype="<f4"), json.loads(attr))
