"""Where one RaptorFlow task's Redis commands and CPU go, per service and handler.

Runs the six services as processes on an embedded Redis 8 of its own, as
`bench/pipeline.py` does (its bench-only worker, zero-cost provider by default), but each
worker counts every Redis command its clients send, tagged by what sent it:

- read: FastStream's XREADGROUP of a subscription (by stream), reclaim: XAUTOCLAIM;
- bus: ServiceBus around a handler (WATCH and MGET/EXISTS of the processed markers,
  MULTI, EXEC, the marker SETs, XACK, the follow-up XADDs), by the event being handled;
- handler: a command a handler sends itself (its reads, its own pipelines);
- handler write: a write the handler queued on its transaction (replayed in the commit);
- background: anything else (sweeps, heartbeats, start-up).

Counting starts after a warm-up (memory's context caps full) and stops after the measured
tasks are drained; the sum is checked against INFO commandstats of the same window. CPU
per service comes from /proc; `--cprofile` also runs cProfile (process-time clock) in
each worker over the same window and splits each service's CPU by where it was spent
(handler code, bus, FastStream, redis-py, pydantic, asyncio, telemetry), with each
handler's own cumulative time. cProfile slows the workers, so its shares matter, not its
milliseconds.

    .venv/bin/python bench/task_profile.py --tasks 300
    .venv/bin/python bench/task_profile.py --tasks 300 --cprofile
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextvars
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

from pipeline import (  # noqa: E402
    BENCH_COMMANDS,
    SERVICES,
    Procs,
    base_env,
    command_stats,
    diff_stats,
    drain,
    pipeline_round,
    service_worker,
    wait_ready,
)

STREAM_PREFIX = "rf:stream:"
CATEGORIES = ("read", "bus", "handler", "handler write", "reclaim", "background")


# --- in each worker: count commands by what sent them ------------------------------

HOP: contextvars.ContextVar[str | None] = contextvars.ContextVar("bench_hop", default=None)
IN_HANDLER: contextvars.ContextVar[bool] = contextvars.ContextVar("bench_handler", default=False)


class Counter:
    def __init__(self) -> None:
        self.on = False
        self.counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.round_trips: collections.Counter[str] = collections.Counter()  # by category
        self.handlers: dict[str, tuple[str, int, str]] = {}  # event type -> handler's code

    def direct(self, args: tuple[Any, ...]) -> None:
        if not self.on:
            return
        command = text(args[0]).upper()
        hop = HOP.get()
        if IN_HANDLER.get():
            key = (hop or "-", "handler", command)
        elif hop is not None:
            key = (hop, "bus", command)
        elif command == "XREADGROUP":
            at = [text(a).upper() for a in args].index("STREAMS")
            key = (stream_type(args[at + 1]), "read", command)
        elif command in ("XAUTOCLAIM", "XCLAIM"):
            key = (stream_type(args[1]), "reclaim", command)
        else:
            key = ("-", "background", command)
        self.counts[key] += 1
        self.round_trips[key[1]] += 1

    def pipeline(self, stack: list[tuple[Any, ...]], transaction: bool) -> None:
        if not self.on:
            return
        hop = HOP.get()
        if IN_HANDLER.get() or hop is None:
            category = "handler" if IN_HANDLER.get() else "background"
            self.round_trips[category] += 1
            for args in stack:
                self.counts[(hop or "-", category, text(args[0]).upper())] += 1
            if transaction:
                self.counts[(hop or "-", category, "MULTI")] += 1
                self.counts[(hop or "-", category, "EXEC")] += 1
            return
        self.round_trips["bus"] += 1  # a ServiceBus commit
        for args in stack:
            command = text(args[0]).upper()
            key = text(args[1]) if len(args) > 1 else ""
            own = (
                command in ("XACK", "MULTI", "EXEC")
                or (command == "XADD" and key.startswith(STREAM_PREFIX))
                or (command == "SET" and ":processed:" in key)
                or (command == "DEL" and "error" in key)
            )
            name = "SET marker" if command == "SET" and own else command
            self.counts[(hop, "bus" if own else "handler write", name)] += 1
        if transaction:
            self.counts[(hop, "bus", "MULTI")] += 1
            self.counts[(hop, "bus", "EXEC")] += 1


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_type(stream: Any) -> str:
    return text(stream).removeprefix(STREAM_PREFIX)


def install(counter: Counter) -> None:
    """Bench only: wrap redis-py's send paths and ServiceBus's per-message methods."""
    from redis.asyncio.client import Pipeline, Redis

    import shared.messaging.bus as bus

    execute_command = Redis.execute_command

    async def counted_execute_command(self: Any, *args: Any, **options: Any) -> Any:
        counter.direct(args)
        return await execute_command(self, *args, **options)

    immediate = Pipeline.immediate_execute_command

    async def counted_immediate(self: Any, *args: Any, **options: Any) -> Any:
        counter.direct(args)
        return await immediate(self, *args, **options)

    execute = Pipeline.execute

    async def counted_execute(self: Any, raise_on_error: bool = True) -> Any:
        counter.pipeline([c[0] for c in self.command_stack], self.is_transaction)
        return await execute(self, raise_on_error)

    Redis.execute_command = counted_execute_command  # type: ignore[method-assign]
    Pipeline.immediate_execute_command = counted_immediate  # type: ignore[method-assign]
    Pipeline.execute = counted_execute  # type: ignore[method-assign]

    on = bus.ServiceBus.on

    def tagged_on(self: Any, payload_type: Any, handler: Any, **kwargs: Any) -> None:
        async def run(event: Any, tx: Any) -> Any:
            token = IN_HANDLER.set(True)
            try:
                return await handler(event, tx)
            finally:
                IN_HANDLER.reset(token)

        code = getattr(handler, "__code__", None)
        if code is not None:
            counter.handlers[payload_type.event_type] = (
                code.co_filename, code.co_firstlineno, code.co_name
            )  # fmt: skip
        on(self, payload_type, run, **kwargs)

    def with_hop(method: Any, type_at: int) -> Any:
        async def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            token = HOP.set(args[type_at].event_type)
            try:
                return await method(self, *args, **kwargs)
            finally:
                HOP.reset(token)

        return run

    bus.ServiceBus.on = tagged_on  # type: ignore[method-assign]
    bus.ServiceBus._process = with_hop(bus.ServiceBus._process, 1)  # type: ignore[method-assign]
    bus.ServiceBus._process_batch = with_hop(bus.ServiceBus._process_batch, 3)  # type: ignore[method-assign]


def worker(service: str, mode: str, out: Path, cprofile: bool) -> None:
    """One service, counting between SIGUSR1 and SIGUSR2 (then it writes its files)."""
    import cProfile

    counter = Counter()
    install(counter)
    profile = cProfile.Profile(time.process_time) if cprofile else None

    def start(*_: Any) -> None:
        counter.on = True
        if profile is not None:
            profile.enable()

    def stop(*_: Any) -> None:
        counter.on = False
        if profile is not None:
            profile.disable()
            profile.dump_stats(out / f"{service}.prof")
        rows = [[*k, v] for k, v in counter.counts.items()]
        handlers = {k: list(v) for k, v in counter.handlers.items()}
        tmp = out / f"{service}.json.tmp"
        trips = dict(counter.round_trips)
        tmp.write_text(json.dumps({"counts": rows, "handlers": handlers, "round_trips": trips}))
        tmp.rename(out / f"{service}.json")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    asyncio.run(service_worker([service], mode))


# --- the driver -----------------------------------------------------------------------


def start_workers(url: str, args: argparse.Namespace, out: Path, log: Path) -> Procs:
    procs = Procs()
    sink = log.open("ab")
    for service in SERVICES:
        consumer = f"profile-{service}"
        procs.consumers.append((service, consumer))
        env = base_env(url) | {"RAPTORFLOW_CONSUMER_NAME": consumer}
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            service,
            "--mode",
            args.mode,
            "--out",
            str(out),
        ]
        if args.cprofile:
            cmd.append("--cprofile")
        procs.procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=sink, stderr=sink))
    return procs


async def collect(out: Path, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {s: out / f"{s}.json" for s in SERVICES}
        if all(p.exists() for p in found.values()):
            return {s: json.loads(p.read_text()) for s, p in found.items()}
        await asyncio.sleep(0.1)
    raise TimeoutError("workers did not write their counts")


async def run(args: argparse.Namespace) -> None:
    from raptorflow.redis_server import running_redis

    with running_redis() as server, tempfile.TemporaryDirectory(prefix="rf-profile-") as tmp:
        out = Path(tmp)
        admin = aioredis.from_url(server.url)
        redis_pid = server.process.pid if server.process else 0
        procs = start_workers(server.url, args, out, out / "services.log")
        try:
            await wait_ready(admin, procs)
            options = argparse.Namespace(concurrency=args.concurrency)
            await pipeline_round(admin, options, args.warmup)
            await drain(admin)
            procs.signal(signal.SIGUSR1)
            await asyncio.sleep(0.2)
            cpu_before, redis_before = procs.cpu_s(), cpu_of(redis_pid)
            stats_before = await command_stats(admin)
            result = await pipeline_round(admin, options, args.tasks)
            await drain(admin)
            stats = diff_stats(stats_before, await command_stats(admin), args.tasks)
            cpu = {k: (v - cpu_before[k]) * 1e3 / args.tasks for k, v in procs.cpu_s().items()}
            redis_ms = (cpu_of(redis_pid) - redis_before) * 1e3 / args.tasks
            procs.signal(signal.SIGUSR2)
            workers = await collect(out)
            if args.keep:
                keep(out, Path(args.keep))
            profiles = (
                {s: pstats.Stats(str(out / f"{s}.prof")) for s in SERVICES} if args.cprofile else {}
            )
        finally:
            procs.stop()
            await admin.aclose()
    print(
        f"task profile: {args.tasks} tasks after {args.warmup} warm-up, concurrency "
        f"{args.concurrency}, provider {args.mode}; {result.tasks / result.seconds:.1f} tasks/s; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    report(workers, stats, cpu, redis_ms, args.tasks)
    if profiles:
        report_profiles(profiles, workers, cpu, args.tasks)


def keep(out: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for prof in out.glob("*.prof"):
        shutil.copy(prof, folder)


def cpu_of(pid: int) -> float:
    from bus_floor import cpu_s

    return cpu_s(pid)


def report(
    workers: dict[str, Any],
    stats: dict[str, float],
    cpu: dict[str, float],
    redis_ms: float,
    tasks: int,
) -> None:
    per_service: dict[str, float] = {}
    table: dict[tuple[str, str], collections.Counter[str]] = {}
    commands: dict[str, collections.Counter[str]] = {c: collections.Counter() for c in CATEGORIES}
    detail: dict[tuple[str, str, str], collections.Counter[str]] = {}
    for service, data in workers.items():
        for hop, category, command, n in data["counts"]:
            per_task = n / tasks
            per_service[service] = per_service.get(service, 0.0) + per_task
            table.setdefault((service, hop), collections.Counter())[category] += per_task
            commands[category][command] += per_task
            detail.setdefault((service, hop, category), collections.Counter())[command] += per_task
    counted = sum(per_service.values())
    server = sum(v for k, v in stats.items() if k not in BENCH_COMMANDS)
    print(
        f"\nRedis commands per task: {counted:.1f} sent by the services "
        f"(INFO commandstats, same window: {server:.1f}; the driver's XADD, XREADGROUP and "
        f"XACK make the difference)\nCPU ms per task (/proc): "
        + " ".join(f"{k}={v:.2f}" for k, v in cpu.items())
        + f" redis-server={redis_ms:.2f}; services {sum(cpu.values()):.2f}"
    )
    print(f"\n  {'service':10} {'event handled':16} " + " ".join(f"{c:>13}" for c in CATEGORIES)
          + f" {'total':>7}")  # fmt: skip
    for service in SERVICES:
        rows = sorted((h, c) for (s, h), c in table.items() if s == service)
        for hop, counts in rows:
            if sum(counts.values()) < 0.05:
                continue
            print(
                f"  {service:10} {hop:16} "
                + " ".join(f"{counts.get(c, 0.0):13.2f}" for c in CATEGORIES)
                + f" {sum(counts.values()):7.2f}"
            )
        print(
            f"  {service:10} {'(all)':16} {'':>{14 * len(CATEGORIES)}}{per_service.get(service, 0):7.2f}"
        )
    print("\nthe commands of each handled event type (>= 3 per task):")
    for (service, hop), counts in sorted(table.items()):
        if sum(counts.values()) < 3:
            continue
        parts = []
        for category in CATEGORIES:
            names = detail.get((service, hop, category))
            top = " ".join(
                f"{k}={v:.1f}"
                for k, v in (names or collections.Counter()).most_common()
                if v >= 0.05
            )
            if top:
                parts.append(f"{category}: {top}")
        print(f"  {service}/{hop}: " + "; ".join(parts))
    counted_by_command: collections.Counter[str] = collections.Counter()
    for counts in commands.values():
        for name, v in counts.items():
            counted_by_command[name.split(" ")[0].lower()] += v
    gap = {k: v - counted_by_command.get(k.lower(), 0.0) for k, v in stats.items()}
    gap = {k: v for k, v in gap.items() if abs(v) >= 0.3 and k not in BENCH_COMMANDS}
    print(
        "commandstats minus counted (the driver; commands run inside Lua scripts): "
        + " ".join(f"{k}={v:+.1f}" for k, v in sorted(gap.items(), key=lambda kv: -kv[1]))
    )
    trips = {s: sum(d["round_trips"].values()) / tasks for s, d in workers.items()}
    kinds: collections.Counter[str] = collections.Counter()
    for data in workers.values():
        for category, n in data["round_trips"].items():
            kinds[category] += n / tasks
    print(
        f"\nround trips per task (a command or a pipeline each): {sum(trips.values()):.1f}: "
        + " ".join(f"{k}={v:.1f}" for k, v in trips.items())
        + "; by sender: "
        + " ".join(f"{k}={v:.1f}" for k, v in kinds.most_common())
    )
    print("\nby kind of sender, the commands:")
    for category, counts in commands.items():
        top = " ".join(f"{k}={v:.1f}" for k, v in counts.most_common() if v >= 0.05)
        print(f"  {category:13} {sum(counts.values()):6.1f}: {top}")


GROUPS = (  # (column, what it holds, where)
    ("handlers", "services/ (the handlers)", ("/services/",)),
    ("bus", "shared/messaging (bus, codec)", ("/shared/messaging/",)),
    ("shared", "the rest of shared/, bench workers", ("/shared/", "/bench/")),
    ("telemetry", "logging, prometheus_client, tracing", ("prometheus_client", "/logging/",
                                                          "opentelemetry")),
    ("faststream", "FastStream, fast_depends", ("faststream", "fast_depends")),
    ("redis-py", "redis-py", ("/redis/",)),
    ("pydantic", "pydantic's Python code", ("/pydantic",)),
    ("asyncio", "asyncio's event loop, tasks, streams", ("/asyncio/",)),
)  # fmt: skip
C_GROUPS = ("pyd-core", "socket", "other-C", "other-py")
KEY_FUNCTIONS = (  # (file suffix, function, label); cumulative time of coroutines is on-CPU only
    ("stream_subscriber.py", "_xreadgroup", "FastStream XREADGROUP poll"),
    ("stream_sub.py", "add_prefix", "FastStream StreamSub deepcopy per poll"),
    ("prometheus/middleware.py", "consume_scope", "FastStream middlewares + handling"),
    ("messaging/bus.py", "_process", "ServiceBus per message"),
    ("messaging/bus.py", "_process_batch", "ServiceBus batch"),
    ("messaging/bus.py", "_commit_batch", "batch commit"),
    ("messaging/codec.py", "decode_on_stream", "envelope decode"),
    ("memory/store.py", "performance_data", "router performance_data"),
    ("memory/store.py", "bandit_stats", "bandit_stats"),
    ("memory/store.py", "record_stage_outcomes", "record_stage_outcomes"),
    ("memory/calibration.py", "record_outcome", "calibration record_outcome"),
    ("memory/store.py", "index_task", "index_task"),
)


def group_of(filename: str, name: str) -> str:
    if filename == "~":
        if any(w in name for w in ("pydantic_core", "validate_json", "to_json", "dump_json",
                                   "model_dump", "validate_python", "__pydantic")):  # fmt: skip
            return "pyd-core"
        if any(w in name for w in ("socket", "select", "epoll", "recv", "send")):
            return "socket"
        return "other-C"
    for column, _, parts in GROUPS:
        if any(p in filename for p in parts):
            return column
    return "other-py"


def report_profiles(
    profiles: dict[str, pstats.Stats], workers: dict[str, Any], cpu: dict[str, float], tasks: int
) -> None:
    print("\ncProfile (process-time clock): share of each service's profiled CPU, by own time")
    columns = [g[0] for g in GROUPS] + list(C_GROUPS)
    print(f"  {'service':10} " + " ".join(f"{c:>10}" for c in columns))
    others: dict[str, collections.Counter[str]] = {g: collections.Counter() for g in C_GROUPS}
    for service, stats in profiles.items():
        own: collections.Counter[str] = collections.Counter()
        for (filename, line, name), row in stats.stats.items():  # type: ignore[attr-defined]
            group = group_of(filename, name)
            own[group] += row[2]
            if group in others:
                where = name if filename == "~" else f"{Path(filename).name}:{line}({name})"
                others[group][where] += row[2]
        total = sum(own.values()) or 1.0
        print(f"  {service:10} " + " ".join(f"{own.get(c, 0) / total:10.0%}" for c in columns))
        handlers = workers[service]["handlers"]
        parts = []
        for event_type, key in sorted(handlers.items()):
            row = stats.stats.get(tuple(key))  # type: ignore[attr-defined]
            if row is not None and row[3] / total >= 0.005:
                share = row[3] / total
                parts.append(f"{event_type} {share:.0%} (~{share * cpu[service]:.2f} ms)")
        if parts:
            print(f"  {'':10} handler coroutines' cumulative time (without tasks they spawn): "
                  + ", ".join(parts))  # fmt: skip
    print("  (" + "; ".join(f"{c} = {what}" for c, what, _ in GROUPS) + ")")
    print("cumulative share of the service's profiled CPU, functions that stand out:")
    for service, stats in profiles.items():
        total = sum(row[2] for row in stats.stats.values()) or 1.0  # type: ignore[attr-defined]
        parts = []
        for suffix, name, label in KEY_FUNCTIONS:
            cum = sum(
                row[3]
                for (filename, _, fn), row in stats.stats.items()  # type: ignore[attr-defined]
                if fn == name and filename.endswith(suffix)
            )
            if cum / total >= 0.01:
                parts.append(f"{label} {cum / total:.0%}")
        print(f"  {service:10} " + ", ".join(parts))
    for group, counts in others.items():
        total = sum(counts.values()) or 1.0
        top = ", ".join(f"{k} {v / total:.0%}" for k, v in counts.most_common(6))
        print(f"  {group}, largest: {top}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--mode", choices=("zero", "real"), default="zero",
                        help="zero: bench-only zero-cost provider; real: offline + MiniLM")  # fmt: skip
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--keep", help="copy the workers' .prof files to this folder")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        worker(arguments.worker, arguments.mode, Path(arguments.out), arguments.cprofile)
    else:
        asyncio.run(run(arguments))
