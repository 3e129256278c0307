"""Every request field is validated at the edge: the probe's bodies get 413 or 422 naming
the field, with at most a short excerpt of the input echoed, never a 500.

Raw bytes are sent, because the hostile inputs (NaN, Infinity, 1e309, lone surrogates)
are what Python's lenient `json` accepts and a strict encoder cannot even produce.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.gateway.app import create_app
from shared.contract import models
from tests.helpers import settings_for

pytestmark = [pytest.mark.slow]

WS = "edge-ws"
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e309", "-1e400"]


def raw(template: str, value: str = "") -> bytes:
    """The template's WSID becomes the workspace, its @ the hostile value."""
    return template.replace("WSID", WS).replace("@", value).encode()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# (what, method, url, body, expected status, field the answer must name)
CASES: list[tuple[str, str, str, bytes, int, str]] = []
for bad in NON_FINITE:
    CASES += [
        (f"threshold {bad}", "POST", "/tasks",
         raw('{"goal":"g","workspace_id":"WSID","quality_threshold":{"x":@}}', bad), 422, ""),
        (f"quality_thresholds {bad}", "POST", "/tasks",
         raw('{"goal":"g","workspace_id":"WSID","quality_thresholds":{"content_quality":@}}', bad), 422, ""),
        (f"budget {bad}", "POST", "/tasks",
         raw('{"goal":"g","workspace_id":"WSID","budget_constraints":{"max_api_calls":@}}', bad), 422, ""),
        (f"inputs {bad}", "POST", "/tasks",
         raw('{"goal":"g","workspace_id":"WSID","inputs":{"n":@}}', bad), 422, ""),
        (f"self_correction {bad}", "POST", "/tasks",
         raw('{"goal":"g","workspace_id":"WSID","self_correction":{"min_quality_score":@}}', bad), 422, ""),
        (f"checkpoint timeout {bad}", "PUT", f"/workspaces/{WS}/checkpoints",
         raw('{"workspace_id":"WSID","checkpoints":[{"name":"c","condition":"after_stage","timeout_seconds":@}]}', bad), 422, ""),
        (f"auto_approve_if {bad}", "PUT", f"/workspaces/{WS}/checkpoints",
         raw('{"workspace_id":"WSID","checkpoints":[{"name":"c","condition":"after_stage","auto_approve_if":{"quality_above":@}}]}', bad), 422, ""),
        (f"rating {bad}", "POST", "/tasks/t1/feedback",
         raw('{"workspace_id":"WSID","rating":@}', bad), 422, ""),
        (f"self-correct config {bad}", "POST", "/execute/self-correct",
         raw('{"agent_name":"content","workspace_id":"WSID","payload":{"goal":"g"},"config":{"improvement_threshold":@}}', bad), 422, ""),
        (f"experiment split {bad}", "POST", f"/workspaces/{WS}/experiments",
         raw('{"name":"e","goal_pattern":"x","arm_a":["content"],"arm_b":["research"],"split_a":@}', bad), 422, ""),
    ]  # fmt: skip
