"""Pipeline throughput and latency against the raw Redis Streams ceiling, in the same run.

Starts its own Redis 8 server. The service processes (one per service and replica,
`python -m services.<name>`, or one LocalStack process with `--single-process`) run a
warm-up task; the bench then reads every stream entry of that probe task (type, parent,
JSON size, consumer groups) and mirrors exactly those hops and sizes in hand-written
redis-py loops run in the same number of processes:

- ceiling: XREADGROUP COUNT 100 over all of a group's streams, then one pipelined
  round trip per batch with the XADDs of the next hops and one XACK per stream;
- naive: the same hops one message at a time (XREADGROUP COUNT 1, XADD, XACK).

Rounds are interleaved (ceiling, pipeline, ceiling, ...). Only one side runs at a time:
services are drained and stopped before a ceiling round and started again for the next
pipeline round (not SIGSTOPped: some FastStream readers never resumed after SIGCONT).
A closed loop keeps `--concurrency` tasks in flight. Besides tasks/s and latency it
reports CPU ms per task (from /proc, robust to a busy machine), Redis commands per task
(INFO commandstats) and per-hop latency; the ratio pipeline/ceiling is printed last.

    .venv/bin/python bench/pipeline.py --quick
    .venv/bin/python bench/pipeline.py --tasks 300 --replicas 2
    .venv/bin/python bench/pipeline.py --single-process
    .venv/bin/python bench/pipeline.py --zero-cost --concurrency 1   # orchestration only
    .venv/bin/python bench/pipeline.py --memory-size 100000          # cost vs memory size

`--zero-cost` (bench only: defaults never change) runs the services with a provider that
answers instantly and a constant embedder, so what remains is orchestration. `--instrument`
runs the real offline provider and MiniLM, timed, to report LLM/embedding seconds per task.
`--ab` adds "before" rounds whose bench-only workers undo the latest change in bus.py
(batch commits: each message in its own transaction);
`--llm-latency-ms` makes the zero-cost provider wait; `--soak S` reports RSS over S seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STREAM_PREFIX = "rf:stream:"
CEIL_PREFIX = "ceil:"
BENCH_GROUP = "bench"
WORKSPACE = "bench"
TERMINAL = ("TaskCompleted", "TaskFailed")
SERVICES = ("router", "selector", "checkpoint", "corrector", "memory", "notifier", "agents")
# Which service's handler emits the follow-up events of each event type.
PRODUCER = {
    "TaskRequested": "router",
    "SequenceChosen": "selector",
    "StageAdvanced": "selector",
    "StageAssigned": "checkpoint",
    "StageCompleted": "checkpoint",
    "ApprovalResolved": "checkpoint",
    "StageCleared": "corrector",
    "AgentInvoked": "agents",
    "AgentResult": "corrector",
}
# One goal for every task, so each task makes the probe's hops (a two-stage blog flow).
GOAL = "Write a blog post about AI trends in healthcare"
LLM_TIME_KEY = "bench:llm_time"
READY_KEY = "bench:ceiling_ready"
IDLE_S = 3.0
BENCH_COMMANDS = {"scan", "xinfo|groups", "info", "xrange"}  # the bench's own look-ups


# --- the probe: what one real task does on the streams ----------------------


@dataclass
class Step:
    """One event of the probe task: its type, JSON size and follow-ups (by index)."""

    index: int
    type: str
    size: int
    children: list[int] = field(default_factory=list)


@dataclass
class Template:
    steps: list[Step]
    groups: dict[str, list[str]]  # event type -> consumer groups (without the bench's)

    @property
    def deliveries(self) -> int:
        return sum(len(self.groups.get(s.type, [])) for s in self.steps)

    def to_json(self) -> bytes:
        return orjson.dumps({"steps": [s.__dict__ for s in self.steps], "groups": self.groups})

    @classmethod
    def from_json(cls, raw: bytes) -> Template:
        data = orjson.loads(raw)
        return cls([Step(**s) for s in data["steps"]], data["groups"])


async def task_events(redis: aioredis.Redis, task_ids: set[str]) -> list[dict[str, Any]]:
    """Every event of these tasks on every stream, with its entry id's millisecond time."""
    out: list[dict[str, Any]] = []
    async for raw in redis.scan_iter(match=f"{STREAM_PREFIX}*"):
        stream = raw.decode()
        if stream.endswith("dead-letter"):
            continue
        for entry_id, fields in await redis.xrange(stream):
            data = fields.get(b"__data__")
            if data is None:
                continue
            env = orjson.loads(data)
            if env.get("correlation_id") in task_ids:
                env["_size"] = len(data)
                env["_ms"] = int(entry_id.split(b"-")[0])
                out.append(env)
    return out


