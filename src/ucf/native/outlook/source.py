"""Outlook's source: the folder's Graph delta query, page by page.

The first poll asks ``mailFolders('{folder}')/messages/delta`` for the mapped
fields of messages received in the last :data:`LOOKBACK`, with ``Prefer:
odata.maxpagesize``. Graph answers pages that end in an ``@odata.nextLink``
and finally an ``@odata.deltaLink`` (https://learn.microsoft.com/graph/api/message-delta).
Both are opaque and followed verbatim; each page's checkpoint is the link that
continues after it, so a poll killed between pages resumes where it stopped
and the next poll starts from the stored ``deltaLink``.

Delta tokens of Outlook entities expire when Graph's token cache is full, and
a tenant can be asked to resynchronise: Graph answers ``410 Gone``, or a 4xx
with ``syncStateNotFound`` (https://learn.microsoft.com/graph/delta-query-overview,
"Synchronization reset" and "Token duration"). The poll then starts over with
the :data:`LOOKBACK` window, not the whole mailbox; signals already stored are
recognised by their identity and not stored twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import httpx

from ucf.native import (
    ConfigError,
    ConnectorDescriptor,
    CredentialsChanged,
    HealthCheckPlan,
    HealthResult,
    HttpSettings,
    MaintenanceContext,
    MalformedResponse,
    MappingResult,
    OAuth2Config,
    OAuth2Flow,
    Page,
    PollSchedule,
    SourceContext,
    UpstreamCalls,
    UpstreamError,
    page_items,
    parse_json,
)
from ucf.native.outlook.mailbox import PAGE_SIZE, Mailbox
from ucf.native.outlook.messages import to_signals

__all__ = ["LOOKBACK", "RESYNC_CODES", "OutlookSource"]

log = logging.getLogger("ucf.native.outlook")

LOOKBACK: Final = timedelta(days=7)
"""How far back a first poll (and a poll restarting after an expired token) reaches."""

RESYNC_CODES: Final = frozenset({"syncStateNotFound", "syncStateInvalid", "resyncRequired"})
"""Graph's error codes for a delta token it no longer knows (case-insensitive)."""

_RESYNC_STATUSES: Final = (400, 404, 410)


