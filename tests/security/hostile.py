"""A hostile tenant's client: hypothesis strategies for requests to every endpoint of the
gateway (bodies that start well-formed and have fields swapped for hostile values:
non-finite numbers, lone surrogates, deep nesting, huge strings, odd ids; mixed
workspaces and keys), and `python -m tests.security.hostile URL WORLD_JSON EXAMPLES`,
which sends them and prints what came back as JSON.

It runs as a process of its own, so that generating requests never competes for the
GIL with the gateway whose /healthz the suite times.

Bodies are encoded with Python's lenient `json` (NaN, Infinity, surrogate escapes), which
is what a hostile client sends and what a strict encoder refuses to produce.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict[str, str]
    body: bytes | None
    key: str | None
    content_type: str = "application/json"
    stream: bool = False  # an event stream: read the status, then hang up

    def describe(self) -> str:
        body = (self.body or b"")[:300]
        return f"{self.method} {self.path} {self.params} key={self.key and self.key[:8]} body={body!r}"


@dataclass(frozen=True)
class World:
    """What the requests aim at: two tenants' workspaces and keys, and an admin key."""

    ws_a: str
    ws_b: str
    key_a: str
    key_b: str
    admin: str
    known_ids: tuple[str, ...] = ()


SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
ODD_TEXT = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=SURROGATES, min_size=1, max_size=3),
    st.builds(lambda s, n: s * n, st.sampled_from(["a", "é", "\x00", "{", "'"]),
              st.sampled_from([1, 5000, 30_000, 200_000])),
)  # fmt: skip
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 1e20, 10**30]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, ODD_TEXT)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(ODD_TEXT, children, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for n in range(depth):
        value = [value] if n % 2 else {"k": value}
    return value


HOSTILE = st.one_of(
    JSON_VALUES,
    st.sampled_from([30, 200, 1000]).map(nested),
    st.integers(min_value=0, max_value=10_001).map(lambda n: ["content"] * n),
)


def ids(world: World) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(world.known_ids or ("none",)),
        st.uuids().map(str),
        st.text(min_size=1, max_size=40).map(lambda t: quote(t, safe="")),
        st.sampled_from(["a:stages", "..", "%00", "x" * 5000, "%ED%A0%80", "-", "a|b|1"]),
    )


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], odds: int = 4) -> st.SearchStrategy[Any]:
    """`usual` about `odds` times in `odds + 1`, so generated requests also get past the
    edge and reach the services, not only its refusals."""
    return st.integers(min_value=0, max_value=odds).flatmap(lambda n: odd if n == 0 else usual)


def workspaces(world: World) -> st.SearchStrategy[str]:
    return mostly(
        st.sampled_from([world.ws_a, world.ws_a, world.ws_a, world.ws_b]),
        st.one_of(st.text(max_size=70), st.sampled_from(["", "*", "../etc", "a" * 65, "ws:{p0}"])),
    )


def keys_of(world: World) -> st.SearchStrategy[str | None]:
    return mostly(
        st.just(world.key_a), st.sampled_from([world.key_b, world.admin, None, "not-a-key"])
    )


Template = tuple[str, str, dict[str, str], Any, str]  # method, path, query, body, kind


