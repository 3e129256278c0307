"""Pick an embedding backend from configuration, so services never import one directly."""

from __future__ import annotations

import os

from shared.memory.embeddings.base import Embedder

ENV_KIND = "RAPTORFLOW_EMBEDDINGS"
ENV_MODEL = "RAPTORFLOW_EMBEDDINGS_MODEL"
KINDS = ("local", "openai")


def make_embedder(
    kind: str | None = None,
    *,
    model: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
) -> Embedder:
    """Build the configured Embedder.

    `kind` defaults to $RAPTORFLOW_EMBEDDINGS, then "local" (in-process MiniLM, where `model` is an
    optional model directory overriding the packaged one). For "openai",
    `model` defaults to $RAPTORFLOW_EMBEDDINGS_MODEL then text-embedding-3-small, and the
    openai client reads OPENAI_API_KEY / OPENAI_BASE_URL when `api_key` / `base_url` are None.
    """
    resolved = (
        kind if kind is not None else os.environ.get(ENV_KIND, "local")
    ).strip().lower() or "local"
    if resolved == "local":
        from shared.memory.embeddings.minilm import LocalMiniLM

        return LocalMiniLM(model_dir=model)
    if resolved == "openai":
        from shared.memory.embeddings.openai_embedder import DEFAULT_OPENAI_MODEL, OpenAIEmbedder

        chosen = model or os.environ.get(ENV_MODEL) or DEFAULT_OPENAI_MODEL
        return OpenAIEmbedder(model=chosen, api_key=api_key, base_url=base_url)
    raise ValueError(
        f"unknown embeddings kind {resolved!r} (argument or ${ENV_KIND}); expected one of {KINDS}"
    )
