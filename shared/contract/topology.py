"""How streams and keys are laid out over Redis: partitions and cluster hash tags.

On one Redis (the default: one partition, no hash tags) every name keeps its plain
shape (`rf:stream:TaskRequested`, `memory:task_history:{ws}:{hash}`). For Redis
Cluster, each workspace belongs to one of N partitions (crc32 of its id, so a
task's events always meet in one partition and keep their order), and with hash
tags on, every stream and key of the partition carries `{pK}`: everything one
handler's transaction touches (source stream, output streams, processed marker,
the workspace's keys) hashes to the same slot, so MULTI/EXEC works on a cluster,
while different partitions spread over the shards.

Every process of a deployment must agree on the layout, so it is process-wide: the
composition root installs the one its settings describe (`Settings.layout()`, installed
by `build_deps` and by `get_settings`); until then names keep the plain shape. The
contract itself reads no configuration.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Topology:
    """N stream partitions by workspace; `hash_tags` puts each partition in one cluster slot."""

    partitions: int = 1
    hash_tags: bool = False

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError("partitions must be at least 1")

    @property
    def partitioned(self) -> bool:
        """Whether names carry a partition suffix at all (else the plain single-Redis shape)."""
        return self.partitions > 1 or self.hash_tags

    def partition_of(self, workspace_id: str) -> int:
        """Stable across processes and restarts (crc32, not Python's salted hash)."""
        return zlib.crc32(workspace_id.encode()) % self.partitions

    def tag(self, partition: int) -> str:
        """`{pK}` with hash tags (a cluster slot per partition), else `pK`."""
        return f"{{p{partition}}}" if self.hash_tags else f"p{partition}"

    def suffix(self, partition: int) -> str:
        """What partition-wide names (streams, sweep sets) end with; empty when unpartitioned."""
        return f":{self.tag(partition)}" if self.partitioned else ""

    def suffixes(self) -> list[str]:
        """Every partition's suffix: what sweepers and operators iterate over."""
        return [self.suffix(p) for p in range(self.partitions)]

    def workspace_suffix(self, workspace_id: str) -> str:
        return self.suffix(self.partition_of(workspace_id))

    def scoped(self, workspace_id: str) -> str:
        """The workspace segment of a key: `ws`, or `{pK}ws` so it shares its partition's slot."""
        if not self.hash_tags:
            return workspace_id
        return f"{self.tag(self.partition_of(workspace_id))}{workspace_id}"


_installed = Topology()


def current() -> Topology:
    """The layout every stream and key name of this process follows."""
    return _installed


def use(layout: Topology) -> Topology:
    """Install the deployment's layout (the composition root does); returns the one replaced."""
    global _installed
    previous, _installed = _installed, layout
    return previous


@contextmanager
def using(layout: Topology) -> Iterator[Topology]:
    """The layout for a block (tests and benchmarks of other layouts), restored after."""
    previous = use(layout)
    try:
        yield layout
    finally:
        use(previous)
