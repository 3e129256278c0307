"""Every domain metric, defined once, and the small functions that observe them.

Labels are bounded on purpose: service, event type, agent, task type, routing
source, decision, reason, model, stream and group. Never task ids, goals or
workspaces (a workspace count has no upper bound; per-workspace figures come from
the gateway's memory views instead). Domain metrics are observed from committed
events (`observe_outputs`), so a retried handler never counts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from redis.asyncio import Redis

from shared.contract.events import (
    ApprovalNeeded,
    Envelope,
    SequenceChosen,
    StageAssigned,
    StageCompleted,
    TaskCompleted,
    TaskFailed,
    Usage,
)
from shared.contract.keys import Keys
from shared.domain.llm_port import LLMProvider, LLMReply, LLMRequest
from shared.observability import log_context, tracing
from shared.observability.probes import Probes

log = logging.getLogger("raptorflow.telemetry")

PREFIX = "raptorflow"
RATIO_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)
ITERATION_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TASK_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
DECISION_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600)
LAG_INTERVAL_S = 5.0

ROUTING_DECISIONS = Counter(
    f"{PREFIX}_routing_decisions_total", "Routing decisions by source.", ["source"]
)
ROUTING_CONFIDENCE = Histogram(
    f"{PREFIX}_routing_confidence",
    "Confidence that a remembered sequence fits, per decision.",
    ["source"],
    buckets=RATIO_BUCKETS,
)
TASKS_FINISHED = Counter(
    f"{PREFIX}_tasks_finished_total",
    "Finished tasks by how they were routed and whether they succeeded (reuse outcome).",
    ["routing_source", "success"],
)
TASKS_FAILED = Counter(f"{PREFIX}_tasks_failed_total", "Failed tasks by reason.", ["reason"])
TASK_DURATION = Histogram(
    f"{PREFIX}_task_duration_seconds",
    "End-to-end task latency, from routing to the terminal event.",
    ["routing_source", "success"],
    buckets=TASK_BUCKETS,
)
STAGE_ITERATIONS = Histogram(
    f"{PREFIX}_self_correction_iterations",
    "Self-correction iterations per stage.",
    ["agent", "task_type"],
    buckets=ITERATION_BUCKETS,
)
STAGE_QUALITY = Histogram(
    f"{PREFIX}_self_correction_quality",
    "Final quality score of each stage (best attempt).",
    ["agent", "task_type"],
    buckets=RATIO_BUCKETS,
)
STAGES_COMPLETED = Counter(
    f"{PREFIX}_stages_completed_total",
    "Completed stages by agent, task type and whether the quality threshold was met.",
    ["agent", "task_type", "threshold_met"],
)
AGENT_SELECTIONS = Counter(
    f"{PREFIX}_agent_selections_total",
    "Agents chosen by the selector, by task type; explored = chosen by exploration.",
    ["agent", "task_type", "explored"],
)
APPROVALS_REQUESTED = Counter(
    f"{PREFIX}_approvals_requested_total", "Approvals requested by condition.", ["condition"]
)
APPROVALS_PENDING = Gauge(f"{PREFIX}_approvals_pending", "Approvals waiting for a decision.")
APPROVALS_DECIDED = Counter(
    f"{PREFIX}_approvals_decided_total", "Approval decisions (timeouts included).", ["decision"]
)
APPROVALS_EXPIRED = Counter(
    f"{PREFIX}_approvals_expired_total", "Approvals decided by their timeout.", ["decision"]
)
APPROVAL_WAIT = Histogram(
    f"{PREFIX}_approval_decision_seconds",
    "Time from an approval's request to its decision.",
    ["decision"],
    buckets=DECISION_BUCKETS,
)
DEAD_LETTERS = Counter(
    f"{PREFIX}_dead_letters_total", "Messages dead-lettered.", ["service", "reason"]
)
LLM_CALLS = Counter(f"{PREFIX}_llm_calls_total", "LLM calls.", ["provider", "model"])
LLM_TOKENS = Counter(
    f"{PREFIX}_llm_tokens_total", "LLM tokens used.", ["provider", "model", "kind"]
)
LLM_COST = Counter(f"{PREFIX}_llm_cost_usd_total", "LLM cost in USD.", ["provider", "model"])
HANDLER_DURATION = Histogram(
    f"{PREFIX}_handler_duration_seconds",
    "Time one handler took on one message, by outcome.",
    ["service", "event_type", "outcome"],
    buckets=LATENCY_BUCKETS,
)
HANDLER_MESSAGES = Counter(
    f"{PREFIX}_handler_messages_total",
    "Messages handled; outcome: ok, duplicate, retry (left pending), dead_letter.",
    ["service", "event_type", "outcome"],
)
STREAM_LENGTH = Gauge(f"{PREFIX}_stream_length", "Entries in a stream (XLEN).", ["stream"])
STREAM_OVER_CAP = Gauge(
    f"{PREFIX}_stream_over_cap",
    "Entries a stream keeps beyond its cap because a consumer group has not acknowledged them.",
    ["stream"],
)
GROUP_PENDING = Gauge(
    f"{PREFIX}_consumer_group_pending",
    "Entries delivered to a group but not acknowledged (XPENDING).",
    ["stream", "group"],
)
GROUP_LAG = Gauge(
    f"{PREFIX}_consumer_group_lag",
    "Entries not yet delivered to a group (XINFO GROUPS lag; Redis 7+).",
    ["stream", "group"],
)


# --- observations of committed events ---------------------------------------


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _sequence_chosen(event: Envelope[Any]) -> None:
    routing = event.payload.workflow.routing
    ROUTING_DECISIONS.labels(routing.source).inc()
    ROUTING_CONFIDENCE.labels(routing.source).observe(routing.confidence)


def _stage_assigned(event: Envelope[Any]) -> None:
    p = event.payload
    AGENT_SELECTIONS.labels(p.agent, p.task_type, _bool(p.selection.explored)).inc()


def _stage_completed(event: Envelope[Any]) -> None:
    p = event.payload
    STAGE_ITERATIONS.labels(p.agent, p.task_type).observe(p.self_correction_metadata.iterations)
    STAGE_QUALITY.labels(p.agent, p.task_type).observe(p.quality)
    STAGES_COMPLETED.labels(p.agent, p.task_type, _bool(p.threshold_met)).inc()


def _approval_needed(event: Envelope[Any]) -> None:
    APPROVALS_REQUESTED.labels(str(event.payload.condition.value)).inc()


OUTPUT_OBSERVERS: dict[str, Callable[[Envelope[Any]], None]] = {
    SequenceChosen.event_type: _sequence_chosen,
    StageAssigned.event_type: _stage_assigned,
    StageCompleted.event_type: _stage_completed,
    ApprovalNeeded.event_type: _approval_needed,
}


def observe_outputs(events: Iterable[Envelope[Any]]) -> None:
    """Domain metrics of the events a handler just committed (each is committed once)."""
    for event in events:
        observer = OUTPUT_OBSERVERS.get(event.type)
        if observer is not None:
            observer(event)


def observe_task_outcome(event: Envelope[Any]) -> None:
    """Reuse outcome and end-to-end latency, at TaskCompleted or TaskFailed."""
    payload = event.payload
    workflow = payload.workflow
    source = workflow.routing.source if workflow is not None else "none"
    if isinstance(payload, TaskCompleted):
        success = payload.success
    else:
        success = False
        if isinstance(payload, TaskFailed):
            TASKS_FAILED.labels(payload.reason).inc()
    TASKS_FINISHED.labels(source, _bool(success)).inc()
    if workflow is not None:
        elapsed = (event.occurred_at - workflow.started_at).total_seconds()
        TASK_DURATION.labels(source, _bool(success)).observe(max(elapsed, 0.0))


def observe_handler(service: str, event_type: str, outcome: str, seconds: float) -> None:
    HANDLER_MESSAGES.labels(service, event_type, outcome).inc()
    HANDLER_DURATION.labels(service, event_type, outcome).observe(seconds)


@dataclass
class HandlerRun:
    """One message through one handler: its outcome, and what to close when it ends."""

    outcome: str = "retry"
    on_end: list[Callable[[], None]] = field(default_factory=list)


_run: ContextVar[HandlerRun | None] = ContextVar("raptorflow_handler_run", default=None)


@contextlib.contextmanager
def handler_run(service: str, event_type: str) -> Iterator[HandlerRun]:
    """Times one message and binds the log fields; the outcome stays `retry` unless marked."""
    run = HandlerRun()
    token = _run.set(run)
    started = time.perf_counter()
    with log_context.scope(service=service, event_type=event_type):
        try:
            yield run
        finally:
            for end in reversed(run.on_end):
                with contextlib.suppress(Exception):
                    end()
            _run.reset(token)
            observe_handler(service, event_type, run.outcome, time.perf_counter() - started)


def mark(outcome: str) -> None:
    """Set the current message's outcome: ok, duplicate, dead_letter (else it stays retry)."""
    run = _run.get()
    if run is not None:
        run.outcome = outcome


