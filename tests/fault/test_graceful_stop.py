"""SIGTERM mid-batch, as Kubernetes stops a pod (scale-in, rollout, node drain).

The process turns unready, stops reading, gives in-flight handlers `shutdown_grace_s` to
commit, cancels the rest (their messages stay pending: a cancelled handler's transaction
never ran) and exits 0 in time. A restarted replica then finishes the batch, and every
effect happens exactly once (tests/reliability.py). Services run as OS processes against
a Redis of this module's own; the corrector's critic is a scripted OpenAI-compatible
server whose replies take as long as a test needs (the agents service drafts offline).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import httpx
import pytest
from redis.asyncio import Redis

from raptorflow.redis_server import RedisServer, free_port
from shared.contract.events import AgentResult, CritiqueDone, StageCompleted
from tests.fakes.openai_script import PurposeScript, purpose_of
from tests.fakes.openai_server import Reply, ScriptedOpenAIServer, delay
from tests.helpers import PLAIN, eventually
from tests.procs import VICTIM_STREAM, ProcessGroup, ServiceProcess, service_processes
from tests.reliability import (
    assert_exactly_once,
    effects_of,
    entries_read,
    submit_batch,
    wait_entries_read,
    wait_finished,
)

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(300)]

UPSTREAM = ("router", "selector", "checkpoint", "memory", "agents")
BATCH = 16
GRACE_S = 15.0


@pytest.fixture(scope="module")
def stack(aof_redis: RedisServer) -> Iterator[ProcessGroup]:
    """Every service but the corrector, which each test starts with the LLM it needs."""
    env = {"RAPTORFLOW_SHUTDOWN_GRACE_S": str(GRACE_S)}
    with service_processes(aof_redis.url, *UPSTREAM, env=env) as group:
        yield group


@pytest.fixture
def llm(stack: ProcessGroup) -> Iterator[ScriptedOpenAIServer]:
    """The test's LLM; the correctors that used it are stopped with it."""
    with ScriptedOpenAIServer() as server:
        try:
            yield server
        finally:
            for process in stack.started:
                if process.name == "corrector":
                    process.stop()


def slow(script: PurposeScript, seconds: float) -> Callable[[dict], Reply]:
    """Every chat call answers after `seconds` (the corrector's critique: one per stage here)."""
    return lambda body: delay(seconds, then=script(body))


def corrector_env(llm: ScriptedOpenAIServer, grace_s: float, **more: str) -> dict[str, str]:
    return {
        **more,
        "RAPTORFLOW_LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-test",
        "RAPTORFLOW_LLM_MODEL": "fake-model",
        "RAPTORFLOW_SHUTDOWN_GRACE_S": str(grace_s),
        "RAPTORFLOW_METRICS_PORT": str(free_port()),
    }


def _live(group: ProcessGroup, name: str) -> ServiceProcess:
    (process,) = [p for p in group.started if p.name == name and p.alive]
    return process


async def probe(process: ServiceProcess, path: str) -> tuple[int, str] | None:
    """A probe of the process's metrics port; None once nothing listens there."""
    url = f"http://127.0.0.1:{process.env['RAPTORFLOW_METRICS_PORT']}{path}"
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(url)
    except httpx.TransportError:
        return None
    return response.status_code, response.text.strip()


async def terminate_watching_readiness(process: ServiceProcess) -> tuple[int, float, set]:
    """SIGTERM, and what /readyz said until the process was gone."""
    answers: set = set()
    exit_code = asyncio.create_task(asyncio.to_thread(process.terminate))
    while not exit_code.done():
        answers.add(await probe(process, "/readyz"))
        await asyncio.sleep(0.02)
    code, seconds = await exit_code
    return code, seconds, answers


def calls_made(llm: ScriptedOpenAIServer, purpose: str) -> int:
    """LLM calls of one purpose made by handlers; the client's own retries of a call (e.g. a
    keep-alive connection the server closed under load) carry a retry count and are left out,
    so a stage handled twice shows as two."""
    return sum(
        1
        for r in llm.chat_requests
        if purpose_of(r["json"]) == purpose and r["headers"].get("x-stainless-retry-count") == "0"
    )


async def count_events(redis: Redis, workspace: str, payload: type) -> int:
    effects = await effects_of(redis, workspace)
    return sum(effects.entries_per_event[payload.event_type].values())


async def pending_of(redis: Redis, stream: str, group: str, consumer: str) -> int:
    for info in await redis.xinfo_consumers(stream, group):
        if info["name"].decode() == consumer:
            return int(info["pending"])
    return 0