async def probe_template(redis: aioredis.Redis, task_id: str) -> Template:
    events = await task_events(redis, {task_id})
    events.sort(key=lambda e: (e["_ms"], e["occurred_at"]))
    index = {e["event_id"]: i for i, e in enumerate(events)}
    steps = [Step(i, e["type"], e["_size"]) for i, e in enumerate(events)]
    for i, e in enumerate(events):
        parent = index.get(e.get("causation_id") or "")
        if parent is not None:
            steps[parent].children.append(i)
    groups: dict[str, list[str]] = {}
    for step in steps:
        if step.type not in groups:
            info = await redis.xinfo_groups(f"{STREAM_PREFIX}{step.type}")
            names = [
                g["name"].decode() if isinstance(g["name"], bytes) else g["name"] for g in info
            ]
            groups[step.type] = sorted(n for n in names if n != BENCH_GROUP)
    return Template(steps, groups)


# --- the ceiling: hand-written loops moving the same hops --------------------


def ceil_stream(event_type: str) -> str:
    return f"{CEIL_PREFIX}{event_type}"


def ceil_body(task: bytes, step: Step) -> bytes:
    head = b"%s|%d|" % (task, step.index)
    return head + b"x" * max(step.size - len(head), 0)


async def ceiling_worker(url: str, template: Template, service: str, naive: bool) -> None:
    """One process of the ceiling: every group of `service`, batched or one at a time."""
    redis = aioredis.from_url(url)
    consumer = f"{service}-{os.getpid()}"
    streams = sorted(ceil_stream(t) for t, gs in template.groups.items() if service in gs)
    if not streams:
        await redis.incr(READY_KEY)
        await asyncio.Event().wait()
    steps = template.steps
    emits = {
        s.index: [steps[c] for c in s.children] if PRODUCER.get(s.type) == service else []
        for s in steps
    }
    count = 1 if naive else 100
    offsets = {s: ">" for s in streams}
    await redis.incr(READY_KEY)
    while True:
        reply = await redis.xreadgroup(service, consumer, offsets, count=count, block=100)  # type: ignore[arg-type]
        if not reply:
            continue
        if naive:
            for stream, messages in reply:
                for message_id, fields in messages:
                    task, step, _ = fields[b"d"].split(b"|", 2)
                    for child in emits[int(step)]:
                        await redis.xadd(
                            ceil_stream(child.type), {b"d": ceil_body(task, child)}, maxlen=100_000
                        )
                    await redis.xack(stream, service, message_id)
            continue
        pipe = redis.pipeline(transaction=False)
        for stream, messages in reply:
            ids = []
            for message_id, fields in messages:
                task, step, _ = fields[b"d"].split(b"|", 2)
                for child in emits[int(step)]:
                    pipe.xadd(
                        ceil_stream(child.type),
                        {b"d": ceil_body(task, child)},
                        maxlen=100_000,
                        approximate=True,
                    )
                ids.append(message_id)
            pipe.xack(stream, service, *ids)
        await pipe.execute()


async def ceiling_all(url: str, template: Template, naive: bool) -> None:
    """Single-process ceiling: every service's loop in one event loop."""
    await asyncio.gather(*(ceiling_worker(url, template, s, naive) for s in SERVICES))


# --- bench-only service worker (zero-cost provider, timed provider/embedder) --


class ZeroCostProvider:
    """Answers with a draft the critic accepts, after `latency_s` of waiting (no CPU):
    0 for orchestration alone; a real LLM's latency to see how stages overlap."""

    name = "offline"
    model = "bench-zero-cost"

    def __init__(self, latency_s: float = 0.0):
        self.latency_s = latency_s

    async def complete(self, request: Any) -> Any:
        from shared.contract.events import Usage
        from shared.domain.llm_port import LLMReply

        if self.latency_s:
            await asyncio.sleep(self.latency_s)

        if request.purpose == "critique":
            aspects = list(request.facts.get("aspects", []))
            text = orjson.dumps(
                {"aspect_scores": dict.fromkeys(aspects, 0.95), "issues": [], "critique": "ok"}
            ).decode()
        elif request.purpose == "plan":
            text = '{"agent_sequence": ["content", "blog_writer"], "reason": "bench"}'
        else:
            text = "# Draft\n\n## Conclusion\nDone.\n"
        return LLMReply(text=text, usage=Usage(api_calls=1), provider=self.name, model=self.model)


