"""Fit the router's reuse calibration on the given dev data and write shared/domain/routing_params.json.

Replays `clinc150/dev.jsonl` and `ultratool/dev.jsonl` the way `raptorflow eval
routing` does (each row routed against the earlier rows, novel rows never
stored, a repeated goal replacing its earlier entry), takes the k nearest
earlier successful tasks by exact cosine, and computes the features with the
router's own `best_reuse`. The label is whether the voted sequence equals the
row's sequence; a logistic regression on the features gives P(reuse right).

A dev replay only shows workspaces whose memory holds ~150 (CLINC150) or
hundreds (UltraTool) of sequences, where history is dense; a real workspace
starts with one. So the fit also replays "small workspaces": a few random
sequences' rows in dev order, mixed with 20% off-topic rows (other sequences,
never stored: novel to that workspace). That is what teaches the calibrator
how the number of distinct sequences and of supporting neighbours changes the
odds, with no special case for any example.

    .venv/bin/python bench/fit_routing.py            # fit, report, write params
    .venv/bin/python bench/fit_routing.py --dry-run  # report only
    .venv/bin/python bench/fit_routing.py --dry-run --sensitivity  # + online recalibration grid
    .venv/bin/python bench/fit_routing.py --dry-run --bound        # + best ranking these features allow

The held-out figures are given three times: with the global calibrator alone
(`..._heldout`) and with the workspace's online recalibration
(`..._heldout_online`, `shared.domain.recalibration` updated after each routed row
with its label, as the memory service does after each task), and the same
correction applied as routing_recalibration=cautious does (`..._heldout_cautious`:
it may only lower the global confidence).

Embeddings are cached under /tmp/raptorflow_fit (never in the repo).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.contract.events import Neighbour
from shared.contract.keys import goal_hash
from shared.domain.recalibration import (
    DEFAULT_CONFIG,
    RecalibrationConfig,
    RecalibrationMode,
    prior,
    routed_confidence,
    update,
)
from shared.domain.routing import (
    FEATURE_NAMES,
    PARAMS_PATH,
    RoutingParams,
    best_reuse,
    centroid_cosines,
    load_params,
)
from shared.memory.embeddings import make_embedder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = {"clinc150": DATA / "clinc150" / "dev.jsonl", "ultratool": DATA / "ultratool" / "dev.jsonl"}
CACHE = Path("/tmp/raptorflow_fit")
K = 10
# top_quality is constant in replayed data (every stored row succeeded at quality 1),
# so its weight cannot be identified; it is left out of the fit (weight 0).
FITTED = tuple(name for name in FEATURE_NAMES if name != "top_quality")
Matrix = npt.NDArray[np.float32]


@dataclass
class Replay:
    """Per routed row: its features (None when memory was empty), label, and oracle flags."""

    features: list[list[float] | None]
    labels: npt.NDArray[np.int_]
    reusable: npt.NDArray[np.bool_]
    novel: npt.NDArray[np.bool_]
    candidates: list[tuple[str, ...] | None] = field(default_factory=list)


def load_rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def embeddings(name: str, goals: list[str]) -> Matrix:
    """All goals' MiniLM vectors, cached in /tmp keyed by the goals' content."""
    digest = hashlib.sha256("\n".join(goals).encode()).hexdigest()[:16]
    path = CACHE / f"{name}-{digest}.npy"
    if path.exists():
        return np.load(path)
    CACHE.mkdir(parents=True, exist_ok=True)
    embedder = make_embedder("local")
    parts = []
    for start in range(0, len(goals), 256):
        parts.append(embedder.embed(goals[start : start + 256]))
        print(f"  embedded {name} {start + 256}/{len(goals)}", file=sys.stderr)
    vectors = np.concatenate(parts).astype(np.float32)
    np.save(path, vectors)
    return vectors


def replay(
    vectors: Matrix, seqs: list[tuple[str, ...]], hashes: list[str],
    params: RoutingParams, stored: npt.NDArray[np.bool_] | None = None,
) -> Replay:
    """Route every row against the earlier stored rows, as the eval command does."""
    n = len(seqs)
    store = np.array([bool(s) for s in seqs]) if stored is None else stored
    later = np.full(n, n + 1)  # index of the next stored row with the same goal (replaces it)
    seen: dict[str, int] = {}
    for i in range(n - 1, -1, -1):
        if store[i]:
            later[i] = seen.get(hashes[i], n + 1)
            seen[hashes[i]] = i
    idx = np.arange(n)
    distinct: set[tuple[str, ...]] = set()
    sums: dict[tuple[str, ...], npt.NDArray[np.float64]] = {}  # as the memory service keeps them
    feats: list[list[float] | None] = []
    candidates: list[tuple[str, ...] | None] = []
    labels, reusable = np.zeros(n, dtype=int), np.zeros(n, dtype=bool)
    for start in range(0, n, 512):
        sims_block = vectors[start : start + 512] @ vectors.T
        for offset, sims_row in enumerate(sims_block):
            i = start + offset
            valid = (idx < i) & store & (later >= i)
            neighbours = _neighbours(np.where(valid, sims_row, -np.inf), int(valid.sum()), seqs)
            centroids = centroid_cosines(vectors[i], {json.dumps(nb.agent_sequence): sums[tuple(nb.agent_sequence)]
                                                      for nb in neighbours})
            candidate = best_reuse(neighbours, len(distinct), params, stored_tasks=int(valid.sum()),
                                   centroids=centroids)
            reusable[i] = store[i] and seqs[i] in distinct
            candidates.append(None if candidate is None else tuple(candidate.agent_sequence))
            if candidate is None:
                feats.append(None)
            else:
                feats.append(candidate.features.values())
                labels[i] = int(store[i] and tuple(candidate.agent_sequence) == seqs[i])
            if store[i]:
                distinct.add(seqs[i])
                sums[seqs[i]] = sums.get(seqs[i], 0.0) + vectors[i].astype(np.float64)
    return Replay(feats, labels, reusable, ~store, candidates)


def _neighbours(sims: npt.NDArray[np.float32], valid: int, seqs: list[tuple[str, ...]]) -> list[Neighbour]:
    if valid == 0:
        return []
    k = min(K, valid)
    top = np.argpartition(-sims, k - 1)[:k]
    top = top[np.argsort(-sims[top])]
    return [
        Neighbour(goal_hash=str(j), similarity=round(float(sims[j]), 4), quality=1.0,
                  success=True, agent_sequence=list(seqs[j]))
        for j in top
    ]


def small_workspaces(
    vectors: Matrix, seqs: list[tuple[str, ...]], hashes: list[str], params: RoutingParams,
    rng: np.random.Generator, count: int, rows_each: int = 40, off_topic: float = 0.2,
) -> list[Replay]:
    """Replays of workspaces that know only a few sequences (see the module docstring)."""
    by_seq: dict[tuple[str, ...], list[int]] = {}
    for i, seq in enumerate(seqs):
        if seq:
            by_seq.setdefault(seq, []).append(i)
    pool = [s for s, rows in by_seq.items() if len(rows) >= 3]
    out = []
    for _ in range(count):
        m = int(rng.choice([1, 2, 3, 5, 8, 13]))
        chosen = [pool[j] for j in rng.choice(len(pool), size=min(m, len(pool)), replace=False)]
        own = sorted(i for s in chosen for i in by_seq[s])[:rows_each]
        others = np.array([i for i in range(len(seqs)) if seqs[i] not in chosen])
        extra = rng.choice(others, size=int(len(own) * off_topic / (1 - off_topic)), replace=False)
        rows = sorted(own) + list(extra)
        rows.sort()
        keep = np.array([i in set(own) for i in rows])
        out.append(replay(vectors[rows], [seqs[i] for i in rows], [hashes[i] for i in rows],
                          params, stored=keep))
    return out


def design(replays: list[Replay]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Rows that had a candidate, with the fitted feature columns."""
    cols = [FEATURE_NAMES.index(name) for name in FITTED]
    xs, ys = [], []
    for rep in replays:
        for f, label in zip(rep.features, rep.labels, strict=True):
            if f is not None:
                xs.append([f[c] for c in cols])
                ys.append(float(label))
    return np.array(xs), np.array(ys)


