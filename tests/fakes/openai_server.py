"""A scripted, in-process OpenAI-compatible HTTP server for tests.

Why: our LLM code talks to any OpenAI-compatible server through the official
``openai`` client, so tests should exercise that real client (its request
building, retries, timeouts and response parsing) over real HTTP rather than
mocking it. This module serves a small FastAPI app with uvicorn on a free
127.0.0.1 port in a background thread; a test scripts the replies.

Typical use::

    with ScriptedOpenAIServer() as server:
        server.enqueue(error(429, retry_after_ms=10), text("hello", completion_tokens=1))
        client = OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=2)
        out = client.chat.completions.create(model="m", messages=[...])
        assert out.choices[0].message.content == "hello"
        assert len(server.chat_requests) == 2

Reply resolution for ``POST /v1/chat/completions``: the FIFO queue first, then
the ``responder`` callable, otherwise a loud 500 (with ``x-should-retry:
false`` so the client does not waste time retrying a test bug).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import socket
import struct
import threading
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias, TypedDict

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

__all__ = [
    "DelayReply",
    "ErrorReply",
    "RecordedRequest",
    "Reply",
    "Responder",
    "ScriptedOpenAIServer",
    "TextReply",
    "delay",
    "error",
    "fake_embedding",
    "json_text",
    "malformed",
    "text",
    "tool_calls",
]

JSONDict: TypeAlias = dict[str, Any]

DEFAULT_MALFORMED_CONTENT = '{"verdict": "pass", "score": 0.9, "notes": ["unterminated'
"""Looks like the start of a JSON object but does not parse (truncated output)."""


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class TextReply:
    """A successful chat completion whose assistant message is ``content``.

    Token counts left as ``None`` are estimated (~4 characters per token) so
    usage is always present and deterministic.
    """

    content: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str = "stop"
    model: str | None = None
    tool_calls: tuple[JSONDict, ...] = ()


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error response; ``body`` is JSON (dict) or raw text (str)."""

    status: int
    body: JSONDict | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DelayReply:
    """Wait ``seconds`` before answering with ``then``.

    ``then=None`` means: answer with the ``responder`` (or the loud 500 when
    there is none). The queue slot is consumed when the request *arrives*, so
    a client retry after a timeout gets the *next* scripted reply.
    """

    seconds: float
    then: Reply | None = None


Reply: TypeAlias = TextReply | ErrorReply | DelayReply
Responder: TypeAlias = Callable[[JSONDict], "Reply | str"]
"""Called with the request JSON when the queue is empty; a ``str`` means ``text(str)``."""


def text(
    content: str,
    *,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    finish_reason: str = "stop",
    model: str | None = None,
) -> TextReply:
    """A normal assistant reply (``model=None`` echoes the requested model)."""
    return TextReply(content, prompt_tokens, completion_tokens, finish_reason, model)


