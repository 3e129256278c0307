"""`raptorflow tasks list|show|cancel|resume|rerun`: a workspace's tasks from the terminal.

Every command goes through `raptorflow.client` (RAPTORFLOW_GATEWAY_URL, RAPTORFLOW_API_KEY),
so the terminal sees the same typed `TaskView` as the API's users; `--json` prints it raw.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TypeVar

import httpx
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from raptorflow.client import RaptorFlow, RaptorFlowError
from shared.contract.task_view import TaskView

console = Console()
err = Console(stderr=True)
T = TypeVar("T")

tasks_app = typer.Typer(help="List, show, cancel, resume and rerun tasks.", no_args_is_help=True)

Workspace = typer.Option(..., "--workspace", "-w", help="Workspace id.")
Gateway = typer.Option(
    "http://127.0.0.1:8000", "--gateway", envvar="RAPTORFLOW_GATEWAY_URL", help="Gateway URL."
)
AsJson = typer.Option(False, "--json", help="Print the raw JSON document.")


@contextmanager
def client(gateway: str, workspace: str) -> Iterator[RaptorFlow]:
    with RaptorFlow(gateway, os.environ.get("RAPTORFLOW_API_KEY"), workspace_id=workspace) as rf:
        yield rf


def call(action: Callable[[], T]) -> T:
    """Run one client call; a refusal prints the gateway's reason and exits 1."""
    try:
        return action()
    except RaptorFlowError as exc:
        err.print(f"[red]{exc.status}[/red] {exc.detail}")
        raise typer.Exit(1) from exc
    except httpx.HTTPError as exc:
        err.print(f"[red]cannot reach the gateway: {exc}[/red]")
        raise typer.Exit(1) from exc


def emit(document: BaseModel, as_json: bool, render: Callable[[], None]) -> None:
    if as_json:
        print(document.model_dump_json(indent=2))
    else:
        render()


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def summary(view: TaskView) -> None:
    """Status, route and confidence, each stage (agent, quality, iterations, cost), total cost."""
    colour = {"completed": "green", "failed": "red", "rejected": "red"}.get(view.status, "yellow")
    console.print(f"task {view.task_id}: [{colour}]{view.status}[/{colour}]"
                  + (f" ({view.failure_reason}: {view.error})" if view.failure_reason else ""))
    console.print(f"goal: {view.goal or '-'}")
    if view.routing_source:
        confidence = f"{view.routing_confidence:.2f}" if view.routing_confidence is not None else "-"
        console.print(f"route: {' -> '.join(view.agent_sequence)} "
                      f"({view.routing_source}, confidence {confidence})")
    if view.stages:
        table = Table("stage", "agent", "quality", "met", "iterations", "cost $")
        for stage in view.stages:
            table.add_row(str(stage.stage_index + 1), stage.agent, f"{stage.quality:.2f}",
                          "yes" if stage.threshold_met else "no", str(stage.iterations),
                          f"{stage.usage.cost_usd:.4f}")
        console.print(table)
    quality = f"{view.quality:.2f}" if view.quality is not None else "-"
    calls = view.usage.api_calls if view.usage else 0
    console.print(f"quality {quality}, cost ${view.cost_usd:.4f} over {calls} LLM calls"
                  + (", budget exhausted" if view.budget_exhausted else ""))
    for link, other in (("resumed from", view.resumed_from), ("rerun of", view.rerun_of),
                        ("resumed by", view.resumed_by)):
        if other:
            console.print(f"{link} {other}")


@tasks_app.command("list")
def list_tasks(
    workspace: str = Workspace,
    status: str | None = typer.Option(None, help="accepted, running, awaiting_approval, "
                                      "completed, failed, rejected or cancelled."),
    agent: str | None = typer.Option(None, help="Only tasks that planned or ran this agent."),
    source: str | None = typer.Option(None, help="Routing source: memory, planner, ..."),
    limit: int = typer.Option(20, min=1, max=100),
    cursor: str | None = typer.Option(None, help="The next_cursor of the previous page."),
    gateway: str = Gateway,
    as_json: bool = AsJson,
) -> None:
    """The workspace's tasks, newest first."""
    with client(gateway, workspace) as rf:
        page = call(lambda: rf.list(status=status, agent=agent, source=source, limit=limit,
                                    cursor=cursor))

    def render() -> None:
        table = Table("status", "accepted", "route", "quality", "goal")
        table.add_column("task", no_wrap=True)
        for t in page.tasks:
            table.add_row(t.status, _when(t.created_at), t.routing_source or "-",
                          f"{t.quality:.2f}" if t.quality is not None else "-",
                          (t.goal or "")[:60], t.task_id)
        console.print(table)
        if page.next_cursor:
            console.print(f"more: --cursor '{page.next_cursor}'")

    emit(page, as_json, render)


@tasks_app.command("show")
def show(task_id: str, workspace: str = Workspace, gateway: str = Gateway,
         as_json: bool = AsJson) -> None:
    """One task's status, route, stages and cost."""
    with client(gateway, workspace) as rf:
        view = call(lambda: rf.get(task_id))
    emit(view, as_json, lambda: summary(view))


@tasks_app.command("cancel")
def cancel(task_id: str, workspace: str = Workspace,
           reason: str = typer.Option("", help="Why (kept on the task)."),
           gateway: str = Gateway, as_json: bool = AsJson) -> None:
    """Stop a task wherever it is (a finished task cannot be cancelled)."""
    with client(gateway, workspace) as rf:
        view = call(lambda: rf.cancel(task_id, reason=reason))
    emit(view, as_json, lambda: summary(view))


@tasks_app.command("resume")
def resume(task_id: str, workspace: str = Workspace,
           max_api_calls: float | None = typer.Option(
               None, help="A new call budget (default: what is left of the original)."),
           gateway: str = Gateway, as_json: bool = AsJson) -> None:
    """Continue a failed or rejected task from the stage that did not finish."""
    budget = {"max_api_calls": max_api_calls} if max_api_calls is not None else None
    with client(gateway, workspace) as rf:
        accepted = call(lambda: rf.resume(task_id, budget_constraints=budget))
    emit(accepted, as_json, lambda: console.print(f"task {accepted.task_id} resumes {task_id}"))


@tasks_app.command("rerun")
def rerun(task_id: str, workspace: str = Workspace, gateway: str = Gateway,
          as_json: bool = AsJson) -> None:
    """Start a fresh copy of a task."""
    with client(gateway, workspace) as rf:
        accepted = call(lambda: rf.rerun(task_id))
    emit(accepted, as_json, lambda: console.print(f"task {accepted.task_id} reruns {task_id}"))
