"""`raptorflow experiments ...` and `raptorflow feedback`: A/B tests of sequences and ratings.

Both talk to the gateway over HTTP, like `submit`, so the CLI needs no Redis
access and obeys the same API keys.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

experiments_app = typer.Typer(
    help="A/B tests between two agent sequences for a kind of goal.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)

GATEWAY_URL = os.environ.get("RAPTORFLOW_GATEWAY_URL", "http://127.0.0.1:8000")
GatewayOption = typer.Option(GATEWAY_URL, help="Gateway URL (RAPTORFLOW_GATEWAY_URL).")
WorkspaceOption = typer.Option(..., "--workspace", "-w", help="Workspace id.")


def _client(gateway: str) -> httpx.Client:
    key = os.environ.get("RAPTORFLOW_API_KEY")
    return httpx.Client(base_url=gateway, headers={"X-API-Key": key} if key else {}, timeout=30)


def _call(gateway: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One request; a 4xx/5xx prints the gateway's reason and exits 1."""
    with _client(gateway) as client:
        response = client.request(method, path, json=body)
    if response.status_code >= 400:
        err.print(f"[red]{response.status_code}[/red] {response.text}")
        raise typer.Exit(1)
    return response.json()


def _sequence(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def print_report(report: dict[str, Any]) -> None:
    """Per-arm success and quality, then the significance line."""
    exp = report["experiment"]
    sig = report["significance"]
    table = Table(title=f"{exp['name']} ({exp['experiment_id']}) — {exp['status']}")
    for column in ("arm", "sequence", "assigned", "finished", "success", "quality (sd)"):
        table.add_column(column)
    for arm, data in report["arms"].items():
        table.add_row(
            arm,
            " -> ".join(data["sequence"]),
            str(data["assigned"]),
            str(data["finished"]),
            f"{data['success_rate']:.1%} ({data['successes']})",
            f"{data['mean_quality']:.3f} ({data['quality_sd']:.3f})",
        )
    console.print(table)
    console.print(
        f"goal pattern /{exp['goal_pattern']}/i, split A {exp['split_a']:.0%}; "
        f"P(B beats A) = {sig['p_b_beats_a']:.4f} (Beta posterior); leader {sig['leader']} "
        f"({'significant' if sig['significant'] else 'not significant'} at 0.95); "
        f"z = {sig['z']:.2f}, p = {sig['p_value']:.4f} (two-proportion z-test)"
    )
    if exp.get("winner"):
        console.print(f"winner: {exp['winner']}" + (" (promoted)" if exp.get("promoted") else ""))


@experiments_app.command("create")
def create(
    name: str = typer.Argument(..., help="A name for the experiment."),
    workspace: str = WorkspaceOption,
    pattern: str = typer.Option(..., "--pattern", "-p", help="RE2 regular expression searched in goals (any case; no backreferences or lookaround)."),
    arm_a: str = typer.Option(..., "--arm-a", help="Sequence A, comma-separated agents."),
    arm_b: str = typer.Option(..., "--arm-b", help="Sequence B, comma-separated agents."),
    split: float = typer.Option(0.5, "--split", help="Share of matching tasks sent to arm A."),
    gateway: str = GatewayOption,
) -> None:
    """Start an experiment: matching goals are split between the two sequences."""
    body = {
        "name": name,
        "goal_pattern": pattern,
        "arm_a": _sequence(arm_a),
        "arm_b": _sequence(arm_b),
        "split_a": split,
    }
    created = _call(gateway, "POST", f"/workspaces/{workspace}/experiments", body)
    console.print(f"experiment {created['experiment_id']} running")


@experiments_app.command("list")
def list_(workspace: str = WorkspaceOption, gateway: str = GatewayOption) -> None:
    """Every experiment of the workspace with its per-arm figures."""
    reports = _call(gateway, "GET", f"/workspaces/{workspace}/experiments")
    if not reports:
        console.print("no experiments")
    for report in reports:
        print_report(report)


@experiments_app.command("show")
def show(
    experiment_id: str, workspace: str = WorkspaceOption, gateway: str = GatewayOption
) -> None:
    """One experiment: per-arm success, quality and significance."""
    print_report(_call(gateway, "GET", f"/workspaces/{workspace}/experiments/{experiment_id}"))


@experiments_app.command("stop")
def stop(
    experiment_id: str,
    workspace: str = WorkspaceOption,
    promote: bool = typer.Option(False, "--promote", help="Store the winner in routing memory."),
    winner: str | None = typer.Option(None, "--winner", help="A or B instead of the leader."),
    gateway: str = GatewayOption,
) -> None:
    """Stop routing into the experiment; with --promote the winner becomes the proven route."""
    if winner is not None and winner not in {"A", "B"}:
        err.print("--winner must be A or B")
        raise typer.Exit(2)
    body = {"promote": promote, "winner": winner}
    print_report(
        _call(gateway, "POST", f"/workspaces/{workspace}/experiments/{experiment_id}/stop", body)
    )


def feedback(
    task_id: str = typer.Argument(..., help="The task to rate."),
    workspace: str = WorkspaceOption,
    rating: int = typer.Option(..., "--rating", "-r", min=1, max=5, help="1 (bad) to 5."),
    comment: str = typer.Option("", "--comment", "-c", help="Optional comment."),
    gateway: str = GatewayOption,
) -> None:
    """Rate a task's result: it updates the routing memory and the agents' performance."""
    body = {"workspace_id": workspace, "rating": rating, "comment": comment}
    accepted = _call(gateway, "POST", f"/tasks/{task_id}/feedback", body)
    console.print(f"feedback {accepted['event_id']} recorded for task {task_id}")
