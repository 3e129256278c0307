"""How streams and keys are laid out over Redis: partitions and cluster hash tags.

On one Redis (the default: one partition, no hash tags) every name keeps its plain
shape (`rf:stream:TaskRequested`, `memory:task_history:{ws}:{hash}`). For Redis
Cluster, each workspace belongs to one of N partitions (crc32 of its id, so a
task's events always meet in one partition and keep their order), and with hash
tags on, every stream and key of the partition carries `{pK}`: everything one
handler's transaction touches (source stream, output streams, processed marker,
the workspace's keys) hashes to the same slot, so MULTI/EXEC works on a cluster,
while different partitions spread over the shards.

The layout is process-wide, like the settings it comes from: every process of a
deployment must agree on it, so it is read once from the environment.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache


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


@lru_cache(maxsize=1)
def current() -> Topology:
    """The deployment's layout, from RAPTORFLOW_STREAM_PARTITIONS and RAPTORFLOW_REDIS_CLUSTER."""
    from shared.settings import get_settings

    settings = get_settings()
    return Topology(
        partitions=settings.stream_partitions,
        hash_tags=settings.redis_cluster or settings.hash_tags,
    )


def reset() -> None:
    """Forget the cached layout (tests that change the environment)."""
    from shared.settings import get_settings

    get_settings.cache_clear()
    current.cache_clear()
