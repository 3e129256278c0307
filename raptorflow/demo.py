"""The seed's six demo flows, then two agent flows, run through the real services on a real Redis."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from rich.console import Console
from rich.panel import Panel
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from raptorflow import demo_agents
from raptorflow.stack import LocalStack, wait_for_status, wait_for_task
from shared.app.facade import (
    evaluate_checkpoint,
    execute_with_self_correction,
    route,
    select_best_agent,
)
from shared.app.runtime import Deps, wait_for_stop_signal
from shared.contract.events import TaskRequested, new_envelope
from shared.contract.models import (
    AgentContext,
    CheckpointAction,
    CheckpointCondition,
    SelfCorrectionConfig,
    WorkflowCheckpoint,
    WorkflowCheckpoints,
)
from shared.messaging import dead_letters
from shared.messaging.bus import publish
from shared.settings import Settings
from shared.stores import approvals

FLOWS = 8  # the seed's six, then a worker agent and an llm agent with a tool
FIRST_GOAL = "Create a blog post about AI trends"
SIMILAR_GOAL = "Write a blog about machine learning"
UNRELATED_GOAL = "Audit our Kubernetes cluster costs"


def seed_checkpoints(workspace: str) -> WorkflowCheckpoints:
    """The seed's two checkpoints: a strategy review after the strategy stage, and a
    review before publishing."""
    return WorkflowCheckpoints(
        workspace_id=workspace,
        checkpoints=[
            WorkflowCheckpoint(
                name="strategy_review",
                description="Review strategy before content generation",
                condition=CheckpointCondition.AFTER_STAGE,
                condition_params={"stage": "strategy"},
                action=CheckpointAction.REQUEST_APPROVAL,
                auto_approve_if={"quality_above": 0.85, "success_rate_above": 0.8},
                timeout_seconds=3600,
            ),
            WorkflowCheckpoint(
                name="pre_publish",
                description="Review before publishing",
                condition=CheckpointCondition.BEFORE_EXECUTION,
                action=CheckpointAction.REQUEST_APPROVAL,
                auto_approve_if={"quality_above": 0.9},
            ),
        ],
    )


class Demo:
    """Runs the flows in order; each prints what happened and returns whether it held."""

    def __init__(self, stack: LocalStack, console: Console):
        self.stack = stack
        self.console = console
        self.workspace = f"demo-{uuid.uuid4().hex[:8]}"
        self.results: list[tuple[str, bool, str]] = []

    @property
    def deps(self) -> Deps:
        assert self.stack.deps is not None
        return self.stack.deps

    async def submit(self, goal: str, **request: Any) -> dict[str, str]:
        context = request.pop("context", None) or AgentContext(workspace_id=self.workspace)
        event = new_envelope(
            TaskRequested(goal=goal, **request),
            workspace_id=self.workspace,
            context=context,
            user_id=context.user_id,
        )
        await publish(self.deps.redis, self.deps.layout, [event])
        view = await wait_for_task(self.deps, self.workspace, event.correlation_id, timeout=60)
        view["task_id"] = event.correlation_id
        return view

    def say(self, title: str, lines: list[str], ok: bool) -> None:
        mark = "[green]held[/green]" if ok else "[red]did not hold[/red]"
        self.console.print(Panel("\n".join(lines), title=f"{title} — {mark}", expand=False))
        self.results.append((title, ok, lines[-1] if lines else ""))

    async def flow_routing(self) -> None:
        first = await self.submit(FIRST_GOAL)
        decision = await route(self.deps, SIMILAR_GOAL, self.workspace)
        novel = await route(self.deps, UNRELATED_GOAL, self.workspace, use_planner=False)
        second = await self.submit(SIMILAR_GOAL)
        ok = (
            first["routing_source"] == "planner"
            and decision.source == "memory"
            and decision.agent_sequence == json.loads(first["agent_sequence"])
            and novel.source != "memory"
        )
        self.say(
            "1. Memory-aware routing",
            [
                f"'{FIRST_GOAL}': planner -> {first['agent_sequence']}, quality {first['quality']}, "
                f"success {first['success']}",
                f"'{SIMILAR_GOAL}': {decision.source} -> {decision.agent_sequence}, "
                f"confidence {decision.confidence:.3f} (nearest similarity "
                f"{decision.neighbours[0].similarity if decision.neighbours else 0:.2f})",
                f"  ran through the services: source {second['routing_source']}, "
                f"status {second['status']}",
                f"'{UNRELATED_GOAL}': not reused (confidence {novel.confidence:.3f}) -> planner",
            ],
            ok,
        )

    async def flow_selection(self) -> None:
        fresh = f"{self.workspace}-fresh"
        empty = await select_best_agent(self.deps, "content_generation", fresh, "content")
        for goal in ("Create a blog post about remote work", "Write a blog on data privacy"):
            await self.submit(goal)
        learned = await select_best_agent(
            self.deps, "content_generation", self.workspace, "content", rng=random.Random(7)
        )
        perf = await self.deps.memory.performance_data(self.workspace)
        table = ", ".join(
            f"{agent}: {d['runs']} runs, success {d['success_rate']:.2f}, quality {d['mean_quality']:.2f}"
            for agent, d in perf.get("content_generation", {}).items()
        )
        ok = empty.agent == "content" and empty.reason == "no_history_fallback" and bool(table)
        self.say(
            "2. Adaptive agent selection",
            [
                f"no history: {empty.agent} ({empty.reason})",
                f"content_generation performance: {table}",
                f"after history: {learned.agent} ({learned.reason}; posterior means "
                + ", ".join(f"{a}={m:.2f}" for a, m in learned.posterior_means.items())
                + ")",
            ],
            ok,
        )

    async def flow_self_correction(self) -> None:
        config = SelfCorrectionConfig(
            max_iterations=3,
            min_quality_score=0.85,
            improvement_threshold=0.1,
            critique_aspects=["clarity", "persuasiveness", "brand_alignment"],
            store_failures=True,
        )
        context = AgentContext(
            workspace_id=self.workspace,
            brand_voice={"tone": "professional", "style": "conversational"},
        )
        result = await execute_with_self_correction(
            self.deps,
            "content",
            {"goal": "Generate blog post", "topic": "AI in healthcare"},
            context,
            config,
            scope=f"{self.workspace}/demo-self-correction",
        )
        meta = result.metadata
        ok = (
            meta.threshold_met
            and meta.iterations >= 2
            and meta.iteration_scores[-1] > meta.iteration_scores[0]
        )
        self.say(
            "3. Self-correction loop",
            [
                f"provider: {result.provider}",
                "self_correction_metadata: "
                + json.dumps(
                    {
                        "iterations": meta.iterations,
                        "final_quality_score": meta.final_quality_score,
                        "threshold_met": meta.threshold_met,
                        "attempts": meta.attempts,
                    }
                ),
                f"scores per iteration: {meta.iteration_scores}; stopped: {meta.stop_reason}",
            ],
            ok,
        )

    async def flow_checkpoints(self) -> None:
        config = seed_checkpoints(self.workspace)
        context = AgentContext(workspace_id=self.workspace)
        auto = evaluate_checkpoint(
            "strategy_review", config, context, {"quality_score": 0.9, "agent_success_rate": 0.85}
        )
        pending = evaluate_checkpoint(
            "strategy_review", config, context, {"quality_score": 0.7, "agent_success_rate": 0.85}
        )
        gated = config.model_copy(
            update={
                "checkpoints": [
                    config.checkpoints[0].model_copy(
                        update={"auto_approve_if": {"quality_above": 0.99}}
                    )
                ]
            }
        )
        task = new_envelope(
            TaskRequested(goal="Plan a product launch strategy", checkpoints=gated),
            workspace_id=self.workspace,
        )
        await publish(self.deps.redis, self.deps.layout, [task])
        waiting = await wait_for_status(
            self.deps, self.workspace, task.correlation_id, {"awaiting_approval"}, timeout=60
        )
        await approvals.decide(
            self.deps.redis, self.deps.keys,
            self.workspace,
            waiting["approval_id"],
            decision="approved",
            decided_by="demo-reviewer",
        )
        done = await wait_for_task(self.deps, self.workspace, task.correlation_id)
        ok = (
            auto.status == "auto_approved"
            and pending.status == "pending_approval"
            and (done["status"] == "completed")
        )
        self.say(
            "4. Human-in-the-loop checkpoints",
            [
                f"quality 0.9, success 0.85: {auto.status} ({'; '.join(auto.reasons)})",
                f"quality 0.7: {pending.status} ({'; '.join(pending.reasons)})",
                f"task paused at '{waiting['checkpoint']}' (approval {waiting['approval_id'][:8]}), "
                f"approved by demo-reviewer -> {done['status']}",
            ],
            ok,
        )

    async def flow_context(self) -> None:
        context = AgentContext(
            workspace_id=self.workspace,
            user_id="alice",
            brand_voice={"tone": "professional", "style": "conversational"},
            target_icps=["icp-saas-cto", "icp-marketing-lead"],
            quality_thresholds={"content_quality": 0.8},
            budget_constraints={"max_api_calls": 100},
        )
        view = await self.submit("Write a LinkedIn post about our AI launch", context=context)
        carried = await self._context_in_chain(view["task_id"])
        ok = bool(carried) and all(c for _, c in carried)
        self.say(
            "5. Context propagation",
            [
                "brand voice, ICPs, thresholds and budget in every event of the task:",
                *[f"  {event_type}: {'yes' if c else 'NO'}" for event_type, c in carried],
                f"task {view['status']}, LLM usage {view.get('usage')}",
            ],
            ok,
        )

    async def _context_in_chain(self, task_id: str) -> list[tuple[str, bool]]:
        out = []
        for event_type in (
            "TaskRequested",
            "SequenceChosen",
            "StageAssigned",
            "StageCleared",
            "CritiqueDone",
            "StageCompleted",
            "TaskCompleted",
        ):
            entries = await self.deps.redis.xrevrange(
                self.deps.layout.stream(event_type, self.workspace), count=200
            )
            for _, fields in entries:
                data = json.loads(fields[b"__data__"])
                if data["correlation_id"] == task_id:
                    ctx = data["context"]
                    out.append(
                        (
                            event_type,
                            ctx["brand_voice"].get("tone") == "professional"
                            and ctx["budget_constraints"].get("max_api_calls") == 100,
                        )
                    )
                    break
        return out

    async def flow_complete(self) -> None:
        body = {
            "goal": "Create a blog post about AI trends for CTOs",
            "workspace_id": self.workspace,
            "user_id": "alice",
            "brand_voice": {"tone": "professional"},
            "self_correction": {"max_iterations": 3, "min_quality_score": 0.85},
        }
        async with httpx.AsyncClient(base_url=self.stack.gateway_url, timeout=30) as client:
            accepted = (await client.post("/tasks", json=body)).raise_for_status().json()
            await wait_for_task(self.deps, self.workspace, accepted["task_id"])
            status = (
                await client.get(
                    f"/tasks/{accepted['task_id']}", params={"workspace_id": self.workspace}
                )
            ).json()
            bad = await client.post("/tasks", json={"workspace_id": self.workspace})
        stages = status["stages"]
        dead = await dead_letters.count(self.deps.redis, self.deps.layout)
        ok = status["status"] == "completed" and len(stages) >= 2 and bad.status_code == 422
        self.say(
            "6. Complete workflow (through the HTTP gateway)",
            [
                f"POST /tasks -> {accepted['task_id']}; routing {status.get('routing_source')}"
                f" -> {status.get('agent_sequence')}",
                *[
                    f"  stage {s['stage_index']} {s['agent']}: quality {s['quality']:.2f}, "
                    f"iterations {s['self_correction_metadata']['iterations']}, provider {s['provider']}"
                    for s in stages
                ],
                f"invalid body -> {bad.status_code} ({bad.json()['detail'][0]['loc']})",
                f"dead letters: {dead}; final status {status['status']}, success "
                f"{status.get('success')}",
            ],
            ok,
        )

    def summary(self) -> bool:
        table = Table(title="RaptorFlow demo")
        table.add_column("flow")
        table.add_column("result")
        for title, ok, _ in self.results:
            table.add_row(title, "[green]held[/green]" if ok else "[red]did not hold[/red]")
        self.console.print(table)
        return all(ok for _, ok, _ in self.results) and len(self.results) == FLOWS


async def run_demo(
    settings: Settings,
    console: Console | None = None,
    *,
    start_redis: bool | None = None,
    serve: bool = False,
    serve_until: Callable[[], Awaitable[None]] = wait_for_stop_signal,
) -> bool:
    """Run the six flows; with `serve`, keep the gateway (and its console) up until Ctrl+C."""
    console = console or Console()
    stack = LocalStack(settings, with_gateway=True, start_redis=start_redis)
    async with stack:
        provider = stack.deps.provider.name if stack.deps else "?"
        where = (
            "embedded redis-server " + stack.settings.redis_url_value()
            if stack.embedded_redis
            else "REDIS_URL"
        )
        label = (
            " (OFFLINE provider: deterministic rules, not a language model)"
            if provider == "offline"
            else ""
        )
        console.print(
            f"[bold]RaptorFlow demo[/bold] on {where}; LLM provider: {provider}{label}; "
            f"vector index: {stack.deps.index.kind if stack.deps else '?'}"
        )
        demo = Demo(stack, console)
        flows: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("memory-aware routing", demo.flow_routing),
            ("adaptive selection", demo.flow_selection),
            ("self-correction", demo.flow_self_correction),
            ("checkpoints", demo.flow_checkpoints),
            ("context propagation", demo.flow_context),
            ("complete workflow", demo.flow_complete),
            ("worker agent", lambda: demo_agents.flow_worker_agent(demo)),
            ("llm agent with a tool", lambda: demo_agents.flow_tool(demo)),
        ]
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("demo", total=len(flows))
            for name, flow in flows:
                progress.update(task, description=f"flow: {name}")
                await flow()
                progress.advance(task)
        ok = demo.summary()
        await _console_after(stack, demo.workspace, console, serve_until if serve else None)
        return ok


async def _console_after(
    stack: LocalStack,
    workspace: str,
    console: Console,
    serve_until: Callable[[], Awaitable[None]] | None,
) -> None:
    """Point to the console; with `serve_until`, keep it up until that returns."""
    if serve_until is None:
        console.print(
            f"To look at these tasks in the console, run [bold]raptorflow demo --serve[/bold] "
            f"(or [bold]make serve[/bold] and open {stack.gateway_url}/ui)."
        )
        return
    console.print(
        f"Console: [bold]{stack.gateway_url}/ui/tasks?workspace_id={workspace}[/bold] "
        "(Ctrl+C to stop)"
    )
    await serve_until()
