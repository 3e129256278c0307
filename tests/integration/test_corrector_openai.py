"""The self-correction loop through the REAL `openai` client, over HTTP, to a scripted server.

Why: the loop's stopping rules, budget and cost accounting, retries, timeouts and the
structured-output fallback all depend on what the official client sends and receives,
so these tests point `OpenAIProvider` (built from settings) at ScriptedOpenAIServer
instead of faking the provider. The Redis-backed tests run the memory service, the
gateway and the whole stack on a real Redis.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from raptorflow.redis_server import running_redis
from raptorflow.stack import LocalStack, wait_for_task
from services.gateway.app import create_app
from shared.app.runtime import build_deps
from shared.contract.events import (
    CritiqueDone,
    TaskRequested,
    Usage,
    new_envelope,
)
from shared.contract.keys import goal_hash
from shared.contract.models import AgentContext, SelfCorrectionConfig
from shared.domain.catalog import load_catalog
from shared.domain.critique import CritiqueParseError
from shared.domain.llm_port import LLMError
from shared.domain.self_correction import BudgetExhausted, SelfCorrectionResult, SelfCorrector
from shared.llm.openai_provider import OpenAIProvider, cost_usd
from shared.messaging.bus import publish
from shared.settings import Settings
from tests.fakes.openai_script import COMPLETION_TOKENS, PROMPT_TOKENS, PurposeScript
from tests.fakes.openai_server import ScriptedOpenAIServer, delay, error, malformed
from tests.helpers import KEYS, PLAIN, events_of_task, settings_for

ASPECTS = ["clarity", "persuasiveness"]
AGENT = load_catalog().get("content")
PROMPT_PRICE, COMPLETION_PRICE = 0.001, 0.002
CALL_COST = PROMPT_TOKENS / 1000 * PROMPT_PRICE + COMPLETION_TOKENS / 1000 * COMPLETION_PRICE
NO_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer() as srv:
        yield srv


def openai_settings(server: ScriptedOpenAIServer, redis_url: str = NO_REDIS, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_provider": "openai",
        "openai_base_url": server.base_url,
        "openai_api_key": "test",
        "llm_model": "fake-model",
        "llm_max_retries": 2,
        "llm_timeout_s": 5.0,
        "price_per_1k_prompt_usd": PROMPT_PRICE,
        "price_per_1k_completion_usd": COMPLETION_PRICE,
        **kw,
    }
    return settings_for(redis_url, **values)


async def run_loop(
    server: ScriptedOpenAIServer,
    script: PurposeScript | None,
    *,
    threshold: float = 0.8,
    max_iterations: int = 3,
    improvement: float = 0.1,
    aspects: list[str] | None = None,
    weights: dict[str, float] | None = None,
    context: AgentContext | None = None,
    spent: Usage | None = None,
    settings: Settings | None = None,
) -> SelfCorrectionResult:
    if script is not None:
        server.responder = script
    provider = OpenAIProvider(settings or openai_settings(server))
    try:
        return await SelfCorrector(provider).run(
            agent=AGENT,
            goal="Write a blog post about AI in healthcare",
            inputs={},
            context=context or AgentContext(workspace_id="w"),
            config=SelfCorrectionConfig(
                max_iterations=max_iterations,
                min_quality_score=threshold,
                improvement_threshold=improvement,
                critique_aspects=aspects or ASPECTS,
                aspect_weights=weights or {},
            ),
            threshold=threshold,
            scope="t/0/0",
            spent_before=spent,
        )
    finally:
        await provider.close()


def purposes(server: ScriptedOpenAIServer) -> list[str]:
    from tests.fakes.openai_script import purpose_of

    return [purpose_of(r["json"]) for r in server.chat_requests]


# --------------------------------------------------------------------------- the loop


async def test_stops_at_threshold_and_counts_usage_from_the_api(server):
    result = await run_loop(server, PurposeScript(scores=[0.6, 0.9]))
    meta = result.metadata
    assert (meta.iterations, meta.attempts, meta.threshold_met) == (2, 2, True)
    assert meta.stop_reason == "threshold_met" and result.output.startswith("DRAFT v2")
    assert meta.iteration_scores == [0.6, 0.9] and result.provider == "openai"
    assert purposes(server) == ["generate", "critique", "revise", "critique"]
    assert meta.usage.api_calls == 4
    assert (meta.usage.prompt_tokens, meta.usage.completion_tokens) == (400, 200)
    assert meta.usage.cost_usd == pytest.approx(4 * CALL_COST)
    critique_request = server.chat_requests[1]["json"]
    fmt = critique_request["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "critique"
    assert fmt["json_schema"]["schema"]["properties"]["aspect_scores"]["required"] == ASPECTS


async def test_stops_early_when_an_iteration_improves_too_little(server):
    result = await run_loop(server, PurposeScript(scores=[0.5, 0.55, 0.9]))
    assert result.metadata.stop_reason == "small_improvement"
    assert result.metadata.iteration_scores == [0.5, 0.55] and not result.threshold_met
    assert purposes(server).count("critique") == 2


async def test_keeps_the_best_attempt_not_the_last(server):
    result = await run_loop(server, PurposeScript(scores=[0.5, 0.75, 0.6]), improvement=0.0)
    assert result.output.startswith("DRAFT v2") and result.quality == 0.75
    assert result.metadata.best_iteration == 2 and result.metadata.iterations == 3
    assert result.metadata.final_quality_score == 0.75


async def test_respects_max_iterations_without_a_wasted_revision(server):
    result = await run_loop(server, PurposeScript(scores=[0.3, 0.5, 0.7]), max_iterations=2)
    assert result.metadata.iterations == 2 and result.metadata.stop_reason == "max_iterations"
    assert purposes(server) == ["generate", "critique", "revise", "critique"]


async def test_call_budget_is_task_wide_and_never_exceeded(server):
    context = AgentContext(workspace_id="w", budget_constraints={"max_api_calls": 5})
    script = PurposeScript(scores=[0.3, 0.5, 0.7])
    result = await run_loop(server, script, context=context, spent=Usage(api_calls=2))
    assert result.budget_exhausted and result.metadata.stop_reason == "budget_exhausted"
    assert len(server.chat_requests) == 2  # 2 spent before + 2 here; a revision needs 2 more
    with pytest.raises(BudgetExhausted):
        await run_loop(server, script, context=context, spent=Usage(api_calls=4))
    assert len(server.chat_requests) == 2


async def test_cost_budget_stops_before_a_call_that_would_exceed_it(server):
    limit = 3.5 * CALL_COST
    context = AgentContext(workspace_id="w", budget_constraints={"max_cost_usd": limit})
    result = await run_loop(server, PurposeScript(scores=[0.3, 0.5]), context=context)
    assert result.budget_exhausted and result.metadata.usage.api_calls == 2
    assert result.metadata.usage.cost_usd <= limit


async def test_weighted_score_and_brand_voice_reach_the_critic(server):
    context = AgentContext(workspace_id="w", brand_voice={"tone": "playful", "style": "punchy"})
    script = PurposeScript(scores=[0.9], aspect_overrides={"brand_alignment": 0.3})
    result = await run_loop(
        server,
        script,
        threshold=0.5,
        aspects=["clarity", "brand_alignment"],
        weights={"brand_alignment": 3.0},
        context=context,
    )
    assert result.quality == pytest.approx((0.9 + 3 * 0.3) / 4)
    assert result.metadata.aspect_scores == {"clarity": 0.9, "brand_alignment": 0.3}
    system = server.chat_requests[1]["json"]["messages"][0]["content"]
    assert "playful" in system and "punchy" in system and "brand_alignment" in system


async def test_revision_prompt_carries_every_issue_and_the_previous_draft(server):
    await run_loop(server, PurposeScript(scores=[0.5, 0.9]))
    revise = next(r["json"] for r in server.chat_requests if "revising" in str(r["json"]))
    user = revise["messages"][1]["content"]
    assert "1. [clarity]" in user and "2. [persuasiveness]" in user and "DRAFT v1" in user


# --------------------------------------------------------------------------- structured output


async def test_falls_back_to_json_in_the_prompt_when_the_server_rejects_the_schema(server):
    script = PurposeScript(scores=[0.5, 0.9], reject_structured_outputs=True)
    result = await run_loop(server, script)
    assert result.threshold_met and result.metadata.usage.api_calls == 4
    critiques = [r["json"] for r in server.chat_requests if "senior editor" in str(r["json"])]
    assert ["response_format" in c for c in critiques] == [True, False, False]
    assert "JSON schema" in critiques[1]["messages"][0]["content"]


async def test_invalid_critique_gets_one_repair(server):
    script = PurposeScript(scores=[0.9])
    server.enqueue(script.reply("DRAFT v1: first"), malformed())
    result = await run_loop(server, script)
    assert result.threshold_met and purposes(server).count("critique") == 2
    repair = server.chat_requests[2]["json"]["messages"][1]["content"]
    assert "previous answer was invalid" in repair


async def test_invalid_critique_twice_is_a_clear_error(server):
    script = PurposeScript(scores=[0.9])
    server.enqueue(script.reply("DRAFT v1: first"), malformed(), script.reply('{"issues": []}'))
    with pytest.raises(CritiqueParseError, match="after one repair"):
        await run_loop(server, script)


# --------------------------------------------------------------------------- resilience and cost


async def test_retries_429_honouring_retry_after(server):
    server.enqueue(error(429, retry_after_ms=10))
    result = await run_loop(server, PurposeScript(scores=[0.9]))
    assert result.threshold_met and result.metadata.usage.api_calls == 2
    first, retry = server.chat_requests[:2]
    assert [
        first["headers"]["x-stainless-retry-count"],
        retry["headers"]["x-stainless-retry-count"],
    ] == ["0", "1"]
    assert retry["time"] - first["time"] < 0.4  # 10 ms asked, not the 0.5 s+ default backoff


async def test_gives_up_after_the_client_retries_with_a_clear_error(server):
    server.enqueue(*(error(500, retry_after_ms=10) for _ in range(3)))
    with pytest.raises(LLMError) as caught:
        await run_loop(server, PurposeScript(scores=[0.9]))
    message = str(caught.value)
    assert "generate call" in message and "fake-model" in message and "HTTP 500" in message
    assert "client retries: 2" in message and len(server.chat_requests) == 3


async def test_times_out_with_a_clear_error(server):
    server.enqueue(delay(3.0, then="too late"))
    started = time.monotonic()
    settings = openai_settings(server, llm_timeout_s=0.2, llm_max_retries=0)
    with pytest.raises(LLMError, match="APITimeoutError"):
        await run_loop(server, PurposeScript(scores=[0.9]), settings=settings)
    assert time.monotonic() - started < 2.0


def test_price_table_picks_the_model_row_then_the_longest_prefix():
    settings = settings_for(
        NO_REDIS, price_table={"fake": (0.01, 0.02), "fake-model-x": (1.0, 1.0)}
    )
    assert cost_usd(settings, 1000, 1000, "fake-model") == pytest.approx(0.03)
    assert cost_usd(settings, 1000, 0, "fake-model-x-2") == pytest.approx(1.0)
    assert cost_usd(settings, 1000, 1000, "other") == pytest.approx(0.00075)


# --------------------------------------------------------------------------- gateway, real Redis


@pytest.fixture
async def gateway(server, redis_url):
    settings = openai_settings(server, redis_url)
    deps = await build_deps(settings)
    assert deps.provider.name == "openai"
    app = create_app(settings, deps)
    app.state.deps = deps
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as client:
        yield client
    await deps.close()


async def test_http_self_correct_returns_the_seeds_metadata(server, gateway, redis, workspace):
    server.responder = PurposeScript(scores=[0.6, 0.87])
    config = {
        "max_iterations": 3,
        "min_quality_score": 0.85,
        "improvement_threshold": 0.1,
        "critique_aspects": ["clarity", "persuasiveness", "brand_alignment"],
    }
    response = await gateway.post(
        "/execute/self-correct",
        json={
            "agent_name": "content",
            "payload": {"goal": "Generate blog post", "topic": "AI in healthcare"},
            "workspace_id": workspace,
            "config": config,
            "brand_voice": {"tone": "professional"},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    meta = body["self_correction_metadata"]
    assert list(meta)[:4] == ["iterations", "final_quality_score", "threshold_met", "attempts"]
    assert (meta["iterations"], meta["final_quality_score"], meta["threshold_met"]) == (
        2,
        0.87,
        True,
    )
    assert meta["attempts"] == 2 and meta["iteration_scores"] == [0.6, 0.87]
    assert set(meta["aspect_scores"]) == set(config["critique_aspects"])
    assert meta["usage"]["api_calls"] == 4 and meta["usage"]["prompt_tokens"] == 400
    assert meta["usage"]["cost_usd"] == pytest.approx(4 * CALL_COST)
    assert body["provider"] == "openai" and body["threshold"] == 0.85
    published = [
        json.loads(f[b"__data__"]) for _, f in await redis.xrange(PLAIN.stream("CritiqueDone"))
    ]
    mine = [e for e in published if e["correlation_id"] == body["correlation_id"]]
    assert [e["payload"]["iteration"] for e in mine] == [1, 2]
    assert {e["payload"]["threshold"] for e in mine} == {0.85}


async def test_http_self_correct_answers_502_naming_the_llm_failure(server, gateway, workspace):
    server.enqueue(*(error(503, retry_after_ms=10) for _ in range(3)))
    response = await gateway.post(
        "/execute/self-correct",
        json={"agent_name": "content", "payload": {"goal": "g"}, "workspace_id": workspace},
    )
    assert response.status_code == 502
    assert "llm_error" in response.json()["detail"] and "HTTP 503" in response.json()["detail"]


# --------------------------------------------------------------------------- the whole stack


async def submit(redis: Redis, workspace: str, goal: str, **fields: Any) -> str:
    context_fields = {k: fields.pop(k) for k in ("budget_constraints",) if k in fields}
    event = new_envelope(
        TaskRequested(goal=goal, **fields),
        workspace_id=workspace,
        context=AgentContext(workspace_id=workspace, **context_fields),
    )
    await publish(redis, PLAIN, [event])
    return event.correlation_id


async def finished(stack: LocalStack, redis: Redis, workspace: str, task_id: str) -> dict[str, str]:
    """The task's final view; on a timeout, fail showing which events the task got."""
    assert stack.deps is not None
    try:
        return await wait_for_task(stack.deps, workspace, task_id, timeout=30)
    except TimeoutError as exc:
        got = [e["type"] for e in await events_of_task(redis, task_id)]
        dead = [f[b"__data__"][:300] for _, f in await redis.xrange(PLAIN.dead_letters()[0])]
        raise AssertionError(f"{exc}; events: {got}; dead letters: {dead}") from exc


