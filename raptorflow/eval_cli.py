"""`raptorflow eval ...`: the typer sub-app; I/O only, the scoring is in raptorflow/evaluation.py."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, cast

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from raptorflow.evaluation import dumps, load_rows, run_routing_eval
from raptorflow.redis_server import RedisServer
from shared.app.runtime import build_deps
from shared.domain.recalibration import RECALIBRATION_MODES, RecalibrationMode
from shared.settings import Settings

eval_app = typer.Typer(help="Measure the system on labelled data.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


async def _evaluate(
    settings: Settings, data: Path, memory: Path | None, keep: bool
) -> dict[str, Any]:
    """Fresh workspace on REDIS_URL, or on an embedded Redis when none is configured."""
    server = None
    if not (os.environ.get("REDIS_URL") or os.environ.get("RAPTORFLOW_REDIS_URL")):
        server = RedisServer().start()
        settings = settings.model_copy(update={"redis_url": SecretStr(server.url)})
    settings = settings.model_copy(update={"llm_provider": "offline"})
    rows, preload = load_rows(data), load_rows(memory) if memory else []
    deps = await build_deps(settings)
    try:
        with Progress(TextColumn("routing eval"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=True) as progress:
            bar = progress.add_task("rows", total=len(rows) + sum(1 for r in preload if r.agent_sequence))
            return await run_routing_eval(deps, rows, preload, lambda: progress.advance(bar),
                                          keep=keep)
    finally:
        await deps.close()
        if server is not None:
            server.stop()


def recalibration_mode(default: RecalibrationMode, option: str | None, static: bool) -> RecalibrationMode:
    """The mode the eval runs with: --recalibration, else off for --static-calibration, else the setting."""
    if option is not None and option not in RECALIBRATION_MODES:
        raise typer.BadParameter(f"expected one of {', '.join(RECALIBRATION_MODES)}",
                                 param_hint="--recalibration")
    if static and option not in (None, "off"):
        raise typer.BadParameter("--static-calibration means --recalibration off",
                                 param_hint="--static-calibration")
    if static:
        return "off"
    return cast(RecalibrationMode, option) if option is not None else default


@eval_app.command("routing")
def routing(
    data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="JSONL: goal, agent_sequence."),
    memory: Path | None = typer.Option(None, "--memory", exists=True, dir_okay=False,
                                       help="JSONL stored as successful tasks first."),
    as_json: bool = typer.Option(False, "--json", help="Last line: one JSON object of metrics."),
    keep: bool = typer.Option(False, "--keep", help="Keep the eval workspace in Redis."),
    recalibration: str | None = typer.Option(
        None, "--recalibration", metavar="off|cautious|full",
        help="How the workspace's online correction is applied (default: the "
             "routing_recalibration setting, env RAPTORFLOW_ROUTING_RECALIBRATION).",
    ),
    static: bool = typer.Option(False, "--static-calibration",
                                help="Same as --recalibration off (the global calibrator alone)."),
) -> None:
    """Replay labelled requests through the router (planner-free) and score reuse.

    Each row's outcome corrects the eval workspace's calibration online, as a
    finished task does in the memory service, and the router applies it as
    --recalibration says (off: not learned, the global calibrator alone).
    """
    settings = Settings()
    mode = recalibration_mode(settings.routing_recalibration, recalibration, static)
    settings = settings.model_copy(update={"routing_recalibration": mode})
    result = asyncio.run(_evaluate(settings, data, memory, keep))
    if as_json:
        print(dumps(result))
        return
    for key, value in result.items():
        if key not in ("pr_curve", "calibration"):
            out.print(f"{key:>24}: {value}")
    for point in result["pr_curve"]:
        out.print(f"  threshold {point['threshold']}: " + ", ".join(
            f"{k} {v}" for k, v in point.items() if k != "threshold"))
