"""Workspace isolation through every gateway route and every CLI command that uses the gateway.

Workspace B gets real data through the real code paths (a completed task, a pending
approval, checkpoints, webhooks, an experiment, routing memory); then every route is
tried without a key (401), with A's key against B (403), and with A's key on A's own
workspace but B's resource ids (404 or empty, never B's data). The route table is
compared with the app's routes, so a route added later without a case fails here.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from raptorflow.cli import app as cli_app
from raptorflow.stack import LocalStack
from services.gateway.app import create_app
from shared.stores import approvals, experiment_store, webhooks
from tests.checkpoint_helpers import gate, wait_pending, wait_status
from tests.helpers import KEYS, settings_for

pytestmark = [pytest.mark.slow]

KEY_A = "key-a-" + uuid.uuid4().hex
KEY_B = "key-b-" + uuid.uuid4().hex
KEY_ALL = "key-all-" + uuid.uuid4().hex
# Routes anyone may call: the probes, Prometheus scraping (no workspace labels, checked
# below) and the API's own description. Everything else needs a key.
PUBLIC = {
    "/healthz", "/livez", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect",
    "/redoc", "/ui/static/console.js",
}


@dataclass
class World:
    """B's data, and what must never show up in a response to A."""

    ws_a: str
    ws_b: str
    marker: str
    done_task: str
    gated_task: str
    approval_id: str
    experiment_id: str
    hook_url: str
    client: httpx.AsyncClient
    app: FastAPI
    gateway_url: str
    secrets: list[str] = field(default_factory=list)
    agent: str = ""


@dataclass
class Req:
    method: str
    url: str
    params: dict[str, str] | None = None
    json: Any = None
    data: dict[str, str] | None = None

    async def send(self, client: httpx.AsyncClient, key: str | None) -> httpx.Response:
        headers = {"X-API-Key": key} if key else {}
        return await client.request(
            self.method,
            self.url,
            params=self.params,
            json=self.json,
            data=self.data,
            headers=headers,
            follow_redirects=False,
        )


