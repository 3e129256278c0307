"""The contract every embedding backend meets, so callers never care which one runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors, so a dot product is a cosine.

    Deliberately not runtime_checkable: on Python 3.11 isinstance() would evaluate `dim`,
    which for a remote embedder of unknown width costs a request. Rely on mypy instead.
    """

    @property
    def dim(self) -> int:
        """Width of every vector this embedder returns."""
        ...

    @property
    def name(self) -> str:
        """Model id, stored beside vectors so an index built with another model is detected."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return an (n, dim) float32 array whose rows have L2 norm 1."""
        ...

    def embed_one(self, text: str) -> Vectors:
        """Return one (dim,) float32 unit vector."""
        ...


def l2_normalise(rows: NDArray[np.floating], eps: float = 1e-12) -> Vectors:
    """Scale each row to unit length; an all-zero row stays zero instead of turning into NaN."""
    out = np.asarray(rows, dtype=np.float32)
    if out.ndim != 2:
        raise ValueError(f"expected a 2-D array of rows, got shape {out.shape}")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.maximum(norms, eps, out=norms)
    return np.ascontiguousarray(out / norms, dtype=np.float32)
