"""Dashboard sessions revoked at logout, shared by every worker through the store.

A session cookie is signed, so the server need not remember sessions to trust
them; but then logging out only deleted the cookie in *this* browser, and a
copy (stolen from a shared machine, a proxy log, a backup) stayed valid for
its 12 hours. OWASP's session guidance asks for the server to invalidate the
session at logout. Logout therefore records the session's id as revoked until
the moment the cookie would have expired anyway, and every request that
presents a session asks whether its id was revoked.

The record is a named lease held by nobody in particular: the store's lease
table already has what this needs — a name, an expiry the store enforces, one
atomic write, and the same semantics on SQLite and DynamoDB — so no table is
added for it. The cost is one store read per dashboard request.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from ucf.stores.protocols import LeaseStore

__all__ = ["SessionRevocations"]

_PREFIX: Final = "dashboard-session-revoked:"
_HOLDER: Final = "logout"


class SessionRevocations:
    def __init__(self, leases: LeaseStore) -> None:
        self._leases = leases

    async def revoke(self, session_id: str, *, expires: datetime, now: datetime) -> None:
        """From now until ``expires`` (the cookie's own expiry) the session is refused."""
        remaining = max(expires - now, timedelta(seconds=1))
        await self._leases.acquire(_PREFIX + session_id, _HOLDER, ttl=remaining, now=now)

    async def revoked(self, session_id: str, *, now: datetime) -> bool:
        return await self._leases.get(_PREFIX + session_id, now=now) is not None
