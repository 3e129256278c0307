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

`open_vector_index` picks the back end from what the server supports. One module per
back end (`vector_sets`, `exact`); the interface and validation are in `base`; the
keys are in `shared.contract.keys` (`vector_set`, `vector_hash`, ...).
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from shared.contract.keys import Keys
from shared.memory.vector_index.base import (
    DEFAULT_DIM,
    IndexKind,
    Vector,
    VectorHit,
    VectorIndex,
    VectorSetsUnavailable,
    encode_attributes,
    prepare_vector,
)
from shared.memory.vector_index.exact import ExactIndex, binary_client
from shared.memory.vector_index.vector_sets import (
    RedisVectorSetIndex,
    parse_vsim_reply,
    vsim_score_to_cosine,
)

__all__ = [
    "DEFAULT_DIM",
    "ExactIndex",
    "IndexKind",
    "RedisVectorSetIndex",
    "Vector",
    "VectorHit",
    "VectorIndex",
    "VectorSetsUnavailable",
    "binary_client",
    "encode_attributes",
    "open_vector_index",
    "parse_vsim_reply",
    "prepare_vector",
    "server_has_vector_sets",
    "vsim_score_to_cosine",
]


async def server_has_vector_sets(redis: aioredis.Redis, keys: Keys) -> bool:
    """Probe with a read-only VCARD: Redis 7 answers 'unknown command'."""
    try:
        await redis.execute_command("VCARD", keys.vector_set("__probe__"))
    except ResponseError as exc:
        if "unknown command" in str(exc).lower():
            return False
        raise
    return True


async def open_vector_index(
    redis: aioredis.Redis, keys: Keys, kind: IndexKind | str = "auto", *, dim: int = DEFAULT_DIM
) -> VectorIndex:
    """Pick the index for this server: vector sets when available, else exact."""
    if kind not in ("auto", "vset", "exact"):
        raise ValueError(f"unknown vector index kind {kind!r}: use auto, vset or exact")
    if kind == "exact":
        return ExactIndex(redis, keys, dim=dim)
    if await server_has_vector_sets(redis, keys):
        return RedisVectorSetIndex(redis, keys, dim=dim)
    if kind == "vset":
        info = await redis.info("server")
        raise VectorSetsUnavailable(
            f"kind='vset' needs Redis >= 8.0 with vector sets (VADD/VSIM); this server is "
            f"Redis {info.get('redis_version', '?')}. Use kind='exact' or 'auto'."
        )
    return ExactIndex(redis, keys, dim=dim)