CASES += [
    ("lone surrogate goal", "POST", "/tasks",
     b'{"goal":"\\ud800","workspace_id":"%s"}' % WS.encode(), 422, ""),
    ("lone surrogate in a key", "POST", "/tasks",
     b'{"goal":"g","workspace_id":"%s","inputs":{"\\udfff":1}}' % WS.encode(), 422, ""),
    ("lone surrogate in brand voice", "POST", "/execute/self-correct",
     b'{"agent_name":"content","workspace_id":"%s","payload":{"goal":"g"},"brand_voice":{"t":"\\ud83d"}}' % WS.encode(), 422, ""),
    ("goal over the limit", "POST", "/tasks",
     json.dumps({"goal": "a" * 5000, "workspace_id": WS}).encode(), 422, "goal"),
    ("10 MB goal", "POST", "/tasks",
     json.dumps({"goal": "a" * 10_000_000, "workspace_id": WS}).encode(), 413, ""),
    ("1 MB self-correct payload", "POST", "/execute/self-correct",
     json.dumps({"agent_name": "content", "workspace_id": WS,
                 "payload": {"goal": "g", "blob": "x" * 1_000_000}}).encode(), 413, ""),
    ("inputs nested 200 deep", "POST", "/tasks",
     raw('{"goal":"g","workspace_id":"WSID","inputs":{"a":@}}', nested(200)), 422, "inputs"),
    ("inputs nested 20 deep", "POST", "/tasks",
     raw('{"goal":"g","workspace_id":"WSID","inputs":{"a":@}}', nested(20)), 422, "inputs"),
    ("condition_params nested deep", "PUT", f"/workspaces/{WS}/checkpoints",
     raw('{"workspace_id":"WSID","checkpoints":[{"name":"c","condition":"after_stage","condition_params":{"a":@}}]}', nested(20)), 422, "condition_params"),
    ("10,000 agents", "POST", "/tasks",
     json.dumps({"goal": "g", "workspace_id": WS, "agent_sequence": ["content"] * 10_000}).encode(), 422, "agent_sequence"),
    ("a 1,000-character agent name", "POST", "/tasks",
     json.dumps({"goal": "g", "workspace_id": WS, "agent_sequence": ["a" * 1000]}).encode(), 422, "agent_sequence"),
    ("10,000 target ICPs", "POST", "/tasks",
     json.dumps({"goal": "g", "workspace_id": WS, "target_icps": ["x"] * 10_000}).encode(), 422, "target_icps"),
    ("timeout 1e20", "PUT", f"/workspaces/{WS}/checkpoints",
     b'{"workspace_id":"%s","checkpoints":[{"name":"c","condition":"after_stage","timeout_seconds":1e20}]}' % WS.encode(), 422, "timeout_seconds"),
    ("timeout of a century", "PUT", f"/workspaces/{WS}/checkpoints",
     json.dumps({"workspace_id": WS, "default_timeout": 100 * 365 * 86400}).encode(), 422, "default_timeout"),
    ("huge integer in inputs", "POST", "/tasks",
     b'{"goal":"g","workspace_id":"%s","inputs":{"n":%s}}' % (WS.encode(), b"9" * 30), 422, "inputs"),
    ("5,000-digit integer", "POST", "/tasks",
     b'{"goal":"g","workspace_id":"%s","inputs":{"n":%s}}' % (WS.encode(), b"9" * 5000), 422, ""),
    ("2,000 checkpoints", "PUT", f"/workspaces/{WS}/checkpoints",
     json.dumps({"workspace_id": WS, "checkpoints": [
         {"name": f"c{i}", "condition": "after_stage"} for i in range(2000)]}).encode(), 422, "checkpoints"),
    ("100 comments", "POST", "/approvals/a1/decision",
     json.dumps({"workspace_id": WS, "decision": "changes_requested", "decided_by": "u",
                 "comments": ["c"] * 100}).encode(), 422, "comments"),
    ("a 100 KB comment", "POST", "/approvals/a1/decision",
     json.dumps({"workspace_id": WS, "decision": "changes_requested", "decided_by": "u",
                 "comments": ["c" * 100_000]}).encode(), 422, "comments"),
    ("payload goal not a string", "POST", "/execute/self-correct",
     json.dumps({"agent_name": "content", "workspace_id": WS, "payload": {"goal": {"x": 1}}}).encode(), 422, "payload.goal"),
    ("not JSON", "POST", "/tasks", b"{not json", 422, ""),
    ("a JSON list", "POST", "/tasks", b"[1,2,3]", 422, ""),
    ("JSON null", "POST", "/tasks", b"null", 422, ""),
    ("empty body", "POST", "/tasks", b"", 422, ""),
    ("bare NaN", "POST", "/tasks", b"NaN", 422, ""),
    ("odd id with a colon", "GET", f"/tasks/a:stages?workspace_id={WS}", b"", 422, "task_id"),
    ("a 5,000-character id", "GET", f"/tasks/{'x' * 5000}?workspace_id={WS}", b"", 422, "task_id"),
    ("a path that climbs", "GET", f"/approvals/..%2F..?workspace_id={WS}", b"", 404, ""),
    ("percent-encoded surrogate in the path", "GET", f"/tasks/%ED%A0%80?workspace_id={WS}", b"", 422, ""),
    ("odd experiment id", "GET", f"/workspaces/{WS}/experiments/%00", b"", 422, ""),
]  # fmt: skip


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(redis_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        yield client


async def test_hostile_bodies_get_a_4xx_naming_the_field_never_a_500(api: httpx.AsyncClient):
    failures = []
    for what, method, url, body, expected, field in CASES:
        headers = {"content-type": "application/json"} if body else {}
        r = await api.request(method, url, content=body, headers=headers)
        problems = []
        if r.status_code != expected:
            problems.append(f"status {r.status_code}, expected {expected}")
        if len(r.content) > 3000:
            problems.append(f"echoed {len(r.content)} bytes")
        try:
            answer = r.json()
        except ValueError:
            problems.append("the answer is not JSON")
            answer = None
        if field and field not in json.dumps(answer):
            problems.append(f"does not name {field!r}")
        if problems:
            failures.append(f"{what}: {'; '.join(problems)}: {r.text[:300]}")
    assert failures == [], "\n".join(failures)


async def test_a_422_echoes_only_a_short_excerpt(api: httpx.AsyncClient) -> None:
    """A goal just under the body limit but over the goal limit: the answer names `goal`
    and carries at most ~100 characters of it."""
    r = await api.post("/tasks", json={"goal": "b" * 200_000, "workspace_id": WS})
    assert r.status_code == 422
    assert len(r.content) < 1000, r.text[:300]
    r = await api.post("/tasks", json={"goal": "b" * 4001, "workspace_id": WS})
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "goal"]
    assert len(error["input"]) <= 101 and error["input"].startswith("bbb")


