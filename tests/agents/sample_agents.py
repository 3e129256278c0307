"""Worker agents the tests run, in process or as `raptorflow agent serve` subprocesses."""

from __future__ import annotations

import asyncio
import os

from redis.asyncio import Redis

from raptorflow.agent_sdk import AgentReply, AgentRequest, agent

AGENT_NAME = os.environ.get("RF_TEST_AGENT", "sample_worker")


def improving_answer(request: AgentRequest) -> str:
    """A weak first draft; a revision that fixes what the (offline) critic asks for."""
    if not request.is_revision:
        return f"Some notes about {request.goal}."
    return (
        f"# {request.goal}\n\n{request.draft}\n\n## Key points\n- covers {request.goal}\n\n"
        "## Sources\n- Industry reports\n\n## Conclusion\nThis covers the goal.\n\n"
        "Call to action: book a demo.\n"
    )


@agent(AGENT_NAME)
async def improving(request: AgentRequest) -> AgentReply:
    return AgentReply(output=improving_answer(request), self_score=0.5)


@agent(AGENT_NAME)
async def stuck_once(request: AgentRequest) -> str:
    """Marks that it started, then hangs: the test kills this process mid-attempt."""
    redis = Redis.from_url(os.environ["REDIS_URL"])
    await redis.set(f"rf:test:started:{request.invocation_id}", os.getpid())
    await redis.aclose()
    await asyncio.sleep(3600)
    return "never"
