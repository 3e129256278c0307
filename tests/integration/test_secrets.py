"""Redis AUTH and TLS through REDIS_URL, and no secret in any log line or HTTP response.

The stack runs against its own redis-server (with `requirepass`, or TLS on a
self-signed certificate made with `openssl`), because the session Redis has neither.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis
from redis.asyncio import Redis

from raptorflow.redis_server import RedisServer, free_port
from raptorflow.stack import LocalStack, wait_for_task
from shared.observability.log_context import ContextFilter
from shared.observability.logs import JsonFormatter
from tests.checkpoint_helpers import submit
from tests.fakes.openai_script import PurposeScript
from tests.fakes.openai_server import ScriptedOpenAIServer, error
from tests.helpers import settings_for

pytestmark = [pytest.mark.slow]


@pytest.fixture
def password() -> str:
    return f"redis-pass-{uuid.uuid4().hex}"


@pytest.fixture
def auth_redis(password: str) -> Iterator[RedisServer]:
    server = RedisServer(password=password).start()
    try:
        yield server
    finally:
        server.stop()


async def test_stack_runs_on_redis_with_auth(auth_redis: RedisServer, password: str, workspace):
    unauthenticated = sync_redis.Redis(port=auth_redis.port)
    with pytest.raises(sync_redis.AuthenticationError):
        unauthenticated.ping()
    unauthenticated.close()

    settings = settings_for(auth_redis.url)
    assert password in settings.redis_url_value()
    async with LocalStack(settings, start_redis=False) as stack:
        assert stack.deps is not None
        client = Redis.from_url(auth_redis.url)
        try:
            task_id = await submit(client, workspace)
            view = await wait_for_task(stack.deps, workspace, task_id, timeout=60)
        finally:
            await client.aclose()
    assert view["status"] == "completed", view


class _Capture(logging.Handler):
    """Every record, formatted by the production JSON formatter (with its context filter)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.stream = io.StringIO()
        self.setFormatter(JsonFormatter("test"))
        self.addFilter(ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.stream.write(self.format(record) + "\n")


async def test_no_secret_in_logs_health_metrics_or_errors(
    auth_redis: RedisServer, password: str, workspace, caplog
):
    api_key = f"rf-key-{uuid.uuid4().hex}"
    openai_key = f"sk-test-{uuid.uuid4().hex}"
    secrets = [api_key, openai_key, password]
    capture = _Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    caplog.set_level(logging.DEBUG)
    responses: list[httpx.Response] = []
    with ScriptedOpenAIServer() as server:
        server.responder = PurposeScript(scores=[0.9], plan=["content"])
        settings = settings_for(
            auth_redis.url,
            llm_provider="openai",
            openai_base_url=server.base_url,
            openai_api_key=openai_key,
            llm_model="fake-model",
            llm_max_retries=0,
            llm_timeout_s=5.0,
            api_keys=f"{api_key}={workspace}",
        )
        try:
            async with LocalStack(settings, with_gateway=True, start_redis=False) as stack:
                assert stack.deps is not None and stack.deps.provider.name == "openai"
                key = {"X-API-Key": api_key}
                async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as http:
                    accepted = await http.post(
                        "/tasks",
                        json={"goal": "Write a blog post about AI", "workspace_id": workspace},
                        headers=key,
                    )
                    assert accepted.status_code == 202, accepted.text
                    task_id = accepted.json()["task_id"]
                    view = await wait_for_task(stack.deps, workspace, task_id, timeout=60)
                    assert view["status"] == "completed", view
                    server.enqueue(error(401))
                    calls = [
                        http.get("/healthz"),
                        http.get("/metrics"),
                        http.get("/openapi.json"),
                        http.get(f"/tasks/{task_id}", params={"workspace_id": workspace}),
                        http.get(f"/tasks/{task_id}", params={"workspace_id": workspace},
                                 headers=key),
                        http.get("/tasks/x", params={"workspace_id": "other"}, headers=key),
                        http.get("/tasks/x", params={"workspace_id": workspace}, headers=key),
                        http.post("/tasks", json={"goal": ""}, headers=key),
                        http.get("/ui/approvals", params={"workspace_id": workspace}),
                        http.post(
                            "/execute/self-correct",
                            json={"agent_name": "content", "payload": {"goal": "note"},
                                  "workspace_id": workspace},
                            headers=key,
                        ),
                    ]  # fmt: skip
                    for call in calls:
                        responses.append(await call)
        finally:
            root.removeHandler(capture)
        sent = [r["headers"].get("authorization", "") for r in server.chat_requests]

    assert f"Bearer {openai_key}" in sent, "the OpenAI key was really configured and used"
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 401, 200, 403, 404, 422, 401, 502], statuses
    json_lines = capture.stream.getvalue()
    plain_lines = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records) + caplog.text
    assert len(caplog.records) > 10, "logging was captured at DEBUG"
    for secret in secrets:
        assert secret not in json_lines, f"a secret is in a JSON log line: {secret[:8]}…"
        assert secret not in plain_lines, f"a secret is in a log record: {secret[:8]}…"
        for response in responses:
            assert secret not in response.text, (response.request.url, secret[:8])
            assert secret not in str(response.headers), (response.request.url, secret[:8])


def _tls_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Debian's redis-server with TLS only, on a self-signed certificate for 127.0.0.1."""
    binary = shutil.which("redis-server")
    openssl = shutil.which("openssl")
    if binary is None or openssl is None:
        pytest.skip("needs Debian's redis-server (built with TLS) and openssl on PATH")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem"),
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(tmp / "cert.pem"), "--tls-key-file", str(tmp / "key.pem"),
         "--tls-ca-cert-file", str(tmp / "cert.pem"), "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={tmp / 'cert.pem'}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"redis-server refused --tls-port (exit {proc.returncode}): no TLS build")
        try:
            sync_redis.Redis.from_url(url).ping()
            return proc, port
        except sync_redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("TLS redis-server did not answer within 10 s")


@pytest.mark.parametrize("verify", ["ca_file", "no_verify"])
async def test_stack_runs_over_rediss(tmp_path: Path, workspace, verify: str):
    proc, port = _tls_redis(tmp_path)
    query = f"ssl_ca_certs={tmp_path / 'cert.pem'}" if verify == "ca_file" else "ssl_cert_reqs=none"
    url = f"rediss://127.0.0.1:{port}/0?{query}"
    try:
        plain = sync_redis.Redis(port=port, socket_timeout=2)
        with pytest.raises(sync_redis.ConnectionError):
            plain.ping()  # the port speaks TLS only
        plain.close()
        async with LocalStack(settings_for(url), start_redis=False) as stack:
            assert stack.deps is not None
            client = Redis.from_url(url)
            try:
                task_id = await submit(client, workspace)
                view: dict[str, Any] = await wait_for_task(
                    stack.deps, workspace, task_id, timeout=60
                )
            finally:
                await client.aclose()
        assert view["status"] == "completed", view
    finally:
        proc.kill()
        proc.wait(timeout=10)
