"""The read side of memory: what the router, selector and gateway may look up.

Only the memory service writes these keys (see services/memory/store.py);
everything here reads, and every read is scoped to one workspace.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from shared.contract.events import Neighbour
from shared.contract.keys import SHARED_POOL_WORKSPACE, Keys
from shared.contract.records import TaskRecord
from shared.domain.performance import AgentPerformance, from_redis_hash
from shared.memory.embeddings.base import Embedder
from shared.memory.vector_index import VectorIndex

_JSON_FIELDS = frozenset(
    {"agent_sequence", "neighbours", "outcome_success", "candidate_sequence", "candidate_logit"}
)


class RoutingRecord(BaseModel):
    """`memory:routing:{ws}:{task}`: how a task was routed and, later, how it turned out."""

    task_id: str
    source: str
    confidence: float
    agent_sequence: list[str]
    goal_hash: str = ""
    matched_goal_hash: str = ""
    neighbours: list[Neighbour] = Field(default_factory=list)
    decided_at: float = 0.0
    candidate_sequence: list[str] | None = Field(
        default=None, description="Memory's best candidate, reused or not (recalibration)."
    )
    candidate_logit: float | None = Field(
        default=None, description="The global calibrator's logit for that candidate."
    )
    outcome_success: bool | None = None
    outcome_quality: float | None = None

    @property
    def reuse_was_right(self) -> bool | None:
        """For a reuse: did the reused sequence succeed (None until the outcome is in)."""
        return self.outcome_success if self.source == "memory" else None

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes] | dict[str, str]) -> RoutingRecord:
        data: dict[str, Any] = {}
        for key, value in raw.items():
            name = key.decode() if isinstance(key, bytes) else key
            text = value.decode() if isinstance(value, bytes) else value
            data[name] = json.loads(text) if name in _JSON_FIELDS else text
        return cls.model_validate(data)


def public_performance(perf: AgentPerformance) -> dict[str, float]:
    """The figures shown in `AgentContext.performance_data` and on the dashboard."""
    return {
        "runs": perf.runs,
        "success_rate": round(perf.success_rate, 4),
        "mean_quality": round(perf.mean_quality, 4),
        "trend": round(perf.trend, 4),
        "mean_latency_s": round(perf.mean_latency_s, 4),
        "mean_cost_usd": round(perf.mean_cost_usd, 6),
    }


def _own_or_pool(
    workspace_id: str, own: Callable[[str], str], pool_partitions: Callable[[], list[str]]
) -> list[str]:
    """A workspace's own key, or for the shared pool the key of every partition (summed by readers)."""
    return pool_partitions() if workspace_id == SHARED_POOL_WORKSPACE else [own(workspace_id)]


