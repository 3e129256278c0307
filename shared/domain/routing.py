"""Memory-aware routing: reuse a proven agent sequence when confident, else plan one.

The confidence is a calibrated estimate of the probability that the reused
sequence is right for the new goal, from features of the neighbours — not a
raw cosine. Its parameters live in `routing_params.json`, written by
`bench/fit_routing.py`; each workspace then corrects that global logit with
what its own outcomes taught it (`shared.domain.recalibration`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from shared.contract.events import Neighbour, Usage
from shared.domain.catalog import AgentCatalog
from shared.domain.llm_port import LLMProvider, LLMRequest
from shared.domain.recalibration import (
    DEFAULT_MODE,
    RecalibrationMode,
    WorkspaceCalibration,
    routed_confidence,
)

PARAMS_PATH = Path(__file__).with_name("routing_params.json")


FEATURE_NAMES: tuple[str, ...] = (
    "top_similarity", "agreement", "margin", "log_support", "log_distinct_sequences", "top_quality",
    "log_tasks_per_sequence", "unseen_rival", "centroid_similarity",
)


class RoutingParams(BaseModel):
    """Logistic calibration of reuse confidence (fitted offline on given data).

    One weight per name in FEATURE_NAMES; a weight absent from an older params
    file is 0, so the feature simply does not count.
    """

    intercept: float
    top_similarity: float
    agreement: float
    margin: float
    log_distinct_sequences: float
    top_quality: float
    log_support: float = 0.0
    log_tasks_per_sequence: float = 0.0
    unseen_rival: float = 0.0
    centroid_similarity: float = 0.0
    similarity_power: float = Field(default=4.0, description="Vote weight = similarity ** power.")
    fitted_on: str = ""
    fit_report: dict[str, Any] = Field(default_factory=dict, description="Held-out figures of the fit.")

    def weights(self) -> list[float]:
        return [float(getattr(self, name)) for name in FEATURE_NAMES]


@lru_cache(maxsize=1)
def load_params(path: str | None = None) -> RoutingParams:
    return RoutingParams.model_validate_json(Path(path or PARAMS_PATH).read_text())


class ReuseFeatures(BaseModel):
    """What the calibrator sees about one candidate sequence and its neighbours."""

    top_similarity: float
    agreement: float
    margin: float
    log_distinct_sequences: float
    top_quality: float
    log_support: float = 0.0
    log_tasks_per_sequence: float = 0.0
    unseen_rival: float = 0.0
    centroid_similarity: float = 0.0

    def values(self) -> list[float]:
        return [float(getattr(self, name)) for name in FEATURE_NAMES]


class ReuseCandidate(BaseModel):
    agent_sequence: list[str]
    confidence: float
    global_logit: float = Field(description="The global calibrator's logit, before the workspace's correction.")
    features: ReuseFeatures
    matched_goal_hash: str
    cost_usd: float | None = None


def vote(neighbours: Sequence[Neighbour], power: float) -> dict[tuple[str, ...], float]:
    """Similarity-weighted votes of the neighbours for each sequence."""
    votes: dict[tuple[str, ...], float] = {}
    for n in neighbours:
        weight = max(n.similarity, 0.0) ** power * max(n.quality, 0.05)
        key = tuple(n.agent_sequence)
        votes[key] = votes.get(key, 0.0) + weight
    return votes


def centroid_cosines(vector: npt.NDArray[Any], sums: Mapping[str, npt.NDArray[Any]]) -> dict[tuple[str, ...], float]:
    """Cosine of a request's vector to each sequence's centroid, from the sums of its
    tasks' vectors keyed by the sequence's JSON; sums of another dimension are skipped."""
    out: dict[tuple[str, ...], float] = {}
    query_norm = float(np.linalg.norm(vector))
    for sequence, total in sums.items():
        norm = float(np.linalg.norm(total)) * query_norm
        if norm > 0 and total.shape == vector.shape:
            out[tuple(json.loads(sequence))] = float(np.dot(vector, total)) / norm
    return out


def reuse_features(
    neighbours: Sequence[Neighbour], winner: tuple[str, ...], distinct_sequences: int,
    votes: dict[tuple[str, ...], float], stored_tasks: int | None = None,
    centroid_similarity: float | None = None,
) -> ReuseFeatures:
    """Features of reusing `winner`; `neighbours` sorted by similarity, most similar first.

    `log_support` counts the neighbours that back the winner: ten agreeing
    neighbours are stronger evidence than one neighbour that has no rival.
    `log_tasks_per_sequence` says how densely memory covers each sequence: with
    many examples per route a lone close match means more than with one or two.
    `unseen_rival`: when no rival is among the neighbours but memory holds more
    tasks than they are, a rival may lie just past the last of them, whose
    cosine bounds it; `margin` alone would count that rival as cosine 0.
    `centroid_similarity`: the request's cosine to the centroid of all of memory's
    tasks of `winner` (a request close to one example of a broad route but far from
    the route as a whole is often novel); unknown, it is the best supporter's cosine,
    the centroid of that one example.
    """
    distinct = max(distinct_sequences, 1)
    tasks = max(stored_tasks if stored_tasks is not None else distinct, 1)
    supporters = [n for n in neighbours if tuple(n.agent_sequence) == winner]
    rivals = [n for n in neighbours if tuple(n.agent_sequence) != winner]
    best = supporters[0]
    total = sum(votes.values())
    rival_sim = max(rivals[0].similarity, 0.0) if rivals else 0.0
    return ReuseFeatures(
        top_similarity=best.similarity,
        agreement=votes[winner] / total if total > 0 else 0.0,
        margin=best.similarity - rival_sim,
        log_distinct_sequences=math.log1p(distinct),
        top_quality=best.quality,
        log_support=math.log1p(len(supporters)),
        log_tasks_per_sequence=math.log(max(tasks / distinct, 1.0)),
        unseen_rival=max(neighbours[-1].similarity, 0.0) if not rivals and tasks > len(neighbours) else 0.0,
        centroid_similarity=best.similarity if centroid_similarity is None else centroid_similarity,
    )


def global_logit(features: ReuseFeatures, params: RoutingParams) -> float:
    return params.intercept + sum(
        w * x for w, x in zip(params.weights(), features.values(), strict=True)
    )


def confidence(
    features: ReuseFeatures, params: RoutingParams, calibration: WorkspaceCalibration | None = None,
    mode: RecalibrationMode = DEFAULT_MODE,
) -> float:
    """P(right): the global logit, corrected by the workspace's calibration as `mode` says."""
    return routed_confidence(global_logit(features, params), calibration, mode)


