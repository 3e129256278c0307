"""Fields that every log line inside a message handler carries (a contextvar, not globals).

ServiceBus opens a scope per message; a filter on the log handler copies the
scope's fields onto each record, so code deep inside a handler logs them for free.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

FIELDS = ("service", "event_type", "correlation_id", "workspace_id")

_scope: ContextVar[dict[str, Any] | None] = ContextVar("raptorflow_log_scope", default=None)


@contextmanager
def scope(**fields: Any) -> Iterator[dict[str, Any]]:
    """Bind fields for everything logged until the block ends (nested scopes inherit)."""
    merged = {**(_scope.get() or {}), **fields}
    token = _scope.set(merged)
    try:
        yield merged
    finally:
        _scope.reset(token)


def update(**fields: Any) -> None:
    """Add fields to the current scope (known only once the message is decoded)."""
    current = _scope.get()
    if current is not None:
        current.update(fields)


def current() -> dict[str, Any]:
    return dict(_scope.get() or {})


class ContextFilter(logging.Filter):
    """Copies the scope's fields onto a record unless the call passed its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_scope.get() or {}).items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True
