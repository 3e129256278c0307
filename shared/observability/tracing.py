"""Optional OpenTelemetry tracing across hops: W3C trace context in the envelope.

Off by default. With `RAPTORFLOW_OTEL=1` and the `otel` extra installed, publishing
injects the current span's `traceparent` into `Envelope.trace_context`, and each
handler runs in a consumer span whose parent is extracted from it, so one task's
hops form one trace. Configuring an exporter is the deployer's business (the
OpenTelemetry SDK's usual environment variables); without an SDK the API is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

from shared.contract.events import Envelope

E = TypeVar("E", bound=Envelope[Any])
TRACER_NAME = "raptorflow"


@lru_cache(maxsize=1)
def enabled() -> bool:
    """RAPTORFLOW_OTEL=1 and opentelemetry importable (read once per process)."""
    if os.environ.get("RAPTORFLOW_OTEL", "").lower() not in {"1", "true", "yes"}:
        return False
    try:
        import opentelemetry.propagate
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


def carrier_of_current_span() -> dict[str, str]:
    """The W3C headers (traceparent, tracestate) of the active span; empty if none."""
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def inject(event: E) -> E:
    """The event with the active trace context, when tracing is on (else unchanged)."""
    if not enabled() or event.trace_context is not None:
        return event
    carrier = carrier_of_current_span()
    return event.model_copy(update={"trace_context": carrier}) if carrier else event


def start_consume_span(
    event: Envelope[Any], service: str, stream: str
) -> Callable[[], None] | None:
    """Enter a consumer span continuing the event's trace; returns what ends it."""
    if not enabled():
        return None
    from opentelemetry import context, trace
    from opentelemetry.propagate import extract

    parent = extract(event.trace_context or {})
    span = trace.get_tracer(TRACER_NAME).start_span(
        f"{service} {event.type}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "redis",
            "messaging.destination.name": stream,
            "messaging.message.id": event.event_id,
            "messaging.consumer.group.name": service,
            "raptorflow.correlation_id": event.correlation_id,
            "raptorflow.workspace_id": event.workspace_id,
        },
    )
    token = context.attach(trace.set_span_in_context(span, parent))

    def end() -> None:
        context.detach(token)
        span.end()

    return end
