"""The vector index interface both back ends implement, and what they share: the hit
type, the attribute contract, and the validation of vectors and ids."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

Vector = npt.NDArray[np.float32]

DEFAULT_DIM: Final = 384
REQUIRED_ATTRIBUTES: Final = ("success", "quality", "agent_sequence", "goal_hash")
IndexKind = Literal["auto", "vset", "exact"]
ScriptArg = bytes | str | int | float


class VectorHit(BaseModel):
    """One search result; `similarity` is plain cosine so both back ends compare."""

    item_id: str
    similarity: float = Field(ge=-1.0, le=1.0)
    attributes: dict[str, Any]


class VectorSetsUnavailable(RuntimeError):
    """The server has no native vector sets (needs Redis >= 8.0)."""


@runtime_checkable
class VectorIndex(Protocol):
    """What the memory service and router need from a per-workspace index."""

    kind: str

    async def add(
        self, workspace_id: str, item_id: str, vector: npt.ArrayLike, attributes: dict[str, Any]
    ) -> None:
        """Insert or replace `item_id` (vector and attributes)."""
        ...

    async def set_attributes(
        self, workspace_id: str, item_id: str, attributes: dict[str, Any]
    ) -> None:
        """Replace the attributes of an existing item; KeyError if it is absent."""
        ...

    async def remove(self, workspace_id: str, item_id: str) -> bool:
        """Delete an item; True if it existed."""
        ...

    async def search(
        self, workspace_id: str, vector: npt.ArrayLike, k: int, *, only_successful: bool = True
    ) -> list[VectorHit]:
        """k nearest items by cosine, best first, filtered in the index."""
        ...

    async def count(self, workspace_id: str) -> int:
        """Number of items stored for the workspace."""
        ...


def prepare_vector(vector: npt.ArrayLike, dim: int) -> Vector:
    """Return a contiguous unit-length little-endian float32 copy.

    Normalising here keeps cosine == dot product for the exact index and makes
    both back ends agree even if a caller forgets to normalise.
    """
    arr = np.asarray(vector, dtype=np.float32)
    if arr.ndim != 1 or arr.shape[0] != dim:
        raise ValueError(f"expected a 1-D vector of {dim} floats, got shape {arr.shape}")
    norm = float(np.linalg.norm(arr))
    if not math.isfinite(norm) or norm == 0.0:
        raise ValueError("vector must be finite and non-zero")
    return np.ascontiguousarray(arr / norm, dtype="<f4")


def encode_attributes(attributes: Mapping[str, Any]) -> str:
    """Validate the attribute contract and serialise it to compact JSON.

    `success` must be a real bool: both back ends filter on it.
    """
    missing = [name for name in REQUIRED_ATTRIBUTES if name not in attributes]
    if missing:
        raise ValueError(f"attributes missing required keys: {missing}")
    if not isinstance(attributes["success"], bool):
        raise ValueError("attributes['success'] must be a bool")
    return json.dumps(dict(attributes), separators=(",", ":"))


def check_ids(workspace_id: str, item_id: str | None = None) -> None:
    """Reject empty ids, which would silently collapse key scopes."""
    if not workspace_id:
        raise ValueError("workspace_id must be a non-empty string")
    if item_id is not None and not item_id:
        raise ValueError("item_id must be a non-empty string")


def text(value: bytes | str) -> str:
    """Decode a reply that may come back as bytes or str depending on the client."""
    return value.decode() if isinstance(value, bytes) else value


def log_start(inclusive_at: str | None, after: str | None) -> str:
    """XRANGE start: at an entry (inclusive), just after one, or the beginning."""
    if inclusive_at is not None:
        return inclusive_at
    return f"({after}" if after else "-"


def clamp_cosine(value: float) -> float:
    """Float rounding can step just outside [-1, 1]; the model forbids that."""
    return max(-1.0, min(1.0, value))
