"""Why memory's aggregates keep their own WATCH and markers instead of the bus's transaction
(services/memory/store.py explains it): a read-modify-write queued on the handler's
transaction loses a concurrent replica's update; `update_once` does not."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from services.memory.store import update_once
from shared.messaging.queued_writes import QueuedWrites
from shared.messaging.tx import Tx


async def _commit_like_the_bus(redis: Redis, marker: str, writes: QueuedWrites) -> None:
    """The bus's commit: WATCH the processed marker only, replay the handler's writes."""
    async with redis.pipeline(transaction=True) as tx:
        await tx.watch(marker)
        tx.multi()
        writes.replay(tx)
        tx.set(marker, b"1", ex=60)
        await tx.execute()


async def test_a_fold_queued_on_the_bus_transaction_loses_a_concurrent_update(
    redis: Redis, workspace: str
) -> None:
    total = f"test:{workspace}:outcomes"
    recorded = []
    for _replica in ("a", "b"):  # two replicas, one outcome each: both read before either commits
        current = int(await redis.get(total) or 0)
        writes = QueuedWrites()
        writes.set(total, current + 1)
        recorded.append(writes)
    for replica, writes in zip("ab", recorded, strict=True):
        await _commit_like_the_bus(redis, f"test:{workspace}:marker:{replica}", writes)
    assert await redis.get(total) == b"1"  # each commit succeeded, one outcome is lost


async def test_update_once_keeps_both_updates_and_applies_a_redelivery_once(
    redis: Redis, workspace: str
) -> None:
    total = f"test:{workspace}:outcomes"
    first_read, release = asyncio.Event(), asyncio.Event()

    def plan_for(replica: str):
        async def plan():
            current = int(await redis.get(total) or 0)
            if replica == "a" and not first_read.is_set():
                first_read.set()
                await release.wait()  # b commits between a's read and a's EXEC

            def write(tx: Tx) -> int:
                tx.set(total, current + 1)
                return current + 1

            return write

        return plan

    marker_a, marker_b = f"test:{workspace}:marker:a", f"test:{workspace}:marker:b"
    a = asyncio.create_task(update_once(redis, [total], marker_a, 60, plan_for("a")))
    await first_read.wait()
    assert await update_once(redis, [total], marker_b, 60, plan_for("b")) == 1
    release.set()
    assert await a == 2  # a's EXEC aborted on b's write, then retried on the new value
    assert await redis.get(total) == b"2"
    assert await update_once(redis, [total], marker_a, 60, plan_for("a")) is None  # redelivered
    assert await redis.get(total) == b"2"
