"""Unit tests for shared.domain.experiments and services.memory.feedback: assignment, statistics, rating folding."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from services.memory.feedback import folded_quality, folded_success, rated_agents, rated_record
from shared.domain.experiments import (
    ArmStats,
    Experiment,
    ExperimentSpec,
    NoEvidence,
    assign_arm,
    choose_winner,
    first_match,
    matches,
    prob_b_beats_a,
    report,
    two_proportion_z,
)
from shared.memory.store import TaskRecord


def _experiment(split_a: float = 0.5, **kw: object) -> Experiment:
    base: dict[str, object] = {
        "name": "launch emails",
        "goal_pattern": r"launch (email|newsletter)",
        "arm_a": ["content", "email_writer"],
        "arm_b": ["email_writer"],
        "split_a": split_a,
        "experiment_id": "exp1",
        "workspace_id": "ws",
        "created_at": 1.0,
    }
    base.update(kw)
    return Experiment.model_validate(base)


def _arm(successes: int, tasks: int, quality: float = 0.8) -> ArmStats:
    return ArmStats(
        assigned=tasks,
        tasks=tasks,
        successes=successes,
        quality_sum=quality * tasks,
        quality_sq_sum=quality * quality * tasks,
    )


def test_spec_rejects_bad_regex_and_identical_arms() -> None:
    with pytest.raises(ValidationError, match="regular expression"):
        ExperimentSpec(name="x", goal_pattern="(unclosed", arm_a=["a"], arm_b=["b"])
    with pytest.raises(ValidationError, match="different"):
        ExperimentSpec(name="x", goal_pattern="x", arm_a=["a"], arm_b=["a"])
    with pytest.raises(ValidationError):
        ExperimentSpec(name="x", goal_pattern="x", arm_a=["a"], arm_b=["b"], split_a=1.0)


def test_matching_is_case_insensitive_and_the_oldest_running_experiment_wins() -> None:
    exp = _experiment()
    assert matches(exp, "Write a LAUNCH Newsletter for v2")
    assert not matches(exp, "Write a blog post")
    newer = _experiment(experiment_id="exp2", created_at=2.0)
    stopped = _experiment(experiment_id="exp0", created_at=0.5, status="stopped")
    found = first_match([newer, stopped, exp], "launch email now")
    assert found is not None and found.experiment_id == "exp1"


def test_assignment_is_deterministic_and_follows_the_split() -> None:
    exp = _experiment(split_a=0.3)
    arms = [assign_arm(exp, f"task-{i}") for i in range(4000)]
    assert arms == [assign_arm(exp, f"task-{i}") for i in range(4000)]
    share_a = arms.count("A") / len(arms)
    assert 0.27 < share_a < 0.33


def test_beta_posterior_probability_matches_monte_carlo() -> None:
    rng = random.Random(3)
    for a, b in [
        (_arm(7, 10), _arm(3, 10)),
        (_arm(0, 0), _arm(0, 0)),
        (_arm(20, 40), _arm(28, 40)),
    ]:
        exact = prob_b_beats_a(a, b)
        draws = 40_000
        wins = sum(
            rng.betavariate(1 + b.successes, 1 + b.failures)
            > rng.betavariate(1 + a.successes, 1 + a.failures)
            for _ in range(draws)
        )
        assert exact == pytest.approx(wins / draws, abs=0.01)
    assert prob_b_beats_a(_arm(0, 0), _arm(0, 0)) == pytest.approx(0.5)


def test_z_test_and_report() -> None:
    z, p = two_proportion_z(_arm(10, 20), _arm(18, 20))
    assert z > 2.5 and p < 0.01
    assert two_proportion_z(_arm(0, 0), _arm(3, 5)) == (0.0, 1.0)
    out = report(_experiment(), _arm(4, 20, 0.5), _arm(17, 20, 0.85))
    assert out.significance.leader == "B" and out.significance.significant
    assert out.arms["B"].sequence == ["email_writer"] and out.arms["B"].success_rate == 0.85
    close = report(_experiment(), _arm(5, 10), _arm(6, 10))
    assert not close.significance.significant


def test_winner_needs_evidence_unless_given() -> None:
    with pytest.raises(NoEvidence):
        choose_winner(_arm(3, 3), _arm(0, 0), None)
    assert choose_winner(_arm(3, 3), _arm(0, 0), "B") == "B"
    assert choose_winner(_arm(9, 10), _arm(2, 10), None) == "A"
    assert choose_winner(_arm(5, 5, 0.7), _arm(5, 5, 0.9), None) == "B"


def test_rating_folds_into_quality_and_success() -> None:
    assert folded_quality(0.9, 1) == pytest.approx(0.45)
    assert folded_quality(0.9, 5) == pytest.approx(0.95)
    assert folded_success(True, 2, completed=True) is False
    assert folded_success(False, 4, completed=True) is True
    assert folded_success(False, 5, completed=False) is False
    assert folded_success(True, 3, completed=True) is True
    record = TaskRecord(goal="g", agent_sequence=["content"], success=True, result_quality=0.9)
    once = rated_record(record, critic_quality=0.9, rating=1, completed=True)
    twice = rated_record(once, critic_quality=0.9, rating=1, completed=True)
    assert once == twice and once.feedback_rating == 1 and not once.success


def test_rated_agents_are_distinct_and_in_stage_order() -> None:
    stages: list[dict[str, object]] = [
        {"stage_index": 1, "agent": "blog_writer", "task_type": "blog_writing"},
        {"stage_index": 0, "agent": "content", "task_type": "content_generation"},
        {"stage_index": 2, "agent": "content", "task_type": "content_generation"},
    ]
    assert rated_agents(stages) == [
        ("content_generation", "content"),
        ("blog_writing", "blog_writer"),
    ]
