"""The edge's guards, before and around every route.

- A body larger than `max_body_bytes` gets 413 before anything parses it.
- A JSON body is parsed strictly once more (orjson: no NaN or Infinity, no number that
  overflows to infinity, no lone surrogate) and checked for depth and size, so a body that
  Python's lenient `json` would accept but no service could decode gets 422, not a 500
  or a task that is accepted and then lost.
- A 422 names the field and echoes at most a short, printable excerpt of the input
  (FastAPI's own handler echoed whole inputs, 10 MB included, and failed with a 500 on
  a lone surrogate it could not encode).
- Redis refusing writes (out of memory, a read-only replica, loading, unreachable) is a
  503 with Retry-After, which a client retries, not a 500, which it reports as a bug.
"""

from __future__ import annotations

import asyncio
import math
import reprlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis import exceptions as redis_errors
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.contract.models import json_problem, printable

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RETRY_AFTER_S = 2
MAX_BODY_DEPTH = 24
"""A body's own levels (e.g. checkpoints[].condition_params) plus a free-form field's 16."""
MAX_BODY_VALUES = 20_000
OFF_LOOP_BYTES = 16 * 1024
"""A body this large is checked in a worker thread: the event loop keeps its turns."""
EXCERPT_CHARS = 100

_excerpts = reprlib.Repr()
_excerpts.maxlevel = 2
_excerpts.maxdict = _excerpts.maxlist = _excerpts.maxtuple = _excerpts.maxset = 4
_excerpts.maxstring = _excerpts.maxother = 60


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    # FastAPI parses a body without a content type as JSON too.
    return not media or media == b"application/json" or media.endswith(b"+json")


def body_problem(body: bytes) -> str | None:
    """Why a JSON body cannot be accepted (None: it can)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return f"invalid JSON: {printable(str(exc), 120)}"
    return json_problem(value, max_depth=MAX_BODY_DEPTH, max_values=MAX_BODY_VALUES)


async def _answer(send: Send, status: int, content: dict[str, Any]) -> None:
    body = orjson.dumps(content)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """Pure ASGI middleware: reads the body once (bounded), checks it, replays it."""

    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await self._too_large(send)
            return
        try:
            body = await self._read(receive)
        except _ClientGone:
            return
        if body is None:
            await self._too_large(send)
            return
        if body and _is_json(headers.get(b"content-type", b"")):
            problem = (
                await asyncio.to_thread(body_problem, body)
                if len(body) > OFF_LOOP_BYTES
                else body_problem(body)
            )
            if problem is not None:
                error = {"type": "json_invalid", "loc": ["body"], "msg": problem}
                await _answer(send, 422, {"detail": [error]})
                return
        await self.app(scope, _replaying(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None past the limit (_ClientGone: the client went away)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, send: Send) -> None:
        await _answer(send, 413, {"detail": f"request body larger than {self.max_body_bytes} bytes"})


class _ClientGone(Exception):
    pass


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body once, then the client's own messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def excerpt(value: Any) -> Any:
    """A short, JSON-safe excerpt of an input value (never the value itself when long)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) < 2**53:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    text = value if isinstance(value, str) else _excerpts.repr(value)
    return printable(text, EXCERPT_CHARS)


def _loc_part(part: Any) -> str | int:
    return part if isinstance(part, int) else printable(str(part), 64)


async def validation_failed(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each field, with a short excerpt of what was sent."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {
            "type": str(error.get("type", "value_error")),
            "loc": [_loc_part(p) for p in error.get("loc", ())],
            "msg": printable(str(error.get("msg", "")), 300),
            "input": excerpt(error.get("input")),
        }
        for error in errors[:20]
    ]
    return JSONResponse({"detail": detail}, status_code=422)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's answer for HTTPException, with a detail any encoder can write."""
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if isinstance(detail, str):
        detail = printable(detail, 500)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


_REFUSALS = frozenset(
    {"OOM", "READONLY", "MISCONF", "NOREPLICAS", "LOADING", "MASTERDOWN", "CLUSTERDOWN",
     "TRYAGAIN", "EXECABORT", "BUSY"}
)  # fmt: skip


def refuses_writes(exc: BaseException) -> bool:
    """Whether a Redis error means "not now" (full, read-only, loading, unreachable) rather
    than a bug of ours."""
    if isinstance(
        exc,
        redis_errors.ConnectionError
        | redis_errors.TimeoutError
        | redis_errors.ReadOnlyError
        | redis_errors.OutOfMemoryError
        | redis_errors.ExecAbortError
        | redis_errors.ClusterDownError
        | redis_errors.TryAgainError,
    ):
        return True
    if isinstance(exc, redis_errors.ResponseError):
        return str(exc).split(" ", 1)[0].upper() in _REFUSALS
    return False


async def redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 with Retry-After when Redis refuses writes; any other Redis error is a bug (500)."""
    if not refuses_writes(exc):
        raise exc
    return JSONResponse(
        {"detail": "storage is not accepting writes; retry later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def add_edge_guards(app: FastAPI, max_body_bytes: int) -> None:
    app.add_middleware(BodyGuard, max_body_bytes=max_body_bytes)
    app.add_exception_handler(RequestValidationError, validation_failed)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(redis_errors.RedisError, redis_unavailable)
