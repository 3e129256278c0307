"""shared.memory.embeddings: NumPy MiniLM must reproduce sentence-transformers, and the OpenAI
backend must speak the real wire format.

Why: intent routing and memory search compare these vectors against ones stored
earlier; a silent drift from the reference model would corrupt every lookup.
The reference vectors come from the real sentence-transformers (see
bench/make_embedding_fixture.py); these tests need neither torch nor a network.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.memory.embeddings import (
    Embedder,
    LocalMiniLM,
    ModelNotInstalledError,
    OpenAIEmbedder,
    make_embedder,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "minilm_reference.json"
BLOG_AI = "Create a blog post about AI trends"
BLOG_ML = "Write a blog about machine learning"
K8S = "Audit our Kubernetes cluster costs"


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def minilm() -> LocalMiniLM:
    """Loaded once; a missing model package FAILS (not skips) with the install command."""
    model = LocalMiniLM(cache_size=0)
    try:
        model.warm_up()
    except ModelNotInstalledError as exc:
        pytest.fail(f"MiniLM weights unavailable: {exc}", pytrace=False)
    return model


@pytest.fixture(scope="module")
def batched(minilm: LocalMiniLM, reference: dict[str, Any]) -> np.ndarray:
    """Reference sentences embedded in one call (padded, length-sorted); computed once."""
    return minilm.embed(reference["sentences"])


@pytest.fixture(scope="module")
def one_by_one(minilm: LocalMiniLM, reference: dict[str, Any]) -> np.ndarray:
    """Reference sentences embedded singly (no padding at all); computed once."""
    return np.stack([minilm.embed_one(s) for s in reference["sentences"]])


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos: np.ndarray = np.sum(a * b, axis=1) / norms
    return cos


def test_batch_matches_sentence_transformers(
    batched: np.ndarray, reference: dict[str, Any]
) -> None:
    want = np.asarray(reference["vectors"], dtype=np.float32)
    for sentence, cos in zip(reference["sentences"], _cosines(batched, want), strict=True):
        assert cos >= 0.999, f"cosine {cos:.6f} vs reference for {sentence[:60]!r}"


def test_one_by_one_matches_sentence_transformers(
    one_by_one: np.ndarray, reference: dict[str, Any]
) -> None:
    want = np.asarray(reference["vectors"], dtype=np.float32)
    assert _cosines(one_by_one, want).min() >= 0.999


def test_reference_covers_truncation(minilm: LocalMiniLM, reference: dict[str, Any]) -> None:
    """The long fixture sentence exceeds 256 tokens; we cut at 256, not tokenizer.json's 128."""
    assert reference["long_sentence_tokens"] > 256
    longest = max(reference["sentences"], key=len)
    assert len(minilm.model.tokenizer.encode(longest).ids) == 256
    np.testing.assert_allclose(
        minilm.embed_one(longest), minilm.embed_one(longest + " and more words"), atol=1e-6
    )


def test_rows_are_unit_float32(minilm: LocalMiniLM, batched: np.ndarray) -> None:
    assert batched.dtype == np.float32
    assert batched.shape[1] == minilm.dim == 384
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    one = minilm.embed_one("ok")
    assert one.shape == (384,) and one.dtype == np.float32


def test_batch_equals_one_by_one(
    batched: np.ndarray, one_by_one: np.ndarray, reference: dict[str, Any]
) -> None:
    """Padding, packing and length-sorting in a batch must not change any row."""
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    short = [s for s in reference["sentences"] if len(s) < 200]  # several chunks of 7
    chunked = LocalMiniLM(batch_size=7, cache_size=0).embed(short)
    np.testing.assert_allclose(
        chunked, one_by_one[[reference["sentences"].index(s) for s in short]], atol=1e-5
    )


def test_semantic_similarity(minilm: LocalMiniLM) -> None:
    ai, ml, k8s = minilm.embed([BLOG_AI, BLOG_ML, K8S])
    assert float(ai @ ml) == pytest.approx(0.634, abs=0.02)
    assert float(ai @ k8s) == pytest.approx(0.121, abs=0.02)