def _candidate(
    usable: Sequence[Neighbour], sequence: tuple[str, ...], distinct_sequences: int,
    votes: dict[tuple[str, ...], float], params: RoutingParams, stored_tasks: int | None,
    calibration: WorkspaceCalibration | None, mode: RecalibrationMode,
    centroids: Mapping[tuple[str, ...], float] | None,
) -> ReuseCandidate:
    features = reuse_features(usable, sequence, distinct_sequences, votes, stored_tasks,
                              None if centroids is None else centroids.get(sequence))
    matched = next(n for n in usable if tuple(n.agent_sequence) == sequence)
    logit = global_logit(features, params)
    conf = routed_confidence(logit, calibration, mode)
    return ReuseCandidate(
        agent_sequence=list(sequence),
        confidence=round(conf, 4),
        global_logit=round(logit, 6),
        features=features,
        matched_goal_hash=matched.goal_hash,
    )


def best_reuse(
    neighbours: Sequence[Neighbour], distinct_sequences: int, params: RoutingParams,
    *, cost: Callable[[list[str]], float] | None = None, cost_tolerance: float = 0.02,
    stored_tasks: int | None = None, calibration: WorkspaceCalibration | None = None,
    recalibration: RecalibrationMode = DEFAULT_MODE,
    centroids: Mapping[tuple[str, ...], float] | None = None,
) -> ReuseCandidate | None:
    """The sequence the neighbours vote for, with the calibrated confidence that it is right.

    With `cost`, a cheaper sequence whose confidence is within `cost_tolerance`
    of the voted one's is preferred: near-equal odds of being right, lower bill.
    With `calibration`, the confidence is the workspace's correction of the global one,
    applied as `recalibration` says ("full", "cautious": only lower, "off").
    `centroids`: the request's cosine to each sequence's centroid in memory, where known.
    """
    usable = [n for n in neighbours if n.success and n.agent_sequence]
    if not usable:
        return None
    usable.sort(key=lambda n: n.similarity, reverse=True)
    votes = vote(usable, params.similarity_power)
    winner = max(votes, key=lambda seq: votes[seq])
    best = _candidate(usable, winner, distinct_sequences, votes, params, stored_tasks, calibration,
                      recalibration, centroids)
    if cost is None:
        return best
    best.cost_usd = cost(best.agent_sequence)
    floor = best.confidence - cost_tolerance
    for sequence in votes:
        if sequence == winner:
            continue
        other = _candidate(
            usable, sequence, distinct_sequences, votes, params, stored_tasks, calibration,
            recalibration, centroids,
        )
        other.cost_usd = cost(other.agent_sequence)
        if other.confidence >= floor and other.cost_usd < best.cost_usd:
            best = other
    return best


