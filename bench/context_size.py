"""What the full AgentContext in every envelope costs, as task_history/past_successes grow.

Builds a StageCleared envelope (the corrector's input, a typical mid-flow event) whose
context holds N history rows and N neighbours (performance data for 5 task types x 8
agents), and times the two things every hop does with it: model_validate_json on
receipt and model_dump_json on publish. The router caps both lists at
settings.context_history_limit (10 by default, 100 at most): the N above 10 show what
the cap saves, and the last lines check the cap in the router's own helpers.

    .venv/bin/python bench/context_size.py            # N up to 100, 2000 repeats
    .venv/bin/python bench/context_size.py --quick    # 300 repeats
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.app.facade import summarise_history, summarise_neighbours
from shared.contract.events import (
    Envelope,
    Neighbour,
    RoutingInfo,
    StageCleared,
    Workflow,
    envelope_class,
    new_envelope,
)
from shared.contract.models import AgentContext
from shared.settings import Settings

GOAL = "Write a blog post about AI trends in healthcare for hospital CIOs, with sources"


def neighbour(i: int) -> Neighbour:
    return Neighbour(
        goal_hash=f"{i:064x}",
        similarity=0.8,
        quality=0.9,
        success=True,
        agent_sequence=["research", "content", "blog_writer"],
    )


def history_row(i: int) -> dict[str, Any]:
    return {
        "goal": f"{GOAL} #{i}"[:200],
        "agent_sequence": ["research", "content", "blog_writer"],
        "success": True,
        "result_quality": 0.87,
    }


def performance() -> dict[str, Any]:
    figures = {"runs": 120, "success_rate": 0.91, "mean_quality": 0.86, "mean_cost_usd": 0.002}
    return {f"type{t}": {f"agent{a}": dict(figures) for a in range(8)} for t in range(5)}


def envelope(n: int) -> Envelope[StageCleared]:
    context = AgentContext(
        workspace_id="bench",
        user_id="alice",
        brand_voice={"tone": "professional", "style": "conversational"},
        target_icps=["hospital CIOs", "health-tech founders"],
        past_successes=summarise_neighbours([neighbour(i) for i in range(n)], n),
        task_history=[history_row(i) for i in range(n)],
        performance_data=performance(),
        budget_constraints={"max_api_calls": 100},
    )
    workflow = Workflow(
        task_id="t1",
        goal=GOAL,
        agent_sequence=["research", "content", "blog_writer"],
        routing=RoutingInfo(source="memory", confidence=0.93),
        last_output="# Research\n" + "A finding with a source. " * 80,
    )
    payload = StageCleared(workflow=workflow, agent="content", task_type="content_quality")
    return new_envelope(payload, workspace_id="bench", context=context, correlation_id="t1")


def per_call_us(call: Any, repeats: int) -> tuple[float, float]:
    """Median and p99 microseconds of `call` over `repeats` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e6)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="300 repeats")
    args = parser.parse_args()
    repeats = 300 if args.quick else args.repeats
    cls = envelope_class(StageCleared)
    print(f"{'N':>4} {'bytes':>7} {'context B':>9} {'encode us':>9} {'p99':>6} "
          f"{'decode us':>9} {'p99':>6}")  # fmt: skip
    for n in (0, 1, 5, 10, 25, 50, 100):
        env = envelope(n)
        raw = env.model_dump_json().encode()
        ctx_bytes = len(env.context.model_dump_json())
        enc50, enc99 = per_call_us(env.model_dump_json, repeats)
        dec50, dec99 = per_call_us(lambda raw=raw: cls.model_validate_json(raw), repeats)
        cap = " <- default cap (context_history_limit=10)" if n == 10 else ""
        print(f"{n:4} {len(raw):7} {ctx_bytes:9} {enc50:9.1f} {enc99:6.0f} {dec50:9.1f} "
              f"{dec99:6.0f}{cap}")  # fmt: skip
    limit = Settings().context_history_limit
    kept = summarise_neighbours([neighbour(i) for i in range(100)], limit)
    rows = summarise_history([])
    print(
        f"\nrouter cap check: context_history_limit={limit}; summarise_neighbours(100 neighbours)"
        f" keeps {len(kept)}; recent_tasks() reads at most {limit} rows (ZREVRANGE 0..limit-1), "
        f"goals cut to 200 chars; summarise_history([]) -> {rows}"
    )


if __name__ == "__main__":
    main()
