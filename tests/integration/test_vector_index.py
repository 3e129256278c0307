"""Behavioural tests for shared.memory.vector_index against real Redis servers.

Every behaviour runs against each back end: vector sets on Redis 8, the exact
index on Redis 8 and on Redis 7. Each module starts its own servers, and every
test uses fresh workspace ids, so nothing is flushed and nothing is shared.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from raptorflow.redis_server import RedisServer
from shared.memory.vector_index import (
    ExactIndex,
    RedisVectorSetIndex,
    VectorIndex,
    VectorSetsUnavailable,
    open_vector_index,
    vsim_score_to_cosine,
)
from tests.helpers import KEYS

DIM = 384
BACKENDS = ["vset-redis8", "exact-redis8", "exact-redis7"]


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def redis8() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis7() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no Redis 7 redis-server on PATH")
    server = RedisServer(binary=binary).start()
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> tuple[str, RedisServer]:
    """(kind, server) for each back end under test."""
    kind, server_name = str(request.param).split("-")
    return kind, request.getfixturevalue(server_name)


@pytest_asyncio.fixture
async def client(backend: tuple[str, RedisServer]) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.from_url(backend[1].url)
    yield redis
    await redis.aclose()


@pytest_asyncio.fixture
async def index(backend: tuple[str, RedisServer], client: aioredis.Redis) -> VectorIndex:
    return await open_vector_index(client, KEYS, backend[0])


@pytest.fixture
def ws() -> str:
    return f"ws-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------- helpers


def unit(*components: float) -> npt.NDArray[np.float32]:
    """A DIM-d unit vector whose first coordinates are `components`."""
    vec = np.zeros(DIM, dtype=np.float32)
    vec[: len(components)] = components
    return vec / np.linalg.norm(vec)


def attrs(success: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "success": success,
        "quality": 0.9,
        "agent_sequence": ["planner", "coder"],
        "goal_hash": "h",
        **extra,
    }


def random_unit(n: int, seed: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ------------------------------------------------------------- behaviour


@pytest.mark.asyncio
async def test_nearest_ordering_and_cosine(index: VectorIndex, ws: str) -> None:
    await index.add(ws, "same", unit(1, 0), attrs(tag="same"))
    await index.add(ws, "close", unit(0.8, 0.6), attrs())
    await index.add(ws, "orthogonal", unit(0, 1), attrs())
    await index.add(ws, "opposite", unit(-1, 0), attrs())

    hits = await index.search(ws, unit(1, 0), 3)

    assert [h.item_id for h in hits] == ["same", "close", "orthogonal"]
    assert [round(h.similarity, 2) for h in hits] == [1.0, 0.8, 0.0]
    assert hits[0].attributes == attrs(tag="same")
    everything = await index.search(ws, unit(1, 0), 10)
    assert everything[-1].item_id == "opposite"
    assert everything[-1].similarity == pytest.approx(-1.0, abs=0.02)


@pytest.mark.asyncio
async def test_success_filter(index: VectorIndex, ws: str) -> None:
    await index.add(ws, "good", unit(0.6, 0.8), attrs(success=True))
    await index.add(ws, "bad", unit(1, 0), attrs(success=False))

    filtered = await index.search(ws, unit(1, 0), 5)
    unfiltered = await index.search(ws, unit(1, 0), 5, only_successful=False)

    assert [h.item_id for h in filtered] == ["good"]
    assert [h.item_id for h in unfiltered] == ["bad", "good"]


@pytest.mark.asyncio
async def test_upsert_replaces_vector_and_attributes(index: VectorIndex, ws: str) -> None:
    await index.add(ws, "item", unit(1, 0), attrs(version=1))
    await index.search(ws, unit(1, 0), 1)  # exact: loads the in-process copy
    await index.add(ws, "item", unit(0, 1), attrs(version=2))

    hits = await index.search(ws, unit(0, 1), 5)

    assert await index.count(ws) == 1
    assert len(hits) == 1
    assert hits[0].similarity == pytest.approx(1.0, abs=0.02)
    assert hits[0].attributes["version"] == 2


@pytest.mark.asyncio
async def test_set_attributes_changes_filtering(index: VectorIndex, ws: str) -> None:
    await index.add(ws, "task", unit(1, 0), attrs(success=True))
    assert [h.item_id for h in await index.search(ws, unit(1, 0), 5)] == ["task"]

    await index.set_attributes(ws, "task", attrs(success=False, quality=0.1))
    assert await index.search(ws, unit(1, 0), 5) == []
    hit = (await index.search(ws, unit(1, 0), 5, only_successful=False))[0]
    assert hit.attributes["quality"] == 0.1

    await index.set_attributes(ws, "task", attrs(success=True))
    assert [h.item_id for h in await index.search(ws, unit(1, 0), 5)] == ["task"]

    with pytest.raises(KeyError):
        await index.set_attributes(ws, "missing", attrs())


@pytest.mark.asyncio
async def test_remove(index: VectorIndex, ws: str) -> None:
    await index.add(ws, "a", unit(1, 0), attrs())
    await index.add(ws, "b", unit(0, 1), attrs())
    await index.search(ws, unit(1, 0), 1)

    assert await index.remove(ws, "a") is True
    assert await index.remove(ws, "a") is False

    assert await index.count(ws) == 1
    assert [h.item_id for h in await index.search(ws, unit(1, 0), 5)] == ["b"]


@pytest.mark.asyncio
async def test_workspace_isolation(index: VectorIndex) -> None:
    ws_a, ws_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    await index.add(ws_a, "a-item", unit(1, 0), attrs())
    await index.add(ws_b, "b-item", unit(1, 0), attrs())
    await index.add(ws_b, "shared-id", unit(1, 0.1), attrs())

    hits_a = await index.search(ws_a, unit(1, 0), 10, only_successful=False)

    assert {h.item_id for h in hits_a} == {"a-item"}
    assert await index.count(ws_a) == 1
    assert await index.count(ws_b) == 2
    assert await index.search(f"empty-{uuid.uuid4().hex[:8]}", unit(1, 0), 5) == []


@pytest.mark.asyncio
async def test_rejects_bad_input(index: VectorIndex, ws: str) -> None:
    with pytest.raises(ValueError):
        await index.add(ws, "x", np.ones(DIM - 1, dtype=np.float32), attrs())
    with pytest.raises(ValueError):
        await index.add(ws, "x", np.zeros(DIM, dtype=np.float32), attrs())
    with pytest.raises(ValueError):
        await index.add(ws, "x", unit(1), {"success": True})
    assert await index.search(ws, unit(1), 0) == []


# --------------------------------------------------- exact: replicas in step


@pytest.mark.asyncio
@pytest.mark.parametrize("server_name", ["redis8", "redis7"])
async def test_exact_replica_sees_other_writers(
    server_name: str, request: pytest.FixtureRequest, ws: str
) -> None:
    server: RedisServer = request.getfixturevalue(server_name)
    writer_client = aioredis.from_url(server.url)
    reader_client = aioredis.from_url(server.url, decode_responses=True)
    writer, reader = ExactIndex(writer_client, KEYS), ExactIndex(reader_client, KEYS)
    try:
        await writer.add(ws, "first", unit(1, 0), attrs())
        assert [h.item_id for h in await reader.search(ws, unit(1, 0), 5)] == ["first"]

        await writer.add(ws, "second", unit(0.9, 0.1), attrs())
        await writer.set_attributes(ws, "first", attrs(success=False))
        await writer.add(ws, "third", unit(0, 1), attrs())
        await writer.remove(ws, "third")

        hits = await reader.search(ws, unit(1, 0), 5)
        assert [h.item_id for h in hits] == ["second"]
        everything = await reader.search(ws, unit(1, 0), 5, only_successful=False)
        assert [h.item_id for h in everything] == ["first", "second"]
    finally:
        await reader.aclose()
        await writer_client.aclose()
        await reader_client.aclose()


@pytest.mark.asyncio
async def test_exact_reloads_when_change_log_was_trimmed(redis7: RedisServer, ws: str) -> None:
    client = aioredis.from_url(redis7.url)
    writer = ExactIndex(client, KEYS, changelog_len=5)
    reader = ExactIndex(client, KEYS, changelog_len=5)
    try:
        await writer.add(ws, "seed", unit(1, 0), attrs())
        await reader.search(ws, unit(1, 0), 1)
        vectors = random_unit(300, seed=3)
        for i, vec in enumerate(vectors):
            await writer.add(ws, f"item-{i}", vec, attrs())
        await writer.remove(ws, "seed")
        # MAXLEN ~ 5 has trimmed the reader's position: it must notice and reload.
        assert await client.xlen(f"memory:vecver:{ws}") < 300

        hits = await reader.search(ws, vectors[42], 1)

        assert hits[0].item_id == "item-42"
        assert "seed" not in {h.item_id for h in await reader.search(ws, unit(1, 0), 301)}
    finally:
        await client.aclose()


# ---------------------------------------------------------- auto detection


@pytest.mark.asyncio
async def test_auto_detection(redis8: RedisServer, redis7: RedisServer) -> None:
    async with aioredis.from_url(redis8.url) as r8, aioredis.from_url(redis7.url) as r7:
        assert isinstance(await open_vector_index(r8, KEYS), RedisVectorSetIndex)
        assert isinstance(await open_vector_index(r7, KEYS), ExactIndex)
        assert (await open_vector_index(r8, KEYS, "exact")).kind == "exact"
        with pytest.raises(VectorSetsUnavailable, match="Redis >= 8"):
            await open_vector_index(r7, KEYS, "vset")
        with pytest.raises(ValueError):
            await open_vector_index(r8, KEYS, "faiss")


def test_vsim_score_conversion() -> None:
    assert vsim_score_to_cosine(1.0) == 1.0
    assert vsim_score_to_cosine(0.5) == 0.0
    assert vsim_score_to_cosine(0.0) == -1.0


# ---------------------------------------------------------------- recall


@pytest.mark.asyncio
@pytest.mark.timeout(300)
async def test_vset_recall_against_exact(redis8: RedisServer) -> None:
    """recall@10 of the HNSW index vs exact search on 5k random unit vectors."""
    ws = f"recall-{uuid.uuid4().hex[:8]}"
    data, queries = random_unit(5000, seed=1), random_unit(50, seed=2)
    success = np.random.default_rng(4).random(len(data)) < 0.7
    async with aioredis.from_url(redis8.url) as client:
        vset, exact = RedisVectorSetIndex(client, KEYS), ExactIndex(client, KEYS)
        for i, (vec, ok) in enumerate(zip(data, success, strict=True)):
            await vset.add(ws, str(i), vec, attrs(success=bool(ok)))
            await exact.add(ws, str(i), vec, attrs(success=bool(ok)))
        found = total = 0
        for query in queries:
            truth = {h.item_id for h in await exact.search(ws, query, 10)}
            approx = {h.item_id for h in await vset.search(ws, query, 10)}
            found, total = found + len(truth & approx), total + len(truth)

    assert found / total >= 0.95


# ------------------------------------------- vset: over-fetch, then FILTER


async def vsim_calls(client: aioredis.Redis) -> int:
    """VSIM commands the server has run so far (INFO commandstats)."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_VSIM", {}).get("calls", 0))  # module commands keep their case


