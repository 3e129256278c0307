"""The composition root: builds the real dependencies once and runs services.

Services receive everything they use through `Deps`; tests build their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from faststream import FastStream
from redis.asyncio import Redis

from shared.contract.keys import Keys
from shared.contract.topology import Topology
from shared.domain.catalog import AgentCatalog, load_catalog
from shared.domain.llm_port import LLMProvider
from shared.llm.factory import make_provider
from shared.memory.embeddings import make_embedder
from shared.memory.embeddings.base import Embedder
from shared.memory.store import MemoryReader
from shared.memory.vector_index import VectorIndex, open_vector_index
from shared.messaging.bus import ServiceBus, make_broker, make_redis
from shared.messaging.trimming import StreamTrimmer
from shared.observability import probes, telemetry
from shared.settings import Settings

log = logging.getLogger("raptorflow.runtime")

STOP_TIMEOUT_S = 5.0
LEAVE_TIMEOUT_S = 2.0

BackgroundTask = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class Deps:
    """Everything a service may use; built once per process."""

    settings: Settings
    keys: Keys  # the names of streams and keys follow this deployment's layout
    redis: Redis
    catalog: AgentCatalog
    provider: LLMProvider
    embedder: Embedder
    index: VectorIndex
    memory: MemoryReader

    @property
    def layout(self) -> Topology:
        """How streams and keys are laid over Redis: what names every stream."""
        return self.keys.layout

    async def close(self) -> None:
        closer = getattr(self.provider, "close", None)
        if closer is not None:
            await closer()
        await self.redis.aclose()


async def build_deps(settings: Settings, *, provider: LLMProvider | None = None) -> Deps:
    keys = settings.keys()
    redis = make_redis(settings)
    embedder = make_embedder(
        settings.embeddings,
        model=settings.embeddings_model if settings.embeddings == "openai" else None,
        api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
        base_url=settings.openai_base_url,
    )
    index = await open_vector_index(redis, keys)
    return Deps(
        settings=settings,
        keys=keys,
        redis=redis,
        catalog=load_catalog(settings.catalog_path),
        provider=telemetry.MeteredProvider(provider or make_provider(settings)),
        embedder=embedder,
        index=index,
        memory=MemoryReader(redis, keys, embedder, index),
    )


async def every(interval_s: float, job: Callable[[], Awaitable[object]], what: str) -> None:
    """Run `job` forever, every `interval_s`; a failure is logged and tried again next time."""
    while True:
        try:
            await job()
        except Exception:
            log.exception("%s failed; retrying", what)
        await asyncio.sleep(interval_s)


@dataclass
class Service:
    """One service: its FastStream app, its bus, and its background loops."""

    name: str
    app: FastStream
    bus: ServiceBus
    background: list[BackgroundTask] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        await self.bus.ensure_groups()
        await self.app.start()
        self._tasks = [
            asyncio.create_task(job(), name=f"{self.name}-bg") for job in self.background
        ]

    @property
    def reading(self) -> bool:
        """Every subscriber still reads (FastStream stops one for good on a terminal error)."""
        return all(sub.running for sub in self.bus.broker.subscribers)

    async def stop(self) -> None:
        """Stop reading on every stream at once; in-flight handlers get the broker's graceful
        timeout (settings.shutdown_grace_s) to commit and are cancelled after it. A cancelled
        handler's transaction never ran, so its message stays pending for a replica to
        reclaim: finished or untouched, never half-done. The background loops stop meanwhile."""
        await asyncio.gather(stop_readers(self.app), self._stop_background())
        await self.app.stop()
        await self._leave_groups()

    async def _stop_background(self) -> None:
        """Cancel the background loops, waiting a bounded time: redis-py can swallow a
        cancellation that lands inside a command, and a stop must never hang on that."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
            for task in stuck:
                log.warning("background task did not stop in time", extra={"service": self.name})
                task.cancel()

    async def _leave_groups(self) -> None:
        """Delete this replica's consumer from each group when it holds nothing pending, so
        replicas that come and go (autoscaling) do not pile up in XINFO CONSUMERS. A consumer
        that still holds messages stays: its entries wait there for a reclaim."""
        consumer = self.bus.settings.consumer_name
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT_S):  # the client retries a Redis outage
                for stream in self.bus.streams:
                    await self.bus.redis.eval(
                        _DELETE_IDLE_CONSUMER, 1, stream, self.name, consumer
                    )
        except Exception as exc:  # the consumer record is harmless, only untidy
            log.debug("consumer %s not removed: %r", consumer, exc)


