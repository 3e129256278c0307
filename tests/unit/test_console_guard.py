"""The console's browser rules: the key is checked before it becomes a cookie, a form post
needs this browser's CSRF token and the gateway's own origin; a header key is a program."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from services.gateway.auth import KeyRing
from services.gateway.console import guard


def request(
    headers: dict[str, str],
    ring: str | None = "k1=ws1,k2=*",
    cookies: str = "",
    origins: frozenset[str] = frozenset(),
) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": "gw:8000", **headers}.items()]
    if cookies:
        raw.append((b"cookie", cookies.encode()))
    app = SimpleNamespace(state=SimpleNamespace(key_ring=KeyRing.parse(ring), ui_origins=origins))
    return Request({"type": "http", "method": "POST", "scheme": "http", "path": "/ui/x",
                    "headers": raw, "query_string": b"", "app": app})


def test_a_key_opens_only_what_it_grants() -> None:
    r = request({})
    assert guard.key_opens(r, "k1", "ws1") and not guard.key_opens(r, "k1", "ws2")
    assert guard.key_opens(r, "k2", "anything") and not guard.key_opens(r, "nope", None)
    assert not guard.key_opens(r, "k" * 10_000, None)


def test_form_needs_own_origin_and_the_token_bound_to_the_key() -> None:
    cookie = "raptorflow_key=k1"
    token = guard.csrf_token(request({}, cookies=cookie))
    assert token and token != guard.csrf_token(request({}, cookies="raptorflow_key=k2"))
    guard.check_form(request({"origin": "http://gw:8000"}, cookies=cookie), token)
    guard.check_form(request({"referer": "http://gw:8000/ui/tasks?x=1"}, cookies=cookie), token)
    for headers in ({}, {"origin": "http://evil.example"}, {"origin": "null"},
                    {"referer": "http://gw:8000.evil.example/"}):
        with pytest.raises(HTTPException) as refused:
            guard.check_form(request(headers, cookies=cookie), token)
        assert refused.value.status_code == 403
    with pytest.raises(HTTPException):
        guard.check_form(request({"origin": "http://gw:8000"}, cookies=cookie), "0" * 64)
    with pytest.raises(HTTPException):
        guard.check_form(request({"origin": "http://gw:8000"}), token)  # no cookie at all


def test_extra_origins_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.gateway.app import create_app
    from shared.settings import Settings

    monkeypatch.setenv("RAPTORFLOW_UI_ORIGINS", "https://console.example.com/, https://b.example")
    origins = create_app(Settings()).state.ui_origins
    assert origins == {"https://console.example.com", "https://b.example"}
    cookie = "raptorflow_key=k1"
    token = guard.csrf_token(request({}, cookies=cookie))
    proxied = request({"origin": "https://console.example.com"}, cookies=cookie, origins=origins)
    guard.check_form(proxied, token)
    with pytest.raises(HTTPException):
        guard.check_form(request({"origin": "https://console.example.com"}, cookies=cookie), token)


def test_a_header_key_is_a_program_and_keys_off_use_a_session_cookie() -> None:
    guard.check_form(request({"x-api-key": "k1"}), "")
    open_request = request({}, ring=None, cookies="raptorflow_session=s1")
    token = guard.csrf_token(open_request)
    other = guard.csrf_token(request({}, ring=None, cookies="raptorflow_session=s2"))
    assert token and token != other
    guard.check_form(request({"origin": "http://gw:8000"}, ring=None,
                             cookies="raptorflow_session=s1"), token)
    fresh = request({}, ring=None)
    assert guard.csrf_token(fresh) and guard.ensure_session(fresh)
