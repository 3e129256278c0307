"""Orchestration overhead of self-correction, LLM time excluded, against a raw Redis round trip.

Usage: python bench/self_correction_overhead.py [--n 300] [--warmup 30] [--quick]
       [--redis-url URL]   (default: start a private redis-server via raptorflow.redis_server)

What is timed, all on the same Redis server in the same run:

- baseline: one raw XADD + XREADGROUP (COUNT 1) round trip of a message the size of a
  StageCleared envelope, from a plain redis-py asyncio client;
- stage: publish a StageCleared and block (XREAD) until the corrector service (running
  in this process on the real bus) has published its StageCompleted. The time spent
  inside the LLM provider's `complete()` during that stage is measured and subtracted,
  so what is left is orchestration: bus delivery, decoding, de-duplication, the loop's
  own logic, critique parsing, encoding, and the transaction that publishes the
  CritiqueDone and StageCompleted events and acks the message.

Two LLMs, both answering at once: an in-process provider (zero latency), and the real
`openai` client against ScriptedOpenAIServer on loopback, in a child process (its HTTP
time counts as LLM time and is subtracted). Stages run with 1 iteration (generate + critique) and with 3
iterations (generate + 3 critiques + 2 revisions); the marginal cost of one more
iteration is (p50 of 3 - p50 of 1) / 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis.asyncio import Redis

from raptorflow.redis_server import RedisServer
from raptorflow.stack import LocalStack
from shared.contract.events import (
    RoutingInfo,
    StageCleared,
    StageCompleted,
    Usage,
    Workflow,
    new_envelope,
)
from shared.contract.models import SelfCorrectionConfig
from shared.contract.topology import Topology
from shared.domain.llm_port import LLMProvider, LLMReply, LLMRequest
from shared.llm.openai_provider import OpenAIProvider
from shared.messaging.bus import publish
from shared.settings import Settings

WORKSPACE = "bench-sc"
SCORES = [0.2, 0.4, 0.6]  # rises by 0.2 per revision: never meets 0.99, never stops early

PLAIN = Topology()  # the single-Redis layout this benchmark runs


class InstantProvider:
    """Zero-latency in-process LLM: a draft per version, a critique scored by version."""

    name = "instant"
    model = "instant-1"

    async def complete(self, request: LLMRequest) -> LLMReply:
        if request.purpose == "critique":
            draft = str(request.facts.get("draft", ""))
            score = SCORES[min(draft.count("+"), len(SCORES) - 1)]
            aspects = list(request.facts.get("aspects", []))
            text = json.dumps(
                {
                    "aspect_scores": {a: score for a in aspects},
                    "issues": ["[clarity] opening: vague -> name the benefit"],
                    "critique": "scripted",
                }
            )
        elif request.purpose == "revise":
            text = str(request.facts.get("draft", "")) + "+"
        else:
            text = "DRAFT v1: a first take."
        usage = Usage(api_calls=1, prompt_tokens=100, completion_tokens=50)
        return LLMReply(text=text, usage=usage, provider=self.name, model=self.model)


class TimedProvider:
    """Wraps a provider and adds up the wall time spent inside `complete()`."""

    def __init__(self, inner: LLMProvider):
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.llm_s = 0.0

    async def complete(self, request: LLMRequest) -> LLMReply:
        started = time.perf_counter()
        try:
            return await self.inner.complete(request)
        finally:
            self.llm_s += time.perf_counter() - started

    async def close(self) -> None:
        closer = getattr(self.inner, "close", None)
        if closer is not None:
            await closer()


@dataclass
class Stats:
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def of(cls, samples_s: list[float]) -> Stats:
        q = statistics.quantiles(samples_s, n=100, method="inclusive")
        return cls(q[49] * 1e3, q[98] * 1e3, statistics.fmean(samples_s) * 1e3)


def stage_event(iterations: int) -> Any:
    task_id = str(uuid.uuid4())
    workflow = Workflow(
        task_id=task_id,
        goal="Write a blog post about AI in healthcare",
        agent_sequence=["content"],
        routing=RoutingInfo(source="requested", confidence=1.0),
        self_correction=SelfCorrectionConfig(
            max_iterations=iterations, min_quality_score=0.99, improvement_threshold=0.1
        ),
    )
    payload = StageCleared(workflow=workflow, agent="content", task_type="content_generation")
    return new_envelope(payload, workspace_id=WORKSPACE, correlation_id=task_id)


async def baseline(url: str, n: int, warmup: int, size: int) -> list[float]:
    redis = Redis.from_url(url)
    stream = f"bench:roundtrip:{uuid.uuid4().hex}"
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    body = b"x" * size
    samples = []
    try:
        for i in range(warmup + n):
            started = time.perf_counter()
            await redis.xadd(stream, {"__data__": body})
            got = await redis.xreadgroup("g", "c", {stream: ">"}, count=1)
            elapsed = time.perf_counter() - started
            await redis.xack(stream, "g", got[0][1][0][0])
            if i >= warmup:
                samples.append(elapsed)
    finally:
        await redis.delete(stream)
        await redis.aclose()
    return samples


async def stages(
    settings: Settings, provider: TimedProvider, iterations: int, n: int, warmup: int
) -> list[float]:
    """Overhead samples: publish StageCleared -> StageCompleted readable, minus LLM time."""
    completed = PLAIN.stream(StageCompleted.event_type)
    samples = []
    async with LocalStack(
        settings, services=["corrector", "agents"], provider=provider, start_redis=False
    ) as stack:
        assert stack.deps is not None
        redis = stack.deps.redis
        reader = Redis.from_url(settings.redis_url_value())
        try:
            newest = await reader.xrevrange(completed, count=1)
            last: bytes | str = newest[0][0] if newest else "0"
            for i in range(warmup + n):
                event = stage_event(iterations)
                llm_before = provider.llm_s
                started = time.perf_counter()
                await publish(redis, stack.deps.layout, [event])
                while True:
                    got = await reader.xread({completed: last}, count=1, block=10_000)
                    if not got:
                        raise TimeoutError("corrector did not complete a stage within 10 s")
                    last, fields = got[0][1][0]
                    if event.correlation_id.encode() in fields[b"__data__"]:
                        break
                elapsed = time.perf_counter() - started
                if i >= warmup:
                    samples.append(elapsed - (provider.llm_s - llm_before))
        finally:
            await reader.aclose()
    return samples


def settings_for(url: str, **kw: Any) -> Settings:
    from pydantic import SecretStr

    return Settings(llm_provider="offline", **kw).model_copy(update={"redis_url": SecretStr(url)})


def _serve_llm(conn: Connection) -> None:
    """Child process: the scripted OpenAI server, so its thread takes no GIL from the bench."""
    from tests.fakes.openai_script import PurposeScript
    from tests.fakes.openai_server import ScriptedOpenAIServer

    with ScriptedOpenAIServer(responder=PurposeScript(scores=SCORES)) as llm:
        conn.send(llm.base_url)
        conn.recv()


@contextlib.contextmanager
def llm_server_process() -> Iterator[str]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve_llm, args=(child,))
    process.start()
    try:
        if not parent.poll(30):
            raise TimeoutError("scripted OpenAI server did not start")
        yield str(parent.recv())
    finally:
        parent.send("stop")
        process.join(10)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    logging.getLogger("raptorflow").setLevel(logging.CRITICAL)  # shutdown noise of pollers
    server = None if args.redis_url else RedisServer().start()
    url = args.redis_url or (server.url if server else "")
    envelope_size = len(stage_event(1).model_dump_json())
    results: dict[str, Any] = {}
    try:
        base = Stats.of(await baseline(url, args.n, args.warmup, envelope_size))
        results["baseline XADD+XREADGROUP"] = base
        settings = settings_for(url)
        for iterations in (1, 3):
            provider = TimedProvider(InstantProvider())
            samples = await stages(settings, provider, iterations, args.n, args.warmup)
            results[f"in-process LLM, {iterations} iteration(s)"] = Stats.of(samples)
        with llm_server_process() as llm_base_url:
            http = settings_for(
                url,
                openai_base_url=llm_base_url,
                openai_api_key="test",
                llm_model="fake-model",
                llm_max_retries=0,
            )
            for iterations in (1, 3):
                provider = TimedProvider(OpenAIProvider(http))
                samples = await stages(http, provider, iterations, args.n, args.warmup)
                results[f"openai client + scripted server, {iterations} iteration(s)"] = Stats.of(
                    samples
                )
    finally:
        if server is not None:
            server.stop()

    print(
        f"self-correction orchestration overhead (LLM time excluded); n={args.n}, "
        f"warmup={args.warmup}, envelope {envelope_size} B, python {platform.python_version()}"
    )
    print(f"{'measurement':58} {'p50 ms':>8} {'p99 ms':>8} {'p50 x':>7} {'p99 x':>7}")
    for name, s in results.items():
        print(
            f"{name:58} {s.p50_ms:8.3f} {s.p99_ms:8.3f} "
            f"{s.p50_ms / base.p50_ms:7.1f} {s.p99_ms / base.p99_ms:7.1f}"
        )
    for label in ("in-process LLM", "openai client + scripted server"):
        one = results[f"{label}, 1 iteration(s)"]
        three = results[f"{label}, 3 iteration(s)"]
        extra = (three.p50_ms - one.p50_ms) / 2
        print(
            f"{label}: one more iteration adds p50 {extra:.3f} ms "
            f"= {extra / base.p50_ms:.1f}x the baseline p50"
        )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="n=60, warmup=10")
    parser.add_argument("--redis-url", default=None)
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.n, arguments.warmup = 60, 10
    asyncio.run(main(arguments))
