"""The event-driven correction loop's pure steps: the same stopping rules as SelfCorrector.run,
usage of an attempt, the best attempt kept; the catalog's kinds; the selector and live workers."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.corrector import loop
from services.selector import logic as selector
from shared.contract.events import (
    AgentResult,
    CorrectionLoop,
    RoutingInfo,
    StageCleared,
    Usage,
    Workflow,
)
from shared.contract.models import SelfCorrectionConfig
from shared.domain.bandit import BanditConfig
from shared.domain.catalog import AgentSpec, load_catalog
from shared.domain.critique import Critique

CONFIG = SelfCorrectionConfig(max_iterations=3, improvement_threshold=0.05)


def state(scores: list[float], threshold: float = 0.8) -> CorrectionLoop:
    return CorrectionLoop(
        threshold=threshold, scope="t/0/0", iteration=max(len(scores), 1), scores=scores,
        started_at=time.time(),
    )  # fmt: skip


@pytest.mark.parametrize(
    "scores,allows,expected",
    [
        ([0.85], True, ("complete", "threshold_met")),
        ([0.5], True, ("invoke", "")),
        ([0.5, 0.52], True, ("complete", "small_improvement")),
        ([0.5, 0.6, 0.7], True, ("complete", "max_iterations")),
        ([0.5], False, ("complete", "budget_exhausted")),
    ],
)
def test_decide_applies_the_loops_stopping_rules(scores, allows, expected):
    decision = loop.decide(state(scores), CONFIG, allows)
    assert (decision.step, decision.stop_reason) == expected


def test_the_best_attempt_is_kept_not_the_last():
    s = state([], 0.9).model_copy(update={"iteration": 1})
    first = loop.new_record(s, Critique(aspect_scores={"clarity": 0.8, "accuracy": 0.8,
        "completeness": 0.8, "persuasiveness": 0.8, "brand_alignment": 0.8}, issues=["x"],
        critique="ok"), SelfCorrectionConfig())  # fmt: skip
    s = loop.record_critique(s, "draft one", first)
    s = s.model_copy(update={"iteration": 2})
    worse = first.model_copy(update={"score": 0.4, "iteration": 2})
    s = loop.record_critique(s, "draft two", worse)
    assert s.best_output == "draft one" and s.best_iteration == 1 and s.scores[-1] == 0.4


def test_an_attempt_counts_at_least_one_call_and_the_catalog_price_when_unreported():
    spec = AgentSpec(name="w", kind="worker", task_types=["research"], cost_per_call_usd=0.01)
    bare = AgentResult(invocation_id="i", agent="w", output="x")
    assert loop.result_usage(bare, spec) == Usage(api_calls=1, cost_usd=0.01)
    reported = bare.model_copy(update={"usage": Usage(api_calls=2, cost_usd=0.5)})
    assert loop.result_usage(reported, spec).cost_usd == 0.5


def test_a_reviewer_revision_starts_from_the_draft_they_saw():
    workflow = Workflow(task_id="t", goal="g", agent_sequence=["w"],
                        routing=RoutingInfo(source="requested", confidence=1))  # fmt: skip
    cleared = StageCleared(workflow=workflow, agent="w", task_type="research",
                           revision_comments=["shorter"], previous_output="old")  # fmt: skip
    spec = AgentSpec(name="w", kind="worker", task_types=["research"], timeout_s=5)
    invoked = loop.first_invocation(cleared, spec, state([]), reply_to="rf:stream:AgentResult",
                                    now=datetime.now(UTC))  # fmt: skip
    assert invoked.draft == "old" and invoked.issues == ["reviewer: shorter"]
    again = loop.retry(invoked, spec, datetime.now(UTC))
    assert again.attempt == 2 and again.invocation_id != invoked.invocation_id


@pytest.mark.parametrize(
    "payload",
    [
        {"invocation_id": "i", "agent": "w"},  # neither output nor error
        {"invocation_id": "i", "agent": "w", "output": "x", "error": "y"},
        {"invocation_id": "i", "agent": "w", "output": "   "},
        {"invocation_id": "i", "agent": "w", "output": "x", "self_score": 2},
        {"invocation_id": "i", "agent": "w", "output": "x", "extra": 1},
    ],
)
def test_invalid_agent_results_are_refused(payload):
    with pytest.raises(ValidationError):
        AgentResult.model_validate(payload)


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "llm"},  # no prompt
        {"kind": "http"},  # no url
        {"kind": "worker", "url": "https://x.example"},
        {"kind": "worker", "tools": ["t"]},
        {"kind": "llm", "prompt": "p", "tools": ["mcp:nosrv/x"]},
        {"kind": "llm", "prompt": "p", "tools": ["t", "t"]},
        {"kind": "worker", "timeout_s": 0},
    ],
)
def test_invalid_agent_specs_are_refused(fields):
    with pytest.raises(ValidationError):
        AgentSpec.model_validate({"name": "a", "task_types": ["research"], **fields})


def test_a_tool_must_be_a_worker_or_http_agent():
    base = load_catalog()
    tool = AgentSpec(name="t", kind="worker", task_types=["research"])
    user = AgentSpec(name="u", task_types=["research"], prompt="p", tools=["t"])
    assert "u" in base.merged([tool, user]).names
    with pytest.raises(ValueError):
        base.merged([user.model_copy(update={"tools": ["content"]})])


def test_the_selector_passes_over_dead_workers_and_keeps_requested_agents():
    catalog = load_catalog().merged([AgentSpec(name="w", kind="worker", task_types=["research"])])
    planned = Workflow(task_id="t", goal="g", agent_sequence=["w"],
                       routing=RoutingInfo(source="planner", confidence=0.5))  # fmt: skip
    assert selector.workers_to_check(planned, catalog) == ["w"]
    rng, config = random.Random(1), BanditConfig()
    dead = selector.select_for_stage(planned, catalog, {}, 0, rng, config, dead=frozenset({"w"}))
    assert dead.agent != "w"
    requested = planned.model_copy(
        update={"routing": RoutingInfo(source="requested", confidence=1)}
    )
    kept = selector.select_for_stage(requested, catalog, {}, 0, rng, config)
    assert kept.agent == "w" and kept.reason == "requested"
    swapped = selector.select_for_stage(
        requested, catalog, {}, 0, rng, config, dead=frozenset({"w"})
    )
    assert swapped.agent != "w"