def requests_for(ws: str, w: World) -> dict[tuple[str, str], Req]:
    """One well-formed request per route, naming workspace `ws` and B's resource ids."""
    q = {"workspace_id": ws}
    t, a, e = w.done_task, w.approval_id, w.experiment_id
    return {
        ("GET", "/healthz"): Req("GET", "/healthz"),
        ("GET", "/livez"): Req("GET", "/livez"),
        ("GET", "/readyz"): Req("GET", "/readyz"),
        ("GET", "/metrics"): Req("GET", "/metrics"),
        ("GET", "/openapi.json"): Req("GET", "/openapi.json"),
        ("GET", "/docs"): Req("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"): Req("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"): Req("GET", "/redoc"),
        ("POST", "/orchestrate"): Req(
            "POST", "/orchestrate", json={"goal": f"Blog post {w.marker}", "workspace_id": ws}
        ),
        ("POST", "/execute/self-correct"): Req(
            "POST",
            "/execute/self-correct",
            json={"agent_name": "content", "payload": {"goal": "A note"}, "workspace_id": ws},
        ),
        ("POST", "/tasks"): Req("POST", "/tasks", json={"goal": "A new note", "workspace_id": ws}),
        ("GET", "/tasks/{task_id}"): Req("GET", f"/tasks/{t}", params=q),
        ("GET", "/tasks/{task_id}/audit"): Req("GET", f"/tasks/{w.gated_task}/audit", params=q),
        ("POST", "/tasks/{task_id}/feedback"): Req(
            "POST", f"/tasks/{t}/feedback", json={"workspace_id": ws, "rating": 1}
        ),
        ("GET", "/tasks"): Req("GET", "/tasks", params=q),
        ("POST", "/tasks/{task_id}/cancel"): Req(
            "POST", f"/tasks/{w.gated_task}/cancel", json={"workspace_id": ws}
        ),
        ("POST", "/tasks/{task_id}/resume"): Req(
            "POST", f"/tasks/{t}/resume", json={"workspace_id": ws}
        ),
        ("POST", "/tasks/{task_id}/rerun"): Req(
            "POST", f"/tasks/{t}/rerun", json={"workspace_id": ws}
        ),
        ("GET", "/approvals"): Req("GET", "/approvals", params=q),
        ("GET", "/approvals/{approval_id}"): Req("GET", f"/approvals/{a}", params=q),
        ("POST", "/approvals/{approval_id}/decision"): Req(
            "POST",
            f"/approvals/{a}/decision",
            json={"workspace_id": ws, "decision": "rejected"},
        ),
        ("GET", "/approvals/{approval_id}/deliveries"): Req(
            "GET", f"/approvals/{a}/deliveries", params=q
        ),
        ("PUT", "/workspaces/{workspace_id}/checkpoints"): Req(
            "PUT", f"/workspaces/{ws}/checkpoints", json={"workspace_id": ws, "checkpoints": []}
        ),
        ("GET", "/workspaces/{workspace_id}/checkpoints"): Req(
            "GET", f"/workspaces/{ws}/checkpoints"
        ),
        ("PUT", "/workspaces/{workspace_id}/webhooks"): Req(
            "PUT", f"/workspaces/{ws}/webhooks", json={"urls": ["http://127.0.0.1:9/evil"]}
        ),
        ("GET", "/workspaces/{workspace_id}/webhooks"): Req("GET", f"/workspaces/{ws}/webhooks"),
        ("POST", "/workspaces/{workspace_id}/experiments"): Req(
            "POST",
            f"/workspaces/{ws}/experiments",
            json={
                "name": "probe",
                "goal_pattern": "note",
                "arm_a": ["content"],
                "arm_b": ["research", "content"],
            },
        ),
        ("GET", "/workspaces/{workspace_id}/experiments"): Req(
            "GET", f"/workspaces/{ws}/experiments"
        ),
        ("GET", "/workspaces/{workspace_id}/experiments/{experiment_id}"): Req(
            "GET", f"/workspaces/{ws}/experiments/{e}"
        ),
        ("POST", "/workspaces/{workspace_id}/experiments/{experiment_id}/stop"): Req(
            "POST", f"/workspaces/{ws}/experiments/{e}/stop", json={"promote": True, "winner": "A"}
        ),
        ("GET", "/agents"): Req("GET", "/agents", params=q),
        ("GET", "/agents/{name}"): Req("GET", f"/agents/{w.agent}", params=q),
        ("DELETE", "/agents/{name}"): Req("DELETE", f"/agents/{w.agent}", params=q),
        ("PUT", "/agents/{name}"): Req(
            "PUT", f"/agents/{w.agent}", params=q, json={"kind": "worker", "task_types": ["research"]}
        ),
        ("GET", "/ui/approvals"): Req("GET", "/ui/approvals", params=q),
        ("POST", "/ui/approvals/{approval_id}/decide"): Req(
            "POST",
            f"/ui/approvals/{a}/decide",
            data={"workspace_id": ws, "action": "reject", "reason": "mine now"},
        ),
        ("GET", "/ui"): Req("GET", "/ui", params=q),
        ("GET", "/ui/"): Req("GET", "/ui/", params=q),
        ("GET", "/ui/tasks"): Req("GET", "/ui/tasks", params=q),
        ("GET", "/ui/tasks/{task_id}"): Req("GET", f"/ui/tasks/{t}", params=q),
        ("POST", "/ui/tasks/{task_id}/approvals/{approval_id}/decide"): Req(
            "POST",
            f"/ui/tasks/{w.gated_task}/approvals/{a}/decide",
            data={"workspace_id": ws, "action": "reject", "reason": "mine now"},
        ),
        ("GET", "/ui/workspace"): Req("GET", "/ui/workspace", params=q),
        ("POST", "/ui/workspace/experiments/{experiment_id}/stop"): Req(
            "POST", f"/ui/workspace/experiments/{e}/stop", data={"workspace_id": ws, "promote": "true"}
        ),
        # with a task id, so A's own request (B's task id) is a 404, not an endless stream
        ("GET", "/ui/events"): Req("GET", "/ui/events", params={**q, "task_id": t}),
        ("GET", "/ui/static/console.js"): Req("GET", "/ui/static/console.js"),
    }


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route, included routers flattened (HEAD is GET's twin)."""
    try:  # FastAPI >= 0.16x keeps included routers as lazy wrappers
        from fastapi.routing import _iter_included_route_candidates

        routes = list(_iter_included_route_candidates(app.routes))
    except ImportError:
        routes = list(app.routes)
    out = set()
    for route in routes:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                out.add((method, route.path))  # type: ignore[attr-defined]
    return out


def assert_no_b_data(w: World, response: httpx.Response, what: str) -> None:
    for secret in w.secrets:
        assert secret not in response.text, f"{what} leaked {secret!r}: {response.text[:300]}"


@pytest.fixture
async def world(redis_url: str, redis: Any) -> AsyncIterator[World]:
    """A running stack with B's data written through the gateway and the services."""
    ws_a, ws_b = f"wsa-{uuid.uuid4().hex[:8]}", f"wsb-{uuid.uuid4().hex[:8]}"
    marker = f"zebra{uuid.uuid4().hex[:12]}"
    settings = settings_for(
        redis_url,
        api_keys=f"{KEY_A}={ws_a}:alice,{KEY_B}={ws_b}:bob,{KEY_ALL}=*",
        egress_allow="127.0.0.1",  # B's webhook URL is on 127.0.0.1
    )
    async with LocalStack(settings, with_gateway=True, start_redis=False) as stack:
        assert stack.deps is not None
        app = create_app(settings, stack.deps)
        app.state.deps = stack.deps
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw"
        ) as client:
            b = {"X-API-Key": KEY_B}
            goal = f"Write a blog post about {marker} for the isolation suite"
            r = await client.post("/tasks", json={"goal": goal, "workspace_id": ws_b}, headers=b)
            assert r.status_code == 202, r.text
            done_task = r.json()["task_id"]
            await wait_status(redis, ws_b, done_task, {"completed"}, timeout=60)

            config = gate(ws_b, "research").model_dump(mode="json")
            r = await client.put(f"/workspaces/{ws_b}/checkpoints", json=config, headers=b)
            assert r.status_code == 200, r.text
            r = await client.post(
                "/tasks",
                json={
                    "goal": f"Gated {marker}",
                    "workspace_id": ws_b,
                    "agent_sequence": ["research", "content"],
                },
                headers=b,
            )
            gated_task = r.json()["task_id"]
            (pending,) = await wait_pending(redis, ws_b, timeout=60)

            hook_url = f"http://127.0.0.1:9/hook-{marker}"
            r = await client.put(
                f"/workspaces/{ws_b}/webhooks", json={"urls": [hook_url]}, headers=b
            )
            assert r.status_code == 200, r.text
            r = await client.post(
                f"/workspaces/{ws_b}/experiments",
                json={
                    "name": f"exp-{marker}",
                    "goal_pattern": marker,
                    "arm_a": ["content"],
                    "arm_b": ["research", "content"],
                },
                headers=b,
            )
            assert r.status_code == 201, r.text
            experiment = r
            agent = f"b_{uuid.uuid4().hex[:10]}"
            r = await client.put(
                f"/agents/{agent}",
                params={"workspace_id": ws_b},
                json={"kind": "worker", "task_types": ["research"], "description": marker},
                headers=b,
            )
            assert r.status_code == 200, r.text
            r = experiment
            yield World(
                ws_a=ws_a,
                ws_b=ws_b,
                marker=marker,
                done_task=done_task,
                gated_task=gated_task,
                approval_id=pending.approval_id,
                experiment_id=r.json()["experiment_id"],
                hook_url=hook_url,
                client=client,
                app=app,
                gateway_url=stack.gateway_url,
                secrets=[marker, hook_url, r.json()["experiment_id"]],
                agent=agent,
            )


