"""Redis Streams wiring shared by every service, on FastStream.

Each event type has one stream; each service is one consumer group; each
replica is one consumer. A message is acknowledged only in the same Redis
transaction that publishes its follow-up events and marks it processed, so a
crash at any point either leaves it pending (to be reclaimed) or fully done.
A batched subscription (the default) commits all messages of one read in one such
transaction; a handler that fails leaves none of its writes in it.
Malformed messages and messages that keep failing go to the dead-letter stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Annotated, Any, TypeVar, cast

from faststream._internal.context import Context
from faststream.middlewares import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.message import RedisBatchStreamMessage as _BatchStreamMessage
from faststream.redis.message import RedisStreamMessage as _StreamMessage
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError, WatchError

from shared.contract import keys, topology
from shared.contract.events import Envelope, Payload, dead_letter_stream_for, utcnow
from shared.messaging import cluster_client
from shared.messaging.codec import (
    DATA_FIELD,
    EnvelopeFormat,
    as_text,
    batch_parse,
    decode_on_stream,
    entry_body,
    skip_decode,
    tolerant_parse,
)
from shared.messaging.delivery import Delivery, split_duplicates
from shared.observability import telemetry, tracing
from shared.settings import Settings

P = TypeVar("P", bound=Payload)
Handler = Callable[[Envelope[P], Pipeline], Awaitable[Sequence[Envelope[Any]]]]

MAX_RETRY_BACKOFF_S = 30.0
DEAD_LETTER_MAXLEN = 100_000
HEARTBEAT_DELAY_S = 0.2  # handlers faster than this never start a heartbeat task

log = logging.getLogger("raptorflow.bus")


class _MessageContext(Context):
    """FastStream's `Context` field is sync, so fast_depends ran it in a worker thread for
    every message (a third of the per-message CPU in the py-spy profile, and a thread hop of
    latency). The same lookup as a coroutine stays on the event loop."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return super().use(**kwargs)


RedisStreamMessage = Annotated[_StreamMessage, _MessageContext("message")]
RedisBatchStreamMessage = Annotated[_BatchStreamMessage, _MessageContext("message")]


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


def add_publish(tx: Pipeline, event: Envelope[Any], maxlen: int) -> None:
    """Queue an XADD of an event, carrying the current trace context."""
    queue_xadd(tx, tracing.inject(event), maxlen)


def queue_xadd(tx: Pipeline, event: Envelope[Any], maxlen: int) -> None:
    """Queue an XADD of an event as it is (approximate MAXLEN keeps streams bounded)."""
    tx.xadd(
        event.stream,
        {DATA_FIELD: event.model_dump_json()},
        maxlen=maxlen,
        approximate=True,
    )


async def publish(redis: Redis, events: Sequence[Envelope[Any]], maxlen: int) -> None:
    """Publish events outside a handler (the gateway, the CLI, timeouts): one transaction
    per partition, since a cluster transaction must stay within one slot."""
    layout = topology.current()
    by_partition: dict[int, list[Envelope[Any]]] = {}
    for event in events:
        by_partition.setdefault(layout.partition_of(event.workspace_id), []).append(event)
    for group in by_partition.values():
        async with redis.pipeline(transaction=True) as tx:
            for event in group:
                add_publish(tx, event, maxlen)
            await tx.execute()


