"""Liveness and readiness of one process: what Kubernetes probes ask on its metrics port.

- live: the event loop still runs callbacks and, once serving, every liveness check passes
  (a subscriber that stopped for good, e.g. its group vanished with an unpersisted Redis,
  only comes back with a restart). A Redis outage is not a reason to restart.
- ready: serving (started, not stopping), and every liveness and readiness check passes
  (Redis answers PING and takes a write).

The metrics listener answers on its own thread, so each probe schedules its checks on the
event loop and waits a bounded time: a loop that does not answer fails the probe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

PROBE_TIMEOUT_S = 2.0
PING_TIMEOUT_S = 1.0

# None when fine, else what is wrong.
Check = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Answer:
    ok: bool
    detail: str


class Probes:
    """One process's probes. `starting` until `serving()`, `stopping` from `stopping()` on."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, *, timeout_s: float = PROBE_TIMEOUT_S
    ) -> None:
        self._loop = loop
        self._timeout_s = timeout_s
        self._live_checks: list[Check] = []
        self._ready_checks: list[Check] = []
        self.phase = "starting"

    def require(self, check: Check) -> None:
        """A condition of readiness: while it fails, the process gets no new work."""
        self._ready_checks.append(check)

    def require_alive(self, check: Check) -> None:
        """A condition of liveness while serving: while it fails, the process is restarted."""
        self._live_checks.append(check)

    def serving(self) -> None:
        self.phase = "serving"

    def stopping(self) -> None:
        self.phase = "stopping"

    def live(self) -> Answer:
        """From any thread but the loop's."""
        checks = self._live_checks if self.phase == "serving" else []
        return self._on_loop(_first_failure(checks))

    def ready(self) -> Answer:
        """From any thread but the loop's."""
        if self.phase != "serving":
            return Answer(False, self.phase)
        return self._on_loop(_first_failure([*self._live_checks, *self._ready_checks]))

    def _on_loop(self, check: Coroutine[Any, Any, str | None]) -> Answer:
        try:
            future = asyncio.run_coroutine_threadsafe(check, self._loop)
        except RuntimeError:  # the loop is closed: the process is on its way out
            check.close()
            return Answer(False, "event loop closed")
        try:
            reason = future.result(self._timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return Answer(False, f"event loop did not answer within {self._timeout_s:g}s")
        except Exception as exc:
            return Answer(False, f"check failed: {exc!r}")
        return Answer(reason is None, reason or "ok")


async def _first_failure(checks: list[Check]) -> str | None:
    for check in checks:
        reason = await check()
        if reason is not None:
            return reason
    return None


def redis_answers(redis: Redis, timeout_s: float = PING_TIMEOUT_S) -> Check:
    """Ready only while Redis answers PING (the client's own retries are cut short)."""

    async def check() -> str | None:
        try:
            await asyncio.wait_for(redis.ping(), timeout_s)
        except Exception as exc:
            return f"redis: {type(exc).__name__}: {exc}"[:300]
        return None

    return check


def redis_takes_writes(redis: Redis, key: str, timeout_s: float = PING_TIMEOUT_S) -> Check:
    """Ready only while Redis takes a write (a short-lived key): a full Redis (noeviction)
    or a read-only replica answers PING but refuses every task."""

    async def check() -> str | None:
        try:
            await asyncio.wait_for(redis.set(key, b"1", px=10_000), timeout_s)
        except Exception as exc:
            return f"redis refuses writes: {type(exc).__name__}: {exc}"[:300]
        return None

    return check
