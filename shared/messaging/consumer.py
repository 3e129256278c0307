"""What both consume paths share: the service's identity and client, failure bookkeeping,
the heartbeat that keeps a slow message claimed, dead-lettering, and post-commit metrics.

The per-message path (`per_message.py`) and the batched path (`batched.py`) build on
`Consumer`; `bus.ServiceBus` adds the subscriptions that feed them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from faststream._internal.context import Context
from redis.asyncio import Redis

from shared.contract.events import Envelope, Payload
from shared.messaging import dead_letters
from shared.messaging.tx import Tx
from shared.observability import telemetry, tracing
from shared.settings import Settings

P = TypeVar("P", bound=Payload)
Handler = Callable[[Envelope[P], Tx], Awaitable[Sequence[Envelope[Any]]]]

MAX_RETRY_BACKOFF_S = 30.0
HEARTBEAT_DELAY_S = 0.2  # handlers faster than this never start a heartbeat task

log = logging.getLogger("raptorflow.bus")


class MessageContext(Context):
    """FastStream's `Context` field is sync, so fast_depends ran it in a worker thread for
    every message (a third of the per-message CPU in the py-spy profile, and a thread hop of
    latency). The same lookup as a coroutine stays on the event loop."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return super().use(**kwargs)


class Consumer:
    """One service's consumer group on Redis: the state both consume paths use."""

    def __init__(self, service: str, redis: Redis, settings: Settings):
        self.service = service
        self.redis = redis
        self.settings = settings
        self.keys = settings.keys()  # every name follows the settings' layout
        self.layout = self.keys.layout
        self.traced = settings.otel and tracing.available()
        if settings.otel and not self.traced:
            log.warning("RAPTORFLOW_OTEL is set but opentelemetry is not installed (the otel extra)")
        self.handled = 0
        self.dead_lettered = 0
        self.after_commit: dict[str, Callable[[Envelope[Any]], None]] = {}
        # Streams whose dead letters leave the task alone (ServiceBus.on's
        # dead_letter_ends_task=False); any other letter ends its task as failed.
        self.spared_streams: set[str] = set()

    def _queue_event(self, tx: Tx, event: Envelope[Any]) -> None:
        """Queue an XADD of a follow-up event as it is (ServiceBus: `bus.queue_xadd`)."""
        raise NotImplementedError

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
        key = self.keys.handler_error(self.service, stream, message_id)
        async with self.redis.pipeline(transaction=True) as tx:
            tx.hincrby(key, "failures", 1)
            tx.hset(
                key, "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"[:4000]
            )
            tx.expire(key, 24 * 3600)
            await tx.execute()

    async def _failures(self, stream: str, message_id: str) -> tuple[int, str]:
        raw = await self.redis.hgetall(self.keys.handler_error(self.service, stream, message_id))
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
        await dead_letters.write(
            self.redis,
            self.keys,
            stream=stream,
            group=self.service,
            message_id=message_id,
            body=body,
            error=error,
            reason=reason,
            deliveries=deliveries,
            ends_task=stream not in self.spared_streams,
        )


def should_dead_letter(failures: int, deliveries: int, max_deliveries: int) -> bool:
    """Dead-letter after `max_deliveries` handler failures. Deliveries alone also count
    (three times as many) so a message that kills its consumer outright still stops;
    a message merely reclaimed while it waited in a busy consumer's batch does not."""
    return failures >= max_deliveries or deliveries > 3 * max_deliveries


def retry_backoff_s(deliveries: int) -> float:
    """Exponential backoff before a redelivered message is tried again."""
    return float(min(0.1 * 2 ** max(deliveries - 2, 0), MAX_RETRY_BACKOFF_S))
