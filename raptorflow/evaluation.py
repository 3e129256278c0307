"""`raptorflow eval routing`: replay labelled requests through the real router and score it.

Pure metric code (`RowResult`, `summarise`, `expected_calibration_error`,
`pr_curve`) is apart from the replay (`run_routing_eval`), which talks to Redis
through the same write path as the memory service: each row is stored as a
successful task and, unless `settings.routing_recalibration` is "off", its routing
decision is labelled and folded into the workspace's calibration as the memory
service does when a task ends. The router applies that correction as the setting
says (`shared.domain.recalibration.routed_confidence`), exactly as in production.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from services.memory import calibration, store
from shared.app.facade import route, workspace_calibration
from shared.app.runtime import Deps
from shared.contract.keys import goal_hash
from shared.domain.catalog import AgentCatalog, AgentSpec, TaskTypeSpec
from shared.domain.recalibration import outcome_of
from shared.domain.routing import RouteDecision
from shared.memory.store import TaskRecord

EVAL_QUALITY = 1.0  # a labelled row is a task that succeeded; the data has no quality score
PR_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)


class EvalRow(BaseModel):
    """One labelled request: the goal and the sequence that serves it (empty = novel)."""

    goal: str
    agent_sequence: list[str]
    id: str = ""


@dataclass(frozen=True)
class RowResult:
    """What routing one row gave: `correct` = the candidate equals the row's sequence."""

    reused: bool
    correct: bool
    confidence: float
    reusable: bool
    novel: bool
    route_ms: float


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def expected_calibration_error(confidences: Sequence[float], labels: Sequence[bool], bins: int = 10) -> float:
    """Weighted mean |mean confidence - accuracy| over equal-width bins of [0, 1]."""
    if not confidences:
        return 0.0
    conf = np.clip(np.asarray(confidences, dtype=float), 0.0, 1.0)
    hit = np.asarray(labels, dtype=float)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += abs(conf[mask].mean() - hit[mask].mean()) * mask.sum()
    return round(total / len(conf), 4)


