"""Redis 8 native vector sets (HNSW, `VADD`/`VSIM`): success filtered server-side
with `FILTER '.success'`."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Literal

import numpy.typing as npt
import redis.asyncio as aioredis

from shared.contract.keys import Keys
from shared.memory.vector_index.base import (
    DEFAULT_DIM,
    VectorHit,
    check_ids,
    clamp_cosine,
    encode_attributes,
    prepare_vector,
    text,
)


def vsim_score_to_cosine(score: float) -> float:
    """VSIM reports (1 + cos) / 2 in [0, 1]; map it back to cosine in [-1, 1]."""
    return clamp_cosine(2.0 * float(score) - 1.0)


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
        (text(elem), vsim_score_to_cosine(score), json.loads(attrs) if attrs else {})
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
        keys: Keys,
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
        self._names = keys
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
        check_ids(workspace_id, item_id)
        blob = prepare_vector(vector, self._dim).tobytes()
        await self._redis.execute_command(
            "VADD", self._names.vector_set(workspace_id), "FP32", blob, item_id,
            *self._create_opts, "SETATTR", encode_attributes(attributes),
        )  # fmt: skip

    async def set_attributes(
        self, workspace_id: str, item_id: str, attributes: dict[str, Any]
    ) -> None:
        check_ids(workspace_id, item_id)
        ok = await self._redis.execute_command(
            "VSETATTR", self._names.vector_set(workspace_id), item_id, encode_attributes(attributes)
        )
        if not ok:
            raise KeyError(item_id)

    async def remove(self, workspace_id: str, item_id: str) -> bool:
        check_ids(workspace_id, item_id)
        key = self._names.vector_set(workspace_id)
        return bool(await self._redis.execute_command("VREM", key, item_id))

    async def search(
        self, workspace_id: str, vector: npt.ArrayLike, k: int, *, only_successful: bool = True
    ) -> list[VectorHit]:
        check_ids(workspace_id)
        if k <= 0:
            return []
        blob = prepare_vector(vector, self._dim).tobytes()
        key = self._names.vector_set(workspace_id)
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
        check_ids(workspace_id)
        return int(await self._redis.execute_command("VCARD", self._names.vector_set(workspace_id)))
