"""Simulation benchmark for adaptive agent selection (shared/bandit.py).

Usage: python bench/selection_sim.py [--decisions 10000] [--seeds 20] [--quick] [--sweep]

Hidden agents for one (workspace, task_type) have a success probability and a
quality distribution that change over time: three agents at the start, the best
one degrades sharply at 40% of the run, a new better agent joins the catalog at
60%. Each policy chooses, observes a stochastic outcome and updates its own
stats through the real `record_outcome`, `choose_agent` and
`greedy_best_success_rate`. Cumulative regret = sum over decisions of
(oracle expected reward - chosen agent's expected reward), reward = success * quality.

Greedy is exactly the seed rule: the best observed success rate among agents
with history; an agent with no history is never chosen except as the fallback
when nothing has history. `greedy_warm` (informational, not the seed) runs each
agent once before applying the same rule.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.domain.bandit import BanditConfig, choose_agent, greedy_best_success_rate
from shared.domain.performance import AgentPerformance, record_outcome

FALLBACK = "writer_default"
QUALITY_SD = 0.12
FAILURE_QUALITY = 0.15
PHASE_NAMES = ("learn", "degraded", "new_agent")


@dataclass(frozen=True)
class Phase:
    """An agent's hidden behaviour from decision `start` on."""

    start: int
    p_success: float
    quality_mean: float


@dataclass(frozen=True)
class SimAgent:
    """A hidden agent: behaviour phases, the decision it joins the catalog, latency and cost."""

    name: str
    phases: tuple[Phase, ...]
    joins_at: int = 0
    latency_s: float = 5.0
    cost_usd: float = 0.01

    def phase_at(self, t: int) -> Phase:
        """Behaviour in force at decision t."""
        current = self.phases[0]
        for phase in self.phases:
            if phase.start <= t:
                current = phase
        return current


@dataclass(frozen=True)
class Scenario:
    """The catalog over time plus the change points (for per-phase regret)."""

    agents: tuple[SimAgent, ...]
    change_points: tuple[int, ...]

    def candidates_at(self, t: int) -> list[str]:
        """Catalog order: agents already joined at decision t."""
        return [a.name for a in self.agents if a.joins_at <= t]

    def agent(self, name: str) -> SimAgent:
        """Look an agent up by name."""
        return next(a for a in self.agents if a.name == name)


def default_scenario(decisions: int) -> Scenario:
    """Fallback is decent, `writer_pro` is best then collapses, `writer_next` arrives best."""
    degrade, arrive = int(decisions * 0.4), int(decisions * 0.6)
    agents = (
        SimAgent(FALLBACK, (Phase(0, 0.80, 0.70),), latency_s=6.0, cost_usd=0.010),
        SimAgent(
            "writer_pro",
            (Phase(0, 0.92, 0.85), Phase(degrade, 0.45, 0.55)),
            latency_s=9.0,
            cost_usd=0.030,
        ),
        SimAgent("writer_fast", (Phase(0, 0.70, 0.60),), latency_s=2.0, cost_usd=0.004),
        SimAgent(
            "writer_next", (Phase(0, 0.95, 0.90),), joins_at=arrive, latency_s=7.0, cost_usd=0.020
        ),
    )
    return Scenario(agents, (degrade, arrive))


