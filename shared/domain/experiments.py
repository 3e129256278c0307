"""A/B tests of agent sequences: the experiment model, arm assignment and the statistics.

Pure logic, no I/O. The gateway/CLI write an experiment's config, the router
assigns matching tasks to an arm, the memory service records each arm's
outcomes, and the report is computed here from those counters.

Matching is a case-insensitive regular expression searched in the goal: it is
deterministic, cheap on the router's hot path, and says exactly which goals are
in the test (an embedding threshold would silently drift with the model). The
pattern is a tenant's, so it runs on RE2 in linear time with a bounded program
(`shared.domain.patterns`); callers on an event loop run `first_match` in a thread.
Assignment hashes (experiment id, task id), so a redelivered request lands in
the same arm and the split holds in expectation without any shared counter.
Significance is the exact Beta-posterior probability that one arm's success
rate beats the other's (uniform Beta(1, 1) priors); the classic two-sided
two-proportion z-test is reported beside it for readers who expect a p-value.
"""

from __future__ import annotations

import hashlib
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.contract.models import AgentName, ContractModel
from shared.domain import patterns

Arm = Literal["A", "B"]
SIGNIFICANCE_LEVEL = 0.95
"""A leader is called significant when P(it is better) reaches this."""
MAX_RUNNING = 20
"""Running experiments per workspace: every task's goal is matched against each."""


class ExperimentSpec(ContractModel):
    """What a user asks for when creating an experiment."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    goal_pattern: str = Field(
        min_length=1,
        max_length=patterns.MAX_PATTERN_LENGTH,
        description="Case-insensitive RE2 regular expression searched in the goal; matching "
        "tasks join the test. RE2 syntax (no backreferences or lookaround), at most "
        f"{patterns.MAX_PATTERN_LENGTH} characters and {patterns.MAX_PROGRAM_SIZE} compiled "
        "instructions.",
        examples=["launch (email|newsletter)"],
    )
    arm_a: list[AgentName] = Field(
        min_length=1, max_length=8, description="Agent sequence of arm A."
    )
    arm_b: list[AgentName] = Field(
        min_length=1, max_length=8, description="Agent sequence of arm B."
    )
    split_a: float = Field(
        default=0.5, gt=0.0, lt=1.0, description="Share of matching tasks routed to arm A."
    )

    @field_validator("goal_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            return patterns.check_pattern(value)
        except patterns.PatternError as exc:
            raise ValueError(f"goal_pattern: {exc}") from exc

    @model_validator(mode="after")
    def _different_arms(self) -> ExperimentSpec:
        if self.arm_a == self.arm_b:
            raise ValueError("arm_a and arm_b must be different sequences")
        return self


class Experiment(ExperimentSpec):
    """A stored experiment: the spec plus its identity and lifecycle.

    Its pattern was checked when it was created; a stored one that today's rules refuse
    (written by an older version) still loads, so it can be listed and stopped, and
    `matches` raises PatternError for it, which fails the task that met it visibly."""

    model_config = ConfigDict(extra="ignore")

    goal_pattern: str = Field(min_length=1, max_length=500, description="As created.")

    @field_validator("goal_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return value

    experiment_id: str
    workspace_id: str
    status: Literal["running", "stopped"] = "running"
    created_at: float = 0.0
    stopped_at: float | None = None
    winner: Arm | None = None
    promoted: bool = False

    def sequence(self, arm: Arm) -> list[str]:
        return self.arm_a if arm == "A" else self.arm_b


def matches(experiment: ExperimentSpec, goal: str) -> bool:
    """Whether a goal belongs to the experiment's kind of goal (linear time, RE2)."""
    return patterns.search(experiment.goal_pattern, goal)


def first_match(experiments: list[Experiment], goal: str) -> Experiment | None:
    """The oldest running experiment whose pattern matches (deterministic when several do)."""
    running = sorted(
        (e for e in experiments if e.status == "running"),
        key=lambda e: (e.created_at, e.experiment_id),
    )
    for experiment in running:
        try:
            if matches(experiment, goal):
                return experiment
        except patterns.PatternError as exc:
            raise patterns.PatternError(
                f"experiment {experiment.experiment_id} ({experiment.name!r}): goal_pattern {exc}"
            ) from exc
    return None


