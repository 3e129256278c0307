"""`raptorflow`: run the system, submit goals, inspect approvals and contracts."""

from __future__ import annotations

import asyncio
import json
import os

import typer
from rich.console import Console

from raptorflow import cli_agents, cli_approvals, cli_dlq, cli_tasks
from raptorflow.client import WaitTimeout
from raptorflow.registry import ALL_SERVICES
from shared.contract.events import envelope_json_schema
from shared.observability.logs import configure_logging
from shared.settings import Settings

app = typer.Typer(help="RaptorFlow: memory-aware orchestration of LLM agents.", no_args_is_help=True)
app.add_typer(cli_approvals.approvals_app, name="approvals")
app.add_typer(cli_approvals.checkpoints_app, name="checkpoints")
app.add_typer(cli_approvals.webhooks_app, name="webhooks")
app.add_typer(cli_dlq.dlq_app, name="dlq")
app.add_typer(cli_tasks.tasks_app, name="tasks")
app.add_typer(cli_agents.agents_app, name="agents")
app.add_typer(cli_agents.agent_app, name="agent")
console = Console()
err = Console(stderr=True)

GATEWAY_URL = os.environ.get("RAPTORFLOW_GATEWAY_URL", "http://127.0.0.1:8000")


@app.command()
def run(
    host: str | None = typer.Option(None, "--host", help="Gateway bind address (RAPTORFLOW_GATEWAY_HOST)."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Gateway port (RAPTORFLOW_GATEWAY_PORT)."),
) -> None:
    """Run every service and the gateway in one process (embedded Redis if REDIS_URL is unset)."""
    from raptorflow.cli_serve import settings_with
    from raptorflow.stack import LocalStack
    from shared.app.runtime import wait_for_stop_signal

    configure_logging(service="all", level="WARNING")
    settings = settings_with(Settings(), host, port)

    async def main() -> None:
        async with LocalStack(settings, with_gateway=True) as stack:
            provider = stack.deps.provider.name if stack.deps else "?"
            console.print(f"RaptorFlow running: gateway {stack.gateway_url}, redis "
                          f"{'embedded at ' + stack.settings.redis_url_value() if stack.embedded_redis else 'REDIS_URL'}, "
                          f"provider {provider}{' (offline: deterministic rules)' if provider == 'offline' else ''}. "
                          f"Console: {stack.gateway_url}/ui. Ctrl+C to stop.")
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
def demo(
    serve: bool = typer.Option(
        False, "--serve", help="Keep the gateway and its console up afterwards, until Ctrl+C."
    ),
    host: str | None = typer.Option(None, "--host", help="Gateway bind address (RAPTORFLOW_GATEWAY_HOST)."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Gateway port (RAPTORFLOW_GATEWAY_PORT)."),
) -> None:
    """Run the seed's six demo flows end to end and print what happened in each."""
    from raptorflow.cli_serve import settings_with
    from raptorflow.demo import run_demo

    configure_logging(service="demo", level="WARNING")
    ok = asyncio.run(run_demo(settings_with(Settings(), host, port), console, serve=serve))
    raise typer.Exit(0 if ok else 1)


@app.command()
def submit(
    goal: str,
    workspace: str = typer.Option(..., "--workspace", "-w", help="Workspace id."),
    user: str | None = typer.Option(None, "--user", help="User id."),
    wait: bool = typer.Option(False, "--wait", help="Wait until the task ends and summarise it."),
    timeout: float = typer.Option(120.0, help="Seconds to wait with --wait."),
    idempotency_key: str | None = typer.Option(None, help="Retry-safe: same key, same task."),
    deadline: float | None = typer.Option(None, help="Fail the task after this many seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print the raw task document."),
    gateway: str = typer.Option(GATEWAY_URL, help="Gateway URL (RAPTORFLOW_GATEWAY_URL)."),
) -> None:
    """Submit a goal through the gateway; with --wait, follow it to the end."""
    with cli_tasks.client(gateway, workspace) as rf:
        accepted = cli_tasks.call(lambda: rf.submit(
            goal, user_id=user, idempotency_key=idempotency_key, deadline_s=deadline))
        if not wait:
            cli_tasks.emit(accepted, as_json,
                           lambda: console.print(f"task {accepted.task_id} {accepted.status}"))
            return
        err.print(f"task {accepted.task_id} accepted; waiting up to {timeout:.0f}s")
        try:
            view = cli_tasks.call(lambda: rf.wait(accepted.task_id, timeout=timeout))
        except WaitTimeout as exc:
            view = exc.view
            err.print(f"[yellow]task still {view.status} after {timeout}s[/yellow]")
    cli_tasks.emit(view, as_json, lambda: cli_tasks.summary(view))
    raise typer.Exit(0 if view.status == "completed" else 1)


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
