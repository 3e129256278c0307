"""Stopping the one-process stack: every stream reader has ended before Redis goes away, so a
`make run` never ends with "Message fetch error ... Connection closed by server"."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
import pytest

from raptorflow.stack import LocalStack, consume_tasks
from shared.app.runtime import drain
from tests.checkpoint_helpers import submit, wait_status
from tests.helpers import eventually, settings_for


async def test_readers_end_before_redis_stops_and_nothing_is_logged_as_error(
    redis_url, redis, workspace, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING)
    async with LocalStack(settings_for(redis_url), start_redis=False) as stack:
        task_id = await submit(redis, workspace)
        await wait_status(redis, workspace, task_id, {"completed"})
        readers = [t for service in stack.services for t in consume_tasks(service)]
        assert readers, "FastStream's read loops are found"
    assert all(task.done() for task in readers)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def test_drain_cancels_again_a_task_that_swallowed_its_cancellation():
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.set()  # as redis-py can, inside a command
        await asyncio.sleep(3600)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    task.cancel()
    await drain([task], timeout=5)
    assert swallowed.is_set() and task.cancelled()


async def test_an_open_console_event_stream_does_not_hold_up_or_spoil_the_stop(
    redis_url, workspace, capfd: pytest.CaptureFixture[str]
):
    settings = settings_for(redis_url)
    lines: list[str] = []

    async def listen(url: str) -> None:
        async with (
            httpx.AsyncClient(timeout=None) as client,
            client.stream("GET", url) as reply,
        ):
            async for line in reply.aiter_lines():
                lines.append(line)

    async with LocalStack(settings, with_gateway=True, start_redis=False) as stack:
        listener = asyncio.create_task(
            listen(f"{stack.gateway_url}/ui/events?workspace_id={workspace}")
        )
        await eventually(lambda: _true_when(lines))
    with contextlib.suppress(httpx.HTTPError):
        await asyncio.wait_for(listener, timeout=30)
    assert listener.done() and ": connected" in lines
    err = capfd.readouterr().err
    assert "ERROR" not in err and "Traceback" not in err, err[-2000:]


async def _true_when(lines: list[str]) -> bool:
    return bool(lines)
