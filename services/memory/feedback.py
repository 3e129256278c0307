"""How a user's 1-5 rating changes what memory believes about a task (pure logic).

The critic's score is a proxy for what the user wants; the rating is the user
saying it directly, so it moves the stored quality and can overrule success:

* quality: the mean of the critic's quality and the rating read as a quality
  (1 -> 0.0, 3 -> 0.5, 5 -> 1.0), always from the critic's original score, so
  a second rating replaces the first instead of compounding it;
* success: a rating of 2 or less makes the task a failure (it stops being a
  proven route: the router only reuses successes); 4 or more makes a completed
  task a success (the user accepted a result the critic scored just under the
  threshold); 3 leaves it as it was;
* agents: each agent that ran a stage gets the rating as Beta evidence through
  `shared.domain.performance.apply_feedback` (5 -> one success, 1 -> one failure).
"""

from __future__ import annotations

from shared.memory.store import TaskRecord

RATING_QUALITY_WEIGHT = 0.5
"""Share of the stored quality that comes from the rating (the rest from the critic)."""
FAIL_AT_OR_BELOW = 2
SUCCEED_AT_OR_ABOVE = 4


def rating_quality(rating: int) -> float:
    """A 1-5 rating as a quality in [0, 1]."""
    if not 1 <= rating <= 5:
        raise ValueError(f"rating must be in 1..5, got {rating}")
    return (rating - 1) / 4.0


def folded_quality(critic_quality: float, rating: int) -> float:
    """The stored quality after a rating: a weighted mean of critic and user."""
    critic = min(max(critic_quality, 0.0), 1.0)
    blended = (1 - RATING_QUALITY_WEIGHT) * critic + RATING_QUALITY_WEIGHT * rating_quality(rating)
    return round(blended, 4)


def folded_success(success: bool, rating: int, *, completed: bool) -> bool:
    """The user's verdict overrules the critic's threshold at the ends of the scale."""
    if rating <= FAIL_AT_OR_BELOW:
        return False
    if rating >= SUCCEED_AT_OR_ABOVE and completed:
        return True
    return success


def rated_record(
    record: TaskRecord, *, critic_quality: float, rating: int, completed: bool
) -> TaskRecord:
    """The task history record with the rating folded in."""
    return record.model_copy(
        update={
            "result_quality": folded_quality(critic_quality, rating),
            "success": folded_success(record.success, rating, completed=completed),
            "feedback_rating": rating,
        }
    )


def rated_agents(stages: list[dict[str, object]]) -> list[tuple[str, str]]:
    """Distinct (task_type, agent) pairs that ran the task's stages, in stage order.

    One rating is one judgement of the result, so an agent that ran two stages
    of the same type still gets it once.
    """
    ordered = sorted(stages, key=lambda s: int(str(s.get("stage_index", 0))))
    pairs = [
        (str(s["task_type"]), str(s["agent"])) for s in ordered if "agent" in s and "task_type" in s
    ]
    return list(dict.fromkeys(pairs))
