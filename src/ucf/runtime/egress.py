"""Which destinations outbound requests may reach: the policy half of the SSRF guard.

:class:`EgressPolicy` (``UCF_ALLOW_HOSTS``) and :func:`forbidden_reason` decide;
:mod:`ucf.runtime.ssrf` enforces them in the connection path. They live apart
so that reading the settings (:mod:`ucf.service.settings`) loads no HTTP stack:
a process that never makes an outbound request (a Lambda that enqueues polls)
does not import httpx for them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Final

from ucf.core.records import datarecord

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ALLOWED_SCHEMES",
    "ALLOW_HOSTS_ENV",
    "METADATA_HOSTNAMES",
    "EgressDenied",
    "EgressPolicy",
    "IPAddress",
    "IPNetwork",
    "forbidden_reason",
]

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


@datarecord(slots=False)
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
