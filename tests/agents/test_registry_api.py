"""Agents registered through the gateway: validation (422), scopes, versions, admin keys."""

from __future__ import annotations

import uuid

import httpx
import pytest

from services.gateway.app import create_app
from shared.app.runtime import build_deps
from tests.helpers import settings_for


@pytest.fixture
async def gateway(redis_url):
    made: list = []

    async def make(**overrides):
        settings = settings_for(redis_url, **overrides)
        deps = await build_deps(settings)
        app = create_app(settings, deps)
        app.state.deps = deps
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        made.append((client, deps))
        return client

    yield make
    for client, deps in made:
        await client.aclose()
        await deps.close()


def _name() -> str:
    return f"a_{uuid.uuid4().hex[:8]}"


async def test_register_show_list_remove_with_versions(gateway, workspace):
    client = await gateway()
    name = _name()
    body = {"kind": "worker", "task_types": ["research"], "description": "my researcher"}
    first = await client.put(f"/agents/{name}", params={"workspace_id": workspace}, json=body)
    assert first.status_code == 200, first.text
    second = await client.put(f"/agents/{name}", params={"workspace_id": workspace}, json=body)
    assert second.json()["version"] > first.json()["version"] > 0

    shown = (await client.get(f"/agents/{name}", params={"workspace_id": workspace})).json()
    assert shown["source"] == "workspace" and shown["spec"]["kind"] == "worker"
    assert [c["op"] for c in shown["changes"]][:2] == ["put", "put"]
    listed = (await client.get("/agents", params={"workspace_id": workspace})).json()
    assert name in [a["spec"]["name"] for a in listed]
    other = (await client.get("/agents", params={"workspace_id": f"{workspace}x"})).json()
    assert name not in [a["spec"]["name"] for a in other]  # scoped to its workspace

    gone = await client.delete(f"/agents/{name}", params={"workspace_id": workspace})
    assert gone.status_code == 204
    missing = await client.get(f"/agents/{name}", params={"workspace_id": workspace})
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "name,body,field",
    [
        ("Bad-Name", {"task_types": ["research"], "prompt": "p"}, "name"),
        ("ok_name", {"kind": "http", "task_types": ["research"], "url": "ftp://x"}, "url"),
        (
            "ok_name",
            {"kind": "http", "task_types": ["research"], "url": "http://127.0.0.1/x"},
            "url",
        ),
        ("ok_name", {"kind": "http", "task_types": ["research"]}, "url"),
        ("ok_name", {"task_types": ["research"], "prompt": "p", "tools": ["Not A Tool"]}, "tool"),
        ("ok_name", {"task_types": ["research"], "prompt": "p", "tools": ["content"]}, "tool"),
        ("ok_name", {"task_types": ["nope"], "prompt": "p"}, "task types"),
        ("ok_name", {"task_types": ["research"], "prompt": "p", "timeout_s": "inf"}, "timeout_s"),
        ("ok_name", {"task_types": ["research"], "prompt": "p", "surprise": 1}, "surprise"),
        (
            "ok_name",
            {
                "task_types": ["research"],
                "prompt": "p",
                "tools": ["mcp:x/t"],
                "mcp_servers": {"x": {"command": "/bin/sh", "args": ["-c", "id"]}},
            },
            "mcp_servers",
        ),
    ],
)
async def test_invalid_registrations_get_422(gateway, workspace, name, body, field):
    client = await gateway()
    response = await client.put(f"/agents/{name}", params={"workspace_id": workspace}, json=body)
    assert response.status_code == 422, response.text
    assert field in response.text


async def test_global_registration_needs_an_admin_key(gateway, workspace):
    client = await gateway(api_keys=f"wskey={workspace},admin=*")
    name = _name()
    body = {"kind": "worker", "task_types": ["research"]}
    denied = await client.put(f"/agents/{name}", json=body, headers={"x-api-key": "wskey"})
    assert denied.status_code == 403
    scoped = await client.put(
        f"/agents/{_name()}",
        params={"workspace_id": workspace},
        json=body,
        headers={"x-api-key": "wskey"},
    )
    assert scoped.status_code == 200
    granted = await client.put(f"/agents/{name}", json=body, headers={"x-api-key": "admin"})
    assert granted.status_code == 200
    shown = await client.get(f"/agents/{name}", headers={"x-api-key": "admin"})
    assert shown.json()["source"] == "global"
    await client.delete(f"/agents/{name}", headers={"x-api-key": "admin"})


async def test_a_task_naming_an_unknown_agent_gets_422(gateway, workspace):
    client = await gateway()
    body = {"goal": "g", "workspace_id": workspace, "agent_sequence": ["no_such_agent"]}
    response = await client.post("/tasks", json=body)
    assert response.status_code == 422 and "no_such_agent" in response.text
    name = _name()
    spec = {"kind": "worker", "task_types": ["research"]}
    await client.put(f"/agents/{name}", params={"workspace_id": workspace}, json=spec)
    accepted = await client.post("/tasks", json={**body, "agent_sequence": [name]})
    assert accepted.status_code == 202  # registered in this workspace: known


async def test_one_name_means_one_agent_across_workspaces(gateway, workspace):
    """A worker's stream is named by the agent alone: another workspace cannot take the name,
    nor shadow a file agent; the owner may re-register it."""
    client = await gateway()
    name = _name()
    body = {"kind": "worker", "task_types": ["research"]}
    mine = await client.put(f"/agents/{name}", params={"workspace_id": workspace}, json=body)
    assert mine.status_code == 200
    again = await client.put(f"/agents/{name}", params={"workspace_id": workspace}, json=body)
    assert again.status_code == 200
    theirs = await client.put(
        f"/agents/{name}", params={"workspace_id": f"{workspace}-b"}, json=body
    )
    assert theirs.status_code == 409 and "another workspace" in theirs.text
    shadow = await client.put("/agents/content", params={"workspace_id": workspace}, json=body)
    assert shadow.status_code == 409 and "catalog file" in shadow.text


async def test_an_http_agent_may_only_name_its_own_secret_variable(gateway, workspace):
    client = await gateway()
    body = {"kind": "http", "task_types": ["research"], "url": "https://agent.example/x",
            "secret_env": "OPENAI_API_KEY"}  # fmt: skip
    response = await client.put(f"/agents/{_name()}", params={"workspace_id": workspace}, json=body)
    assert response.status_code == 422 and "secret_env" in response.text