def fit_logistic(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], l2: float = 1e-4) -> npt.NDArray[np.float64]:
    """Newton's method on the mean log loss with a small ridge (intercept unpenalised)."""
    xb = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xb.shape[1])
    ridge = l2 * np.diag(np.r_[0.0, np.ones(xb.shape[1] - 1)])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -50, 50)))
        grad = xb.T @ (p - y) / len(y) + ridge @ w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb / len(y) + ridge
        step = np.linalg.solve(hess + 1e-9 * np.eye(len(w)), grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def params_from(w: npt.NDArray[np.float64], base: RoutingParams, note: str, report: dict[str, object]) -> RoutingParams:
    weights = dict.fromkeys(FEATURE_NAMES, 0.0) | {n: round(float(v), 4) for n, v in zip(FITTED, w[1:], strict=True)}
    return RoutingParams(intercept=round(float(w[0]), 4), similarity_power=base.similarity_power,
                         fitted_on=note, fit_report=report, **weights)


def predict(params: RoutingParams, rep: Replay) -> npt.NDArray[np.float64]:
    """Confidence per row (0 where there was no candidate), with the router's own formula."""
    w = np.array(params.weights())
    return np.array([0.0 if f is None else 1.0 / (1.0 + np.exp(-np.clip(params.intercept + w @ np.array(f), -50, 50)))
                     for f in rep.features])


def predict_online(
    params: RoutingParams, rep: Replay, config: RecalibrationConfig = DEFAULT_CONFIG,
    mode: RecalibrationMode = "full",
) -> npt.NDArray[np.float64]:
    """Confidence per row with the workspace's online correction, learned from the earlier rows,
    applied as the router does in `mode` (the labels, hence the learned state, do not depend on it)."""
    w = np.array(params.weights())
    state = prior(config)
    out = np.zeros(len(rep.features))
    for i, f in enumerate(rep.features):
        if f is None:
            continue
        logit = float(params.intercept + w @ np.array(f))
        out[i] = routed_confidence(logit, state, mode)
        state = update(state, logit, bool(rep.labels[i]), config)
    return out


def figures(conf: npt.NDArray[np.float64], rep: Replay, threshold: float) -> dict[str, float]:
    """The eval command's metrics for one threshold (see raptorflow/evaluation.py)."""
    from raptorflow.evaluation import RowResult, summarise

    rows = [RowResult(reused=bool(c > threshold), correct=bool(lab), confidence=float(c),
                      reusable=bool(r), novel=bool(nv), route_ms=0.0)
            for c, lab, r, nv in zip(conf, rep.labels, rep.reusable, rep.novel, strict=True)]
    out = summarise(rows)
    return {k: out[k] for k in ("reuse_rate", "reuse_precision", "recall_of_reusable",
                                "false_reuse_rate_novel", "ece")}


def sensitivity(params: RoutingParams, replays: dict[str, Replay], label: str) -> None:
    """Figures at t = 0.8 for a grid of prior precision x forgetting (stderr, for RESULTS.md)."""
    for p0 in (2.0, 5.0, 20.0):
        for forgetting in (0.99, 0.995, 0.998, 1.0):
            config = RecalibrationConfig(prior_precision=p0, forgetting=forgetting)
            cells = [f"{name}: " + json.dumps(figures(predict_online(params, rep, config), rep, 0.8))
                     for name, rep in replays.items()]
            print(f"{label} p0={p0} f={forgetting} " + " | ".join(cells), file=sys.stderr)


def precision_at_recall(score: npt.NDArray[np.float64], rep: Replay, recall: float) -> tuple[float, int]:
    """Precision of the top-scored rows that first reach `recall` of the reusable rows, and how many."""
    order = np.argsort(-score)
    hits = np.cumsum(rep.labels[order])
    first = int(np.argmax(hits >= recall * rep.reusable.sum()))
    return round(float(hits[first] / (first + 1)), 4), first + 1


def ranking_bound(name: str, rep: Replay) -> None:
    """How well ANY monotone calibration of a score could do: rank the rows by an in-sample fit
    on this file alone (linear, then with all pairwise products), and read off precision at
    the recall targets. Calibration can move the threshold along this curve, never above it."""
    rows = [i for i, f in enumerate(rep.features) if f is not None]
    cols = [FEATURE_NAMES.index(n) for n in FITTED]
    x = np.array([[rep.features[i][c] for c in cols] for i in rows])  # type: ignore[index]
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    quad = np.hstack([x, *[x[:, [j]] * x[:, j:] for j in range(x.shape[1])]])
    sub = Replay([rep.features[i] for i in rows], rep.labels[rows], rep.reusable, rep.novel)
    for kind, design_x in (("linear", x), ("quadratic", quad)):
        w = fit_logistic(design_x, sub.labels.astype(float), l2=1e-3)
        score = np.hstack([np.ones((len(design_x), 1)), design_x]) @ w
        cells = {f"recall {r}": precision_at_recall(score, sub, r) for r in (0.159, 0.2)}
        print(f"bound {name} in-sample {kind}: precision (rows) at {cells}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--small-workspaces", type=int, default=150, help="per dataset")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sensitivity", action="store_true",
                        help="print online-recalibration figures over a grid of its two settings")
    parser.add_argument("--bound", action="store_true",
                        help="print the precision an in-sample ranking reaches at the recall targets")
    args = parser.parse_args()
    base = load_params()
    rng = np.random.default_rng(args.seed)
    halves: dict[str, tuple[Replay, list[Replay], Replay, list[Replay], Replay]] = {}
    counts = {}
    for name, path in FILES.items():
        rows = load_rows(path)
        counts[name] = len(rows)
        seqs = [tuple(str(a) for a in r["agent_sequence"]) for r in rows]  # type: ignore[attr-defined]
        hashes = [goal_hash(str(r["goal"])) for r in rows]
        vectors = embeddings(name, [str(r["goal"]) for r in rows])
        half = len(rows) // 2
        print(f"replaying {name} ({len(rows)} rows)", file=sys.stderr)
        full = replay(vectors, seqs, hashes, base)
        first = replay(vectors[:half], seqs[:half], hashes[:half], base)
        second = replay(vectors[half:], seqs[half:], hashes[half:], base)
        small_first = small_workspaces(vectors[:half], seqs[:half], hashes[:half], base, rng,
                                       args.small_workspaces // 2)
        small_all = small_workspaces(vectors, seqs, hashes, base, rng, args.small_workspaces)
        halves[name] = (first, small_first, second, small_all, full)
    # Held out: fit on each file's first half (replayed alone, plus its small workspaces),
    # measure on the second half replayed alone (a fresh memory, as the eval does).
    x, y = design([r for v in halves.values() for r in (v[0], *v[1])])
    held = params_from(fit_logistic(x, y), base, "", {})
    report: dict[str, object] = {}
    for name, v in halves.items():
        report[f"{name}_second_half_heldout"] = {
            f"t{t}": figures(predict(held, v[2]), v[2], t) for t in (0.5, 0.6, 0.7, 0.8, 0.9)
        }
        report[f"{name}_second_half_heldout_online"] = {
            f"t{t}": figures(predict_online(held, v[2]), v[2], t) for t in (0.5, 0.6, 0.7, 0.8, 0.9)
        }
        report[f"{name}_second_half_heldout_cautious"] = {
            f"t{t}": figures(predict_online(held, v[2], mode="cautious"), v[2], t)
            for t in (0.5, 0.6, 0.7, 0.8, 0.9)
        }
    if args.bound:
        for name, v in halves.items():
            ranking_bound(name, v[4])
    if args.sensitivity:
        sensitivity(held, {name: v[2] for name, v in halves.items()}, "held out, second half")
        sensitivity(base, {name: v[4] for name, v in halves.items()}, "full dev, current params")
    x, y = design([r for v in halves.values() for r in (v[4], *v[3])])
    w = fit_logistic(x, y)
    today = dt.date.today().isoformat()
    note = (f"bench/fit_routing.py on {today}: clinc150/dev.jsonl ({counts['clinc150']} rows) + "
            f"ultratool/dev.jsonl ({counts['ultratool']} rows), each replayed in order, plus "
            f"{args.small_workspaces} small-workspace replays per file (seed {args.seed}); "
            f"{len(y)} routed rows; logistic regression, top_quality not identifiable (weight 0)")
    params = params_from(w, base, note, report)
    for name, v in halves.items():
        report[f"{name}_full_in_sample"] = {
            f"t{t}": figures(predict(params, v[4]), v[4], t) for t in (0.5, 0.6, 0.7, 0.8, 0.9)
        }
    print(json.dumps(params.model_dump(), indent=2))
    if not args.dry_run:
        PARAMS_PATH.write_text(json.dumps(params.model_dump(), indent=2) + "\n")
        print(f"wrote {PARAMS_PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()
