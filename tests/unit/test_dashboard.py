"""The Grafana dashboard asks only for metrics the services export, and is provisioned."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from shared.messaging.bus import make_broker
from shared.observability import agent_metrics, telemetry
from shared.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "raptorflow.json"
SUFFIXES = ("", "_total", "_bucket", "_sum", "_count")
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "and", "or", "unless", "offset", "inf", "nan"}  # fmt: skip
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions,
    keywords, label names (in `{}` or `by (...)`) or durations (in `[]`)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        word = match.group()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            exprs += [t["expr"] for t in inner.get("targets", [])]
    return exprs


def exported_names() -> set[str]:
    """Everything in the registry the services use: telemetry's metrics, and FastStream's
    per-stream metrics (registered when a broker with the middleware is built)."""
    make_broker(Settings())
    assert telemetry.ROUTING_DECISIONS  # imported for its registrations
    assert agent_metrics.AGENT_INVOCATIONS
    return set(REGISTRY._names_to_collectors)  # type: ignore[attr-defined]


def test_the_expression_parser_finds_metrics_not_functions_or_labels():
    expr = (
        'histogram_quantile(0.95, sum by (le, service) (rate(x_seconds_bucket{a="b"}[5m])))'
        " / sum(rate(y_total[1h])) and on(job) z"
    )
    assert metric_names(expr) == {"x_seconds_bucket", "y_total", "z"}


def test_every_dashboard_expression_refers_only_to_exported_metrics():
    exported = exported_names()
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    unknown = {}
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        missing = [n for n in names if not any(n.removesuffix(s) + s in exported for s in SUFFIXES)]
        if missing:
            unknown[expr] = missing
    assert not unknown, unknown


def test_dashboard_covers_every_area_the_issue_names():
    text = " ".join(dashboard_exprs())
    for family in (
        "raptorflow_tasks_finished_total",
        "raptorflow_task_duration_seconds_bucket",
        "raptorflow_routing_decisions_total",
        "raptorflow_routing_confidence_bucket",
        "raptorflow_self_correction_quality",
        "raptorflow_stages_completed_total",
        "raptorflow_agent_selections_total",
        "raptorflow_approvals_pending",
        "raptorflow_approval_decision_seconds_bucket",
        "raptorflow_dead_letters_total",
        "raptorflow_consumer_group_pending",
        "raptorflow_consumer_group_lag",
        "raptorflow_llm_cost_usd_total",
    ):
        assert family in text, family


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus():
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "prometheus"
    provider = yaml.safe_load((provisioning / "dashboards" / "raptorflow.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {"prometheus"}
