"""Per-workspace vector index over Redis, behind one async interface.

The memory service stores each finished task (goal embedding + attributes) and
the router asks for the k nearest *successful* past tasks of a workspace. Two
back ends implement the same `VectorIndex` protocol so callers never care which
server they run against:

* `RedisVectorSetIndex` - Redis 8 native vector sets (HNSW, `VADD`/`VSIM`),
  success filtering done server-side with `FILTER '.success'`.
* `ExactIndex` - for servers without vector search (Redis 7): vectors live in
  Redis hashes (durable, shared by replicas) and each process keeps a numpy
  copy per workspace, kept in step through a small change-log stream, so a
  search is one cheap Redis round trip plus one matmul.

`open_vector_index` picks the back end from what the server supports.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, cast, runtime_checkable

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis
from pydantic import BaseModel, Field
from redis.exceptions import ResponseError

from shared.contract import topology

Vector = npt.NDArray[np.float32]

DEFAULT_DIM: Final = 384
REQUIRED_ATTRIBUTES: Final = ("success", "quality", "agent_sequence", "goal_hash")
IndexKind = Literal["auto", "vset", "exact"]
ScriptArg = bytes | str | int | float


# --------------------------------------------------------------------------- keys


def vset_key(workspace_id: str) -> str:
    """Vector set holding one workspace's items (Redis 8 back end)."""
    return f"memory:vset:{topology.current().scoped(workspace_id)}"


def vec_key(workspace_id: str) -> str:
    """Hash item_id -> little-endian float32 bytes (exact back end)."""
    return f"memory:vec:{topology.current().scoped(workspace_id)}"


def attr_key(workspace_id: str) -> str:
    """Hash item_id -> JSON attributes (exact back end)."""
    return f"memory:vecattr:{topology.current().scoped(workspace_id)}"


def changes_key(workspace_id: str) -> str:
    """Change-log stream (one entry per mutation) replicas replay to stay in step."""
    return f"memory:vecver:{topology.current().scoped(workspace_id)}"


# ------------------------------------------------------------------ public types


class VectorHit(BaseModel):
    """One search result; `similarity` is plain cosine so both back ends compare."""

    item_id: str
    similarity: float = Field(ge=-1.0, le=1.0)
    attributes: dict[str, Any]


class VectorSetsUnavailable(RuntimeError):
    """The server has no native vector sets (needs Redis >= 8.0)."""


@runtime_checkable
class VectorIndex(Protocol):
    """What the memory service and router need from a per-workspace index."""

    kind: str

    async def add(
        self, workspace_id: str, item_id: str, vector: npt.ArrayLike, attributes: dict[str, Any]
    ) -> None:
        """Insert or replace `item_id` (vector and attributes)."""
        ...

    async def set_attributes(
        self, workspace_id: str, item_id: str, attributes: dict[str, Any]
    ) -> None:
        """Replace the attributes of an existing item; KeyError if it is absent."""
        ...

    async def remove(self, workspace_id: str, item_id: str) -> bool:
        """Delete an item; True if it existed."""
        ...

    async def search(
        self, workspace_id: str, vector: npt.ArrayLike, k: int, *, only_successful: bool = True
    ) -> list[VectorHit]:
        """k nearest items by cosine, best first, filtered in the index."""
        ...

    async def count(self, workspace_id: str) -> int:
        """Number of items stored for the workspace."""
        ...


# ------------------------------------------------------------------- validation


def prepare_vector(vector: npt.ArrayLike, dim: int) -> Vector:
    """Return a contiguous unit-length little-endian float32 copy.

    Normalising here keeps cosine == dot product for the exact index and makes
    both back ends agree even if a caller forgets to normalise.
    """
    arr = np.asarray(vector, dtype=np.float32)
    if arr.ndim != 1 or arr.shape[0] != dim:
        raise ValueError(f"expected a 1-D vector of {dim} floats, got shape {arr.shape}")
    norm = float(np.linalg.norm(arr))
    if not math.isfinite(norm) or norm == 0.0:
        raise ValueError("vector must be finite and non-zero")
    return np.ascontiguousarray(arr / norm, dtype="<f4")


def encode_attributes(attributes: Mapping[str, Any]) -> str:
    """Validate the attribute contract and serialise it to compact JSON.

    `success` must be a real bool: both back ends filter on it.
    """
    missing = [name for name in REQUIRED_ATTRIBUTES if name not in attributes]
    if missing:
        raise ValueError(f"attributes missing required keys: {missing}")
    if not isinstance(attributes["success"], bool):
        raise ValueError("attributes['success'] must be a bool")
    return json.dumps(dict(attributes), separators=(",", ":"))