class ServiceBus:
    """One service's subscriptions: decode, de-duplicate, handle, publish, ack."""

    def __init__(self, service: str, broker: RedisBroker, redis: Redis, settings: Settings):
        self.service = service
        self.broker = broker
        self.redis = redis
        self.settings = settings
        self.handled = 0
        self.dead_lettered = 0
        self.streams: list[str] = []
        self.after_commit: dict[str, Callable[[Envelope[Any]], None]] = {}

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
    ) -> None:
        """Subscribe `handler` to the stream of `payload_type` (reader and reclaimer).

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
        for stream in payload_type.streams():  # one per partition
            self.streams.append(stream)
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

    async def _process(
        self,
        message: RedisStreamMessage,
        payload_type: type[P],
        handler: Handler[P],
        *,
        reclaimed: bool,
    ) -> None:
        stream = message.raw_message["channel"]
        message_id = message.raw_message["message_ids"][0]
        message_id_str = as_text(message_id)
        body: bytes = message.body if isinstance(message.body, bytes) else bytes(message.body)

        event, reason = decode_on_stream(body, payload_type, stream)
        if event is None:
            await self._dead_letter(stream, message_id_str, body, reason, "invalid", 1)
            return
        telemetry.decoded(event, self.service)

        marker = keys.processed(event.workspace_id, self.service, event.event_id)
        # A first delivery is checked once, under WATCH below (one round trip less per
        # message); a reclaimed one here too, so a duplicate is acked, never dead-lettered.
        if reclaimed and await self.redis.exists(marker):
            await self.redis.xack(stream, self.service, message_id)
            telemetry.mark("duplicate")
            return

        if reclaimed:
            deliveries = await message.get_delivery_count()
            failures, last_error = await self._failures(stream, message_id_str)
            if should_dead_letter(failures, deliveries, self.settings.max_deliveries):
                await self._dead_letter(
                    stream, message_id_str, body, last_error, "max_deliveries", deliveries
                )
                return
            await asyncio.sleep(retry_backoff_s(failures + 1))

        try:
            async with (
                self._keep_claimed(stream, [message_id]),
                self.redis.pipeline(transaction=True) as tx,
            ):
                # WATCH the marker: if a replica that reclaimed this message commits first,
                # our EXEC fails and its effects stand alone. Re-check it once watched: a
                # commit between the first check and WATCH would not abort our EXEC. (Checked
                # on the client, not the watching pipeline: a cluster pipeline cannot run
                # commands between WATCH and MULTI, and any connection sees the commit.)
                await tx.watch(marker)
                if await self.redis.exists(marker):
                    raise WatchError("processed by a replica")
                tx.multi()
                outputs = await handler(event, tx)
                for output in outputs:
                    add_publish(tx, output, self.settings.stream_maxlen)
                tx.set(marker, b"1", ex=self.settings.processed_ttl_s)
                tx.xack(stream, self.service, message_id)
                if reclaimed:  # only a redelivery can have a failure on record
                    tx.delete(keys.handler_error(self.service, stream, message_id_str))
                await tx.execute()
        except WatchError:
            # redis-py also raises WatchError when the connection drops mid-transaction
            # (Redis restarting): only the marker tells whether our effects committed.
            if await self.redis.exists(marker):
                await self.redis.xack(stream, self.service, message_id)
                telemetry.mark("duplicate")
            else:
                log.warning(
                    "transaction lost with the connection; message stays pending for retry",
                    extra={"service": self.service, "event_type": payload_type.event_type},
                )
            return
        except Exception as exc:
            self._log_failure(event, exc)
            with contextlib.suppress(RedisError):  # Redis down: the retry still happens
                await self._record_failure(stream, message_id_str, exc)
            return
        self.handled += 1
        telemetry.mark("ok")
        self._committed(event, outputs)

    async def _process_batch(
        self,
        stream: str,
        message_ids: Sequence[bytes],
        entries: Sequence[dict[bytes, bytes]],
        payload_type: type[P],
        handler: Handler[P],
        concurrency: int,
    ) -> None:
        """One read's messages: decode each, handle them (up to `concurrency` at once), and
        commit every success in ONE transaction: their writes, follow-up events, markers
        and a single XACK. Exactly-once as for one message: the transaction WATCHes every
        marker, so a replica that reclaimed one of them and committed first aborts ours."""
        deliveries: list[Delivery[P]] = []
        for message_id, fields in zip(message_ids, entries, strict=True):
            body = entry_body(fields)
            event, reason = decode_on_stream(body, payload_type, stream)
            if event is None:
                with telemetry.handler_run(self.service, payload_type.event_type):
                    await self._dead_letter(stream, as_text(message_id), body, reason, "invalid", 1)
                continue
            marker = keys.processed(event.workspace_id, self.service, event.event_id)
            deliveries.append(Delivery(message_id, event, marker))
        if not deliveries:
            return
        async with (
            self._keep_claimed(stream, [d.message_id for d in deliveries]),
            self.redis.pipeline(transaction=True) as tx,
        ):
            await tx.watch(*(d.marker for d in deliveries))
            seen = await self.redis.mget([d.marker for d in deliveries])
            fresh, duplicates = split_duplicates(deliveries, seen)
            committed = await self._handle_and_commit(
                tx, stream, fresh, duplicates, handler, concurrency
            )
        for _ in duplicates:
            with telemetry.handler_run(self.service, payload_type.event_type):
                telemetry.mark("duplicate")
        for delivery in committed:
            self.handled += 1
            self._committed(delivery.event, delivery.outputs)

    async def _handle_and_commit(
        self,
        tx: Pipeline,
        stream: str,
        fresh: Sequence[Delivery[P]],
        duplicates: Sequence[Delivery[P]],
        handler: Handler[P],
        concurrency: int,
    ) -> list[Delivery[P]]:
        """Run each fresh delivery's handler (up to `concurrency` at once, its writes recorded),
        then commit the successes. Each handler's metrics and trace span stay open until the
        commit decided its outcome. A failure is recorded for the retry decision."""
        limit = asyncio.Semaphore(concurrency)  # FIFO: concurrency 1 keeps stream order
        loop = asyncio.get_running_loop()
        handled = {id(d): loop.create_future() for d in fresh}
        settled = asyncio.Event()

        async def handle(delivery: Delivery[P]) -> None:
            event, done = delivery.event, handled[id(delivery)]
            with telemetry.handler_run(self.service, event.type):
                try:
                    telemetry.decoded(event, self.service)
                    async with limit:
                        outputs = await handler(event, delivery.writes.as_pipeline())
                    # in the handler's span: the commit later runs outside it
                    delivery.outputs = [tracing.inject(output) for output in outputs]
                    done.set_result(True)
                except Exception as exc:
                    self._log_failure(event, exc)
                    done.set_result(False)
                    with contextlib.suppress(RedisError):
                        await self._record_failure(stream, as_text(delivery.message_id), exc)
                    return
                finally:
                    if not done.done():  # cancelled
                        done.set_result(False)
                await settled.wait()
                telemetry.mark(delivery.outcome)

        tasks = [asyncio.create_task(handle(d)) for d in fresh]
        try:
            if handled:
                await asyncio.wait(handled.values())
            succeeded = [d for d in fresh if handled[id(d)].result()]
            return await self._commit_batch(tx, stream, succeeded, duplicates)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        finally:
            settled.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _commit_batch(
        self,
        tx: Pipeline,
        stream: str,
        handled: Sequence[Delivery[P]],
        duplicates: Sequence[Delivery[P]],
    ) -> list[Delivery[P]]:
        """MULTI..EXEC of the handled messages (in read order) plus the duplicates' ack."""
        if not handled and not duplicates:
            return []
        tx.multi()
        for delivery in handled:
            delivery.writes.replay(tx)
            for output in delivery.outputs:
                queue_xadd(tx, output, self.settings.stream_maxlen)
            tx.set(delivery.marker, b"1", ex=self.settings.processed_ttl_s)
        tx.xack(stream, self.service, *(d.message_id for d in [*handled, *duplicates]))
        try:
            await tx.execute()
        except WatchError:
            # A replica committed one of them first, or the connection dropped mid-EXEC: the
            # markers say which are done; the rest stay pending and are retried on reclaim.
            seen = await self.redis.mget([d.marker for d in handled])
            done = [d.message_id for d, mark in zip(handled, seen, strict=True) if mark]
            if done:
                await self.redis.xack(stream, self.service, *done)
            log.warning(
                "batch transaction aborted; %d of %d messages stay pending for retry",
                len(handled) - len(done),
                len(handled),
                extra={"service": self.service, "stream": stream},
            )
            return []
        for delivery in handled:
            delivery.outcome = "ok"
        return list(handled)

    def _log_failure(self, event: Envelope[Any], exc: Exception) -> None:
        log.warning(
            "handler failed; message stays pending for retry",
            extra={
                "service": self.service,
                "event_type": event.type,
                "correlation_id": event.correlation_id,
                "workspace_id": event.workspace_id,
                "error": repr(exc),
            },
        )

    async def _record_failure(self, stream: str, message_id: str, exc: Exception) -> None:
        """Count a handler failure and keep its error, for the dead-letter decision."""
        key = keys.handler_error(self.service, stream, message_id)
        async with self.redis.pipeline(transaction=True) as tx:
            tx.hincrby(key, "failures", 1)
            tx.hset(
                key, "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"[:4000]
            )
            tx.expire(key, 24 * 3600)
            await tx.execute()

    async def _failures(self, stream: str, message_id: str) -> tuple[int, str]:
        raw = await self.redis.hgetall(keys.handler_error(self.service, stream, message_id))
        failures = int(raw.get(b"failures", 0))
        error = raw.get(b"error", b"").decode() or "no handler error recorded (consumers died?)"
        return failures, error

    def _committed(self, event: Envelope[Any], outputs: Sequence[Envelope[Any]]) -> None:
        """Metrics of a committed message: counted once, however often it was delivered."""
        telemetry.observe_outputs(outputs)
        observe = self.after_commit.get(event.type)
        if observe is not None:
            observe(event)

    @contextlib.asynccontextmanager
    async def _keep_claimed(
        self, stream: str, message_ids: Sequence[bytes | str]
    ) -> AsyncIterator[None]:
        """Heartbeat: re-claim the messages to ourselves while a slow handler (an LLM call)
        runs, so its idle time never reaches the reclaim threshold of other replicas.

        Stopped by an event, not by cancellation alone: redis-py may swallow a
        cancellation that lands inside a command, which would leave the loop running.
        """
        interval = self.settings.claim_min_idle_ms / 3000
        done = asyncio.Event()

        async def beat() -> None:
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), timeout=interval)
                    return
                await self.redis.xclaim(
                    stream,
                    self.service,
                    self.settings.consumer_name,
                    0,
                    list(message_ids),
                    justid=True,
                )

        # Most handlers finish within milliseconds: start the beat only after a short delay, so
        # they pay for a timer instead of a task (and wait_for's inner task) per message. The
        # first XCLAIM comes at most `delay` later than before, far below the reclaim threshold.
        delay = min(HEARTBEAT_DELAY_S, interval / 4)
        tasks: list[asyncio.Task[None]] = []
        timer = asyncio.get_running_loop().call_later(
            delay, lambda: tasks.append(asyncio.create_task(beat()))
        )
        try:
            yield
        finally:
            timer.cancel()
            done.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout=5)

    async def _dead_letter(
        self,
        stream: str,
        message_id: str,
        body: bytes,
        error: str,
        reason: str,
        deliveries: int,
    ) -> None:
        self.dead_lettered += 1
        telemetry.mark("dead_letter")
        telemetry.observe_dead_letter(self.service, reason)
        log.warning(
            "message dead-lettered",
            extra={"service": self.service, "stream": stream, "reason": reason},
        )
        async with self.redis.pipeline(transaction=True) as tx:
            tx.xadd(
                dead_letter_stream_for(stream),
                {
                    "stream": stream,
                    "message_id": message_id,
                    "service": self.service,
                    "reason": reason,
                    "error": error[:4000],
                    "delivery_count": str(deliveries),
                    "failed_at": utcnow().isoformat(),
                    DATA_FIELD: body[:1_000_000],
                },
                maxlen=DEAD_LETTER_MAXLEN,
                approximate=True,
            )
            tx.xack(stream, self.service, message_id)
            tx.delete(keys.handler_error(self.service, stream, message_id))
            await tx.execute()


def should_dead_letter(failures: int, deliveries: int, max_deliveries: int) -> bool:
    """Dead-letter after `max_deliveries` handler failures. Deliveries alone also count
    (three times as many) so a message that kills its consumer outright still stops;
    a message merely reclaimed while it waited in a busy consumer's batch does not."""
    return failures >= max_deliveries or deliveries > 3 * max_deliveries


def retry_backoff_s(deliveries: int) -> float:
    """Exponential backoff before a redelivered message is tried again."""
    return float(min(0.1 * 2 ** max(deliveries - 2, 0), MAX_RETRY_BACKOFF_S))
