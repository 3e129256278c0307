"""Bus telemetry on a real Redis: handler outcomes, dead letters, lag, log fields, traces."""

from __future__ import annotations

import logging

import httpx
import pytest
from faststream import FastStream
from prometheus_client import REGISTRY

from raptorflow.redis_server import free_port
from shared.contract.events import FeedbackGiven, TaskRequested, new_envelope
from shared.messaging.bus import ServiceBus, make_broker, publish
from shared.messaging.codec import DATA_FIELD
from shared.observability import telemetry, tracing
from shared.observability.log_context import ContextFilter
from tests.helpers import PLAIN, eventually, settings_for


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def start(redis, redis_url, name, handlers, **overrides):
    settings = settings_for(redis_url, consumer_name=f"{name}-1", **overrides)
    broker = make_broker(settings, service=name)
    bus = ServiceBus(name, broker, redis, settings)
    for payload_type, handler in handlers:
        bus.on(payload_type, handler)
    app = FastStream(broker, logger=None)
    await app.start()
    return app, bus, settings


async def _reached(name: str, labels: dict[str, str], minimum: float) -> float | None:
    value = sample(name, **labels)
    return value if value >= minimum else None


async def test_handler_outcomes_dead_letters_lag_and_log_fields(
    redis, redis_url, workspace, caplog
):
    service = f"svc-{workspace}"
    logger = logging.getLogger("raptorflow.test-handler")

    async def handler(event, tx):
        logger.warning("inside the handler")
        return []

    caplog.handler.addFilter(ContextFilter())
    caplog.set_level(logging.WARNING, logger="raptorflow")
    app, bus, _settings = await start(redis, redis_url, service, [(FeedbackGiven, handler)])
    try:
        event = new_envelope(FeedbackGiven(task_id="t", rating=4), workspace_id=workspace)
        await publish(redis, PLAIN, [event, event])
        await redis.xadd(PLAIN.stream(FeedbackGiven.event_type), {DATA_FIELD: b"{not json"})
        ok = {"service": service, "event_type": "FeedbackGiven", "outcome": "ok"}
        await eventually(lambda: _reached("raptorflow_handler_messages_total", ok, 1))
        dead = {"service": service, "reason": "invalid"}
        await eventually(lambda: _reached("raptorflow_dead_letters_total", dead, 1))
        dup = {**ok, "outcome": "duplicate"}
        await eventually(lambda: _reached("raptorflow_handler_messages_total", dup, 1))
        assert sample("raptorflow_handler_duration_seconds_count", **ok) >= 1

        inside = [r for r in caplog.records if r.getMessage() == "inside the handler"]
        assert inside, "the handler's line was not captured"
        record = inside[0]
        assert record.correlation_id == event.correlation_id  # type: ignore[attr-defined]
        assert record.workspace_id == workspace  # type: ignore[attr-defined]
        assert record.service == service  # type: ignore[attr-defined]
        assert record.event_type == "FeedbackGiven"  # type: ignore[attr-defined]

        await telemetry.collect_stream_metrics(redis, bus.streams, service)
        stream = PLAIN.stream(FeedbackGiven.event_type)
        assert sample("raptorflow_stream_length", stream=stream) >= 3
        assert sample("raptorflow_consumer_group_pending", stream=stream, group=service) == 0
        assert sample("raptorflow_consumer_group_lag", stream=stream, group=service) == 0
        assert sample("faststream_received_messages_total", app_name=service, broker="redis",
                      handler=stream) >= 3  # fmt: skip
    finally:
        await app.stop()


async def test_metrics_listener_serves_the_registry_and_port_zero_disables_it():
    assert telemetry.serve_metrics(0) is None
    port = free_port()
    server = telemetry.serve_metrics(port, addr="127.0.0.1")
    assert server is not None
    try:
        async with httpx.AsyncClient() as client:
            body = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        assert "raptorflow_routing_decisions_total" in body
    finally:
        server.close()


async def test_trace_context_crosses_two_hops_when_enabled(
    redis, redis_url, workspace, monkeypatch
):
    sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the `otel` extra is absent")
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    service = f"svc-{workspace}"
    seen = []

    async def first(event, tx):
        return [event.follow(FeedbackGiven(task_id=event.correlation_id, rating=5))]

    async def second(event, tx):
        seen.append(event)
        return []

    app, _bus, _settings = await start(
        redis, redis_url, service, [(TaskRequested, first), (FeedbackGiven, second)], otel=True
    )
    try:
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("upstream") as root:
            event = new_envelope(TaskRequested(goal="g"), workspace_id=workspace)
            await publish(redis, PLAIN, [event])
        names = {f"{service} TaskRequested", f"{service} FeedbackGiven"}
        finished = await eventually(lambda: _spans_named(exporter, names))
        assert seen[0].trace_context and "traceparent" in seen[0].trace_context
        spans = {s.name: s for s in finished}
        hop1, hop2 = spans[f"{service} TaskRequested"], spans[f"{service} FeedbackGiven"]
        trace_id = root.get_span_context().trace_id
        assert hop1.context.trace_id == hop2.context.trace_id == trace_id
        assert hop1.parent.span_id == root.get_span_context().span_id
        assert hop2.parent.span_id == hop1.context.span_id
    finally:
        await app.stop()


async def _spans_named(exporter, names):
    spans = exporter.get_finished_spans()
    return spans if names <= {s.name for s in spans} else None


def test_tracing_is_off_by_default_and_leaves_envelopes_unchanged(monkeypatch, workspace):
    monkeypatch.delenv("RAPTORFLOW_OTEL", raising=False)
    assert settings_for("redis://unused").otel is False  # the bus starts no spans
    event = new_envelope(FeedbackGiven(task_id="t", rating=3), workspace_id=workspace)
    assert tracing.inject(event) is event
    assert "trace_context" not in event.model_dump_json()
