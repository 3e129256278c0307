"""The pipeline on one Redis vs a real three-master Redis Cluster, same partitions, same run.

Every service runs in this one process (LocalStack) with the offline provider; tasks are
spread over many workspaces so the partitions (and, on the cluster, the shards) share
the load. Prints tasks/s, events/s, p50/p99 end-to-end latency, Redis commands per task
and per event (INFO commandstats summed over the nodes), each master's share of those
commands, and the ratio cluster/single last. This feeds docs/scaling.md's capacity model.

    .venv/bin/python bench/cluster.py [--tasks 300] [--partitions 6] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from pydantic import SecretStr
from redis.asyncio import Redis

from raptorflow.redis_server import RedisServer, running_cluster
from raptorflow.stack import LocalStack, wait_for_task
from shared.contract.events import EVENT_TYPES, TaskRequested, new_envelope
from shared.contract.topology import Topology
from shared.messaging.bus import publish
from shared.settings import Settings

GOALS = [
    "Write a blog post about AI trends in healthcare",
    "Create a social media campaign for our new product",
    "Research the market for electric bikes in Europe",
]


@dataclass
class Result:
    mode: str
    tasks: int
    seconds: float
    latencies_ms: list[float]
    events: int
    commands: int
    node_commands: list[int]
    redis_cpu_ms: float

    @property
    def tasks_per_s(self) -> float:
        return self.tasks / self.seconds

    def row(self) -> str:
        p50, p99 = np.percentile(self.latencies_ms, [50, 99])
        shares = "/".join(f"{100 * c / max(sum(self.node_commands), 1):.0f}%"
                          for c in self.node_commands)
        return (
            f"| {self.mode} | {self.tasks} | {self.tasks_per_s:.1f} | "
            f"{self.events / self.seconds:.0f} | {p50:.0f} / {p99:.0f} | "
            f"{self.commands / self.tasks:.0f} | {self.commands / max(self.events, 1):.1f} | "
            f"{shares} | {self.redis_cpu_ms / self.tasks:.2f} |"
        )


async def node_calls(urls: list[str]) -> list[Counter[str]]:
    """Commands served so far by each node, by command (INFO commandstats)."""
    out = []
    for url in urls:
        client = Redis.from_url(url)
        try:
            stats = await client.info("commandstats")
            out.append(Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}))
        finally:
            await client.aclose()
    return out


def cpu_ms(pids: list[int]) -> float:
    """User + system CPU of the Redis processes so far (Linux /proc), in ms."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total * 1000 / tick


async def count_events(redis: Any, layout: Topology) -> int:
    total = 0
    for event_type in EVENT_TYPES:
        for stream in layout.streams(event_type):
            total += int(await redis.xlen(stream))
    return total


async def run_mode(
    mode: str, url: str, nodes: list[RedisServer], args: argparse.Namespace
) -> Result:
    node_urls = [node.url for node in nodes]
    pids = [node.process.pid for node in nodes if node.process is not None]
    settings = Settings(
        llm_provider="offline", redis_cluster=(mode == "cluster"),
        stream_partitions=args.partitions,
    ).model_copy(update={"redis_url": SecretStr(url)})
    workspaces = [f"bench-{n}" for n in range(args.workspaces)]
    async with LocalStack(settings, start_redis=False) as stack:
        deps = stack.deps
        assert deps is not None

        async def one(n: int) -> float:
            workspace = workspaces[n % len(workspaces)]
            event = new_envelope(TaskRequested(goal=GOALS[n % len(GOALS)]), workspace_id=workspace)
            started = time.perf_counter()
            await publish(deps.redis, deps.layout, [event])
            view = await wait_for_task(deps, workspace, event.correlation_id, timeout=120)
            assert view.get("status") == "completed", view
            return (time.perf_counter() - started) * 1e3

        await asyncio.gather(*(one(n) for n in range(len(workspaces))))  # warm-up: memory, models
        events_before = await count_events(deps.redis, deps.layout)
        calls_before = await node_calls(node_urls)
        cpu_before = cpu_ms(pids)
        gate = asyncio.Semaphore(args.concurrency)

        async def limited(n: int) -> float:
            async with gate:
                return await one(n)

        started = time.perf_counter()
        latencies = await asyncio.gather(*(limited(n) for n in range(args.tasks)))
        seconds = time.perf_counter() - started
        redis_cpu = cpu_ms(pids) - cpu_before
        events = await count_events(deps.redis, deps.layout) - events_before
        calls = [a - b for a, b in zip(await node_calls(node_urls), calls_before, strict=True)]
    by_command: Counter[str] = sum(calls, Counter())
    top = ", ".join(f"{k} {v / args.tasks:.0f}" for k, v in by_command.most_common(10))
    print(f"{mode}: commands per task by kind: {top}", file=sys.stderr)
    totals = [sum(c.values()) for c in calls]
    return Result(
        mode, args.tasks, seconds, list(latencies), events, sum(totals), totals, redis_cpu
    )


async def main(args: argparse.Namespace) -> None:
    results = []
    for mode in args.modes:
        if mode == "cluster":
            with running_cluster(masters=3) as cluster:
                results.append(await run_mode(mode, cluster.url, cluster.nodes, args))
        else:
            server = RedisServer().start()
            try:
                results.append(await run_mode(mode, server.url, [server], args))
            finally:
                server.stop()
        print(f"{mode}: done", file=sys.stderr)
    load = os.getloadavg()[0]
    print(f"\n{args.tasks} tasks, concurrency {args.concurrency}, {args.partitions} partitions, "
          f"{args.workspaces} workspaces, load {load:.1f}")
    print("| mode | tasks | tasks/s | events/s | p50 / p99 ms | Redis cmds/task | cmds/event | "
          "share per node | Redis CPU ms/task |")
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results:
        print(result.row())
    if len(results) == 2:
        print(f"cluster/single tasks/s: {results[1].tasks_per_s / results[0].tasks_per_s:.2f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--workspaces", type=int, default=12)
    parser.add_argument("--modes", nargs="+", default=["single", "cluster"],
                        choices=["single", "cluster"])
    parser.add_argument("--quick", action="store_true", help="60 tasks (make bench)")
    args = parser.parse_args()
    if args.quick:
        args.tasks = 60
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
