"""The scripted OpenAI server works with the REAL official ``openai`` client.

Why: every LLM test in this repo relies on this fake, so these tests pin the
behaviours they depend on: wire format, client retries, timeouts, embeddings,
recording, and loud failure when a test forgot to script a reply.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.fakes.openai_server import (
    DEFAULT_MALFORMED_CONTENT,
    ScriptedOpenAIServer,
    delay,
    error,
    fake_embedding,
    json_text,
    malformed,
    text,
)

API_KEY = "sk-test-123"
MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello"},
]


@pytest.fixture
def server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(embedding_dim=16) as srv:
        yield srv


def sync_client(server: ScriptedOpenAIServer, **kwargs: Any) -> OpenAI:
    kwargs.setdefault("max_retries", 0)
    return OpenAI(base_url=server.base_url, api_key=API_KEY, **kwargs)


def async_client(server: ScriptedOpenAIServer, **kwargs: Any) -> AsyncOpenAI:
    kwargs.setdefault("max_retries", 0)
    return AsyncOpenAI(base_url=server.base_url, api_key=API_KEY, **kwargs)


# --------------------------------------------------------------------------- chat


def test_chat_completion_sync_reads_back_usage(server: ScriptedOpenAIServer) -> None:
    server.enqueue(text("hello", prompt_tokens=11, completion_tokens=3))
    with sync_client(server) as client:
        out = client.chat.completions.create(model="gpt-test", messages=MESSAGES, temperature=0)

    assert out.object == "chat.completion"
    assert out.id.startswith("chatcmpl-")
    assert out.model == "gpt-test"
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == "hello"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (11, 3)
    assert out.usage.total_tokens == 14

    (req,) = server.requests
    assert req["method"] == "POST"
    assert req["path"] == "/v1/chat/completions"
    assert req["json"]["messages"] == MESSAGES
    assert req["json"]["temperature"] == 0
    assert req["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert server.pending == 0


async def test_chat_completion_async_client(server: ScriptedOpenAIServer) -> None:
    server.enqueue("plain string means text()")
    async with async_client(server) as client:
        out = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert out.choices[0].message.content == "plain string means text()"
    assert out.usage is not None
    # Unscripted token counts are estimated deterministically, never missing.
    assert out.usage.prompt_tokens > 0 and out.usage.completion_tokens > 0
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    assert server.chat_requests[0]["headers"]["authorization"] == f"Bearer {API_KEY}"


async def test_queue_is_fifo_under_concurrent_async_calls(server: ScriptedOpenAIServer) -> None:
    server.enqueue(*(text(f"r{i}") for i in range(8)))
    async with async_client(server) as client:
        outs = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "x"}]
                )
                for _ in range(8)
            )
        )
    # Each scripted reply is handed out exactly once, whatever the arrival order.
    assert sorted(o.choices[0].message.content or "" for o in outs) == sorted(
        f"r{i}" for i in range(8)
    )
    assert len(server.chat_requests) == 8
    assert server.pending == 0


def test_streaming_chat_completion(server: ScriptedOpenAIServer) -> None:
    server.enqueue(text("one two three", prompt_tokens=4, completion_tokens=3))
    with sync_client(server) as client:
        chunks = list(
            client.chat.completions.create(
                model="m",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "one two three"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 7


# --------------------------------------------------------------------------- retries


def test_client_retries_429_then_succeeds_fast(server: ScriptedOpenAIServer) -> None:
    server.enqueue(error(429, retry_after_ms=10), text("ok"))
    start = time.monotonic()
    with sync_client(server, max_retries=2) as client:
        out = client.chat.completions.create(model="m", messages=MESSAGES)
    elapsed = time.monotonic() - start

    assert out.choices[0].message.content == "ok"
    reqs = server.chat_requests
    assert len(reqs) == 2
    # The second request is the client's own retry of the same call.
    assert [r["headers"]["x-stainless-retry-count"] for r in reqs] == ["0", "1"]
    assert reqs[0]["json"] == reqs[1]["json"]
    # retry-after-ms: 10 replaces the client's 0.5 s+ backoff; how fast it really is belongs
    # to a benchmark, not to a timed test on a shared 2-core machine.
    assert elapsed < 5


async def test_async_client_retries_500_and_503(server: ScriptedOpenAIServer) -> None:
    server.enqueue(
        error(500, retry_after_ms=10),
        error(503, retry_after_ms=10),
        text("recovered"),
    )
    async with async_client(server, max_retries=2) as client:
        out = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert out.choices[0].message.content == "recovered"
    assert len(server.chat_requests) == 3


def test_retries_exhausted_raises_rate_limit_error(server: ScriptedOpenAIServer) -> None:
    server.enqueue(*(error(429, retry_after=0.01) for _ in range(3)))
    with sync_client(server, max_retries=2) as client, pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert ei.value.status_code == 429
    assert ei.value.response.headers["retry-after"] == "0.01"
    assert len(server.chat_requests) == 3


def test_custom_error_body_is_not_retried(server: ScriptedOpenAIServer) -> None:
    body = {
        "error": {
            "message": "too long",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    server.enqueue(error(400, body))
    with sync_client(server, max_retries=2) as client, pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert ei.value.code == "context_length_exceeded"
    assert len(server.chat_requests) == 1


# --------------------------------------------------------------------------- timeouts


def test_delay_past_client_timeout_raises_timeout(server: ScriptedOpenAIServer) -> None:
    server.enqueue(delay(5.0, then="too late"))
    start = time.monotonic()
    with sync_client(server, timeout=0.2) as client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert time.monotonic() - start < 2.0
    assert len(server.chat_requests) == 1


async def test_timeout_then_client_retry_gets_next_reply(server: ScriptedOpenAIServer) -> None:
    # The delayed reply's queue slot is consumed on arrival; the retry gets the next one.
    server.enqueue(delay(5.0, then="too late"), text("fast"))
    async with async_client(server, timeout=0.2, max_retries=1) as client:
        out = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert out.choices[0].message.content == "fast"
    assert len(server.chat_requests) == 2


def test_short_delay_within_timeout_answers(server: ScriptedOpenAIServer) -> None:
    server.enqueue(delay(0.05, then=text("slow but fine")))
    with sync_client(server, timeout=2.0) as client:
        out = client.chat.completions.create(model="m", messages=MESSAGES)
    assert out.choices[0].message.content == "slow but fine"


def test_stop_is_fast_with_a_request_in_flight() -> None:
    srv = ScriptedOpenAIServer().start()
    srv.enqueue(delay(30.0, then="never"))
    with sync_client(srv, timeout=0.1) as client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    start = time.monotonic()
    srv.stop()
    assert time.monotonic() - start < 1.0


# --------------------------------------------------------------------------- malformed / responder


def test_malformed_reply_is_returned_as_is(server: ScriptedOpenAIServer) -> None:
    server.enqueue(malformed())
    with sync_client(server) as client:
        out = client.chat.completions.create(
            model="m", messages=MESSAGES, response_format={"type": "json_object"}
        )
    content = out.choices[0].message.content
    assert content == DEFAULT_MALFORMED_CONTENT
    with pytest.raises(json.JSONDecodeError):
        json.loads(content)
    assert server.chat_requests[0]["json"]["response_format"] == {"type": "json_object"}


def test_responder_answers_from_the_prompt_when_queue_is_empty(
    server: ScriptedOpenAIServer,
) -> None:
    def responder(req: dict[str, Any]) -> Any:
        system = req["messages"][0]["content"]
        if "critique" in system:
            fmt = req.get("response_format") or {}
            assert fmt.get("type") == "json_schema"  # a responder may honour the schema
            return json_text({"score": 0.5, "issues": ["too short"]})
        return text("draft answer")

    server.responder = responder
    server.enqueue("scripted first")  # the queue wins over the responder
    schema: Any = {"name": "critique", "schema": {"type": "object"}}
    with sync_client(server) as client:
        first = client.chat.completions.create(model="m", messages=MESSAGES)
        draft = client.chat.completions.create(model="m", messages=MESSAGES)
        critique = client.chat.completions.create(
            model="m",
            messages=[
                {"role": "system", "content": "Write a critique as JSON"},
                {"role": "user", "content": "draft answer"},
            ],
            response_format={"type": "json_schema", "json_schema": schema},
        )
    assert first.choices[0].message.content == "scripted first"
    assert draft.choices[0].message.content == "draft answer"
    assert json.loads(critique.choices[0].message.content or "") == {
        "score": 0.5,
        "issues": ["too short"],
    }
    assert server.chat_requests[2]["json"]["response_format"]["json_schema"] == schema


def test_nothing_scripted_fails_loudly_without_retries(server: ScriptedOpenAIServer) -> None:
    with (
        sync_client(server, max_retries=2) as client,
        pytest.raises(openai.InternalServerError, match="no scripted reply left"),
    ):
        client.chat.completions.create(model="m", messages=MESSAGES)
    # x-should-retry: false stops the client from retrying a test-setup bug.
    assert len(server.chat_requests) == 1
    assert server.errors and "no scripted reply" in server.errors[0]


def test_responder_crash_fails_loudly(server: ScriptedOpenAIServer) -> None:
    def responder(req: dict[str, Any]) -> Any:
        raise KeyError("oops")

    server.responder = responder
    with (
        sync_client(server, max_retries=2) as client,
        pytest.raises(openai.InternalServerError, match="responder raised"),
    ):
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert len(server.chat_requests) == 1


# ------------------------------------------------------------------ embeddings / models / auth


def test_embeddings_sync_are_deterministic(server: ScriptedOpenAIServer) -> None:
    with sync_client(server) as client:
        # The client's default asks for base64 and decodes it; float is explicit.
        default = client.embeddings.create(model="emb", input=["alpha", "beta"])
        as_float = client.embeddings.create(model="emb", input="alpha", encoding_format="float")
        small = client.embeddings.create(model="emb", input="alpha", dimensions=4)

    assert server.requests[0]["json"]["encoding_format"] == "base64"
    assert [d.index for d in default.data] == [0, 1]
    assert default.data[0].embedding == fake_embedding("alpha", 16)
    assert default.data[1].embedding == fake_embedding("beta", 16)
    assert default.data[0].embedding != default.data[1].embedding
    assert as_float.data[0].embedding == default.data[0].embedding
    assert len(small.data[0].embedding) == 4
    assert default.usage.prompt_tokens > 0
    assert sum(v * v for v in default.data[0].embedding) == pytest.approx(1.0, abs=1e-5)


async def test_embeddings_async(server: ScriptedOpenAIServer) -> None:
    async with async_client(server) as client:
        out = await client.embeddings.create(model="emb", input="gamma")
    assert out.data[0].object == "embedding"
    assert out.data[0].embedding == fake_embedding("gamma", 16)


def test_models_list(server: ScriptedOpenAIServer) -> None:
    with sync_client(server) as client:
        ids = [m.id for m in client.models.list()]
    assert ids == ["fake-model"]
    assert server.requests[0]["method"] == "GET"


def test_api_key_enforced_when_configured() -> None:
    with ScriptedOpenAIServer(api_key="sk-right") as srv:
        srv.enqueue("never served")
        with sync_client(srv, max_retries=2) as client, pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert srv.requests[0]["headers"]["authorization"] == f"Bearer {API_KEY}"
        assert srv.pending == 1


# --------------------------------------------------------------------------- lifecycle


def test_start_is_fast_and_stop_releases_the_port() -> None:
    start = time.monotonic()
    srv = ScriptedOpenAIServer().start()
    assert time.monotonic() - start < 1.0
    assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
    srv.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=0.5).close()
    srv.stop()  # idempotent
