"""What the candidate's centroid adds to the calibrator: the routing feature
`centroid_similarity`, measured by leaving it out.

The feature: the cosine between a request and the centroid (summed vectors) of
every stored task of the candidate sequence in the workspace. A novel request
often lies close to one example of a broad intent (CLINC150's `fun_fact`,
`do_you_have_pets`) but far from the intent as a whole; the k neighbours cannot
show that, the centroid can.

This replays CLINC150 dev as the eval does (`fit_routing.replay`), plus the two
stand-ins of the unseen check (`unseen_proxy`: memory preloaded), computes the
feature prequentially (each row sees only the rows stored before it), fits the
global calibrator on CLINC150 dev only (no small-workspace replays, no UltraTool,
unlike `fit_routing.py`) with and without it, applies the workspace's online
correction as the default mode does, and prints precision / recall_of_reusable /
false reuse of novel / ece at t = 0.8. "held out": fitted on dev's first half.

    .venv/bin/python bench/centroid_feature.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fit_routing import (
    FILES,
    FITTED,
    Matrix,
    Replay,
    embeddings,
    figures,
    fit_logistic,
    load_rows,
    replay,
)
from unseen_proxy import oos_proxy, unseen_intents_proxy

from shared.contract.keys import goal_hash
from shared.domain.recalibration import prior, sigmoid, update
from shared.domain.routing import FEATURE_NAMES, load_params

Row = dict[str, Any]
Floats = npt.NDArray[np.float64]


def replay_with_memory(memory: list[Row], data: list[Row], vector_of: dict[str, Matrix]) -> Replay:
    """The eval's replay of `data` with `memory` preloaded (the router's features, centroid included)."""
    rows = memory + data
    seqs = [tuple(r["agent_sequence"]) for r in rows]
    vectors = np.stack([vector_of[r["goal"]] for r in rows])
    stored = np.array([bool(s) for s in seqs])
    full = replay(vectors, seqs, [goal_hash(r["goal"]) for r in rows], load_params(), stored)
    m = len(memory)
    return Replay(full.features[m:], full.labels[m:], full.reusable[m:], full.novel[m:], full.candidates[m:])


def design(rep: Replay, with_centroid: bool) -> tuple[list[int], Floats]:
    names = [n for n in FITTED if with_centroid or n != "centroid_similarity"]
    cols = [FEATURE_NAMES.index(name) for name in names]
    rows = [i for i, f in enumerate(rep.features) if f is not None]
    return rows, np.array([[rep.features[i][c] for c in cols] for i in rows])  # type: ignore[index]


def online_confidence(rep: Replay, rows: list[int], logits: Floats) -> Floats:
    """The default mode's confidence: the workspace's correction, learned prequentially."""
    conf, state = np.zeros(len(rep.features)), prior()
    for i, z in zip(rows, logits, strict=True):
        conf[i] = sigmoid(state.a + state.b * float(z))
        state = update(state, float(z), bool(rep.labels[i]))
    return conf


def main() -> None:
    rows = load_rows(FILES["clinc150"])
    vectors = embeddings("clinc150", [str(r["goal"]) for r in rows])
    vector_of = {str(r["goal"]): v for r, v in zip(rows, vectors, strict=True)}
    half = len(rows) // 2
    oos_memory, oos_data = oos_proxy(rows, seed=1)
    unseen_memory, unseen_data = unseen_intents_proxy(rows, seed=0)
    sets = {
        "dev": replay_with_memory([], rows, vector_of),
        "dev first half": replay_with_memory([], rows[:half], vector_of),
        "dev second half": replay_with_memory([], rows[half:], vector_of),
        "oos proxy": replay_with_memory(oos_memory, oos_data, vector_of),
        "unseen_intents proxy": replay_with_memory(unseen_memory, unseen_data, vector_of),
    }
    shown = ("dev", "dev second half", "oos proxy", "unseen_intents proxy")
    print("precision / recall_of_reusable / false_reuse_novel / ece at t = 0.8, online correction (full)")
    for fitted_on in ("dev", "dev first half"):
        for with_centroid in (False, True):
            rows_fit, x = design(sets[fitted_on], with_centroid)
            mean, std = x.mean(0), x.std(0) + 1e-9
            w = fit_logistic((x - mean) / std, sets[fitted_on].labels[rows_fit].astype(float))
            cells = []
            for name in shown:
                rep = sets[name]
                rows_eval, x_eval = design(rep, with_centroid)
                logits = np.hstack([np.ones((len(x_eval), 1)), (x_eval - mean) / std]) @ w
                f = figures(online_confidence(rep, rows_eval, logits), rep, 0.8)
                cells.append(f"{name} " + " / ".join(
                    "-" if f[k] is None else f"{f[k]:.3f}"
                    for k in ("reuse_precision", "recall_of_reusable", "false_reuse_rate_novel", "ece")))
            label = f"fit on {fitted_on}, {'with' if with_centroid else 'without'} centroid"
            print(f"{label:<42} " + " | ".join(cells))


if __name__ == "__main__":
    main()
