"""Running performance aggregates for one (workspace, task_type, agent) arm.

Pure logic: no I/O. The memory service persists an `AgentPerformance` as a flat
Redis hash (`to_redis_hash` / `from_redis_hash`) and calls `record_outcome` on
every task outcome; the selector reads the aggregates through
`shared.domain.bandit.choose_agent`.

Discounting is *lazy* so that one outcome touches one arm only (O(1), one Redis
hash). Each (workspace, task_type) owns a step counter that advances on every
outcome of that task type, whichever agent ran it. An arm stores its discounted
Beta evidence as of `at_step`; its evidence at any later step is the stored value
times ``gamma ** (step - at_step)``, which equals eagerly decaying every arm on
every outcome.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_EWMA_ALPHA = 0.1
"""Weight of the newest quality in `quality_ewma` (about a 10-outcome memory)."""

FEEDBACK_WEIGHT = 1.0
"""Evidence added by a 5-star (or 1-star) rating, in units of one outcome."""


class AgentPerformance(BaseModel):
    """Aggregates for one arm; immutable so updates are explicit and pure."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    agent: str = ""
    runs: int = Field(default=0, ge=0)
    successes: int = Field(default=0, ge=0)
    quality_sum: float = 0.0
    latency_sum_s: float = 0.0
    cost_sum_usd: float = 0.0
    quality_ewma: float = 0.0
    disc_success: float = Field(default=0.0, ge=0.0)
    disc_failure: float = Field(default=0.0, ge=0.0)
    at_step: int = Field(default=0, ge=0)
    ratings: int = Field(default=0, ge=0)
    rating_sum: float = 0.0

    @property
    def success_rate(self) -> float:
        """Long-run fraction of successful runs (0.0 without runs)."""
        return self.successes / self.runs if self.runs else 0.0

    @property
    def mean_quality(self) -> float:
        """Long-run mean of the recorded quality (0.0 without runs)."""
        return self.quality_sum / self.runs if self.runs else 0.0

    @property
    def mean_latency_s(self) -> float:
        """Long-run mean latency in seconds (0.0 without runs)."""
        return self.latency_sum_s / self.runs if self.runs else 0.0

    @property
    def mean_cost_usd(self) -> float:
        """Long-run mean cost in USD (0.0 without runs)."""
        return self.cost_sum_usd / self.runs if self.runs else 0.0

    @property
    def trend(self) -> float:
        """Recent minus long-run quality: negative means the agent is degrading."""
        return self.quality_ewma - self.mean_quality if self.runs else 0.0

    @property
    def has_history(self) -> bool:
        """True once the arm has any outcome or rating."""
        return self.runs > 0 or self.ratings > 0


def outcome_reward(success: bool, quality: float) -> float:
    """Quality-weighted success in [0, 1]: a failed run is worth nothing."""
    return _clip01(quality) if success else 0.0


def decay_factor(at_step: int, step: int, gamma: float) -> float:
    """``gamma ** (step - at_step)``; a stale `step` (a race) never inflates evidence."""
    elapsed = step - at_step
    return gamma**elapsed if elapsed > 0 else 1.0


def effective_evidence(perf: AgentPerformance, step: int, gamma: float) -> tuple[float, float]:
    """Discounted (success, failure) evidence of the arm as seen at `step`."""
    factor = decay_factor(perf.at_step, step, gamma)
    return perf.disc_success * factor, perf.disc_failure * factor


def record_outcome(
    perf: AgentPerformance,
    *,
    success: bool,
    quality: float,
    latency_s: float,
    cost_usd: float,
    step: int,
    gamma: float,
    ewma_alpha: float = DEFAULT_EWMA_ALPHA,
) -> AgentPerformance:
    """Return `perf` with one outcome folded in at `step` (the new counter value).

    The Beta evidence gets fractional pseudo-counts r and 1 - r with
    r = success * quality, after decaying the stored evidence to `step`.
    """
    _check_gamma(gamma)
    q = _clip01(quality)
    reward = outcome_reward(success, q)
    disc_s, disc_f = effective_evidence(perf, step, gamma)
    ewma = q if perf.runs == 0 else perf.quality_ewma + ewma_alpha * (q - perf.quality_ewma)
    return perf.model_copy(
        update={
            "runs": perf.runs + 1,
            "successes": perf.successes + (1 if success else 0),
            "quality_sum": perf.quality_sum + q,
            "latency_sum_s": perf.latency_sum_s + max(latency_s, 0.0),
            "cost_sum_usd": perf.cost_sum_usd + max(cost_usd, 0.0),
            "quality_ewma": ewma,
            "disc_success": disc_s + reward,
            "disc_failure": disc_f + (1.0 - reward),
            "at_step": max(step, perf.at_step),
        }
    )


def rating_evidence(rating: int, weight: float = FEEDBACK_WEIGHT) -> tuple[float, float]:
    """Map a 1-5 rating to (success, failure) evidence: 5 -> (w, 0), 3 -> none, 1 -> (0, w)."""
    if not 1 <= rating <= 5:
        raise ValueError(f"rating must be in 1..5, got {rating}")
    signed = (rating - 3) / 2.0 * weight
    return max(signed, 0.0), max(-signed, 0.0)


def apply_feedback(
    perf: AgentPerformance,
    rating_1_to_5: int,
    step: int,
    gamma: float,
    *,
    weight: float = FEEDBACK_WEIGHT,
) -> AgentPerformance:
    """Fold a user rating into the arm as extra discounted evidence.

    Ratings do not advance the step counter (only outcomes do) and do not count
    as runs, so success rate and mean quality stay outcome-only.
    """
    _check_gamma(gamma)
    add_s, add_f = rating_evidence(rating_1_to_5, weight)
    disc_s, disc_f = effective_evidence(perf, step, gamma)
    return perf.model_copy(
        update={
            "disc_success": disc_s + add_s,
            "disc_failure": disc_f + add_f,
            "at_step": max(step, perf.at_step),
            "ratings": perf.ratings + 1,
            "rating_sum": perf.rating_sum + rating_1_to_5,
        }
    )


def to_redis_hash(perf: AgentPerformance) -> dict[str, str]:
    """Flat string mapping for HSET; floats use repr() so they round-trip exactly."""
    return {name: _to_str(value) for name, value in perf.model_dump().items()}


RedisHash = Mapping[bytes, bytes] | Mapping[str, str] | Mapping[bytes | str, bytes | str]
"""An HGETALL reply, decoded or not."""


def from_redis_hash(raw: RedisHash) -> AgentPerformance:
    """Parse an HGETALL reply (bytes or str); unknown fields are ignored, missing ones default."""
    decoded = {_to_text(key): _to_text(value) for key, value in raw.items()}
    return AgentPerformance.model_validate(decoded)


def _to_str(value: object) -> str:
    """Stringify one field for Redis."""
    return repr(value) if isinstance(value, float) else str(value)


def _to_text(value: bytes | str) -> str:
    """Decode a Redis key or value."""
    return value.decode() if isinstance(value, bytes) else value


def _clip01(value: float) -> float:
    """Clamp to [0, 1] so a bad quality score cannot corrupt the Beta evidence."""
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


def _check_gamma(gamma: float) -> None:
    """A discount outside (0, 1] would make evidence grow or vanish at once."""
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
