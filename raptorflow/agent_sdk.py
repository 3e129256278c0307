"""Write a worker agent in Python: `@agent("name")` on an async function, then serve it.

    from raptorflow.agent_sdk import agent, AgentRequest

    @agent("research")
    async def research(request: AgentRequest) -> str:
        return f"Findings on {request.goal}" if not request.draft else fix(request)

    # raptorflow agent serve mymodule:research

The worker speaks the wire protocol of docs/agents.md: it reads its agent's
invocation streams as one replica of the consumer group `workers`, answers
each with an AgentResult on the invocation's `reply_to` stream (acknowledging
it in the same transaction), reclaims what a dead replica left pending, and
sends a heartbeat so the selector knows it is live. A function that raises
answers with an error, which the corrector retries up to the agent's max_attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from shared.contract.events import (
    AgentInvoked,
    AgentResult,
    Envelope,
    Usage,
    agent_channel,
    envelope_class,
)
from shared.contract.topology import Topology
from shared.messaging.codec import DATA_FIELD
from shared.settings import Settings
from shared.stores.agent_registry import HEARTBEAT_INTERVAL_S, heartbeat, replicas_key

GROUP = "workers"
log = logging.getLogger("raptorflow.agent")


class AgentRequest(BaseModel):
    """One invocation, as a worker function receives it."""

    invocation_id: str
    agent: str
    task_id: str
    workspace_id: str
    goal: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    previous_output: str | None = None
    draft: str | None = None
    issues: list[str] = Field(default_factory=list)
    iteration: int = 1
    attempt: int = 1
    deadline: datetime
    context: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_revision(self) -> bool:
        return self.draft is not None

    def numbered_issues(self) -> str:
        return "\n".join(f"{n}. {issue}" for n, issue in enumerate(self.issues, 1))


class AgentReply(BaseModel):
    """A richer answer than a string: usage and cost spent, a self-assessed score."""

    output: str
    usage: Usage = Field(default_factory=Usage)
    self_score: float | None = Field(default=None, ge=0, le=1)


AgentFunction = Callable[[AgentRequest], Awaitable["str | AgentReply"]]


@dataclass
class AgentDefinition:
    """What `@agent` returns: the function plus its agent name; still callable directly."""

    name: str
    function: AgentFunction

    async def __call__(self, request: AgentRequest) -> str | AgentReply:
        return await self.function(request)


def agent(name: str) -> Callable[[AgentFunction], AgentDefinition]:
    """Make an async `request -> str | AgentReply` function the worker of agent `name`."""

    def wrap(function: AgentFunction) -> AgentDefinition:
        return AgentDefinition(name=name, function=function)

    return wrap


def request_of(event: Envelope[AgentInvoked]) -> AgentRequest:
    invoked = event.payload
    return AgentRequest(
        invocation_id=invoked.invocation_id,
        agent=invoked.agent,
        task_id=event.correlation_id,
        workspace_id=event.workspace_id,
        goal=invoked.stage_input.goal,
        inputs=invoked.stage_input.inputs,
        previous_output=invoked.previous_output,
        draft=invoked.draft,
        issues=invoked.issues,
        iteration=invoked.iteration,
        attempt=invoked.attempt,
        deadline=invoked.deadline,
        context=event.context.model_dump(mode="json"),
    )


def result_envelope(
    event: Envelope[AgentInvoked], answer: str | AgentReply | None, error: str | None
) -> Envelope[AgentResult]:
    """The AgentResult answering `event` (its context copied, caused by it)."""
    invoked = event.payload
    reply = AgentReply(output=answer) if isinstance(answer, str) else answer
    payload = AgentResult(
        invocation_id=invoked.invocation_id,
        agent=invoked.agent,
        attempt=invoked.attempt,
        output=None if error is not None or reply is None else reply.output,
        error=error,
        usage=reply.usage if reply is not None else Usage(),
        self_score=reply.self_score if reply is not None else None,
        provider=f"worker:{invoked.agent}",
    )
    return envelope_class(AgentResult)(
        event_id=str(uuid.uuid4()),
        type=AgentResult.event_type,
        correlation_id=event.correlation_id,
        causation_id=event.event_id,
        workspace_id=event.workspace_id,
        user_id=event.user_id,
        context=event.context,
        payload=payload,
    )


@dataclass
class Worker:
    """One replica of an agent's workers (a consumer of its group on every partition)."""

    definition: AgentDefinition
    redis: Redis
    layout: Topology  # the deployment's (`Settings().layout()`): which streams to read
    concurrency: int = 4
    claim_idle_ms: int = 10_000
    replica: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    handled: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def streams(self) -> list[str]:
        return self.layout.streams(agent_channel(self.definition.name))

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Serve until stop(): heartbeats, reclaims, reads; in-flight answers finish first."""
        await self._ensure_groups()
        limit = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task[None]] = set()
        beat = asyncio.create_task(self._heartbeats())
        try:
            while not self._stop.is_set():
                try:
                    batch = await self._next_messages()
                except RedisError as exc:  # Redis restarting: keep the replica, try again
                    log.warning("reading invocations failed (%s); retrying", exc)
                    await asyncio.sleep(1.0)
                    continue
                for stream, message_id, fields in batch:
                    await limit.acquire()
                    task = asyncio.create_task(self._handle(stream, message_id, fields))
                    running.add(task)
                    task.add_done_callback(lambda t: _finished(t, running, limit))
        finally:
            if running:
                await asyncio.wait(running, timeout=30)
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await beat
            with contextlib.suppress(Exception):
                await self.redis.zrem(replicas_key(self.definition.name), self.replica)

    async def _ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _heartbeats(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await heartbeat(self.redis, self.definition.name, self.replica)
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)

    async def _next_messages(self) -> list[tuple[str, str, dict[bytes, bytes]]]:
        """What a dead replica left pending (XAUTOCLAIM) first, then new messages."""
        out: list[tuple[str, str, dict[bytes, bytes]]] = []
        for stream in self.streams:
            claimed = await self.redis.xautoclaim(
                stream, GROUP, self.replica, self.claim_idle_ms, "0-0", count=self.concurrency
            )
            out += [(stream, _text(mid), f) for mid, f in claimed[1] if f]
        if out:
            return out
        # On a cluster, each partition's stream lives in its own slot: one read per stream.
        groups = (
            [[s] for s in self.streams] if self.layout.hash_tags else [self.streams]
        )
        for streams in groups:
            reply = await self.redis.xreadgroup(
                GROUP,
                self.replica,
                {s: ">" for s in streams},
                count=self.concurrency,
                block=max(500 // len(groups), 10),
            )
            for stream, entries in reply or []:
                out += [(_text(stream), _text(mid), f) for mid, f in entries]
        return out

    async def _handle(self, stream: str, message_id: str, fields: dict[bytes, bytes]) -> None:
        try:
            event = envelope_class(AgentInvoked).model_validate_json(
                fields.get(DATA_FIELD.encode(), b"")
            )
        except ValidationError as exc:
            log.warning("invalid invocation acknowledged and dropped: %s", exc.errors()[:1])
            await self.redis.xack(stream, GROUP, message_id)
            return
        if event.payload.deadline.timestamp() < time.time():  # already retried or failed
            await self.redis.xack(stream, GROUP, message_id)
            return
        async with self._keep_claimed(stream, message_id):
            answer, error = await self._call(event)
        result = result_envelope(event, answer, error)
        try:
            async with self.redis.pipeline(transaction=True) as tx:
                tx.xadd(event.payload.reply_to, {DATA_FIELD: result.model_dump_json()})
                tx.xack(stream, GROUP, message_id)
                await tx.execute()
        except RedisError as exc:  # left pending: this or another replica reclaims it
            log.warning("answering %s failed (%s); it stays pending", message_id, exc)
            return
        self.handled += 1

    async def _call(
        self, event: Envelope[AgentInvoked]
    ) -> tuple[str | AgentReply | None, str | None]:
        left = event.payload.deadline.timestamp() - time.time()
        try:
            answer = await asyncio.wait_for(
                self.definition(request_of(event)), timeout=max(left, 0.1)
            )
        except TimeoutError:
            return None, "the worker ran past the invocation's deadline"
        except Exception as exc:  # the agent's own failure: reported, never fatal
            return None, f"{type(exc).__name__}: {exc}"[:4000]
        if isinstance(answer, str) and not answer.strip():
            return None, "the worker returned an empty output"
        return answer, None

    @contextlib.asynccontextmanager
    async def _keep_claimed(self, stream: str, message_id: str) -> Any:
        """Re-claim the message while the function runs, so live work is never stolen."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.claim_idle_ms / 3000)
                await self.redis.xclaim(stream, GROUP, self.replica, 0, [message_id], justid=True)

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _finished(
    task: asyncio.Task[None], running: set[asyncio.Task[None]], limit: asyncio.Semaphore
) -> None:
    running.discard(task)
    limit.release()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def redis_url() -> str:
    return (
        os.environ.get("RAPTORFLOW_REDIS_URL")
        or os.environ.get("REDIS_URL")
        or "redis://localhost:6379/0"
    )


async def serve(
    definition: AgentDefinition,
    *,
    url: str | None = None,
    concurrency: int = 4,
    layout: Topology | None = None,
) -> None:
    """Run one replica until SIGINT/SIGTERM, on the streams of `layout` (by default the
    deployment's, from the same environment variables the services read)."""
    redis = Redis.from_url(url or redis_url())
    idle_ms = int(os.environ.get("RAPTORFLOW_AGENT_CLAIM_IDLE_MS", "10000"))
    layout = layout or Settings().layout()
    worker = Worker(definition, redis, layout, concurrency=concurrency, claim_idle_ms=idle_ms)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, worker.stop)
    log.info(
        "agent %s serving as %s on %s", definition.name, worker.replica, json.dumps(worker.streams)
    )
    try:
        await worker.run()
    finally:
        await redis.aclose()