async def test_a_body_larger_than_declared_or_streamed_without_length_gets_413(
    api: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"goal":"'
        for _ in range(100):
            yield b"a" * 10_000
        yield b'","workspace_id":"w"}'

    r = await api.post("/tasks", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = await api.post(
        "/tasks", content=b"{}", headers={"content-type": "application/json", "content-length": "x"}
    )
    assert r.status_code in (400, 413)


async def test_a_valid_task_is_still_accepted(api: httpx.AsyncClient) -> None:
    """The control: the limits leave ordinary requests alone (deep enough, big enough)."""
    body: dict[str, Any] = {
        "goal": "g" * models.MAX_GOAL_CHARS,
        "workspace_id": WS,
        "inputs": {"a": json.loads(nested(models.MAX_JSON_DEPTH - 1)), "n": 1.5, "s": "é" * 1000},
        "brand_voice": {"tone": "warm"},
        "budget_constraints": {"max_api_calls": 100, "max_cost_usd": 0.5},
        "quality_thresholds": {"content_quality": 0.7},
        "agent_sequence": ["research", "content"],
        "target_icps": ["cto"] * 50,
    }
    r = await api.post("/tasks", json=body)
    assert r.status_code == 202, r.text


def test_the_edge_and_the_services_share_their_field_types() -> None:
    """The request models take their free-form and bounded fields from the contract."""
    from services.gateway.schemas import SelfCorrectRequest, TaskSubmission
    from shared.contract.events import TaskRequested

    for name in ("goal", "inputs", "agent_sequence"):
        assert (
            TaskSubmission.model_fields[name].metadata == TaskRequested.model_fields[name].metadata
        ), name
    assert SelfCorrectRequest.model_fields["payload"].metadata == (
        TaskRequested.model_fields["inputs"].metadata
    )
