"""Optional OpenTelemetry tracing across hops: W3C trace context in the envelope.

Off by default. With `RAPTORFLOW_OTEL=1` (`Settings.otel`, which the bus reads) and the
`otel` extra installed, each handler runs in a consumer span whose parent is extracted
from `Envelope.trace_context`, and the events it publishes carry that span's
`traceparent`, so one task's hops form one trace. Publishers outside handlers (the
gateway, the sweepers) add the context of the span that is current, if any. Configuring
an exporter is the deployer's business (the OpenTelemetry SDK's usual environment
variables); without an SDK the API is a no-op. Nothing here reads configuration.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar

from shared.contract.events import Envelope

E = TypeVar("E", bound=Envelope[Any])
TRACER_NAME = "raptorflow"


@functools.cache
def available() -> bool:
    """Whether the OpenTelemetry API is installed: a fact of the install, probed once (a
    failed import on every message would cost a search of sys.path each time)."""
    return importlib.util.find_spec("opentelemetry") is not None


def carrier_of_current_span() -> dict[str, str]:
    """The W3C headers (traceparent, tracestate) of the active span; empty if none."""
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def inject(event: E) -> E:
    """The event with the current span's trace context; unchanged when no span is current
    (no SDK, or tracing off) or the event already carries one."""
    if event.trace_context is not None or not available():
        return event
    carrier = carrier_of_current_span()
    return event.model_copy(update={"trace_context": carrier}) if carrier else event


def start_consume_span(
    event: Envelope[Any], service: str, stream: str
) -> Callable[[], None] | None:
    """Enter a consumer span continuing the event's trace; returns what ends it (None when
    the API is not installed). The bus calls it only when `Settings.otel` is on."""
    if not available():
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
