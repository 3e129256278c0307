"""The one call site HTTP agents use to check a tenant-given URL before calling it.

A stand-in until the security work's outbound-address guard lands: the lead points
`check_outbound_url` at it at merge time. It refuses non-HTTP schemes and hosts that
resolve to loopback, private, link-local, multicast or reserved addresses, unless the
host is in RAPTORFLOW_OUTBOUND_ALLOWLIST (comma-separated hosts; tests and local demos).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit


class OutboundRefused(ValueError):
    """The URL may not be called."""


def _allowlist() -> set[str]:
    return {
        h.strip().lower()
        for h in os.environ.get("RAPTORFLOW_OUTBOUND_ALLOWLIST", "").split(",")
        if h.strip()
    }


def check_outbound_url(url: str, *, resolve: bool = True) -> None:
    """Raise OutboundRefused unless `url` is http(s) and points at a public address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused(f"only http(s) URLs with a host may be called: {url[:200]}")
    host = parts.hostname.lower()
    if host in _allowlist():
        return
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if not resolve:
            return
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise OutboundRefused(f"cannot resolve {host}: {exc}") from exc
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if not address.is_global or address.is_multicast:
            raise OutboundRefused(f"{host} resolves to a non-public address ({address})")
