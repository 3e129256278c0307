"""Adaptive agent selection: discounted Thompson sampling over a catalog.

Pure logic (no I/O, no asyncio): the selector service loads the arms'
`AgentPerformance` aggregates and the task type's step counter, then calls
`choose_agent`. Reward is the quality-weighted success r = success * quality,
folded into a Beta posterior as fractional evidence (r, 1 - r) by
`shared.domain.performance.record_outcome`.

Why discounted Thompson sampling: it learns fast (posterior sampling explores
only while arms are uncertain), it recovers when an agent degrades (old evidence
fades with gamma, so fresh failures dominate), and it finds a new agent (an arm
without history samples from the wide prior and gets tried, and arms that are
not run drift back towards the prior and get re-checked).

`greedy_best_success_rate` is the seed rule, kept as the benchmark baseline.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from shared.domain.performance import AgentPerformance, effective_evidence

_EMPTY = AgentPerformance()


class BanditConfig(BaseModel):
    """Tuning knobs; defaults chosen by `bench/selection_sim.py --sweep`.

    gamma=0.997 (evidence memory ~330 outcomes, half-life ~230) had the lowest
    worst-case regret across 1k/3k/10k-decision runs: smaller gammas keep
    re-exploring settled arms, larger ones react slowly to a degraded agent.
    The fallback bonus (+1 prior success, prior mean 0.67) makes the default
    win while data is thin; it cost <3% regret, within noise.
    """

    model_config = ConfigDict(frozen=True)

    prior_a: float = Field(default=1.0, gt=0.0)
    prior_b: float = Field(default=1.0, gt=0.0)
    gamma: float = Field(default=0.997, gt=0.0, le=1.0)
    fallback_prior_bonus: float = Field(default=1.0, ge=0.0)


class SelectionDecision(BaseModel):
    """What the selector chose and why, for logging and the decision trace."""

    model_config = ConfigDict(frozen=True)

    agent: str
    reason: str
    explored: bool = False
    posterior_means: dict[str, float] = Field(default_factory=dict)
    samples: dict[str, float] = Field(default_factory=dict)
    fallback: str
    step: int = 0


def arms_of(candidates: Sequence[str], fallback: str) -> list[str]:
    """Fallback first (it wins ties and is always eligible), then the catalog, deduplicated."""
    return list(dict.fromkeys([fallback, *candidates]))


def posterior_params(
    perf: AgentPerformance | None,
    *,
    step: int,
    config: BanditConfig,
    is_fallback: bool,
) -> tuple[float, float]:
    """Beta(a, b) of one arm at `step`: prior (+ fallback bonus) plus discounted evidence."""
    succ, fail = effective_evidence(perf or _EMPTY, step, config.gamma)
    bonus = config.fallback_prior_bonus if is_fallback else 0.0
    return config.prior_a + bonus + succ, config.prior_b + fail


def posterior_mean(
    perf: AgentPerformance | None,
    *,
    step: int,
    config: BanditConfig,
    is_fallback: bool = False,
) -> float:
    """Expected reward of one arm under its posterior."""
    a, b = posterior_params(perf, step=step, config=config, is_fallback=is_fallback)
    return a / (a + b)


def any_history(arms: Sequence[str], stats: Mapping[str, AgentPerformance]) -> bool:
    """True when at least one arm has an outcome or a rating."""
    return any(arm in stats and stats[arm].has_history for arm in arms)


def choose_agent(
    candidates: Sequence[str],
    stats: Mapping[str, AgentPerformance],
    *,
    fallback: str,
    step: int,
    rng: random.Random,
    config: BanditConfig,
) -> SelectionDecision:
    """Pick an agent by Thompson sampling; the fallback when nothing has history yet.

    `step` is the task type's current outcome counter; `rng` is injected so the
    choice is reproducible in tests and simulation.
    """
    arms = arms_of(candidates, fallback)
    if not any_history(arms, stats):
        return SelectionDecision(
            agent=fallback, reason="no_history_fallback", fallback=fallback, step=step
        )
    means: dict[str, float] = {}
    samples: dict[str, float] = {}
    for arm in arms:
        a, b = posterior_params(
            stats.get(arm), step=step, config=config, is_fallback=arm == fallback
        )
        means[arm] = a / (a + b)
        samples[arm] = rng.betavariate(a, b)
    chosen = _argmax(arms, samples)
    explored = chosen != _argmax(arms, means)
    return SelectionDecision(
        agent=chosen,
        reason="thompson_explore" if explored else "thompson_exploit",
        explored=explored,
        posterior_means=means,
        samples=samples,
        fallback=fallback,
        step=step,
    )


def greedy_best_success_rate(
    candidates: Sequence[str],
    stats: Mapping[str, AgentPerformance],
    fallback: str,
) -> str:
    """Seed rule: best observed success rate among agents with runs; fallback when none.

    An agent without runs is never picked (so it is never discovered); ties go to
    the fallback, else to the first candidate in catalog order.
    """
    best: str | None = None
    best_rate = -1.0
    for arm in arms_of(candidates, fallback):
        perf = stats.get(arm)
        if perf is None or perf.runs == 0:
            continue
        if perf.success_rate > best_rate:
            best, best_rate = arm, perf.success_rate
    return best if best is not None else fallback


def _argmax(arms: Sequence[str], values: Mapping[str, float]) -> str:
    """First arm with the largest value, so ties favour the fallback then catalog order."""
    best = arms[0]
    for arm in arms[1:]:
        if values[arm] > values[best]:
            best = arm
    return best
