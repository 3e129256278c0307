"""`raptorflow`: run the system, submit goals, inspect approvals and contracts."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from raptorflow import cli_agents, cli_approvals, cli_dlq
from raptorflow.logs import configure_logging
from raptorflow.registry import ALL_SERVICES
from shared.contract.events import envelope_json_schema
from shared.settings import get_settings

app = typer.Typer(help="RaptorFlow: memory-aware orchestration of LLM agents.", no_args_is_help=True)
app.add_typer(cli_approvals.approvals_app, name="approvals")
app.add_typer(cli_approvals.checkpoints_app, name="checkpoints")
app.add_typer(cli_approvals.webhooks_app, name="webhooks")
app.add_typer(cli_dlq.dlq_app, name="dlq")
app.add_typer(cli_agents.agents_app, name="agents")
app.add_typer(cli_agents.agent_app, name="agent")
console = Console()
err = Console(stderr=True)

GATEWAY_URL = os.environ.get("RAPTORFLOW_GATEWAY_URL", "http://127.0.0.1:8000")


def _headers() -> dict[str, str]:
    key = os.environ.get("RAPTORFLOW_API_KEY")
    return {"X-API-Key": key} if key else {}


@app.command()
def run() -> None:
    """Run every service and the gateway in one process (embedded Redis if REDIS_URL is unset)."""
    from raptorflow.stack import LocalStack
    from shared.app.runtime import wait_for_stop_signal

    configure_logging(service="all", level="WARNING")
    settings = get_settings()

    async def main() -> None:
        async with LocalStack(settings, with_gateway=True) as stack:
            provider = stack.deps.provider.name if stack.deps else "?"
            console.print(f"RaptorFlow running: gateway {stack.gateway_url}, redis "
                          f"{'embedded at ' + stack.settings.redis_url_value() if stack.embedded_redis else 'REDIS_URL'}, "
                          f"provider {provider}{' (offline: deterministic rules)' if provider == 'offline' else ''}. "
                          "Ctrl+C to stop.")
            await wait_for_stop_signal()

    asyncio.run(main())


@app.command()
def service(name: str = typer.Argument(..., help=f"One of: {', '.join(ALL_SERVICES)}")) -> None:
    """Run one service against REDIS_URL (as `python -m services.NAME` does)."""
    if name not in ALL_SERVICES:
        err.print(f"unknown service {name!r}; choose one of: {', '.join(ALL_SERVICES)}")
        raise typer.Exit(2)
    from raptorflow.launcher import main

    main(name)


@app.command()
def demo() -> None:
    """Run the seed's six demo flows end to end and print what happened in each."""
    from raptorflow.demo import run_demo

    configure_logging(service="demo", level="WARNING")
    ok = asyncio.run(run_demo(get_settings(), console))
    raise typer.Exit(0 if ok else 1)


@app.command()
def submit(
    goal: str,
    workspace: str = typer.Option(..., "--workspace", "-w", help="Workspace id."),
    user: str | None = typer.Option(None, "--user", help="User id."),
    wait: bool = typer.Option(False, "--wait", help="Wait until the task ends and print it."),
    timeout: float = typer.Option(120.0, help="Seconds to wait with --wait."),
    gateway: str = typer.Option(GATEWAY_URL, help="Gateway URL (RAPTORFLOW_GATEWAY_URL)."),
) -> None:
    """Submit a goal through the gateway; with --wait, follow it to the end."""
    body: dict[str, Any] = {"goal": goal, "workspace_id": workspace}
    if user:
        body["user_id"] = user
    with httpx.Client(base_url=gateway, headers=_headers(), timeout=30) as client:
        response = client.post("/tasks", json=body)
        if response.status_code >= 400:
            err.print(f"[red]{response.status_code}[/red] {response.text}")
            raise typer.Exit(1)
        task_id = response.json()["task_id"]
        console.print(f"task {task_id} accepted")
        if not wait:
            return
        status = _follow(client, task_id, workspace, timeout)
    console.print_json(json.dumps(status))
    raise typer.Exit(0 if status.get("status") == "completed" else 1)


def _follow(client: httpx.Client, task_id: str, workspace: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        bar = progress.add_task("waiting", total=None)
        while time.monotonic() < deadline:
            response = client.get(f"/tasks/{task_id}", params={"workspace_id": workspace})
            if response.status_code == 200:
                status = response.json()
                progress.update(bar, description=f"status: {status['status']}, "
                                f"stages done: {len(status['stages'])}")
                if status["status"] in {"completed", "failed", "rejected"}:
                    return status
            time.sleep(0.2)
    err.print(f"[yellow]task still {status.get('status', 'unknown')} after {timeout}s[/yellow]")
    return status


@app.command()
def schema() -> None:
    """Print the JSON Schema of the event envelope (for upstream publishers)."""
    console.print_json(json.dumps(envelope_json_schema()))


@app.command()
def asyncapi(
    write: bool = typer.Option(
        False, "--write", help="Write docs/asyncapi.json and docs/envelope.schema.json."
    ),
) -> None:
    """Print the AsyncAPI document of every stream and event (generated by FastStream)."""
    from raptorflow import contract

    if not write:
        print(contract.render(contract.asyncapi_document()), end="")
        return
    for path in contract.write_docs():
        err.print(f"wrote {path}")


def _add_eval() -> None:
    from raptorflow.eval_cli import eval_app

    app.add_typer(eval_app, name="eval")


_add_eval()

from raptorflow.cli_experiments import experiments_app, feedback  # noqa: E402

app.add_typer(experiments_app, name="experiments")
app.command("feedback")(feedback)

if __name__ == "__main__":
    app()
