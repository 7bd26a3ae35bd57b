"""The SSRF guard: descriptors are user input, so their URLs must not reach inside.

A connector descriptor names the URLs ucf polls. Whoever writes one could point it
at the cloud metadata service, at a database on the private network, or at a
name whose DNS answer flips to ``127.0.0.1`` after a first harmless lookup
(DNS rebinding). Checking the URL string is therefore not enough: the guard sits
in the connection path itself. :class:`GuardedNetworkBackend` resolves the name,
validates *every* address it gets back and then connects to one of those
validated addresses, so the address that was checked is the address that is
used. TLS still verifies the certificate against the URL's host name (httpcore
passes the origin's host as SNI), and the ``Host`` header is untouched.

Redirects are covered for free: :func:`ucf.runtime.http.fetch` sends every hop
through the same client and transport, so each hop is resolved and checked again.

Operators open holes deliberately with ``UCF_ALLOW_HOSTS`` (host names, IPs or
CIDRs, comma-separated); tests allow-list their loopback fakes that way.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_HOSTS_ENV: Final = "UCF_ALLOW_HOSTS"
ALLOWED_SCHEMES: Final = frozenset({"http", "https"})

# Names that reach a cloud provider's instance metadata service whatever they
# resolve to from here; refused by name so no DNS answer can make them look public.
METADATA_HOSTNAMES: Final = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
    }
)

# Metadata endpoints named explicitly so the refusal says what was at stake; all
# of them are also covered by the link-local / private / CGNAT rules below.
_METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, …
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.123",  # AWS time sync
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)
_CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_HOSTNAME: Final = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_-]{1,63})*$"
)


class EgressDenied(Exception):
    """An outbound request was refused by the SSRF guard.

    The message names the host, the address and the reason, never the URL's
    path or query (they may carry credentials).
    """

    def __init__(
        self, host: str, reason: str, address: str | None = None, *, allowable: bool = True
    ) -> None:
        self.host = host
        self.reason = reason
        self.address = address
        where = host if address is None or address == host else f"{host} ({address})"
        hint = f"; list the host in {ALLOW_HOSTS_ENV} if this is intended" if allowable else ""
        super().__init__(f"refused outbound request to {where}: {reason}{hint}")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address smuggles, which is where packets really go."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    if ip in _NAT64:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    packed = int(ip)
    if 1 < packed < 2**32:  # deprecated IPv4-compatible ::a.b.c.d (not :: or ::1)
        return [ipaddress.IPv4Address(packed)]
    return []


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why connecting to ``ip`` could reach somewhere internal, or None if it is public."""
    if ip in _METADATA_ADDRESSES:
        return "cloud metadata endpoint"
    if isinstance(ip, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(ip):
            reason = forbidden_reason(inner)
            if reason is not None:
                return f"IPv6 address embedding {inner}, {reason}"
        if _embedded_ipv4(ip):
            return None  # a translation of a public IPv4 address (NAT64, 6to4…)
        if ip.is_site_local:
            return "site-local address"
    checks: tuple[tuple[bool, str], ...] = (
        (ip.is_loopback, "loopback address"),
        (ip.is_unspecified, "unspecified address"),
        (ip.is_link_local, "link-local address"),
        (ip in _CGNAT, "carrier-grade NAT address"),
        (ip.is_multicast, "multicast address"),
        (ip == ipaddress.IPv4Address("255.255.255.255"), "broadcast address"),
        (ip.is_reserved, "reserved address"),
        (ip.is_private, "private network address"),
        (not ip.is_global, "address that is not globally routable"),
    )
    return next((reason for hit, reason in checks if hit), None)


def _normalise_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def _parse_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class EgressPolicy:
    """Which destinations descriptors may reach beyond the public internet.

    ``allow_hosts`` holds host names (matched exactly, case-insensitively),
    IP addresses and CIDR blocks. A name on the list is trusted with whatever it
    resolves to; an IP or CIDR entry permits those addresses whatever name led
    to them.
    """

    allow_hosts: frozenset[str] = frozenset()
    _names: frozenset[str] = field(init=False, repr=False, compare=False)
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in self.allow_hosts:
            entry = _normalise_host(raw)
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if not _HOSTNAME.match(entry):
                raise ValueError(
                    f"{ALLOW_HOSTS_ENV} entry {raw.strip()!r} is not a host name, "
                    "IP address or CIDR block (write 'api.local', '10.0.0.5' or '10.0.0.0/8', "
                    "without scheme or port)"
                )
            names.add(entry)
        object.__setattr__(self, "_names", frozenset(names))
        object.__setattr__(self, "_networks", tuple(networks))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EgressPolicy:
        """The operator's policy from ``UCF_ALLOW_HOSTS`` (empty: public internet only)."""
        value = (os.environ if environ is None else environ).get(ALLOW_HOSTS_ENV, "")
        return cls(frozenset(part for part in value.split(",") if part.strip()))

    def name_allowed(self, host: str) -> bool:
        return _normalise_host(host) in self._names

    def address_allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self._networks)

    def check_url(self, url: httpx.URL) -> None:
        """Refuse what can be refused before any DNS lookup: scheme and metadata names."""
        if url.scheme not in ALLOWED_SCHEMES:
            raise EgressDenied(
                url.host or "(no host)",
                f"scheme {url.scheme!r} is not http(s)",
                allowable=False,
            )
        host = _normalise_host(url.host)
        if not host:
            raise EgressDenied("(no host)", "URL has no host", allowable=False)
        if host in METADATA_HOSTNAMES and not self.name_allowed(host):
            raise EgressDenied(host, "cloud metadata host name")

    def check_address(self, host: str, ip: IPAddress) -> None:
        """Refuse ``ip`` (one answer for ``host``) unless it is public or allow-listed."""
        if self.name_allowed(host) or self.address_allowed(ip):
            return
        reason = forbidden_reason(ip)
        if reason is not None:
            raise EgressDenied(_normalise_host(host), reason, address=str(ip))


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host``, in its preferred order."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in infos]


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves, validates every answer, then connects to a validated address.

    Because the TCP connection is opened to the exact IP that passed the check,
    a second DNS answer (rebinding) never gets a say. If any answer for a name is
    forbidden the whole name is refused: a record set mixing public and internal
    addresses is how rebinding attacks are staged.
    """

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def _resolve(self, host: str, port: int, limit: float | None) -> list[IPAddress]:
        literal = _parse_ip(_normalise_host(host))
        if literal is not None:
            return [literal]
        try:
            with anyio.fail_after(limit):
                answers = await self._resolver(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"could not resolve {host}: {exc.strerror or exc}") from exc
        addresses: list[IPAddress] = []
        for answer in answers:
            ip = ipaddress.ip_address(answer.split("%", 1)[0])
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise httpcore.ConnectError(f"could not resolve {host}: no addresses")
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        for ip in addresses:
            self._policy.check_address(host, ip)
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressDenied(
            path, "unix sockets are never reachable from descriptors", allowable=False
        )

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


DEFAULT_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport with the guard in its connection pool.

    It trusts no proxy settings from the environment: a proxy would make the
    connection on our behalf and skip the address checks.
    """

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
        resolver: Resolver = system_resolver,
    ) -> None:
        ssl_context = httpx.create_ssl_context(verify=verify, trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        self._policy = policy
        # httpx builds its pool without a network-backend hook; this is the same
        # pool with our backend (httpx is pinned <0.29, and tests prove the guard
        # is really in the path: a rebinding resolver is refused).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(policy, resolver=resolver),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._policy.check_url(request.url)
        return await super().handle_async_request(request)
