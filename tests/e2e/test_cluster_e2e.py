"""The whole flow on a real three-master Redis Cluster, streams split into partitions.

Every service, the gateway and the checks use cluster clients; a handler's
transaction (source stream, outputs, marker, workspace keys) must stay in one
slot or Redis refuses it with CROSSSLOT, so a completed task with exactly-once
effects shows the layout is cluster-safe. The partitions must also spread over
more than one master, or the cluster would not share the load.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from raptorflow.redis_server import (
    RedisCluster,
    RedisClusterUnavailable,
    running_cluster,
    running_redis,
)
from raptorflow.stack import LocalStack, wait_for_task
from shared.contract.events import TaskRequested, new_envelope
from shared.contract.keys import Keys, goal_hash
from shared.contract.topology import Topology
from shared.messaging import dead_letters
from shared.messaging.bus import publish
from shared.messaging.codec import DATA_FIELD
from tests.checkpoint_helpers import gate
from tests.helpers import eventually, settings_for
from tests.reliability import assert_exactly_once, wait_drained

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PARTITIONS = 6
WORKSPACES = [f"cluster-ws-{n}" for n in range(6)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    try:
        with running_cluster(masters=3) as started:
            yield started
    except RedisClusterUnavailable as exc:
        pytest.skip(f"cannot form a Redis Cluster here: {exc}")


# The layout the cluster tests' stacks run (settings_for(..., redis_cluster=True,
# stream_partitions=PARTITIONS)): what the test's own reads must name too.
LAYOUT = Topology(partitions=PARTITIONS, hash_tags=True)
KEYS = Keys(LAYOUT)


@pytest.fixture
def cluster_layout(cluster: RedisCluster) -> str:
    return cluster.url


@pytest.fixture
async def client(cluster_layout: str) -> AsyncIterator[ClusterClient]:
    redis = ClusterClient.from_url(cluster_layout)
    try:
        yield redis
    finally:
        await redis.aclose()


async def _status(http: httpx.AsyncClient, task_id: str, workspace: str) -> dict | None:
    response = await http.get(f"/tasks/{task_id}", params={"workspace_id": workspace})
    body = response.json() if response.status_code == 200 else {}
    return body if body.get("status") in {"completed", "failed"} else None


async def _pending(http: httpx.AsyncClient, workspace: str) -> list[dict]:
    return (await http.get("/approvals", params={"workspace_id": workspace})).json()


async def _node_of(redis: ClusterClient, key: str) -> str:
    node = redis.get_node_from_key(key)
    return f"{node.host}:{node.port}"


async def test_flow_on_three_master_cluster(cluster_layout: str, client: ClusterClient) -> None:
    settings = settings_for(cluster_layout, redis_cluster=True, stream_partitions=PARTITIONS)
    assert settings.layout() == LAYOUT
    stack = LocalStack(settings, with_gateway=True, start_redis=False)
    async with (
        stack,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.gateway_port}", timeout=10) as http,
    ):
        tasks: dict[str, list[str]] = {}
        for workspace in WORKSPACES:
            for goal in ("Create a blog post about AI trends", "Write a blog about machine learning"):
                response = await http.post("/tasks", json={"goal": goal, "workspace_id": workspace})
                assert response.status_code == 202, response.text
                task_id = response.json()["task_id"]
                status = await eventually(lambda t=task_id, w=workspace: _status(http, t, w), 60)
                assert status["status"] == "completed", status
                tasks.setdefault(workspace, []).append(task_id)
            # Semantic memory works on the cluster: the second goal reuses the first's sequence.
            second = await _status(http, tasks[workspace][1], workspace)
            assert second is not None and second["routing_source"] == "memory"

        # A human checkpoint: approvals and their deadline set live in the partition too.
        workspace = WORKSPACES[1]
        checkpoints = gate(workspace, stage="content").model_dump(mode="json")
        body = {"goal": "Write a newsletter intro", "workspace_id": workspace,
                "agent_sequence": ["content"], "checkpoints": checkpoints}
        gated = (await http.post("/tasks", json=body)).json()["task_id"]
        pending = await eventually(lambda: _pending(http, workspace), 30)
        decision = {"workspace_id": workspace, "decision": "approved", "decided_by": "alice"}
        decided = await http.post(f"/approvals/{pending[0]['approval_id']}/decision", json=decision)
        assert decided.status_code == 200, decided.text
        status = await eventually(lambda: _status(http, gated, workspace), 30)
        assert status["status"] == "completed", status
        tasks[workspace].append(gated)

        # A message on the wrong partition is dead-lettered with the reason, not lost.
        wrong = next(s for s in LAYOUT.streams("TaskRequested")
                     if s != LAYOUT.stream("TaskRequested", WORKSPACES[0]))
        await client.xadd(wrong, {DATA_FIELD: _task_requested_json(WORKSPACES[0])})
        letters = await eventually(lambda: dead_letters.list_letters(client, LAYOUT), 20)
        assert any("partitioned by workspace" in letter.error for letter in letters), letters

        await wait_drained(client, layout=LAYOUT)  # type: ignore[arg-type]
        for workspace in WORKSPACES:
            await assert_exactly_once(
                client, workspace, tasks[workspace], keys=KEYS  # type: ignore[arg-type]
            )

    # Each workspace's keys live with its partition's streams (one slot per partition) ...
    for workspace in WORKSPACES:
        stream_node = await _node_of(client, LAYOUT.stream("TaskRequested", workspace))
        history = KEYS.task_history(workspace, goal_hash("Create a blog post about AI trends"))
        assert await client.exists(history)
        assert await _node_of(client, history) == stream_node
        assert await _node_of(client, KEYS.vector_set(workspace)) == stream_node
        # Adaptive selection learned on the cluster (optimistic-lock updates of aggregates).
        assert await client.smembers(KEYS.performance_index(workspace))
    # ... and the partitions spread over the masters.
    nodes = {await _node_of(client, s) for s in LAYOUT.streams("TaskRequested")}
    assert len(nodes) >= 2, nodes


def _task_requested_json(workspace: str) -> str:
    event = new_envelope(TaskRequested(goal="Write a tagline"), workspace_id=workspace)
    return event.model_dump_json()


async def test_partitioned_streams_on_one_redis() -> None:
    """Partitions without a cluster (plain `:pK` names): tasks complete, each on its stream."""
    layout = Topology(partitions=3)
    with running_redis() as server:
        settings = settings_for(server.url, stream_partitions=3)
        assert settings.layout() == layout
        redis = Redis.from_url(server.url)
        async with LocalStack(settings, start_redis=False) as stack:
            assert stack.deps is not None
            for workspace in WORKSPACES[:4]:
                event = new_envelope(TaskRequested(goal="Write a tagline"), workspace_id=workspace)
                await publish(redis, layout, [event])
                view = await wait_for_task(stack.deps, workspace, event.correlation_id, 60)
                assert view["status"] == "completed", view
                stream = layout.stream("TaskRequested", workspace)
                assert stream.endswith(f":p{layout.partition_of(workspace)}")
                assert await redis.xlen(stream) >= 1
        await redis.aclose()


async def test_worker_agent_on_the_cluster(cluster_layout: str, client: ClusterClient) -> None:
    """A worker agent's streams, answers (MULTI of XADD + XACK) and heartbeats on a cluster:
    each partition's stream is read on its own slot; every workspace's stage completes."""
    from raptorflow.agent_sdk import AgentRequest, Worker, agent
    from shared.domain.catalog import AgentSpec
    from shared.stores import agent_registry
    from tests.agents.sample_agents import improving_answer

    name = "cluster_worker"

    @agent(name)
    async def writer(request: AgentRequest) -> str:
        return improving_answer(request)

    settings = settings_for(cluster_layout, redis_cluster=True, stream_partitions=PARTITIONS)
    async with LocalStack(settings, start_redis=False) as stack:
        assert stack.deps is not None
        spec = AgentSpec(name=name, kind="worker", task_types=["research"])
        await agent_registry.put_agent(stack.deps.redis, stack.deps.catalog, spec, "*")
        worker = Worker(writer, stack.deps.redis, LAYOUT, claim_idle_ms=5000)
        import asyncio

        running = asyncio.create_task(worker.run())
        try:
            await eventually(lambda: agent_registry.live_workers(stack.deps.redis, [name]), 20)
            for workspace in WORKSPACES[:3]:
                event = new_envelope(
                    TaskRequested(goal="Research AI trends", agent_sequence=[name]),
                    workspace_id=workspace,
                )
                await publish(stack.deps.redis, stack.deps.layout, [event])
                view = await wait_for_task(stack.deps, workspace, event.correlation_id, 60)
                assert view["status"] == "completed", view
        finally:
            worker.stop()
            await asyncio.wait_for(running, 30)
            await agent_registry.delete_agent(stack.deps.redis, name, "*")
    assert worker.handled >= 6  # two drafts per task
