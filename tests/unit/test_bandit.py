"""Unit tests for shared.domain.bandit: fallback, Thompson sampling, swaps, feedback, greedy rule."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from shared.domain.bandit import (
    BanditConfig,
    SelectionDecision,
    choose_agent,
    greedy_best_success_rate,
    posterior_mean,
)
from shared.domain.performance import AgentPerformance, apply_feedback, record_outcome

CONFIG = BanditConfig()
CATALOG = ["default", "pro", "fast"]


def _history(
    agent: str, outcomes: list[tuple[bool, float]], *, start_step: int = 1
) -> AgentPerformance:
    """An arm after the given (success, quality) outcomes at consecutive steps."""
    perf = AgentPerformance(agent=agent)
    for offset, (success, quality) in enumerate(outcomes):
        perf = record_outcome(
            perf,
            success=success,
            quality=quality,
            latency_s=1.0,
            cost_usd=0.01,
            step=start_step + offset,
            gamma=CONFIG.gamma,
        )
    return perf


def _choices(
    stats: dict[str, AgentPerformance], step: int, n: int = 200, seed: int = 0
) -> Counter[str]:
    """How often each agent is chosen over n seeded draws."""
    rng = random.Random(seed)
    return Counter(
        choose_agent(CATALOG, stats, fallback="default", step=step, rng=rng, config=CONFIG).agent
        for _ in range(n)
    )


def test_no_history_returns_fallback() -> None:
    decision = choose_agent(
        CATALOG, {}, fallback="default", step=0, rng=random.Random(1), config=CONFIG
    )
    assert decision == SelectionDecision(
        agent="default", reason="no_history_fallback", fallback="default", step=0
    )


def test_fallback_outside_catalog_is_still_returned_without_history() -> None:
    decision = choose_agent([], {}, fallback="default", step=0, rng=random.Random(1), config=CONFIG)
    assert decision.agent == "default"


def test_empty_stats_entries_count_as_no_history() -> None:
    stats = {"pro": AgentPerformance(agent="pro")}
    decision = choose_agent(
        CATALOG, stats, fallback="default", step=3, rng=random.Random(1), config=CONFIG
    )
    assert decision.reason == "no_history_fallback"


def test_decision_contents_cover_every_arm() -> None:
    stats = {"pro": _history("pro", [(True, 0.9)] * 30)}
    decision = choose_agent(
        CATALOG, stats, fallback="default", step=30, rng=random.Random(3), config=CONFIG
    )
    assert set(decision.posterior_means) == set(decision.samples) == set(CATALOG)
    assert decision.fallback == "default" and decision.step == 30
    assert all(0.0 <= v <= 1.0 for v in decision.samples.values())
    assert decision.agent == max(decision.samples, key=decision.samples.__getitem__)
    best_mean = max(decision.posterior_means, key=decision.posterior_means.__getitem__)
    assert best_mean == "pro"
    assert decision.explored == (decision.agent != best_mean)
    assert decision.reason == ("thompson_explore" if decision.explored else "thompson_exploit")


def test_fallback_prior_bonus_raises_its_mean() -> None:
    with_bonus = posterior_mean(None, step=0, config=CONFIG, is_fallback=True)
    plain = posterior_mean(None, step=0, config=CONFIG, is_fallback=False)
    assert with_bonus > plain == pytest.approx(0.5)


def test_proven_agent_is_exploited() -> None:
    stats = {
        "default": _history("default", [(True, 0.5), (False, 0.1)] * 20),
        "pro": _history("pro", [(True, 0.95)] * 40, start_step=41),
        "fast": _history("fast", [(False, 0.1)] * 20, start_step=81),
    }
    counts = _choices(stats, step=100)
    assert counts["pro"] > 180


def test_repeated_failures_of_the_best_swap_to_another_agent() -> None:
    good = [(True, 0.9)] * 60
    stats = {
        "default": _history("default", [(True, 0.6)] * 30),
        "pro": _history("pro", good, start_step=31),
    }
    assert _choices(stats, step=90).most_common(1)[0][0] == "pro"
    stats["pro"] = _history("pro", good + [(False, 0.0)] * 40, start_step=31)
    counts = _choices(stats, step=130)
    assert counts["pro"] < 100
    assert counts["default"] + counts["fast"] > 100


def test_new_agent_without_history_gets_explored() -> None:
    stats = {"default": _history("default", [(True, 0.5)] * 50)}
    counts = _choices(stats, step=50, n=400)
    assert counts["pro"] > 20 and counts["fast"] > 20


def test_negative_feedback_lowers_posterior_mean() -> None:
    perf = _history("pro", [(True, 0.8)] * 10)
    before = posterior_mean(perf, step=10, config=CONFIG)
    after = posterior_mean(apply_feedback(perf, 1, 10, CONFIG.gamma), step=10, config=CONFIG)
    assert after < before


def test_positive_feedback_raises_posterior_mean() -> None:
    perf = _history("pro", [(True, 0.5)] * 10)
    before = posterior_mean(perf, step=10, config=CONFIG)
    after = posterior_mean(apply_feedback(perf, 5, 10, CONFIG.gamma), step=10, config=CONFIG)
    assert after > before


def test_choice_is_reproducible_with_the_same_seed() -> None:
    stats = {"default": _history("default", [(True, 0.5)] * 5)}
    assert _choices(stats, step=5, seed=42) == _choices(stats, step=5, seed=42)


def test_greedy_falls_back_without_history() -> None:
    assert greedy_best_success_rate(CATALOG, {}, "default") == "default"
    assert (
        greedy_best_success_rate(CATALOG, {"pro": AgentPerformance(agent="pro")}, "default")
        == "default"
    )


def test_greedy_picks_best_observed_success_rate_and_ignores_untried() -> None:
    stats = {
        "default": _history("default", [(True, 0.9), (False, 0.1)]),
        "fast": _history("fast", [(True, 0.2)] * 3),
    }
    assert greedy_best_success_rate(CATALOG, stats, "default") == "fast"
    stats["fast"] = _history("fast", [(False, 0.1)] * 3)
    assert greedy_best_success_rate(CATALOG, stats, "default") == "default"


def test_greedy_ties_go_to_fallback_then_catalog_order() -> None:
    perfect = [(True, 0.9)]
    tied = {name: _history(name, perfect) for name in CATALOG}
    assert greedy_best_success_rate(CATALOG, tied, "default") == "default"
    del tied["default"]
    assert greedy_best_success_rate(CATALOG, tied, "default") == "pro"


def test_config_rejects_bad_gamma() -> None:
    with pytest.raises(ValueError):
        BanditConfig(gamma=0.0)
