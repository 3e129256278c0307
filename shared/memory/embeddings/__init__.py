"""Sentence embeddings for RaptorFlow: in-process MiniLM (default) or an OpenAI-compatible server.

Usage: ``make_embedder().embed(["Create a blog post about AI trends"])`` gives a (1, 384)
float32 array of unit rows; the backend follows $RAPTORFLOW_EMBEDDINGS.
"""

from shared.memory.embeddings.base import Embedder, Vectors, l2_normalise
from shared.memory.embeddings.factory import make_embedder
from shared.memory.embeddings.minilm import LocalMiniLM, ModelNotInstalledError
from shared.memory.embeddings.openai_embedder import OpenAIEmbedder

__all__ = [
    "Embedder",
    "LocalMiniLM",
    "ModelNotInstalledError",
    "OpenAIEmbedder",
    "Vectors",
    "l2_normalise",
    "make_embedder",
]
