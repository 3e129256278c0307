"""The per-workspace online recalibration math (shared.domain.recalibration), without Redis."""

import math
import random

import pytest
import typer

from raptorflow.eval_cli import recalibration_mode
from shared.contract.events import Neighbour
from shared.domain.recalibration import (
    DEFAULT_MODE,
    RECALIBRATION_MODES,
    RecalibrationConfig,
    RecalibrationMode,
    WorkspaceCalibration,
    outcome_of,
    prior,
    routed_confidence,
    sigmoid,
    update,
)
from shared.domain.routing import best_reuse, load_params
from shared.settings import Settings

NO_FORGETTING = RecalibrationConfig(prior_precision=1.0, forgetting=1.0)


def test_the_prior_is_the_global_model():
    state = prior()
    for z in (-4.0, -0.3, 0.0, 1.386, 3.0):
        assert state.confidence(z) == pytest.approx(sigmoid(z), abs=1e-12)
    assert WorkspaceCalibration.from_hash({}) == prior()


def test_wrong_outcomes_lower_and_right_outcomes_raise_the_confidence():
    wrong = right = prior()
    history = [prior().confidence(2.0)]
    for _ in range(5):
        wrong = update(wrong, 2.0, False)
        right = update(right, 2.0, True)
        history.append(wrong.confidence(2.0))
    assert history == sorted(history, reverse=True)  # each failure lowers it further
    assert right.confidence(2.0) > sigmoid(2.0) > wrong.confidence(2.0)
    assert wrong.outcomes == right.outcomes == 5


def test_many_outcomes_recover_the_workspace_true_correction():
    """Outcomes drawn from sigmoid(-0.8 + 0.6 z): the posterior mean converges to (a, b)."""
    rng = random.Random(4)
    state = prior(NO_FORGETTING)
    for _ in range(20_000):
        z = rng.uniform(-4.0, 5.0)
        state = update(state, z, rng.random() < sigmoid(-0.8 + 0.6 * z), NO_FORGETTING)
    assert state.a == pytest.approx(-0.8, abs=0.08)
    assert state.b == pytest.approx(0.6, abs=0.04)


def test_forgetting_keeps_the_prior_a_fixed_point_and_the_precision_bounded():
    config = RecalibrationConfig(prior_precision=5.0, forgetting=0.99)
    state = prior(config)
    for _ in range(3000):
        state = update(state, 0.0, True, config)
    # p(1-p) <= 1/4 per outcome, geometrically discounted: precision < p0 + 0.25 / (1 - f)
    assert state.paa < 5.0 + 0.25 / 0.01
    # a workspace whose outcomes then match the global model drifts back towards the prior
    flipped = state.a
    rng = random.Random(1)
    for _ in range(3000):
        z = rng.uniform(-3.0, 3.0)
        state = update(state, z, rng.random() < sigmoid(z), config)
    assert abs(state.a) < abs(flipped) and abs(state.a) < 0.3 and abs(state.b - 1.0) < 0.3


def test_state_survives_the_redis_hash():
    state = update(update(prior(), 1.5, False), -0.5, True)
    raw = {k.encode(): v.encode() for k, v in state.to_hash().items()}
    assert WorkspaceCalibration.from_hash(raw) == state


def test_outcome_labels():
    seq = ["content", "blog_writer"]
    # the candidate ran (or was planned identically) and succeeded: right
    assert outcome_of(seq, 2.0, seq, success=True).right is True  # type: ignore[union-attr]
    # the task succeeded with another sequence (or, in the eval, a novel row: none): wrong
    assert outcome_of(seq, 2.0, ["research"], success=True).right is False  # type: ignore[union-attr]
    assert outcome_of(seq, 2.0, [], success=True).right is False  # type: ignore[union-attr]
    # the candidate ran and failed: wrong
    assert outcome_of(seq, 2.0, seq, success=False).right is False  # type: ignore[union-attr]
    # a planned sequence failed: nothing is known about the candidate
    assert outcome_of(seq, 2.0, ["research"], success=False) is None
    # no candidate (requested sequence, experiment arm, empty memory): nothing to learn
    assert outcome_of(None, None, seq, success=True) is None


def test_router_confidence_is_the_workspace_correction_of_the_global_logit():
    neighbours = [Neighbour(goal_hash="h", similarity=0.63, quality=0.92, success=True,
                            agent_sequence=["content", "blog_writer"])]
    plain = best_reuse(neighbours, 1, load_params(), stored_tasks=1)
    learned = WorkspaceCalibration(a=-1.0, b=0.8, outcomes=40)
    corrected = best_reuse(neighbours, 1, load_params(), stored_tasks=1, calibration=learned,
                           recalibration="full")
    assert plain and corrected and plain.global_logit == corrected.global_logit
    assert plain.confidence == pytest.approx(sigmoid(plain.global_logit), abs=1e-4)
    assert corrected.confidence == pytest.approx(
        1 / (1 + math.exp(1.0 - 0.8 * plain.global_logit)), abs=1e-4)
    for mode in RECALIBRATION_MODES:
        assert best_reuse(neighbours, 1, load_params(), stored_tasks=1, calibration=prior(),
                          recalibration=mode) == plain


