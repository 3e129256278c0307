"""Benchmark the vector index back ends on one workspace of N tasks.

Starts its own Redis 8 server (RedisServer) and, for each vector distribution,
loads N 384-d unit vectors into one workspace for each kind (vector sets, then
exact on the same server). Reports load rate, p50/p99 search latency (k=10,
success filter, as the router asks), memory (Redis used_memory delta; for the
exact index also the process RSS delta of its in-process copy), recall@k of
both kinds against a NumPy brute-force ground truth, the 1-minute load average
when each figure was taken (the sandbox has 2 cores shared with other work),
and latency as a multiple of one PING round trip measured in the same run.

Two vector distributions (`--vectors`):

* random: uniform random unit vectors, the worst case for HNSW (no structure).
* goals: MiniLM embeddings of the distinct real goals of
  /work/shared/data/{clinc150,ultratool}/dev.jsonl (~20.7k; embedded once and
  cached under /tmp/raptorflow_vector_bench), expanded to N by adding Gaussian
  noise (sigma per coordinate, default 0.02: cosine ~0.93 to the source goal)
  to randomly chosen goals and re-normalising. Queries are fresh perturbations
  of random goals, i.e. new tasks that resemble earlier ones. This is synthetic
  around real embeddings, not a real 100k-task history.

    .venv/bin/python bench/vector_search.py                     # N = 100000, both
    .venv/bin/python bench/vector_search.py --quick             # N = 10000, random
    .venv/bin/python bench/vector_search.py --ef-sweep 50,100,200,500
    .venv/bin/python bench/vector_search.py --baseline   # + old vset search (row "vset0")
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
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

from raptorflow.redis_server import RedisServer
from shared.contract.keys import Keys
from shared.contract.topology import Topology
from shared.memory.vector_index import (
    ExactIndex,
    RedisVectorSetIndex,
    VectorHit,
    VectorIndex,
    open_vector_index,
)

DIM = 384
WORKSPACE = "bench"
KEYS = Keys(Topology())  # the benchmark's single Redis
DATA = Path("/work/shared/data")
CACHE = Path("/tmp/raptorflow_vector_bench")
QUICK_GOALS = 2000  # --quick embeds only this many goals, so `make bench` stays short
Matrix = npt.NDArray[np.float32]


@dataclass
class Result:
    """Figures for one back end on one vector distribution (and one search EF)."""

    kind: str
    vectors: str
    ef: int | None = None
    load_s: float = 0.0
    cold_first_search_ms: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    recall: float = 0.0
    redis_mem_mb: float = 0.0
    rss_mb: float = 0.0
    load_avg: float = 0.0


@dataclass
class Dataset:
    """Vectors to load, queries, which items count as successful, and the true top k."""

    name: str
    data: Matrix
    queries: Matrix
    success: npt.NDArray[np.bool_]
    truth: list[set[str]] = field(default_factory=list)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="tasks to load (default 100000)")
    parser.add_argument("--quick", action="store_true", help="--n 10000, random vectors only")
    parser.add_argument("--vectors", choices=["random", "goals", "both"], default=None,
                        help="vector distribution (default both; random with --quick)")  # fmt: skip
    parser.add_argument("--kinds", default="vset,exact", help="back ends, comma-separated")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--success-rate", type=float, default=0.8)
    parser.add_argument("--sigma", type=float, default=0.02, help="goals: noise per coordinate")
    parser.add_argument("--concurrency", type=int, default=32, help="in-flight adds while loading")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--ef", type=int, default=None, help="vset search EF (default: the index's)"
    )
    parser.add_argument(
        "--ef-sweep", default="", help="vset: also time these search EFs, e.g. 50,200"
    )
    parser.add_argument("--overfetch", type=float, default=None, help="vset over-fetch (0: FILTER)")
    parser.add_argument("--quantization", choices=["Q8", "NOQUANT", "BIN"], default=None)
    parser.add_argument("--links", type=int, default=None, help="vset M (links per node)")
    parser.add_argument("--nothread", action="store_true", help="vset: VSIM ... NOTHREAD")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="vset: also time the search used before 2026-11-28 (EF 500, always FILTER)",
    )
    args = parser.parse_args()
    if args.quick:
        args.n = 10_000
    if args.vectors is None:
        args.vectors = "random" if args.quick else "both"
    return args


def unit_rows(x: Matrix) -> Matrix:
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def random_unit(n: int, rng: np.random.Generator) -> Matrix:
    """Random unit vectors: the hardest case for HNSW (no cluster structure)."""
    return unit_rows(rng.standard_normal((n, DIM), dtype=np.float32))


def goal_texts(limit: int | None) -> list[str]:
    """Distinct real goals of the two data sets, in a fixed order."""
    goals = {
        json.loads(line)["goal"]
        for name in ("clinc150", "ultratool")
        for line in (DATA / name / "dev.jsonl").read_text().splitlines()
        if line.strip()
    }
    ordered = sorted(goals)
    if limit is not None and limit < len(ordered):
        picks = np.random.default_rng(0).choice(len(ordered), limit, replace=False)
        ordered = [ordered[i] for i in sorted(picks)]
    return ordered


def goal_embeddings(limit: int | None) -> Matrix:
    """MiniLM vectors of the goals, cached under /tmp keyed by the texts' content."""
    goals = goal_texts(limit)
    digest = hashlib.sha256("\n".join(goals).encode()).hexdigest()[:16]
    path = CACHE / f"goals-{digest}.npy"
    if path.exists():
        return np.load(path)
    from shared.memory.embeddings.minilm import LocalMiniLM

    print(f"embedding {len(goals)} goals once (cached in {path}) ...", flush=True)
    model = LocalMiniLM(cache_size=0)
    vectors = np.concatenate([model.embed(goals[i : i + 256]) for i in range(0, len(goals), 256)])
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors.astype(np.float32))
    return vectors.astype(np.float32)