class ConstantEmbedder:
    """One fixed unit vector for every text: no embedding time."""

    dim = 384
    name = "bench-constant"

    def __init__(self) -> None:
        vec = np.ones(self.dim, dtype=np.float32)
        self._one = vec / np.linalg.norm(vec)

    def embed(self, texts: Sequence[str]) -> Any:
        return np.tile(self._one, (len(texts), 1))

    def embed_one(self, text: str) -> Any:
        return self._one


class Timed:
    """Wraps a provider or embedder and adds the seconds spent in it to `totals`."""

    def __init__(self, inner: Any, totals: dict[str, float], label: str):
        self.inner, self.totals, self.label = inner, totals, label
        self.name, self.model = inner.name, getattr(inner, "model", "")
        self.dim = getattr(inner, "dim", 0)

    async def complete(self, request: Any) -> Any:
        start = time.perf_counter()
        try:
            return await self.inner.complete(request)
        finally:
            self.totals[self.label] += time.perf_counter() - start

    def embed(self, texts: Sequence[str]) -> Any:
        start = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.totals[self.label] += time.perf_counter() - start

    def embed_one(self, text: str) -> Any:
        start = time.perf_counter()
        try:
            return self.inner.embed_one(text)
        finally:
            self.totals[self.label] += time.perf_counter() - start


def undo_optimisations() -> None:
    """Bench only: the consumer as it was before batch commits (2026-11-28): every stream
    read one message at a time, each in its own transaction, up to handler_concurrency in
    flight. (The earlier changes' before/after figures are in bench/RESULTS.md.)"""
    import shared.messaging.bus as bus

    subscribe = bus.ServiceBus.on

    def unbatched(self: Any, *args: Any, **kwargs: Any) -> None:
        subscribe(self, *args, **{**kwargs, "batched": False})

    bus.ServiceBus.on = unbatched  # type: ignore[method-assign]


async def service_worker(names: list[str], mode: str) -> None:
    """Run services like `python -m services.X`, with the bench's provider/embedder."""
    import shared.app.runtime as runtime
    from raptorflow.registry import STREAM_SERVICES
    from shared.llm.offline import OfflineProvider
    from shared.memory.embeddings import make_embedder
    from shared.settings import Settings

    totals = {"llm_s": 0.0, "embed_s": 0.0}
    if os.environ.get("BENCH_VARIANT") == "before":
        undo_optimisations()
    if mode == "zero":
        provider: Any = ZeroCostProvider(float(os.environ.get("BENCH_LLM_LATENCY_MS", "0")) / 1e3)
        embedder: Any = ConstantEmbedder()
    else:
        provider = Timed(OfflineProvider(), totals, "llm_s")
        embedder = Timed(make_embedder("local"), totals, "embed_s")
    runtime.make_embedder = lambda *a, **k: embedder  # type: ignore[attr-defined]
    settings = Settings()
    deps = await runtime.build_deps(settings, provider=provider)
    services = [STREAM_SERVICES[n](deps) for n in names]
    for service in services:
        await service.start()

    async def flush() -> None:
        await deps.redis.hset(LLM_TIME_KEY, settings.consumer_name, orjson.dumps(totals))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
        await flush()
    for service in services:
        await service.stop()
    await deps.close()


# --- processes -------------------------------------------------------------


