"""Keeping one Graph subscription alive per instance
(https://learn.microsoft.com/graph/api/resources/subscription).

Mail subscriptions expire (Microsoft documents 4,230 minutes in older pages
and up to 10,080 in newer ones; ucf asks for :data:`LIFETIME`, valid under
both). :func:`maintain` runs from the scheduler: it creates the subscription
once the instance has a public webhook URL, checks that it still exists
(Graph removes subscriptions, and says so with ``subscriptionRemoved``),
renews it when less than :data:`RENEW_BEFORE` is left and recreates a lost
one. The ``clientState`` is a random value chosen here and stored in the
instance's secrets *before* the subscription exists, so the first
notification already verifies.

The subscription points at the instance's own webhook URL
(``/api/webhooks/outlook/{projectId}/{hookId}``), remembered as
``subscriptionUrl``: when an operator issues a new URL the old subscription is
deleted and one for the new URL created, so Graph never posts to a URL that
answers 404. Graph validates the URL while it creates the subscription (the
``validationToken`` request, answered by the gateway), so the gateway must be
reachable at that moment.

**Left-over subscriptions.** A crash between Graph's answer to ``POST
/subscriptions`` and the save of its id leaves a subscription nobody renews,
posting to the instance's URL until it expires. Before it creates one,
:func:`maintain` therefore lists the app's subscriptions (``GET
/subscriptions``, https://learn.microsoft.com/graph/api/subscription-list) and
deletes those that post to this instance's URL (or the URL it had), so an
instance never has more than the one it knows.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from ucf.native import MaintenanceContext, MalformedResponse, UpstreamCalls, parse_json
from ucf.native.outlook.mailbox import Mailbox

__all__ = ["LIFETIME", "RENEW_BEFORE", "create", "maintain", "renew"]

LIFETIME: Final = timedelta(minutes=4200)
RENEW_BEFORE: Final = timedelta(hours=24)
MAX_LIST_PAGES: Final = 50
"""Graph caps an app at 1,000 mail subscriptions per mailbox; 50 pages is far past it."""
SUBSCRIPTION_ID: Final = "subscriptionId"
SUBSCRIPTION_EXPIRES: Final = "subscriptionExpiresAt"
SUBSCRIPTION_URL: Final = "subscriptionUrl"
CLIENT_STATE: Final = "clientState"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _subscription(response_body: Any) -> dict[str, Any]:
    if not isinstance(response_body, dict) or not isinstance(response_body.get("id"), str):
        raise MalformedResponse("Graph's subscription answer has no id")
    return response_body


async def create(
    calls: UpstreamCalls, mailbox: Mailbox, *, url: str, client_state: str, now: datetime
) -> dict[str, Any]:
    """``POST /subscriptions`` for created and updated messages of the folder; lifecycle
    notifications go to the same URL. Graph validates the URL before it answers."""
    body = {
        "changeType": "created,updated",
        "notificationUrl": url,
        "lifecycleNotificationUrl": url,
        "resource": mailbox.resource,
        "expirationDateTime": _iso(now + LIFETIME),
        "clientState": client_state,
    }
    return _subscription(await calls.json("POST", mailbox.subscriptions_url, json=body))


async def renew(
    calls: UpstreamCalls, mailbox: Mailbox, subscription_id: str, *, now: datetime
) -> dict[str, Any] | None:
    """``PATCH`` a new expiry; None when Graph no longer has the subscription (404)."""
    response = await calls.send(
        "PATCH",
        f"{mailbox.subscriptions_url}/{subscription_id}",
        json={"expirationDateTime": _iso(now + LIFETIME)},
        accept=(404,),
    )
    if response.status_code == 404:
        return None
    return _subscription(parse_json(response))


async def _exists(calls: UpstreamCalls, mailbox: Mailbox, subscription_id: str) -> bool:
    response = await calls.send(
        "GET", f"{mailbox.subscriptions_url}/{subscription_id}", accept=(404,)
    )
    return response.status_code != 404


async def _delete(calls: UpstreamCalls, mailbox: Mailbox, subscription_id: str) -> None:
    """``DELETE`` a subscription; one Graph already forgot (404) is fine."""
    await calls.send("DELETE", f"{mailbox.subscriptions_url}/{subscription_id}", accept=(404,))


async def _left_over(calls: UpstreamCalls, mailbox: Mailbox, urls: set[str]) -> list[str]:
    """The ids of the app's subscriptions posting to one of ``urls``, every page read.

    ``@odata.nextLink`` is followed only on Graph's own origin: a link
    elsewhere would send the bearer token with it.
    """
    found: list[str] = []
    page_url: str | None = mailbox.subscriptions_url
    for _ in range(MAX_LIST_PAGES):
        if page_url is None:
            break
        page = await calls.json("GET", page_url)
        listed = page.get("value") if isinstance(page, dict) else None
        if not isinstance(listed, list):
            raise MalformedResponse("Graph's subscription list has no value array")
        found += [
            item["id"]
            for item in listed
            if isinstance(item, dict)
            and item.get("notificationUrl") in urls
            and isinstance(item.get("id"), str)
        ]
        link = page.get("@odata.nextLink")
        page_url = link if isinstance(link, str) and _same_origin(link, mailbox.base_url) else None
    return found


def _same_origin(url: str, base: str) -> bool:
    one, other = urlsplit(url), urlsplit(base)
    return (one.scheme, one.netloc) == (other.scheme, other.netloc)


async def maintain(mailbox: Mailbox, context: MaintenanceContext) -> str:
    """Create, renew or recreate the instance's subscription; says what it did."""
    url = context.webhook_url
    if url is None:
        return "no public webhook URL: polling only"
    credentials = context.credentials
    now = context.now
    calls = UpstreamCalls(await context.upstream())
    client_state = credentials.get(CLIENT_STATE) or ""
    if not client_state:
        client_state = secrets.token_urlsafe(32)  # 43 characters; Graph allows 128
        await context.save_credentials({CLIENT_STATE: client_state})
    subscription_id = credentials.get(SUBSCRIPTION_ID) or ""
    expires = _moment(credentials.get(SUBSCRIPTION_EXPIRES))
    action = "created"
    found: dict[str, Any] | None = None
    if subscription_id and credentials.get(SUBSCRIPTION_URL) != url:
        await _delete(calls, mailbox, subscription_id)  # it posts to a URL no longer ours
        subscription_id, action = "", "moved to the instance's webhook URL"
    if subscription_id:
        if expires is not None and expires - now > RENEW_BEFORE:
            if await _exists(calls, mailbox, subscription_id):
                return "subscription is current"
            action = "recreated"
        else:
            found = await renew(calls, mailbox, subscription_id, now=now)
            action = "renewed" if found is not None else "recreated"
    if found is None:
        urls = {url, credentials.get(SUBSCRIPTION_URL) or url}
        for left_over in await _left_over(calls, mailbox, urls):
            await _delete(calls, mailbox, left_over)
        found = await create(calls, mailbox, url=url, client_state=client_state, now=now)
    await context.save_credentials(
        {
            SUBSCRIPTION_ID: found["id"],
            SUBSCRIPTION_EXPIRES: str(found.get("expirationDateTime") or _iso(now + LIFETIME)),
            SUBSCRIPTION_URL: url,
        }
    )
    return f"subscription {action}"