async def test_sigterm_lets_in_flight_llm_stages_commit_then_exits_and_nothing_runs_twice(
    stack: ProcessGroup, client: Redis, workspace: str, llm: ScriptedOpenAIServer
) -> None:
    script = PurposeScript(scores=[0.97])
    llm.responder = slow(script, 0.5)
    # No reclaim within the test: on a starved machine a replica may reclaim a stage from a
    # stalled consumer and run it again (effect once, LLM twice), which is not what this
    # test is about.
    env = corrector_env(llm, GRACE_S, RAPTORFLOW_CLAIM_MIN_IDLE_MS="20000")
    (corrector,) = stack.start("corrector", env=env)

    async def ready() -> bool:
        return await probe(corrector, "/readyz") == (200, "ok")

    await eventually(ready, 10)
    assert await probe(corrector, "/livez") == (200, "ok")

    task_ids = await submit_batch(client, workspace, BATCH, tag="finish")
    await eventually(lambda: _at_least(lambda: script.calls["critique"], 3), 60)

    code, seconds, readiness = await terminate_watching_readiness(corrector)
    assert code == 0, corrector.log()
    assert seconds < GRACE_S, f"took {seconds:.1f}s"
    assert (503, "stopping") in readiness, readiness

    # Every critique it had begun (an LLM call made) was committed before it exited: each
    # passes, so each completed its stage.
    begun = calls_made(llm, "critique")
    assert await count_events(client, workspace, StageCompleted) == begun

    stack.start("corrector", env=env)
    await wait_finished(client, workspace, task_ids)
    await assert_exactly_once(client, workspace, task_ids)
    stages = 2 * len(task_ids)
    assert calls_made(llm, "critique") == stages


async def test_sigterm_past_the_grace_period_releases_in_flight_stages_for_a_replica(
    stack: ProcessGroup, client: Redis, workspace: str, llm: ScriptedOpenAIServer
) -> None:
    script = PurposeScript(scores=[0.97])
    llm.responder = slow(script, 60.0)  # answers long after the grace period ends
    (corrector,) = stack.start("corrector", env=corrector_env(llm, grace_s=1.0))

    task_ids = await submit_batch(client, workspace, BATCH, tag="release")
    await eventually(lambda: _at_least(lambda: script.calls["critique"], 3), 60)

    code, seconds = corrector.terminate()
    assert code == 0, corrector.log()
    assert seconds < 10, f"took {seconds:.1f}s: it waited for the LLM"

    # Nothing half-done: no stage's critique or completion was published, and every agent
    # result it was critiquing is still pending under its consumer, for a replica to reclaim.
    assert await count_events(client, workspace, CritiqueDone) == 0
    assert await count_events(client, workspace, StageCompleted) == 0
    stream = PLAIN.stream(AgentResult.event_type)
    assert await pending_of(client, stream, "corrector", corrector.consumer) >= 3

    llm.responder = script
    stack.start("corrector", env=corrector_env(llm, GRACE_S))
    await wait_finished(client, workspace, task_ids)
    await assert_exactly_once(client, workspace, task_ids)
    assert await pending_of(client, stream, "corrector", corrector.consumer) == 0


@pytest.mark.parametrize("victim", [*UPSTREAM, "corrector"])
async def test_sigterm_one_service_mid_batch_then_restart_finishes_every_task_once(
    stack: ProcessGroup, client: Redis, workspace: str, victim: str
) -> None:
    env = {"RAPTORFLOW_SHUTDOWN_GRACE_S": str(GRACE_S)}
    if not any(p.name == "corrector" and p.alive for p in stack.started):
        stack.start("corrector", env=env)
    stream = PLAIN.stream(VICTIM_STREAM[victim].event_type)
    read_before = await entries_read(client, stream, victim)
    first = await submit_batch(client, workspace, BATCH // 2, tag=f"{victim}-a")
    await wait_entries_read(client, stream, victim, read_before + 1)

    code, seconds = _live(stack, victim).terminate()
    assert code == 0 and seconds < GRACE_S, (code, seconds)
    second = await submit_batch(client, workspace, BATCH // 2, tag=f"{victim}-b")
    stack.start(victim, env=env)

    task_ids = first + second
    await wait_finished(client, workspace, task_ids)
    await assert_exactly_once(client, workspace, task_ids)


async def _at_least(value: Callable[[], int], n: int) -> bool:
    return value() >= n