# --- routing_recalibration: how the learned correction is applied (routed_confidence) ---

EAGER = WorkspaceCalibration(a=1.0, b=1.0, outcomes=50)  # candidates right more often than said
CAREFUL = WorkspaceCalibration(a=-1.0, b=0.8, outcomes=50)  # reuses keep failing


@pytest.mark.parametrize("z", [-6.0, -1.0, 0.0, 0.9, 1.386, 3.0, 40.0])
def test_modes_off_full_and_cautious(z: float) -> None:
    for state in (EAGER, CAREFUL):
        assert routed_confidence(z, state, "off") == sigmoid(z)
        assert routed_confidence(z, state, "full") == state.confidence(z)
        assert routed_confidence(z, state, "cautious") == min(sigmoid(z), state.confidence(z))
        assert routed_confidence(z, state, "cautious") <= routed_confidence(z, state, "off")


def test_cautious_only_ever_lowers_the_global_confidence() -> None:
    # The case that raised CLINC150's false reuse: a workspace that learned to lift
    # mid-confidence candidates (global 0.75) over the 0.8 threshold.
    z = math.log(0.75 / 0.25)
    assert routed_confidence(z, EAGER, "full") > 0.8
    assert routed_confidence(z, EAGER, "cautious") == pytest.approx(0.75)
    # ... while a workspace whose reuses fail is made more careful in both modes.
    z = math.log(0.9 / 0.1)
    assert routed_confidence(z, CAREFUL, "cautious") == routed_confidence(z, CAREFUL, "full") < 0.8


def test_without_a_calibration_or_with_the_prior_every_mode_is_the_global_model() -> None:
    for mode in RECALIBRATION_MODES:
        for z in (-2.0, 0.5, 2.5):
            assert routed_confidence(z, None, mode) == sigmoid(z)
            assert routed_confidence(z, prior(), mode) == pytest.approx(sigmoid(z), abs=1e-12)


def test_cautious_is_monotone_in_the_global_logit() -> None:
    """The threshold still cuts one ranking: a higher global logit never routes with less confidence."""
    for state in (EAGER, CAREFUL, WorkspaceCalibration(a=0.3, b=0.4)):
        values = [routed_confidence(z / 10, state, "cautious") for z in range(-80, 81)]
        assert values == sorted(values)


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown recalibration mode"):
        routed_confidence(1.0, EAGER, "sometimes")  # type: ignore[arg-type]


def test_the_router_applies_the_mode() -> None:
    neighbours = [Neighbour(goal_hash="h", similarity=0.63, quality=0.92, success=True,
                            agent_sequence=["content", "blog_writer"])]
    params = load_params()

    def conf(state: WorkspaceCalibration, mode: RecalibrationMode) -> float:
        candidate = best_reuse(neighbours, 1, params, stored_tasks=1, calibration=state,
                               recalibration=mode)
        assert candidate is not None
        return candidate.confidence

    z = best_reuse(neighbours, 1, params, stored_tasks=1).global_logit  # type: ignore[union-attr]
    for state in (EAGER, CAREFUL):
        for mode in RECALIBRATION_MODES:
            assert conf(state, mode) == pytest.approx(routed_confidence(z, state, mode), abs=1e-4)
    assert conf(EAGER, "cautious") == conf(EAGER, "off") < conf(EAGER, "full")
    assert conf(CAREFUL, "cautious") == conf(CAREFUL, "full") < conf(CAREFUL, "off")


def test_the_setting_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAPTORFLOW_ROUTING_RECALIBRATION", raising=False)
    assert Settings().routing_recalibration == DEFAULT_MODE
    for mode in RECALIBRATION_MODES:
        monkeypatch.setenv("RAPTORFLOW_ROUTING_RECALIBRATION", mode)
        assert Settings().routing_recalibration == mode
    monkeypatch.setenv("RAPTORFLOW_ROUTING_RECALIBRATION", "eager")
    with pytest.raises(ValueError):
        Settings()


def test_eval_flags_map_to_a_mode() -> None:
    assert recalibration_mode("cautious", None, static=False) == "cautious"
    assert recalibration_mode("cautious", None, static=True) == "off"  # the old flag still works
    assert recalibration_mode("full", "off", static=True) == "off"
    for mode in RECALIBRATION_MODES:
        assert recalibration_mode("full", mode, static=False) == mode
    with pytest.raises(typer.BadParameter):
        recalibration_mode("full", "full", static=True)
    with pytest.raises(typer.BadParameter):
        recalibration_mode("full", "sometimes", static=False)