def tool_calls(*calls: tuple[str, JSONDict]) -> TextReply:
    """An assistant message that calls tools: (function name, arguments) pairs."""
    made = tuple(
        {
            "id": f"call_{n}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        for n, (name, arguments) in enumerate(calls)
    )
    return TextReply("", finish_reason="tool_calls", tool_calls=made)


def json_text(obj: Any, **kwargs: Any) -> TextReply:
    """A reply whose content is ``obj`` serialised as JSON (for structured-output prompts)."""
    return text(json.dumps(obj), **kwargs)


def malformed(content: str = DEFAULT_MALFORMED_CONTENT) -> TextReply:
    """A 200 reply whose content is *not* valid JSON, for 'JSON was requested' paths.

    The server does not validate anything: the broken content reaches the
    client as-is, exactly like a model ignoring ``response_format``.
    """
    try:
        json.loads(content)
    except ValueError:
        return text(content)
    raise ValueError(f"malformed() content must not parse as JSON: {content!r}")


def error(
    status: int,
    body: JSONDict | str | None = None,
    *,
    retry_after: float | None = None,
    retry_after_ms: float | None = None,
    headers: Mapping[str, str] | None = None,
) -> ErrorReply:
    """An error reply; ``body=None`` gives an OpenAI-shaped ``{"error": {...}}`` body.

    ``retry_after`` sets ``Retry-After`` (seconds) and ``retry_after_ms`` sets
    ``retry-after-ms``; the openai client honours either (when > 0 and <= 120 s)
    instead of its exponential backoff (0.5 s, 1 s, ...), so
    ``retry_after_ms=10`` keeps retry tests fast.
    """
    merged: dict[str, str] = dict(headers or {})
    if retry_after is not None:
        merged["retry-after"] = _fmt_number(retry_after)
    if retry_after_ms is not None:
        merged["retry-after-ms"] = _fmt_number(retry_after_ms)
    return ErrorReply(status, body, merged)


def delay(seconds: float, then: Reply | str | None = None) -> DelayReply:
    """Answer after ``seconds`` (use with a short client ``timeout`` to test timeouts)."""
    if seconds < 0:
        raise ValueError("delay seconds must be >= 0")
    return DelayReply(seconds, text(then) if isinstance(then, str) else then)


def _fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# --------------------------------------------------------------------------- embeddings


def fake_embedding(item: str | Sequence[int], dim: int) -> list[float]:
    """Deterministic unit vector for ``item`` (a string or a token-id list).

    Values are rounded to float32, so the vector is identical whether the client
    asked for ``float`` or ``base64`` encoding (the official client defaults to
    base64 and decodes float32), and a test can compare with ``==``.
    """
    if dim <= 0:
        raise ValueError("dim must be positive")
    key = item if isinstance(item, str) else "tokens:" + ",".join(str(t) for t in item)
    raw: list[float] = []
    for counter in itertools.count():
        digest = hashlib.sha256(f"{counter}:{key}".encode()).digest()
        for offset in range(0, len(digest), 4):
            word = int.from_bytes(digest[offset : offset + 4], "little")
            raw.append(word / 2**32 * 2.0 - 1.0)
        if len(raw) >= dim:
            break
    raw = raw[:dim]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    normalized = [v / norm for v in raw]
    return list(struct.unpack(f"<{dim}f", struct.pack(f"<{dim}f", *normalized)))


# --------------------------------------------------------------------------- recording


class RecordedRequest(TypedDict):
    """One request as received; ``headers`` keys are lower-case (``authorization``)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    """Parsed JSON body; ``None`` for GET/empty bodies or when the body is not JSON."""
    body: bytes
    time: float
    """``time.monotonic()`` at arrival, e.g. to assert on retry spacing."""


# --------------------------------------------------------------------------- helpers


def _estimate_tokens(value: str) -> int:
    """Deterministic, tokenizer-free estimate (~4 chars per token, at least 1)."""
    return max(1, math.ceil(len(value) / 4))


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else json.dumps(content)


def _estimate_prompt_tokens(body: JSONDict) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 1
    total = 0
    for message in messages:
        if isinstance(message, dict):
            total += 3 + _estimate_tokens(_message_text(message.get("content")))
    return max(1, total)


def _openai_error(
    status: int, message: str, *, kind: str | None = None, no_retry: bool = False
) -> JSONResponse:
    """An OpenAI-shaped error; ``no_retry`` stops the client retrying test-setup bugs."""
    if kind is None:
        kind = "server_error" if status >= 500 else "invalid_request_error"
    headers = {"x-should-retry": "false"} if no_retry else None
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": None}},
        status_code=status,
        headers=headers,
    )


# --------------------------------------------------------------------------- server


class _PromptExitServer(uvicorn.Server):
    """uvicorn server whose main loop wakes on ``wake`` instead of polling every 0.1 s.

    Why: tests start/stop a server per test; this trims the stop latency.
    ``on_tick`` still runs (every 10th tick refreshes the Date header).
    """

    wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # one tick per second, header refresh each time
            if self.wake is None:
                await asyncio.sleep(0.1)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=1.0)


class ScriptedOpenAIServer:
    """OpenAI-compatible server on ``127.0.0.1:<free port>`` in a background thread.

    Thread-safe: tests script and inspect it from their thread (or event loop)
    while uvicorn serves from its own thread and loop.
    """

    def __init__(
        self,
        *,
        responder: Responder | None = None,
        embedding_dim: int = 8,
        models: Sequence[str] = ("fake-model",),
        api_key: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """``api_key`` set: requests without ``Authorization: Bearer <api_key>`` get 401."""
        self._host = host
        self._embedding_dim = embedding_dim
        self._models = tuple(models)
        self._api_key = api_key
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self._responder = responder
        self._requests: list[RecordedRequest] = []
        self._errors: list[str] = []
        self._ids = itertools.count(1)
        self._port: int | None = None
        self._server: _PromptExitServer | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread_error: BaseException | None = None
        self.app = self._build_app()

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 5.0) -> ScriptedOpenAIServer:
        """Bind a free port and serve; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        # Binding the socket here (port 0) avoids the find-a-free-port-then-bind race.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        server = _PromptExitServer(config)
        self._server = server
        self._thread_error = None
        self._thread = threading.Thread(
            target=self._run, args=(server, sock), name=f"fake-openai:{self._port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive():
                self._thread = None
                raise RuntimeError("fake OpenAI server failed to start") from self._thread_error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"fake OpenAI server did not start within {timeout}s")
            time.sleep(0.002)
        return self

    def _run(self, server: _PromptExitServer, sock: socket.socket) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopping = server.wake = asyncio.Event()
            await server.serve(sockets=[sock])

        try:
            asyncio.run(serve())
        except BaseException as exc:  # surfaced by start() / stop()
            self._thread_error = exc
        finally:
            sock.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving; in-flight ``delay`` replies are cut short (they answer 503)."""
        thread, server, loop, stopping = self._thread, self._server, self._loop, self._stopping
        if thread is None or server is None:
            return
        server.should_exit = True
        if loop is not None and stopping is not None and not loop.is_closed():
            # RuntimeError: the loop closed between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        self._thread = None
        self._server = None
        self._loop = None
        self._stopping = None

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (only valid after ``start()``)."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def url(self) -> str:
        """Server root, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to give ``OpenAI(base_url=...)`` / ``OPENAI_BASE_URL``."""
        return f"{self.url}/v1"

    # ------------------------------------------------------------------ scripting

    def enqueue(self, *replies: Reply | str) -> None:
        """Append chat-completion replies to the FIFO queue (a ``str`` means ``text(str)``)."""
        with self._lock:
            self._queue.extend(text(r) if isinstance(r, str) else r for r in replies)

    @property
    def responder(self) -> Responder | None:
        """Fallback used when the queue is empty."""
        with self._lock:
            return self._responder

    @responder.setter
    def responder(self, value: Responder | None) -> None:
        with self._lock:
            self._responder = value

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet (assert ``== 0`` to catch unused scripts)."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Forget the queue, the responder, recorded requests and errors."""
        with self._lock:
            self._queue.clear()
            self._responder = None
            self._requests.clear()
            self._errors.clear()

    # ------------------------------------------------------------------ inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of every request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Only ``POST /v1/chat/completions`` requests (retries included)."""
        return [r for r in self.requests if r["path"] == "/v1/chat/completions"]

    @property
    def errors(self) -> list[str]:
        """Server-side problems (nothing scripted, responder crashed, bad request JSON)."""
        with self._lock:
            return list(self._errors)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests arrived (for fire-and-forget callers)."""
        deadline = time.monotonic() + timeout
        while True:
            snapshot = self.requests
            if len(snapshot) >= count:
                return snapshot
            if time.monotonic() > deadline:
                raise TimeoutError(f"got {len(snapshot)} requests, wanted {count}")
            time.sleep(0.005)

    # ------------------------------------------------------------------ app

    def _build_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            body, failure = await self._receive(request)
            if failure is not None:
                return failure
            return await self._answer_chat(body)

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> Response:
            body, failure = await self._receive(request)
            if failure is not None:
                return failure
            return self._answer_embeddings(body)

        @app.get("/v1/models")
        async def list_models(request: Request) -> Response:
            _, failure = await self._receive(request, expect_json=False)
            if failure is not None:
                return failure
            return JSONResponse({"object": "list", "data": [self._model(m) for m in self._models]})

        @app.get("/v1/models/{model_id:path}")
        async def get_model(request: Request, model_id: str) -> Response:
            _, failure = await self._receive(request, expect_json=False)
            if failure is not None:
                return failure
            if model_id not in self._models:
                return _openai_error(404, f"The model '{model_id}' does not exist", no_retry=True)
            return JSONResponse(self._model(model_id))

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def unknown(request: Request, path: str) -> Response:
            await self._receive(request, expect_json=False)
            message = f"fake OpenAI server: no route for {request.method} /{path}"
            self._note_error(message)
            return _openai_error(404, message, no_retry=True)

        return app

    @staticmethod
    def _model(model_id: str) -> JSONDict:
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "raptorflow-tests"}

    def _note_error(self, message: str) -> None:
        with self._lock:
            self._errors.append(message)

    async def _receive(
        self, request: Request, *, expect_json: bool = True
    ) -> tuple[JSONDict, Response | None]:
        """Record the request, check auth, and parse its JSON body."""
        raw = await request.body()
        parsed: Any = None
        bad_json = False
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                bad_json = True
        record: RecordedRequest = {
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "json": parsed,
            "body": raw,
            "time": time.monotonic(),
        }
        with self._lock:
            self._requests.append(record)
        expected_auth = None if self._api_key is None else f"Bearer {self._api_key}"
        if expected_auth is not None and request.headers.get("authorization") != expected_auth:
            return {}, _openai_error(401, "Incorrect API key provided")
        if expect_json and (bad_json or not isinstance(parsed, dict)):
            message = f"fake OpenAI server: {request.url.path} needs a JSON object body"
            self._note_error(message)
            return {}, _openai_error(400, message, no_retry=True)
        return parsed if isinstance(parsed, dict) else {}, None

    def _next_reply(self, body: JSONDict) -> Reply | Response:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return self._from_responder(body)

    def _from_responder(self, body: JSONDict) -> Reply | Response:
        responder = self.responder
        if responder is None:
            message = (
                "fake OpenAI server: no scripted reply left and no responder set "
                f"(request #{len(self.chat_requests)} to /v1/chat/completions)"
            )
            self._note_error(message)
            return _openai_error(500, message, no_retry=True)
        try:
            result = responder(body)
        except Exception:
            message = "fake OpenAI server: responder raised\n" + traceback.format_exc()
            self._note_error(message)
            return _openai_error(500, message, no_retry=True)
        if isinstance(result, str):
            return text(result)
        if isinstance(result, TextReply | ErrorReply | DelayReply):
            return result
        message = f"fake OpenAI server: responder returned {type(result).__name__}, not a reply"
        self._note_error(message)
        return _openai_error(500, message, no_retry=True)

    async def _sleep_unless_stopping(self, seconds: float) -> bool:
        """Sleep; True if the server began stopping meanwhile (so shutdown stays fast)."""
        stopping = self._stopping
        if stopping is None:
            await asyncio.sleep(seconds)
            return False
        try:
            await asyncio.wait_for(stopping.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    async def _answer_chat(self, body: JSONDict) -> Response:
        reply = self._next_reply(body)
        while isinstance(reply, DelayReply):
            if await self._sleep_unless_stopping(reply.seconds):
                return _openai_error(503, "fake OpenAI server is stopping", no_retry=True)
            reply = reply.then if reply.then is not None else self._from_responder(body)
        if isinstance(reply, Response):
            return reply
        if isinstance(reply, ErrorReply):
            return self._render_error(reply)
        return self._render_text(reply, body)

    @staticmethod
    def _render_error(reply: ErrorReply) -> Response:
        headers = dict(reply.headers)
        if reply.body is None:
            response = _openai_error(reply.status, f"scripted error {reply.status}")
            response.headers.update(headers)
            return response
        if isinstance(reply.body, str):
            return Response(
                reply.body, status_code=reply.status, headers=headers, media_type="text/plain"
            )
        return JSONResponse(reply.body, status_code=reply.status, headers=headers)

    def _render_text(self, reply: TextReply, body: JSONDict) -> Response:
        prompt_tokens = (
            reply.prompt_tokens
            if reply.prompt_tokens is not None
            else _estimate_prompt_tokens(body)
        )
        completion_tokens = (
            reply.completion_tokens
            if reply.completion_tokens is not None
            else _estimate_tokens(reply.content)
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        completion_id = f"chatcmpl-fake-{next(self._ids)}"
        model = reply.model or str(body.get("model") or self._models[0])
        created = int(time.time())
        if body.get("stream"):
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            return StreamingResponse(
                self._sse_chunks(
                    reply, completion_id, model, created, usage if include_usage else None
                ),
                media_type="text/event-stream",
            )
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": reply.content or None if reply.tool_calls else reply.content,
                            "refusal": None,
                            **({"tool_calls": list(reply.tool_calls)} if reply.tool_calls else {}),
                        },
                        "logprobs": None,
                        "finish_reason": reply.finish_reason,
                    }
                ],
                "usage": usage,
            }
        )

    @staticmethod
    async def _sse_chunks(
        reply: TextReply,
        completion_id: str,
        model: str,
        created: int,
        usage: JSONDict | None,
    ) -> AsyncIterator[bytes]:
        """``stream=True``: the content split into word-sized deltas, then ``[DONE]``."""

        def chunk(choices: list[JSONDict], extra: JSONDict | None = None) -> bytes:
            payload: JSONDict = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
            }
            if extra:
                payload.update(extra)
            return f"data: {json.dumps(payload)}\n\n".encode()

        pieces = [w + " " for w in reply.content.split(" ")]
        pieces[-1] = pieces[-1][:-1]
        yield chunk(
            [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
        )
        for piece in pieces:
            if piece:
                yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        yield chunk([{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}])
        if usage is not None:
            yield chunk([], {"usage": usage})
        yield b"data: [DONE]\n\n"

    def _answer_embeddings(self, body: JSONDict) -> Response:
        items = self._embedding_inputs(body.get("input"))
        if items is None:
            message = "fake OpenAI server: embeddings 'input' must be a string, token list or list"
            self._note_error(message)
            return _openai_error(400, message, no_retry=True)
        dim = body.get("dimensions")
        dim = dim if isinstance(dim, int) and dim > 0 else self._embedding_dim
        as_base64 = body.get("encoding_format") == "base64"
        data: list[JSONDict] = []
        tokens = 0
        for index, item in enumerate(items):
            vector = fake_embedding(item, dim)
            encoded: list[float] | str = (
                base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode("ascii")
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
            tokens += _estimate_tokens(item) if isinstance(item, str) else max(1, len(item))
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model") or self._models[0]),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    @staticmethod
    def _embedding_inputs(value: Any) -> list[str | list[int]] | None:
        """Normalise ``input`` (str | list[str] | list[int] | list[list[int]])."""
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not value:
            return None
        if all(isinstance(v, int) for v in value):
            return [list(value)]
        items: list[str | list[int]] = []
        for v in value:
            if isinstance(v, str):
                items.append(v)
            elif isinstance(v, list) and all(isinstance(t, int) for t in v):
                items.append(list(v))
            else:
                return None
        return items
