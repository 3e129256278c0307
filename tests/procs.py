"""Run stream services as real OS processes in tests: start, SIGKILL or SIGTERM, restart, wait
until ready.

`python -m services.NAME` against the test Redis, offline LLM, fast polling and
reclaiming. Each process gets a unique consumer name, so readiness means "this
process has joined its consumer group" (visible in XINFO CONSUMERS), and its
log goes to a file that a failing test prints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis as sync_redis

from shared.contract.events import (
    AgentInvoked,
    ApprovalNeeded,
    Payload,
    SequenceChosen,
    StageCleared,
    StageCompleted,
    TaskCompleted,
    TaskRequested,
)
from tests.helpers import PLAIN

ROOT = Path(__file__).resolve().parent.parent

# A stream each service reads, to see it join its group.
READY_STREAM: dict[str, type[Payload]] = {
    "router": TaskRequested,
    "selector": SequenceChosen,
    "checkpoint": StageCompleted,
    "corrector": StageCleared,
    "memory": TaskRequested,
    "notifier": ApprovalNeeded,
    "agents": AgentInvoked,
}

# The stream whose handler a fault test interrupts (memory: the one that writes history).
VICTIM_STREAM: dict[str, type[Payload]] = {
    "router": TaskRequested,
    "selector": SequenceChosen,
    "checkpoint": StageCompleted,
    "corrector": StageCleared,
    "memory": TaskCompleted,
    "agents": AgentInvoked,
}


class ServiceProcess:
    """One `python -m services.NAME` process."""

    def __init__(
        self,
        name: str,
        redis_url: str,
        *,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
    ):
        self.name = name
        self.redis_url = redis_url
        self.consumer = f"{name}-{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": redis_url,
            "RAPTORFLOW_LLM_PROVIDER": "offline",
            "RAPTORFLOW_CLAIM_MIN_IDLE_MS": "500",
            "RAPTORFLOW_POLL_INTERVAL_MS": "20",
            "RAPTORFLOW_CONSUMER_NAME": self.consumer,
            "RAPTORFLOW_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.log_path = (log_dir or Path(tempfile.gettempdir())) / f"{self.consumer}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 60.0) -> ServiceProcess:
        """Poll until this process's consumer shows in its group (or fail with its log)."""
        stream = PLAIN.stream(READY_STREAM[self.name].event_type)
        client = sync_redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.alive:
                    raise AssertionError(f"{self.name} exited early:\n{self.log()}")
                try:
                    consumers = client.xinfo_consumers(stream, self.name)
                except sync_redis.ResponseError:
                    consumers = []
                if any(c["name"].decode() == self.consumer for c in consumers):
                    return self
                time.sleep(0.05)
        finally:
            client.close()
        raise AssertionError(f"{self.name} not ready within {timeout}s:\n{self.log()}")

    def kill(self) -> int:
        """SIGKILL: no cleanup, no acks, exactly like a crashed container."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 60.0) -> tuple[int, float]:
        """SIGTERM, as Kubernetes stops a pod: the exit status and the seconds it took."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.terminate()
        return self.proc.wait(timeout=timeout), time.monotonic() - started

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if not self.alive:
            return
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""


class ProcessGroup:
    """Processes started by one test or fixture; everything still running is stopped at exit."""

    def __init__(self, redis_url: str, env: dict[str, str] | None = None):
        self.redis_url = redis_url
        self.env = env
        self.started: list[ServiceProcess] = []

    def start(
        self, *names: str, timeout: float = 60.0, env: dict[str, str] | None = None
    ) -> list[ServiceProcess]:
        """Start the services in parallel (`env` on top of the group's) and wait until every
        one is ready."""
        env = {**(self.env or {}), **(env or {})}
        procs = [ServiceProcess(n, self.redis_url, env=env).start() for n in names]
        self.started.extend(procs)
        for proc in procs:
            proc.wait_ready(timeout)
        return procs

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop()


@contextmanager
def service_processes(
    redis_url: str, *names: str, env: dict[str, str] | None = None
) -> Iterator[ProcessGroup]:
    group = ProcessGroup(redis_url, env)
    try:
        if names:
            group.start(*names)
        yield group
    finally:
        group.stop_all()
