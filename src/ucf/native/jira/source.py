"""Polling Jira Cloud: the JQL search, minute-precision windows, and the health check.

The poll reads ``POST /rest/api/3/search/jql`` — the search that replaced
``/rest/api/3/search`` (``startAt``/``total``, removed from Jira Cloud) — with

    (<the instance's JQL filter>) AND updated >= "yyyy-MM-dd HH:mm" ORDER BY updated ASC

following ``nextPageToken`` until ``isLast``
(https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-search/#api-rest-api-3-search-jql-post).
The search returns issue ids only unless ``fields`` are named, so the poll names
the ones the signal needs, and ``expand=changelog`` says which change was the
latest (a status transition or another edit).

JQL dates have minute precision and are read in the *searching user's* time
zone (https://support.atlassian.com/jira-software-cloud/docs/jql-fields/#Updated),
and the search is eventually consistent. So the window starts at the
checkpoint (the newest ``updated`` seen, exact to the millisecond) minus
:data:`OVERLAP`, written in the zone ``GET /rest/api/3/myself`` reports; the
issues seen again in the overlap carry the same version (their ``updated``)
and the store keeps one signal per version. Nothing is missed at a poll
boundary, nothing is doubled.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from ucf.native import (
    AuthFailed,
    CheckpointInvalid,
    ConfigError,
    ConnectorDescriptor,
    CredentialsChanged,
    HealthResult,
    HttpSettings,
    MalformedResponse,
    MappingResult,
    Page,
    PollSchedule,
    RateLimited,
    SourceContext,
    UpstreamCalls,
    UpstreamError,
    page_items,
)
from ucf.native.jira.auth import ATLASSIAN, AtlassianEndpoints, jira_auth
from ucf.native.jira.signals import jira_time, normalise_issues, version_of
from ucf.native.jira.webhooks import JiraWebhooks

__all__ = ["FIELDS", "OVERLAP", "PAGE_SIZE", "JiraSource", "search_jql"]

FIELDS: Final = (
    "summary",
    "status",
    "priority",
    "issuetype",
    "project",
    "reporter",
    "assignee",
    "labels",
    "components",
    "issuelinks",
    "parent",
    "created",
    "updated",
    "comment",
    "description",
)
"""The fields a signal reads; the search returns ids only unless told."""

PAGE_SIZE: Final = 100
"""``maxResults`` asked for; Jira may return fewer (it says so), so ``isLast`` decides."""

OVERLAP: Final = timedelta(minutes=2)
"""How far before the checkpoint each search starts: one minute for JQL's minute
precision, one more for the search index catching up."""

HEALTH_TIMEOUT: Final = httpx.Timeout(10.0)

_ORDER_BY: Final = re.compile(r"\border\s+by\b", re.IGNORECASE)


def _settings(config: Mapping[str, str]) -> tuple[str, str]:
    """The site URL (no trailing slash) and the user's JQL filter, checked."""
    site = (config.get("siteUrl") or "").strip().rstrip("/")
    url = httpx.URL(site) if site else None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            "siteUrl must be your Jira site's address, e.g. https://your-site.atlassian.net"
        )
    jql = (config.get("jql") or "").strip()
    if _ORDER_BY.search(jql):
        raise ConfigError("the JQL filter must not have an ORDER BY: ucf orders by updated to poll")
    return site, jql


