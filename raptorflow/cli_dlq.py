"""`raptorflow dlq list|show|replay|purge`: the dead-letter stream, for operators.

These commands talk to Redis (REDIS_URL) directly, not to the gateway: the
dead-letter stream holds every workspace's failures, so it is an operator's
tool, like redis-cli, and never exposed through the workspace-scoped API.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from redis.asyncio import Redis
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from shared.messaging import dead_letters
from shared.messaging.bus import make_redis
from shared.settings import Settings

T = TypeVar("T")

console = Console()
err = Console(stderr=True)

dlq_app = typer.Typer(help="Inspect, replay and purge dead letters.", no_args_is_help=True)

AsJson = typer.Option(False, "--json", help="Print JSON.")


def _run(work: Callable[[Redis, Settings], Awaitable[T]]) -> T:
    """Run `work` with a fresh client from the environment (never a cached one)."""
    settings = Settings()

    async def main() -> T:
        redis = make_redis(settings)
        try:
            return await work(redis, settings)
        finally:
            await redis.aclose()

    return asyncio.run(main())


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


@dlq_app.command("list")
def list_cmd(
    service: str | None = typer.Option(None, "--service", help="Only this service's letters."),
    stream: str | None = typer.Option(None, "--stream", help="Only letters from this stream."),
    workspace: str | None = typer.Option(None, "--workspace", "-w", help="Only this workspace."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many, oldest first."),
    as_json: bool = AsJson,
) -> None:
    """List dead letters, oldest first."""

    async def work(redis: Redis, settings: Settings) -> tuple[int, list[dead_letters.DeadLetter]]:
        letters = await dead_letters.list_letters(
            redis,
            settings.layout(),
            service=service,
            stream=stream,
            workspace_id=workspace,
            limit=limit,
        )
        return await dead_letters.count(redis, settings.layout()), letters

    total, letters = _run(work)
    if as_json:
        _print_json([letter.summary() for letter in letters])
        return
    table = Table(title=f"dead letters: {len(letters)} shown, {total} in the stream")
    for column in ("id", "service", "stream", "reason", "deliveries", "failed at", "error"):
        table.add_column(column)
    for letter in letters:
        table.add_row(
            letter.id,
            letter.service,
            letter.stream,
            letter.reason,
            str(letter.delivery_count),
            letter.failed_at,
            letter.summary()["error"][:80],
        )
    console.print(table)


@dlq_app.command("show")
def show_cmd(entry_id: str = typer.Argument(..., help="Dead-letter entry id.")) -> None:
    """Print one dead letter in full: the error and the original message."""

    async def work(redis: Redis, settings: Settings) -> dead_letters.DeadLetter | None:
        return await dead_letters.get_letter(redis, settings.layout(), entry_id)

    letter = _run(work)
    if letter is None:
        err.print(f"[red]no dead letter {entry_id}[/red]")
        raise typer.Exit(1)
    _print_json(letter.as_dict())


@dlq_app.command("replay")
def replay_cmd(
    entry_ids: list[str] = typer.Argument(None, help="Entry ids; none with --all."),
    all_: bool = typer.Option(False, "--all", help="Replay every letter (after the filters)."),
    service: str | None = typer.Option(None, "--service", help="With --all: only this service."),
    reason: str | None = typer.Option(
        None, "--reason", help="With --all: only this reason (invalid, max_deliveries)."
    ),
) -> None:
    """Re-publish letters to their streams (once their cause is fixed) and drop them."""
    if bool(entry_ids) == all_:
        err.print("[red]give entry ids or --all[/red]")
        raise typer.Exit(2)

    async def work(redis: Redis, settings: Settings) -> tuple[list[str], list[str]]:
        if all_:
            letters = [
                letter
                for letter in await dead_letters.list_letters(
                    redis, settings.layout(), service=service, limit=dead_letters_limit()
                )
                if reason is None or letter.reason == reason
            ]
        else:
            found = [await dead_letters.get_letter(redis, settings.layout(), i) for i in entry_ids]
            missing = [i for i, letter in zip(entry_ids, found, strict=True) if letter is None]
            if missing:
                return [], [f"no dead letter {i}" for i in missing]
            letters = [letter for letter in found if letter is not None]
        done, problems = [], []
        progress, bar = replay_progress(len(letters))
        for letter in letters:
            progress.advance(bar)
            try:
                new_id = await dead_letters.replay(redis, letter)
            except dead_letters.NotReplayable as exc:
                problems.append(str(exc))
                continue
            done.append(f"{letter.id} -> {letter.stream} {new_id}")
        progress.stop()
        return done, problems

    done, problems = _run(work)
    for line in done:
        console.print(f"replayed {line}")
    for problem in problems:
        err.print(f"[red]{problem}[/red]")
    console.print(f"{len(done)} replayed")
    raise typer.Exit(1 if problems else 0)


def replay_progress(total: int) -> tuple[Progress, TaskID]:
    """A started bar on stderr (stdout keeps the replayed lines); gone once stopped."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    bar = progress.add_task("replaying", total=total)
    progress.start()
    return progress, bar


def dead_letters_limit() -> int:
    """An upper bound on one `--all` run; rerun to continue past it."""
    return 100_000


@dlq_app.command("purge")
def purge_cmd(
    entry_ids: list[str] = typer.Argument(None, help="Entry ids; none with --all."),
    all_: bool = typer.Option(False, "--all", help="Delete every letter."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Confirm: letters are deleted for good."),
) -> None:
    """Delete letters for good (needs --yes)."""
    if bool(entry_ids) == all_:
        err.print("[red]give entry ids or --all[/red]")
        raise typer.Exit(2)
    if not yes:
        err.print("[red]purge deletes dead letters for good: add --yes to confirm[/red]")
        raise typer.Exit(2)

    async def work(redis: Redis, settings: Settings) -> int:
        return await dead_letters.purge(redis, settings.layout(), None if all_ else list(entry_ids))

    console.print(f"{_run(work)} purged")
