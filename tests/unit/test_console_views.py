"""The console's pure parts: rows, filters, paging, timeline, stages and the SVG charts
(hostile numbers and names included)."""

from __future__ import annotations

import json
import math

from services.gateway.console import views
from shared.memory.store import RoutingRecord


def test_row_parses_the_status_view_and_tolerates_garbage() -> None:
    row = views.task_row("t1", {
        "status": "completed", "goal": "Write", "routing_source": "memory",
        "routing_confidence": "0.9", "agent_sequence": json.dumps(["a", "b"]),
        "created_at": "100", "updated_at": "103", "execution_time_s": "2.5",
        "usage": json.dumps({"api_calls": 4, "cost_usd": 0.01}),
    })
    assert row["agents"] == ["a", "b"] and row["duration_s"] == 2.5
    assert (row["llm_calls"], row["cost_usd"], row["confidence"]) == (4, 0.01, 0.9)
    odd = views.task_row("t2", {"routing_confidence": "nan", "usage": "{not json",
                                "agent_sequence": "[", "created_at": "inf"})
    assert odd["status"] == "queued" and odd["agents"] == [] and odd["llm_calls"] == 0
    assert odd["confidence"] == 0.0 and math.isfinite(odd["duration_s"])


def test_filters_and_paging() -> None:
    rows = [views.task_row(f"t{i}", {"status": "completed" if i % 2 else "failed",
                                     "goal": f"Goal {i} about Cats" if i < 5 else f"Goal {i}",
                                     "routing_source": "memory" if i < 3 else "planner",
                                     "agent_sequence": json.dumps(["content"] if i < 10 else ["research"])})
            for i in range(60)]
    assert [r["task_id"] for r in rows if views.matches(r, "", "", "", "cats")] == [f"t{i}" for i in range(5)]
    assert all(r["status"] == "failed" for r in rows if views.matches(r, "failed", "", "", ""))
    assert sum(views.matches(r, "", "memory", "content", "") for r in rows) == 3
    page, pages = views.paged(rows, 3)
    assert pages == 3 and [r["task_id"] for r in page] == [f"t{i}" for i in range(50, 60)]
    assert views.paged(rows, 99)[0] == page and views.paged([], 1) == ([], 1)


def test_timeline_has_the_time_between_hops() -> None:
    events = [
        {"type": "TaskRequested", "_ms": 1000, "payload": {"goal": "g"}},
        {"type": "SequenceChosen", "_ms": 1250, "payload": {"workflow": {
            "agent_sequence": ["a"], "routing": {"source": "planner"}}}},
        {"type": "TaskCompleted", "_ms": 2000, "payload": {"success": True, "quality": 0.9}},
    ]
    rows = views.timeline(events)
    assert [r["delta_ms"] for r in rows] == [0, 250, 750]
    assert [r["since_ms"] for r in rows] == [0, 250, 1000]
    assert rows[1]["summary"] == "planner: a"


def test_stages_collect_selection_critiques_output_and_approvals() -> None:
    wf = {"stage_index": 0}
    events = [
        {"type": "StageAssigned", "payload": {"workflow": wf, "agent": "content",
                                              "selection": {"reason": "thompson_exploit"}}},
        {"type": "CritiqueDone", "payload": {"stage_index": 0, "iteration": 1, "score": 0.5,
                                             "threshold": 0.8, "aspect_scores": {"clarity": 0.4}}},
        {"type": "CritiqueDone", "payload": {"stage_index": 0, "iteration": 2, "score": 0.85,
                                             "threshold": 0.8, "aspect_scores": {"clarity": 0.9}}},
        {"type": "StageCompleted", "payload": {"workflow": wf, "output": "text", "quality": 0.85,
                                               "threshold_met": True}},
        {"type": "ApprovalNeeded", "payload": {"workflow": wf, "checkpoint": "review"}},
    ]
    (stage,) = views.stages(events)
    assert stage["agent"] == "content" and len(stage["critiques"]) == 2
    assert stage["output"] == "text" and stage["approvals"][0]["checkpoint"] == "review"
    assert stage["chart"].startswith("<svg") and "clarity" in stage["chart"]


def test_charts_escape_names_and_clamp_hostile_numbers() -> None:
    critiques = [{"score": float("nan"), "threshold": 1e309,
                  "aspect_scores": {"<script>alert(1)</script>": float("inf"), "x": -5}}]
    svg = views.critique_svg(critiques)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "nan" not in svg.lower() and "inf" not in svg.lower()
    assert views.critique_svg([]) == ""
    bar = views.bar_svg(float("nan"))
    assert "nan" not in bar.lower()


def test_calibration_bins_only_reuses_with_an_outcome() -> None:
    def record(source: str, confidence: float, success: bool | None) -> RoutingRecord:
        return RoutingRecord(task_id="t", source=source, confidence=confidence,
                             agent_sequence=["a"], outcome_success=success)

    bins = views.calibration_bins([
        record("memory", 0.91, True), record("memory", 0.95, False), record("memory", 0.15, True),
        record("planner", 0.05, True), record("memory", 0.5, None),
    ])
    assert [(round(b["confidence"], 2), b["success"], b["count"]) for b in bins] == [
        (0.15, 1.0, 1), (0.93, 0.5, 2)]
    svg = views.reliability_svg(bins)
    assert svg.count("<circle") == 2 and "reliability" in svg
    assert views.reliability_svg([]).startswith("<svg")


def test_event_frames_are_in_time_order_and_only_the_workspace_s() -> None:
    from services.gateway.console import live

    def entry(kind: str, ws: str, task: str) -> dict[bytes, bytes]:
        body = {"type": kind, "workspace_id": ws, "correlation_id": task,
                "payload": {"decision": "approved"}}
        return {b"__data__": json.dumps(body).encode()}

    replies = [
        (b"rf:stream:ApprovalNeeded", [(b"20-0", entry("ApprovalNeeded", "ws1", "t1")),
                                       (b"21-0", entry("ApprovalNeeded", "ws2", "t9"))]),
        (b"rf:stream:ApprovalResolved", [(b"10-0", entry("ApprovalResolved", "ws1", "t1"))]),
    ]
    positions = {"rf:stream:ApprovalNeeded": "0-0", "rf:stream:ApprovalResolved": "0-0"}
    frames = live._frames(replies, positions, "ws1", None)
    assert ['"status": "running"' in f for f in frames] == [True, False]
    assert "awaiting_approval" in frames[1] and all("t9" not in f for f in frames)
    assert positions == {"rf:stream:ApprovalNeeded": "21-0", "rf:stream:ApprovalResolved": "10-0"}