def search_jql(user_filter: str, since: datetime, zone: ZoneInfo | None, *, now: datetime) -> str:
    """The poll's JQL: the user's filter (bracketed, so its OR cannot escape) and the window.

    ``since`` is written in ``zone`` (the searching user's), floored to the
    minute; without a known zone, as a relative date (``"-90m"``) that needs
    none — rounded up, so the window only grows.
    """
    if zone is not None:
        local = since.astimezone(zone)
        bound = f'"{local:%Y-%m-%d %H:%M}"'
    else:
        minutes = int((now - since).total_seconds() // 60) + 1
        bound = f'"-{max(1, minutes)}m"'
    window = f"updated >= {bound} ORDER BY updated ASC"
    return f"({user_filter}) AND {window}" if user_filter else window


def _checkpoint_time(checkpoint: str) -> datetime:
    moment = jira_time(checkpoint)
    if moment is None or moment - datetime.min.replace(tzinfo=moment.tzinfo) < OVERLAP:
        raise CheckpointInvalid(
            f"Jira checkpoint {checkpoint!r} is not an ISO 8601 time with an offset"
        )
    return moment


class JiraSource:
    """Jira Cloud as a ucf source: polls, receives webhooks, checks health."""

    schedule = PollSchedule(
        interval_seconds=120, rate_limit_rpm=100, initial_lookback_seconds=7 * 24 * 3600
    )

    def __init__(
        self, descriptor: ConnectorDescriptor, *, endpoints: AtlassianEndpoints = ATLASSIAN
    ) -> None:
        self.descriptor = descriptor
        self.webhooks = JiraWebhooks()
        self._endpoints = endpoints

    # -- auth

    def auth(
        self,
        credentials: Mapping[str, str],
        *,
        config: Mapping[str, str],
        token_client: httpx.AsyncClient,
        on_rotate: CredentialsChanged | None,
        now: Any,
        settings: HttpSettings,
    ) -> httpx.Auth:
        """Basic email:apiToken, or OAuth 2.0 (3LO) through the gateway (see ``auth.py``)."""
        return jira_auth(
            credentials,
            config=config,
            token_client=token_client,
            on_rotate=on_rotate,
            now=now,
            settings=settings,
            endpoints=self._endpoints,
        )

    # -- polling

    async def _zone(self, calls: UpstreamCalls, site: str) -> ZoneInfo | None:
        """The searching user's time zone, in which Jira reads JQL dates."""
        me = await calls.json("GET", f"{site}/rest/api/3/myself")
        name = me.get("timeZone") if isinstance(me, dict) else None
        if not isinstance(name, str) or not name:
            return None
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return None

    async def fetch_delta(
        self,
        context: SourceContext,
        checkpoint: str | None,
        *,
        now: datetime,
        max_pages: int | None = None,
    ) -> AsyncIterator[Page]:
        site, user_filter = _settings(context.config)
        if checkpoint:
            newest: datetime | None = _checkpoint_time(checkpoint)
            assert newest is not None
            since = newest - OVERLAP
        else:
            newest = None
            since = now - timedelta(seconds=self.schedule.initial_lookback_seconds)
        calls = UpstreamCalls(context)
        zone = await self._zone(calls, site)
        body: dict[str, Any] = {
            "jql": search_jql(user_filter, since, zone, now=now),
            "fields": list(FIELDS),
            "expand": "changelog",
            "maxResults": PAGE_SIZE,
        }
        url = f"{site}/rest/api/3/search/jql"
        number = 0
        tokens: set[str] = set()
        while True:
            data = await calls.json("POST", url, json=body)
            # Every search page has its 'issues', an empty list when nothing matched
            # (SearchAndReconcileResults). An answer without one is not "nothing new": it
            # is something else (a changed API, a proxy's page), so the poll fails here
            # and keeps its checkpoint, as the preview refuses it (page_items).
            if not isinstance(data, dict) or not isinstance(data.get("issues"), list):
                raise MalformedResponse(f"POST {url}: the answer has no 'issues' list")
            issues: list[Any] = data["issues"]
            for issue in issues:
                fields = issue.get("fields") if isinstance(issue, dict) else None
                updated = jira_time(fields.get("updated")) if isinstance(fields, dict) else None
                # Only a time inside the window moves the checkpoint: a future one (a
                # broken clock, a hostile site) would skip every real change until then,
                # and one before the window cannot be the newest of it.
                if updated is None or not since <= updated <= now:
                    continue
                if newest is None or updated > newest:
                    newest = updated
            found = data.get("nextPageToken")
            token = found if isinstance(found, str) and found else None
            # Stop on isLast *or* a missing token: the documentation says the last page
            # has no token, the schema says it is null; both have been seen.
            last = data.get("isLast") is True or token is None
            number += 1
            truncated = not last and max_pages is not None and number >= max_pages
            yield calls.page(
                number,
                issues,
                version_of(newest) if newest is not None else checkpoint,
                last=last or truncated,
                truncated=truncated,
            )
            if last or truncated or token is None:
                return
            if token in tokens:  # a page read already: following it would loop forever
                raise MalformedResponse(
                    f"POST {url}: Jira handed back a nextPageToken this poll already"
                    f" followed, after {number} page(s); stopped"
                )
            tokens.add(token)
            body["nextPageToken"] = token

    def normalise(self, items: Sequence[Any], *, project_id: str, now: datetime) -> MappingResult:
        return normalise_issues(list(items), project_id=project_id)

    def extract_items(self, response: Any) -> list[Any]:
        """The issues of a saved search page (or a bare array of them), for ``ucf map --poll``.

        A user saves what ``POST /rest/api/3/search/jql`` answered, an object whose
        ``issues`` the poll maps; without this the preview took only a bare array.
        """
        return page_items(response, "issues", "a Jira search page (POST /rest/api/3/search/jql)")

    # -- health

    async def health_check(self, context: SourceContext) -> HealthResult:
        """``GET /rest/api/3/myself``: the credentials work and the site answers. One
        attempt, reported, never raised."""
        started = time.monotonic()

        def elapsed() -> float:
            return (time.monotonic() - started) * 1000

        try:
            site, _ = _settings(context.config)
        except ConfigError as error:
            return HealthResult(ok=False, status=None, latency_ms=0.0, error=str(error))
        url = f"{site}/rest/api/3/myself"
        request = context.client.build_request("GET", url, timeout=HEALTH_TIMEOUT)
        try:
            response = await context.client.send(request, auth=context.auth)
        except AuthFailed as error:
            return HealthResult(False, error.status, elapsed(), str(error), "rejected")
        except RateLimited as error:
            return HealthResult(False, error.status, elapsed(), str(error), "rate_limited")
        except UpstreamError as error:
            if error.retryable:
                return HealthResult(False, error.status, elapsed(), str(error), "unavailable")
            return HealthResult(False, error.status, elapsed(), str(error), "failed")
        except httpx.TimeoutException:
            return HealthResult(False, None, elapsed(), f"GET {url}: no answer", "unavailable")
        except (httpx.TransportError, OSError) as error:
            message = f"GET {url}: connection failed ({type(error).__name__}: {error})"
            return HealthResult(False, None, elapsed(), message, "unavailable")
        latency = elapsed()
        status = response.status_code
        if status == 200:
            return HealthResult(ok=True, status=status, latency_ms=latency)
        if status in (401, 403):
            message = (
                f"GET {url}: Jira rejected the credentials (HTTP {status}); check the email and "
                "API token, or reconnect OAuth"
            )
            return HealthResult(False, status, latency, message, "rejected")
        if status == 429:
            return HealthResult(False, status, latency, f"GET {url}: rate limited", "rate_limited")
        message = f"GET {url}: HTTP {status}"
        if status >= 500:
            return HealthResult(False, status, latency, message, "unavailable")
        return HealthResult(False, status, latency, message, "failed")
