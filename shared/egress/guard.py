"""The outbound-address guard: a tenant's URL may reach the public internet, nothing else.

A webhook URL is a tenant's input. Without a guard the notifier POSTed to
`http://127.0.0.1:6379`, `169.254.169.254` (cloud metadata), `[::1]` and `2130706433`,
and the delivery record showed each connection error, which made it a port scanner.

What the guard does, for every request of a guarded client (each redirect hop too):

- resolves the host once (numeric forms such as `0x7f000001`, `2130706433` or `127.1`
  resolve to what they mean) and refuses the request unless *every* address is public:
  loopback, private, link-local, shared (CGNAT), multicast, reserved, unspecified and
  documentation ranges are refused, and so is an IPv6 address that embeds a refused IPv4
  one (IPv4-mapped, IPv4-compatible, 6to4, Teredo, NAT64);
- connects to the address it checked (the URL's host is swapped for it; the Host header and
  TLS SNI/certificate check keep the name), so a second DNS answer (rebinding) is never used;
- ignores proxy settings from the environment, which would connect somewhere unchecked.

An operator may allow named internal hosts, addresses or networks
(`RAPTORFLOW_EGRESS_ALLOW`, e.g. `hooks.internal,10.1.0.0/16`). What a tenant sees of a
failure is only "refused by policy" or "delivery failed" (`tenant_message`); the
network's own error goes to the operator's log.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REFUSED = "refused by policy"
FAILED = "delivery failed"
RESOLVE_TIMEOUT_S = 5.0
SCHEMES = frozenset({"http", "https"})

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class EgressRefused(httpx.TransportError):
    """The guard refused a destination (an httpx error, so a caller's `except
    httpx.HTTPError` sees it); `str()` is the operator's detail, never shown to a tenant
    (they see REFUSED)."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, 6to4, Teredo, NAT64)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _IPV4_COMPATIBLE or any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Whether an address is one a tenant's URL may reach without the operator's allow-list."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
        if address.is_site_local:
            return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
    )


@dataclass(frozen=True)
class EgressPolicy:
    """What the operator allows beyond the public internet: host names, and networks."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> EgressPolicy:
        """`name,10.0.0.0/8,127.0.0.1,::1` (RAPTORFLOW_EGRESS_ALLOW); empty: public only."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                hosts.add(_normal_host(item))
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, address: IPAddress) -> bool:
        return is_public(address) or any(address in net for net in self.networks)

    async def resolve(self, host: str, port: int) -> IPAddress:
        """The address to connect to for `host`: every address it resolves to must be
        allowed (EgressRefused otherwise), and the first is the one to use."""
        name = _normal_host(host)
        if not name:
            raise EgressRefused("no host")
        addresses = await _resolve(name, port)
        if not addresses:
            raise EgressRefused(f"{name} does not resolve")
        if name in self.hosts:
            return addresses[0]
        refused = [str(a) for a in addresses if not self.allows(a)]
        if refused:
            raise EgressRefused(f"{name} resolves to {', '.join(refused)}, outside the allowed ranges")
        return addresses[0]

    async def check_url(self, url: str) -> None:
        """Registration-time check of a tenant's URL (EgressRefused when it may not be used)."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise EgressRefused(f"not a URL: {exc}") from exc
        if parsed.scheme not in SCHEMES:
            raise EgressRefused(f"scheme {parsed.scheme!r}")
        if _normal_host(parsed.host) in self.hosts:
            return  # named by the operator: it must resolve when called, not necessarily now
        await self.resolve(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80))


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


async def _resolve(name: str, port: int) -> list[IPAddress]:
    try:
        literal = ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(name, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise EgressRefused(f"{name} does not resolve: {exc}") from exc
    out: list[IPAddress] = []
    for family, *_, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            # An IPv6 sockaddr may carry a zone ("fe80::1%eth0"): link-local anyway.
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in out:
                out.append(address)
    return out


@functools.lru_cache(maxsize=8)
def policy_for(spec: str) -> EgressPolicy:
    """The policy of a settings value (parsed once per process)."""
    return EgressPolicy.parse(spec)


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that resolves, checks and pins the address of every request."""

    def __init__(self, policy: EgressPolicy, **transport: Any):
        self.policy = policy
        # No kept-alive connections: the pool is keyed by address, so a connection opened
        # (and certificate-checked) for one name would be reused for another on that address.
        transport.setdefault("limits", httpx.Limits(max_keepalive_connections=0))
        self._inner = httpx.AsyncHTTPTransport(trust_env=False, **transport)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in SCHEMES:
            raise EgressRefused(f"scheme {url.scheme!r}")
        host = url.host
        address = await self.policy.resolve(host, url.port or (443 if url.scheme == "https" else 80))
        # The Host header was set from the name when the request was built; TLS checks the
        # certificate against the name too (SNI), while the socket goes to `address`.
        request.url = url.copy_with(host=str(address))
        if url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": _normal_host(host)}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def guarded_client(policy: EgressPolicy, *, timeout: float, **client: Any) -> httpx.AsyncClient:
    """An AsyncClient for tenants' URLs: every request (and redirect) through the guard,
    no proxies from the environment, redirects not followed unless asked."""
    return httpx.AsyncClient(
        transport=GuardedTransport(policy),
        timeout=timeout,
        trust_env=False,
        follow_redirects=client.pop("follow_redirects", False),
        **client,
    )


def tenant_message(error: BaseException) -> str:
    """What a tenant may see of a failed call: whether policy refused it, nothing more."""
    return REFUSED if isinstance(error, EgressRefused) else FAILED
