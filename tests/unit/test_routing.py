import json

import numpy as np
import pytest

from shared.contract.events import Neighbour
from shared.domain.catalog import load_catalog
from shared.domain.routing import (
    PlanError,
    RoutingParams,
    best_reuse,
    centroid_cosines,
    decide_without_planner,
    load_params,
    plan_sequence,
)
from tests.fakes.llm import ScriptedProvider

CATALOG = load_catalog()


def n(sim, seq, quality=0.9, success=True):
    return Neighbour(goal_hash=f"h{sim}", similarity=sim, quality=quality, success=success,
                     agent_sequence=seq)


def test_no_neighbours_means_no_reuse():
    assert best_reuse([], 0, load_params()) is None
    reuse, reason = decide_without_planner(None, 0.8, CATALOG)
    assert not reuse and "no similar" in reason


def test_confidence_grows_with_similarity_and_agreement():
    params = load_params()
    close = best_reuse([n(0.9, ["content"]), n(0.85, ["content"])], 3, params)
    far = best_reuse([n(0.3, ["content"])], 3, params)
    split = best_reuse([n(0.9, ["content"]), n(0.89, ["research"])], 3, params)
    assert close and far and split
    assert close.confidence > far.confidence
    assert close.confidence > split.confidence


def test_vote_prefers_the_sequence_the_neighbours_agree_on():
    params = RoutingParams(intercept=0, top_similarity=1, agreement=1, margin=0,
                           log_distinct_sequences=0, top_quality=0)
    pick = best_reuse([n(0.8, ["a"]), n(0.79, ["b"]), n(0.78, ["b"]), n(0.77, ["b"])], 2, params)
    assert pick is not None and pick.agent_sequence == ["b"]


def test_unseen_rival_bounds_a_rival_only_where_memory_holds_more_than_the_neighbours():
    params = load_params()
    agreeing = [n(0.5, ["content"]), n(0.45, ["content"]), n(0.4, ["content"])]
    whole_memory = best_reuse(agreeing, 1, params, stored_tasks=3)
    more_beyond = best_reuse(agreeing, 1, params, stored_tasks=500)
    with_rival = best_reuse([*agreeing[:2], n(0.4, ["research"])], 2, params, stored_tasks=500)
    assert whole_memory and more_beyond and with_rival
    assert whole_memory.features.unseen_rival == 0.0
    assert more_beyond.features.unseen_rival == 0.4
    assert with_rival.features.unseen_rival == 0.0
    assert params.unseen_rival < 0, "a possible close rival should lower the confidence"


def test_centroid_similarity_is_the_cosine_to_the_sum_or_else_the_best_supporters():
    sums = {json.dumps(["a"]): np.array([3.0, 4.0]), json.dumps(["b"]): np.array([1.0, 0.0, 0.0])}
    assert centroid_cosines(np.array([1.0, 0.0]), sums) == {("a",): pytest.approx(0.6)}
    known = best_reuse([n(0.9, ["a"])], 1, load_params(), centroids={("a",): 0.3})
    unknown = best_reuse([n(0.9, ["a"])], 1, load_params())
    assert known and unknown
    assert known.features.centroid_similarity == 0.3
    assert unknown.features.centroid_similarity == 0.9
    assert known.confidence < unknown.confidence


def test_reuse_of_agents_gone_from_the_catalog_is_refused():
    pick = best_reuse([n(0.99, ["retired_agent"])], 1, load_params())
    reuse, reason = decide_without_planner(pick, 0.0, CATALOG)
    assert not reuse and "retired_agent" in reason


async def test_planner_output_is_validated_with_one_repair():
    provider = ScriptedProvider(plan=[json.dumps({"agent_sequence": ["ghost"]}),
                                      json.dumps({"agent_sequence": ["content", "blog_writer"]})])
    plan, usage = await plan_sequence(provider, "Write a blog", CATALOG)
    assert plan.agent_sequence == ["content", "blog_writer"] and usage.api_calls == 2
    assert "ghost" in provider.requests[1].user


async def test_planner_fails_clearly_after_the_repair():
    provider = ScriptedProvider(plan=["{}", json.dumps({"agent_sequence": ["ghost"]})])
    with pytest.raises(PlanError, match="after one repair"):
        await plan_sequence(provider, "Write a blog", CATALOG)
