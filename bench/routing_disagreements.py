"""Where memory-aware routing disagrees with the labels: the figures behind issue 4's unmet targets.

Replays one dev file the way `raptorflow eval routing` does (`fit_routing.replay`: each
row routed by the router's own `best_reuse` against the earlier rows, then the
workspace's online correction in the default mode, learned prequentially) and prints:

- the precision-recall curve over the reuse threshold;
- what the wrong reuses at the threshold got wrong: a novel request reused, the same
  tools in another order, a tool missing, one too many, other tools;
- how often near-identical requests (cosine >= --near) need a different route;
- each novel request reused at the threshold, with the route it got and its nearest
  stored request (ids and cosine; `--show-goals` adds the texts, which stay out of the repo).

    .venv/bin/python bench/routing_disagreements.py clinc150 [--threshold 0.8] [--show-goals]
    .venv/bin/python bench/routing_disagreements.py ultratool
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fit_routing import FILES, Matrix, embeddings, figures, load_rows, predict_online, replay

from shared.contract.keys import goal_hash
from shared.domain.recalibration import DEFAULT_MODE
from shared.domain.routing import load_params

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)


def error_kind(candidate: tuple[str, ...], truth: tuple[str, ...]) -> str:
    """How a reused route differs from the right one (pure)."""
    if not truth:
        return "novel request reused"
    if candidate == truth:
        return "right"
    have, need = set(candidate), set(truth)
    if have == need:
        return "same tools, other order"
    if have < need:
        return "a tool missing"
    if have > need:
        return "a tool too many"
    return "other tools" if have & need else "disjoint tools"


def near_pairs(vectors: Matrix, seqs: list[tuple[str, ...]], near: float) -> Counter[str]:
    """Each request against every earlier stored one at cosine >= near: same route or how not."""
    kinds: Counter[str] = Counter()
    stored = np.array([bool(s) for s in seqs])
    for start in range(0, len(seqs), 1024):
        sims = vectors[start : start + 1024] @ vectors.T
        for offset, row in enumerate(sims):
            i = start + offset
            for j in np.nonzero((row[:i] >= near) & stored[:i])[0]:
                kinds[error_kind(seqs[j], seqs[i])] += 1
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(FILES))
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--near", type=float, default=0.95, help="cosine of a near-identical pair")
    parser.add_argument("--show-goals", action="store_true")
    args = parser.parse_args()
    rows = load_rows(FILES[args.name])
    goals = [str(r["goal"]) for r in rows]
    seqs = [tuple(str(a) for a in r["agent_sequence"]) for r in rows]  # type: ignore[attr-defined]
    vectors = embeddings(args.name, goals)
    params = load_params()
    rep = replay(vectors, seqs, [goal_hash(g) for g in goals], params)
    conf = predict_online(params, rep, mode=DEFAULT_MODE)
    print(f"{args.name}: {len(rows)} rows, recalibration {DEFAULT_MODE}")
    print("threshold  reuse_rate  precision  recall_of_reusable  false_reuse_novel  ece")
    for t in THRESHOLDS:
        f = figures(conf, rep, t)
        print(f"{t:>9}  " + "  ".join(f"{f[k] if f[k] is not None else '-':>10}" for k in
                                      ("reuse_rate", "reuse_precision", "recall_of_reusable",
                                       "false_reuse_rate_novel", "ece")))
    reused = [i for i, c in enumerate(rep.candidates) if c is not None and conf[i] > args.threshold]
    wrong = Counter(error_kind(rep.candidates[i] or (), seqs[i]) for i in reused)
    print(f"reuses at t = {args.threshold}: {len(reused)}; by kind: {dict(wrong.most_common())}")
    pairs = near_pairs(vectors, seqs, args.near)
    print(f"pairs at cosine >= {args.near} (request, earlier stored request): "
          f"{sum(pairs.values())}; by kind: {dict(pairs.most_common())}")
    stored = np.array([bool(s) for s in seqs])
    for i in reused:
        if seqs[i]:
            continue
        sims = np.where(stored[:i], vectors[:i] @ vectors[i], -1.0)
        j = int(sims.argmax())
        line = (f"novel {rows[i]['id']} conf {conf[i]:.2f} -> {'/'.join(rep.candidates[i] or ())}; "
                f"nearest stored {rows[j]['id']} ({'/'.join(seqs[j])}) cosine {sims[j]:.2f}")
        if args.show_goals:
            line += f"\n    {goals[i]!r}\n    {goals[j]!r}"
        print(line)


if __name__ == "__main__":
    main()