def decoded(event: Envelope[Any], service: str, stream: str, *, traced: bool) -> None:
    """The message is a valid event: tie log lines to its task and, when `traced`,
    continue its trace."""
    log_context.update(correlation_id=event.correlation_id, workspace_id=event.workspace_id)
    end_span = tracing.start_consume_span(event, service, stream) if traced else None
    run = _run.get()
    if end_span is not None:
        if run is None:
            end_span()
        else:
            run.on_end.append(end_span)


def observe_dead_letter(service: str, reason: str) -> None:
    DEAD_LETTERS.labels(service, reason).inc()


def observe_approval_decided(decision: str, expired: bool, waited_s: float) -> None:
    APPROVALS_DECIDED.labels(decision).inc()
    if expired:
        APPROVALS_EXPIRED.labels(decision).inc()
    APPROVAL_WAIT.labels(decision).observe(max(waited_s, 0.0))


def observe_llm(provider: str, model: str, usage: Usage) -> None:
    """Tokens and cost of one LLM reply (spent whether or not the handler commits)."""
    LLM_CALLS.labels(provider, model).inc(max(usage.api_calls, 1))
    LLM_TOKENS.labels(provider, model, "prompt").inc(usage.prompt_tokens)
    LLM_TOKENS.labels(provider, model, "completion").inc(usage.completion_tokens)
    LLM_COST.labels(provider, model).inc(usage.cost_usd)