def _error_code(response: httpx.Response) -> str | None:
    """``error.code`` of Graph's error body (https://learn.microsoft.com/graph/errors)."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def _needs_resync(response: httpx.Response) -> bool:
    if response.status_code == 410:
        return True
    code = _error_code(response)
    return code is not None and code.lower() in {c.lower() for c in RESYNC_CODES}


class OutlookSource:
    """Polls one mail folder through Graph's delta query (see the module doc)."""

    schedule = PollSchedule(
        interval_seconds=300,
        # Outlook allows 10,000 requests per 10 minutes per app and mailbox
        # (https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits).
        rate_limit_rpm=600,
        initial_lookback_seconds=int(LOOKBACK.total_seconds()),
    )

    def __init__(self, descriptor: ConnectorDescriptor) -> None:
        self._descriptor = descriptor
        from ucf.native.outlook.webhooks import OutlookNotifications

        self._webhooks = OutlookNotifications(self)

    @property
    def descriptor(self) -> ConnectorDescriptor:
        return self._descriptor

    @property
    def webhooks(self) -> Any:
        return self._webhooks

    def mailbox(self, config: Mapping[str, str]) -> Mailbox:
        return Mailbox.of(self._descriptor, config)

    # -- auth

    def auth(
        self,
        credentials: Mapping[str, str],
        *,
        config: Mapping[str, str],
        token_client: httpx.AsyncClient,
        on_rotate: CredentialsChanged | None,
        now: Callable[[], datetime],
        settings: HttpSettings,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> httpx.Auth:
        """A user's refresh token when there is one (Microsoft rotates it: each new one is
        stored before use), else app-only client credentials for the configured mailbox."""
        mailbox = self.mailbox(config)
        oauth = getattr(self._descriptor.auth, "config", None)
        if not isinstance(oauth, OAuth2Config):
            raise ConfigError("the outlook descriptor must use oauth2")
        if not credentials.get(oauth.refresh_token_key):
            if mailbox.mailbox is None:
                raise ConfigError(
                    "app-only access (no refresh token) reads one mailbox: set 'mailbox' to "
                    "its user id or userPrincipalName, or add a user's refresh token"
                )
            if mailbox.tenant in ("common", "organizations", "consumers"):
                raise ConfigError(
                    "app-only access needs your tenant: set 'tenant' to the Directory "
                    "(tenant) ID or domain"
                )
            oauth = oauth.model_copy(
                update={"grant": "client_credentials", "scopes": [mailbox.app_scope]}
            )
        return OAuth2Flow(
            oauth,
            credentials,
            token_url=mailbox.token_url,
            token_client=token_client,
            on_rotate=on_rotate,
            now=now,
            settings=settings,
            sleep=sleep,
        )

    # -- polling

    async def fetch_delta(
        self,
        context: SourceContext,
        checkpoint: str | None,
        *,
        now: datetime,
        max_pages: int | None = None,
    ) -> AsyncIterator[Page]:
        mailbox = self.mailbox(context.config)
        if checkpoint and not mailbox.owns(checkpoint):
            raise ConfigError(
                "the stored checkpoint is not a link on the configured Graph host "
                "(baseUrl changed?): reset the instance's checkpoint"
            )
        calls = UpstreamCalls(context)
        url = checkpoint or mailbox.delta_url(now - LOOKBACK)
        headers = {"Prefer": f"odata.maxpagesize={PAGE_SIZE}"}
        number = 0
        restarted = False
        followed: set[str] = set()  # the links this poll read: a next link among them loops
        while True:
            followed.add(url)
            response = await calls.send("GET", url, headers=headers, accept=_RESYNC_STATUSES)
            if response.status_code in _RESYNC_STATUSES:
                if restarted or not _needs_resync(response):
                    code = _error_code(response) or "no error code"
                    raise UpstreamError(
                        f"GET {mailbox.folder_url}/messages/delta: HTTP "
                        f"{response.status_code} ({code})",
                        status=response.status_code,
                    )
                log.warning(
                    "outlook: Graph no longer knows the delta token (HTTP %s); "
                    "restarting from messages received in the last %s",
                    response.status_code,
                    LOOKBACK,
                )
                url, restarted = mailbox.delta_url(now - LOOKBACK), True
                continue
            body = parse_json(response)
            if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                raise MalformedResponse("Graph's delta page has no 'value' list")
            items: list[Any] = body["value"]
            next_link, delta_link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
            number += 1
            for link in (next_link, delta_link):
                if link is not None and not (isinstance(link, str) and mailbox.owns(link)):
                    raise MalformedResponse("Graph's delta page links outside its own host")
            if isinstance(next_link, str):
                if next_link in followed:
                    raise MalformedResponse(
                        f"Graph's delta page {number} links back to a page this poll already"
                        " read (@odata.nextLink loops); stopped"
                    )
                if max_pages is not None and number >= max_pages:
                    yield calls.page(number, items, next_link, last=True, truncated=True)
                    return
                yield calls.page(number, items, next_link, last=False)
                url = next_link
                continue
            if isinstance(delta_link, str):
                yield calls.page(number, items, delta_link, last=True)
                return
            raise MalformedResponse("Graph's delta page has neither @odata.nextLink nor deltaLink")

    def normalise(self, items: Sequence[Any], *, project_id: str, now: datetime) -> MappingResult:
        return to_signals(items, project_id=project_id)

    def extract_items(self, response: Any) -> list[Any]:
        """The messages of a saved delta page (or a bare array of them), for ``ucf map --poll``.

        A user saves what Graph's delta query answered, an object whose ``value`` the
        poll maps; without this the preview took only a bare array.
        """
        return page_items(response, "value", "a Graph delta page of messages")

    # -- upkeep

    async def maintain(self, context: MaintenanceContext) -> str:
        """Create, renew or recreate the folder's Graph subscription (see
        :mod:`ucf.native.outlook.subscriptions`)."""
        from ucf.native.outlook.subscriptions import maintain

        return await maintain(self.mailbox(context.config), context)

    # -- health

    async def health_check(self, context: SourceContext) -> HealthResult:
        """``GET`` the configured folder of the configured mailbox (``/me`` only works
        for a user sign-in), with the instance's auth."""
        try:
            mailbox = self.mailbox(context.config)
        except ConfigError as error:
            return HealthResult(ok=False, status=None, latency_ms=0.0, error=str(error))
        check = self._descriptor.health_check.model_copy(update={"endpoint": "{{baseUrl}}"})
        probe = self._descriptor.model_copy(update={"health_check": check, "config_fields": []})
        folder = SourceContext(
            client=context.client,
            auth=context.auth,
            config={"baseUrl": f"{mailbox.folder_url}?$select=id,displayName"},
            settings=context.settings,
            clock=context.clock,
        )
        return await HealthCheckPlan.compile(probe).run(folder)
