"""Kubernetes probes on a service's metrics port, against a real Redis of this module's own.

live = the event loop answers and, once serving, every subscriber still reads; ready =
started, not stopping, and Redis answers PING too. Each state is produced for real: a
Redis killed and restarted (AOF: its groups survive), a stream deleted under a
subscriber, an event loop blocked by a sync call.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from raptorflow.redis_server import RedisServer, free_port
from raptorflow.registry import STREAM_SERVICES
from services.gateway.app import create_app
from shared.app.runtime import Deps, Service, build_deps, subscribers_reading
from shared.observability import telemetry
from shared.observability.probes import PROBE_TIMEOUT_S, Probes, redis_answers
from tests.helpers import eventually, settings_for

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    """Killed, restarted and has streams deleted by these tests: nobody else's."""
    server = RedisServer(appendonly=True).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Probed:
    probes: Probes
    service: Service
    deps: Deps
    url: str
    started: bool = False

    async def start(self) -> None:
        self.started = True
        await self.service.start()
        self.probes.serving()

    async def get(self, path: str) -> tuple[int, str]:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{self.url}{path}")
        return response.status_code, response.text.strip()


@pytest.fixture
async def probed(own_redis: RedisServer) -> AsyncIterator[Probed]:
    """The router with its probes wired as `run_services` wires them, not yet started."""
    deps = await build_deps(settings_for(own_redis.url))
    probes = Probes(asyncio.get_running_loop())
    service = STREAM_SERVICES["router"](deps)
    probes.require(redis_answers(deps.redis))
    probes.require_alive(subscribers_reading([service]))
    port = free_port()
    server = telemetry.serve_metrics(port, addr="127.0.0.1", probes=probes)
    assert server is not None
    probed = Probed(probes, service, deps, f"http://127.0.0.1:{port}")
    try:
        yield probed
    finally:
        server.close()
        if probed.started:
            with contextlib.suppress(Exception):
                await service.stop()
        await deps.close()


async def test_ready_only_between_start_and_stop_and_live_throughout(probed: Probed) -> None:
    assert await probed.get("/livez") == (200, "ok")
    assert await probed.get("/readyz") == (503, "starting")

    await probed.start()
    assert await probed.get("/readyz") == (200, "ok")
    status, body = await probed.get("/metrics")
    assert status == 200 and "raptorflow_handler_messages_total" in body

    probed.probes.stopping()
    assert await probed.get("/readyz") == (503, "stopping")
    assert await probed.get("/livez") == (200, "ok")


async def test_not_ready_while_redis_is_down_and_ready_again_when_it_is_back(
    probed: Probed, own_redis: RedisServer
) -> None:
    await probed.start()
    assert await probed.get("/readyz") == (200, "ok")

    own_redis.kill()
    try:
        status, body = await probed.get("/readyz")
        assert status == 503 and body.startswith("redis: "), body
        assert await probed.get("/livez") == (200, "ok")  # an outage is no reason to restart
    finally:
        own_redis.start()

    async def ready_again() -> bool:
        return await probed.get("/readyz") == (200, "ok")

    await eventually(ready_again, timeout=20, interval=0.2)


async def test_a_subscriber_stopped_for_good_fails_liveness_so_the_pod_restarts(
    probed: Probed,
) -> None:
    await probed.start()
    assert await probed.get("/livez") == (200, "ok")

    # FastStream stops a subscriber whose group vanished (NOGROUP: a Redis restarted without
    # its data) and never reads again; only a restart recreates the groups.
    await probed.deps.redis.delete(*probed.service.bus.streams)

    async def dead() -> str | None:
        status, body = await probed.get("/livez")
        return body if status == 503 else None

    assert await eventually(dead, timeout=20, interval=0.1) == "subscribers stopped: router"
    assert await probed.get("/readyz") == (503, "subscribers stopped: router")


async def test_not_live_while_the_event_loop_is_blocked(probed: Probed) -> None:
    answers: list[int] = []

    def probe() -> None:
        try:
            answers.append(urllib.request.urlopen(f"{probed.url}/livez", timeout=5).status)
        except urllib.error.HTTPError as exc:
            answers.append(exc.code)

    asker = threading.Thread(target=probe)
    asker.start()
    # A handler that blocks the loop, on purpose, past the probe's own timeout (2 s).
    time.sleep(PROBE_TIMEOUT_S + 1)  # noqa: ASYNC251
    await asyncio.to_thread(asker.join, 5)
    assert answers == [503]
    assert await probed.get("/livez") == (200, "ok")


async def test_gateway_answers_its_probes_on_its_own_port(own_redis: RedisServer) -> None:
    settings = settings_for(own_redis.url)
    deps = await build_deps(settings)
    app = create_app(settings, deps)
    app.state.deps = deps
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            assert (await client.get("/livez")).text == "ok\n"
            assert (await client.get("/readyz")).status_code == 200
            own_redis.kill()
            try:
                unready = await client.get("/readyz")
                assert unready.status_code == 503 and unready.text.startswith("redis: ")
                assert (await client.get("/livez")).status_code == 200
            finally:
                own_redis.start()
    finally:
        await deps.close()
