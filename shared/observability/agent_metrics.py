"""Prometheus metrics per agent and kind: invocations, latency, outcomes, live replicas."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PREFIX = "raptorflow"
AGENT_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

AGENT_INVOCATIONS = Counter(
    f"{PREFIX}_agent_invocations_total", "AgentInvoked events published.", ["agent", "kind"]
)
AGENT_OUTCOMES = Counter(
    f"{PREFIX}_agent_outcomes_total",
    "Settled invocations; outcome: ok, error, timeout, stale (a late or second answer).",
    ["agent", "kind", "outcome"],
)
AGENT_LATENCY = Histogram(
    f"{PREFIX}_agent_latency_seconds",
    "From AgentInvoked to its AgentResult.",
    ["agent", "kind"],
    buckets=AGENT_LATENCY_BUCKETS,
)
AGENT_REPLICAS = Gauge(
    f"{PREFIX}_agent_live_replicas", "Worker replicas with a recent heartbeat.", ["agent"]
)


def agent_invoked(agent: str, kind: str) -> None:
    AGENT_INVOCATIONS.labels(agent, kind).inc()


def agent_outcome(agent: str, kind: str, outcome: str) -> None:
    AGENT_OUTCOMES.labels(agent, kind, outcome).inc()


def agent_latency(agent: str, kind: str, seconds: float) -> None:
    AGENT_LATENCY.labels(agent, kind).observe(max(seconds, 0.0))


def live_replicas(agent: str, count: int) -> None:
    AGENT_REPLICAS.labels(agent).set(count)