async def stage_views(redis: Redis, workspace: str, task_id: str) -> list[dict[str, Any]]:
    raw = await redis.hgetall(KEYS.task_stages(workspace, task_id))
    return sorted((json.loads(v) for v in raw.values()), key=lambda s: s["stage_index"])


@pytest.fixture
async def own_redis() -> AsyncIterator[tuple[str, Redis]]:
    """A Redis of this test alone: the server must see only this task's calls, never those
    of tasks other tests left on the session's streams."""
    with running_redis() as server:
        client = Redis.from_url(server.url)
        try:
            yield server.url, client
        finally:
            await client.aclose()


@pytest.mark.slow
async def test_full_task_over_every_service_with_the_openai_provider(server, own_redis, workspace):
    redis_url, redis = own_redis
    script = PurposeScript(scores=[0.6, 0.9], plan=["content"])
    server.responder = script
    async with LocalStack(openai_settings(server, redis_url), start_redis=False) as stack:
        assert stack.deps is not None and stack.deps.provider.name == "openai"
        task_id = await submit(redis, workspace, "Create a blog post about AI in healthcare")
        view = await finished(stack, redis, workspace, task_id)

    assert view["status"] == "completed", view
    assert view["providers"] == "openai" and json.loads(view["success"]) is True
    usage = json.loads(view["usage"])
    assert usage["api_calls"] == len(server.chat_requests) == 5  # plan + 4 loop calls
    assert usage["cost_usd"] == pytest.approx(5 * CALL_COST)
    (stage,) = await stage_views(redis, workspace, task_id)
    assert stage["provider"] == "openai" and stage["usage"]["api_calls"] == 4
    assert stage["self_correction_metadata"]["iteration_scores"] == [0.6, 0.9]

    critique_keys = [k async for k in redis.scan_iter(match=f"memory:critique:{workspace}:*")]
    assert len(critique_keys) == 2
    for key in critique_keys:
        fields = await redis.hgetall(key)
        assert fields[b"content_id"].decode() == key.decode().rsplit(":", 1)[1]
        assert fields[b"issue_count"] == b"2" and len(json.loads(fields[b"issues"])) == 2
        assert fields[b"critique"] and fields[b"provider"] == b"openai"
        assert 6 * 86400 < await redis.ttl(key) <= 7 * 86400