def _check_ids(workspace_id: str, item_id: str | None = None) -> None:
    """Reject empty ids, which would silently collapse key scopes."""
    if not workspace_id:
        raise ValueError("workspace_id must be a non-empty string")
    if item_id is not None and not item_id:
        raise ValueError("item_id must be a non-empty string")


def _text(value: bytes | str) -> str:
    """Decode a reply that may come back as bytes or str depending on the client."""
    return value.decode() if isinstance(value, bytes) else value


def _log_start(inclusive_at: str | None, after: str | None) -> str:
    """XRANGE start: at an entry (inclusive), just after one, or the beginning."""
    if inclusive_at is not None:
        return inclusive_at
    return f"({after}" if after else "-"


def _clamp_cosine(value: float) -> float:
    """Float rounding can step just outside [-1, 1]; the model forbids that."""
    return max(-1.0, min(1.0, value))


# ------------------------------------------------------------- Redis vector sets


def vsim_score_to_cosine(score: float) -> float:
    """VSIM reports (1 + cos) / 2 in [0, 1]; map it back to cosine in [-1, 1]."""
    return _clamp_cosine(2.0 * float(score) - 1.0)


def parse_vsim_reply(reply: Any) -> list[tuple[str, float, dict[str, Any]]]:
    """Parse a raw `VSIM ... WITHSCORES WITHATTRIBS` reply (RESP2 list or RESP3 map).

    We parse it ourselves because redis-py's callback crashes on the empty
    reply of a missing key under RESP3.
    """
    if not reply:
        return []
    if isinstance(reply, dict):
        triples: Iterable[tuple[Any, Any, Any]] = (
            (elem, data[0], data[1]) for elem, data in reply.items()
        )
    else:
        it = iter(reply)
        triples = zip(it, it, it, strict=True)
    return [
        (_text(elem), vsim_score_to_cosine(score), json.loads(attrs) if attrs else {})
        for elem, score, attrs in triples
    ]


