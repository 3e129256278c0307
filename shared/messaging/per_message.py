"""The per-message consume path (`batched=False`): one message, one transaction.

Used by handlers that wait on an LLM, and by the reclaimer for every redelivery. The
message is acknowledged in the transaction that publishes its follow-ups and sets its
processed marker; WATCH on the marker makes a racing replica's commit abort ours.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Annotated, Any

from faststream.redis.message import RedisStreamMessage as _StreamMessage
from redis.exceptions import RedisError, WatchError

from shared.contract.events import Envelope
from shared.messaging.codec import as_text, decode_on_stream
from shared.messaging.consumer import (
    Consumer,
    Handler,
    MessageContext,
    P,
    log,
    retry_backoff_s,
    should_dead_letter,
)
from shared.observability import telemetry, tracing

RedisStreamMessage = Annotated[_StreamMessage, MessageContext("message")]


class PerMessageConsumer(Consumer):
    """Decode, settle a redelivery (duplicate, dead letter or backoff), then commit."""

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
        body: bytes = message.body if isinstance(message.body, bytes) else bytes(message.body)

        event, reason = decode_on_stream(body, payload_type, stream, self.layout)
        if event is None:
            await self._dead_letter(stream, as_text(message_id), body, reason, "invalid", 1)
            return
        telemetry.decoded(event, self.service, stream, traced=self.traced)

        marker = self.keys.processed(event.workspace_id, self.service, event.event_id)
        if reclaimed and not await self._retry_redelivery(message, marker, body):
            return
        outputs = await self._commit_one(stream, message_id, event, marker, handler, reclaimed)
        if outputs is None:
            return
        self.handled += 1
        telemetry.mark("ok")
        self._committed(event, outputs)

    async def _retry_redelivery(
        self, message: RedisStreamMessage, marker: str, body: bytes
    ) -> bool:
        """Whether a reclaimed message should be handled again (after its backoff).

        A first delivery is checked once, under WATCH in `_commit_one` (one round trip less
        per message); a reclaimed one here too, so a duplicate is acked, never dead-lettered.
        """
        stream = message.raw_message["channel"]
        message_id = message.raw_message["message_ids"][0]
        message_id_str = as_text(message_id)
        if await self.redis.exists(marker):
            await self.redis.xack(stream, self.service, message_id)
            telemetry.mark("duplicate")
            return False
        deliveries = await message.get_delivery_count()
        failures, last_error = await self._failures(stream, message_id_str)
        if should_dead_letter(failures, deliveries, self.settings.max_deliveries):
            await self._dead_letter(
                stream, message_id_str, body, last_error, "max_deliveries", deliveries
            )
            return False
        await asyncio.sleep(retry_backoff_s(failures + 1))
        return True

    async def _commit_one(
        self,
        stream: str,
        message_id: bytes | str,
        event: Envelope[P],
        marker: str,
        handler: Handler[P],
        reclaimed: bool,
    ) -> Sequence[Envelope[Any]] | None:
        """Handle the event and commit its writes, follow-ups, marker and XACK in one
        transaction; the outputs, or None when nothing of ours committed."""
        message_id_str = as_text(message_id)
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
                    self._queue_event(tx, tracing.inject(output) if self.traced else output)
                tx.set(marker, b"1", ex=self.settings.processed_ttl_s)
                tx.xack(stream, self.service, message_id)
                if reclaimed:  # only a redelivery can have a failure on record
                    tx.delete(self.keys.handler_error(self.service, stream, message_id_str))
                await tx.execute()
        except WatchError:
            await self._settle_lost_commit(stream, message_id, marker, event.type)
            return None
        except Exception as exc:
            self._log_failure(event, exc)
            with contextlib.suppress(RedisError):  # Redis down: the retry still happens
                await self._record_failure(stream, message_id_str, exc)
            return None
        return outputs

    async def _settle_lost_commit(
        self, stream: str, message_id: bytes | str, marker: str, event_type: str
    ) -> None:
        """redis-py also raises WatchError when the connection drops mid-transaction
        (Redis restarting): only the marker tells whether our effects committed."""
        if await self.redis.exists(marker):
            await self.redis.xack(stream, self.service, message_id)
            telemetry.mark("duplicate")
        else:
            log.warning(
                "transaction lost with the connection; message stays pending for retry",
                extra={"service": self.service, "event_type": event_type},
            )
