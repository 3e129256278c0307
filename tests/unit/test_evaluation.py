"""Pure pieces of routing evaluation, shared learning and cost-aware reuse."""

import pytest

from raptorflow.evaluation import RowResult, expected_calibration_error, pr_curve, summarise
from shared.contract.events import Neighbour
from shared.domain.routing import RoutingParams, best_reuse
from shared.memory.shared_pool import merge_pooled, opted_in, pool_item_id
from shared.settings import Settings


def row(reused, correct, conf, reusable=True, novel=False, ms=1.0):
    return RowResult(reused=reused, correct=correct, confidence=conf, reusable=reusable,
                     novel=novel, route_ms=ms)


def test_ece_by_hand():
    # bin 9: conf 0.9, 0.9 with hits 1, 0 -> |0.9 - 0.5| * 2; bin 2: conf 0.2, miss -> 0.2 * 1
    assert expected_calibration_error([0.9, 0.9, 0.2], [True, False, False]) == pytest.approx(
        (0.4 * 2 + 0.2) / 3, abs=1e-4)
    assert expected_calibration_error([1.0, 0.0], [True, False]) == 0.0
    assert expected_calibration_error([], []) == 0.0


def test_summary_arithmetic():
    rows = [
        row(False, False, 0.0, reusable=False, ms=1),   # empty memory
        row(True, True, 0.9, ms=2),                      # right reuse
        row(True, False, 0.85, ms=3),                    # wrong reuse
        row(False, True, 0.5, ms=4),                     # right but not confident enough
        row(True, False, 0.81, reusable=False, novel=True, ms=5),  # false reuse of a novel task
    ]
    s = summarise(rows)
    assert s["rows"] == 5 and s["reuses"] == 3
    assert s["reuse_rate"] == 0.6
    assert s["reuse_precision"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["oracle_coverage"] == 0.6
    assert s["recall_of_reusable"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["novel_rows"] == 1 and s["false_reuse_rate_novel"] == 1.0
    assert s["p50_route_ms"] == 3.0
    assert summarise([])["reuse_precision"] is None


def test_pr_curve_rescores_by_threshold():
    rows = [row(True, True, 0.95), row(True, False, 0.7), row(False, True, 0.3)]
    curve = {p["threshold"]: p for p in pr_curve(rows, (0.5, 0.9))}
    assert curve[0.5]["reuse_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert curve[0.5]["reuse_precision"] == 0.5
    assert curve[0.9]["reuse_precision"] == 1.0
    assert curve[0.9]["recall_of_reusable"] == pytest.approx(1 / 3, abs=1e-4)


def n(sim, seq, gh="h"):
    return Neighbour(goal_hash=gh, similarity=sim, quality=0.9, success=True, agent_sequence=seq)


def test_cost_aware_reuse_prefers_the_cheaper_of_near_equal_candidates():
    params = RoutingParams(intercept=-2, top_similarity=4, agreement=0, margin=0,
                           log_distinct_sequences=0, top_quality=0)
    neighbours = [n(0.90, ["research", "content"], "a"), n(0.895, ["content"], "b")]
    costs = {("research", "content"): 0.01, ("content",): 0.002}
    plain = best_reuse(neighbours, 2, params)
    cheap = best_reuse(neighbours, 2, params, cost=lambda s: costs[tuple(s)], cost_tolerance=0.02)
    strict = best_reuse(neighbours, 2, params, cost=lambda s: costs[tuple(s)], cost_tolerance=0.0)
    assert plain and cheap and strict
    assert plain.agent_sequence == ["research", "content"]
    assert cheap.agent_sequence == ["content"] and cheap.cost_usd == 0.002
    assert strict.agent_sequence == ["research", "content"]


def test_shared_learning_is_opt_in():
    assert not opted_in(Settings(), "ws1")
    assert opted_in(Settings(shared_learning_workspaces="ws1, ws2"), "ws2")
    assert not opted_in(Settings(shared_learning_workspaces="ws1"), "ws3")
    assert opted_in(Settings(shared_learning_workspaces="*"), "anything")


def test_merge_pooled_drops_own_copies_and_keeps_top_k():
    own = [n(0.7, ["a"], "g1")]
    pooled = [n(0.7, ["a"], pool_item_id("ws", "g1")), n(0.8, ["b"], "x"), n(0.1, ["c"], "y")]
    merged = merge_pooled(own, pooled, "ws", 2)
    assert [m.goal_hash for m in merged] == ["x", "g1"]
