"""Benchmark the in-process MiniLM embedder (shared.memory.embeddings.LocalMiniLM).

Prints p50/p99 latency to embed ONE goal (uncached: LRU off, every goal distinct),
batch throughput at batch 64, and a ratio against a baseline measured in the same run:
the encoder's dense matmuls alone (6 layers of QKV, attention-out, FFN up/down) for a
sequence of the median goal length. That baseline is the BLAS floor of the forward pass,
so the ratio says how much the rest (tokenising, attention, GELU, LayerNorm, pooling,
Python) costs on top, independent of how fast or loaded this machine is.

    .venv/bin/python bench/embed.py [path/to/clinc150/dev.jsonl] [--iterations 500]

Set OPENBLAS_NUM_THREADS in the environment to compare thread counts (the run prints it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "clinc150" / "dev.jsonl"


def load_goals(path: Path, limit: int) -> list[str]:
    """Distinct goals in file order, so no measured call can be a repeat."""
    seen: dict[str, None] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            goal = json.loads(line).get("goal", "").strip()
            if goal:
                seen.setdefault(goal, None)
            if len(seen) >= limit:
                break
    return list(seen)


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile, in the samples' unit."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def time_calls(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall time of each call, in milliseconds."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one human-readable block plus a JSON summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="--iterations 100 --batches 3")
    args = parser.parse_args(argv)
    if args.quick:
        args.iterations, args.batches = 100, 3

    sys.path.insert(0, str(ROOT))
    import numpy as np

    from shared.memory.embeddings import LocalMiniLM

    need = max(args.iterations, args.batch * args.batches) + 20
    goals = load_goals(args.data.resolve(), need)
    if len(goals) < need:
        parser.error(f"{args.data} has only {len(goals)} distinct goals, need {need}")

    model = LocalMiniLM(cache_size=0)
    start = time.perf_counter()
    model.warm_up()
    load_s = time.perf_counter() - start
    for goal in goals[:20]:  # warm caches and BLAS buffers on goals not measured below
        model.embed_one(goal)

    measured = goals[20 : 20 + args.iterations]
    it = iter(measured)
    single = time_calls(lambda: model.embed_one(next(it)), len(measured))

    batches = [goals[i * args.batch : (i + 1) * args.batch] for i in range(args.batches)]
    bt = iter(batches)
    batch_ms = time_calls(lambda: model.embed(next(bt)), len(batches))
    throughput = args.batch * len(batches) / (sum(batch_ms) / 1e3)

    tokenizer = model.model.tokenizer
    seq = int(statistics.median(len(tokenizer.encode(g).ids) for g in measured))
    weights = model.model.weights
    x = np.random.default_rng(0).standard_normal((seq, weights.hidden)).astype(np.float32)
    h = np.random.default_rng(1).standard_normal((seq, 4 * weights.hidden)).astype(np.float32)

    def gemm_floor() -> None:
        for layer in weights.layers:
            x @ layer.w_qkv
            x @ layer.w_attn_out
            x @ layer.w_up
            h @ layer.w_down

    gemm_floor()
    floor_ms = statistics.median(time_calls(gemm_floor, 200))
    p50, p99 = percentile(single, 50), percentile(single, 99)
    summary = {
        "single_p50_ms": round(p50, 3),
        "single_p99_ms": round(p99, 3),
        "single_mean_ms": round(statistics.fmean(single), 3),
        "batch": args.batch,
        "batch_sentences_per_s": round(throughput, 1),
        "median_tokens": seq,
        "baseline_gemm_floor_ms": round(floor_ms, 3),
        "p50_over_baseline": round(p50 / floor_ms, 2),
        "load_s": round(load_s, 3),
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    print(f"model load (first call)     {load_s * 1e3:8.1f} ms")
    print(f"single goal, uncached       p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   (n={len(single)})")
    print(f"batch {args.batch} throughput        {throughput:8.1f} sentences/s")
    print(f"baseline: dense matmuls only, {seq} tokens   {floor_ms:6.2f} ms")
    print(f"single p50 / baseline       {p50 / floor_ms:8.2f}x")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