@dataclass
class Procs:
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    consumers: list[tuple[str, str]] = field(default_factory=list)  # (service, consumer name)

    def signal(self, sig: int) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(sig)

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far, per service (summed over replicas)."""
        out: dict[str, float] = {}
        tick = os.sysconf("SC_CLK_TCK")
        for p, (service, _) in zip(
            self.procs, self.consumers or [("ceiling", "")] * len(self.procs), strict=True
        ):
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[service] = out.get(service, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        return out

    def rss_mb(self) -> dict[str, float]:
        """Resident memory per service (summed over replicas), from /proc."""
        out: dict[str, float] = {}
        page = os.sysconf("SC_PAGE_SIZE") / 2**20
        for p, (service, _) in zip(self.procs, self.consumers, strict=True):
            with contextlib.suppress(OSError):
                pages = int(Path(f"/proc/{p.pid}/statm").read_text().split()[1])
                out[service] = out.get(service, 0.0) + pages * page
        return out

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def base_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(name, None)
    env.update(
        REDIS_URL=url,
        RAPTORFLOW_LLM_PROVIDER="offline",
        RAPTORFLOW_LOG_LEVEL="WARNING",
        OPENBLAS_NUM_THREADS="1",
        PYTHONPATH=str(ROOT),
    )
    return env


def start_services(
    url: str, args: argparse.Namespace, log: Path, tag: str, variant: str = ""
) -> Procs:
    """One process per service and replica (or one LocalStack process); `tag` names the start."""
    procs = Procs()
    mode = "zero" if args.zero_cost else "timed" if args.instrument else ""
    groups: list[list[str]] = (
        [list(SERVICES)] if args.single_process else [[s] for s in SERVICES] * args.replicas
    )
    out = log.open("ab")
    for i, names in enumerate(groups):
        consumer = f"bench-{tag}-{i}"
        procs.consumers.append((names[0], consumer))
        env = base_env(url) | {
            "RAPTORFLOW_CONSUMER_NAME": consumer,
            "BENCH_VARIANT": variant,
            "BENCH_LLM_LATENCY_MS": str(args.llm_latency_ms),
        }
        if mode or len(names) > 1 or variant:
            cmd = [sys.executable, __file__, "--worker", ",".join(names), "--mode", mode or "real"]
        else:
            cmd = [sys.executable, "-m", f"services.{names[0]}"]
        procs.procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=out))
    return procs


def start_ceiling(url: str, template: Template, args: argparse.Namespace, naive: bool) -> Procs:
    procs = Procs()
    env = base_env(url) | {"BENCH_TEMPLATE": template.to_json().decode()}
    workers = ["all"] if args.single_process else [s for s in SERVICES] * args.replicas
    for name in workers:
        cmd = [sys.executable, __file__, "--ceiling-worker", name] + (["--naive"] if naive else [])
        procs.procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT))
    return procs


# --- the driver: closed loop, latency from submit to terminal event ------------


@dataclass
class Round:
    kind: str
    tasks: int
    seconds: float
    latencies_ms: list[float]
    task_ids: list[str]
    cpu_ms_per_task: dict[str, float] = field(default_factory=dict)
    commands: dict[str, float] = field(default_factory=dict)  # Redis calls per task

    @property
    def tasks_per_s(self) -> float:
        return self.tasks / self.seconds


async def ensure_group(redis: aioredis.Redis, stream: str, group: str, start: str = "$") -> None:
    try:
        await redis.xgroup_create(stream, group, id=start, mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def drive(
    redis: aioredis.Redis,
    kind: str,
    n: int,
    concurrency: int,
    submit: Any,
    terminal_streams: list[str],
    task_of: Any,
) -> Round:
    """Keep `concurrency` tasks in flight until `n` finished; latency per task."""
    for stream in terminal_streams:
        await ensure_group(redis, stream, BENCH_GROUP)
    started: dict[str, float] = {}
    latencies: list[float] = []
    ids = [f"{kind}-{uuid.uuid4().hex[:8]}-{i}" for i in range(n)]
    pending = iter(ids)
    done = asyncio.Event()

    async def submit_next() -> None:
        task_id = next(pending, None)
        if task_id is not None:
            started[task_id] = time.perf_counter()
            await submit(task_id, len(started) - 1)

    async def collect() -> None:
        offsets = {s: ">" for s in terminal_streams}
        while len(latencies) < n:
            reply = await redis.xreadgroup(BENCH_GROUP, "driver", offsets, count=100, block=50)  # type: ignore[arg-type]
            for stream, messages in reply or []:
                await redis.xack(stream, BENCH_GROUP, *[m[0] for m in messages])
                for _, fields in messages:
                    task_id = task_of(fields)
                    if task_id in started:
                        latencies.append((time.perf_counter() - started.pop(task_id)) * 1e3)
                        await submit_next()
        done.set()

    begin = time.perf_counter()
    collector = asyncio.create_task(collect())
    for _ in range(min(concurrency, n)):
        await submit_next()
    await done.wait()
    await collector
    return Round(kind, n, time.perf_counter() - begin, latencies, ids)


async def pipeline_round(redis: aioredis.Redis, args: argparse.Namespace, n: int) -> Round:
    from shared.contract.events import TaskRequested, new_envelope

    async def submit(task_id: str, i: int) -> None:
        event = new_envelope(
            TaskRequested(goal=GOAL), workspace_id=WORKSPACE, correlation_id=task_id
        )
        await redis.xadd(
            f"{STREAM_PREFIX}TaskRequested", {"__data__": event.model_dump_json()}, maxlen=100_000
        )

    def task_of(fields: dict[bytes, bytes]) -> str:
        return str(orjson.loads(fields[b"__data__"])["correlation_id"])

    terminal = [f"{STREAM_PREFIX}{t}" for t in TERMINAL]
    return await drive(redis, "pipeline", n, args.concurrency, submit, terminal, task_of)


async def ceiling_round(
    redis: aioredis.Redis, template: Template, args: argparse.Namespace, n: int, kind: str
) -> Round:
    root = template.steps[0]
    terminal = sorted(
        {ceil_stream(s.type) for s in template.steps if not s.children and s.type in TERMINAL}
    )

    async def submit(task_id: str, i: int) -> None:
        await redis.xadd(ceil_stream(root.type), {b"d": ceil_body(task_id.encode(), root)})

    def task_of(fields: dict[bytes, bytes]) -> str:
        return fields[b"d"].split(b"|", 1)[0].decode()

    return await drive(redis, kind, n, args.concurrency, submit, terminal, task_of)


async def prepare_ceiling_groups(redis: aioredis.Redis, template: Template) -> None:
    for event_type, groups in template.groups.items():
        for group in groups:
            await ensure_group(redis, ceil_stream(event_type), group)


async def hop_latencies(redis: aioredis.Redis, task_ids: list[str]) -> dict[str, list[int]]:
    """Per event type: ms from its parent's XADD to its own (Redis entry-id clock)."""
    events = await task_events(redis, set(task_ids))
    contexts = [e.get("context") or {} for e in events]
    print(
        "\ncontext carried (last pipeline round): task_history <= "
        f"{max(len(c.get('task_history', [])) for c in contexts)}, past_successes <= "
        f"{max(len(c.get('past_successes', [])) for c in contexts)}, "
        f"largest envelope {max(e['_size'] for e in events)} B"
    )
    by_id = {e["event_id"]: e for e in events}
    out: dict[str, list[int]] = {}
    for e in events:
        parent = by_id.get(e.get("causation_id") or "")
        if parent is not None:
            out.setdefault(f"{parent['type']}->{e['type']}", []).append(e["_ms"] - parent["_ms"])
        if e["type"] in STAGE_ENDS:
            start = stage_start(e, by_id)
            if start is not None:
                out.setdefault(WHOLE_STAGE, []).append(e["_ms"] - start["_ms"])
    return out


