"""How streams and keys are laid out over Redis: partitions and cluster hash tags.

On one Redis (the default: one partition, no hash tags) every name keeps its plain
shape (`rf:stream:TaskRequested`, `memory:task_history:{ws}:{hash}`). For Redis
Cluster, each workspace belongs to one of N partitions (crc32 of its id, so a
task's events always meet in one partition and keep their order), and with hash
tags on, every stream and key of the partition carries `{pK}`: everything one
handler's transaction touches (source stream, output streams, processed marker,
the workspace's keys) hashes to the same slot, so MULTI/EXEC works on a cluster,
while different partitions spread over the shards.

Every process of a deployment must agree on the layout. It is a value, passed
explicitly: the composition root builds it from its settings (`Settings.layout()`) and
hands it on in `Deps` (as `deps.layout`, and inside `deps.keys`); nothing here is
process-wide, so two layouts can live side by side in one process (tests, benchmarks).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Protocol

STREAM_PREFIX = "rf:stream:"
DEAD_LETTER_STREAM = f"{STREAM_PREFIX}dead-letter"


class Routable(Protocol):
    """What names an event's stream: its channel (the event type, or a worker agent's
    `AgentInvoked:<agent>`) and the workspace whose partition carries it."""

    @property
    def channel(self) -> str: ...

    @property
    def workspace_id(self) -> str: ...


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

    def stream(self, channel: str, workspace_id: str | None = None) -> str:
        """One stream per channel, or per channel and partition (the workspace's) when the
        deployment splits streams; `rf:stream:<channel>` on one Redis."""
        if not self.partitioned:
            return f"{STREAM_PREFIX}{channel}"
        if workspace_id is None:
            raise ValueError(f"streams are partitioned: which workspace's {channel} stream?")
        return f"{STREAM_PREFIX}{channel}{self.workspace_suffix(workspace_id)}"

    def streams(self, channel: str) -> list[str]:
        """Every partition's stream of a channel: what a service subscribes to."""
        return [f"{STREAM_PREFIX}{channel}{s}" for s in self.suffixes()]

    def stream_of(self, event: Routable) -> str:
        """The stream an event is published on."""
        return self.stream(event.channel, event.workspace_id)

    def dead_letter_for(self, source_stream: str) -> str:
        """The dead-letter stream of a source stream's partition (same cluster slot, so the
        XADD and the source's XACK commit together)."""
        for suffix in self.suffixes():
            if suffix and source_stream.endswith(suffix):
                return f"{DEAD_LETTER_STREAM}{suffix}"
        return f"{DEAD_LETTER_STREAM}{self.suffix(0)}"

    def dead_letters(self) -> list[str]:
        """Every partition's dead-letter stream."""
        return [f"{DEAD_LETTER_STREAM}{s}" for s in self.suffixes()]