class RedisVectorSetIndex:
    """Redis 8 vector sets: HNSW search, keeping only successful items.

    Build options (Q8, M=32) were measured on random 384-d unit vectors, the
    hardest case for HNSW: at 20k items Q8 matched NOQUANT's recall@10 within
    noise while using half the memory and loading twice as fast; raising M from
    16 to 32 lifted recall@10 at EF 500 from 0.83 to 0.96 for about 25% more
    memory. VADD's CAS option (neighbour search off the main thread) is off by
    default: Redis 8.2 aborts replaying a CAS VADD from the AOF (aof.c
    'fakeClient->flags & CLIENT_BLOCKED'), so a restart with AOF would never
    come back (tests/fault/test_crashes.py kills Redis mid-run and restarts it).

    Search (bench/RESULTS.md, "Memory size: vector search", 100k items): EF
    200. On MiniLM goal embeddings recall@10 is ~0.99 from EF 50 to 500 while
    latency grows with EF; on random vectors recall keeps rising with EF (0.39
    at 200, 0.73 at 500) but there the nearest items have cosine ~0.2: no stored
    task resembles the query, so that recall should matter little to routing.
    `search_ef=500` restores the old trade-off.
    `FILTER '.success'` about doubles VSIM's time, so a successful-only search
    first asks for `overfetch * k` items without a filter and drops the failed
    ones client-side; only when fewer than k survive does it repeat the search
    with the server-side FILTER, and that workspace then goes straight to FILTER
    for its next `filter_first_for` searches (a workspace whose tasks mostly
    fail would otherwise pay two searches every time). `overfetch=0` always
    filters server-side. `threaded=False` adds NOTHREAD: the search then runs on
    Redis's main thread (no per-query thread hand-off, but it blocks every
    other client for its duration), so it stays off by default.
    """

    kind = "vset"

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        dim: int = DEFAULT_DIM,
        quantization: Literal["Q8", "NOQUANT", "BIN"] = "Q8",
        links: int = 32,
        search_ef: int = 200,
        overfetch: float = 2.0,
        filter_first_for: int = 32,
        threaded: bool = True,
        cas: bool = False,
    ) -> None:
        self._redis = redis
        self._dim = dim
        self._create_opts: list[str | int] = [quantization, "M", links] + (["CAS"] if cas else [])
        self.search_ef = search_ef
        self._overfetch = overfetch
        self._filter_first_for = filter_first_for
        self._filter_first: OrderedDict[str, int] = OrderedDict()
        self._thread_opts: list[str] = [] if threaded else ["NOTHREAD"]

    async def add(
        self, workspace_id: str, item_id: str, vector: npt.ArrayLike, attributes: dict[str, Any]
    ) -> None:
        """VADD always with SETATTR: a bare VADD on update would keep stale attributes.

        Quantisation is fixed when the set is created; repeating it on every
        VADD makes a mismatch with an existing set fail loudly.
        """
        _check_ids(workspace_id, item_id)
        blob = prepare_vector(vector, self._dim).tobytes()
        await self._redis.execute_command(
            "VADD", vset_key(workspace_id), "FP32", blob, item_id,
            *self._create_opts, "SETATTR", encode_attributes(attributes),
        )  # fmt: skip

    async def set_attributes(
        self, workspace_id: str, item_id: str, attributes: dict[str, Any]
    ) -> None:
        _check_ids(workspace_id, item_id)
        ok = await self._redis.execute_command(
            "VSETATTR", vset_key(workspace_id), item_id, encode_attributes(attributes)
        )
        if not ok:
            raise KeyError(item_id)

    async def remove(self, workspace_id: str, item_id: str) -> bool:
        _check_ids(workspace_id, item_id)
        return bool(await self._redis.execute_command("VREM", vset_key(workspace_id), item_id))

    async def search(
        self, workspace_id: str, vector: npt.ArrayLike, k: int, *, only_successful: bool = True
    ) -> list[VectorHit]:
        _check_ids(workspace_id)
        if k <= 0:
            return []
        blob = prepare_vector(vector, self._dim).tobytes()
        key = vset_key(workspace_id)
        if not only_successful:
            return await self._vsim(key, blob, k)
        fetch = math.ceil(k * self._overfetch)
        if fetch > k and not self._use_filter_first(workspace_id):
            hits = await self._vsim(key, blob, fetch)
            successful = [hit for hit in hits if hit.attributes.get("success") is True]
            if len(successful) >= k or len(hits) < fetch:  # short reply: we saw the whole set
                return successful[:k]
            self._remember_filter_first(workspace_id)
        return await self._vsim(key, blob, k, only_successful=True)

    async def _vsim(
        self, key: str, blob: bytes, count: int, *, only_successful: bool = False
    ) -> list[VectorHit]:
        """One VSIM, best first; EF never below COUNT or HNSW would return fewer."""
        args: list[Any] = [
            "VSIM", key, "FP32", blob, "WITHSCORES", "WITHATTRIBS",
            "COUNT", count, "EF", max(self.search_ef, count),
        ]  # fmt: skip
        if only_successful:
            args += ["FILTER", ".success"]
        rows = parse_vsim_reply(await self._redis.execute_command(*args, *self._thread_opts))
        hits = [VectorHit(item_id=i, similarity=s, attributes=a) for i, s, a in rows]
        hits.sort(key=lambda hit: hit.similarity, reverse=True)
        return hits

    def _use_filter_first(self, workspace_id: str) -> bool:
        """Count down this workspace's filter-first searches; False once it may over-fetch again."""
        left = self._filter_first.get(workspace_id, 0)
        if left <= 0:
            return False
        if left == 1:
            del self._filter_first[workspace_id]
        else:
            self._filter_first[workspace_id] = left - 1
        return True

    def _remember_filter_first(self, workspace_id: str) -> None:
        """Over-fetching fell short here: filter server-side for a while (bounded LRU)."""
        self._filter_first[workspace_id] = self._filter_first_for
        self._filter_first.move_to_end(workspace_id)
        while len(self._filter_first) > 4096:
            self._filter_first.popitem(last=False)

    async def count(self, workspace_id: str) -> int:
        _check_ids(workspace_id)
        return int(await self._redis.execute_command("VCARD", vset_key(workspace_id)))


