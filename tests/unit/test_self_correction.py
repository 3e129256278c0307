"""The loop's stopping rules, best-attempt keeping and budget, with a scripted LLM."""

import pytest

from shared.contract.events import Usage
from shared.contract.models import AgentContext, SelfCorrectionConfig
from shared.domain.catalog import load_catalog
from shared.domain.critique import CritiqueParseError
from shared.domain.self_correction import BudgetExhausted, SelfCorrector
from shared.llm.offline import OfflineProvider
from tests.fakes.llm import ScriptedProvider, critique_json

ASPECTS = ["clarity", "persuasiveness"]
AGENT = load_catalog().get("content")


def scores(value: float) -> str:
    return critique_json({a: value for a in ASPECTS})


async def run(
    provider, *, threshold=0.8, max_iterations=3, improvement=0.1, context=None, spent=None
):
    return await SelfCorrector(provider).run(
        agent=AGENT,
        goal="Write a blog post",
        inputs={},
        context=context or AgentContext(workspace_id="w"),
        config=SelfCorrectionConfig(
            max_iterations=max_iterations,
            min_quality_score=threshold,
            improvement_threshold=improvement,
            critique_aspects=ASPECTS,
        ),
        threshold=threshold,
        scope="t/0/0",
        spent_before=spent,
    )


async def test_stops_when_threshold_is_met():
    provider = ScriptedProvider(generate=["d1"], revise=["d2"], critique=[scores(0.6), scores(0.9)])
    result = await run(provider)
    meta = result.metadata
    assert (meta.iterations, meta.attempts, meta.threshold_met) == (2, 2, True)
    assert meta.stop_reason == "threshold_met" and result.output == "d2"
    assert meta.iteration_scores == [0.6, 0.9] and meta.usage.api_calls == 4


async def test_stops_early_when_improvement_is_small():
    provider = ScriptedProvider(
        generate=["d1"], revise=["d2", "d3"], critique=[scores(0.5), scores(0.55), scores(0.9)]
    )
    result = await run(provider)
    assert result.metadata.stop_reason == "small_improvement"
    assert result.metadata.iterations == 2 and not result.threshold_met


async def test_keeps_the_best_attempt_not_the_last():
    provider = ScriptedProvider(
        generate=["d1"], revise=["d2", "d3"], critique=[scores(0.5), scores(0.75), scores(0.6)]
    )
    result = await run(provider, improvement=0.0)
    assert result.output == "d2" and result.quality == 0.75
    assert result.metadata.best_iteration == 2 and result.metadata.iterations == 3


async def test_respects_max_iterations():
    provider = ScriptedProvider(generate=["d1"], revise=["d2"], critique=[scores(0.3), scores(0.6)])
    result = await run(provider, max_iterations=2)
    assert result.metadata.iterations == 2 and result.metadata.stop_reason == "max_iterations"


async def test_budget_is_task_wide_and_never_exceeded():
    context = AgentContext(workspace_id="w", budget_constraints={"max_api_calls": 5})
    provider = ScriptedProvider(generate=["d1"], revise=["d2"], critique=[scores(0.3), scores(0.4)])
    result = await run(provider, context=context, spent=Usage(api_calls=2))
    assert result.budget_exhausted and result.metadata.stop_reason == "budget_exhausted"
    assert len(provider.requests) <= 3
    with pytest.raises(BudgetExhausted):
        await run(ScriptedProvider(), context=context, spent=Usage(api_calls=4))


async def test_invalid_critique_gets_one_repair_then_a_clear_error():
    provider = ScriptedProvider(generate=["d1"], critique=["not json", scores(0.9)])
    result = await run(provider)
    assert result.threshold_met and provider.count("critique") == 2
    failing = ScriptedProvider(generate=["d1"], critique=["nope", '{"aspect_scores": {}}'])
    with pytest.raises(CritiqueParseError, match="after one repair"):
        await run(failing)


async def test_revision_prompt_carries_issues_and_previous_draft():
    provider = ScriptedProvider(
        generate=["FIRST DRAFT"],
        revise=["d2"],
        critique=[critique_json({a: 0.2 for a in ASPECTS}, ["Add a CTA"]), scores(0.95)],
    )
    await run(provider)
    revise = next(r for r in provider.requests if r.purpose == "revise")
    assert "Add a CTA" in revise.user and "FIRST DRAFT" in revise.user


async def test_brand_voice_reaches_the_critic():
    context = AgentContext(workspace_id="w", brand_voice={"tone": "playful"})
    provider = ScriptedProvider(generate=["d"], critique=[scores(0.9)])
    await run(provider, context=context)
    critique = next(r for r in provider.requests if r.purpose == "critique")
    assert "playful" in critique.system


async def test_offline_provider_improves_and_labels_itself():
    result = await run(OfflineProvider(), threshold=0.85)
    assert result.provider == "offline" and result.threshold_met
    assert result.metadata.iteration_scores[-1] > result.metadata.iteration_scores[0]
