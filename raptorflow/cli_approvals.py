"""`raptorflow approvals|checkpoints|webhooks ...`: human-in-the-loop from the terminal.

Every command talks to the gateway over HTTP (RAPTORFLOW_GATEWAY_URL, with
RAPTORFLOW_API_KEY when the gateway needs one), exactly as the API's users do.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)

approvals_app = typer.Typer(help="List and decide pending approvals.", no_args_is_help=True)
checkpoints_app = typer.Typer(help="A workspace's checkpoint configuration.", no_args_is_help=True)
webhooks_app = typer.Typer(help="A workspace's approval webhooks.", no_args_is_help=True)

Workspace = typer.Option(..., "--workspace", "-w", help="Workspace id.")
Gateway = typer.Option(
    "http://127.0.0.1:8000", "--gateway", envvar="RAPTORFLOW_GATEWAY_URL", help="Gateway URL."
)
By = typer.Option(None, "--by", help="Your user id (not needed when your API key names you).")
AsJson = typer.Option(False, "--json", help="Print the raw JSON.")


def _request(gateway: str, method: str, path: str, **kwargs: Any) -> Any:
    """One gateway call; an error status prints the gateway's detail and exits 1."""
    key = os.environ.get("RAPTORFLOW_API_KEY")
    headers = {"X-API-Key": key} if key else {}
    try:
        with httpx.Client(base_url=gateway, headers=headers, timeout=30) as client:
            response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        err.print(f"[red]cannot reach the gateway at {gateway}: {exc}[/red]")
        raise typer.Exit(1) from exc
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        err.print(f"[red]{response.status_code}[/red] {detail}")
        raise typer.Exit(1)
    return response.json()


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


@approvals_app.command("list")
def list_approvals(
    workspace: str = Workspace, gateway: str = Gateway, as_json: bool = AsJson
) -> None:
    """Pending approvals of a workspace, soonest deadline first."""
    pending = _request(gateway, "GET", "/approvals", params={"workspace_id": workspace})
    if as_json:
        _print_json(pending)
        return
    if not pending:
        console.print("no pending approvals")
        return
    table = Table("approval", "checkpoint", "agent", "task", "deadline", "rules")
    for a in pending:
        rules = ", ".join(
            f"{r['rule']} {'ok' if r['passed'] else 'failed'}" for r in a["evaluation"]["rules"]
        )
        table.add_row(
            a["approval_id"],
            a["checkpoint"],
            a["agent"],
            a["task_id"],
            a["deadline"],
            rules or "manual",
        )
    console.print(table)


@approvals_app.command("show")
def show(approval_id: str, workspace: str = Workspace, gateway: str = Gateway) -> None:
    """One approval: the stage output, the rule results, the deadline, the decision."""
    _print_json(
        _request(gateway, "GET", f"/approvals/{approval_id}", params={"workspace_id": workspace})
    )


def _decide(gateway: str, approval_id: str, body: dict[str, Any]) -> None:
    result = _request(gateway, "POST", f"/approvals/{approval_id}/decision", json=body)
    console.print(f"{result['decision']} by {result['decided_by']} at {result['decided_at']}")


def _body(workspace: str, decision: str, by: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"workspace_id": workspace, "decision": decision, **extra}
    if by:
        body["decided_by"] = by
    return body


@approvals_app.command("approve")
def approve(
    approval_id: str, workspace: str = Workspace, by: str | None = By, gateway: str = Gateway
) -> None:
    """Approve: the workflow continues."""
    _decide(gateway, approval_id, _body(workspace, "approved", by))


@approvals_app.command("reject")
def reject(
    approval_id: str,
    workspace: str = Workspace,
    reason: str = typer.Option("", "--reason", "-r", help="Why (kept with the decision)."),
    by: str | None = By,
    gateway: str = Gateway,
) -> None:
    """Reject: the task ends as failed (rejected)."""
    _decide(gateway, approval_id, _body(workspace, "rejected", by, reason=reason))


@approvals_app.command("changes")
def changes(
    approval_id: str,
    workspace: str = Workspace,
    comment: list[str] = typer.Option(..., "--comment", "-c", help="A requested change (repeat)."),
    by: str | None = By,
    gateway: str = Gateway,
) -> None:
    """Request changes: the stage is revised with the comments as critique."""
    _decide(gateway, approval_id, _body(workspace, "changes_requested", by, comments=comment))


@approvals_app.command("audit")
def audit(
    task_id: str, workspace: str = Workspace, gateway: str = Gateway, as_json: bool = AsJson
) -> None:
    """Every checkpoint evaluation and decision of a task, oldest first."""
    entries = _request(
        gateway, "GET", f"/tasks/{task_id}/audit", params={"workspace_id": workspace}
    )
    if as_json:
        _print_json(entries)
        return
    for e in entries:
        data = e["data"]
        what = data.get("status") or data.get("decision") or "escalated"
        who = f" by {data['decided_by']}" if data.get("decided_by") else ""
        console.print(f"{e['at']}  {e['kind']:<10} {e['checkpoint']}: {what}{who}")
        for reason in data.get("reasons", []):
            console.print(f"    {reason}")


@approvals_app.command("deliveries")
def deliveries(approval_id: str, workspace: str = Workspace, gateway: str = Gateway) -> None:
    """Webhook delivery status of an approval's notification."""
    _print_json(
        _request(
            gateway,
            "GET",
            f"/approvals/{approval_id}/deliveries",
            params={"workspace_id": workspace},
        )
    )


@checkpoints_app.command("set")
def set_checkpoints(
    config: Path = typer.Argument(
        ..., help="WorkflowCheckpoints JSON file ('-' for stdin).", allow_dash=True
    ),
    workspace: str = Workspace,
    gateway: str = Gateway,
) -> None:
    """Store the workspace's checkpoints (the JSON's workspace_id defaults to --workspace)."""
    text = sys.stdin.read() if str(config) == "-" else config.read_text()
    try:
        body = json.loads(text)
    except ValueError as exc:
        err.print(f"[red]not JSON: {exc}[/red]")
        raise typer.Exit(2) from exc
    body.setdefault("workspace_id", workspace)
    _print_json(_request(gateway, "PUT", f"/workspaces/{workspace}/checkpoints", json=body))


@checkpoints_app.command("show")
def show_checkpoints(workspace: str = Workspace, gateway: str = Gateway) -> None:
    """The workspace's stored checkpoints."""
    _print_json(_request(gateway, "GET", f"/workspaces/{workspace}/checkpoints"))


@webhooks_app.command("set")
def set_webhooks(
    workspace: str = Workspace,
    url: list[str] = typer.Option(..., "--url", help="Receiver URL (repeat for several)."),
    secret: str | None = typer.Option(
        None,
        "--secret",
        envvar="RAPTORFLOW_WEBHOOK_SECRET",
        help="Signing secret (kept if omitted; generated and shown once if none yet).",
    ),
    gateway: str = Gateway,
) -> None:
    """Send ApprovalNeeded notifications of the workspace to these URLs, signed."""
    body: dict[str, Any] = {"urls": url}
    if secret:
        body["secret"] = secret
    _print_json(_request(gateway, "PUT", f"/workspaces/{workspace}/webhooks", json=body))


@webhooks_app.command("show")
def show_webhooks(workspace: str = Workspace, gateway: str = Gateway) -> None:
    """The workspace's webhook URLs (never the secret)."""
    _print_json(_request(gateway, "GET", f"/workspaces/{workspace}/webhooks"))