@pytest.mark.slow
async def test_budget_and_failures_end_tasks_clearly_and_are_remembered(
    server, own_redis, workspace
):
    redis_url, redis = own_redis
    script = PurposeScript(scores=[0.3, 0.5, 0.7])
    failing_critic = {"on": False}

    def responder(body: dict[str, Any]) -> Any:
        if failing_critic["on"] and "senior editor" in str(body["messages"][0]["content"]):
            return error(500, retry_after_ms=10)
        return script(body)

    server.responder = responder
    strict = {"max_iterations": 3, "min_quality_score": 0.95, "improvement_threshold": 0.0}
    settings = openai_settings(server, redis_url, llm_max_retries=1)
    async with LocalStack(settings, start_redis=False) as stack:
        assert stack.deps is not None
        # 1. Budget: 5 calls for two stages. Stage 0 stops after 4 (a revision needs 2),
        #    keeping its best; stage 1 cannot start, so the task fails without a 6th call.
        budget_goal = "Research and write about AI budgets"
        budget_task = await submit(
            redis,
            workspace,
            budget_goal,
            agent_sequence=["research", "content"],
            self_correction=SelfCorrectionConfig(**strict),
            budget_constraints={"max_api_calls": 5},
        )
        budget_view = await finished(stack, redis, workspace, budget_task)
        budget_calls = len(server.chat_requests)

        # 2. Below threshold after an early stop: completes unsuccessful, stored as failed.
        script.scores = [0.4, 0.45]
        low_goal = "Write a short blog about quiet quality"
        low_task = await submit(redis, workspace, low_goal, agent_sequence=["content"])
        low_view = await finished(stack, redis, workspace, low_task)

        # 3. The critic keeps failing after the client's retry: the task fails naming it.
        failing_critic["on"] = True
        error_task = await submit(redis, workspace, "Write an email", agent_sequence=["content"])
        error_view = await finished(stack, redis, workspace, error_task)

    assert budget_view["status"] == "failed" and budget_view["failure_reason"] == "budget_exhausted"
    assert budget_calls == 4 and json.loads(budget_view["usage"])["api_calls"] == 4
    assert budget_view["budget_exhausted"] == "true"
    (stage,) = await stage_views(redis, workspace, budget_task)
    assert stage["budget_exhausted"] is True and stage["quality"] == 0.5
    record = await redis.hgetall(KEYS.task_history(workspace, goal_hash(budget_goal)))
    assert record[b"success"] in (b"false", b"False", b"0")
    assert b"budget_exhausted" in record[b"error"]

    assert low_view["status"] == "completed" and json.loads(low_view["success"]) is False
    record = await redis.hgetall(KEYS.task_history(workspace, goal_hash(low_goal)))
    assert (
        b"quality below threshold" in record[b"error"] and float(record[b"result_quality"]) == 0.45
    )

    assert error_view["status"] == "failed" and error_view["failure_reason"] == "error"
    assert "critique call" in error_view["error"] and "HTTP 500" in error_view["error"]
    assert json.loads(error_view["usage"])["api_calls"] == 1  # the draft that was made
    # No event lost: the corrector acked StageCleared only together with its TaskFailed.
    pending = await redis.xpending(PLAIN.stream("StageCleared"), "corrector")
    assert pending["pending"] == 0
    critiques = await redis.xrange(PLAIN.stream(CritiqueDone.event_type))
    assert not any(error_task in f[b"__data__"].decode() for _, f in critiques)
