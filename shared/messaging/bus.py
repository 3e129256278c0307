"""Redis Streams wiring shared by every service, on FastStream.

Each event type has one stream; each service is one consumer group; each
replica is one consumer. A message is acknowledged only in the same Redis
transaction that publishes its follow-up events and marks it processed, so a
crash at any point either leaves it pending (to be reclaimed) or fully done.
A batched subscription (the default) commits all messages of one read in one such
transaction; a handler that fails leaves none of its writes in it.
Malformed messages and messages that keep failing go to the dead-letter stream.

Here: the broker and client factories, the publish helpers, and `ServiceBus`, which
subscribes a service's handlers; the consume paths are `per_message.py` and
`batched.py`, what both share is `consumer.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from faststream.middlewares import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared.contract.events import Envelope
from shared.contract.topology import Topology
from shared.messaging import cluster_client
from shared.messaging.batched import BatchedConsumer, RedisBatchStreamMessage
from shared.messaging.codec import (
    DATA_FIELD,
    EnvelopeFormat,
    batch_parse,
    skip_decode,
    tolerant_parse,
)
from shared.messaging.consumer import Handler, P
from shared.messaging.per_message import PerMessageConsumer, RedisStreamMessage
from shared.messaging.tx import Tx
from shared.observability import telemetry, tracing
from shared.settings import Settings

log = logging.getLogger("raptorflow.bus")


def make_broker(settings: Settings, service: str = "") -> RedisBroker:
    """FastStream's Prometheus middleware adds per-stream receive/publish counts and timings
    (its status label always reads "acked": our handlers ack in their own transaction)."""
    from faststream.redis import RedisClusterBroker
    from faststream.redis.prometheus import RedisPrometheusMiddleware
    from prometheus_client import REGISTRY

    middleware = RedisPrometheusMiddleware(registry=REGISTRY, app_name=service or "raptorflow")
    if settings.redis_cluster:
        cluster_client.install()
    broker_class = RedisClusterBroker if settings.redis_cluster else RedisBroker
    return broker_class(
        settings.redis_url_value(),
        message_format=EnvelopeFormat,
        logger=logging.getLogger("raptorflow.faststream"),
        log_level=logging.DEBUG,
        middlewares=[middleware],
        graceful_timeout=settings.shutdown_grace_s,  # in-flight handlers' time to commit on stop
    )


def make_redis(settings: Settings) -> Redis:
    """A client that retries on connection errors, so a Redis restart is survived.

    With `redis_cluster`, a cluster client (it routes each command by slot and follows
    MOVED); it speaks the same command API, so the rest of the code keeps one type."""
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if settings.redis_cluster:
        from redis.asyncio.cluster import RedisCluster

        cluster_client.install()
        cluster = RedisCluster.from_url(
            settings.redis_url_value(),
            retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=20),
        )
        return cast(Redis, cluster)
    return Redis.from_url(
        settings.redis_url_value(),
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=20),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        health_check_interval=10,
    )


def add_publish(tx: Tx, layout: Topology, event: Envelope[Any]) -> None:
    """Queue an XADD of an event on its stream in `layout`, carrying the current trace context."""
    queue_xadd(tx, layout, tracing.inject(event))


def queue_xadd(tx: Tx, layout: Topology, event: Envelope[Any]) -> None:
    """Queue an XADD of an event as it is. It never trims: a trim by length alone could
    drop entries a lagging group has not read; `trimming` trims what every group acked."""
    tx.xadd(layout.stream_of(event), {DATA_FIELD: event.model_dump_json()})


async def publish(redis: Redis, layout: Topology, events: Sequence[Envelope[Any]]) -> None:
    """Publish events outside a handler (the gateway, the CLI, timeouts): one transaction
    per partition, since a cluster transaction must stay within one slot."""
    by_partition: dict[int, list[Envelope[Any]]] = {}
    for event in events:
        by_partition.setdefault(layout.partition_of(event.workspace_id), []).append(event)
    for group in by_partition.values():
        async with redis.pipeline(transaction=True) as tx:
            for event in group:
                add_publish(tx, layout, event)
            await tx.execute()


class ServiceBus(PerMessageConsumer, BatchedConsumer):
    """One service's subscriptions: decode, de-duplicate, handle, publish, ack.

    The consume paths live in `per_message` and `batched`, what they share in `consumer`;
    this class subscribes them to the streams and queues their follow-up events.
    """

    def __init__(self, service: str, broker: RedisBroker, redis: Redis, settings: Settings):
        super().__init__(service, redis, settings)
        self.broker = broker
        self.streams: list[str] = []

    async def ensure_groups(self) -> None:
        """Create this service's groups at the start of each stream before reading.

        FastStream would create them at `$`, silently skipping every event published
        before the service first started (a gateway up before its router loses tasks).
        """
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.service, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def on(
        self,
        payload_type: type[P],
        handler: Handler[P],
        *,
        description: str = "",
        after_commit: Callable[[Envelope[Any]], None] | None = None,
        concurrency: int | None = None,
        batched: bool = True,
        dead_letter_ends_task: bool = True,
    ) -> None:
        """Subscribe `handler` to the stream of `payload_type` (reader and reclaimer).

        A message of it that is dead-lettered ends its task as failed (an accepted task is
        never lost), unless `dead_letter_ends_task` is False: for messages whose loss the
        task survives (an agent's answer, retried at its deadline; a notification).

        `after_commit` sees each event once its handler's transaction committed (metrics).
        `concurrency` overrides settings.handler_concurrency (1 for handlers whose optimistic
        locks would only conflict and retry). `batched` (the default) commits each read's
        messages in one transaction; handlers that wait on an LLM pass False, so a message
        that arrives while a batch waits starts at once instead of after the whole batch."""
        if after_commit is not None:
            self.after_commit[payload_type.event_type] = after_commit
        limit = concurrency or self.settings.handler_concurrency

        async def consume(message: RedisStreamMessage) -> None:
            with telemetry.handler_run(self.service, payload_type.event_type):
                await self._process(message, payload_type, handler, reclaimed=False)

        async def consume_batch(message: RedisBatchStreamMessage) -> None:
            raw = message.raw_message
            await self._process_batch(
                raw["channel"], raw["message_ids"], raw["data"], payload_type, handler, limit
            )

        async def reclaim(message: RedisStreamMessage) -> None:
            with telemetry.handler_run(self.service, payload_type.event_type):
                await self._process(message, payload_type, handler, reclaimed=True)

        title_of = payload_type.__doc__ or ""
        for stream in self.layout.streams(payload_type.event_type):  # one per partition
            self.streams.append(stream)
            if not dead_letter_ends_task:
                self.spared_streams.add(stream)
            title = f"{self.service}:{stream.removeprefix('rf:stream:')}"
            about = description or title_of.strip()
            self._subscribe_reader(
                stream,
                consume_batch if batched else consume,
                batch=batched,
                concurrency=limit,
                title=title,
                description=about,
            )
            self._subscribe_reclaimer(stream, reclaim)

    def _subscribe_reader(
        self,
        stream: str,
        consume: Callable[[Any], Awaitable[None]],
        *,
        batch: bool,
        concurrency: int,
        title: str,
        description: str,
    ) -> None:
        """New messages, up to `read_batch` per read: a batch is committed together;
        otherwise one at a time, up to `concurrency` in flight (FastStream workers)."""
        reader = StreamSub(
            stream,
            group=self.service,
            consumer=self.settings.consumer_name,
            polling_interval=self.settings.poll_interval_ms,
            max_records=self.settings.read_batch,
            batch=batch,
        )
        self.broker.subscriber(
            stream=reader,
            ack_policy=AckPolicy.MANUAL,
            parser=batch_parse if batch else tolerant_parse,
            decoder=skip_decode,
            max_workers=1 if batch else concurrency,
            title=title,
            description=description,
        )(consume)

    def _subscribe_reclaimer(
        self, stream: str, reclaim: Callable[[RedisStreamMessage], Awaitable[None]]
    ) -> None:
        """XAUTOCLAIM of messages a dead or stalled consumer left pending, one at a time."""
        reclaimer = StreamSub(
            stream,
            group=self.service,
            consumer=self.settings.consumer_name,
            polling_interval=max(self.settings.claim_min_idle_ms // 2, 10),
            min_idle_time=self.settings.claim_min_idle_ms,
        )
        self.broker.subscriber(
            stream=reclaimer,
            ack_policy=AckPolicy.MANUAL,
            parser=tolerant_parse,
            decoder=skip_decode,
            include_in_schema=False,
        )(reclaim)

    def _queue_event(self, tx: Tx, event: Envelope[Any]) -> None:
        queue_xadd(tx, self.layout, event)
