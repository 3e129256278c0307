"""A workspace's checkpoint configuration in Redis (written by the gateway and the CLI)."""

from __future__ import annotations

from redis.asyncio import Redis

from shared.contract.keys import Keys
from shared.contract.models import WorkflowCheckpoints
from shared.stores.stored import ConfigUnreadable as ConfigUnreadable  # callers catch it here
from shared.stores.stored import load


async def load_config(redis: Redis, keys: Keys, workspace_id: str) -> WorkflowCheckpoints | None:
    """The workspace's checkpoints (None: none set); ConfigUnreadable when stored but invalid."""
    return await load(
        redis,
        keys.checkpoints_config(workspace_id),
        WorkflowCheckpoints,
        "checkpoint configuration",
        f"PUT /workspaces/{workspace_id}/checkpoints replaces it",
    )


async def save_config(
    redis: Redis, keys: Keys, workspace_id: str, config: WorkflowCheckpoints
) -> None:
    await redis.set(keys.checkpoints_config(workspace_id), config.model_dump_json())
