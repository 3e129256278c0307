"""Calling an http agent: POST JSON, signed like webhooks, with a timeout and retries.

429 and 5xx answers and connection errors are retried with exponential backoff (a
`Retry-After` is honoured, bounded by the invocation's deadline); the answer must be
JSON of the AgentAnswer shape, at most MAX_ANSWER_BYTES (read no further). Every attempt
goes through the outbound-address guard (the client's transport).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC, datetime

import httpx
from pydantic import ValidationError

from services.agents.logic import AgentAnswer, request_body
from shared.contract.events import AgentInvoked, Envelope
from shared.domain.catalog import AgentSpec
from shared.egress import guard
from shared.stores.webhooks import SIGNATURE_HEADER, sign

MAX_TRIES = 4
MAX_ANSWER_BYTES = 1_000_000
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

log = logging.getLogger("raptorflow.agents")


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
    """POST the invocation to the agent, retrying 429/5xx, until its deadline.

    `client` is the outbound-address guard's (shared.egress): every attempt is resolved,
    checked and pinned. A refused URL fails at once; what the task's error says of a
    failed attempt is only "refused by policy" or "delivery failed" (the network's error
    goes to the log: a tenant's agent URL must not become a port scanner)."""
    url = str(agent.url)
    body = request_body(event)
    deadline = event.payload.deadline.timestamp()
    last = "no attempt"
    for attempt in range(MAX_TRIES):
        left = deadline - datetime.now(UTC).timestamp()
        if left <= 0:
            break
        try:
            status, retry_after, content = await _post(
                client, url, body, _headers(agent, event, body), min(left, agent.timeout_s)
            )
        except guard.EgressRefused as exc:
            log.warning("http agent refused", extra={"error": f"{agent.name}: {exc}"[:500]})
            raise HttpAgentError(f"{agent.name}: url {guard.REFUSED}") from exc
        except (httpx.HTTPError, TimeoutError) as exc:
            log.warning("http agent call failed", extra={"error": f"{agent.name}: {exc!r}"[:500]})
            last = guard.FAILED
            await asyncio.sleep(_backoff_s(attempt, None))
            continue
        if status in RETRY_STATUSES:
            last = f"HTTP {status}"
            await asyncio.sleep(_backoff_s(attempt, retry_after))
            continue
        if status >= 400:
            raise HttpAgentError(f"{agent.name} answered HTTP {status}")
        if content is None:
            raise HttpAgentError(f"{agent.name} answered more than {MAX_ANSWER_BYTES} bytes")
        try:
            return AgentAnswer.model_validate_json(content)
        except ValidationError as exc:
            raise HttpAgentError(f"{agent.name} answered invalid JSON: {exc.errors()[:3]}") from exc
    raise HttpAgentError(f"{agent.name} failed after retries: {last}")


def _headers(agent: AgentSpec, event: Envelope[AgentInvoked], body: bytes) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "x-raptorflow-invocation": event.payload.invocation_id,
    }
    secret = os.environ.get(agent.secret_env) if agent.secret_env else None
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, int(time.time()), body)
    return headers


async def _post(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int, str | None, bytes | None]:
    """(status, Retry-After, the answer; None past MAX_ANSWER_BYTES, read no further), the
    whole attempt bounded by `timeout`."""
    async with (
        asyncio.timeout(timeout),
        client.stream("POST", url, content=body, headers=headers, timeout=timeout) as reply,
    ):
        if reply.status_code >= 300:
            return reply.status_code, reply.headers.get("retry-after"), b""
        chunks: list[bytes] = []
        size = 0
        async for chunk in reply.aiter_bytes():
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                return reply.status_code, None, None
            chunks.append(chunk)
        return reply.status_code, None, b"".join(chunks)
