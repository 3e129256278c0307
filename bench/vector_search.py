"""Benchmark the vector index back ends on one workspace of N random tasks.

Starts its own Redis 8 server (RedisServer), loads N random 384-d unit vectors
into one workspace for each kind (vector sets, then exact on the same server),
and reports load time, p50/p99 search latency (k=10, success filter), memory
(Redis used_memory delta; process RSS delta for the exact in-process copy),
recall@10 of vset against exact, and latency as a multiple of one PING round
trip measured in the same run, so figures from different machines compare.

    .venv/bin/python bench/vector_search.py            # N = 100000
    .venv/bin/python bench/vector_search.py --quick    # N = 10000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.redis_server import RedisServer
from shared.vector_index import VectorHit, VectorIndex, open_vector_index

DIM = 384
WORKSPACE = "bench"
Matrix = npt.NDArray[np.float32]


@dataclass
class Result:
    """Figures for one back end."""

    kind: str
    load_s: float = 0.0
    cold_first_search_ms: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    redis_mem_mb: float = 0.0
    rss_mb: float = 0.0
    hits: list[set[str]] = field(default_factory=list)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="tasks to load (default 100000)")
    parser.add_argument("--quick", action="store_true", help="shorthand for --n 10000")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--success-rate", type=float, default=0.8)
    parser.add_argument("--concurrency", type=int, default=32, help="in-flight adds while loading")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.quick:
        args.n = 10_000
    return args


def random_unit(n: int, rng: np.random.Generator) -> Matrix:
    """Random unit vectors: the hardest case for HNSW (no cluster structure)."""
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def rss_mb() -> float:
    """Resident set size of this process, from /proc (no psutil needed)."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def used_memory_mb(redis: aioredis.Redis) -> float:
    info = await redis.info("memory")
    return float(info["used_memory"]) / 2**20


async def timed(call: Callable[[], Awaitable[Any]], repeats: int) -> list[float]:
    """Latency of `repeats` sequential calls, in milliseconds."""
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        await call()
        out.append((time.perf_counter() - start) * 1e3)
    return out


async def load(index: VectorIndex, data: Matrix, success: npt.NDArray[np.bool_], conc: int) -> None:
    """Insert every row, `conc` adds in flight, as several producers would."""

    async def one(i: int) -> None:
        attrs = {
            "success": bool(success[i]),
            "quality": 0.5,
            "agent_sequence": ["planner", "coder"],
            "goal_hash": f"h{i}",
        }
        await index.add(WORKSPACE, f"task-{i}", data[i], attrs)

    for start in range(0, len(data), conc):
        await asyncio.gather(*(one(i) for i in range(start, min(start + conc, len(data)))))


async def run_kind(
    redis: aioredis.Redis, kind: str, data: Matrix, queries: Matrix, args: argparse.Namespace
) -> Result:
    """Load, then time the filtered k-NN searches for one back end."""
    result = Result(kind)
    index = await open_vector_index(redis, kind)
    gc.collect()
    mem_before, rss_before = await used_memory_mb(redis), rss_mb()
    success = np.random.default_rng(args.seed + 1).random(len(data)) < args.success_rate

    start = time.perf_counter()
    await load(index, data, success, args.concurrency)
    result.load_s = time.perf_counter() - start
    result.redis_mem_mb = await used_memory_mb(redis) - mem_before

    # First search: for exact this pulls the workspace into the process.
    result.cold_first_search_ms = (await timed(lambda: index.search(WORKSPACE, queries[0], 1), 1))[
        0
    ]
    gc.collect()
    result.rss_mb = rss_mb() - rss_before

    latencies = []
    for query in queries:
        begin = time.perf_counter()
        hits: list[VectorHit] = await index.search(WORKSPACE, query, args.k)
        latencies.append((time.perf_counter() - begin) * 1e3)
        result.hits.append({h.item_id for h in hits})
    result.p50_ms = float(np.percentile(latencies, 50))
    result.p99_ms = float(np.percentile(latencies, 99))
    return result


def report(results: list[Result], ping_ms: float, args: argparse.Namespace) -> None:
    print(f"\nN={args.n} dim={DIM} k={args.k} queries={args.queries} "
          f"success-rate={args.success_rate}  PING p50 = {ping_ms * 1e3:.0f} us")  # fmt: skip
    header = (f"{'kind':6} {'load s':>8} {'items/s':>8} {'1st ms':>8} {'p50 ms':>8} {'p99 ms':>8}"
              f" {'p50/PING':>9} {'p99/PING':>9} {'redis MB':>9} {'RSS MB':>8}")  # fmt: skip
    print(header)
    for r in results:
        ratio50, ratio99 = r.p50_ms / ping_ms, r.p99_ms / ping_ms
        print(f"{r.kind:6} {r.load_s:8.1f} {args.n / r.load_s:8.0f} {r.cold_first_search_ms:8.1f}"
              f" {r.p50_ms:8.2f} {r.p99_ms:8.2f} {ratio50:9.0f} {ratio99:9.0f}"
              f" {r.redis_mem_mb:9.1f} {r.rss_mb:8.1f}")  # fmt: skip
    by_kind = {r.kind: r for r in results}
    if {"vset", "exact"} <= by_kind.keys():
        pairs = zip(by_kind["vset"].hits, by_kind["exact"].hits, strict=True)
        found = sum(len(a & b) for a, b in pairs)
        total = sum(len(b) for b in by_kind["exact"].hits)
        print(f"recall@{args.k} vset vs exact: {found / max(total, 1):.3f}")
    for r in results:
        verdict = "meets" if r.p99_ms < 20 else "MISSES"
        print(f"{r.kind}: p99 {r.p99_ms:.2f} ms {verdict} the 20 ms target")


async def main() -> None:
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    data, queries = random_unit(args.n, rng), random_unit(args.queries, rng)
    server = RedisServer().start()
    try:
        async with aioredis.from_url(server.url) as redis:
            version = (await redis.info("server"))["redis_version"]
            print(f"Redis {version} on port {server.port}; {os.cpu_count()} CPUs")
            ping_ms = float(np.percentile(await timed(redis.ping, 1000), 50))
            results = []
            for kind in ("vset", "exact"):
                print(f"loading {args.n} items into {kind} ...", flush=True)
                results.append(await run_kind(redis, kind, data, queries, args))
            report(results, ping_ms, args)
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
