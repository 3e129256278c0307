"""Embeddings from any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, vLLM, Ollama, TEI...).

Used when a deployment prefers a hosted or shared embedding server over the in-process
MiniLM. Rows are re-normalised locally because not every compatible server returns
unit vectors, and the rest of RaptorFlow relies on dot product == cosine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.memory.embeddings.base import Vectors, l2_normalise

if TYPE_CHECKING:
    from openai import AsyncOpenAI, OpenAI

DEFAULT_OPENAI_MODEL = "text-embedding-3-small"
_MAX_INPUTS_PER_REQUEST = 2048  # OpenAI's documented per-request limit
# Widths of OpenAI's own models, so `dim` needs no probe request for them.
KNOWN_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class OpenAIEmbedder:
    """Embedder backed by the official `openai` client; sync `embed` and async `aembed`."""

    def __init__(
        self,
        model: str = DEFAULT_OPENAI_MODEL,
        api_key: str | None = None,
        base_url: str | None = None,
        dim: int | None = None,
        *,
        send_dimensions: bool = False,
        batch_size: int = 256,
        timeout: float = 30.0,
        max_retries: int = 2,
    ) -> None:
        """`dim` is the expected width, checked on every reply; if None it comes from KNOWN_DIMS or
        from the first reply (reading `.dim` before any call costs one probe request).

        `send_dimensions=True` also asks the server to shorten vectors to `dim` (text-embedding-3
        only; many compatible servers reject the field, hence off by default). `api_key` and
        `base_url` fall back to the client's own OPENAI_API_KEY / OPENAI_BASE_URL.
        """
        if send_dimensions and dim is None:
            raise ValueError("send_dimensions=True needs dim")
        self.model = model
        self.name = f"openai:{model}"
        self._dim = dim if dim is not None else KNOWN_DIMS.get(model)
        self._send_dimensions = send_dimensions
        self._batch_size = max(1, min(batch_size, _MAX_INPUTS_PER_REQUEST))
        self._client_kwargs: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url,
            "timeout": timeout,
            "max_retries": max_retries,
        }
        self._sync: OpenAI | None = None
        self._async: AsyncOpenAI | None = None

    @property
    def dim(self) -> int:
        """Vector width; costs one request the first time when it was not given."""
        if self._dim is None:
            self._dim = int(self.embed(["dimension probe"]).shape[1])
        return self._dim

    def _request_kwargs(self, chunk: Sequence[str]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "input": list(chunk),
            "encoding_format": "float",
        }
        if self._send_dimensions:
            kwargs["dimensions"] = self._dim
        return kwargs

    def _to_matrix(self, data: Sequence[Any], expected_rows: int) -> Vectors:
        """Order rows by `index` (the API does not promise order) and check the shape."""
        rows = sorted(data, key=lambda item: item.index)
        if len(rows) != expected_rows:
            raise ValueError(
                f"embedding server returned {len(rows)} vectors for {expected_rows} inputs"
            )
        matrix = np.asarray([row.embedding for row in rows], dtype=np.float32)
        if self._dim is not None and matrix.shape[1] != self._dim:
            raise ValueError(
                f"{self.name} returned {matrix.shape[1]}-d vectors, expected {self._dim}"
            )
        self._dim = int(matrix.shape[1])
        return l2_normalise(matrix)

    def _chunks(self, texts: Sequence[str]) -> list[Sequence[str]]:
        if isinstance(texts, str):
            raise TypeError(
                "embed() takes a sequence of strings; use embed_one() for a single string"
            )
        return [texts[i : i + self._batch_size] for i in range(0, len(texts), self._batch_size)]

    def _empty(self) -> Vectors:
        return np.empty((0, self._dim or 0), dtype=np.float32)

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed texts with blocking HTTP calls, `batch_size` inputs per request."""
        chunks = self._chunks(texts)
        if not chunks:
            return self._empty()
        if self._sync is None:
            from openai import OpenAI

            self._sync = OpenAI(**self._client_kwargs)
        parts = [
            self._to_matrix(self._sync.embeddings.create(**self._request_kwargs(c)).data, len(c))
            for c in chunks
        ]
        return np.concatenate(parts, axis=0)

    def embed_one(self, text: str) -> Vectors:
        """Embed one text, shape (dim,)."""
        row: Vectors = self.embed([text])[0]
        return row

    async def aembed(self, texts: Sequence[str]) -> Vectors:
        """Async twin of `embed` for use inside the event loop of a stream consumer."""
        chunks = self._chunks(texts)
        if not chunks:
            return self._empty()
        if self._async is None:
            from openai import AsyncOpenAI

            self._async = AsyncOpenAI(**self._client_kwargs)
        parts = []
        for chunk in chunks:
            response = await self._async.embeddings.create(**self._request_kwargs(chunk))
            parts.append(self._to_matrix(response.data, len(chunk)))
        return np.concatenate(parts, axis=0)

    async def aembed_one(self, text: str) -> Vectors:
        """Async twin of `embed_one`."""
        row: Vectors = (await self.aembed([text]))[0]
        return row