class MemoryReader:
    """Semantic search over past tasks and the workspace's aggregates."""

    def __init__(self, redis: Redis, keys: Keys, embedder: Embedder, index: VectorIndex):
        self.redis = redis
        self.keys = keys
        self.embedder = embedder
        self.index = index

    def embed(self, text: str) -> np.ndarray:
        return self.embedder.embed_one(text)

    async def embed_async(self, text: str) -> np.ndarray:
        """`embed` off the event loop: a local model computes for up to ~100 ms on a long
        goal (numpy and the tokenizer release the GIL) and a remote one waits on the
        network, either of which would stall every service and the gateway of the process."""
        return await asyncio.to_thread(self.embedder.embed_one, text)

    async def similar_tasks(
        self, workspace_id: str, goal: str, k: int, *, vector: np.ndarray | None = None
    ) -> list[Neighbour]:
        """The k nearest successful past tasks of this workspace, most similar first."""
        query = await self.embed_async(goal) if vector is None else vector
        hits = await self.index.search(workspace_id, query, k, only_successful=True)
        return [
            Neighbour(
                goal_hash=str(hit.attributes.get("goal_hash", hit.item_id)),
                similarity=round(float(hit.similarity), 4),
                quality=float(hit.attributes.get("quality", 0.0)),
                success=bool(hit.attributes.get("success", False)),
                agent_sequence=list(hit.attributes.get("agent_sequence", [])),
            )
            for hit in hits
        ]

    async def task_record(self, workspace_id: str, goal_hash: str) -> TaskRecord | None:
        raw = await self.redis.hgetall(self.keys.task_history(workspace_id, goal_hash))
        return TaskRecord.from_hash(raw) if raw else None

    async def recent_tasks(self, workspace_id: str, limit: int) -> list[TaskRecord]:
        if limit <= 0:
            return []
        index = self.keys.task_history_index(workspace_id)
        hashes = await self.redis.zrevrange(index, 0, limit - 1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for goal_hash in hashes:
                pipe.hgetall(self.keys.task_history(workspace_id, goal_hash.decode()))
            rows = await pipe.execute()
        return [TaskRecord.from_hash(row) for row in rows if row]

    async def sequence_counts(self, workspace_id: str) -> dict[bytes, int]:
        """Sequence -> successful tasks stored (calibration features: how many distinct routes
        memory holds and how densely it covers them); the shared pool's counts are summed
        over partitions."""
        merged: dict[bytes, int] = {}
        for name in _own_or_pool(
            workspace_id, self.keys.sequence_counts, self.keys.all_pool_sequence_counts
        ):
            for sequence, count in (await self.redis.hgetall(name)).items():
                merged[sequence] = merged.get(sequence, 0) + int(count)
        return merged

    async def sequence_vector_sums(
        self, workspace_id: str, sequences: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Sequence (JSON) -> sum of its successful tasks' goal vectors, for those memory
        has one of (the shared pool's summed over partitions): its direction is the
        sequence's centroid."""
        if not sequences:
            return {}
        sums: dict[str, np.ndarray] = {}
        for name in _own_or_pool(
            workspace_id, self.keys.sequence_vectors, self.keys.all_pool_sequence_vectors
        ):
            for sequence, blob in zip(
                sequences, await self.redis.hmget(name, list(sequences)), strict=True
            ):
                if blob:
                    vector = np.frombuffer(blob, dtype="<f8")
                    known = sums.get(sequence)
                    sums[sequence] = (
                        vector if known is None or known.shape != vector.shape else known + vector
                    )
        return sums

    async def routing_decision(self, workspace_id: str, task_id: str) -> RoutingRecord | None:
        """A stored routing decision joined with the task's outcome once it is known."""
        raw = await self.redis.hgetall(self.keys.routing_decision(workspace_id, task_id))
        return RoutingRecord.from_hash(raw) if raw else None

    async def performance(
        self, workspace_id: str, task_type: str | None = None
    ) -> dict[str, dict[str, AgentPerformance]]:
        """Aggregates by task type, then agent (one task type when given)."""
        index = await self.redis.smembers(self.keys.performance_index(workspace_id))
        pairs = sorted(tuple(m.decode().split(":", 1)) for m in index)
        if task_type is not None:
            pairs = [p for p in pairs if p[0] == task_type]
        async with self.redis.pipeline(transaction=False) as pipe:
            for t_type, agent in pairs:
                pipe.hgetall(self.keys.agent_performance(workspace_id, t_type, agent))
            rows = await pipe.execute()
        out: dict[str, dict[str, AgentPerformance]] = {}
        for (t_type, agent), row in zip(pairs, rows, strict=True):
            if row:
                out.setdefault(t_type, {})[agent] = from_redis_hash(row)
        return out

    async def bandit_stats(self, workspace_id: str, task_type: str) -> dict[str, AgentPerformance]:
        return (await self.performance(workspace_id, task_type)).get(task_type, {})

    async def performance_step(self, workspace_id: str, task_type: str) -> int:
        raw = await self.redis.get(self.keys.performance_step(workspace_id, task_type))
        return int(raw) if raw else 0

    async def performance_data(self, workspace_id: str) -> dict[str, Any]:
        """The `AgentContext.performance_data` shape: task type -> agent -> figures."""
        perf = await self.performance(workspace_id)
        return {
            t: {a: public_performance(p) for a, p in agents.items()} for t, agents in perf.items()
        }