# Atomic, so no read can hand the consumer a message between the check and the delete
# (XGROUP DELCONSUMER drops a consumer's pending entries with it).
_DELETE_IDLE_CONSUMER = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""


async def stop_readers(app: FastStream) -> None:
    """Stop the subscribers, all at once (each stops reading, then waits up to the graceful
    timeout for its in-flight handlers), and wait until their read loops have ended, before
    the broker closes its connections. FastStream's own stop only requests the loops'
    cancellation and then closes the connections: a loop still inside XREADGROUP (a busy
    event loop, or a cancellation redis-py swallowed) then logs "Message fetch error ...
    Connection closed"."""
    subscribers = list(getattr(app.broker, "subscribers", []) if app.broker else [])
    readers = [task for sub in subscribers for task in getattr(sub, "tasks", [])]
    await asyncio.gather(*(sub.stop() for sub in subscribers))
    await drain(readers, STOP_TIMEOUT_S)


async def drain(tasks: list[asyncio.Task[Any]], timeout: float) -> None:
    """Wait (bounded) for tasks to finish, cancelling again any that swallowed it."""
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    if pending:
        log.warning("%d stream readers did not stop in time", len(pending))


def new_service(name: str, deps: Deps) -> tuple[Service, ServiceBus]:
    broker = make_broker(deps.settings, service=name)
    bus = ServiceBus(name, broker, deps.redis, deps.settings)
    service = Service(name=name, app=FastStream(broker, logger=None), bus=bus)
    service.background.append(
        lambda: telemetry.watch_streams(deps.redis, deps.keys, bus.streams, name)
    )
    service.background.append(lambda: keep_trimmed(deps, bus.streams))
    return service, bus


async def keep_trimmed(deps: Deps, streams: list[str]) -> None:
    """Trim the streams this service reads, every `stream_trim_interval_s` (see trimming)."""
    trimmer = await StreamTrimmer.for_server(deps.redis, deps.settings.stream_maxlen)
    await every(deps.settings.stream_trim_interval_s, lambda: trimmer.trim_all(streams), "trim")


def stop_signal() -> asyncio.Event:
    """An event set by the first SIGINT or SIGTERM (installed now, before anything starts)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    await stop_signal().wait()


def subscribers_reading(services: list[Service]) -> probes.Check:
    async def check() -> str | None:
        stopped = [s.name for s in services if not s.reading]
        return f"subscribers stopped: {', '.join(stopped)}" if stopped else None

    return check


async def run_services(builders: list[Callable[[Deps], Service]], settings: Settings) -> None:
    """Run services in this process until SIGTERM or SIGINT (the `python -m services.X` path).

    The metrics port also answers /livez and /readyz. On the signal the process turns
    unready, stops reading and exits within about `shutdown_grace_s` (see `Service.stop`)."""
    stop = stop_signal()
    deps = await build_deps(settings)
    health = probes.Probes(asyncio.get_running_loop())
    metrics = telemetry.serve_metrics(settings.metrics_port, probes=health)
    services = [build(deps) for build in builders]
    health.require(probes.redis_answers(deps.redis))
    health.require(
        probes.redis_takes_writes(deps.redis, deps.keys.readiness_probe(settings.consumer_name))
    )
    health.require_alive(subscribers_reading(services))
    started: list[Service] = []
    try:
        for service in services:
            await service.start()
            started.append(service)
            log.info("service started", extra={"service": service.name})
        health.serving()
        await stop.wait()
        log.info("stopping: in-flight handlers get %gs", settings.shutdown_grace_s)
    finally:
        health.stopping()
        await asyncio.gather(*(service.stop() for service in started))
        await deps.close()
        if metrics is not None:
            metrics.close()