class MeteredProvider:
    """Wraps an LLM provider so every reply's usage is counted, whoever made the call."""

    def __init__(self, inner: LLMProvider):
        self.inner: LLMProvider = inner.inner if isinstance(inner, MeteredProvider) else inner
        self.name = self.inner.name
        self.model = self.inner.model

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def complete(self, request: LLMRequest) -> LLMReply:
        reply = await self.inner.complete(request)
        observe_llm(reply.provider, reply.model, reply.usage)
        return reply


# --- gauges read from Redis ---------------------------------------------------


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def collect_stream_metrics(redis: Redis, streams: Sequence[str], group: str) -> None:
    """Length of each stream and this group's pending count and lag on it."""
    for stream in streams:
        STREAM_LENGTH.labels(stream).set(await redis.xlen(stream))
        with contextlib.suppress(Exception):  # no group yet: nothing pending
            for info in await redis.xinfo_groups(stream):
                fields = {_text(k): v for k, v in info.items()}
                if _text(fields.get("name")) != group:
                    continue
                GROUP_PENDING.labels(stream, group).set(int(fields.get("pending") or 0))
                lag = fields.get("lag")
                if lag is not None:
                    GROUP_LAG.labels(stream, group).set(int(lag))


async def collect_approvals_pending(redis: Redis, keys: Keys) -> None:
    APPROVALS_PENDING.set(sum([await redis.zcard(key) for key in keys.all_approval_deadlines()]))


async def watch_streams(
    redis: Redis, keys: Keys, streams: Sequence[str], group: str, interval_s: float = LAG_INTERVAL_S
) -> None:
    """Refresh the lag gauges until cancelled (a service's background task)."""
    task = asyncio.current_task()
    while True:
        try:
            await collect_stream_metrics(redis, streams, group)
            await collect_approvals_pending(redis, keys)
        except Exception as exc:  # a Redis blip must not end the loop
            log.debug("stream metrics not collected: %r", exc)
        if task is not None and task.cancelling():
            # redis-py can swallow a cancellation that lands mid-command; honour it anyway
            raise asyncio.CancelledError
        await asyncio.sleep(interval_s)


# --- the /metrics listener ------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds
        pass


def metrics_app(probes: Probes | None) -> Callable[..., Iterable[bytes]]:
    """/livez and /readyz from `probes` (when given); every other path: the registry."""
    metrics = make_wsgi_app(REGISTRY)
    routes = {"/livez": probes.live, "/readyz": probes.ready} if probes is not None else {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        probe = routes.get(environ.get("PATH_INFO", ""))
        if probe is None:
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        answer = probe()
        status = "200 OK" if answer.ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [f"{answer.detail}\n".encode()]

    return app


class MetricsServer:
    """/metrics (and the probes) on a daemon thread of its own; `close` frees the port."""

    def __init__(self, port: int, addr: str, probes: Probes | None = None):
        class Server(ThreadingWSGIServer):
            address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

        self.httpd = make_server(addr, port, metrics_app(probes), Server, _QuietHandler)
        self.port = self.httpd.server_port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_metrics(
    port: int, addr: str = "0.0.0.0", probes: Probes | None = None
) -> MetricsServer | None:
    """Serve this process's whole registry on `port` (every service in it), and the
    Kubernetes probes when given; 0 disables."""
    if port <= 0:
        return None
    server = MetricsServer(port, addr, probes)
    log.info("metrics served on :%d/metrics", port)
    return server
