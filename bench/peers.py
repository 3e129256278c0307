"""The same 8-hop workflow on Celery, Dramatiq, LangGraph, our bus and a raw redis-py loop,
beside a whole RaptorFlow task, in one run on one embedded Redis 8.

The workflow: 8 no-op handler hops in sequence; a ~2 KB JSON context that gains a field
at each hop; `--workflows` of them after `--warmup`, `--in-flight` at once (a closed loop:
a workflow finishing starts the next). The last hop XADDs the workflow id to a done
stream, which the driver reads (pipeline.py's `drive`); LangGraph, which has no Redis,
XADDs it after `ainvoke` returns. So every variant pays the same completion notice.

- raw: one loop over 8 streams, XREADGROUP COUNT 100, then one pipelined round trip with
  the next hops' XADDs and one XACK per stream (orjson decode, add the field, encode);
- bus: ServiceBus as memory, checkpoint and selector run it (batch commits, exactly-once
  markers, envelope validation, telemetry): one StageAdvanced subscription whose handler
  re-publishes the event with the next stage_index and a field more in `workflow.inputs`
  (bus_floor's approach: one stream, like the peers' one queue);
- dramatiq: a `pipeline` of 8 actors on the Redis broker, one worker process x 8 threads;
- celery: a `chain` of 8 tasks on the Redis broker, acks_late, solo pool, no result
  backend (ignore_result), gossip/mingle/heartbeat off;
- langgraph: an 8-node StateGraph (async nodes), AsyncSqliteSaver on a temp file, all
  workflows in this process;
- full task: the six services as processes (pipeline.py's `start_services`) with the
  bench-only zero-cost provider (one critique round per stage, no LLM CPU) by default,
  or `--full-task-mode offline` (offline provider + MiniLM, two critiques per stage).

CPU is user + system from /proc of every process involved: this one (driver, and the
in-process variants), the worker processes, and redis-server. Redis commands come from
INFO commandstats deltas (the driver's XREADGROUP/XACK of the done stream included, its
INFO/SCAN/XINFO not). Ratios are against Dramatiq's CPU per workflow in the same run;
Dramatiq's own CPU per workflow falls as the machine gets busier (bench/RESULTS.md), so
ratios from runs at different loads do not compare.

    .venv/bin/python bench/peers.py                  # 2,000 workflows each
    .venv/bin/python bench/peers.py --quick          # 300 each (make bench)
    .venv/bin/python bench/peers.py --rounds 3       # the median round of each variant
    .venv/bin/python bench/peers.py --only raw,bus,dramatiq,dramatiq1   # + 1 worker thread
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

from bus_floor import cpu_s  # noqa: E402
from pipeline import (  # noqa: E402
    BENCH_COMMANDS,
    Procs,
    Round,
    command_stats,
    diff_stats,
    drain,
    drive,
    pct,
    pipeline_round,
    start_services,
    wait_ready,
)

HOPS = 8
DONE = "peers:done"
RAW_GROUP = "raw"
QUEUE = "peers"
TIMEOUT_S = 600.0
VARIANTS = ("raw", "bus", "dramatiq", "celery", "langgraph", "full")
EXTRA = ("dramatiq1",)  # Dramatiq with one worker thread: not in the default run


def workflow_context(workflow_id: str) -> dict[str, Any]:
    """The context every variant carries: ~2 KB of JSON before the hops add theirs."""
    context: dict[str, Any] = {
        "workflow_id": workflow_id,
        "goal": "Write a blog post about AI trends in healthcare",
        "brand_voice": {"tone": "professional", "style": "conversational"},
        "target_icps": ["hospital CIOs", "health-tech founders"],
        "notes": "",
    }
    context["notes"] = "A finding with a source. " * ((2048 - len(json.dumps(context))) // 25)
    return context


def hop_field(context: dict[str, Any], hop: int) -> dict[str, Any]:
    """What a no-op handler does: add its field (a new dict, as a handler returning state)."""
    return {**context, f"hop_{hop}": f"handler {hop} done"}


def finish(client: redis.Redis, workflow_id: str) -> None:
    """The completion notice of the sync workers (Celery, Dramatiq)."""
    client.xadd(DONE, {b"d": workflow_id.encode()}, maxlen=100_000, approximate=True)


def done_task(fields: dict[bytes, bytes]) -> str:
    return fields[b"d"].decode()


# --- Celery and Dramatiq: built the same way in the driver and in the worker ----------


def celery_app(url: str) -> tuple[Any, list[Any]]:
    from celery import Celery

    app = Celery("peers", broker=url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_ignore_result=True,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    client = redis.Redis.from_url(url)

    def make(hop: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def run(context: dict[str, Any]) -> dict[str, Any]:
            context = hop_field(context, hop)
            if hop == HOPS - 1:
                finish(client, context["workflow_id"])
            return context

        return run

    return app, [app.task(name=f"peers.hop{i}")(make(i)) for i in range(HOPS)]


def dramatiq_broker(url: str) -> tuple[Any, list[Any]]:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=url, namespace="peers-dramatiq")
    dramatiq.set_broker(broker)
    client = redis.Redis.from_url(url)

    def make(hop: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def run(context: dict[str, Any]) -> dict[str, Any]:
            context = hop_field(context, hop)
            if hop == HOPS - 1:
                finish(client, context["workflow_id"])
            return context

        return run

    actors = [
        dramatiq.actor(actor_name=f"hop{i}", queue_name=QUEUE, broker=broker, max_retries=0)(
            make(i)
        )
        for i in range(HOPS)
    ]
    return broker, actors


def run_worker(kind: str, url: str, threads: int) -> None:
    """A worker process (`--worker celery|dramatiq`), until SIGTERM."""
    if kind == "celery":
        app, _ = celery_app(url)
        app.worker_main(
            ["worker", "--pool=solo", "--loglevel=WARNING", "-Q", QUEUE,
             "--without-gossip", "--without-mingle", "--without-heartbeat"]
        )  # fmt: skip
        return
    import dramatiq

    broker, _ = dramatiq_broker(url)
    worker = dramatiq.Worker(broker, queues={QUEUE}, worker_threads=threads)
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    worker.start()
    while not stop:
        time.sleep(0.2)
    worker.stop()
    broker.close()


@contextlib.contextmanager
def worker_process(kind: str, url: str, log: Path, threads: int = 8) -> Iterator[Procs]:
    out = log.open("ab")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", kind, "--url", url, "--threads", str(threads)],
        env=env, cwd=ROOT, stdout=out, stderr=out,
    )  # fmt: skip
    procs = Procs([proc], [(kind, kind)])
    try:
        yield procs
    finally:
        procs.stop()
        out.close()


# --- the variants: each sets up, then yields `workflows(n)`, which runs n and returns a Round


async def closed_loop(
    client: aioredis.Redis, n: int, in_flight: int, submit: Callable[[str], Awaitable[None]]
) -> Round:
    async def submit_one(task_id: str, i: int) -> None:
        await submit(task_id)

    return await asyncio.wait_for(
        drive(client, "peers", n, in_flight, submit_one, [DONE], done_task), TIMEOUT_S
    )


@contextlib.asynccontextmanager
async def raw_variant(url: str, in_flight: int) -> Any:
    client = aioredis.from_url(url)
    streams = [f"peers:raw:{i}".encode() for i in range(HOPS)]
    hop_of = {s: i for i, s in enumerate(streams)}
    for stream in streams:
        await client.xgroup_create(stream, RAW_GROUP, id="0", mkstream=True)

    async def loop() -> None:
        offsets = dict.fromkeys(streams, ">")
        while True:
            reply = await client.xreadgroup(RAW_GROUP, "raw", offsets, count=100, block=100)  # type: ignore[arg-type]
            if not reply:
                continue
            pipe = client.pipeline(transaction=False)
            for stream, messages in reply:
                hop = hop_of[stream]
                for _, fields in messages:
                    context = hop_field(orjson.loads(fields[b"d"]), hop)
                    if hop < HOPS - 1:
                        body = {b"d": orjson.dumps(context)}
                        pipe.xadd(streams[hop + 1], body, maxlen=100_000, approximate=True)  # type: ignore[arg-type]
                    else:
                        done = {b"d": context["workflow_id"].encode()}
                        pipe.xadd(DONE, done, maxlen=100_000, approximate=True)  # type: ignore[arg-type]
                pipe.xack(stream, RAW_GROUP, *[m[0] for m in messages])
            await pipe.execute()

    async def submit(task_id: str) -> None:
        await client.xadd(streams[0], {b"d": orjson.dumps(workflow_context(task_id))})

    worker = asyncio.create_task(loop())
    try:
        yield lambda n: closed_loop(client, n, in_flight, submit)
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await client.aclose()


@contextlib.asynccontextmanager
async def bus_variant(url: str, in_flight: int) -> Any:
    from faststream import FastStream
    from pydantic import SecretStr
    from redis.asyncio.client import Pipeline

    from shared.contract.events import (
        Envelope,
        RoutingInfo,
        StageAdvanced,
        Workflow,
        new_envelope,
    )
    from shared.contract.models import AgentContext
    from shared.messaging.bus import ServiceBus, make_broker, publish
    from shared.settings import Settings

    settings = Settings(redis_url=SecretStr(url), consumer_name="peers-1")
    client = aioredis.from_url(url)
    broker = make_broker(settings, service="peers")
    bus = ServiceBus("peers", broker, client, settings)

    async def hop(event: Envelope[StageAdvanced], tx: Pipeline) -> list[Envelope[Any]]:
        workflow = event.payload.workflow
        stage = workflow.stage_index
        inputs = hop_field(workflow.inputs, stage)
        if stage == HOPS - 1:
            tx.xadd(DONE, {b"d": event.correlation_id.encode()}, maxlen=100_000, approximate=True)  # type: ignore[arg-type]
            return []
        following = workflow.model_copy(update={"stage_index": stage + 1, "inputs": inputs})
        return [event.follow(StageAdvanced(workflow=following))]

    bus.on(StageAdvanced, hop)
    await bus.ensure_groups()
    app = FastStream(broker, logger=None)
    await app.start()
    agents = [f"hop{i}" for i in range(HOPS)]

    async def submit(task_id: str) -> None:
        workflow = Workflow(
            task_id=task_id,
            goal="Write a blog post about AI trends in healthcare",
            inputs=workflow_context(task_id),
            agent_sequence=agents,
            routing=RoutingInfo(source="requested", confidence=1.0),
        )
        event = new_envelope(
            StageAdvanced(workflow=workflow),
            workspace_id="peers",
            context=AgentContext(workspace_id="peers"),
            correlation_id=task_id,
        )
        await publish(client, settings.layout(), [event])

    try:
        yield lambda n: closed_loop(client, n, in_flight, submit)
    finally:
        await app.stop()
        await client.aclose()


@contextlib.asynccontextmanager
async def dramatiq_variant(url: str, in_flight: int) -> Any:
    import dramatiq

    broker, actors = dramatiq_broker(url)
    client = aioredis.from_url(url)

    async def submit(task_id: str) -> None:
        first = actors[0].message(workflow_context(task_id))
        dramatiq.pipeline([first, *(a.message() for a in actors[1:])], broker=broker).run()

    try:
        yield lambda n: closed_loop(client, n, in_flight, submit)
    finally:
        broker.close()
        await client.aclose()


@contextlib.asynccontextmanager
async def celery_variant(url: str, in_flight: int) -> Any:
    from celery import chain

    app, tasks = celery_app(url)
    client = aioredis.from_url(url)

    async def submit(task_id: str) -> None:
        first = tasks[0].s(workflow_context(task_id))
        chain(first, *(t.s() for t in tasks[1:])).apply_async()

    try:
        yield lambda n: closed_loop(client, n, in_flight, submit)
    finally:
        app.close()
        await client.aclose()


@contextlib.asynccontextmanager
async def langgraph_variant(url: str, in_flight: int) -> Any:
    from typing import TypedDict

    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        context: dict[str, Any]

    def make(hop: int) -> Callable[[State], Awaitable[State]]:
        async def node(state: State) -> State:
            return {"context": hop_field(state["context"], hop)}

        return node

    graph = StateGraph(State)
    previous = START
    for i in range(HOPS):
        graph.add_node(f"hop{i}", make(i))  # type: ignore[call-overload]
        graph.add_edge(previous, f"hop{i}")
        previous = f"hop{i}"
    graph.add_edge(previous, END)
    client = aioredis.from_url(url)
    running: set[asyncio.Task[None]] = set()
    with tempfile.TemporaryDirectory(prefix="rf-peers-") as tmp:
        async with AsyncSqliteSaver.from_conn_string(str(Path(tmp) / "checkpoints.db")) as saver:
            compiled = graph.compile(checkpointer=saver)

            async def run(task_id: str) -> None:
                config: RunnableConfig = {"configurable": {"thread_id": task_id}}
                await compiled.ainvoke({"context": workflow_context(task_id)}, config)
                await client.xadd(DONE, {b"d": task_id.encode()}, maxlen=100_000, approximate=True)

            async def submit(task_id: str) -> None:
                task = asyncio.create_task(run(task_id))
                running.add(task)
                task.add_done_callback(running.discard)

            try:
                yield lambda n: closed_loop(client, n, in_flight, submit)
            finally:
                for task in list(running):
                    task.cancel()
                await client.aclose()


# --- measuring ---------------------------------------------------------------------


@dataclass
class Row:
    name: str
    label: str
    units: int
    seconds: float
    latencies_ms: list[float]
    cpu_ms: float  # per workflow (or task), every process
    redis_ms: float  # of which redis-server
    driver_ms: float  # of which this process (the driver; everything for in-process variants)
    commands: dict[str, float]
    detail: dict[str, float] = field(default_factory=dict)
    load: float = 0.0  # 1-minute load average when the measured part began

    @property
    def rate(self) -> float:
        return self.units / self.seconds

    @property
    def commands_total(self) -> float:
        return sum(v for k, v in self.commands.items() if k not in BENCH_COMMANDS)


async def measure(
    name: str,
    label: str,
    admin: aioredis.Redis,
    pids: list[int],
    redis_pid: int,
    body: Callable[[], Awaitable[Round]],
    print_it: bool = True,
) -> Row:
    """Run `body` (already warmed up) with CPU and Redis commands counted around it."""
    everyone = [os.getpid(), redis_pid, *pids]
    load = os.getloadavg()[0]
    cpu_before = {p: cpu_s(p) for p in everyone}
    stats_before = await command_stats(admin)
    result = await body()
    stats = diff_stats(stats_before, await command_stats(admin), result.tasks)
    cpu = {p: (cpu_s(p) - cpu_before[p]) * 1e3 / result.tasks for p in everyone}
    row = Row(
        name, label, result.tasks, result.seconds, result.latencies_ms,
        sum(cpu.values()), cpu[redis_pid], cpu[os.getpid()], stats, load=load,
    )  # fmt: skip
    if print_it:
        print_row(row)
    return row


def print_header() -> None:
    print(
        f"  {'':50} {'CPU ms/wf':>9} {'(redis)':>7} {'(this)':>7} {'wf/s':>7} {'p50 ms':>7} "
        f"{'p99 ms':>7} "
        f"{'cmds/wf':>7} {'load':>5}",
        flush=True,
    )


def print_row(row: Row) -> None:
    print(
        f"  {row.label:50} {row.cpu_ms:9.2f} {row.redis_ms:7.2f} {row.driver_ms:7.2f} "
        f"{row.rate:7.0f} "
        f"{pct(row.latencies_ms, 50):7.1f} {pct(row.latencies_ms, 99):7.1f} "
        f"{row.commands_total:7.1f} {row.load:5.1f}",
        flush=True,
    )


async def run_peer(
    name: str, url: str, admin: aioredis.Redis, redis_pid: int, args: argparse.Namespace
) -> Row:
    await admin.flushall()  # every variant starts on an empty server
    log = Path(tempfile.gettempdir()) / f"raptorflow-bench-peers-{os.getpid()}.log"
    label = LABELS[name]
    variant = {
        "raw": raw_variant,
        "bus": bus_variant,
        "dramatiq": dramatiq_variant,
        "dramatiq1": dramatiq_variant,
        "celery": celery_variant,
        "langgraph": langgraph_variant,
    }[name]
    async with contextlib.AsyncExitStack() as stack:
        pids: list[int] = []
        if name in ("celery", "dramatiq", "dramatiq1"):
            kind, threads = (
                ("celery", 1) if name == "celery" else ("dramatiq", 8 if name == "dramatiq" else 1)
            )
            procs = stack.enter_context(worker_process(kind, url, log, threads))
            pids = [p.pid for p in procs.procs]
        workflows = await stack.enter_async_context(variant(url, args.in_flight))
        await workflows(args.warmup)
        return await measure(name, label, admin, pids, redis_pid, lambda: workflows(args.workflows))


async def run_full_task(
    url: str, admin: aioredis.Redis, redis_pid: int, args: argparse.Namespace
) -> Row:
    """A whole RaptorFlow task: six service processes, as pipeline.py runs them."""
    await admin.flushall()
    log = Path(tempfile.gettempdir()) / f"raptorflow-bench-peers-{os.getpid()}.log"
    options = argparse.Namespace(
        zero_cost=args.full_task_mode == "zero",
        instrument=False,
        single_process=False,
        replicas=1,
        llm_latency_ms=0.0,
        concurrency=args.in_flight,
    )
    services = start_services(url, options, log, "peers")
    try:
        await wait_ready(admin, services)
        await pipeline_round(admin, options, args.task_warmup)  # fills memory's context caps
        await drain(admin)
        n = args.tasks
        before = services.cpu_s()

        polling = 0.0

        async def body() -> Round:
            nonlocal polling
            result = await asyncio.wait_for(pipeline_round(admin, options, n), TIMEOUT_S)
            own = cpu_s(os.getpid())
            await drain(admin)  # memory's tail: TaskCompleted is handled after the driver sees it
            polling = cpu_s(os.getpid()) - own
            return result

        pids = [p.pid for p in services.procs]
        row = await measure("full", LABELS["full"], admin, pids, redis_pid, body, print_it=False)
        row.cpu_ms -= polling * 1e3 / n  # the driver's own polling while it drains
        row.driver_ms -= polling * 1e3 / n
        row.detail = {k: (v - before.get(k, 0.0)) * 1e3 / n for k, v in services.cpu_s().items()}
        print_row(row)
        return row
    finally:
        services.stop()


LABELS = {
    "raw": "raw redis-py loop (COUNT 100, pipelined)",
    "bus": "RaptorFlow bus (ServiceBus, batch commits)",
    "dramatiq": "Dramatiq {dramatiq} pipeline, 1 proc x 8 threads",
    "dramatiq1": "Dramatiq {dramatiq} pipeline, 1 proc x 1 thread",
    "celery": "Celery {celery} chain, acks_late, solo pool",
    "langgraph": "LangGraph {langgraph} 8 nodes, AsyncSqliteSaver",
    "full": "RaptorFlow whole task (all services, {mode})",
}


async def main(args: argparse.Namespace) -> None:
    from raptorflow.redis_server import running_redis

    versions = {
        p: importlib.metadata.version(p)
        for p in ("celery", "dramatiq", "langgraph", "langgraph-checkpoint-sqlite", "redis")
    }
    mode = "zero-cost LLM" if args.full_task_mode == "zero" else "offline + MiniLM"
    for key, text in LABELS.items():
        LABELS[key] = text.format(**versions, mode=mode)
    with running_redis() as server:
        redis_pid = server.process.pid if server.process else 0
        admin = aioredis.from_url(server.url)
        info = await admin.info("server")
        print(
            f"peers: {HOPS} no-op hops, {len(json.dumps(workflow_context('x')))} B context "
            f"(+1 field per hop), {args.workflows} workflows after {args.warmup} warm-up, "
            f"{args.in_flight} in flight; whole task: {args.tasks} after {args.task_warmup}\n"
            f"Redis {info['redis_version']} (embedded), {os.cpu_count()} CPUs, Python "
            f"{sys.version.split()[0]}, redis-py {versions['redis']}, "
            f"langgraph-checkpoint-sqlite {versions['langgraph-checkpoint-sqlite']}; "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
            "CPU = this process (the driver; all of raw, bus, langgraph) + workers + "
            "redis-server, from /proc",
            flush=True,
        )
        rows: dict[str, list[Row]] = {name: [] for name in args.only}
        for r in range(args.rounds):
            if args.rounds > 1:
                print(f"round {r + 1} of {args.rounds}")
            print_header()
            for name in args.only:
                if name == "full":
                    row = await run_full_task(server.url, admin, redis_pid, args)
                else:
                    row = await run_peer(name, server.url, admin, redis_pid, args)
                rows[name].append(row)
        await admin.aclose()
    report(rows, args)


def median_row(rows: list[Row]) -> Row:
    """The round with the median CPU per workflow (its own rate, latency and commands)."""
    return sorted(rows, key=lambda r: r.cpu_ms)[(len(rows) - 1) // 2]


def report(rounds: dict[str, list[Row]], args: argparse.Namespace) -> None:
    print(f"\nload average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = {name: median_row(r) for name, r in rounds.items() if r}
    if args.rounds > 1:
        print(f"median round (by CPU per workflow) of {args.rounds}:")
        print_header()
        for row in rows.values():
            print_row(row)
    full = rows.get("full")
    if full is not None:
        parts = " ".join(f"{k}={v:.2f}" for k, v in full.detail.items())
        top = " ".join(f"{k}={v:.1f}" for k, v in full.commands.items() if k not in BENCH_COMMANDS)
        driver = full.driver_ms
        print(
            f"whole task, CPU ms per service: {parts}; redis-server {full.redis_ms:.2f}; "
            f"driver {driver:.2f}"
        )
        print(
            f"whole task, Redis commands per task: {full.commands_total:.1f} (target <= 60): {top}"
        )
    dramatiq = rows.get("dramatiq")
    if dramatiq is None:
        return
    print("\nCPU per workflow / Dramatiq's" + (", per round:" if args.rounds > 1 else ":"))
    for name, row in rows.items():
        each = [
            f"{r.cpu_ms / d.cpu_ms:.3f}"
            for r, d in zip(rounds[name], rounds["dramatiq"], strict=True)
        ]
        print(f"  {row.label:50} {row.cpu_ms / dramatiq.cpu_ms:6.3f}  ({' '.join(each)})")
    if "bus" in rows:
        ratio = rows["bus"].cpu_ms / dramatiq.cpu_ms
        print(f"bus_cpu_ms / dramatiq_cpu_ms = {ratio:.3f} (target <= 0.15)")
    if full is not None:
        print(f"full_task_cpu_ms / dramatiq_cpu_ms = {full.cpu_ms / dramatiq.cpu_ms:.2f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=2000, help="measured, per framework")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=2000, help="whole RaptorFlow tasks measured")
    parser.add_argument("--task-warmup", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1, help="the median round is reported")
    parser.add_argument("--full-task-mode", choices=("zero", "offline"), default="zero")
    parser.add_argument(
        "--only", default=",".join(VARIANTS), help=f"of {','.join(VARIANTS + EXTRA)}"
    )
    parser.add_argument("--quick", action="store_true", help="300 of each, warm-up 50 / 20")
    parser.add_argument("--worker", choices=("celery", "dramatiq"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.only = [v for v in args.only.split(",") if v]
    unknown = set(args.only) - set(VARIANTS) - set(EXTRA)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}")
    if args.quick:
        args.workflows = args.tasks = 300
        args.warmup, args.task_warmup = 50, 20
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        run_worker(arguments.worker, arguments.url, arguments.threads)
    else:
        asyncio.run(main(arguments))
