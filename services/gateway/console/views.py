"""What the console pages show, computed from what `reader` read: pure, no I/O.

Charts are inline SVG strings built here, so the pages need no chart library and no
network; every number that goes into SVG is clamped to a finite range first, and every
text is escaped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any, TypeVar

from shared.memory.store import RoutingRecord

T = TypeVar("T")
TERMINAL = frozenset({"completed", "failed", "rejected"})
STATUS_OF_EVENT = {
    "TaskRequested": "requested",
    "SequenceChosen": "running",
    "ApprovalNeeded": "awaiting_approval",
    "TaskCompleted": "completed",
    "TaskFailed": "failed",
}
PAGE_SIZE = 25
PALETTE = ("#2563eb", "#d97706", "#059669", "#9333ea", "#dc2626", "#0891b2", "#4b5563")


def _float(value: Any, default: float = 0.0) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _json(value: str | None, default: Any) -> Any:
    try:
        return json.loads(value) if value else default
    except ValueError:
        return default


def when(seconds: float | None) -> str:
    if not seconds:
        return "—"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def task_row(task_id: str, view: dict[str, str]) -> dict[str, Any]:
    """One line of the task list."""
    usage = _json(view.get("usage"), {})
    created = _float(view.get("created_at"))
    updated = _float(view.get("updated_at"), created)
    duration = _float(view.get("execution_time_s")) or (updated - created if created else 0.0)
    confidence = view.get("routing_confidence")
    return {
        "task_id": task_id,
        "status": view.get("status", "queued"),
        "goal": view.get("goal", ""),
        "source": view.get("routing_source", ""),
        "confidence": _float(confidence) if confidence else None,
        "agents": [str(a) for a in _json(view.get("agent_sequence"), [])],
        "duration_s": max(duration, 0.0),
        "llm_calls": int(_float(usage.get("api_calls"))) if isinstance(usage, dict) else 0,
        "cost_usd": _float(usage.get("cost_usd")) if isinstance(usage, dict) else 0.0,
        "created": when(created),
    }


def matches(row: dict[str, Any], status: str, source: str, agent: str, query: str) -> bool:
    """The list's filters: exact status, source and agent; a case-blind search on the goal."""
    return (
        (not status or row["status"] == status)
        and (not source or row["source"] == source)
        and (not agent or agent in row["agents"])
        and (not query or query.lower() in row["goal"].lower())
    )


def paged(rows: list[T], page: int, size: int = PAGE_SIZE) -> tuple[list[T], int]:
    """One page of rows and the number of pages (at least 1)."""
    pages = max(1, math.ceil(len(rows) / size))
    page = min(max(page, 1), pages)
    return rows[(page - 1) * size : page * size], pages


def summary_of(event: dict[str, Any]) -> str:
    """One line about an event, for the timeline."""
    p = event.get("payload") or {}
    kind = event.get("type", "")
    workflow = p.get("workflow") or {}
    texts = {
        "TaskRequested": lambda: f"goal: {p.get('goal', '')[:120]}",
        "SequenceChosen": lambda: f"{(workflow.get('routing') or {}).get('source', '?')}: "
        + " → ".join(workflow.get("agent_sequence", [])),
        "StageAssigned": lambda: f"stage {workflow.get('stage_index', 0) + 1}: {p.get('agent')}"
        f" ({(p.get('selection') or {}).get('reason', '')})",
        "StageCleared": lambda: f"stage {workflow.get('stage_index', 0) + 1} cleared for {p.get('agent')}",
        "CritiqueDone": lambda: f"{p.get('agent')} attempt {p.get('iteration')}: score "
        f"{_float(p.get('score')):.2f} (threshold {_float(p.get('threshold')):.2f})",
        "StageCompleted": lambda: f"{p.get('agent')} done, quality {_float(p.get('quality')):.2f}",
        "StageAdvanced": lambda: f"to stage {workflow.get('stage_index', 0) + 1}",
        "ApprovalNeeded": lambda: f"approval {p.get('checkpoint')} for {p.get('agent')}",
        "ApprovalResolved": lambda: f"{p.get('decision')} by {p.get('decided_by')}",
        "TaskCompleted": lambda: f"success {p.get('success')}, quality {_float(p.get('quality')):.2f}",
        "TaskFailed": lambda: f"{p.get('reason')}: {str(p.get('error', ''))[:160]}",
    }
    text = texts.get(kind)
    return text() if text else ""


