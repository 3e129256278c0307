"""ApprovalNeeded -> signed webhook, retried after a 500, delivery recorded (real HTTP)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from raptorflow.stack import LocalStack
from services.gateway.app import create_app
from shared.stores import webhooks
from tests.checkpoint_helpers import gate, submit, wait_pending
from tests.helpers import eventually, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SECRET = "test-secret-0123456789abcdef"


class Receiver:
    """A local webhook endpoint that fails its first `failures` requests with 500."""

    def __init__(self, failures: int = 1):
        self.failures = failures
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(
                    {"headers": dict(self.headers), "body": body, "at": time.time()}
                )
                code = 500 if len(receiver.requests) <= receiver.failures else 200
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/rf"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(failures=1) as running:
        yield running


async def test_approval_needed_is_delivered_signed_and_retried_after_a_500(
    redis_url, redis, workspace, receiver, caplog
):
    caplog.set_level(logging.DEBUG)
    # The receiver listens on 127.0.0.1, which the guard refuses unless the operator allows it.
    settings = settings_for(redis_url, egress_allow="127.0.0.1")
    async with LocalStack(settings, start_redis=False) as stack:
        app = create_app(stack.settings, stack.deps)
        app.state.deps = stack.deps
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw"
        ) as api:
            put = await api.put(
                f"/workspaces/{workspace}/webhooks",
                json={"urls": [receiver.url], "secret": SECRET},
            )
            assert put.status_code == 200 and put.json()["secret"] is None
            shown = await api.get(f"/workspaces/{workspace}/webhooks")
            assert shown.json() == {
                "workspace_id": workspace,
                "urls": [receiver.url],
                "secret_set": True,
                "secret": None,
            }

            task_id = await submit(redis, workspace, checkpoints=gate(workspace, "research"))
            (pending,) = await wait_pending(redis, workspace)

            async def delivered() -> list[dict[str, Any]] | None:
                status = await api.get(
                    f"/approvals/{pending.approval_id}/deliveries",
                    params={"workspace_id": workspace},
                )
                targets = status.json()
                return targets if targets and targets[0]["status"] == "delivered" else None

            (target,) = await eventually(delivered, 20)

    assert len(receiver.requests) == 2, "one failed attempt, one retry"
    first, second = receiver.requests
    assert second["at"] - first["at"] >= 0.4, "the retry waited for its backoff"
    for request in receiver.requests:
        header = request["headers"][webhooks.SIGNATURE_HEADER]
        assert webhooks.verify_signature(SECRET, header, request["body"], time.time())
        assert not webhooks.verify_signature(
            "wrong-secret-value", header, request["body"], time.time()
        )
        timestamp = int(header.split(",")[0].removeprefix("t="))
        assert abs(timestamp - request["at"]) < 5
        assert request["headers"][webhooks.EVENT_HEADER] == "ApprovalNeeded"
    body = json.loads(second["body"])
    assert body["approval_id"] == pending.approval_id and body["task_id"] == task_id
    assert body["checkpoint"] == "review" and body["stage_output"]
    assert body["evaluation"]["status"] == "pending_approval"

    assert target["url"] == receiver.url and target["attempts"] == 2
    assert target["last_status"] == 200 and target["delivered_at"] is not None
    assert SECRET not in caplog.text
