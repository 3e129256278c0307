"""Tools of an llm agent: worker and http agents on the agent protocol, and MCP servers.

A tool call becomes an invocation of the tool agent (`stage_input.goal` is the
call's `query`, `stage_input.inputs` its arguments): an http tool is POSTed to like
an http agent; a worker tool gets an AgentInvoked on its stream whose `reply_to` is
a stream of this call only, read until the tool's deadline. An `mcp:<server>/<tool>`
tool is called through the official `mcp` SDK, its server started over stdio for
the attempt as the catalog says. Every call counts as one call in the task's budget
(plus what the tool reports).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from redis.asyncio import Redis

from services.agents import http_agent
from shared.contract.events import (
    AgentInvoked,
    AgentResult,
    Envelope,
    StageInput,
    Usage,
    envelope_class,
)
from shared.contract.topology import Topology
from shared.domain.catalog import AgentCatalog, AgentSpec, mcp_command_allowed
from shared.domain.llm_port import ToolCall, ToolSpec
from shared.domain.self_correction import Tooling
from shared.messaging.codec import DATA_FIELD

ONE_CALL = Usage(api_calls=1)


def function_name(tool: str) -> str:
    """The OpenAI function name of a catalog tool (`mcp:srv/x` -> `mcp__srv__x`)."""
    return tool.replace("mcp:", "mcp__", 1).replace("/", "__").replace(".", "_")


def _query(call: ToolCall) -> str:
    value = call.arguments.get("query")
    return str(value) if value else json.dumps(call.arguments)[:4000]


def tool_invocation(
    parent: Envelope[AgentInvoked], tool: AgentSpec, call: ToolCall, layout: Topology
) -> Envelope[AgentInvoked]:
    """The invocation a tool call becomes (answered on a reply stream of its own)."""
    invoked = parent.payload
    invocation_id = f"{invoked.invocation_id}/tool/{call.id}"[:200]
    suffix = layout.workspace_suffix(parent.workspace_id)
    payload = invoked.model_copy(
        update={
            "invocation_id": invocation_id,
            "agent": tool.name,
            "kind": tool.kind,
            "stage_input": StageInput(goal=_query(call)[:4000], inputs=call.arguments),
            "previous_output": None,
            "draft": None,
            "issues": [],
            "attempt": 1,
            "max_attempts": 1,
            "deadline": datetime.now(UTC) + timedelta(seconds=tool.timeout_s),
            "reply_to": f"rf:agent:tool-reply:{invocation_id}{suffix}",
        }
    )
    return parent.follow(payload, key=invocation_id)


async def _call_worker(
    redis: Redis, layout: Topology, event: Envelope[AgentInvoked]
) -> tuple[str, Usage]:
    reply_to = event.payload.reply_to
    await redis.xadd(layout.stream_of(event), {DATA_FIELD: event.model_dump_json()})
    try:
        while (left := event.payload.deadline.timestamp() - time.time()) > 0:
            reply = await redis.xread({reply_to: "0-0"}, count=1, block=int(min(left, 1.0) * 1000))
            if reply:
                _, entries = reply[0]
                result = envelope_class(AgentResult).model_validate_json(
                    entries[0][1][DATA_FIELD.encode()]
                )
                return _text(result.payload), ONE_CALL.plus(result.payload.usage)
        return f"tool {event.payload.agent} did not answer in time", ONE_CALL
    finally:
        await redis.delete(reply_to)


def _text(result: AgentResult) -> str:
    return result.output if result.output is not None else f"tool error: {result.error}"


@contextlib.asynccontextmanager
async def tooling_for(
    agent: AgentSpec,
    catalog: AgentCatalog,
    parent: Envelope[AgentInvoked],
    *,
    redis: Redis,
    layout: Topology,
    client: httpx.AsyncClient,
    mcp_allowed: str = "",
    max_rounds: int = 3,
) -> AsyncIterator[Tooling | None]:
    """The agent's tools for one attempt (MCP servers live as long as the attempt; an agent
    registered at run time may start only the `mcp_allowed` commands)."""
    if not agent.tools:
        yield None
        return
    async with contextlib.AsyncExitStack() as stack:
        specs: list[ToolSpec] = []
        runners: dict[str, Any] = {}
        for tool in agent.tools:
            if tool.startswith("mcp:"):
                server, _, name = tool[4:].partition("/")
                session = await _mcp_session(stack, agent, server, mcp_allowed)
                specs.append(await _mcp_spec(session, name, function_name(tool)))
                runners[function_name(tool)] = ("mcp", session, name)
            else:
                spec = catalog.get(tool)
                specs.append(
                    ToolSpec(name=function_name(tool), description=spec.description or tool)
                )
                runners[function_name(tool)] = ("agent", spec, None)

        async def run(call: ToolCall) -> tuple[str, Usage]:
            kind, target, name = runners.get(call.name, (None, None, None))
            if kind is None:
                return f"unknown tool {call.name}", ONE_CALL
            if kind == "mcp":
                result = await target.call_tool(name, call.arguments, read_timeout_seconds=60)
                texts = [getattr(c, "text", "") for c in result.content]
                return "\n".join(t for t in texts if t) or "(no text)", ONE_CALL
            event = tool_invocation(parent, target, call, layout)
            if target.kind == "http":
                try:
                    answer = await http_agent.call(client, target, event)
                except http_agent.HttpAgentError as exc:
                    return f"tool error: {exc}", ONE_CALL
                return answer.output or f"tool error: {answer.error}", ONE_CALL.plus(answer.usage)
            return await _call_worker(redis, layout, event)

        yield Tooling(specs=specs, run=run, max_rounds=max_rounds)


async def _mcp_session(
    stack: contextlib.AsyncExitStack, agent: AgentSpec, server: str, allowed: str
) -> Any:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    spec = agent.mcp_servers[server]
    if agent.version > 0 and not mcp_command_allowed(spec.command, allowed):
        # registered at run time, by a tenant: only commands the operator allowed
        raise PermissionError(f"MCP server {server}: command not allowed by the operator")
    params = StdioServerParameters(command=spec.command, args=spec.args)
    read, write = await stack.enter_async_context(stdio_client(params))
    session = await stack.enter_async_context(ClientSession(read, write))
    await session.initialize()
    return session


async def _mcp_spec(session: Any, name: str, function: str) -> ToolSpec:
    listed = await session.list_tools()
    for tool in listed.tools:
        if tool.name == name:
            return ToolSpec(
                name=function,
                description=tool.description or name,
                parameters=getattr(tool, "input_schema", None) or {},
            )
    raise LookupError(f"MCP server has no tool {name!r}")
