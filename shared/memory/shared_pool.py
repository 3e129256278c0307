"""Opt-in cross-workspace learning: a pool of anonymised successes for young workspaces.

A workspace that opts in (setting `shared_learning_workspaces`) contributes each
successful task to one shared vector index as (embedding, agent sequence,
quality) under an id that is a one-way hash of (workspace, goal hash): no goal
text, no workspace id. While such a workspace has little history of its own,
the router also searches the pool. Workspaces that did not opt in neither write
to it nor read from it, and every other key stays scoped by workspace.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from shared.contract.events import Neighbour
from shared.contract.keys import SHARED_POOL_WORKSPACE
from shared.memory.store import TaskRecord
from shared.settings import Settings

POOL_WORKSPACE = SHARED_POOL_WORKSPACE


def opted_in(settings: Settings, workspace_id: str) -> bool:
    """Whether this workspace shares into, and may draw on, the pool (off by default)."""
    chosen = {w.strip() for w in settings.shared_learning_workspaces.split(",") if w.strip()}
    return workspace_id != POOL_WORKSPACE and ("*" in chosen or workspace_id in chosen)


def pool_item_id(workspace_id: str, goal_hash: str) -> str:
    """Anonymous and stable: the same task re-stored replaces its pool entry."""
    return hashlib.sha256(f"{workspace_id}\x00{goal_hash}".encode()).hexdigest()[:20]


def pool_attributes(record: TaskRecord, workspace_id: str) -> dict[str, Any]:
    """What the pool keeps of a task: no goal, no workspace id."""
    return {
        "success": True,
        "quality": record.result_quality,
        "agent_sequence": record.agent_sequence,
        "goal_hash": pool_item_id(workspace_id, record.goal_hash),
    }


def merge_pooled(
    own: Sequence[Neighbour], pooled: Sequence[Neighbour], workspace_id: str, k: int
) -> list[Neighbour]:
    """The k most similar of both, dropping the pool's copies of this workspace's own tasks.

    An own task missing from `own` is less similar than all k of them, so it
    could not make the merged top k either: dropping by id is exact.
    """
    mine = {pool_item_id(workspace_id, n.goal_hash) for n in own}
    merged = list(own) + [n for n in pooled if n.goal_hash not in mine]
    merged.sort(key=lambda n: n.similarity, reverse=True)
    return merged[:k]