async def b_state(redis: Any, w: World) -> dict[str, Any]:
    """Everything A's requests could have changed in B."""
    record = await approvals.get_approval(redis, KEYS, w.ws_b, w.approval_id)
    config = await webhooks.load_config(redis, KEYS, w.ws_b)
    experiment = await experiment_store.get_report(redis, KEYS, w.ws_b, w.experiment_id)
    return {
        "approval": record.needed.event_id,
        "pending_ids": [r.approval_id for r in await approvals.list_pending(redis, KEYS, w.ws_b)],
        "checkpoints": await redis.get(KEYS.checkpoints_config(w.ws_b)),
        "webhooks": [str(u) for u in config.urls] if config else None,
        "experiment": experiment.model_dump(mode="json"),
        "tasks": await redis.zcard(KEYS.task_history_index(w.ws_b)),
    }


async def test_every_route_is_covered_and_refuses_other_workspaces(world: World, redis: Any):
    w = world
    cases_b = requests_for(w.ws_b, w)
    assert set(cases_b) == app_routes(w.app), "a gateway route has no isolation case"
    before = await b_state(redis, w)
    # Memory: B's goal routed for A finds none of B's history; for B it does. First, before
    # A's own requests below have finished a task of A's.
    goal = {"goal": f"Write a blog post about {w.marker} for the isolation suite"}
    for_a = await w.client.post(
        "/orchestrate", json={**goal, "workspace_id": w.ws_a}, headers={"X-API-Key": KEY_A}
    )
    for_b = await w.client.post(
        "/orchestrate", json={**goal, "workspace_id": w.ws_b}, headers={"X-API-Key": KEY_B}
    )
    assert for_a.json()["context_summary"]["task_history"] == 0, for_a.text
    assert for_a.json()["context_summary"]["past_successes"] == 0, for_a.text
    assert for_b.json()["context_summary"]["task_history"] >= 1, for_b.text

    # Positive control: the same requests with a key that opens B do reach B's data, so
    # the refusals below are about the key, not about malformed requests.
    for route in [
        ("GET", "/tasks/{task_id}"),
        ("GET", "/approvals"),
        ("GET", "/approvals/{approval_id}"),
        ("GET", "/workspaces/{workspace_id}/webhooks"),
        ("GET", "/workspaces/{workspace_id}/experiments/{experiment_id}"),
        ("GET", "/agents/{name}"),
    ]:
        r = await cases_b[route].send(w.client, KEY_ALL)
        assert r.status_code == 200, (route, r.text)
        assert any(s in r.text for s in [*w.secrets, w.approval_id]), (route, r.text[:300])

    for route, req in cases_b.items():
        anonymous = await req.send(w.client, None)
        if route[1] in PUBLIC:
            assert anonymous.status_code == 200, (route, anonymous.text[:200])
            assert_no_b_data(w, anonymous, f"public {route}")
            assert w.ws_b not in anonymous.text, f"{route} names workspace B"
            continue
        assert anonymous.status_code == 401, (route, anonymous.status_code, anonymous.text[:200])
        assert_no_b_data(w, anonymous, f"anonymous {route}")
        if route in {("GET", "/ui/approvals"), ("GET", "/ui/tasks"), ("GET", "/ui/workspace")}:
            assert "<form" in anonymous.text, "the page asks for a key instead"
        elif route[1] != "/ui" and not route[1].startswith("/ui/"):  # pages ask with a form
            assert anonymous.headers.get("www-authenticate") == "Bearer", route

        wrong = await req.send(w.client, "not-a-key")
        assert wrong.status_code == 401, (route, wrong.status_code)

        other = await req.send(w.client, KEY_A)
        assert other.status_code == 403, (route, other.status_code, other.text[:200])
        assert_no_b_data(w, other, f"A's key on {route}")

    # A's key on A's own workspace, naming B's task/approval/experiment ids: not found
    # or empty, never B's data; nothing in B changes.
    for route, req in requests_for(w.ws_a, w).items():
        if route[1] in PUBLIC:
            continue
        own = await req.send(w.client, KEY_A)
        assert own.status_code < 500, (route, own.status_code, own.text[:300])
        assert_no_b_data(w, own, f"A's key in A naming B's ids on {route}")
        if "{task_id}" in route[1] or "{approval_id}" in route[1] or "{experiment_id}" in route[1]:
            if own.status_code == 200:
                assert own.json() == [], (route, own.text[:300])
            else:
                assert own.status_code == 404, (route, own.status_code, own.text[:300])

    after = await b_state(redis, w)
    after["tasks"] = before["tasks"]  # B's own /orchestrate above adds nothing, but be exact
    assert after == before
    assert await redis.hget(KEYS.task_view(w.ws_b, w.gated_task), "status") != b"rejected"


