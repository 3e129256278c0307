"""Redis commands per task through the gateway and every service (one process, embedded
Redis, offline provider, a two-stage requested sequence), counted from INFO commandstats
after a warm-up. Polling reads (XREADGROUP, XAUTOCLAIM, XCLAIM) depend on time, not on
tasks, so they are reported apart.

    .venv/bin/python bench/commands_per_task.py --tasks 20

Run it from another source tree (PYTHONPATH=that/tree) to compare two versions.
"""

from __future__ import annotations

import argparse
import asyncio

import httpx

from raptorflow.redis_server import free_port
from raptorflow.stack import LocalStack
from shared.settings import Settings

POLLING = ("xreadgroup", "xautoclaim", "xclaim")
NOT_COUNTED = ("xlen", "config|resetstat", "info")


async def measure(tasks: int) -> dict[str, int]:
    settings = Settings(llm_provider="offline", poll_interval_ms=20, claim_min_idle_ms=500,
                        gateway_port=free_port(), metrics_port=free_port())
    async with LocalStack(settings, with_gateway=True, start_redis=True) as stack:
        assert stack.deps is not None
        redis = stack.deps.redis
        async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as client:

            async def run(n: int) -> None:
                before = await redis.xlen("rf:stream:TaskCompleted")
                for i in range(n):
                    response = await client.post("/tasks", json={
                        "goal": f"Write a blog post about topic {i % 3}", "workspace_id": "bench",
                        "agent_sequence": ["research", "content"]})
                    response.raise_for_status()
                # XLEN (not counted) rather than a wait on the view: the bench counts commands
                while await redis.xlen("rf:stream:TaskCompleted") < before + n:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)

            await run(3)
            await asyncio.sleep(1)
            await redis.config_resetstat()
            await run(tasks)
            await asyncio.sleep(1)
            stats = await redis.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    return {k: v for k, v in calls.items() if k not in NOT_COUNTED}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20)
    n = parser.parse_args().tasks
    calls = asyncio.run(measure(n))
    polling = sum(v for k, v in calls.items() if k in POLLING)
    total = sum(calls.values())
    print(f"tasks {n}: commands/task {total / n:.1f}; without polling reads "
          f"{(total - polling) / n:.1f}; polling reads {polling / n:.1f}")
    top = sorted(((v, k) for k, v in calls.items() if k not in POLLING), reverse=True)[:16]
    print(" ".join(f"{k}={v / n:.1f}" for v, k in top))


if __name__ == "__main__":
    main()
