"""`raptorflow agents list|show|register|remove` (over the gateway) and `raptorflow agent serve`."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

agents_app = typer.Typer(help="Agents: list, show, register, remove.", no_args_is_help=True)
agent_app = typer.Typer(
    help="Run a worker agent written with raptorflow.agent_sdk.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)

GATEWAY_URL = os.environ.get("RAPTORFLOW_GATEWAY_URL", "http://127.0.0.1:8000")
GatewayOption = typer.Option(
    GATEWAY_URL, envvar="RAPTORFLOW_GATEWAY_URL", help="Gateway URL (RAPTORFLOW_GATEWAY_URL)."
)
ScopeOption = typer.Option(None, "--workspace", "-w", help="Workspace (omit: global, admin key).")


def _call(gateway: str, method: str, path: str, workspace: str | None, body: Any = None) -> Any:
    """One request; a 4xx/5xx prints the gateway's reason and exits 1."""
    key = os.environ.get("RAPTORFLOW_API_KEY")
    params = {"workspace_id": workspace} if workspace else {}
    with httpx.Client(base_url=gateway, headers={"X-API-Key": key} if key else {}, timeout=30) as c:
        response = c.request(method, path, params=params, json=body)
    if response.status_code >= 400:
        err.print(f"[red]{response.status_code}[/red] {response.text}")
        raise typer.Exit(1)
    return response.json() if response.content else None


def _seen(replicas: list[dict[str, Any]]) -> str:
    now = time.time()
    return ", ".join(
        f"{r['replica']} ({'live' if r['live'] else 'gone'}, {now - r['last_seen']:.0f}s ago)"
        for r in replicas
    )


@agents_app.command("list")
def list_agents(workspace: str | None = ScopeOption, gateway: str = GatewayOption) -> None:
    """Every agent, its kind and source, and each worker's replicas with when last seen."""
    table = Table()
    for column in ("agent", "kind", "task types", "source", "version", "replicas"):
        table.add_column(column)
    for view in _call(gateway, "GET", "/agents", workspace):
        spec = view["spec"]
        table.add_row(
            spec["name"],
            spec["kind"],
            ", ".join(spec["task_types"]),
            view["source"],
            str(spec["version"]),
            _seen(view["replicas"]) if spec["kind"] == "worker" else "-",
        )
    console.print(table)


@agents_app.command("show")
def show(name: str, workspace: str | None = ScopeOption, gateway: str = GatewayOption) -> None:
    """One agent's spec, replicas and recent changes, as JSON."""
    console.print_json(json.dumps(_call(gateway, "GET", f"/agents/{name}", workspace)))


@agents_app.command("register")
def register(
    name: str,
    spec_file: str = typer.Option(..., "--file", "-f", help="JSON spec file ('-': stdin)."),
    workspace: str | None = ScopeOption,
    gateway: str = GatewayOption,
) -> None:
    """Register or replace an agent from a JSON spec (kind, task_types, prompt|url, ...)."""
    text = sys.stdin.read() if spec_file == "-" else Path(spec_file).read_text()
    body = json.loads(text)
    stored = _call(gateway, "PUT", f"/agents/{name}", workspace, body)
    console.print(f"registered {name} version {stored['version']}")


@agents_app.command("remove")
def remove(name: str, workspace: str | None = ScopeOption, gateway: str = GatewayOption) -> None:
    _call(gateway, "DELETE", f"/agents/{name}", workspace)
    console.print(f"removed {name}")


@agent_app.command("serve")
def serve(
    target: str = typer.Argument(..., help="module:function decorated with @agent(...)"),
    concurrency: int = typer.Option(4, min=1, max=256, help="Invocations handled at once."),
) -> None:
    """Run one worker replica of an agent (REDIS_URL) until SIGINT/SIGTERM."""
    from raptorflow.agent_sdk import AgentDefinition
    from raptorflow.agent_sdk import serve as run

    module_name, _, attribute = target.partition(":")
    if not attribute:
        err.print("target must look like module:function")
        raise typer.Exit(2)
    sys.path.insert(0, os.getcwd())
    definition = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(definition, AgentDefinition):
        err.print(f"{target} is not decorated with @agent(...)")
        raise typer.Exit(2)
    asyncio.run(run(definition, concurrency=concurrency))
