"""Where one instance's mail lives in Microsoft Graph, and how it signs in.

A user sign-in reads ``/me``; app-only access (client credentials) reads one
mailbox, ``/users/{id | userPrincipalName}``
(https://learn.microsoft.com/graph/api/user-list-messages). The folder is a
well-known name (``inbox``) or a folder id, addressed as ``mailFolders('…')``.
Tokens come from the Microsoft identity platform's v2 endpoint of the tenant,
``{authority}/{tenant}/oauth2/v2.0/token``
(https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote

import httpx

from ucf.native import ConfigError, ConnectorDescriptor, resolve_config
from ucf.native.outlook.messages import SELECTED

__all__ = ["Mailbox"]

PAGE_SIZE: Final = 50
"""``Prefer: odata.maxpagesize``: Graph's default for messages is 10 a page."""


def _quoted_key(value: str) -> str:
    """An OData string key: single quotes doubled, then percent-encoded for the path."""
    return quote(value.replace("'", "''"), safe="")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One instance's Graph addresses, from its (checked) config."""

    base_url: str
    authority_url: str
    tenant: str
    mailbox: str | None
    folder: str

    @classmethod
    def of(cls, descriptor: ConnectorDescriptor, config: Mapping[str, str]) -> Mailbox:
        """Raises :class:`ConfigError` for an unknown field or a value that is not usable."""
        values = resolve_config(descriptor, config)
        folder = values.get("folder", "").strip() or "inbox"
        tenant = values.get("tenant", "").strip() or "common"
        mailbox = values.get("mailbox", "").strip() or None
        authority = values.get("authorityUrl", "").strip()
        url = httpx.URL(authority) if authority else None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"authorityUrl {authority!r} is not an absolute http(s) URL")
        return cls(
            base_url=values["baseUrl"].rstrip("/"),
            authority_url=authority.rstrip("/"),
            tenant=tenant,
            mailbox=mailbox,
            folder=folder,
        )

    # -- addresses

    @property
    def root(self) -> str:
        """``…/me`` or ``…/users/{id}``."""
        if self.mailbox is None:
            return f"{self.base_url}/me"
        return f"{self.base_url}/users/{quote(self.mailbox, safe='@')}"

    @property
    def resource(self) -> str:
        """The folder's messages as a subscription names them (relative to the Graph root)."""
        who = "me" if self.mailbox is None else f"users/{quote(self.mailbox, safe='@')}"
        return f"{who}/mailFolders('{_quoted_key(self.folder)}')/messages"

    @property
    def folder_url(self) -> str:
        return f"{self.root}/mailFolders('{_quoted_key(self.folder)}')"

    def delta_url(self, received_since: datetime) -> str:
        """The first delta request: the mapped fields, messages received since then.

        Delta on messages accepts ``$filter`` only on ``receivedDateTime ge``
        (https://learn.microsoft.com/graph/delta-query-messages); the options are
        given once and Graph keeps them in the links it hands back.
        """
        since = received_since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        select = ",".join(SELECTED)
        return (
            f"{self.folder_url}/messages/delta?$select={select}"
            f"&$filter={quote(f'receivedDateTime ge {since}', safe='')}"
        )

    def message_url(self, message_id: str) -> str:
        return f"{self.root}/messages/{quote(message_id, safe='')}?$select={','.join(SELECTED)}"

    @property
    def subscriptions_url(self) -> str:
        return f"{self.base_url}/subscriptions"

    @property
    def token_url(self) -> str:
        return f"{self.authority_url}/{quote(self.tenant, safe='')}/oauth2/v2.0/token"

    @property
    def app_scope(self) -> str:
        """Client credentials ask for the resource's ``/.default`` scope: every application
        permission an administrator granted (``Mail.Read``)."""
        url = httpx.URL(self.base_url)
        return f"{url.scheme}://{url.netloc.decode('ascii')}/.default"

    def owns(self, link: str) -> bool:
        """Whether a link Graph handed back (or a stored checkpoint) points at this Graph
        host: the bearer token is never sent anywhere else."""
        try:
            url, base = httpx.URL(link), httpx.URL(self.base_url)
        except httpx.InvalidURL:
            return False
        return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