def templates(world: World, ws: str, task_id: str) -> list[Template]:
    """One well-formed request per endpoint (method, path, query, body, json/form/none)."""
    q = {"workspace_id": ws}
    gate = {"name": "review", "condition": "after_stage", "condition_params": {"stage": "research"},
            "auto_approve_if": {"quality_above": 0.5}, "timeout_seconds": 60, "on_timeout": "reject"}
    decision = {"workspace_id": ws, "action": "reject", "csrf_token": "x", "decided_by": "mallory",
                "reason": "no", "comments": "c"}
    return [
        ("GET", "/healthz", {}, None, "none"),
        ("GET", "/livez", {}, None, "none"),
        ("GET", "/readyz", {}, None, "none"),
        ("PUT", f"/agents/{task_id}", q, {
            "kind": "http", "task_types": ["research"], "url": "http://169.254.169.254/latest",
            "timeout_s": 5, "description": "probe"}, "json"),
        ("PUT", f"/agents/{task_id}", q, {
            "kind": "llm", "task_types": ["research"], "prompt": "Research.", "tools": ["content"],
            "mcp_servers": {"x": {"command": "/bin/sh", "args": ["-c", "id"]}}}, "json"),
        ("GET", "/agents", q, None, "none"),
        ("GET", f"/agents/{task_id}", q, None, "none"),
        ("DELETE", f"/agents/{task_id}", q, None, "none"),
        ("POST", "/orchestrate", {}, {"goal": "Write a blog post", "workspace_id": ws}, "json"),
        ("POST", "/execute/self-correct", {}, {
            "agent_name": "content", "payload": {"goal": "A note", "topic": "AI"}, "workspace_id": ws,
            "config": {"max_iterations": 2, "min_quality_score": 0.5}, "brand_voice": {"tone": "warm"},
            "quality_thresholds": {"content_quality": 0.6}, "budget_constraints": {"max_api_calls": 10}},
         "json"),
        ("POST", "/tasks", {}, {
            "goal": "Write a blog post about AI", "workspace_id": ws, "inputs": {"topic": "AI"},
            "agent_sequence": ["research", "content"], "brand_voice": {"tone": "warm"},
            "target_icps": ["cto"], "user_preferences": {"length": "short"},
            "quality_thresholds": {"content_quality": 0.6},
            "budget_constraints": {"max_api_calls": 50, "max_cost_usd": 1.0},
            "self_correction": {"max_iterations": 2, "min_quality_score": 0.5},
            "checkpoints": {"workspace_id": ws, "checkpoints": [gate], "default_timeout": 60},
            "deadline_s": 120}, "json"),
        ("GET", "/tasks", {**q, "status": "failed", "limit": "5", "since": "2026-01-01T00:00:00",
                           "cursor": "1e308"}, None, "none"),
        ("GET", f"/tasks/{task_id}", {**q, "wait": "0.2"}, None, "none"),
        ("GET", f"/tasks/{task_id}/audit", q, None, "none"),
        ("POST", f"/tasks/{task_id}/feedback", {}, {"workspace_id": ws, "rating": 4, "comment": "ok"}, "json"),
        ("POST", f"/tasks/{task_id}/cancel", {}, {"workspace_id": ws, "reason": "stop"}, "json"),
        ("POST", f"/tasks/{task_id}/resume", {}, {"workspace_id": ws,
                                                  "budget_constraints": {"max_api_calls": 5}}, "json"),
        ("POST", f"/tasks/{task_id}/rerun", {}, {"workspace_id": ws}, "json"),
        ("GET", "/approvals", q, None, "none"),
        ("GET", f"/approvals/{task_id}", q, None, "none"),
        ("POST", f"/approvals/{task_id}/decision", {}, {
            "workspace_id": ws, "decision": "rejected", "decided_by": "mallory", "reason": "no",
            "comments": ["c"]}, "json"),
        ("GET", f"/approvals/{task_id}/deliveries", q, None, "none"),
        ("PUT", f"/workspaces/{ws}/checkpoints", {}, {
            "workspace_id": ws, "checkpoints": [gate], "enabled": True, "default_timeout": 60,
            "auto_approve_for_users": ["lead"]}, "json"),
        ("GET", f"/workspaces/{ws}/checkpoints", {}, None, "none"),
        ("PUT", f"/workspaces/{ws}/webhooks", {}, {
            "urls": ["http://127.0.0.1:6379/", "https://hooks.example.com/rf"],
            "secret": "s" * 20}, "json"),
        ("GET", f"/workspaces/{ws}/webhooks", {}, None, "none"),
        ("POST", f"/workspaces/{ws}/experiments", {}, {
            "name": "exp", "goal_pattern": "(a+)+$", "arm_a": ["content"],
            "arm_b": ["research", "content"], "split_a": 0.5}, "json"),
        ("GET", f"/workspaces/{ws}/experiments", {}, None, "none"),
        ("GET", f"/workspaces/{ws}/experiments/{task_id}", {}, None, "none"),
        ("POST", f"/workspaces/{ws}/experiments/{task_id}/stop", {}, {"promote": True, "winner": "A"},
         "json"),
        ("GET", "/ui/approvals", {**q, "msg": "hello"}, None, "none"),
        ("POST", f"/ui/approvals/{task_id}/decide", {}, decision, "form"),
        ("GET", "/ui", q, None, "none"),
        ("GET", "/ui/", q, None, "none"),
        ("GET", "/ui/tasks", {**q, "status": "failed", "q": "blog", "page": "2"}, None, "none"),
        ("GET", f"/ui/tasks/{task_id}", {**q, "msg": "hi"}, None, "none"),
        ("POST", f"/ui/tasks/{task_id}/approvals/{task_id}/decide", {}, decision, "form"),
        ("GET", "/ui/workspace", {**q, "msg": "hi"}, None, "none"),
        ("POST", f"/ui/workspace/experiments/{task_id}/stop", {}, {
            "workspace_id": ws, "csrf_token": "x", "promote": "true"}, "form"),
        ("GET", "/ui/events", {**q, "task_id": task_id, "since": "0"}, None, "stream"),
        ("GET", "/ui/static/console.js", {}, None, "none"),
    ]  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON body a value sits (dict keys and list indices)."""
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, (*prefix, index))
    return out


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replaced(copy[head], rest, new)
    return copy


@st.composite
def requests(draw: st.DrawFn, world: World) -> Request:
    ws = draw(workspaces(world))
    task_id = draw(ids(world))
    every = templates(world, quote(ws, safe="") or "x", task_id)
    submit = [t for t in every if t[:2] == ("POST", "/tasks")]
    # A third of the requests submit a task: those are what must never be lost.
    method, path, params, body, kind = draw(mostly(st.sampled_from(every), st.sampled_from(submit), odds=2))
    if params:
        params = {k: draw(mostly(st.just(v), st.one_of(workspaces(world), ODD_TEXT))) for k, v in params.items()}
    if body is not None:
        for _ in range(draw(mostly(st.just(0), st.integers(min_value=1, max_value=3), odds=1))):
            where = draw(st.sampled_from(_paths(body)))
            body = _replaced(body, where, draw(HOSTILE))
        if isinstance(body, dict) and draw(st.booleans()) and "workspace_id" in body:
            body = {**body, "workspace_id": draw(workspaces(world))}  # mixed workspaces
        if isinstance(body, dict) and draw(st.integers(0, 9)) == 0:
            body = {**body, draw(st.text(max_size=10)): draw(JSON_VALUES)}
    if kind == "form" and isinstance(body, dict):
        encoded: bytes | None = _form(
            {str(k): v if isinstance(v, str) else json.dumps(v, allow_nan=True) for k, v in body.items()}
        ).encode()
        content_type = "application/x-www-form-urlencoded"
    elif body is not None:
        encoded = json.dumps(body, allow_nan=True).encode()
        content_type = draw(mostly(st.just("application/json"), st.sampled_from(["text/plain", ""])))
    else:
        encoded, content_type = None, ""
    if params:  # encoded here: a client library refuses to send a lone surrogate
        path, params = f"{path}?{_form(params)}", {}
    return Request(method, path, params, encoded, draw(keys_of(world)), content_type,
                   stream=kind == "stream")


def _form(fields: dict[str, str]) -> str:
    """URL-encoded as a hostile client would, lone surrogates as their raw bytes."""
    return urlencode(fields, encoding="utf-8", errors="surrogatepass")


def probe(world: World) -> list[Request]:
    """The cases of the probe behind issue 17, first, as a tenant of workspace A."""
    ws, key = world.ws_a, world.key_a

    def req(method: str, path: str, body: Any = None, raw: bytes | None = None) -> Request:
        encoded = raw if raw is not None else None if body is None else json.dumps(body).encode()
        return Request(method, path, {}, encoded, key)

    task = {"goal": "Write a note", "workspace_id": ws}
    cases = [
        req("POST", f"/workspaces/{ws}/experiments", {
            "name": "bomb", "goal_pattern": "(a+)+$", "arm_a": ["content"], "arm_b": ["research"]}),
        *[req("POST", "/tasks", {**task, "goal": "a" * n + "!"}) for n in (26, 30, 3999)],
        *[req("PUT", f"/workspaces/{ws}/webhooks", {"urls": [url]}) for url in (
            "http://127.0.0.1:6379/", "http://localhost:6379", "http://169.254.169.254/",
            "http://[::1]/", "http://0x7f000001/", "http://2130706433/")],
        req("POST", "/tasks", raw=b'{"goal":"g","workspace_id":"%s","budget_constraints":{"max_api_calls":Infinity}}' % ws.encode()),
        req("POST", "/tasks", raw=b'{"goal":"\\ud800","workspace_id":"%s"}' % ws.encode()),
        req("POST", "/tasks", {**task, "goal": "a" * 10_000_000}),
        req("POST", "/tasks", {**task, "inputs": {"deep": nested(200)}}),
        req("POST", "/tasks", {**task, "agent_sequence": ["content"] * 10_000}),
        req("POST", "/execute/self-correct", {
            "agent_name": "content", "workspace_id": ws, "payload": {"goal": "g", "x": "y" * 1_000_000}}),
        req("PUT", f"/workspaces/{ws}/checkpoints", raw=b'{"workspace_id":"%s","default_timeout":1e20}' % ws.encode()),
        req("POST", "/tasks", {**task, "checkpoints": {"workspace_id": ws, "enabled": False}}),
        req("POST", "/tasks", {**task, "checkpoints": {"workspace_id": world.ws_b, "checkpoints": []}}),
        req("POST", "/tasks/x/feedback", raw=b'{"workspace_id":"%s","rating":NaN}' % ws.encode()),
    ]  # fmt: skip
    return cases


@dataclass
class Findings:
    """What the gateway answered: 5xx answers, accepted tasks, counts by status."""

    server_errors: list[str] = field(default_factory=list)
    accepted: list[tuple[str, str]] = field(default_factory=list)  # (workspace, task id)
    statuses: dict[int, int] = field(default_factory=dict)


def send_all(url: str, world: World, examples: int) -> Findings:
    findings = Findings()
    with httpx.Client(base_url=url, timeout=30) as client:

        def send(request: Request) -> None:
            headers = {"X-API-Key": request.key} if request.key else {}
            if request.body is not None and request.content_type:
                headers["Content-Type"] = request.content_type
            try:
                with client.stream(
                    request.method, request.path, params=request.params, content=request.body,
                    headers=headers,
                ) as r:  # fmt: skip
                    if not request.stream:
                        r.read()
            except httpx.InvalidURL:  # too long for the client itself to send (> 64 KiB)
                findings.statuses[0] = findings.statuses.get(0, 0) + 1
                return
            findings.statuses[r.status_code] = findings.statuses.get(r.status_code, 0) + 1
            # The console's event stream answers 503 + Retry-After when too many are open.
            busy = request.stream and r.status_code == 503 and "retry-after" in r.headers
            if r.status_code >= 500 and not busy:
                text = "" if request.stream else r.text[:300]
                findings.server_errors.append(f"{r.status_code} {request.describe()}: {text}")
            if request.method == "POST" and request.path == "/tasks" and r.status_code == 202:
                answer = r.json()
                findings.accepted.append((answer["workspace_id"], answer["task_id"]))

        for case in probe(world):
            send(case)

        @given(request=requests(world))
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def one(request: Request) -> None:
            send(request)

        one()
    return findings


if __name__ == "__main__":
    os.nice(10)  # the client yields the CPU to the gateway whose latency is being measured
    url, world_json, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    result = send_all(url, World(**json.loads(world_json)), count)
    print(json.dumps(dataclasses.asdict(result)))
