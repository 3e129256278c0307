"""Agent runner service: AgentInvoked (llm and http agents) -> AgentResult.

The built-in kinds answer through the same path as external workers: read an
invocation from `rf:stream:AgentInvoked`, answer on its `reply_to` stream. An
llm agent is one LLM call (a first draft, or a revision of the draft with the
numbered issues); an http agent is a signed POST. Failures become an AgentResult
with an error, which the corrector retries up to the agent's max_attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx

from services.agents import http_agent, logic, tools
from shared.app.runtime import Deps, Service, new_service
from shared.contract.events import AgentInvoked, AgentResult, Envelope, Usage
from shared.domain.catalog import AgentCatalog, AgentSpec
from shared.domain.llm_port import LLMError
from shared.domain.self_correction import BudgetExhausted, SelfCorrector
from shared.egress import guard
from shared.messaging.tx import Tx
from shared.stores import tasks
from shared.stores.agent_registry import catalog_for

SERVICE = "agents"
log = logging.getLogger("raptorflow.agents")
MAX_TOOL_ROUNDS = 3


async def run_llm_agent(
    event: Envelope[AgentInvoked],
    agent: AgentSpec,
    catalog: AgentCatalog,
    *,
    deps: Deps,
    client: httpx.AsyncClient,
) -> AgentResult:
    """One LLM call (or, with tools, the bounded tool-calling loop) for one invocation."""
    invoked = event.payload
    runner = SelfCorrector(deps.provider)
    runner.resume(event.context, invoked.workflow.usage.plus(invoked.loop.spent), Usage(), None)
    try:
        async with tools.tooling_for(
            agent, catalog, event, redis=deps.redis, layout=deps.layout, client=client,
            mcp_allowed=deps.settings.mcp_allowed_commands,
            max_rounds=MAX_TOOL_ROUNDS,
        ) as tooling:
            output = await runner.attempt(
                agent,
                goal=invoked.stage_input.goal,
                inputs=invoked.stage_input.inputs,
                context=event.context,
                previous_output=invoked.previous_output,
                draft=invoked.draft,
                issues=invoked.issues,
                tooling=tooling,
            )
    except (LLMError, BudgetExhausted) as exc:
        return logic.error_result(invoked, f"{type(exc).__name__}: {exc}", runner.spent)
    except Exception as exc:  # a tool's server failing to start or answer: the attempt fails
        log.warning("llm agent attempt failed", extra={"agent": agent.name}, exc_info=exc)
        return logic.error_result(invoked, f"{type(exc).__name__}: {exc}", runner.spent)
    answer = logic.AgentAnswer(output=output, usage=runner.spent)
    return logic.result_of(invoked, answer, deps.provider.name)


async def run_http_agent(
    event: Envelope[AgentInvoked], agent: AgentSpec, client: httpx.AsyncClient
) -> AgentResult:
    try:
        answer = await http_agent.call(client, agent, event)
    except http_agent.HttpAgentError as exc:
        return logic.error_result(event.payload, str(exc))
    return logic.result_of(event.payload, answer, f"http:{agent.name}")


async def on_agent_invoked(
    event: Envelope[AgentInvoked], tx: Tx, *, deps: Deps, client: httpx.AsyncClient
) -> Sequence[Envelope[Any]]:
    invoked = event.payload
    catalog = await catalog_for(deps.redis, deps.catalog, event.workspace_id)
    if invoked.agent not in catalog.names:
        result = logic.error_result(invoked, f"unknown agent {invoked.agent!r}")
        return [event.follow(result)]
    agent = catalog.get(invoked.agent)
    if agent.kind == "http":
        result = await run_http_agent(event, agent, client)
    elif agent.kind == "llm":
        result = await run_llm_agent(event, agent, catalog, deps=deps, client=client)
    else:
        result = logic.error_result(invoked, f"{agent.name} is a worker agent: not served here")
    return [event.follow(result)]


def build(deps: Deps) -> Service:
    service, bus = new_service(SERVICE, deps)
    # Agents' URLs are tenants': every call through the outbound-address guard.
    client = guard.guarded_client(guard.policy_for(deps.settings.egress_allow), timeout=60.0)

    async def invoked(event: Envelope[AgentInvoked], tx: Tx) -> Sequence[Envelope[Any]]:
        return await on_agent_invoked(event, tx, deps=deps, client=client)

    # A cancelled or expired task's invocations are dropped; waits on an LLM or a URL. A lost
    # invocation is retried at its deadline by the corrector: its letter spares the task.
    bus.on(AgentInvoked, tasks.unless_stopped(deps.redis, deps.keys, invoked), batched=False,
           dead_letter_ends_task=False)
    return service