def perturbed(base: Matrix, n: int, sigma: float, rng: np.random.Generator) -> Matrix:
    """n rows, each a random base row plus N(0, sigma^2) per coordinate, re-normalised."""
    picks = rng.integers(0, len(base), n)
    return unit_rows(base[picks] + rng.normal(0.0, sigma, (n, DIM)).astype(np.float32))


def make_dataset(name: str, args: argparse.Namespace) -> Dataset:
    rng = np.random.default_rng(args.seed)
    if name == "random":
        data, queries = random_unit(args.n, rng), random_unit(args.queries, rng)
    else:
        base = goal_embeddings(QUICK_GOALS if args.quick else None)
        data = perturbed(base, args.n, args.sigma, rng)
        queries = perturbed(base, args.queries, args.sigma, rng)
    success = np.random.default_rng(args.seed + 1).random(args.n) < args.success_rate
    dataset = Dataset(name, data, queries, success)
    dataset.truth = true_top_k(dataset, args.k)
    return dataset


def true_top_k(dataset: Dataset, k: int) -> list[set[str]]:
    """Brute-force k nearest successful items of every query (float64, so no ties by rounding)."""
    rows = np.flatnonzero(dataset.success)
    sims = dataset.queries.astype(np.float64) @ dataset.data[rows].astype(np.float64).T
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    return [{f"task-{rows[j]}" for j in row} for row in top]


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


async def load(index: VectorIndex, dataset: Dataset, workspace: str, conc: int) -> None:
    """Insert every row, `conc` adds in flight, as several producers would."""

    async def one(i: int) -> None:
        attrs = {
            "success": bool(dataset.success[i]),
            "quality": 0.5,
            "agent_sequence": ["planner", "coder"],
            "goal_hash": f"h{i}",
        }
        await index.add(workspace, f"task-{i}", dataset.data[i], attrs)

    n = len(dataset.data)
    for start in range(0, n, conc):
        await asyncio.gather(*(one(i) for i in range(start, min(start + conc, n))))


async def make_index(redis: aioredis.Redis, kind: str, args: argparse.Namespace) -> VectorIndex:
    """The index the service would open, with only the vset options given on the command line."""
    if kind == "exact":
        return ExactIndex(redis, KEYS)
    options: dict[str, Any] = {
        name: value
        for name, value in (
            ("search_ef", args.ef),
            ("overfetch", args.overfetch),
            ("quantization", args.quantization),
            ("links", args.links),
            ("threaded", False if args.nothread else None),
        )
        if value is not None
    }
    if not options:
        return await open_vector_index(redis, KEYS, "vset")
    return RedisVectorSetIndex(redis, KEYS, **options)


async def measure(
    index: VectorIndex, dataset: Dataset, workspace: str, result: Result, k: int
) -> None:
    """p50/p99 of the filtered k-NN searches, and recall against the ground truth."""
    latencies, found = [], 0
    for query, truth in zip(dataset.queries, dataset.truth, strict=True):
        begin = time.perf_counter()
        hits: list[VectorHit] = await index.search(workspace, query, k)
        latencies.append((time.perf_counter() - begin) * 1e3)
        found += len({h.item_id for h in hits} & truth)
    result.p50_ms = float(np.percentile(latencies, 50))
    result.p99_ms = float(np.percentile(latencies, 99))
    result.recall = found / (k * len(dataset.queries))
    result.load_avg = os.getloadavg()[0]