# A workflow stage, as the orchestration sees it: selector, checkpoint, corrector (the
# LLM, instant in --zero-cost), checkpoint; from the event that starts it to the one that
# ends it.
STAGE_STARTS = ("SequenceChosen", "StageAdvanced")
STAGE_ENDS = ("StageAdvanced", "TaskCompleted")
WHOLE_STAGE = "(whole stage: SequenceChosen|StageAdvanced -> StageAdvanced|TaskCompleted)"


def stage_start(end: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Walk the causation chain back from a stage's last event to the one that began it."""
    event = by_id.get(end.get("causation_id") or "")
    while event is not None and event["type"] not in STAGE_STARTS:
        event = by_id.get(event.get("causation_id") or "")
    return event


async def command_stats(redis: aioredis.Redis) -> dict[str, int]:
    info = await redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def diff_stats(before: dict[str, int], after: dict[str, int], tasks: int) -> dict[str, float]:
    """Redis commands per task (the bench's own XADD/XREADGROUP/XACK/INFO included)."""
    out = {k: (v - before.get(k, 0)) / tasks for k, v in after.items()}
    return {k: v for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 0.01}


def per_task(before: dict[str, float], after: dict[str, float], tasks: int) -> dict[str, float]:
    return {k: (after[k] - before.get(k, 0.0)) * 1e3 / tasks for k in after}


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def wait_ceiling_ready(redis: aioredis.Redis, loops: int) -> None:
    """Until every ceiling loop is connected and about to read (process start excluded)."""
    loops = loops if loops > 1 else len(SERVICES)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if int(await redis.get(READY_KEY) or 0) >= loops:
            await asyncio.sleep(0.2)
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("ceiling workers did not start")


# A stream each service reads, to see its consumer register.
READS = {
    "router": "TaskRequested",
    "selector": "SequenceChosen",
    "checkpoint": "StageAssigned",
    "corrector": "StageCleared",
    "memory": "TaskRequested",
    "notifier": "ApprovalNeeded",
    "agents": "AgentInvoked",
}


async def wait_ready(redis: aioredis.Redis, procs: Procs, timeout: float = 90.0) -> None:
    """Until every process's consumer has joined its group (its first XREADGROUP ran)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        missing = 0
        for service, consumer in procs.consumers:
            try:
                info = await redis.xinfo_consumers(f"{STREAM_PREFIX}{READS[service]}", service)
            except ResponseError:
                missing += 1
                continue
            names = {
                c["name"].decode() if isinstance(c["name"], bytes) else c["name"] for c in info
            }
            missing += consumer not in names
        if not missing:
            await asyncio.sleep(0.5)  # the other subscribers of the process
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("services did not start")


async def drain(redis: aioredis.Redis, timeout: float = 60.0) -> None:
    """Until every group of every stream has nothing left to read or ack (memory's tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = 0
        async for raw in redis.scan_iter(match=f"{STREAM_PREFIX}*"):
            for g in await redis.xinfo_groups(raw):
                busy += (g["pending"] or 0) + (g.get("lag") or 0)
        if not busy:
            return
        await asyncio.sleep(0.1)


async def soak(redis: aioredis.Redis, services: Procs, args: argparse.Namespace) -> None:
    """Tasks back to back for `--soak` seconds; RSS per service sampled every 10 s."""
    samples: list[tuple[float, dict[str, float]]] = []
    begin = time.monotonic()
    done = 0
    next_sample = begin
    while time.monotonic() - begin < args.soak:
        if time.monotonic() >= next_sample:
            samples.append((time.monotonic() - begin, services.rss_mb()))
            next_sample += 10
        done += (await pipeline_round(redis, args, 20)).tasks
    await drain(redis)
    samples.append((time.monotonic() - begin, services.rss_mb()))
    print(f"\nsoak: {done} tasks in {time.monotonic() - begin:.0f} s; RSS MB per service:")
    print(f"  {'t s':>5} " + " ".join(f"{k:>10}" for k in samples[0][1]))
    for t, rss in [*samples[:: max(len(samples) // 12, 1)], samples[-1]]:
        print(f"  {t:5.0f} " + " ".join(f"{v:10.1f}" for v in rss.values()))
    half = samples[len(samples) // 2][1]
    for name, last in samples[-1][1].items():
        print(f"  {name:10} first {samples[0][1][name]:6.1f} mid {half[name]:6.1f} "
              f"last {last:6.1f} MB (second half: {last - half[name]:+.1f} MB)")  # fmt: skip


PRELOAD_SEQUENCES = [
    ["research", "content", "blog_writer"],
    ["strategy", "copywriter"],
    ["content", "social_writer"],
    ["deep_researcher", "longform_writer"],
    ["content", "email_writer"],
]


async def preload_memory(redis: aioredis.Redis, n: int, seed: int = 7) -> float:
    """`--memory-size`: N successful past tasks in the bench workspace, stored as the memory
    service stores them (history hash, recent-history index, sequence counts, vector index).
    Vectors come in clusters of ~50 (like real goals, which HNSW inserts quickly; uniform
    random vectors take ~5x longer). Returns the seconds it took."""
    from services.memory.logic import index_attributes
    from services.memory.store import add_task_record
    from shared.contract.keys import Keys, goal_hash
    from shared.contract.topology import Topology
    from shared.memory.store import TaskRecord
    from shared.memory.vector_index import open_vector_index

    keys = Keys(Topology())  # the benchmark's single Redis
    started = time.perf_counter()
    index = await open_vector_index(redis, keys)
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(n // 50, 1), 384))
    chunk = 256
    for begin in range(0, n, chunk):
        count = min(chunk, n - begin)
        noise = rng.normal(scale=0.15, size=(count, 384))
        vectors = centers[rng.integers(0, len(centers), size=count)] + noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        records = []
        for i in range(begin, begin + count):
            goal = f"Past task {i}: write about topic {i % 997}"
            records.append(TaskRecord(
                goal=goal, agent_sequence=PRELOAD_SEQUENCES[i % len(PRELOAD_SEQUENCES)],
                success=True, result_quality=0.9, goal_hash=goal_hash(goal),
                task_id=f"preload-{i}", stored_at=time.time(),
            ))  # fmt: skip
        async with redis.pipeline(transaction=False) as pipe:
            for record in records:
                add_task_record(pipe, keys, WORKSPACE, record)
            await pipe.execute()
        adds = [
            index.add(WORKSPACE, r.goal_hash, v.astype(np.float32), index_attributes(r))
            for r, v in zip(records, vectors, strict=True)
        ]
        for at in range(0, len(adds), 32):  # 32 in flight, as several producers would
            await asyncio.gather(*adds[at : at + 32])
    return time.perf_counter() - started


async def run(args: argparse.Namespace) -> None:
    from raptorflow.redis_server import RedisServer

    server = RedisServer().start()
    log = Path("/tmp") / f"raptorflow-bench-pipeline-{os.getpid()}.log"
    services: Procs | None = None
    try:
        redis = aioredis.from_url(server.url)
        version = (await redis.info("server"))["redis_version"]
        if args.memory_size:
            took = await preload_memory(redis, args.memory_size)
            print(f"memory: {args.memory_size} past tasks preloaded in {took:.0f} s", flush=True)
        services = start_services(server.url, args, log, "warm")
        await wait_ready(redis, services)
        warm = await pipeline_round(redis, argparse.Namespace(concurrency=1), 3)
        template = await probe_template(redis, warm.task_ids[-1])
        if args.soak:
            await soak(redis, services, args)
            return
        await drain(redis)
        idle_before = services.cpu_s()
        await asyncio.sleep(IDLE_S)
        idle = {
            k: (v - idle_before.get(k, 0.0)) * 1e3 / IDLE_S for k, v in services.cpu_s().items()
        }
        await prepare_ceiling_groups(redis, template)
        types = [s.type for s in template.steps]
        procs = (
            "1 (LocalStack)"
            if args.single_process
            else f"{len(SERVICES) * args.replicas} ({args.replicas} per service)"
        )
        provider = "zero-cost + constant embedder" if args.zero_cost else "offline + MiniLM"
        print(
            f"Redis {version}; {os.cpu_count()} CPUs; load average {os.getloadavg()}\n"
            f"processes: {procs}; provider: {provider}; concurrency {args.concurrency}; "
            f"{args.tasks} tasks x {args.rounds} rounds\n"
            f"probe task: {len(types)} events, {template.deliveries} deliveries "
            f"(event x consumer group), JSON sizes {min(s.size for s in template.steps)}-"
            f"{max(s.size for s in template.steps)} B, total {sum(s.size for s in template.steps)} B\n"
            f"  {' '.join(types)}\n"
            f"idle services (polling, sweeps): {sum(idle.values()):.1f} CPU ms/s "
            f"({' '.join(f'{k}={v:.1f}' for k, v in idle.items())})",
            flush=True,
        )
        results: dict[str, list[Round]] = {"ceiling": [], "naive": [], "pipeline": [], "before": []}
        loads: list[float] = []
        for r in range(args.rounds):
            kinds = (
                ["ceiling", "pipeline"]
                + (["before"] if args.ab else [])
                + (["naive"] if r == 0 else [])
            )
            for kind in kinds:
                if kind in ("pipeline", "before"):
                    if services is not None and kind == "before":
                        services.stop()
                        services = None
                    if services is None:
                        variant = "before" if kind == "before" else ""
                        services = start_services(server.url, args, log, f"r{r}{variant}", variant)
                        await wait_ready(redis, services)
                    loads.append(os.getloadavg()[0])
                    cpu_before = services.cpu_s()
                    stats_before = await command_stats(redis)
                    results[kind].append(await pipeline_round(redis, args, args.tasks))
                    await drain(redis)
                    results[kind][-1].commands = diff_stats(
                        stats_before, await command_stats(redis), args.tasks
                    )
                    results[kind][-1].cpu_ms_per_task = per_task(
                        cpu_before, services.cpu_s(), args.tasks
                    )
                    if r < args.rounds - 1 or (kind == "pipeline" and args.ab):
                        services.stop()
                        services = None
                else:
                    if services is not None:
                        await drain(redis)
                        services.stop()
                        services = None
                    await redis.delete(READY_KEY)
                    ceiling = start_ceiling(server.url, template, args, naive=kind == "naive")
                    await wait_ceiling_ready(
                        redis, 1 if args.single_process else len(SERVICES) * args.replicas
                    )
                    loads.append(os.getloadavg()[0])
                    cpu_before = ceiling.cpu_s()
                    results[kind].append(
                        await ceiling_round(redis, template, args, args.tasks, kind)
                    )
                    results[kind][-1].cpu_ms_per_task = per_task(
                        cpu_before, ceiling.cpu_s(), args.tasks
                    )
                    ceiling.stop()
                last = results[kind][-1]
                print(f"  round {r + 1} {kind:8} {last.tasks_per_s:8.1f} tasks/s "
                      f"p50 {pct(last.latencies_ms, 50):7.1f} ms p99 {pct(last.latencies_ms, 99):7.1f} ms",
                      flush=True)  # fmt: skip
        hops = await hop_latencies(redis, results["pipeline"][-1].task_ids)
        llm = await redis.hgetall(LLM_TIME_KEY)
        report(results, template, hops, llm, loads, args)
    finally:
        if services is not None:
            services.stop()
        server.stop()


def report(
    results: dict[str, list[Round]],
    template: Template,
    hops: dict[str, list[int]],
    llm: dict[bytes, bytes],
    loads: list[float],
    args: argparse.Namespace,
) -> None:
    events = len(template.steps)
    print(
        f"\n{'':9} {'tasks/s':>8} {'events/s':>9} {'deliv/s':>8} {'p50 ms':>8} {'p99 ms':>8}  (medians of rounds)"
    )
    med: dict[str, float] = {}
    for kind in ("naive", "ceiling", "before", "pipeline"):
        rounds = results[kind]
        if not rounds:
            continue
        tps = statistics.median(r.tasks_per_s for r in rounds)
        med[kind] = tps
        p50 = statistics.median(pct(r.latencies_ms, 50) for r in rounds)
        p99 = statistics.median(pct(r.latencies_ms, 99) for r in rounds)
        print(f"{kind:9} {tps:8.1f} {tps * events:9.0f} {tps * template.deliveries:8.0f} {p50:8.1f} {p99:8.1f}")  # fmt: skip
    print(
        "\nCPU ms per task (user+system, from /proc; medians of rounds; less noisy than tasks/s):"
    )
    for kind in ("naive", "ceiling", "before", "pipeline"):
        rounds = results[kind]
        if rounds and rounds[0].cpu_ms_per_task:
            keys = rounds[0].cpu_ms_per_task.keys()
            parts = {
                k: statistics.median(r.cpu_ms_per_task.get(k, 0.0) for r in rounds) for k in keys
            }
            detail = " ".join(f"{k}={v:.2f}" for k, v in parts.items()) if len(parts) > 1 else ""
            print(f"  {kind:9} total {sum(parts.values()):7.2f}  {detail}")
    for kind in ("before", "pipeline"):
        if results[kind] and results[kind][-1].commands:
            cmds = results[kind][-1].commands
            cmds = {k: v for k, v in cmds.items() if k not in BENCH_COMMANDS}
            top = " ".join(f"{k}={v:.1f}" for k, v in cmds.items())
            print(f"Redis commands per task ({kind}, last round): {sum(cmds.values()):.1f}: {top}")
    if hops:
        single = {name: values for name, values in hops.items() if name != WHOLE_STAGE}
        made = sum(len(v) for v in single.values()) / len(results["pipeline"][-1].task_ids) + 1
        print(f"\nevents per task in the last pipeline round: {made:.2f} (probe: {events})")
        every = [v for vs in single.values() for v in vs]
        print(f"\nper hop (parent XADD -> child XADD, Redis ms clock, last pipeline round): "
              f"p50 {pct(every, 50):.0f} ms p99 {pct(every, 99):.0f} ms")  # fmt: skip
        for name, values in sorted(hops.items()):
            print(
                f"  {name:34} n={len(values):5} p50 {pct(values, 50):5.0f} p99 {pct(values, 99):5.0f} ms"
            )
    if llm:
        totals = [orjson.loads(v) for v in llm.values()]
        finished = sum(len(r.task_ids) for r in results["pipeline"]) + 3
        llm_s = sum(t["llm_s"] for t in totals) / finished * 1e3
        emb_s = sum(t["embed_s"] for t in totals) / finished * 1e3
        print(f"\nLLM (offline provider) {llm_s:.2f} ms/task, embeddings {emb_s:.2f} ms/task "
              f"(summed over services, {finished} tasks)")  # fmt: skip
    print(
        f"load average (1 min) during rounds: median {statistics.median(loads):.2f}, max {max(loads):.2f}"
    )
    if "ceiling" in med and "pipeline" in med:
        print(f"naive/ceiling = {med.get('naive', float('nan')) / med['ceiling']:.3f}")
        if "before" in med:
            print(f"before/ceiling = {med['before'] / med['ceiling']:.3f} (batch commits undone)")
        print(f"pipeline/ceiling = {med['pipeline'] / med['ceiling']:.3f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200, help="tasks per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32, help="tasks in flight")
    parser.add_argument("--replicas", type=int, default=1, choices=(1, 2, 4))
    parser.add_argument("--single-process", action="store_true", help="one LocalStack process")
    parser.add_argument("--zero-cost", action="store_true", help="bench-only instant provider")
    parser.add_argument(
        "--llm-latency-ms", type=float, default=0.0, help="with --zero-cost: each LLM call waits"
    )
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of RSS soak instead")
    parser.add_argument(
        "--memory-size", type=int, default=0, help="past tasks preloaded in the workspace"
    )
    parser.add_argument("--instrument", action="store_true", help="time provider and embedder")
    parser.add_argument(
        "--ab", action="store_true", help="also run the pipeline with issue 10's changes undone"
    )
    parser.add_argument("--quick", action="store_true", help="--tasks 60 --rounds 2")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="real", help=argparse.SUPPRESS)
    parser.add_argument("--ceiling-worker", help=argparse.SUPPRESS)
    parser.add_argument("--naive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.rounds = 60, 2
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        asyncio.run(service_worker(args.worker.split(","), args.mode))
    elif args.ceiling_worker:
        template = Template.from_json(os.environ["BENCH_TEMPLATE"].encode())
        url = os.environ["REDIS_URL"]
        name = args.ceiling_worker
        coro = (
            ceiling_all(url, template, args.naive)
            if name == "all"
            else ceiling_worker(url, template, name, args.naive)
        )
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
            asyncio.run(coro)
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
