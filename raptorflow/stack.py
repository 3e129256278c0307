"""All services (and optionally the gateway) in one process, on a given or embedded Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from raptorflow.redis_server import RedisServer
from raptorflow.registry import STREAM_SERVICES
from shared.app.runtime import Deps, Service, build_deps
from shared.domain.llm_port import LLMProvider
from shared.observability import telemetry
from shared.settings import Settings

log = logging.getLogger("raptorflow.stack")

TERMINAL_STATUSES = frozenset({"completed", "failed", "rejected", "cancelled"})


class LocalStack:
    """Starts Redis if REDIS_URL is unset, then every service, in this process."""

    def __init__(
        self,
        settings: Settings,
        *,
        with_gateway: bool = False,
        provider: LLMProvider | None = None,
        services: list[str] | None = None,
        start_redis: bool | None = None,
    ):
        self.settings = settings
        self.with_gateway = with_gateway
        self.provider = provider
        self.service_names = services or list(STREAM_SERVICES)
        if start_redis is None:
            start_redis = not (
                os.environ.get("REDIS_URL") or os.environ.get("RAPTORFLOW_REDIS_URL")
            )
        self.start_redis = start_redis
        self.redis_server: RedisServer | None = None
        self.deps: Deps | None = None
        self.services: list[Service] = []
        self._gateway_task: asyncio.Task[None] | None = None
        self._gateway_server: Any = None
        self.metrics: telemetry.MetricsServer | None = None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_server is not None

    async def __aenter__(self) -> LocalStack:
        if self.start_redis:
            self.redis_server = RedisServer().start()
            self.settings = self.settings.model_copy(
                update={"redis_url": SecretStr(self.redis_server.url)}
            )
        self.deps = await build_deps(self.settings, provider=self.provider)
        self.metrics = telemetry.serve_metrics(self.settings.metrics_port)
        for name in self.service_names:
            service = STREAM_SERVICES[name](self.deps)
            await service.start()
            self.services.append(service)
        if self.with_gateway:
            await self._start_gateway()
        return self

    async def _start_gateway(self) -> None:
        from services.gateway.server import make_server

        self._gateway_server = make_server(self.settings, self.deps)
        self._gateway_task = asyncio.create_task(self._gateway_server.serve())
        deadline = time.monotonic() + 15
        while not self._gateway_server.started:
            if self._gateway_task.done():
                await self._gateway_task
            if time.monotonic() > deadline:
                raise TimeoutError("gateway did not start")
            await asyncio.sleep(0.02)

    @property
    def gateway_url(self) -> str:
        return f"http://{self.settings.gateway_host}:{self.settings.gateway_port}"

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._gateway_server is not None and self._gateway_task is not None:
            from services.gateway.console import live

            live.close_all()  # uvicorn waits for open responses; event streams never end
            self._gateway_server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._gateway_task, timeout=10)
        # Service.stop waits for its stream readers (see runtime.stop_readers), so none is
        # left inside XREADGROUP when its connection or Redis goes away.
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                await service.stop()
        if self.deps is not None:
            await self.deps.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.redis_server is not None:
            await asyncio.to_thread(self.redis_server.stop)


def consume_tasks(service: Service) -> list[asyncio.Task[Any]]:
    """The read loops FastStream runs for a service's subscribers (tests look at them)."""
    broker = service.app.broker
    subscribers = getattr(broker, "subscribers", []) if broker is not None else []
    return [task for sub in subscribers for task in getattr(sub, "tasks", [])]


async def wait_for_task(
    deps: Deps, workspace_id: str, task_id: str, timeout: float = 60.0
) -> dict[str, str]:
    """Poll the task view until the task ends (or the deadline passes)."""
    return await wait_for_status(deps, workspace_id, task_id, set(TERMINAL_STATUSES), timeout)


async def wait_for_status(
    deps: Deps, workspace_id: str, task_id: str, statuses: set[str], timeout: float = 60.0
) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    view: dict[str, str] = {}
    while time.monotonic() < deadline:
        raw = await deps.redis.hgetall(deps.keys.task_view(workspace_id, task_id))
        view = {k.decode(): v.decode() for k, v in raw.items()}
        if view.get("status") in statuses:
            return view
        await asyncio.sleep(0.05)
    raise TimeoutError(f"task {task_id} never reached {statuses} (last: {view.get('status')})")
