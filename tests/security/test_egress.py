"""Webhooks (and every later call to a tenant's URL) cannot reach the private network.

The hostile URLs of the probe: loopback in every spelling, Redis, cloud metadata, IPv6
loopback, IPv4-mapped IPv6, and the numeric forms of 127.0.0.1. Refused at registration
(422), refused again at delivery (a config written straight into Redis), never after a
redirect, and a tenant sees only "refused by policy" or "delivery failed".
"""

from __future__ import annotations

import ipaddress
import threading
import time
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from services.gateway.app import create_app
from services.notifier.app import deliver_one
from shared.egress import guard
from shared.stores import webhooks
from tests.helpers import KEYS, settings_for

HOSTILE_URLS = [
    "http://127.0.0.1:6379/",
    "http://localhost:6379",
    "http://LOCALHOST./",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8000/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]:6379/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://017700000001/",
    "http://127.1/",
    "http://0.0.0.0:6379/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://224.0.0.1/",
    "http://no-such-host.invalid/",
]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.0.2.1",
        "198.18.0.1", "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "ff0e::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1",
        "64:ff9b:1::a00:1", "2002:7f00:1::", "2002:a00:1::", "2001:db8::1", "fec0::1",
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not guard.is_public(ipaddress.ip_address(address))
    assert not guard.EgressPolicy().allows(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "64:ff9b::808:808", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert guard.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("url", [*HOSTILE_URLS, "ftp://example.com/", "file:///etc/passwd"])
async def test_hostile_urls_are_refused_by_the_default_policy(url: str) -> None:
    with pytest.raises(guard.EgressRefused):
        await guard.EgressPolicy().check_url(url)


async def test_the_operator_allow_list_admits_named_hosts_and_networks_only() -> None:
    policy = guard.EgressPolicy.parse("hooks.internal, 10.1.0.0/16, 127.0.0.1")
    await policy.check_url("http://127.0.0.1:9000/x")
    await policy.check_url("http://0x7f000001/")  # the same address, however it is spelt
    await policy.check_url("http://10.1.200.3/")
    for refused in ["http://10.2.0.1/", "http://[::1]/", "http://169.254.169.254/"]:
        with pytest.raises(guard.EgressRefused):
            await policy.check_url(refused)
    assert "hooks.internal" in policy.hosts


class Recorder:
    """A local HTTP server that records what reaches it; `redirect_to` makes it answer 302."""

    def __init__(self, redirect_to: str | None = None):
        self.requests: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorder.requests.append({"host": self.headers["Host"], "body": self.rfile.read(length)})
                if redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                else:
                    self.send_response(200)
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> Recorder:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with Recorder() as running:
        yield running


def _resolving(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Make the guard's resolver answer from `answers`; returns the names asked."""
    asked: list[str] = []

    async def fake(name: str, port: int) -> list[Any]:
        asked.append(name)
        return [ipaddress.ip_address(a) for a in answers[name]]

    monkeypatch.setattr(guard, "_resolve", fake)
    return asked


async def test_the_client_connects_to_the_address_it_checked_with_the_name_as_host(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resolved once, checked, pinned: a second (rebinding) answer would never be used."""
    asked = _resolving(monkeypatch, {"hooks.example": ["127.0.0.1"]})
    policy = guard.EgressPolicy.parse("127.0.0.1")
    async with guard.guarded_client(policy, timeout=5) as client:
        response = await client.post(f"http://hooks.example:{recorder.port}/hook", content=b"x")
    assert response.status_code == 200
    assert asked == ["hooks.example"]
    assert recorder.requests[0]["host"] == f"hooks.example:{recorder.port}"


async def test_a_name_that_resolves_to_a_refused_address_is_never_connected(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    _resolving(monkeypatch, {"rebind.example": ["8.8.8.8", "127.0.0.1"]})
    async with guard.guarded_client(guard.EgressPolicy(), timeout=5) as client:
        with pytest.raises(guard.EgressRefused):
            await client.post(f"http://rebind.example:{recorder.port}/hook", content=b"x")
    assert recorder.requests == []


async def test_redirects_into_refused_ranges_are_not_followed(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first hop is an allowed (named) host; it redirects to a loopback address."""
    with Recorder(redirect_to=recorder.url) as bouncer:
        _resolving(monkeypatch, {"public.example": ["127.0.0.1"], "127.0.0.1": ["127.0.0.1"]})
        policy = guard.EgressPolicy.parse("public.example")
        async with guard.guarded_client(policy, timeout=5, follow_redirects=True) as client:
            with pytest.raises(guard.EgressRefused):
                await client.post(f"http://public.example:{bouncer.port}/", content=b"x")
        assert len(bouncer.requests) == 1
    assert recorder.requests == []
    # The notifier's client does not follow redirects at all.
    async with guard.guarded_client(guard.EgressPolicy(), timeout=5) as client:
        assert client.follow_redirects is False


def test_tenants_see_only_refused_or_failed() -> None:
    assert guard.tenant_message(guard.EgressRefused("10.0.0.1 is private")) == "refused by policy"
    request = httpx.Request("POST", "http://x")
    for error in [httpx.ConnectError("[Errno 111] Connection refused", request=request),
                  httpx.ReadTimeout("timed out", request=request), TimeoutError()]:
        assert guard.tenant_message(error) == "delivery failed"


@pytest.mark.slow
async def test_registration_refuses_hostile_webhook_and_agent_urls_with_422(redis_url: str, workspace: str) -> None:
    app = create_app(settings_for(redis_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as api,
    ):
        for url in HOSTILE_URLS:
            r = await api.put(f"/workspaces/{workspace}/webhooks", json={"urls": [url]})
            assert r.status_code == 422, (url, r.status_code, r.text)
            assert "refused by policy" in r.text or "url" in r.text.lower(), (url, r.text)
            assert "Errno" not in r.text and "Connect" not in r.text
        assert (await api.get(f"/workspaces/{workspace}/webhooks")).json()["urls"] == []
        for n, url in enumerate(HOSTILE_URLS):  # the same guard for an http agent's URL
            body = {"kind": "http", "task_types": ["research"], "url": url}
            r = await api.put(f"/agents/probe_{n}", params={"workspace_id": workspace}, json=body)
            assert r.status_code == 422, (url, r.status_code, r.text)
            assert "Errno" not in r.text and "Connect" not in r.text


async def test_delivery_to_a_config_written_around_the_gateway_is_refused(
    redis: Any, redis_url: str, workspace: str, recorder: Recorder
) -> None:
    """An upstream writer (or an old version) stored a loopback URL: the notifier refuses
    it at once, connects nowhere, and the record says only "refused by policy"."""
    config = webhooks.WebhookConfig(urls=[recorder.url], secret=SecretStr("s" * 20))  # type: ignore[list-item]
    await webhooks.save_config(redis, KEYS, workspace, config)
    async with redis.pipeline(transaction=True) as tx:
        webhooks.add_delivery(tx, KEYS, workspace, "ap1", b"{}", [recorder.url], time.time())
        await tx.execute()
    deps = types.SimpleNamespace(redis=redis, keys=KEYS, settings=settings_for(redis_url))
    async with guard.guarded_client(guard.EgressPolicy(), timeout=5) as client:
        verdict = await deliver_one(deps, client, workspace, "ap1", 0)  # type: ignore[arg-type]
    assert verdict == "failed"
    (target,) = await webhooks.delivery_status(redis, KEYS, workspace, "ap1")
    assert target.status == "failed" and target.attempts == 1
    assert target.last_error == "refused by policy" and target.last_status is None
    assert recorder.requests == []
    assert not await redis.zscore(KEYS.webhook_outbox(workspace), f"{workspace}|ap1|0")


async def test_a_failed_delivery_says_only_delivery_failed(
    redis: Any, redis_url: str, workspace: str
) -> None:
    closed = f"http://127.0.0.1:{_closed_port()}/hook"
    await webhooks.save_config(
        redis, KEYS, workspace, webhooks.WebhookConfig(urls=[closed], secret=SecretStr("s" * 20))  # type: ignore[list-item]
    )
    async with redis.pipeline(transaction=True) as tx:
        webhooks.add_delivery(tx, KEYS, workspace, "ap2", b"{}", [closed], time.time())
        await tx.execute()
    deps = types.SimpleNamespace(redis=redis, keys=KEYS, settings=settings_for(redis_url))
    policy = guard.EgressPolicy.parse("127.0.0.1")
    async with guard.guarded_client(policy, timeout=5) as client:
        verdict = await deliver_one(deps, client, workspace, "ap2", 0)  # type: ignore[arg-type]
    assert verdict == "retry"
    (target,) = await webhooks.delivery_status(redis, KEYS, workspace, "ap2")
    assert target.last_error == "delivery failed"


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
