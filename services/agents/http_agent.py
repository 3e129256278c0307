"""Calling an http agent: POST JSON, signed like webhooks, with a timeout and retries.

429 and 5xx answers and connection errors are retried with exponential backoff (a
`Retry-After` is honoured, bounded by the invocation's deadline); the answer must be
JSON of the AgentAnswer shape. The URL passes the outbound-address guard first.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime

import httpx
from pydantic import ValidationError

from services.agents.logic import AgentAnswer, request_body
from shared.contract.events import AgentInvoked, Envelope
from shared.domain.catalog import AgentSpec
from shared.stores.outbound_guard import OutboundRefused, check_outbound_url
from shared.stores.webhooks import SIGNATURE_HEADER, sign

MAX_TRIES = 4
MAX_ANSWER_BYTES = 1_000_000
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class HttpAgentError(RuntimeError):
    """The agent could not be called or answered unusably; the message says why."""


def _backoff_s(attempt: int, retry_after: str | None) -> float:
    if retry_after:
        try:
            return min(max(float(retry_after), 0.0), 30.0)
        except ValueError:
            pass
    return float(min(0.25 * 2**attempt, 8.0))


async def call(
    client: httpx.AsyncClient, agent: AgentSpec, event: Envelope[AgentInvoked]
) -> AgentAnswer:
    """POST the invocation to the agent, retrying 429/5xx, until its deadline."""
    url = str(agent.url)
    try:
        await asyncio.to_thread(check_outbound_url, url)
    except OutboundRefused as exc:
        raise HttpAgentError(f"url refused: {exc}") from exc
    body = request_body(event)
    deadline = event.payload.deadline.timestamp()
    last = "no attempt"
    for attempt in range(MAX_TRIES):
        left = deadline - datetime.now(UTC).timestamp()
        if left <= 0:
            break
        headers = {
            "content-type": "application/json",
            "x-raptorflow-invocation": event.payload.invocation_id,
        }
        secret = os.environ.get(agent.secret_env) if agent.secret_env else None
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, int(time.time()), body)
        try:
            reply = await client.post(
                url, content=body, headers=headers, timeout=min(left, agent.timeout_s)
            )
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(_backoff_s(attempt, None))
            continue
        if reply.status_code in RETRY_STATUSES:
            last = f"HTTP {reply.status_code}"
            await asyncio.sleep(_backoff_s(attempt, reply.headers.get("retry-after")))
            continue
        if reply.status_code >= 400:
            raise HttpAgentError(f"{agent.name} answered HTTP {reply.status_code}")
        if len(reply.content) > MAX_ANSWER_BYTES:
            raise HttpAgentError(f"{agent.name} answered more than {MAX_ANSWER_BYTES} bytes")
        try:
            return AgentAnswer.model_validate_json(reply.content)
        except ValidationError as exc:
            raise HttpAgentError(f"{agent.name} answered invalid JSON: {exc.errors()[:3]}") from exc
    raise HttpAgentError(f"{agent.name} failed after retries: {last}")