class PlanError(ValueError):
    """The planner gave no valid sequence after one repair."""


class PlannedSequence(BaseModel):
    agent_sequence: list[str] = Field(min_length=1, max_length=8)
    reason: str = ""


def _parse_plan(text: str, catalog: AgentCatalog) -> PlannedSequence:
    try:
        plan = PlannedSequence.model_validate(json.loads(text))
    except (json.JSONDecodeError, ValueError) as exc:
        raise PlanError(f"plan is not valid JSON of the expected shape: {exc}") from exc
    unknown = catalog.unknown_agents(plan.agent_sequence)
    if unknown:
        raise PlanError(f"plan names unknown agents: {', '.join(unknown)}")
    return plan


async def plan_sequence(
    provider: LLMProvider, goal: str, catalog: AgentCatalog
) -> tuple[PlannedSequence, Usage]:
    """Ask the LLM planner; validate against the catalog; one repair attempt, then fail."""
    agents = "\n".join(f"- {a.name}: {a.description} (task types: {', '.join(a.task_types)})"
                       for a in catalog.agents)
    request = LLMRequest(
        purpose="plan",
        system="You plan which agents run, in order, to achieve a marketing goal. Use only "
        f"these agents:\n{agents}\nAnswer only with JSON: "
        '{"agent_sequence": ["agent", ...], "reason": "..."}',
        user=f"Goal: {goal}",
        json_schema=PlannedSequence.model_json_schema(),
        schema_name="plan",
        facts={"goal": goal, "agents": catalog.names},
        max_tokens=300,
    )
    reply = await provider.complete(request)
    usage = reply.usage
    try:
        return _parse_plan(reply.text, catalog), usage
    except PlanError as first:
        repair = request.model_copy(
            update={"user": f"Goal: {goal}\nYour previous answer was invalid: {first}. "
                    f"Use only: {', '.join(catalog.names)}."}
        )
        reply = await provider.complete(repair)
        usage = usage.plus(reply.usage)
        try:
            return _parse_plan(reply.text, catalog), usage
        except PlanError as second:
            raise PlanError(f"planner failed after one repair: {second}") from second


class RouteDecision(BaseModel):
    agent_sequence: list[str]
    source: Literal["memory", "planner", "requested", "experiment"]
    confidence: float
    neighbours: list[Neighbour] = Field(default_factory=list)
    matched_goal_hash: str | None = None
    reason: str
    provider: str
    usage: Usage = Field(default_factory=Usage)
    experiment_id: str | None = None
    experiment_arm: Literal["A", "B"] | None = None
    candidate_sequence: list[str] | None = Field(
        default=None, description="Memory's best candidate, reused or not (what the outcome labels).")
    candidate_logit: float | None = Field(
        default=None, description="The candidate's global calibrated logit (before the workspace's correction).")


def decide_without_planner(
    candidate: ReuseCandidate | None, threshold: float, catalog: AgentCatalog
) -> tuple[bool, str]:
    """Whether to reuse, and why (pure; the planner is only called when this says no)."""
    if candidate is None:
        return False, "no similar successful task in memory"
    unknown = catalog.unknown_agents(candidate.agent_sequence)
    if unknown:
        return False, f"remembered sequence uses agents no longer in the catalog: {unknown}"
    if candidate.confidence > threshold:
        return True, f"confidence {candidate.confidence:.2f} > {threshold:.2f}"
    return False, f"confidence {candidate.confidence:.2f} <= {threshold:.2f}"
