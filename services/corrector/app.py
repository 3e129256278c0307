"""Corrector service: StageCleared -> AgentInvoked -> AgentResult -> CritiqueDone ... StageCompleted.

Every kind of agent runs through the same path: the corrector publishes an
AgentInvoked (with its loop state), the agent answers an AgentResult, the
corrector critiques it and either invokes the agent again with the numbered
issues or completes the stage with its best attempt. A background sweep turns
overdue invocations into a retry, then into TaskFailed(agent_timeout).

Budget: a stage the task's budget cannot start (or whose first critique cannot be
repaired within it) ends the task as TaskFailed(budget_exhausted); a stage that runs
out mid-loop completes with its best attempt, flagged budget_exhausted. An LLM that
still fails after the client's retries ends the task as TaskFailed(error).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from services.corrector import logic, loop
from shared.app.runtime import Deps, Service, every, new_service
from shared.contract.events import (
    AgentInvoked,
    AgentResult,
    CorrectionLoop,
    Envelope,
    StageCleared,
    Usage,
    agent_channel,
)
from shared.contract.keys import Keys
from shared.contract.models import SelfCorrectionConfig
from shared.domain.catalog import AgentSpec
from shared.domain.critique import CritiqueParseError
from shared.domain.llm_port import LLMError
from shared.domain.self_correction import BudgetExhausted, SelfCorrector
from shared.messaging.bus import add_publish
from shared.messaging.trimming import StreamTrimmer
from shared.messaging.tx import Tx
from shared.observability import agent_metrics as telemetry
from shared.stores import agent_invocations as pending
from shared.stores import tasks
from shared.stores.agent_registry import (
    catalog_for,
    live_workers,
    replicas,
    worker_agent_names,
)

SERVICE = "corrector"
SWEEP_INTERVAL_S = 0.5
REPLICAS_INTERVAL_S = 5.0
RECHECK_S = 5.0
RESULT_GRACE_S = 300.0  # a result claimed but never committed: the timeout takes over
log = logging.getLogger("raptorflow.corrector")


async def _agent(deps: Deps, workspace_id: str, name: str) -> AgentSpec | None:
    catalog = await catalog_for(deps.redis, deps.catalog, workspace_id)
    return catalog.get(name) if name in catalog.names else None


def _invoke(
    tx: Tx, keys: Keys, source: Envelope[Any], invoked: AgentInvoked
) -> Envelope[AgentInvoked]:
    event = source.follow(invoked, key=invoked.invocation_id)
    pending.add_pending(tx, keys, event)
    telemetry.agent_invoked(invoked.agent, invoked.kind)
    return event


async def on_stage_cleared(
    event: Envelope[StageCleared], tx: Tx, *, deps: Deps
) -> Sequence[Envelope[Any]]:
    cleared = event.payload
    workflow = cleared.workflow
    agent = await _agent(deps, event.workspace_id, cleared.agent)
    if agent is None:
        failed = logic.stage_failed(cleared, "error", f"unknown agent {cleared.agent!r}")
        return [event.follow(failed)]
    threshold = logic.threshold_for(
        workflow.self_correction, event.context, cleared.task_type, deps.catalog
    )
    corrector = SelfCorrector(deps.provider)
    corrector.resume(event.context, workflow.usage, Usage(), None)
    if not corrector.allows(2):
        error = (
            f"budget leaves too few calls to run agent {agent.name} (spent before this "
            f"stage: {workflow.usage.api_calls} calls, ${workflow.usage.cost_usd:.6f})"
        )
        return [event.follow(logic.stage_failed(cleared, "budget_exhausted", error))]
    state = CorrectionLoop(
        threshold=threshold,
        scope=logic.stage_scope(workflow),
        call_cost_usd=corrector.call_cost_usd,
        started_at=time.time(),
    )
    invoked = loop.first_invocation(
        cleared,
        agent,
        state,
        now=datetime.now(UTC),
        reply_to=deps.layout.stream(AgentResult.event_type, event.workspace_id),
    )
    return [_invoke(tx, deps.keys, event, invoked)]


async def on_agent_result(
    event: Envelope[AgentResult], tx: Tx, *, deps: Deps
) -> Sequence[Envelope[Any]]:
    result = event.payload
    ws = event.workspace_id
    source = await pending.load_pending(deps.redis, deps.keys, ws, result.invocation_id)
    if source is None or source.payload.agent != result.agent:
        telemetry.agent_outcome(result.agent, "-", "stale")
        return []  # settled already (a retry was sent, or a replica answered first)
    if not await pending.claim(deps.redis, deps.keys, ws, result.invocation_id, event.event_id):
        telemetry.agent_outcome(result.agent, source.payload.kind, "stale")
        return []
    pending.settle(tx, deps.keys, ws, result.invocation_id)
    if await tasks.stop_reason(deps.redis, deps.keys, ws, event.correlation_id):
        return []  # cancelled or past its deadline while the agent worked: no further call
    invoked = source.payload
    # Follow-ups are caused by the result, but carry the invocation's context: an agent's
    # answer cannot change the task's budget or preferences.
    parent = event.model_copy(update={"context": source.context, "user_id": source.user_id})
    agent = await _agent(deps, ws, invoked.agent)
    if agent is None:
        return [parent.follow(loop.stage_failed(invoked, invoked.loop, "error", "agent removed"))]
    telemetry.agent_latency(agent.name, agent.kind, time.time() - source.occurred_at.timestamp())
    state = invoked.loop.model_copy(
        update={"spent": invoked.loop.spent.plus(loop.result_usage(result, agent))}
    )
    if result.error is not None:
        telemetry.agent_outcome(agent.name, agent.kind, "error")
        retried = invoked.model_copy(update={"loop": state})
        return _after_error(tx, deps.keys, parent, retried, agent, result)
    telemetry.agent_outcome(agent.name, agent.kind, "ok")
    return await _critique_step(tx, parent, invoked, state, agent, result, deps=deps)


def _after_error(
    tx: Tx,
    keys: Keys,
    source: Envelope[AgentResult],
    invoked: AgentInvoked,
    agent: AgentSpec,
    result: AgentResult,
) -> Sequence[Envelope[Any]]:
    """An agent that answered with an error is tried again, up to its max_attempts."""
    if invoked.attempt < invoked.max_attempts:
        return [_invoke(tx, keys, source, loop.retry(invoked, agent, datetime.now(UTC)))]
    error = f"agent {agent.name} failed {invoked.attempt} time(s): {result.error}"
    return [source.follow(loop.stage_failed(invoked, invoked.loop, "error", error))]


async def _critique_step(
    tx: Tx,
    source: Envelope[AgentResult],
    invoked: AgentInvoked,
    state: CorrectionLoop,
    agent: AgentSpec,
    result: AgentResult,
    *,
    deps: Deps,
) -> Sequence[Envelope[Any]]:
    output = result.output or ""
    config = invoked.workflow.self_correction or SelfCorrectionConfig()
    corrector = SelfCorrector(deps.provider)
    corrector.resume(source.context, invoked.workflow.usage, state.spent, state.call_cost_usd)
    try:
        critique = await corrector.critique(
            agent, invoked.stage_input.goal, output, source.context, config.critique_aspects
        )
    except BudgetExhausted as exc:
        state = _spent(state, corrector)
        if not state.scores:
            return [source.follow(loop.stage_failed(invoked, state, "budget_exhausted", str(exc)))]
        decision = loop.Decision("complete", "budget_exhausted", budget_exhausted=True)
        done = loop.stage_completed(invoked, state, decision, deps.provider.name, time.time())
        return [source.follow(done)]
    except (LLMError, CritiqueParseError) as exc:
        return [
            source.follow(loop.stage_failed(invoked, _spent(state, corrector), "error", str(exc)))
        ]
    if await tasks.stop_reason(deps.redis, deps.keys, source.workspace_id, source.correlation_id):
        return []  # cancelled or past its deadline during the critique: no revision
    state = _spent(state, corrector)
    record = loop.new_record(state, critique, config)
    state = loop.record_critique(state, output, record)
    critique_done = record.critique_done(
        task_id=invoked.workflow.task_id,
        stage_index=invoked.workflow.stage_index,
        agent=agent.name,
        threshold=state.threshold,
        provider=deps.provider.name,
    )
    outputs: list[Envelope[Any]] = [source.follow(critique_done, key=str(record.iteration))]
    decision = loop.decide(state, config, corrector.allows(2))
    if decision.step == "complete":
        provider = result.provider or deps.provider.name
        done = loop.stage_completed(invoked, state, decision, provider, time.time())
        return [*outputs, source.follow(done)]
    state = state.model_copy(update={"iteration": state.iteration + 1})
    nxt = loop.revision(invoked, agent, state, output, record.critique.issues, datetime.now(UTC))
    return [*outputs, _invoke(tx, deps.keys, source, nxt)]


def _spent(state: CorrectionLoop, corrector: SelfCorrector) -> CorrectionLoop:
    return state.model_copy(
        update={"spent": corrector.spent, "call_cost_usd": corrector.call_cost_usd}
    )


async def expire_due_invocations(deps: Deps, now: float) -> int:
    """Retry each overdue invocation, or end its task as agent_timeout after max_attempts."""
    fired = 0
    for workspace_id, invocation_id in await pending.due(deps.redis, deps.keys, now):
        source = await pending.load_pending(deps.redis, deps.keys, workspace_id, invocation_id)
        if source is None:  # settled by its result
            await pending.forget(deps.redis, deps.keys, workspace_id, invocation_id)
            continue
        if not await _claim_overdue(deps, source, now):
            continue
        await _time_out(deps, source)
        fired += 1
    return fired


async def _claim_overdue(deps: Deps, source: Envelope[AgentInvoked], now: float) -> bool:
    """Claim an overdue invocation for the timeout. A result that claimed it first is being
    handled: look again shortly, and take over only if it never commits (its message was
    dead-lettered), so no invocation can hold its task forever."""
    ws, invocation_id = source.workspace_id, source.payload.invocation_id
    if await pending.claim(deps.redis, deps.keys, ws, invocation_id, pending.TIMEOUT_OWNER):
        return True
    if now < source.payload.deadline.timestamp() + RESULT_GRACE_S:
        await pending.postpone(deps.redis, deps.keys, ws, invocation_id, now + RECHECK_S)
        return False
    await pending.take_over(deps.redis, deps.keys, ws, invocation_id, pending.TIMEOUT_OWNER)
    return True


async def _time_out(deps: Deps, source: Envelope[AgentInvoked]) -> None:
    invoked = source.payload
    agent = await _agent(deps, source.workspace_id, invoked.agent)
    telemetry.agent_outcome(invoked.agent, invoked.kind, "timeout")
    follow: Envelope[Any]
    stopped = await tasks.stop_reason(
        deps.redis, deps.keys, source.workspace_id, source.correlation_id
    )
    async with deps.redis.pipeline(transaction=True) as tx:
        pending.settle(tx, deps.keys, source.workspace_id, invoked.invocation_id)
        if stopped:  # the task ended meanwhile: the invocation is simply dropped
            await tx.execute()
            return
        if agent is not None and invoked.attempt < invoked.max_attempts:
            follow = _invoke(tx, deps.keys, source, loop.retry(invoked, agent, datetime.now(UTC)))
        else:
            error = (
                f"agent {invoked.agent} did not answer within its deadline "
                f"({invoked.attempt} attempt(s))"
            )
            failed = loop.stage_failed(invoked, invoked.loop, "agent_timeout", error)
            follow = source.follow(failed, key="timeout")
        add_publish(tx, deps.layout, follow)
        await tx.execute()


async def observe_replicas(deps: Deps) -> None:
    """The live-replicas gauge of every worker agent."""
    names = await worker_agent_names(deps.redis, deps.catalog)
    live = await live_workers(deps.redis, names) if names else set()
    for name in names:
        count = sum(r.live for r in await replicas(deps.redis, name)) if name in live else 0
        telemetry.live_replicas(name, count)


async def keep_worker_streams_trimmed(deps: Deps) -> None:
    """Worker agents' streams are read by processes outside RaptorFlow: trim them here,
    like every stream, only past what their group has acknowledged."""
    trimmer = await StreamTrimmer.for_server(deps.redis, deps.settings.stream_maxlen)

    async def trim() -> None:
        names = await worker_agent_names(deps.redis, deps.catalog)
        await trimmer.trim_all(
            [stream for name in names for stream in deps.layout.streams(agent_channel(name))]
        )

    await every(deps.settings.stream_trim_interval_s, trim, "worker stream trim")


def build(deps: Deps) -> Service:
    service, bus = new_service(SERVICE, deps)

    async def cleared(event: Envelope[StageCleared], tx: Tx) -> Sequence[Envelope[Any]]:
        return await on_stage_cleared(event, tx, deps=deps)

    async def answered(event: Envelope[AgentResult], tx: Tx) -> Sequence[Envelope[Any]]:
        return await on_agent_result(event, tx, deps=deps)

    bus.on(StageCleared, tasks.unless_stopped(deps.redis, deps.keys, cleared))
    # Waits on the critic (an LLM).
    # A garbage answer is dropped: the invocation's deadline retries the attempt.
    bus.on(
        AgentResult,
        tasks.unless_stopped(deps.redis, deps.keys, answered),
        batched=False,
        dead_letter_ends_task=False,
    )
    service.background.append(
        lambda: every(
            SWEEP_INTERVAL_S,
            lambda: expire_due_invocations(deps, time.time()),
            "agent deadline sweep",
        )
    )
    service.background.append(
        lambda: every(REPLICAS_INTERVAL_S, lambda: observe_replicas(deps), "agent replicas")
    )
    service.background.append(lambda: keep_worker_streams_trimmed(deps))
    return service
