"""Per-workspace online recalibration of the router's reuse confidence (pure math, no I/O).

The global calibrator (`routing_params.json`) is fitted on other data, and one
shared model cannot be right everywhere: on UltraTool, requests that look alike
often need different tools, and its 0.85 means about 0.68. Each workspace
therefore learns a Platt-style correction of the global logit z from the
outcomes of its own routing decisions:

    confidence = sigmoid(a + b * z),   (a, b) ~ Normal(mean, precision^-1)

The prior is (a, b) = (0, 1) -- exactly the global model -- so a workspace with
few outcomes is routed as the global model says, and every outcome moves it a
little (one Newton step of Bayesian logistic regression with a Laplace
approximation: the state is 2 means, 3 precision entries and a count). Before
each update the posterior is blended back towards the prior (exponential
forgetting), so the correction follows a workspace whose memory, and with it
the global model's calibration, changes as it grows.

The label of an outcome: was the candidate the router computed (reused or
not) the sequence the task succeeded with? See `outcome_of`.

How the correction is used is the `routing_recalibration` setting (see
`routed_confidence`, the one function the router and the eval both call):
"full" uses it as is, "cautious" only lets it LOWER the global confidence (a
false reuse costs more than a planner call), "off" ignores it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, Field

LOGIT_LIMIT = 30.0

RecalibrationMode = Literal["off", "cautious", "full"]
RECALIBRATION_MODES: tuple[RecalibrationMode, ...] = ("off", "cautious", "full")
DEFAULT_MODE: RecalibrationMode = "full"


class RecalibrationConfig(BaseModel):
    """How strongly a workspace's correction holds to the global model, and how long it remembers."""

    prior_precision: float = Field(
        default=5.0, gt=0,
        description="Precision of the prior on a and b; about 20 outcomes' worth near p = 0.5.",
    )
    forgetting: float = Field(
        default=0.995, gt=0, le=1,
        description="Weight kept by the posterior at each outcome (memory ~ 1/(1-f) = 200 outcomes).",
    )


DEFAULT_CONFIG = RecalibrationConfig()


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0)))


def _clip(z: float) -> float:
    return max(min(z, LOGIT_LIMIT), -LOGIT_LIMIT)


class WorkspaceCalibration(BaseModel):
    """Posterior of one workspace's correction: mean (a, b) and precision [[paa, pab], [pab, pbb]]."""

    a: float = 0.0
    b: float = 1.0
    paa: float = DEFAULT_CONFIG.prior_precision
    pab: float = 0.0
    pbb: float = DEFAULT_CONFIG.prior_precision
    outcomes: int = 0

    def logit(self, global_logit: float) -> float:
        """The workspace's logit for a candidate whose global calibrated logit is `global_logit`."""
        return self.a + self.b * _clip(global_logit)

    def confidence(self, global_logit: float) -> float:
        return sigmoid(self.logit(global_logit))

    def to_hash(self) -> dict[str, str]:
        return {name: repr(value) for name, value in self.model_dump().items()}

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes] | Mapping[str, str]) -> WorkspaceCalibration:
        """The stored state; an empty hash (a new workspace) is the prior."""
        data = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        return cls.model_validate({k: v for k, v in data.items() if k in cls.model_fields})


def routed_confidence(
    global_logit: float, calibration: WorkspaceCalibration | None, mode: RecalibrationMode,
) -> float:
    """The confidence the router compares with its reuse threshold, for one candidate.

    "off": the global model, sigmoid(z). "full": the workspace's correction,
    sigmoid(a + b·z). "cautious": the smaller of the two, so outcomes can make a
    workspace more careful but never more eager than the global model. Without a
    calibration (an empty memory, nothing learned to apply) every mode is sigmoid(z).
    """
    plain = sigmoid(global_logit)
    if calibration is None or mode == "off":
        return plain
    corrected = calibration.confidence(global_logit)
    if mode == "cautious":
        return min(plain, corrected)
    if mode == "full":
        return corrected
    raise ValueError(f"unknown recalibration mode {mode!r}; expected one of {RECALIBRATION_MODES}")


def prior(config: RecalibrationConfig = DEFAULT_CONFIG) -> WorkspaceCalibration:
    return WorkspaceCalibration(paa=config.prior_precision, pbb=config.prior_precision)


def _forget(state: WorkspaceCalibration, config: RecalibrationConfig) -> WorkspaceCalibration:
    """posterior^f * prior^(1-f): precision and precision-weighted mean blend towards the prior."""
    f, p0 = config.forgetting, config.prior_precision
    if f >= 1.0:
        return state
    paa, pab, pbb = f * state.paa + (1 - f) * p0, f * state.pab, f * state.pbb + (1 - f) * p0
    ha = f * (state.paa * state.a + state.pab * state.b)  # + (1 - f) * p0 * 0 (prior a = 0)
    hb = f * (state.pab * state.a + state.pbb * state.b) + (1 - f) * p0 * 1.0
    det = paa * pbb - pab * pab
    return state.model_copy(update={
        "a": (pbb * ha - pab * hb) / det, "b": (paa * hb - pab * ha) / det,
        "paa": paa, "pab": pab, "pbb": pbb,
    })


def update(
    state: WorkspaceCalibration, global_logit: float, right: bool,
    config: RecalibrationConfig = DEFAULT_CONFIG,
) -> WorkspaceCalibration:
    """Fold one outcome in: was the candidate with this global logit right?"""
    s = _forget(state, config)
    z = _clip(global_logit)
    p = sigmoid(s.a + s.b * z)
    w = p * (1.0 - p)
    paa, pab, pbb = s.paa + w, s.pab + w * z, s.pbb + w * z * z
    det = paa * pbb - pab * pab
    residual = (1.0 if right else 0.0) - p
    # mean += precision^-1 @ (1, z) * residual
    da = (pbb - pab * z) / det * residual
    db = (paa * z - pab) / det * residual
    return WorkspaceCalibration(a=s.a + da, b=s.b + db, paa=paa, pab=pab, pbb=pbb,
                                outcomes=state.outcomes + 1)


class CalibrationOutcome(BaseModel):
    """One labelled routing decision: the candidate's global logit and whether it was right."""

    global_logit: float
    right: bool


def outcome_of(
    candidate_sequence: Sequence[str] | None, candidate_logit: float | None,
    final_sequence: Sequence[str], success: bool,
) -> CalibrationOutcome | None:
    """The label of a finished task's routing decision, or None when it says nothing.

    Right: the task succeeded with exactly the candidate. Wrong: it succeeded
    with another sequence (the planner's, or none fits), or the candidate itself
    ran and failed. A planned sequence that failed says nothing about a
    candidate that was not tried; a task routed without a candidate (requested
    sequence, experiment arm, empty memory) has nothing to learn from.
    """
    if candidate_sequence is None or candidate_logit is None:
        return None
    same = list(candidate_sequence) == list(final_sequence)
    if not success and not same:
        return None
    return CalibrationOutcome(global_logit=candidate_logit, right=success and same)
