"""Stream and key layout: plain names on one Redis, one cluster slot per partition otherwise."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from shared.contract.events import TaskRequested, agent_channel, new_envelope
from shared.contract.keys import Keys
from shared.contract.topology import DEAD_LETTER_STREAM, Topology
from shared.settings import Settings


@pytest.fixture
def cluster_layout() -> Topology:
    return Settings(redis_cluster=True, stream_partitions=8).layout()


def _slot(name: str) -> int:
    return int(key_slot(name.encode()))


def test_default_layout_keeps_the_plain_names() -> None:
    layout = Topology()
    keys = Keys(layout)
    assert layout.stream("TaskRequested", "acme") == "rf:stream:TaskRequested"
    assert layout.streams("TaskRequested") == ["rf:stream:TaskRequested"]
    assert keys.task_history("acme", "abc") == "memory:task_history:acme:abc"
    assert layout.dead_letters() == [DEAD_LETTER_STREAM]
    assert keys.all_approval_deadlines() == ["rf:approvals:deadlines"]


def test_partition_is_stable_and_in_range() -> None:
    layout = Topology(partitions=8, hash_tags=True)
    seen = {layout.partition_of(f"ws-{n}") for n in range(200)}
    assert seen == set(range(8))  # crc32 spreads workspaces over every partition
    assert layout.partition_of("acme") == Topology(partitions=8).partition_of("acme")


def test_a_workspaces_streams_and_keys_share_one_slot(cluster_layout: Topology) -> None:
    workspace = "acme"
    keys = Keys(cluster_layout)
    requested = cluster_layout.stream(TaskRequested.event_type, workspace)
    names = [
        requested,
        cluster_layout.stream("StageCompleted", workspace),
        cluster_layout.dead_letter_for(requested),
        keys.task_history(workspace, "abc"),
        keys.processed(workspace, "router", "e1"),
        keys.vector_set(workspace),
        keys.vector_hash(workspace),
        keys.vector_attributes(workspace),
        keys.vector_changes(workspace),
        keys.approval_deadlines(workspace),
        keys.webhook_outbox(workspace),
        keys.pool_sequence_counts(workspace),
        keys.handler_error("router", requested, "1-0"),
    ]
    assert len({_slot(name) for name in names}) == 1, names


def test_partitions_spread_over_slots(cluster_layout: Topology) -> None:
    slots = {_slot(s) for s in cluster_layout.streams("TaskRequested")}
    assert len(slots) == cluster_layout.partitions


def test_unpartitioned_stream_name_needs_no_workspace_but_partitioned_does(
    cluster_layout: Topology,
) -> None:
    assert Topology().stream("TaskRequested") == "rf:stream:TaskRequested"
    with pytest.raises(ValueError, match="which workspace"):
        cluster_layout.stream("TaskRequested")


def test_an_event_is_named_by_its_channel_and_workspace(cluster_layout: Topology) -> None:
    """The event names its channel; the layout adds the workspace's partition."""
    event = new_envelope(TaskRequested(goal="g"), workspace_id="acme")
    assert Topology().stream_of(event) == "rf:stream:TaskRequested"
    assert cluster_layout.stream_of(event) == cluster_layout.stream("TaskRequested", "acme")
    assert Topology().stream(agent_channel("writer")) == "rf:stream:AgentInvoked:writer"


def test_the_layout_is_a_value_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment reaches the names only through settings passed explicitly: two
    layouts live side by side in one process, and nothing is installed or reset."""
    monkeypatch.setenv("RAPTORFLOW_STREAM_PARTITIONS", "8")
    from_env = Settings().keys()
    assert len(from_env.layout.streams("TaskRequested")) == 8
    assert Topology().streams("TaskRequested") == ["rf:stream:TaskRequested"]
    assert from_env.task_view("acme", "t1") == Keys(Topology()).task_view("acme", "t1")
    assert from_env.all_approval_deadlines() != Keys(Topology()).all_approval_deadlines()
