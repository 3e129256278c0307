"""Unit tests for shared.domain.performance: aggregates, lazy discounting, storage, feedback."""

from __future__ import annotations

import math
import random

import pytest

from shared.domain.performance import (
    AgentPerformance,
    apply_feedback,
    effective_evidence,
    from_redis_hash,
    rating_evidence,
    record_outcome,
    to_redis_hash,
)

GAMMA = 0.97


def _record(
    perf: AgentPerformance, step: int, *, success: bool = True, quality: float = 0.8
) -> AgentPerformance:
    """Shorthand: one outcome with fixed latency and cost."""
    return record_outcome(
        perf, success=success, quality=quality, latency_s=2.0, cost_usd=0.01, step=step, gamma=GAMMA
    )


def test_empty_arm_has_zero_aggregates() -> None:
    perf = AgentPerformance(agent="a")
    assert (
        perf.success_rate,
        perf.mean_quality,
        perf.mean_latency_s,
        perf.mean_cost_usd,
        perf.trend,
    ) == (0, 0, 0, 0, 0)
    assert not perf.has_history
    assert effective_evidence(perf, 10, GAMMA) == (0.0, 0.0)


def test_record_outcome_updates_aggregates_and_is_pure() -> None:
    start = AgentPerformance(agent="a")
    perf = _record(_record(start, 1, quality=0.9), 2, success=False, quality=0.1)
    assert start.runs == 0
    assert perf.runs == 2 and perf.successes == 1
    assert perf.success_rate == 0.5
    assert perf.mean_quality == pytest.approx(0.5)
    assert perf.mean_latency_s == pytest.approx(2.0)
    assert perf.mean_cost_usd == pytest.approx(0.01)
    assert perf.at_step == 2


def test_reward_is_quality_weighted_success() -> None:
    ok = _record(AgentPerformance(), 1, quality=0.7)
    failed = _record(AgentPerformance(), 1, success=False, quality=0.7)
    assert (ok.disc_success, ok.disc_failure) == pytest.approx((0.7, 0.3))
    assert (failed.disc_success, failed.disc_failure) == (0.0, 1.0)


def test_quality_is_clipped_to_unit_interval() -> None:
    perf = _record(AgentPerformance(), 1, quality=1.7)
    assert perf.disc_success == 1.0 and perf.disc_failure == 0.0


def test_trend_turns_negative_when_quality_drops() -> None:
    perf = AgentPerformance()
    for step in range(1, 51):
        perf = _record(perf, step, quality=0.9)
    for step in range(51, 61):
        perf = _record(perf, step, quality=0.2)
    assert perf.trend < -0.2


def test_lazy_discounting_equals_eager_discounting() -> None:
    """Only the arm that ran is written; reading it later equals decaying all arms every step."""
    rng = random.Random(7)
    arms = ["a", "b", "c"]
    lazy = {arm: AgentPerformance(agent=arm) for arm in arms}
    eager = {arm: [0.0, 0.0] for arm in arms}
    for step in range(1, 301):
        arm, success, quality = rng.choice(arms), rng.random() < 0.7, rng.random()
        lazy[arm] = _record(lazy[arm], step, success=success, quality=quality)
        for ev in eager.values():
            ev[0] *= GAMMA
            ev[1] *= GAMMA
        reward = quality if success else 0.0
        eager[arm][0] += reward
        eager[arm][1] += 1.0 - reward
    for arm in arms:
        assert effective_evidence(lazy[arm], 300, GAMMA) == pytest.approx(
            tuple(eager[arm]), rel=1e-9
        )


def test_effective_evidence_decays_with_steps_and_ignores_stale_step() -> None:
    perf = _record(AgentPerformance(), 10, quality=1.0)
    assert effective_evidence(perf, 20, GAMMA)[0] == pytest.approx(GAMMA**10)
    assert effective_evidence(perf, 5, GAMMA) == (1.0, 0.0)


def test_invalid_gamma_is_rejected() -> None:
    with pytest.raises(ValueError):
        record_outcome(
            AgentPerformance(),
            success=True,
            quality=1.0,
            latency_s=1,
            cost_usd=0,
            step=1,
            gamma=1.5,
        )


def test_redis_hash_round_trip_with_bytes_and_str() -> None:
    perf = AgentPerformance(agent="writer")
    for step in range(1, 8):
        perf = _record(perf, step, success=step % 3 != 0, quality=step / 10 + 0.013)
    perf = apply_feedback(perf, 5, 8, GAMMA)
    flat = to_redis_hash(perf)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in flat.items())
    as_bytes = {k.encode(): v.encode() for k, v in flat.items()}
    assert from_redis_hash(as_bytes) == perf
    assert from_redis_hash(flat) == perf


def test_from_redis_hash_tolerates_missing_and_unknown_fields() -> None:
    perf = from_redis_hash({b"runs": b"3", b"successes": b"2", b"future_field": b"x"})
    assert perf.runs == 3 and perf.success_rate == pytest.approx(2 / 3)
    assert perf.disc_success == 0.0


@pytest.mark.parametrize(
    ("rating", "expected"),
    [(5, (1.0, 0.0)), (4, (0.5, 0.0)), (3, (0.0, 0.0)), (2, (0.0, 0.5)), (1, (0.0, 1.0))],
)
def test_rating_evidence_scale(rating: int, expected: tuple[float, float]) -> None:
    assert rating_evidence(rating) == expected


def test_rating_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError):
        rating_evidence(6)


def test_feedback_adds_discounted_evidence_without_counting_a_run() -> None:
    perf = _record(AgentPerformance(), 1, quality=1.0)
    rated = apply_feedback(perf, 1, 3, GAMMA)
    assert rated.runs == 1 and rated.ratings == 1 and rated.rating_sum == 1
    assert rated.disc_success == pytest.approx(GAMMA**2)
    assert rated.disc_failure == pytest.approx(1.0)
    assert rated.at_step == 3
    assert math.isclose(rated.success_rate, perf.success_rate)
