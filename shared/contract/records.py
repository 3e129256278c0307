"""Records as stored in Redis hashes: a remembered task, an approval.

They are contract, like the keys they live under: the stores write and read them, and
a service's pure logic builds or formats them without importing a Redis client.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from shared.contract.events import ApprovalNeeded, Envelope


class TaskRecord(BaseModel):
    """The seed's task history fields, plus ours after them."""

    goal: str
    agent_sequence: list[str]
    success: bool
    execution_time: float = 0.0
    error: str | None = None
    result_quality: float = Field(default=0.0, ge=0, le=1)
    goal_hash: str = ""
    task_id: str = ""
    stored_at: float = 0.0
    provider: str = ""
    feedback_rating: int | None = None

    def to_hash(self) -> dict[str, str]:
        """Flat string fields, as stored in the Redis hash."""
        out: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            out[name] = json.dumps(value) if isinstance(value, (list, bool)) else str(value)
        return out

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes] | dict[str, str]) -> TaskRecord:
        data: dict[str, Any] = {}
        for key, value in raw.items():
            name = key.decode() if isinstance(key, bytes) else key
            text = value.decode() if isinstance(value, bytes) else value
            if name in {"agent_sequence", "success"}:
                data[name] = json.loads(text)
            else:
                data[name] = text
        return cls.model_validate(data)


class ApprovalRecord(BaseModel):
    approval_id: str
    workspace_id: str
    status: str
    deadline: float
    created_at: float
    needed: Envelope[ApprovalNeeded]
    decided_by: str | None = None
    decided_at: float | None = None
    reason: str = ""
    escalated: bool = False

    @property
    def deadline_iso(self) -> str:
        return datetime.fromtimestamp(self.deadline, UTC).isoformat()
