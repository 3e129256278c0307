"""The batched consume path (the default): one read's messages, one transaction.

Each handler queues its writes on its own recorder (`QueuedWrites`), so a handler that
fails leaves nothing in the shared MULTI..EXEC; the successes' writes are replayed into
it in read order, with their follow-up events, markers and a single XACK.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Annotated

from faststream.redis.message import RedisBatchStreamMessage as _BatchStreamMessage
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, WatchError

from shared.messaging.codec import as_text, decode_on_stream, entry_body
from shared.messaging.consumer import Consumer, Handler, MessageContext, P, log
from shared.messaging.delivery import Delivery, split_duplicates
from shared.observability import telemetry, tracing

RedisBatchStreamMessage = Annotated[_BatchStreamMessage, MessageContext("message")]


class BatchedConsumer(Consumer):
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
            event, reason = decode_on_stream(body, payload_type, stream, self.layout)
            if event is None:
                with telemetry.handler_run(self.service, payload_type.event_type):
                    await self._dead_letter(stream, as_text(message_id), body, reason, "invalid", 1)
                continue
            marker = self.keys.processed(event.workspace_id, self.service, event.event_id)
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
                    telemetry.decoded(event, self.service, stream, traced=self.traced)
                    async with limit:
                        outputs = await handler(event, delivery.writes)
                    # in the handler's span: the commit later runs outside it
                    delivery.outputs = (
                        [tracing.inject(output) for output in outputs] if self.traced else outputs
                    )
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
                self._queue_event(tx, output)
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