# -------------------------------------------------------------- exact fallback


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
            VectorHit(item_id=item, similarity=_clamp_cosine(sim), attributes=dict(attrs))
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
        *,
        dim: int = DEFAULT_DIM,
        changelog_len: int = 10_000,
        max_workspaces: int = 64,
        thread_offload_rows: int = 20_000,
    ) -> None:
        self._redis = binary_client(redis)
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
        _check_ids(workspace_id, item_id)
        blob = prepare_vector(vector, self._dim).tobytes()
        args: list[ScriptArg] = [item_id, blob, encode_attributes(attributes), self._changelog_len]
        await self._add(keys=self._keys(workspace_id), args=args)

    async def set_attributes(
        self, workspace_id: str, item_id: str, attributes: dict[str, Any]
    ) -> None:
        _check_ids(workspace_id, item_id)
        args: list[ScriptArg] = [item_id, encode_attributes(attributes), self._changelog_len]
        if not await self._set_attr(keys=self._keys(workspace_id), args=args):
            raise KeyError(item_id)

    async def remove(self, workspace_id: str, item_id: str) -> bool:
        _check_ids(workspace_id, item_id)
        args: list[ScriptArg] = [item_id, self._changelog_len]
        return bool(await self._remove(keys=self._keys(workspace_id), args=args))

    async def count(self, workspace_id: str) -> int:
        _check_ids(workspace_id)
        return int(await self._redis.hlen(vec_key(workspace_id)))

    # ---- search

    async def search(
        self, workspace_id: str, vector: npt.ArrayLike, k: int, *, only_successful: bool = True
    ) -> list[VectorHit]:
        _check_ids(workspace_id)
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
        return [vec_key(workspace_id), attr_key(workspace_id), changes_key(workspace_id)]

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
        key, ids, newest = changes_key(workspace_id), list[str](), last
        inclusive = last is not None
        while True:
            start = _log_start(last if inclusive else None, newest)
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
        return [(_text(entry_id), _text(fields[b"id"])) for entry_id, fields in entries]

    async def _full_load(self, workspace_id: str, cache: _WorkspaceCache) -> None:
        """Snapshot both hashes with HSCAN (no long blocking HGETALL).

        The change-log position is read *before* scanning, so every write the
        scan might have half-seen is replayed afterwards by `_sync`.
        """
        cache.reset()
        newest = cast(
            "list[tuple[bytes, Any]]",
            await self._redis.xrevrange(changes_key(workspace_id), count=1),
        )
        vectors = await self._scan(vec_key(workspace_id))
        attrs = await self._scan(attr_key(workspace_id))
        for item_id in vectors.keys() & attrs.keys():
            vector = np.frombuffer(vectors[item_id], dtype="<f4")
            cache.upsert(item_id, vector, json.loads(attrs[item_id]))
        cache.last_change = _text(newest[0][0]) if newest else None
        cache.loaded = True

    async def _scan(self, key: str) -> dict[str, bytes]:
        return {_text(name): value async for name, value in self._redis.hscan_iter(key, count=1000)}

    async def _apply(self, workspace_id: str, cache: _WorkspaceCache, ids: list[str]) -> None:
        """Fetch the current state of touched items atomically and mirror it."""
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hmget(vec_key(workspace_id), chunk)
                pipe.hmget(attr_key(workspace_id), chunk)
                vectors, attrs = await pipe.execute()
            for item_id, vector, attr in zip(chunk, vectors, attrs, strict=True):
                if vector is None or attr is None:
                    cache.delete(item_id)
                else:
                    cache.upsert(item_id, np.frombuffer(vector, dtype="<f4"), json.loads(attr))


# ----------------------------------------------------------------------- factory


async def server_has_vector_sets(redis: aioredis.Redis) -> bool:
    """Probe with a read-only VCARD: Redis 7 answers 'unknown command'."""
    try:
        await redis.execute_command("VCARD", vset_key("__probe__"))
    except ResponseError as exc:
        if "unknown command" in str(exc).lower():
            return False
        raise
    return True


async def open_vector_index(
    redis: aioredis.Redis, kind: IndexKind | str = "auto", *, dim: int = DEFAULT_DIM
) -> VectorIndex:
    """Pick the index for this server: vector sets when available, else exact."""
    if kind not in ("auto", "vset", "exact"):
        raise ValueError(f"unknown vector index kind {kind!r}: use auto, vset or exact")
    if kind == "exact":
        return ExactIndex(redis, dim=dim)
    if await server_has_vector_sets(redis):
        return RedisVectorSetIndex(redis, dim=dim)
    if kind == "vset":
        info = await redis.info("server")
        raise VectorSetsUnavailable(
            f"kind='vset' needs Redis >= 8.0 with vector sets (VADD/VSIM); this server is "
            f"Redis {info.get('redis_version', '?')}. Use kind='exact' or 'auto'."
        )
    return ExactIndex(redis, dim=dim)
