"""Which client a request counts against, for throttles keyed by address."""

from __future__ import annotations

import ipaddress

__all__ = ["client_key"]


def client_key(host: str | None) -> str:
    """The address a request is counted against: IPv6 by its /64 (one host usually owns the
    whole prefix and could rotate through it for free), anything else as is."""
    if not host:
        return "-"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)
