"""Tools of llm agents: a worker tool with the offline provider (deterministic), and an MCP
tool over stdio through the real `openai` client's tool-calling loop against the scripted
OpenAI-compatible server. Tool calls count in the task's usage."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

from raptorflow.agent_sdk import AgentRequest, agent
from raptorflow.stack import LocalStack, wait_for_task
from shared.domain.catalog import AgentSpec
from shared.stores import agent_registry
from tests.agents.test_worker_agents import submit, worker_running
from tests.fakes.openai_script import PurposeScript, purpose_of
from tests.fakes.openai_server import Reply, ScriptedOpenAIServer, text, tool_calls
from tests.helpers import events_of_task, settings_for

MCP_SERVER = Path(__file__).with_name("mcp_facts_server.py")


async def _completed(redis: Any, task_id: str) -> dict[str, Any]:
    events = await events_of_task(redis, task_id)
    return next(e for e in events if e["type"] == "StageCompleted")["payload"]


async def test_offline_llm_agent_calls_its_worker_tool(redis_url, redis, workspace):
    tool, user = f"t_{uuid.uuid4().hex[:8]}", f"l_{uuid.uuid4().hex[:8]}"
    asked: list[str] = []

    @agent(tool)
    async def facts(request: AgentRequest) -> str:
        asked.append(request.goal)
        return f"TOOL FACT about {request.goal}"

    async with LocalStack(settings_for(redis_url), start_redis=False) as stack:
        assert stack.deps is not None
        for spec in (
            AgentSpec(name=tool, kind="worker", task_types=["research"], description="facts"),
            AgentSpec(name=user, task_types=["research"], prompt="Research.", tools=[tool]),
        ):
            await agent_registry.put_agent(redis, stack.deps.catalog, spec, workspace)
        async with worker_running(facts, redis):
            task_id = await submit(redis, workspace, [user], goal="Research edge AI chips")
            view = await wait_for_task(stack.deps, workspace, task_id, timeout=60)
    assert view["status"] == "completed", view
    assert asked and asked[0] == "Research edge AI chips"  # the offline model's query
    completed = await _completed(redis, task_id)
    assert "TOOL FACT about Research edge AI chips" in completed["output"]


async def test_openai_tool_calling_loop_with_an_mcp_tool(redis_url, redis, workspace, monkeypatch):
    name = f"m_{uuid.uuid4().hex[:8]}"
    script = PurposeScript(scores=[0.95])
    rounds: list[dict[str, Any]] = []

    def respond(body: dict[str, Any]) -> Reply:
        if purpose_of(body) == "generate" and body.get("tools"):
            rounds.append(body)
            tool_results = [m for m in body["messages"] if m.get("role") == "tool"]
            if not tool_results:
                return tool_calls(("mcp__facts__lookup", {"query": "edge AI"}))
            return text(f"DRAFT v1 with {tool_results[0]['content']}")
        return script(body)

    with ScriptedOpenAIServer() as server:
        server.responder = respond
        settings = settings_for(
            redis_url, llm_provider="openai", openai_base_url=server.base_url,
            openai_api_key="test", llm_model="fake-model", mcp_allowed_commands=sys.executable,
        )  # fmt: skip
        async with LocalStack(settings, start_redis=False) as stack:
            assert stack.deps is not None
            spec = AgentSpec(
                name=name, task_types=["research"], prompt="Research with facts.",
                tools=["mcp:facts/lookup"],
                mcp_servers={"facts": {"command": sys.executable, "args": [str(MCP_SERVER)]}},
            )  # fmt: skip
            await agent_registry.put_agent(redis, stack.deps.catalog, spec, workspace)
            task_id = await submit(redis, workspace, [name], goal="Research edge AI")
            view = await wait_for_task(stack.deps, workspace, task_id, timeout=90)
    assert view["status"] == "completed", view
    # (a message may be handled twice when a loaded machine stalls the loop past the test's
    # 500 ms reclaim time; only one handling commits, so the rounds come in pairs)
    roles = [[m["role"] for m in r["messages"]] for r in rounds]
    assert roles.count(["system", "user"]) == roles.count(["system", "user", "assistant", "tool"])
    assert rounds[0]["tools"][0]["function"]["name"] == "mcp__facts__lookup"
    second = next(r for r in rounds if len(r["messages"]) == 4)
    assistant = next(m for m in second["messages"] if m.get("tool_calls"))
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"query": "edge AI"}
    completed = await _completed(redis, task_id)
    assert "FACT: edge AI grew 40%" in completed["output"]
    usage = completed["self_correction_metadata"]["usage"]
    assert usage["api_calls"] >= 4  # two model rounds + the MCP call + the critique


async def test_offline_llm_agent_calls_its_http_tool(redis_url, redis, workspace, monkeypatch):
    from tests.agents.test_http_agents import AgentServer

    monkeypatch.setenv("RAPTORFLOW_EGRESS_ALLOW", "127.0.0.1")  # the test agent listens there
    tool, user = f"h_{uuid.uuid4().hex[:8]}", f"l_{uuid.uuid4().hex[:8]}"
    with AgentServer([], answer={"output": "HTTP TOOL FACT"}) as server:
        async with LocalStack(settings_for(redis_url), start_redis=False) as stack:
            assert stack.deps is not None
            for spec in (
                AgentSpec(name=tool, kind="http", task_types=["research"], url=server.url),
                AgentSpec(name=user, task_types=["research"], prompt="Research.", tools=[tool]),
            ):
                await agent_registry.put_agent(redis, stack.deps.catalog, spec, workspace)
            task_id = await submit(redis, workspace, [user], goal="Research edge AI chips")
            view = await wait_for_task(stack.deps, workspace, task_id, timeout=60)
    assert view["status"] == "completed", view
    assert server.requests[0]["stage_input"]["goal"] == "Research edge AI chips"
    assert "HTTP TOOL FACT" in (await _completed(redis, task_id))["output"]
