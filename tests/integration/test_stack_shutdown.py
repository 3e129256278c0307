"""Stopping the one-process stack: every stream reader has ended before Redis goes away, so a
`make run` never ends with "Message fetch error ... Connection closed by server"."""

from __future__ import annotations

import asyncio
import logging

import pytest

from raptorflow.stack import LocalStack, consume_tasks, drain
from tests.checkpoint_helpers import submit, wait_status
from tests.helpers import settings_for


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