def timeline(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every event with the time since the previous one and since the first."""
    rows = []
    first = events[0]["_ms"] if events else 0
    previous = first
    for event in events:
        rows.append(
            {
                "type": event.get("type", "?"),
                "at": datetime.fromtimestamp(event["_ms"] / 1000, UTC).strftime("%H:%M:%S.%f")[:-3],
                "delta_ms": event["_ms"] - previous,
                "since_ms": event["_ms"] - first,
                "summary": summary_of(event),
                "event_id": event.get("event_id", ""),
            }
        )
        previous = event["_ms"]
    return rows


def stages(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per stage: the agent and why, each attempt's critique, the output."""
    by_index: dict[int, dict[str, Any]] = {}

    def stage(index: Any) -> dict[str, Any]:
        i = int(_float(index))
        return by_index.setdefault(
            i, {"index": i, "agent": "", "selection": {}, "critiques": [], "output": None,
                "quality": None, "threshold_met": None, "approvals": []}
        )

    for event in events:
        p = event.get("payload") or {}
        kind = event.get("type")
        if kind == "StageAssigned":
            s = stage((p.get("workflow") or {}).get("stage_index", 0))
            s["agent"], s["selection"] = p.get("agent", ""), p.get("selection") or {}
            s["critiques"] = []  # a revision reruns the stage: show its latest attempts
        elif kind == "CritiqueDone":
            stage(p.get("stage_index", 0))["critiques"].append(p)
        elif kind == "StageCompleted":
            s = stage((p.get("workflow") or {}).get("stage_index", 0))
            s["output"], s["quality"] = p.get("output"), _float(p.get("quality"))
            s["threshold_met"] = p.get("threshold_met")
        elif kind == "ApprovalNeeded":
            stage((p.get("workflow") or {}).get("stage_index", 0))["approvals"].append(p)
    for s in by_index.values():
        s["chart"] = critique_svg(s["critiques"])
    return [by_index[i] for i in sorted(by_index)]


def _clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return min(max(_float(value), low), high)


def critique_svg(critiques: Sequence[dict[str, Any]], width: int = 360, height: int = 150) -> str:
    """Each aspect's score across the attempts (lines), the overall score and the threshold."""
    if not critiques:
        return ""
    left, right, top, bottom = 34, 110, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(critiques)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - _clamp(v))

    series: dict[str, list[float]] = {"overall": [_float(c.get("score")) for c in critiques]}
    for c in critiques:
        for aspect in (c.get("aspect_scores") or {}):
            series.setdefault(str(aspect)[:24], [])
    for name in list(series)[1:]:
        series[name] = [_float((c.get("aspect_scores") or {}).get(name)) for c in critiques]
    parts = [f'<svg class="chart critique" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="critique scores by attempt">']
    for tick in (0.0, 0.5, 1.0):
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                     f'stroke="#e5e7eb"/><text x="{left - 4}" y="{y(tick) + 4:.1f}" '
                     f'text-anchor="end" font-size="10">{tick:.1f}</text>')
    threshold = _clamp(critiques[-1].get("threshold", 0))
    parts.append(f'<line class="threshold" x1="{left}" x2="{left + plot_w}" y1="{y(threshold):.1f}" '
                 f'y2="{y(threshold):.1f}" stroke="#b91c1c" stroke-dasharray="4 3"/>')
    for i in range(n):
        parts.append(f'<text x="{x(i):.1f}" y="{height - 8}" text-anchor="middle" '
                     f'font-size="10">#{i + 1}</text>')
    for k, (name, values) in enumerate(series.items()):
        color = "#111827" if name == "overall" else PALETTE[k % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        weight = 2.5 if name == "overall" else 1.5
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="{weight}" points="{points}"/>')
        parts.extend(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}"/>'
                     for i, v in enumerate(values))
        parts.append(f'<text x="{left + plot_w + 8}" y="{top + 12 * k + 8}" font-size="10" '
                     f'fill="{color}">{escape(name)}</text>')
    parts.append(f'<text x="{left + plot_w + 8}" y="{top + 12 * len(series) + 8}" font-size="10" '
                 f'fill="#b91c1c">threshold {threshold:.2f}</text></svg>')
    return "".join(parts)


