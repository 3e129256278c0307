"""A stand-in for a transaction that records the writes a handler queues.

When several messages commit in one MULTI..EXEC, each handler gets its own recorder
(typed as `shared.messaging.tx.Tx`, which it satisfies like the real pipeline does):
a handler that fails leaves nothing behind in the shared transaction, and the writes
of those that succeed are replayed into it in message order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio.client import Pipeline


class QueuedWrites:
    """Records `tx.<command>(...)` calls; every call returns the recorder, like a pipeline.

    Handlers only queue commands on their transaction (reads go through the client), so
    recording the calls and replaying them later is the same as queuing them directly.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, command: str) -> Callable[..., QueuedWrites]:
        if command.startswith("_") or command in _NOT_QUEUEABLE:
            raise AttributeError(f"a handler's transaction only queues commands, not {command!r}")

        def record(*args: Any, **kwargs: Any) -> QueuedWrites:
            self.calls.append((command, args, kwargs))
            return self

        return record

    def replay(self, tx: Pipeline) -> None:
        """Queue the recorded commands on a transaction already in MULTI."""
        for command, args, kwargs in self.calls:
            getattr(tx, command)(*args, **kwargs)


# Pipeline methods that do I/O or change the transaction's state: never recorded.
_NOT_QUEUEABLE = frozenset(
    {"execute", "watch", "unwatch", "multi", "reset", "discard", "immediate_execute_command"}
)
