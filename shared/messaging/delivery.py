"""One read's messages on their way from the stream to one commit (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from shared.contract.events import Envelope, Payload
from shared.messaging.queued_writes import QueuedWrites

P = TypeVar("P", bound=Payload)


@dataclass
class Delivery(Generic[P]):
    """One message of a batch on its way through the handler to the commit."""

    message_id: bytes
    event: Envelope[P]
    marker: str
    writes: QueuedWrites = field(default_factory=QueuedWrites)
    outputs: Sequence[Envelope[Any]] = ()
    outcome: str = "retry"


def split_duplicates(
    deliveries: Sequence[Delivery[P]], markers_seen: Sequence[bytes | None]
) -> tuple[list[Delivery[P]], list[Delivery[P]]]:
    """(fresh, duplicates): an event whose marker exists was processed before, and an event
    twice in one batch (published twice) is processed once."""
    fresh: list[Delivery[P]] = []
    duplicates: list[Delivery[P]] = []
    in_batch: set[str] = set()
    for delivery, seen in zip(deliveries, markers_seen, strict=True):
        if seen is not None or delivery.marker in in_batch:
            duplicates.append(delivery)
        else:
            fresh.append(delivery)
            in_batch.add(delivery.marker)
    return fresh, duplicates
