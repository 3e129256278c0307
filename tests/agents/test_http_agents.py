"""HTTP agents end to end: a signed POST per attempt, 429/5xx retried with backoff, the answer
validated, the URL passed through the outbound-address guard."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from raptorflow.agent_sdk import AgentRequest
from raptorflow.stack import LocalStack, wait_for_task
from shared.domain.catalog import AgentSpec
from shared.stores import agent_registry
from shared.stores.webhooks import SIGNATURE_HEADER, verify_signature
from tests.agents.sample_agents import improving_answer
from tests.agents.test_worker_agents import submit
from tests.helpers import events_of_task, settings_for

SECRET = "s3cret-for-tests"


class AgentServer:
    """A scripted http agent: answers the queued statuses first, then real answers."""

    def __init__(self, statuses: list[int], answer: dict[str, Any] | None = None) -> None:
        self.statuses = list(statuses)
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.signatures_ok: list[bool] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                header = self.headers.get(SIGNATURE_HEADER, "")
                server.signatures_ok.append(verify_signature(SECRET, header, body, time.time()))
                server.requests.append(json.loads(body))
                status = server.statuses.pop(0) if server.statuses else 200
                if status != 200:
                    self.send_response(status)
                    self.send_header("retry-after", "0")
                    self.end_headers()
                    return
                reply = server.answer or {"output": improving_answer(_request(server.requests[-1]))}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/agent"

    def __enter__(self) -> AgentServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _request(body: dict[str, Any]) -> AgentRequest:
    return AgentRequest(
        invocation_id=body["invocation_id"], agent=body["agent"], task_id=body["task_id"],
        workspace_id=body["workspace_id"], goal=body["stage_input"]["goal"], draft=body["draft"],
        issues=body["issues"], deadline=body["deadline"],
    )  # fmt: skip


@pytest.fixture
def allow_localhost(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RAPTORFLOW_OUTBOUND_ALLOWLIST", "127.0.0.1")
    monkeypatch.setenv("RAPTORFLOW_AGENT_SECRET_TEST", SECRET)
    yield


async def _run(
    redis_url: str, redis: Any, workspace: str, url: str, **fields: Any
) -> tuple[str, dict[str, str]]:
    name = f"h_{uuid.uuid4().hex[:8]}"
    async with LocalStack(settings_for(redis_url), start_redis=False) as stack:
        assert stack.deps is not None
        spec = AgentSpec.model_validate(
            {"name": name, "kind": "http", "task_types": ["research"], "url": url,
             "secret_env": "RAPTORFLOW_AGENT_SECRET_TEST", **fields}
        )  # fmt: skip
        await agent_registry.put_agent(redis, stack.deps.catalog, spec, workspace)
        task_id = await submit(redis, workspace, [name])
        return task_id, await wait_for_task(stack.deps, workspace, task_id, timeout=60)


async def test_http_agent_is_signed_retried_critiqued_and_revised(
    redis_url, redis, workspace, allow_localhost
):
    with AgentServer([503, 429]) as server:
        task_id, view = await _run(redis_url, redis, workspace, server.url)
    assert view["status"] == "completed", view
    assert all(server.signatures_ok) and len(server.requests) >= 4  # 2 retried + 2 drafts
    revision = server.requests[-1]
    assert revision["draft"] and revision["issues"] and "workflow" not in revision
    completed = next(
        e for e in await events_of_task(redis, task_id) if e["type"] == "StageCompleted"
    )
    assert completed["payload"]["provider"].startswith("http:")


async def test_http_agent_invalid_answer_fails_the_task_visibly(
    redis_url, redis, workspace, allow_localhost
):
    with AgentServer([], answer={"output": 12345}) as server:
        task_id, view = await _run(redis_url, redis, workspace, server.url, max_attempts=2)
    assert view["status"] == "failed", view
    failed = next(e for e in await events_of_task(redis, task_id) if e["type"] == "TaskFailed")
    assert failed["payload"]["reason"] == "error" and "invalid JSON" in failed["payload"]["error"]
    assert len(server.requests) == 2  # one per attempt


async def test_http_agent_on_a_private_address_is_refused(redis_url, redis, workspace):
    with AgentServer([]) as server:  # 127.0.0.1, not allowlisted here
        task_id, view = await _run(redis_url, redis, workspace, server.url, max_attempts=1)
    assert view["status"] == "failed" and not server.requests
    failed = next(e for e in await events_of_task(redis, task_id) if e["type"] == "TaskFailed")
    assert "url refused" in failed["payload"]["error"]