async def _cli(args: list[str], key: str) -> Any:
    env = {"RAPTORFLOW_API_KEY": key}
    return await asyncio.to_thread(CliRunner().invoke, cli_app, args, env=env)


def cli_commands(w: World) -> list[list[str]]:
    """Every CLI command that goes through the gateway, aimed at B."""
    ws, gw = ["-w", w.ws_b], ["--gateway", w.gateway_url]
    a, e, t = w.approval_id, w.experiment_id, w.done_task
    return [
        ["submit", "A new note", *ws, *gw],
        ["approvals", "list", *ws, *gw],
        ["approvals", "show", a, *ws, *gw],
        ["approvals", "approve", a, *ws, *gw],
        ["approvals", "reject", a, *ws, "--reason", "mine", *gw],
        ["approvals", "changes", a, *ws, "-c", "more", *gw],
        ["approvals", "audit", w.gated_task, *ws, *gw],
        ["approvals", "deliveries", a, *ws, *gw],
        ["checkpoints", "show", *ws, *gw],
        ["checkpoints", "set", "-", *ws, *gw],
        ["webhooks", "show", *ws, *gw],
        ["webhooks", "set", *ws, "--url", "http://127.0.0.1:9/evil", *gw],
        ["experiments", "create", "probe", *ws, "-p", "x", "--arm-a", "content",
         "--arm-b", "research,content", *gw],
        ["experiments", "list", *ws, *gw],
        ["experiments", "show", e, *ws, *gw],
        ["experiments", "stop", e, *ws, "--promote", "--winner", "A", *gw],
        ["feedback", t, *ws, "-r", "1", *gw],
        ["tasks", "list", *ws, *gw],
        ["tasks", "show", t, *ws, *gw],
        ["tasks", "cancel", w.gated_task, *ws, *gw],
        ["tasks", "resume", t, *ws, *gw],
        ["tasks", "rerun", t, *ws, *gw],
    ]  # fmt: skip


async def test_cli_with_a_key_of_a_is_refused_on_b(world: World, redis: Any):
    w = world
    before = await b_state(redis, w)
    checkpoints_input = json.dumps({"checkpoints": []})
    for args in cli_commands(w):
        result = await asyncio.to_thread(
            CliRunner().invoke,
            cli_app,
            args,
            env={"RAPTORFLOW_API_KEY": KEY_A},
            input=checkpoints_input if args[:2] == ["checkpoints", "set"] else None,
        )
        assert result.exit_code == 1, (args, result.exit_code, result.output)
        assert "403" in result.output, (args, result.output)
        for secret in w.secrets:
            assert secret not in result.output, (args, result.output)
    # Positive control: B's own key works through the same commands.
    ok = await _cli(
        ["approvals", "list", "-w", w.ws_b, "--gateway", w.gateway_url, "--json"], KEY_B
    )
    assert ok.exit_code == 0 and w.approval_id in ok.output, ok.output
    assert await b_state(redis, w) == before
