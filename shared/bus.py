"""Redis Streams wiring shared by every service, on FastStream.

Each event type has one stream; each service is one consumer group; each
replica is one consumer. A message is acknowledged only in the same Redis
transaction that publishes its follow-up events and marks it processed, so a
crash at any point either leaves it pending (to be reclaimed) or fully done.
Malformed messages and messages that keep failing go to the dead-letter stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from faststream.middlewares import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisStreamMessage
from faststream.redis.parser.message import MessageFormat
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from shared import keys
from shared.events import DEAD_LETTER_STREAM, Envelope, Payload, envelope_class, utcnow
from shared.settings import Settings

P = TypeVar("P", bound=Payload)
Handler = Callable[[Envelope[P], Pipeline], Awaitable[Sequence[Envelope[Any]]]]

DATA_FIELD = "__data__"
MAX_RETRY_BACKOFF_S = 30.0
DEAD_LETTER_MAXLEN = 100_000

log = logging.getLogger("raptorflow.bus")


class EnvelopeFormat(MessageFormat):
    """The stream entry's `__data__` field is the envelope's JSON, nothing else.

    So an upstream system can publish with a plain `XADD stream * __data__ <json>`.
    """

    @classmethod
    async def encode(cls, *, message: Any, **_: Any) -> bytes:
        if isinstance(message, Envelope):
            return message.model_dump_json().encode()
        if isinstance(message, bytes):
            return message
        if isinstance(message, str):
            return message.encode()
        raise TypeError(f"cannot publish {type(message).__name__} on the event bus")

    @classmethod
    def parse(cls, data: bytes) -> tuple[bytes, dict[str, Any]]:
        return data, {}


def make_broker(settings: Settings) -> RedisBroker:
    return RedisBroker(
        settings.redis_url_value(),
        message_format=EnvelopeFormat,
        logger=logging.getLogger("raptorflow.faststream"),
        log_level=logging.DEBUG,
    )


def make_redis(settings: Settings) -> Redis:
    """A client that retries on connection errors, so a Redis restart is survived."""
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return Redis.from_url(
        settings.redis_url_value(),
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=20),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        health_check_interval=10,
    )


def add_publish(tx: Pipeline, event: Envelope[Any], maxlen: int) -> None:
    """Queue an XADD of an event (approximate MAXLEN keeps streams bounded)."""
    tx.xadd(
        event.stream,
        {DATA_FIELD: event.model_dump_json()},
        maxlen=maxlen,
        approximate=True,
    )


async def publish(redis: Redis, events: Sequence[Envelope[Any]], maxlen: int) -> None:
    """Publish events outside a handler (the gateway, the CLI, timeouts)."""
    async with redis.pipeline(transaction=True) as tx:
        for event in events:
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

    def on(self, payload_type: type[P], handler: Handler[P], *, description: str = "") -> None:
        """Subscribe `handler` to the stream of `payload_type` (reader and reclaimer)."""
        stream = payload_type.stream()
        reader = StreamSub(
            stream,
            group=self.service,
            consumer=self.settings.consumer_name,
            polling_interval=self.settings.poll_interval_ms,
            max_records=self.settings.read_batch,
        )
        reclaimer = StreamSub(
            stream,
            group=self.service,
            consumer=self.settings.consumer_name,
            polling_interval=max(self.settings.claim_min_idle_ms // 2, 10),
            min_idle_time=self.settings.claim_min_idle_ms,
        )

        async def consume(message: RedisStreamMessage) -> None:
            await self._process(message, payload_type, handler, reclaimed=False)

        async def reclaim(message: RedisStreamMessage) -> None:
            await self._process(message, payload_type, handler, reclaimed=True)

        self.broker.subscriber(
            stream=reader,
            ack_policy=AckPolicy.MANUAL,
            title=f"{self.service}:{payload_type.event_type}",
            description=description or (payload_type.__doc__ or "").strip(),
        )(consume)
        self.broker.subscriber(
            stream=reclaimer,
            ack_policy=AckPolicy.MANUAL,
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
        message_id_str = message_id.decode() if isinstance(message_id, bytes) else str(message_id)
        body: bytes = message.body if isinstance(message.body, bytes) else bytes(message.body)

        event, reason = decode_envelope(body, payload_type)
        if event is None:
            await self._dead_letter(stream, message_id_str, body, reason, "invalid", 1)
            return

        marker = keys.processed(event.workspace_id, self.service, event.event_id)
        if await self.redis.exists(marker):
            await self.redis.xack(stream, self.service, message_id)
            return

        if reclaimed:
            deliveries = await message.get_delivery_count()
            if deliveries > self.settings.max_deliveries:
                error = await self.redis.get(keys.handler_error(self.service, message_id_str))
                last_error = error.decode() if error else "unknown error (consumer died?)"
                await self._dead_letter(
                    stream, message_id_str, body, last_error, "max_deliveries", deliveries
                )
                return
            await asyncio.sleep(retry_backoff_s(deliveries))

        try:
            async with self.redis.pipeline(transaction=True) as tx:
                outputs = await handler(event, tx)
                for output in outputs:
                    add_publish(tx, output, self.settings.stream_maxlen)
                tx.set(marker, b"1", ex=self.settings.processed_ttl_s)
                tx.xack(stream, self.service, message_id)
                tx.delete(keys.handler_error(self.service, message_id_str))
                await tx.execute()
        except Exception as exc:
            log.warning(
                "handler failed; message stays pending for retry",
                extra={
                    "service": self.service,
                    "event_type": payload_type.event_type,
                    "correlation_id": event.correlation_id,
                    "workspace_id": event.workspace_id,
                    "error": repr(exc),
                },
            )
            await self.redis.set(
                keys.handler_error(self.service, message_id_str),
                f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"[:4000],
                ex=24 * 3600,
            )
            return
        self.handled += 1

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
        log.warning(
            "message dead-lettered",
            extra={"service": self.service, "stream": stream, "reason": reason},
        )
        async with self.redis.pipeline(transaction=True) as tx:
            tx.xadd(
                DEAD_LETTER_STREAM,
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
            tx.delete(keys.handler_error(self.service, message_id))
            await tx.execute()


def decode_envelope(body: bytes, payload_type: type[P]) -> tuple[Envelope[P] | None, str]:
    """Validate a raw message once; on failure say exactly what was wrong."""
    try:
        event = envelope_class(payload_type).model_validate_json(body)
    except ValidationError as exc:
        declared = _declared_type(body)
        if declared is not None and declared != payload_type.event_type:
            return None, f"type {declared!r} on the stream of {payload_type.event_type}"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()[:10]
        )
        return None, f"invalid {payload_type.event_type} envelope: {problems}"
    except ValueError as exc:
        return None, f"not a JSON envelope: {exc}"
    if event.type != payload_type.event_type:
        return None, f"type {event.type!r} on the stream of {payload_type.event_type}"
    return event, ""


def _declared_type(body: bytes) -> str | None:
    """The `type` a malformed message claims, to explain a message on the wrong stream."""
    try:
        declared = json.loads(body).get("type")
    except (ValueError, AttributeError):
        return None
    return declared if isinstance(declared, str) else None


def retry_backoff_s(deliveries: int) -> float:
    """Exponential backoff before a redelivered message is tried again."""
    return float(min(0.1 * 2 ** max(deliveries - 2, 0), MAX_RETRY_BACKOFF_S))