def percentile(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else 0.0


def summarise(rows: Sequence[RowResult]) -> dict[str, Any]:
    """The eval's metrics; ratios with an empty denominator are null."""
    reuses = [r for r in rows if r.reused]
    reusable = [r for r in rows if r.reusable]
    novel = [r for r in rows if r.novel]
    return {
        "rows": len(rows),
        "reuses": len(reuses),
        "reuse_rate": _ratio(len(reuses), len(rows)),
        "reuse_precision": _ratio(sum(r.correct for r in reuses), len(reuses)),
        "oracle_coverage": _ratio(len(reusable), len(rows)),
        "recall_of_reusable": _ratio(sum(r.reused and r.correct for r in reusable), len(reusable)),
        "novel_rows": len(novel),
        "false_reuse_rate_novel": _ratio(sum(r.reused for r in novel), len(novel)),
        "ece": expected_calibration_error([r.confidence for r in rows], [r.correct for r in rows]),
        "p50_route_ms": percentile([r.route_ms for r in rows], 50),
        "p99_route_ms": percentile([r.route_ms for r in rows], 99),
    }


def pr_curve(rows: Sequence[RowResult], thresholds: Iterable[float] = PR_THRESHOLDS) -> list[dict[str, Any]]:
    """The same replay scored as if reuse needed confidence > t, for each t."""
    out = []
    for t in thresholds:
        again = [RowResult(r.confidence > t, r.correct, r.confidence, r.reusable, r.novel, r.route_ms)
                 for r in rows]
        s = summarise(again)
        out.append({"threshold": t, **{k: s[k] for k in (
            "reuse_rate", "reuse_precision", "recall_of_reusable", "false_reuse_rate_novel")}})
    return out


def load_rows(path: Path) -> list[EvalRow]:
    return [EvalRow.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


def eval_catalog(rows: Iterable[EvalRow]) -> AgentCatalog:
    """A catalog that knows every agent in the data, so no reuse is refused as unknown."""
    names = sorted({a for r in rows for a in r.agent_sequence})
    spec = TaskTypeSpec(quality="eval", description="eval")
    agents = [AgentSpec.model_construct(name=n, task_types=["eval"], description=n, prompt="",
                                        cost_per_call_usd=0.0) for n in names]
    return AgentCatalog.model_construct(task_types={"eval": spec}, agents=agents)


def record_for(row: EvalRow, now: float) -> TaskRecord:
    return TaskRecord(goal=row.goal, agent_sequence=row.agent_sequence, success=True,
                      result_quality=EVAL_QUALITY, goal_hash=goal_hash(row.goal),
                      task_id=row.id or uuid.uuid4().hex, stored_at=now, provider="eval")


async def store_success(deps: Deps, workspace_id: str, row: EvalRow, vector: Any = None) -> None:
    """Store a row as a successful task through the memory service's own write path."""
    record = record_for(row, time.time())
    embedded = await store.index_task(deps, workspace_id, record, vector=vector)
    async with deps.redis.pipeline(transaction=True) as tx:
        store.add_task_record(tx, deps.keys, workspace_id, record, embedded)
        await tx.execute()


Tick = Callable[[], None]


async def preload(deps: Deps, workspace_id: str, rows: Sequence[EvalRow], tick: Tick, batch: int = 128) -> None:
    """Store `--memory` rows, embedding them in batches (much faster than one by one)."""
    kept = [r for r in rows if r.agent_sequence]
    for start in range(0, len(kept), batch):
        chunk = kept[start : start + batch]
        vectors = deps.embedder.embed([r.goal for r in chunk])
        for row, vector in zip(chunk, vectors, strict=True):
            await store_success(deps, workspace_id, row, vector)
            tick()


async def learn_outcome(
    deps: Deps, workspace_id: str, decision: RouteDecision, row: EvalRow, row_index: int
) -> None:
    """The row's label for the workspace's calibration, through the memory service's own update.

    The row's sequence is the one its task succeeded with; a novel row (empty
    sequence) succeeded with none that memory holds, so its candidate was wrong.
    """
    outcome = outcome_of(decision.candidate_sequence, decision.candidate_logit,
                         row.agent_sequence, success=True)
    if outcome is not None:
        marker = deps.keys.processed(workspace_id, "memory-calibration", f"eval-row-{row_index}")
        await calibration.record_outcome(
            deps.redis,
            deps.keys,
            workspace_id,
            outcome,
            marker=marker,
            marker_ttl_s=deps.settings.processed_ttl_s,
        )


async def replay(
    deps: Deps,
    workspace_id: str,
    rows: Sequence[EvalRow],
    known: set[tuple[str, ...]],
    tick: Tick,
    *,
    online: bool = True,
) -> list[RowResult]:
    """Route each row with memory = preloaded + earlier rows, then store it unless novel."""
    results = []
    for index, row in enumerate(rows):
        truth = tuple(row.agent_sequence)
        started = time.perf_counter()
        decision = await route(deps, row.goal, workspace_id, use_planner=False)
        elapsed = (time.perf_counter() - started) * 1000
        candidate = tuple(decision.candidate_sequence or ())
        results.append(
            RowResult(
                reused=decision.source == "memory",
                correct=bool(truth) and candidate == truth,
                confidence=decision.confidence,
                reusable=bool(truth) and truth in known,
                novel=not truth,
                route_ms=elapsed,
            )
        )
        if truth:
            await store_success(deps, workspace_id, row)
            known.add(truth)
        if online:
            await learn_outcome(deps, workspace_id, decision, row, index)
        tick()
    return results


async def drop_workspace(deps: Deps, workspace_id: str) -> None:
    """Delete everything the eval wrote (its workspace id is unique)."""
    async for key in deps.redis.scan_iter(match=f"*{workspace_id}*", count=1000):
        await deps.redis.unlink(key)


async def run_routing_eval(
    deps: Deps,
    data: Sequence[EvalRow],
    memory: Sequence[EvalRow],
    tick: Tick,
    *,
    keep: bool = False,
) -> dict[str, Any]:
    """Replay `data` in a fresh workspace after preloading `memory`; the metrics as a dict.

    The router applies the workspace's correction as `deps.settings.routing_recalibration`
    says; "off" (the global model alone) also leaves the calibration at its prior.
    """
    mode = deps.settings.routing_recalibration
    online = mode != "off"
    workspace_id = f"eval-{uuid.uuid4().hex[:12]}"
    deps.catalog = eval_catalog([*data, *memory])
    try:
        await preload(deps, workspace_id, memory, tick)
        known = {tuple(r.agent_sequence) for r in memory if r.agent_sequence}
        results = await replay(deps, workspace_id, data, known, tick, online=online)
        learned = await workspace_calibration(deps, workspace_id)
    finally:
        if not keep:
            await drop_workspace(deps, workspace_id)
    return {
        **summarise(results),
        "threshold": deps.settings.reuse_confidence,
        "recalibration": mode,
        "online_calibration": online,
        "calibration": learned.model_dump(),
        "memory_rows": len(memory),
        "index": deps.index.kind,
        "workspace_id": workspace_id if keep else None,
        "pr_curve": pr_curve(results),
    }


def dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, separators=(",", ":"))