def calibration_bins(records: Iterable[RoutingRecord], bins: int = 10) -> list[dict[str, float]]:
    """Stated confidence against outcome: per bin, the mean confidence and the success rate
    of the tasks whose candidate sequence was reused (memory) or checked (recorded outcomes)."""
    sums = [[0.0, 0.0, 0] for _ in range(bins)]
    for r in records:
        if r.outcome_success is None or r.source != "memory":
            continue
        c = _clamp(r.confidence)
        b = min(int(c * bins), bins - 1)
        sums[b][0] += c
        sums[b][1] += 1.0 if r.outcome_success else 0.0
        sums[b][2] += 1
    return [
        {"confidence": s[0] / s[2], "success": s[1] / s[2], "count": s[2]}
        for s in sums if s[2]
    ]


def reliability_svg(points: Sequence[dict[str, float]], size: int = 220) -> str:
    """The reliability diagram: the diagonal is perfect calibration; dot area is the count."""
    pad = 30
    span = size - 2 * pad

    def px(v: float) -> float:
        return pad + span * _clamp(v)

    def py(v: float) -> float:
        return size - pad - span * _clamp(v)

    most = max((p["count"] for p in points), default=1)
    parts = [f'<svg class="chart reliability" viewBox="0 0 {size} {size}" width="{size}" '
             f'height="{size}" role="img" aria-label="reliability diagram">',
             f'<rect x="{pad}" y="{pad}" width="{span}" height="{span}" fill="none" stroke="#9ca3af"/>',
             f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#9ca3af" '
             'stroke-dasharray="4 3"/>',
             f'<text x="{size / 2}" y="{size - 6}" text-anchor="middle" font-size="10">stated confidence</text>',
             f'<text x="10" y="{size / 2}" font-size="10" transform="rotate(-90 10 {size / 2})" '
             'text-anchor="middle">success rate</text>']
    if len(points) > 1:
        line = " ".join(f"{px(p['confidence']):.1f},{py(p['success']):.1f}" for p in points)
        parts.append(f'<polyline fill="none" stroke="#2563eb" points="{line}"/>')
    for p in points:
        r = 3 + 5 * math.sqrt(p["count"] / most)
        parts.append(f'<circle cx="{px(p["confidence"]):.1f}" cy="{py(p["success"]):.1f}" r="{r:.1f}" '
                     f'fill="#2563eb" fill-opacity=".6"><title>{int(p["count"])} tasks</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def bar_svg(value: float, width: int = 80, height: int = 10) -> str:
    """A tiny horizontal bar for a number in [0, 1] (posterior means, success rates)."""
    filled = width * _clamp(value)
    return (f'<svg class="bar" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            f'<rect width="{width}" height="{height}" fill="#e5e7eb"/>'
            f'<rect width="{filled:.1f}" height="{height}" fill="#2563eb"/></svg>')


def usage_of(view: dict[str, str]) -> dict[str, Any]:
    usage = _json(view.get("usage"), {})
    return usage if isinstance(usage, dict) else {}


def routing_view(record: RoutingRecord | None, goals: dict[str, str], threshold: float) -> dict[str, Any] | None:
    """The routing decision: source, confidence against the reuse threshold, neighbours."""
    if record is None:
        return None
    return {
        "source": record.source,
        "confidence": _float(record.confidence),
        "threshold": threshold,
        "above": _float(record.confidence) >= threshold,
        "sequence": record.agent_sequence,
        "neighbours": [
            {"goal": goals.get(n.goal_hash, n.goal_hash), "similarity": n.similarity,
             "quality": n.quality, "success": n.success, "sequence": n.agent_sequence}
            for n in record.neighbours
        ],
        "outcome": record.outcome_success,
    }
