"""The floor of our consumer design: ServiceBus with a handler that does nothing.

`bench/pipeline.py` compares the whole pipeline with a raw Redis loop. This bench takes
the handlers' own work away, to show what the bus alone costs per delivery against the
same raw loop, in the same run, on the same server (an embedded Redis 8 of its own):

- raw: XREADGROUP COUNT 100, then one pipelined round trip with the next XADD and one
  XACK per batch (bytes in, bytes out: no decoding, no exactly-once);
- bus, batched: ServiceBus as the services run it (decode and validate the envelope,
  WATCH + MGET of the processed markers, build the next envelope with `follow`, one
  MULTI..EXEC with the XADDs, markers and one XACK per read);
- bus, per message: the same, one message per transaction (what `batched=False` gives).

Each delivery re-publishes its event on the same stream (the next hop), so `--in-flight`
events circulate at once (a closed loop, like the pipeline's concurrency) until
`--deliveries` are done. The envelope is a StageCleared about the size of the pipeline's
average event.
Everything runs in this process; CPU ms per delivery counts this process and the Redis
server (from /proc). The ratio raw/bus is the bound: the pipeline, which makes the same
deliveries plus its handlers' work, cannot be faster than the bus floor.

    .venv/bin/python bench/bus_floor.py            # 20,000 deliveries per variant
    .venv/bin/python bench/bus_floor.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faststream import FastStream  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from redis.asyncio.client import Pipeline  # noqa: E402

from raptorflow.redis_server import running_redis  # noqa: E402
from shared.contract.events import Envelope, RoutingInfo, StageCleared, Workflow, new_envelope  # noqa: E402
from shared.contract.models import AgentContext  # noqa: E402
from shared.messaging.bus import ServiceBus, make_broker, publish  # noqa: E402
from shared.messaging.codec import DATA_FIELD  # noqa: E402
from shared.settings import Settings  # noqa: E402

WORKSPACE = "floor"
RAW_STREAM = "floor:raw"
GROUP = "floor"


def sample_event(chain: int) -> Envelope[StageCleared]:
    """A mid-flow event the size of the pipeline's average (its 12 events: ~22 KB)."""
    context = AgentContext(
        workspace_id=WORKSPACE,
        user_id="alice",
        brand_voice={"tone": "professional", "style": "conversational"},
        target_icps=["hospital CIOs", "health-tech founders"],
        budget_constraints={"max_api_calls": 100},
    )
    workflow = Workflow(
        task_id=f"chain-{chain}",
        goal="Write a blog post about AI trends in healthcare",
        agent_sequence=["content", "blog_writer"],
        routing=RoutingInfo(source="memory", confidence=0.93),
        last_output="A finding with a source. " * 20,
    )
    payload = StageCleared(workflow=workflow, agent="content", task_type="content_quality")
    return new_envelope(
        payload, workspace_id=WORKSPACE, context=context, correlation_id=f"chain-{chain}"
    )


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Chains:
    """Closed loop: every delivery re-publishes its event until `total` deliveries are done."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.delivered = 0
        self.done = asyncio.Event()

    def step(self) -> bool:
        """Count one delivery; True while the event should hop on."""
        self.delivered += 1
        if self.delivered >= self.total:
            self.done.set()
        return not self.done.is_set()


async def run_raw(url: str, chains: Chains, in_flight: int) -> None:
    redis = aioredis.from_url(url)
    await redis.xgroup_create(RAW_STREAM, GROUP, id="0", mkstream=True)
    body = sample_event(0).model_dump_json().encode()
    for _ in range(in_flight):
        await redis.xadd(RAW_STREAM, {DATA_FIELD.encode(): body})

    async def loop() -> None:
        while not chains.done.is_set():
            reply = await redis.xreadgroup(GROUP, "raw", {RAW_STREAM: ">"}, count=100, block=100)
            pipe = redis.pipeline(transaction=False)
            for stream, messages in reply or []:
                ids = []
                for message_id, fields in messages:
                    if chains.step():
                        pipe.xadd(stream, fields, maxlen=100_000, approximate=True)
                    ids.append(message_id)
                pipe.xack(stream, GROUP, *ids)
            await pipe.execute()

    await loop()
    await redis.aclose()


async def run_bus(url: str, chains: Chains, in_flight: int, batched: bool) -> None:
    settings = Settings(redis_url=SecretStr(url), consumer_name="floor-1")
    redis = aioredis.from_url(url)
    broker = make_broker(settings, service=f"floor-{batched}")
    bus = ServiceBus(f"floor-{'batch' if batched else 'single'}", broker, redis, settings)

    async def hop(event: Envelope[StageCleared], tx: Pipeline) -> Sequence[Envelope[Any]]:
        return [event.follow(event.payload)] if chains.step() else []

    bus.on(StageCleared, hop, batched=batched)
    await bus.ensure_groups()
    app = FastStream(broker, logger=None)
    await app.start()
    await publish(redis, settings.layout(), [sample_event(i) for i in range(in_flight)])
    await chains.done.wait()
    await app.stop()
    await redis.aclose()


async def measure(
    name: str, run: Callable[[Chains], Any], redis_pid: int, args: argparse.Namespace
) -> dict[str, float]:
    chains = Chains(args.deliveries)
    own, server, start = cpu_s(os.getpid()), cpu_s(redis_pid), time.perf_counter()
    await run(chains)
    wall = time.perf_counter() - start
    own_ms = (cpu_s(os.getpid()) - own) * 1e3 / chains.delivered
    redis_ms = (cpu_s(redis_pid) - server) * 1e3 / chains.delivered
    row = {
        "deliveries_per_s": chains.delivered / wall,
        "process_us": own_ms * 1e3,
        "redis_us": redis_ms * 1e3,
    }
    print(
        f"  {name:<22} {row['deliveries_per_s']:>9.0f} deliveries/s   CPU per delivery: "
        f"process {row['process_us']:>6.0f} us, redis-server {row['redis_us']:>5.0f} us",
        flush=True,
    )
    return row


async def main(args: argparse.Namespace) -> None:
    with running_redis() as server:
        url = server.url
        redis_pid = server.process.pid if server.process else 0
        print(
            f"bus floor: {args.deliveries} deliveries per variant, {args.in_flight} in flight, "
            f"{len(sample_event(0).model_dump_json())} B envelope; "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        variants: dict[str, tuple[str, Callable[[Chains], Any]]] = {
            "raw": ("raw (batched loop)", lambda c: run_raw(url, c, args.in_flight)),
            "batched": ("bus, batched", lambda c: run_bus(url, c, args.in_flight, True)),
            "single": ("bus, per message", lambda c: run_bus(url, c, args.in_flight, False)),
        }
        results: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for key, (label, run) in variants.items():
                admin = aioredis.from_url(url)
                await admin.flushall()  # each variant starts on empty streams
                await admin.aclose()
                results[key].append(await measure(label, run, redis_pid, args))
        best = {k: max(r["deliveries_per_s"] for r in rows) for k, rows in results.items()}
        cpu = {k: min(r["process_us"] + r["redis_us"] for r in rows) for k, rows in results.items()}
        print(f"\nbest of {args.rounds} rounds, load average {os.getloadavg()[0]:.2f}:")
        for k in results:
            print(f"  {k:<8} {best[k]:>9.0f} deliveries/s  {cpu[k]:>6.0f} us CPU per delivery")
        print(f"bus batched / raw     = {best['batched'] / best['raw']:.3f} (deliveries/s)")
        print(f"bus per message / raw = {best['single'] / best['raw']:.3f} (deliveries/s)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="--deliveries 4000 --rounds 1")
    args = parser.parse_args()
    if args.quick:
        args.deliveries, args.rounds = 4000, 1
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
