"""Browser access to /ui: the key cookie, a CSRF token on every form, a strict Origin check.

A browser cannot send X-API-Key, so the pages take the key once (`?key=` or the key form),
check it, and keep it in an HttpOnly, SameSite=Strict cookie. Every state-changing form
carries a token derived from that cookie (HMAC of the key, or of a random session cookie
when the gateway runs without keys), and every POST must come from the gateway's own origin
(or one listed in RAPTORFLOW_UI_ORIGINS, `Settings.ui_origins`). SameSite alone is one browser rule; this is three.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, status
from fastapi.responses import Response

from services.gateway.access import key_ring
from services.gateway.auth import KEY_COOKIE, WILDCARD, presented_key

SESSION_COOKIE = "raptorflow_session"
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/ui"
_LABEL = b"raptorflow-ui-csrf-v1"
MAX_KEY_LENGTH = 512


def browser_key(request: Request) -> str | None:
    """The key a request presents: the API header, else the console's cookie."""
    return presented_key(request) or request.cookies.get(KEY_COOKIE)


def key_opens(request: Request, key: str, workspace_id: str | None) -> bool:
    """Whether `key` is a configured key (and opens `workspace_id` when one is named)."""
    if len(key) > MAX_KEY_LENGTH:
        return False
    workspaces = key_ring(request).workspaces_for(key)
    if workspaces is None:
        return False
    return workspace_id is None or workspace_id in workspaces or WILDCARD in workspaces


def set_key_cookie(response: Response, key: str) -> None:
    response.set_cookie(KEY_COOKIE, key, httponly=True, samesite="strict", path=COOKIE_PATH)


def _material(request: Request) -> str | None:
    """What the token is bound to: the key when keys are on, else the session cookie."""
    if key_ring(request).enabled:
        return browser_key(request)
    return request.cookies.get(SESSION_COOKIE) or getattr(request.state, "rf_session", None)


def ensure_session(request: Request) -> str | None:
    """A new session value to set when the gateway runs without keys and none exists yet."""
    if key_ring(request).enabled or request.cookies.get(SESSION_COOKIE):
        return None
    value: str | None = getattr(request.state, "rf_session", None)
    if value is None:
        value = secrets.token_urlsafe(32)
        request.state.rf_session = value
    return value


def finish(request: Request, response: Response) -> Response:
    """Sets the session cookie a page's token was bound to, when it was just made."""
    new = getattr(request.state, "rf_session", None)
    if new and not request.cookies.get(SESSION_COOKIE):
        response.set_cookie(
            SESSION_COOKIE, new, httponly=True, samesite="strict", path=COOKIE_PATH
        )
    return response


def csrf_token(request: Request) -> str:
    """The token a page puts in its forms (empty when nothing to bind it to)."""
    ensure_session(request)
    material = _material(request)
    if not material:
        return ""
    return hmac.new(material.encode(), _LABEL, hashlib.sha256).hexdigest()


def allowed_origins(request: Request) -> set[str]:
    """The gateway's own origin plus the configured ones (`Settings.ui_origins`, which
    `create_app` keeps in the app's state)."""
    own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
    return {own} | set(request.app.state.ui_origins)


def request_origin(request: Request) -> str | None:
    """Origin, else the origin of Referer; None when the browser sent neither."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return origin.rstrip("/").lower()
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if parts.scheme and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}".lower()
    return None


def check_form(request: Request, token: str) -> None:
    """403 unless the POST comes from an allowed origin and carries this browser's token.

    A request that carries its key in a header (X-API-Key, Bearer) is a program, not a
    browser riding on a cookie: no other site can make a browser send that header, so
    there is no request to forge and the form rules do not apply."""
    if key_ring(request).enabled and presented_key(request):
        return
    origin = request_origin(request)
    if origin is None or origin not in allowed_origins(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="cross-origin form refused")
    expected = csrf_token(request)
    if not expected or not hmac.compare_digest(expected.encode(), token.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="missing or stale form token")