def test_empty_input_and_str_misuse(minilm: LocalMiniLM) -> None:
    assert minilm.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        minilm.embed("a string is not a batch")


def test_embed_one_cache_returns_private_copies() -> None:
    model = LocalMiniLM(cache_size=8)
    first = model.embed_one(BLOG_AI)
    first[:] = 0.0
    np.testing.assert_allclose(np.linalg.norm(model.embed_one(BLOG_AI)), 1.0, atol=1e-5)


def test_make_embedder_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAPTORFLOW_EMBEDDINGS", raising=False)
    local: Embedder = make_embedder()  # the Protocol is checked statically by mypy
    assert isinstance(local, LocalMiniLM) and local.dim == 384
    monkeypatch.setenv("RAPTORFLOW_EMBEDDINGS", "OpenAI")
    remote = make_embedder(model="m", api_key="k", base_url="http://127.0.0.1:9/v1")
    assert isinstance(remote, OpenAIEmbedder) and remote.name == "openai:m"
    assert make_embedder("openai", model="text-embedding-3-small").dim == 1536  # known: no request
    with pytest.raises(ValueError, match="bogus"):
        make_embedder("bogus")


# --- OpenAI-compatible backend against a real HTTP server on loopback ---------------------

FAKE_DIM = 8


def _fake_vector(text: str) -> list[float]:
    """Deterministic, deliberately NOT unit-length, so the client's normalisation is tested."""
    digest = hashlib.sha256(text.encode()).digest()
    return [3.0 * (b - 127.5) for b in digest[:FAKE_DIM]]


class _EmbeddingsHandler(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/embeddings" or self.headers.get("Authorization") != "Bearer test-key":
            self.send_error(404 if self.path != "/v1/embeddings" else 401)
            return
        self.requests.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": _fake_vector(t)}
            for i, t in enumerate(inputs)
        ]
        payload = json.dumps(
            {
                "object": "list",
                "data": data[::-1],  # out of order on purpose: clients must sort by index
                "model": body["model"],
                "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def embeddings_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    pytest.importorskip("openai", reason="the optional `openai` client is not installed")
    _EmbeddingsHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmbeddingsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", _EmbeddingsHandler.requests
    finally:
        server.shutdown()
        server.server_close()


def test_openai_embedder_sync_and_async(
    embeddings_server: tuple[str, list[dict[str, Any]]],
) -> None:
    base_url, requests = embeddings_server
    embedder = OpenAIEmbedder(
        model="fake-embed", api_key="test-key", base_url=base_url, batch_size=2, max_retries=0
    )
    texts = ["alpha", "beta", "gamma"]
    got = embedder.embed(texts)
    want = np.asarray([_fake_vector(t) for t in texts], dtype=np.float32)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got.dtype == np.float32 and embedder.dim == FAKE_DIM
    assert [r["input"] for r in requests] == [["alpha", "beta"], ["gamma"]]
    assert all(r["model"] == "fake-embed" and r["encoding_format"] == "float" for r in requests)
    np.testing.assert_allclose(embedder.embed_one("beta"), want[1], atol=1e-6)
    np.testing.assert_allclose(asyncio.run(embedder.aembed(texts)), want, atol=1e-6)
    np.testing.assert_allclose(asyncio.run(embedder.aembed_one("gamma")), want[2], atol=1e-6)


def test_openai_embedder_probes_and_checks_dim(
    embeddings_server: tuple[str, list[dict[str, Any]]],
) -> None:
    base_url, _ = embeddings_server
    assert OpenAIEmbedder(model="m", api_key="test-key", base_url=base_url).dim == FAKE_DIM
    wrong = OpenAIEmbedder(model="m", api_key="test-key", base_url=base_url, dim=384, max_retries=0)
    with pytest.raises(ValueError, match="expected 384"):
        wrong.embed(["x"])
