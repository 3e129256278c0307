"""Crashes with real processes: SIGKILL each service mid-batch, SIGKILL Redis, two replicas.

Every test runs the stream services as OS processes (`python -m services.NAME`)
against a Redis of its own with AOF (`appendfsync always`), submits a batch of
tasks, injects the fault while tasks are in flight, and then checks that every
task finished exactly once and that no effect happened twice (tests/reliability.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from raptorflow.redis_server import RedisServer
from shared.contract.events import (
    AgentInvoked,
    Payload,
    SequenceChosen,
    StageAssigned,
    StageCleared,
    TaskRequested,
)
from tests.helpers import PLAIN
from tests.procs import VICTIM_STREAM, ProcessGroup, service_processes
from tests.reliability import (
    assert_exactly_once,
    entries_read,
    finished,
    submit_batch,
    wait_entries_read,
    wait_finished,
    wait_log,
    wait_progress,
)

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(300)]

SERVICES = ("router", "selector", "checkpoint", "corrector", "memory", "agents")
BATCH = 20


@pytest.fixture(scope="module")
def stack(aof_redis: RedisServer) -> Iterator[ProcessGroup]:
    """One process per service, shared by the module's tests (a test replaces what it kills)."""
    with service_processes(aof_redis.url, *SERVICES) as group:
        yield group


def _live(group: ProcessGroup, name: str) -> list:
    return [p for p in group.started if p.name == name and p.alive]


@pytest.mark.parametrize("victim", SERVICES)
async def test_sigkill_one_service_mid_batch_then_restart_finishes_every_task_once(
    stack: ProcessGroup, client: Redis, workspace: str, victim: str
) -> None:
    stream = PLAIN.stream(VICTIM_STREAM[victim].event_type)
    read_before = await entries_read(client, stream, victim)
    first = await submit_batch(client, workspace, BATCH // 2, tag=f"{victim}-a")
    await wait_entries_read(client, stream, victim, read_before + 1)

    (process,) = _live(stack, victim)
    assert process.kill() == -9
    # Tasks keep arriving while it is dead: they wait in its group, or in its dead
    # consumer's pending list when it had read them, until the restarted one reclaims them.
    second = await submit_batch(client, workspace, BATCH // 2, tag=f"{victim}-b")
    assert await finished(client, workspace, second) < len(second)
    stack.start(victim)

    task_ids = first + second
    await wait_finished(client, workspace, task_ids)
    await assert_exactly_once(client, workspace, task_ids)


async def test_sigkill_redis_mid_batch_services_reconnect_and_every_accepted_task_finishes(
    aof_redis: RedisServer, stack: ProcessGroup, client: Redis, workspace: str
) -> None:
    task_ids = await submit_batch(client, workspace, BATCH, tag="redis")
    await wait_progress(client, workspace, task_ids, at_least=2)
    before = {p.name: p.proc.pid for p in stack.started if p.alive and p.proc}

    aof_redis.kill()
    router = _live(stack, "router")[0]
    wait_log(router.log, "Message fetch error")  # it noticed, and keeps polling
    aof_redis.start()

    await wait_finished(client, workspace, task_ids)
    await assert_exactly_once(client, workspace, task_ids)
    after = {p.name: p.proc.pid for p in stack.started if p.alive and p.proc}
    assert after == before, "services must reconnect by themselves, not be restarted"


@pytest.fixture
def replicas(aof_redis: RedisServer, stack: ProcessGroup) -> Iterator[ProcessGroup]:
    """A second process of each service, in the same groups, under its own consumer name."""
    with service_processes(aof_redis.url, *SERVICES) as group:
        yield group


STREAM_OF: dict[str, type[Payload]] = {
    "router": TaskRequested,
    "selector": SequenceChosen,
    "checkpoint": StageAssigned,
    "corrector": StageCleared,
    "memory": TaskRequested,
    "agents": AgentInvoked,
}


async def test_two_replicas_per_service_share_the_work_and_nothing_is_processed_twice(
    stack: ProcessGroup, replicas: ProcessGroup, client: Redis, workspace: str
) -> None:
    names = {p.consumer for p in replicas.started}
    task_ids = await submit_batch(client, workspace, BATCH * 2, tag="replicas")
    await wait_finished(client, workspace, task_ids)
    await assert_exactly_once(client, workspace, task_ids)

    for name, payload in STREAM_OF.items():
        consumers = await client.xinfo_consumers(PLAIN.stream(payload.event_type), name)
        live = {p.consumer for p in [*stack.started, *replicas.started] if p.alive}
        busy = [
            c["name"].decode()
            for c in consumers
            if c["name"].decode() in live and _deliveries(c) > 0
        ]
        assert len(busy) >= 2, f"{name}: only {busy} got work"
        assert names & set(busy), f"{name}: the replica got no work"


def _deliveries(consumer: dict) -> int:
    """Messages this consumer has read: its pending entries, or a recent read at all."""
    return int(consumer.get("pending", 0)) or (1 if int(consumer.get("inactive", -1)) >= 0 else 0)
