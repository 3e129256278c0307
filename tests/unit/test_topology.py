"""Stream and key layout: plain names on one Redis, one cluster slot per partition otherwise."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.crc import key_slot

from shared.contract import keys, topology
from shared.contract.events import (
    DEAD_LETTER_STREAM,
    TaskRequested,
    dead_letter_stream_for,
    dead_letter_streams,
    stream_for,
    streams_for,
)
from shared.contract.topology import Topology
from shared.settings import Settings


@pytest.fixture
def cluster_layout() -> Iterator[Topology]:
    with topology.using(Settings(redis_cluster=True, stream_partitions=8).layout()) as layout:
        yield layout


def _slot(name: str) -> int:
    return int(key_slot(name.encode()))


def test_default_layout_keeps_the_plain_names() -> None:
    assert stream_for("TaskRequested", "acme") == "rf:stream:TaskRequested"
    assert streams_for("TaskRequested") == ["rf:stream:TaskRequested"]
    assert keys.task_history("acme", "abc") == "memory:task_history:acme:abc"
    assert dead_letter_streams() == [DEAD_LETTER_STREAM]
    assert keys.all_approval_deadlines() == ["rf:approvals:deadlines"]


def test_partition_is_stable_and_in_range() -> None:
    layout = Topology(partitions=8, hash_tags=True)
    seen = {layout.partition_of(f"ws-{n}") for n in range(200)}
    assert seen == set(range(8))  # crc32 spreads workspaces over every partition
    assert layout.partition_of("acme") == Topology(partitions=8).partition_of("acme")


def test_a_workspaces_streams_and_keys_share_one_slot(cluster_layout: Topology) -> None:
    workspace = "acme"
    names = [
        TaskRequested.stream(workspace),
        stream_for("StageCompleted", workspace),
        dead_letter_stream_for(TaskRequested.stream(workspace)),
        keys.task_history(workspace, "abc"),
        keys.processed(workspace, "router", "e1"),
        keys.vector_set(workspace),
        keys.vector_hash(workspace),
        keys.vector_attributes(workspace),
        keys.vector_changes(workspace),
        keys.approval_deadlines(workspace),
        keys.webhook_outbox(workspace),
        keys.pool_sequence_counts(workspace),
        keys.handler_error("router", TaskRequested.stream(workspace), "1-0"),
    ]
    assert len({_slot(name) for name in names}) == 1, names


def test_partitions_spread_over_slots(cluster_layout: Topology) -> None:
    slots = {_slot(s) for s in streams_for("TaskRequested")}
    assert len(slots) == cluster_layout.partitions


def test_unpartitioned_stream_name_needs_no_workspace_but_partitioned_does(
    cluster_layout: Topology,
) -> None:
    with pytest.raises(ValueError, match="which workspace"):
        stream_for("TaskRequested")


def test_the_contract_reads_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment reaches the names only through settings the composition root installs."""
    monkeypatch.setenv("RAPTORFLOW_STREAM_PARTITIONS", "8")
    assert streams_for("TaskRequested") == ["rf:stream:TaskRequested"]
    with topology.using(Settings().layout()):
        assert len(streams_for("TaskRequested")) == 8
    assert topology.current() == Topology()
