"""Real Redis for every test that needs one: REDIS_URL if set, else testcontainers where a
Docker engine runs, else a redis-server binary started on a free port (never a mock)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from raptorflow.redis_server import RedisServer


def _docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The session's Redis server URL."""
    given = os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    if _docker_available():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:8") as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def workspace() -> str:
    """A fresh workspace per test, so tests never see each other's data."""
    return f"ws-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis7_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        pytest.fail("Debian's redis-server (Redis 7, no vector sets) is required on PATH")
    return path