@pytest.mark.asyncio
async def test_vset_mostly_successful_workspace_needs_one_vsim(
    redis8: RedisServer, ws: str
) -> None:
    async with aioredis.from_url(redis8.url) as client:
        index = RedisVectorSetIndex(client, KEYS, overfetch=2)
        await index.add(ws, "bad", unit(1, 0), attrs(success=False))
        for i in range(30):
            await index.add(ws, f"good-{i}", unit(1, 0.01 * (i + 1)), attrs())
        before = await vsim_calls(client)

        hits = await index.search(ws, unit(1, 0), 5)

        assert [h.item_id for h in hits] == [f"good-{i}" for i in range(5)]
        assert await vsim_calls(client) - before == 1


@pytest.mark.asyncio
async def test_vset_falls_back_to_server_filter_when_over_fetch_is_short(
    redis8: RedisServer, ws: str
) -> None:
    async with aioredis.from_url(redis8.url) as client:
        index = RedisVectorSetIndex(client, KEYS, overfetch=2, filter_first_for=2)
        for i in range(30):
            await index.add(ws, f"bad-{i}", unit(1, 0.01 * i), attrs(success=False))
        await index.add(ws, "good-near", unit(1, 1), attrs())
        await index.add(ws, "good-far", unit(0, 1), attrs())
        calls = [await vsim_calls(client)]
        found = []
        for _ in range(4):
            found.append([h.item_id for h in await index.search(ws, unit(1, 0), 5)])
            calls.append(await vsim_calls(client))

        assert found == [["good-near", "good-far"]] * 4
        # Short once (2 VSIMs), then filter-first twice (1 each), then over-fetch again.
        assert np.diff(calls).tolist() == [2, 1, 1, 2]


@pytest.mark.asyncio
async def test_vset_small_workspace_is_complete_without_filter(
    redis8: RedisServer, ws: str
) -> None:
    async with aioredis.from_url(redis8.url) as client:
        index = RedisVectorSetIndex(client, KEYS, overfetch=2)
        await index.add(ws, "bad", unit(1, 0), attrs(success=False))
        await index.add(ws, "good", unit(0, 1), attrs())
        before = await vsim_calls(client)

        hits = await index.search(ws, unit(1, 0), 5)

        assert [h.item_id for h in hits] == ["good"]
        assert await vsim_calls(client) - before == 1


@pytest.mark.asyncio
async def test_vset_overfetch_zero_always_filters_on_the_server(
    redis8: RedisServer, ws: str
) -> None:
    async with aioredis.from_url(redis8.url) as client:
        index = RedisVectorSetIndex(client, KEYS, overfetch=0)
        await index.add(ws, "bad", unit(1, 0), attrs(success=False))
        await index.add(ws, "good", unit(0, 1), attrs())

        assert [h.item_id for h in await index.search(ws, unit(1, 0), 5)] == ["good"]
