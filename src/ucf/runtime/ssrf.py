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

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import httpcore
import httpx

# The policy half lives in ucf.runtime.egress (no HTTP stack); re-exported here, where
# callers have always found it.
from ucf.runtime.egress import ALLOW_HOSTS_ENV as ALLOW_HOSTS_ENV
from ucf.runtime.egress import ALLOWED_SCHEMES as ALLOWED_SCHEMES
from ucf.runtime.egress import METADATA_HOSTNAMES as METADATA_HOSTNAMES
from ucf.runtime.egress import EgressDenied as EgressDenied
from ucf.runtime.egress import EgressPolicy as EgressPolicy
from ucf.runtime.egress import IPAddress, _normalise_host, _parse_ip
from ucf.runtime.egress import IPNetwork as IPNetwork
from ucf.runtime.egress import forbidden_reason as forbidden_reason
from ucf.runtime.network import AsyncioBackend
from ucf.runtime.trust import BackgroundTrustTransport

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host``, in its preferred order.

    asyncio's own lookup (on the loop's executor), not ``anyio.getaddrinfo``: the
    same call underneath, without loading anyio's backend (:mod:`ucf.runtime.pool_sync`).
    A host reaches here as httpx sends it, IDNA-encoded already (ASCII).
    """
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
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
        # What opens the connection to the checked address: asyncio's own transport
        # (ucf.runtime.network), not anyio's socket streams.
        self._inner = inner if inner is not None else AsyncioBackend()

    async def _resolve(self, host: str, port: int, limit: float | None) -> list[IPAddress]:
        literal = _parse_ip(_normalise_host(host))
        if literal is not None:
            return [literal]
        try:
            async with asyncio.timeout(limit):
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


class GuardedTransport(BackgroundTrustTransport):
    """httpx's own transport with the guard in its connection pool.

    It trusts no proxy settings from the environment: a proxy would make the
    connection on our behalf and skip the address checks. Its CA bundle loads
    in the background (:mod:`ucf.runtime.trust`).
    """

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
        resolver: Resolver = system_resolver,
        load_now: bool = True,
    ) -> None:
        # httpx's pool with the guard as its network backend (httpx is pinned <0.29,
        # and tests prove the guard is really in the path: a rebinding resolver is
        # refused); its locks and events from asyncio (ucf.runtime.pool_sync).
        super().__init__(
            verify=verify,
            trust_env=False,
            limits=limits,
            network_backend=GuardedNetworkBackend(policy, resolver=resolver),
            load_now=load_now,
        )
        self._policy = policy

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._policy.check_url(request.url)
        return await super().handle_async_request(request)