async def run_kind(
    redis: aioredis.Redis, kind: str, dataset: Dataset, args: argparse.Namespace
) -> list[Result]:
    """Load, then time the filtered k-NN searches for one back end (and each swept EF)."""
    result = Result(kind, dataset.name)
    workspace = f"{WORKSPACE}-{dataset.name}"
    index = await make_index(redis, kind, args)
    gc.collect()
    mem_before, rss_before = await used_memory_mb(redis), rss_mb()

    start = time.perf_counter()
    await load(index, dataset, workspace, args.concurrency)
    result.load_s = time.perf_counter() - start
    result.redis_mem_mb = await used_memory_mb(redis) - mem_before

    # First search: for exact this pulls the workspace into the process.
    first = await timed(lambda: index.search(workspace, dataset.queries[0], 1), 1)
    result.cold_first_search_ms = first[0]
    gc.collect()
    result.rss_mb = rss_mb() - rss_before
    if isinstance(index, RedisVectorSetIndex):
        result.ef = index.search_ef
    await measure(index, dataset, workspace, result, args.k)
    results = [result]

    if isinstance(index, RedisVectorSetIndex):
        variants = [(f"{kind}", index, int(ef)) for ef in args.ef_sweep.split(",") if ef]
        if args.baseline:
            variants.append(("vset0", RedisVectorSetIndex(redis, KEYS, overfetch=0), 500))
        for label, variant, ef in variants:
            variant.search_ef = ef
            swept = Result(label, dataset.name, ef, result.load_s, redis_mem_mb=result.redis_mem_mb)
            await measure(variant, dataset, workspace, swept, args.k)
            results.append(swept)
    await redis.delete(
        *(f"memory:{part}:{workspace}" for part in ("vset", "vec", "vecattr", "vecver"))
    )
    if isinstance(index, ExactIndex):
        await index.aclose()
    return results


def report(results: list[Result], ping_ms: float, args: argparse.Namespace) -> None:
    print(f"\nN={args.n} dim={DIM} k={args.k} queries={args.queries} "
          f"success-rate={args.success_rate} sigma(goals)={args.sigma}  "
          f"PING p50 = {ping_ms * 1e3:.0f} us")  # fmt: skip
    print(f"{'vectors':7} {'kind':5} {'EF':>4} {'items/s':>8} {'1st ms':>7} {'p50 ms':>7}"
          f" {'p99 ms':>7} {'p99/PING':>8} {'recall':>6} {'redis MB':>8} {'RSS MB':>7}"
          f" {'load1':>5}")  # fmt: skip
    for r in results:
        ef = str(r.ef) if r.ef is not None else "-"
        print(f"{r.vectors:7} {r.kind:5} {ef:>4} {args.n / r.load_s:8.0f}"
              f" {r.cold_first_search_ms:7.1f} {r.p50_ms:7.2f} {r.p99_ms:7.2f}"
              f" {r.p99_ms / ping_ms:8.0f} {r.recall:6.3f} {r.redis_mem_mb:8.1f}"
              f" {r.rss_mb:7.1f} {r.load_avg:5.2f}")  # fmt: skip
    for r in results:
        verdict = "meets" if r.p99_ms < 20 else "MISSES"
        ef = f" EF {r.ef}" if r.ef is not None else ""
        print(f"{r.vectors} {r.kind}{ef}: p99 {r.p99_ms:.2f} ms {verdict} the 20 ms target")


async def main() -> None:
    args = parse_args()
    names = ["random", "goals"] if args.vectors == "both" else [args.vectors]
    kinds = [kind for kind in args.kinds.split(",") if kind]
    server = RedisServer().start()
    try:
        async with aioredis.from_url(server.url) as redis:
            version = (await redis.info("server"))["redis_version"]
            print(f"Redis {version} on port {server.port}; {os.cpu_count()} CPUs")
            ping_ms = float(np.percentile(await timed(redis.ping, 1000), 50))
            results = []
            for name in names:
                dataset = make_dataset(name, args)
                for kind in kinds:
                    print(f"loading {args.n} {name} vectors into {kind} ...", flush=True)
                    results += await run_kind(redis, kind, dataset, args)
            report(results, ping_ms, args)
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