def bucket(experiment_id: str, task_id: str) -> float:
    """A uniform number in [0, 1) fixed by (experiment, task)."""
    digest = hashlib.sha256(f"{experiment_id}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_arm(experiment: Experiment, task_id: str) -> Arm:
    """Arm A for the first `split_a` of the hash range, else B."""
    return "A" if bucket(experiment.experiment_id, task_id) < experiment.split_a else "B"


class ArmStats(BaseModel):
    """The counters the memory service keeps per arm."""

    assigned: int = 0
    tasks: int = 0
    successes: int = 0
    quality_sum: float = 0.0
    quality_sq_sum: float = 0.0

    @property
    def failures(self) -> int:
        return max(self.tasks - self.successes, 0)

    @property
    def success_rate(self) -> float:
        return self.successes / self.tasks if self.tasks else 0.0

    @property
    def mean_quality(self) -> float:
        return self.quality_sum / self.tasks if self.tasks else 0.0

    @property
    def quality_sd(self) -> float:
        """Sample standard deviation of the task quality (0 below two tasks)."""
        if self.tasks < 2:
            return 0.0
        var = (self.quality_sq_sum - self.quality_sum**2 / self.tasks) / (self.tasks - 1)
        return math.sqrt(max(var, 0.0))

    def posterior_mean(self) -> float:
        """Mean success rate under Beta(1 + successes, 1 + failures)."""
        return (1 + self.successes) / (2 + self.tasks)

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes] | dict[str, str]) -> ArmStats:
        data = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        return cls.model_validate(data)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def prob_b_beats_a(a: ArmStats, b: ArmStats) -> float:
    """Exact P(p_B > p_A) for independent Beta(1 + s, 1 + f) posteriors.

    Closed form for an integer first parameter of B (Evan Miller's sum):
    sum_{i<alpha_B} B(alpha_A + i, beta_A + beta_B) / ((beta_B + i) B(1 + i, beta_B) B(alpha_A, beta_A)).
    """
    alpha_a, beta_a = 1 + a.successes, 1 + a.failures
    alpha_b, beta_b = 1 + b.successes, 1 + b.failures
    base = _log_beta(alpha_a, beta_a)
    total = 0.0
    for i in range(alpha_b):
        total += math.exp(
            _log_beta(alpha_a + i, beta_a + beta_b)
            - math.log(beta_b + i)
            - _log_beta(1 + i, beta_b)
            - base
        )
    return min(max(total, 0.0), 1.0)


def two_proportion_z(a: ArmStats, b: ArmStats) -> tuple[float, float]:
    """(z, two-sided p-value) of H0: equal success rates, pooled standard error."""
    if a.tasks == 0 or b.tasks == 0:
        return 0.0, 1.0
    pooled = (a.successes + b.successes) / (a.tasks + b.tasks)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.tasks + 1 / b.tasks))
    if se == 0.0:
        return 0.0, 1.0
    z = (b.success_rate - a.success_rate) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


class ArmReport(BaseModel):
    sequence: list[str]
    assigned: int
    finished: int
    successes: int
    success_rate: float
    mean_quality: float
    quality_sd: float


class Significance(BaseModel):
    method: str = "beta_posterior"
    p_b_beats_a: float = Field(description="Exact P(success rate B > A), Beta(1,1) priors.")
    leader: Arm
    p_leader_better: float
    significant: bool = Field(description=f"p_leader_better >= {SIGNIFICANCE_LEVEL}.")
    z: float = Field(description="Two-proportion z statistic (B minus A).")
    p_value: float = Field(description="Two-sided p-value of the z-test.")


class ExperimentReport(BaseModel):
    experiment: Experiment
    arms: dict[str, ArmReport]
    significance: Significance


def leader(a: ArmStats, b: ArmStats, p_b: float) -> Arm:
    """The arm more likely better on success; on an exact tie, higher mean quality, then A."""
    if p_b > 0.5 + 1e-12:
        return "B"
    if p_b < 0.5 - 1e-12:
        return "A"
    return "B" if b.mean_quality > a.mean_quality else "A"


def report(experiment: Experiment, a: ArmStats, b: ArmStats) -> ExperimentReport:
    """Per-arm success and quality with the significance of the difference."""
    p_b = prob_b_beats_a(a, b)
    lead = leader(a, b, p_b)
    p_lead = p_b if lead == "B" else 1.0 - p_b
    z, p_value = two_proportion_z(a, b)
    pairs: tuple[tuple[Arm, ArmStats], ...] = (("A", a), ("B", b))
    arms = {
        arm: ArmReport(
            sequence=experiment.sequence(arm),
            assigned=stats.assigned,
            finished=stats.tasks,
            successes=stats.successes,
            success_rate=round(stats.success_rate, 4),
            mean_quality=round(stats.mean_quality, 4),
            quality_sd=round(stats.quality_sd, 4),
        )
        for arm, stats in pairs
    }
    return ExperimentReport(
        experiment=experiment,
        arms=arms,
        significance=Significance(
            p_b_beats_a=round(p_b, 6),
            leader=lead,
            p_leader_better=round(p_lead, 6),
            significant=p_lead >= SIGNIFICANCE_LEVEL,
            z=round(z, 4),
            p_value=round(p_value, 6),
        ),
    )


class NoEvidence(ValueError):
    """Promotion asked to pick a winner before both arms have outcomes."""


def choose_winner(a: ArmStats, b: ArmStats, explicit: Arm | None) -> Arm:
    """The arm to promote: the one given, else the leader once both arms have outcomes."""
    if explicit is not None:
        return explicit
    if a.tasks == 0 or b.tasks == 0:
        raise NoEvidence("both arms need finished tasks before a winner can be chosen")
    return leader(a, b, prob_b_beats_a(a, b))