def _std_normal_cdf(z: float) -> float:
    """Phi(z)."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _std_normal_pdf(z: float) -> float:
    """phi(z)."""
    return math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def clipped_normal_mean(mu: float, sd: float) -> float:
    """E[clip(N(mu, sd), 0, 1)], exact, so the oracle and regret need no sampling."""
    lo, hi = (0.0 - mu) / sd, (1.0 - mu) / sd
    inside = _std_normal_cdf(hi) - _std_normal_cdf(lo)
    return (
        (1.0 - _std_normal_cdf(hi)) + mu * inside + sd * (_std_normal_pdf(lo) - _std_normal_pdf(hi))
    )


def expected_reward(agent: SimAgent, t: int) -> float:
    """p(success) * E[quality | success] of the agent at decision t."""
    phase = agent.phase_at(t)
    return phase.p_success * clipped_normal_mean(phase.quality_mean, QUALITY_SD)


@dataclass(frozen=True)
class Outcome:
    """One observed task result."""

    success: bool
    quality: float
    latency_s: float
    cost_usd: float


def sample_outcome(agent: SimAgent, t: int, rng: random.Random) -> Outcome:
    """Bernoulli success; clipped-normal quality when successful, low quality otherwise."""
    phase = agent.phase_at(t)
    success = rng.random() < phase.p_success
    mu = phase.quality_mean if success else FAILURE_QUALITY
    quality = min(1.0, max(0.0, rng.gauss(mu, QUALITY_SD)))
    latency = rng.expovariate(1.0 / agent.latency_s)
    return Outcome(success, quality, latency, agent.cost_usd * (0.5 + rng.random()))


@dataclass
class StatsPolicy:
    """A policy that keeps per-agent `AgentPerformance` and a task-type step counter."""

    pick: Callable[[Sequence[str], dict[str, AgentPerformance], int], str]
    gamma: float = 1.0
    stats: dict[str, AgentPerformance] = field(default_factory=dict)
    step: int = 0

    def choose(self, candidates: Sequence[str], t: int) -> str:
        """Delegate to the wrapped selection rule."""
        return self.pick(candidates, self.stats, self.step)

    def observe(self, agent: str, outcome: Outcome) -> None:
        """Advance the step counter and fold the outcome in with the real record_outcome."""
        self.step += 1
        self.stats[agent] = record_outcome(
            self.stats.get(agent) or AgentPerformance(agent=agent),
            success=outcome.success,
            quality=outcome.quality,
            latency_s=outcome.latency_s,
            cost_usd=outcome.cost_usd,
            step=self.step,
            gamma=self.gamma,
        )


def bandit_policy(config: BanditConfig, rng: random.Random) -> StatsPolicy:
    """Ours: discounted Thompson sampling via the real choose_agent."""

    def pick(cands: Sequence[str], stats: dict[str, AgentPerformance], step: int) -> str:
        return choose_agent(
            cands, stats, fallback=FALLBACK, step=step, rng=rng, config=config
        ).agent

    return StatsPolicy(pick, gamma=config.gamma)


def greedy_policy() -> StatsPolicy:
    """The seed rule, exactly."""
    return StatsPolicy(lambda cands, stats, _step: greedy_best_success_rate(cands, stats, FALLBACK))


def greedy_warm_policy() -> StatsPolicy:
    """Informational: run every untried agent once, then the seed rule."""

    def pick(cands: Sequence[str], stats: dict[str, AgentPerformance], _step: int) -> str:
        untried = [c for c in cands if c not in stats]
        return untried[0] if untried else greedy_best_success_rate(cands, stats, FALLBACK)

    return StatsPolicy(pick)


def random_policy(rng: random.Random) -> StatsPolicy:
    """Uniform over the current catalog."""
    return StatsPolicy(lambda cands, _stats, _step: rng.choice(list(cands)))


def run_policy(
    policy: StatsPolicy | None, scenario: Scenario, decisions: int, env_seed: int
) -> list[float]:
    """Regret per phase for one policy over one seed (None = the oracle).

    Common random numbers: each agent has its own outcome stream seeded from
    `env_seed`, so every policy sees the same k-th outcome of an agent (same
    phase), which makes policy comparisons less noisy.
    """
    env_rngs = {a.name: random.Random(env_seed * 1_000 + i) for i, a in enumerate(scenario.agents)}
    bounds = (*scenario.change_points, decisions)
    regret = [0.0] * len(bounds)
    phase_idx = 0
    for t in range(decisions):
        while t >= bounds[phase_idx]:
            phase_idx += 1
        cands = scenario.candidates_at(t)
        rewards = {name: expected_reward(scenario.agent(name), t) for name in cands}
        best = max(rewards.values())
        chosen = (
            max(rewards, key=rewards.__getitem__) if policy is None else policy.choose(cands, t)
        )
        regret[phase_idx] += best - rewards[chosen]
        if policy is not None:
            policy.observe(chosen, sample_outcome(scenario.agent(chosen), t, env_rngs[chosen]))
    return regret


def make_policies(
    seed: int, configs: dict[str, BanditConfig], baselines: bool
) -> dict[str, StatsPolicy | None]:
    """Fresh policies for one seed; each bandit gets its own seeded rng."""
    policies: dict[str, StatsPolicy | None] = {
        name: bandit_policy(cfg, random.Random(seed * 7919 + i))
        for i, (name, cfg) in enumerate(configs.items())
    }
    if baselines:
        policies["greedy"] = greedy_policy()
        policies["greedy_warm"] = greedy_warm_policy()
        policies["random"] = random_policy(random.Random(seed * 104729))
        policies["oracle"] = None
    return policies


def run_seed(args: tuple[int, int, dict[str, BanditConfig], bool]) -> dict[str, list[float]]:
    """All policies over one seed (a process-pool task)."""
    seed, decisions, configs, baselines = args
    scenario = default_scenario(decisions)
    return {
        name: run_policy(policy, scenario, decisions, env_seed=seed)
        for name, policy in make_policies(seed, configs, baselines).items()
    }


def run_all(
    seeds: int, decisions: int, configs: dict[str, BanditConfig], baselines: bool, jobs: int
) -> dict[str, list[list[float]]]:
    """Per policy, the per-phase regrets of every seed."""
    tasks = [(seed, decisions, configs, baselines) for seed in range(seeds)]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(run_seed, tasks))
    else:
        results = [run_seed(task) for task in tasks]
    merged: dict[str, list[list[float]]] = {}
    for result in results:
        for name, regret in result.items():
            merged.setdefault(name, []).append(regret)
    return merged


def summarize(per_seed: list[list[float]]) -> tuple[float, float, list[float]]:
    """Mean and std of total regret, plus mean regret per phase."""
    totals = [sum(r) for r in per_seed]
    std = statistics.stdev(totals) if len(totals) > 1 else 0.0
    phases = [statistics.fmean(r[i] for r in per_seed) for i in range(len(per_seed[0]))]
    return statistics.fmean(totals), std, phases


def print_table(merged: dict[str, list[list[float]]]) -> dict[str, float]:
    """Print the regret table; return mean total regret per policy."""
    header = f"{'policy':<22}{'mean regret':>13}{'std':>10}" + "".join(
        f"{p:>12}" for p in PHASE_NAMES
    )
    print(header)
    print("-" * len(header))
    means: dict[str, float] = {}
    for name, per_seed in merged.items():
        mean, std, phases = summarize(per_seed)
        means[name] = mean
        print(f"{name:<22}{mean:>13.1f}{std:>10.1f}" + "".join(f"{p:>12.1f}" for p in phases))
    return means


def sweep_configs() -> dict[str, BanditConfig]:
    """The grid used to choose BanditConfig's defaults."""
    return {
        f"ts g={g} bonus={b}": BanditConfig(gamma=g, fallback_prior_bonus=b)
        for g in (0.98, 0.99, 0.995, 0.997, 0.998, 0.999, 1.0)
        for b in (0.0, 1.0, 3.0)
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """CLI flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="2,000 decisions x 4 seeds")
    parser.add_argument(
        "--sweep", action="store_true", help="compare bandit configs (gamma x fallback bonus)"
    )
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table, with the ours/greedy ratio last."""
    args = parse_args(argv)
    decisions, seeds = (2_000, 4) if args.quick else (args.decisions, args.seeds)
    configs = sweep_configs() if args.sweep else {"bandit (ours)": BanditConfig()}
    started = time.perf_counter()
    merged = run_all(seeds, decisions, configs, baselines=not args.sweep, jobs=args.jobs)
    elapsed = time.perf_counter() - started
    changes = default_scenario(decisions).change_points
    print(f"{seeds} seeds x {decisions} decisions; change points {changes}")
    print(
        "greedy = seed rule: best observed success rate; an agent without history is never chosen"
    )
    print("         (except the fallback when nothing has history).")
    print("greedy_warm (info, not the seed) = one forced try per agent, then the seed rule.")
    print(f"bandit config: {BanditConfig().model_dump()}\n")
    means = print_table(merged)
    print(f"\nruntime: {elapsed:.1f}s with {args.jobs} worker(s)")
    if not args.sweep:
        print(f"ratio ours/greedy_warm (info): {means['bandit (ours)'] / means['greedy_warm']:.3f}")
        print(f"ratio ours/greedy: {means['bandit (ours)'] / means['greedy']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
