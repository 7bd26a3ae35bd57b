"""Outlook (Microsoft Graph mail) against its fake: delta poll, auth, notifications."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import pytest_asyncio

from ucf.catalogue import builtin_descriptors
from ucf.core.validation import parse_descriptor
from ucf.fakes.graph import (
    CLIENT_ID,
    CLIENT_SECRET,
    CLIENT_STATE,
    MAILBOX,
    REFRESH_TOKEN,
    TENANT,
    GraphFake,
    change_notification,
    lifecycle_notification,
)
from ucf.fakes.kit import FakeRequest, FakeResponse, FakeServer
from ucf.native import (
    AuthFailed,
    ConfigError,
    MalformedResponse,
    MappingResult,
    Page,
    UpstreamError,
)
from ucf.native.outlook.messages import SELECTED, ticket_keys, to_signals
from ucf.native.outlook.source import OutlookSource
from ucf.runtime.connection import connect
from ucf.runtime.http import HttpSettings, create_client
from ucf.runtime.native import (
    Handshake,
    MaintenanceContext,
    Refused,
    Unhandled,
    Verified,
    WebhookContext,
    WebhookRequest,
)
from ucf.runtime.sources import SourceContext
from ucf.runtime.ssrf import EgressPolicy

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SETTINGS = HttpSettings(connect_timeout=2, read_timeout=5, max_retries=2)
DESCRIPTOR = parse_descriptor(next(d for d in builtin_descriptors() if d["id"] == "outlook"))
DELTA = "/v1.0/me/mailFolders('inbox')/messages/delta"


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def fake() -> Iterator[GraphFake]:
    with GraphFake(NOW) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="function")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with create_client(SETTINGS, EgressPolicy(frozenset({"127.0.0.1"}))) as http:
        yield http


def config(fake: GraphFake, **extra: str) -> dict[str, str]:
    return {
        "baseUrl": f"{fake.base_url}/v1.0",
        "authorityUrl": fake.base_url,
        "tenant": TENANT,
        **extra,
    }


def user_credentials(**extra: str) -> dict[str, str]:
    return {
        "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET,
        "refreshToken": REFRESH_TOKEN,
        **extra,
    }


class Rotations:
    def __init__(self) -> None:
        self.saved: list[dict[str, str]] = []

    async def __call__(self, values: dict[str, str]) -> None:
        self.saved.append(dict(values))


def context_for(
    client: httpx.AsyncClient,
    fake: GraphFake,
    *,
    credentials: Mapping[str, str] | None = None,
    on_rotate: Rotations | None = None,
    sleep: Sleeps | None = None,
    **extra: str,
) -> SourceContext:
    return connect(
        OutlookSource(DESCRIPTOR),
        credentials=dict(credentials if credentials is not None else user_credentials()),
        config=config(fake, **extra),
        client=client,
        settings=SETTINGS,
        on_rotate=on_rotate,
        now=lambda: NOW,
        sleep=sleep or Sleeps(),
    )


async def poll(context: SourceContext, checkpoint: str | None, now: datetime = NOW) -> list[Page]:
    source = OutlookSource(DESCRIPTOR)
    return [page async for page in source.fetch_delta(context, checkpoint, now=now)]


def items(pages: list[Page]) -> list[dict[str, Any]]:
    return [item for page in pages for item in page.items]


# --------------------------------------------------------------------------- polling


async def test_first_poll_pages_through_the_week_with_only_the_mapped_fields(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    pages = await poll(context_for(client, fake), None)

    assert len(pages) >= 2
    assert [p.last for p in pages] == [False] * (len(pages) - 1) + [True]
    week = fake.ids_changed_since(NOW - timedelta(days=7))
    assert {item["id"] for item in items(pages)} == week
    assert week != set(fake.mailbox.messages)  # older mail stays out
    first, *rest = fake.server.requests_to(DELTA)
    assert first.param("$select") == ",".join(SELECTED)
    assert first.param("$filter") == "receivedDateTime ge 2026-02-23T09:30:00Z"
    assert first.headers["prefer"] == "odata.maxpagesize=50"
    assert set(items(pages)[0]) <= {"@odata.type", "@odata.etag", *SELECTED}
    # every later page is the previous page's nextLink, followed verbatim
    for page, request in zip(pages, rest, strict=False):
        assert page.checkpoint is not None
        assert page.checkpoint.endswith(request.target)
    assert pages[-1].checkpoint is not None
    assert "$deltatoken=" in pages[-1].checkpoint


async def test_next_poll_starts_from_the_stored_delta_link_and_brings_only_changes(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    context = context_for(client, fake)
    first = await poll(context, None)
    activity = fake.add_activity(NOW + timedelta(minutes=10))
    fake.server.reset()
    second = await poll(context, first[-1].checkpoint, NOW + timedelta(minutes=10))

    assert fake.server.requests[0].target in (first[-1].checkpoint or "")
    result = to_signals(items(second), project_id="p")
    assert {s.item_id for s in result.signals} == activity.ids
    assert result.skipped == 1  # the deleted message: an @removed entry, no signal
    assert result.errors == []
    types = {s.item_id: s.signal.type for s in result.signals}
    assert {types[i] for i in activity.new_ids} == {"email_received"}
    assert {types[i] for i in activity.changed_ids} == {"email_updated"}


async def test_a_poll_killed_between_pages_resumes_from_the_next_link(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    context = context_for(client, fake)
    source = OutlookSource(DESCRIPTOR)
    pages = [p async for p in source.fetch_delta(context, None, now=NOW, max_pages=1)]
    assert len(pages) == 1
    assert pages[0].truncated
    assert pages[0].checkpoint is not None
    assert "$skiptoken=" in pages[0].checkpoint
    rest = await poll(context, pages[0].checkpoint)
    seen = {item["id"] for item in items(pages) + items(rest)}
    assert seen == fake.ids_changed_since(NOW - timedelta(days=7))


@pytest.mark.parametrize("answer", ["gone", "sync_state_not_found"])
async def test_an_expired_delta_token_restarts_from_the_last_week_not_the_whole_mailbox(
    fake: GraphFake, client: httpx.AsyncClient, answer: Any
) -> None:
    context = context_for(client, fake)
    first = await poll(context, None)
    fake.expire_tokens(answer)
    later = NOW + timedelta(days=1)
    fake.server.reset()
    pages = await poll(context, first[-1].checkpoint, later)

    expired, restart, *_ = fake.server.requests_to(DELTA)
    assert expired.param("$deltatoken") is not None
    assert restart.param("$filter") == "receivedDateTime ge 2026-02-24T09:30:00Z"
    assert {item["id"] for item in items(pages)} == fake.ids_changed_since(
        later - timedelta(days=7)
    )
    assert pages[-1].checkpoint is not None
    assert "$deltatoken=" in pages[-1].checkpoint


async def test_a_delta_error_that_is_not_about_the_token_fails_the_poll(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    with pytest.raises(Exception, match=r"HTTP 400 \(ErrorInvalidIdMalformed\)"):
        await poll(context_for(client, fake, folder="nosuchfolder"), None)


async def test_throttling_waits_as_graph_asks_and_completes(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    fake.server.inject(fake.rate_limit_fault(7), path=DELTA, times=1)
    sleeps = Sleeps()
    pages = await poll(context_for(client, fake, sleep=sleeps), None)
    assert 7 in sleeps.calls
    assert {i["id"] for i in items(pages)} == fake.ids_changed_since(NOW - timedelta(days=7))


async def test_a_stored_checkpoint_on_another_host_is_refused_before_any_request(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    with pytest.raises(ConfigError, match="not a link on the configured Graph host"):
        await poll(context_for(client, fake), "https://evil.example/v1.0/me/messages/delta")
    assert fake.server.requests == []


async def test_a_next_link_to_another_host_is_not_followed(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    from ucf.fakes import FakeResponse, Fault

    body = {"value": [], "@odata.nextLink": "https://evil.example/steal?$skiptoken=x"}
    fake.server.inject(Fault.respond(FakeResponse.json(body)), path=DELTA, times=1)
    with pytest.raises(MalformedResponse, match="outside its own host"):
        await poll(context_for(client, fake), None)


async def test_a_next_link_back_to_a_page_already_read_fails_instead_of_looping(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    """A nextLink that names a page read already was followed until the poll's deadline,
    and stored as the checkpoint, so every later poll walked the same loop."""
    from ucf.fakes import FakeResponse, Fault

    looping = fake.server.url(f"{DELTA}?$skiptoken=loop")
    body = {"value": [], "@odata.nextLink": looping}
    fake.server.inject(Fault.respond(FakeResponse.json(body)), path=DELTA, times=5)
    pages: list[Page] = []

    async def read() -> None:
        source = OutlookSource(DESCRIPTOR)
        async for page in source.fetch_delta(context_for(client, fake), None, now=NOW):
            pages.append(page)

    with pytest.raises(MalformedResponse, match="nextLink loops"):
        await read()
    assert [page.checkpoint for page in pages] == [looping]
    assert len(fake.server.requests_to(DELTA)) == 2


# --------------------------------------------------------------------------- auth


async def test_the_rotated_refresh_token_is_persisted_before_it_is_used(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    rotations = Rotations()
    await poll(context_for(client, fake, on_rotate=rotations), None)

    assert len(rotations.saved) == 1
    rotated = rotations.saved[0]["refreshToken"]
    assert rotated != REFRESH_TOKEN
    assert rotations.saved[0]["accessToken"]
    token_call = fake.server.requests_to(f"/{TENANT}/oauth2/v2.0/token")[0]
    assert b"grant_type=refresh_token" in token_call.body
    # The next process starts from what was stored and uses the newest refresh token.
    stored = {**user_credentials(), **rotations.saved[0], "accessTokenExpiresAt": ""}
    stored.pop("accessToken")
    await poll(context_for(client, fake, credentials=stored, on_rotate=Rotations()), None)
    assert fake.used_refresh_tokens == [REFRESH_TOKEN, rotated]


async def test_bad_client_credentials_stop_the_poll_with_a_secret_free_error(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    wrong = user_credentials(clientSecret="not-the-secret-0123456789")
    with pytest.raises(AuthFailed) as caught:
        await poll(context_for(client, fake, credentials=wrong), None)
    assert "not-the-secret" not in str(caught.value)
    assert REFRESH_TOKEN not in str(caught.value)
    assert fake.server.requests_to(DELTA) == []


async def test_app_only_access_reads_the_configured_mailbox_with_the_default_scope(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    app = {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
    pages = await poll(context_for(client, fake, credentials=app, mailbox=MAILBOX), None)

    assert items(pages)
    token_call = fake.server.requests_to(f"/{TENANT}/oauth2/v2.0/token")[0]
    form = token_call.body.decode()
    assert "grant_type=client_credentials" in form
    assert "scope=" + quote(f"{fake.base_url}/.default", safe="") in form
    delta = f"/v1.0/users/{MAILBOX}/mailFolders('inbox')/messages/delta"
    assert fake.server.requests_to(delta)


async def test_app_only_access_without_a_mailbox_is_a_clear_config_error(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    with pytest.raises(ConfigError, match="set 'mailbox'"):
        context_for(client, fake, credentials={"clientId": CLIENT_ID, "clientSecret": "x"})


async def test_health_check_reads_the_folder_and_fails_clearly_on_bad_credentials(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    source = OutlookSource(DESCRIPTOR)
    good = await source.health_check(context_for(client, fake))
    assert (good.ok, good.status) == (True, 200)
    assert fake.server.requests_to("/v1.0/me/mailFolders('inbox')")
    wrong = user_credentials(clientSecret="nope-nope-nope")
    bad = await source.health_check(context_for(client, fake, credentials=wrong))
    assert not bad.ok
    assert bad.failure == "rejected"


# --------------------------------------------------------------------------- mapping


def test_ticket_keys_in_a_subject() -> None:
    assert ticket_keys("Re: OPS-412 and #881, not abc-1 or X-1 or #") == ["OPS-412", "#881"]
    assert ticket_keys("RE: [JIRA] (PAY-77) refunds failing; see PAY-77") == ["PAY-77"]


def test_a_message_maps_to_subject_preview_priority_people_tags_and_tickets() -> None:
    message = {
        "id": "AAMk-1",
        "subject": "Checkout down (OPS-412)",
        "bodyPreview": "Hi team, <b>checkout</b> is down",
        "importance": "high",
        "from": {"emailAddress": {"name": "A", "address": "A@Contoso.example"}},
        "toRecipients": [{"emailAddress": {"address": "triage@contoso.example"}}],
        "ccRecipients": [],
        "categories": ["Red category"],
        "flag": {"flagStatus": "flagged"},
        "receivedDateTime": "2026-03-02T09:00:00Z",
        "createdDateTime": "2026-03-02T09:00:00Z",
        "lastModifiedDateTime": "2026-03-02T09:00:04Z",
    }
    [signal] = to_signals([message], project_id="p").signals
    wire = signal.wire
    assert (wire["type"], wire["summary"], wire["timestamp"]) == (
        "email_received",
        "Checkout down (OPS-412)",
        "2026-03-02T09:00:00.000Z",
    )
    assert wire["raw"]["text"] == "Hi team, <b>checkout</b> is down"
    assert wire["metadata"] == {
        "priority": "high",
        "participants": ["a@contoso.example", "triage@contoso.example"],
        "relatedTickets": ["OPS-412"],
        "tags": ["Red category", "flagged"],
    }
    read = {**message, "isRead": True, "lastModifiedDateTime": "2026-03-02T11:00:00Z"}
    [arrival, later] = to_signals([read], project_id="p").signals
    assert arrival.dedup_key == signal.dedup_key  # the one arrival, a duplicate once stored
    assert later.wire["type"] == "email_updated"
    assert later.dedup_key != signal.dedup_key


def test_a_message_first_seen_once_settled_is_received_then_updated() -> None:
    """Read 10 minutes after it arrived, and only then seen (a poll-only instance polling
    every 15 minutes): it was ``email_updated`` alone, and the agent never heard the mail
    arrive. Its arrival is named too (dropped as a duplicate if already stored), within
    7 days of it; a change later than that is only the change."""
    message = {
        "id": "AAMk-2",
        "subject": "Refund request",
        "receivedDateTime": "2026-03-02T09:00:00Z",
        "createdDateTime": "2026-03-02T09:00:00Z",
        "lastModifiedDateTime": "2026-03-02T09:10:00Z",
    }
    signals = to_signals([message], project_id="p").signals
    assert [(s.wire["type"], s.wire["timestamp"]) for s in signals] == [
        ("email_received", "2026-03-02T09:00:00.000Z"),
        ("email_updated", "2026-03-02T09:10:00.000Z"),
    ]
    fresh = {**message, "lastModifiedDateTime": "2026-03-02T09:00:03Z"}
    assert to_signals([fresh], project_id="p").signals[0].dedup_key == signals[0].dedup_key
    old = {**message, "lastModifiedDateTime": "2026-03-09T09:00:01Z"}
    assert [s.wire["type"] for s in to_signals([old], project_id="p").signals] == ["email_updated"]


def test_removed_and_broken_items_are_not_signals() -> None:
    result = to_signals(
        [{"id": "gone", "@removed": {"reason": "deleted"}}, {"id": "x"}, "junk"], project_id="p"
    )
    assert result.signals == []
    assert result.skipped == 1
    assert [e.reason for e in result.errors] == [
        "the message has no usable lastModifiedDateTime",
        "the item is not a JSON object",
    ]


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_outside_datetimes_range_in_utc_is_an_item_error_not_a_crash(when: str) -> None:
    """Converting such a time to UTC raised OverflowError out of normalise: the whole
    page (and the poll) failed inside ucf instead of one item being reported."""
    fine = {"id": "ok", "lastModifiedDateTime": "2026-03-02T09:00:00Z", "subject": "fine"}
    bad = {"id": "bad", "lastModifiedDateTime": when, "receivedDateTime": when}
    result = to_signals([bad, fine], project_id="p")
    assert [s.item_id for s in result.signals] == ["ok"]
    assert [e.reason for e in result.errors] == ["the message has no usable lastModifiedDateTime"]


# --------------------------------------------------------------------------- notifications


def webhook_context(
    client: httpx.AsyncClient, fake: GraphFake, credentials: Mapping[str, str]
) -> WebhookContext:
    async def upstream() -> SourceContext:
        return context_for(client, fake)

    return WebhookContext(
        project_id="p",
        connector_id="outlook",
        credentials=credentials,
        config=config(fake),
        now=NOW,
        upstream=upstream,
    )


def delivery(body: Any = None, query: Mapping[str, str] | None = None) -> WebhookRequest:
    import json

    raw = b"" if body is None else json.dumps(body).encode()
    return WebhookRequest("POST", raw, {"content-type": "application/json"}, dict(query or {}))


async def test_the_validation_handshake_echoes_the_token_as_plain_text(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    handler = OutlookSource(DESCRIPTOR).webhooks
    token = "Validation: Testing client application reachability <&> for subscription"
    verdict = await handler.verify(
        delivery(query={"validationToken": token}),
        webhook_context(client, fake, {}),
    )
    assert isinstance(verdict, Handshake)
    assert verdict.response.status == 200
    assert verdict.response.media_type == "text/plain"
    assert verdict.response.body == token.encode()


@pytest.mark.parametrize(
    ("stored", "sent", "code"),
    [
        (CLIENT_STATE, "guessed-" + CLIENT_STATE, "token_mismatch"),
        (CLIENT_STATE, None, "token_mismatch"),
        ("", CLIENT_STATE, "missing_secret"),
    ],
)
async def test_notifications_without_the_instances_client_state_are_refused(
    fake: GraphFake, client: httpx.AsyncClient, stored: str, sent: str | None, code: str
) -> None:
    message_id = next(iter(fake.mailbox.messages))
    good = change_notification(
        message_id, "created", client_state=CLIENT_STATE, subscription_id="s", expires=NOW
    )
    bad = {**good, "clientState": sent} if sent is not None else dict(good)
    if sent is None:
        bad.pop("clientState")
    handler = OutlookSource(DESCRIPTOR).webhooks
    verdict = await handler.verify(
        delivery({"value": [good, bad]}),
        webhook_context(client, fake, {"clientState": stored}),
    )
    assert isinstance(verdict, Refused)
    assert verdict.code == code


async def test_a_body_nested_too_deeply_is_refused_not_a_crash(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    """Verification reads the body before anything is verified: a stranger's body
    nested past json's recursion limit is refused, not an error answered with a 500."""
    deep = b"[" * 10_000 + b"]" * 10_000
    handler = OutlookSource(DESCRIPTOR).webhooks
    request = WebhookRequest("POST", deep, {"content-type": "application/json"}, {})
    verdict = await handler.verify(request, webhook_context(client, fake, {"clientState": "x"}))
    assert isinstance(verdict, Refused)
    assert verdict.code == "missing_header"


async def test_a_notification_and_the_next_poll_make_the_same_signal(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    context = context_for(client, fake)
    first = await poll(context, None)
    activity = fake.add_activity(NOW + timedelta(minutes=1))
    [new_id, *_] = sorted(activity.new_ids)
    handler = OutlookSource(DESCRIPTOR).webhooks
    body = {"value": [fake.notification(new_id, client_state=CLIENT_STATE)]}
    ctx = webhook_context(client, fake, {"clientState": CLIENT_STATE})
    assert isinstance(await handler.verify(delivery(body), ctx), Verified)
    pushed = await handler.signals(delivery(body), ctx)
    polled = to_signals(items(await poll(context, first[-1].checkpoint)), project_id="p")

    assert isinstance(pushed, MappingResult)
    [signal] = pushed.signals
    assert signal.wire["type"] == "email_received"
    assert signal.dedup_key in {s.dedup_key for s in polled.signals}
    fetched = fake.server.requests_to(f"/v1.0/me/messages/{new_id}")[0]
    assert fetched.param("$select") == ",".join(SELECTED)


# --------------------------------------------------------------------------- subscriptions

HOOK_PATH = "/api/webhooks/outlook/p/Qm9vdHN0cmFwIGhvb2sgaWQgZm9yIHRlc3Rz"


class Receiver:
    """A stand-in for ucf's gateway at the instance's hook URL: answers Graph's
    validation request as documented (or not, to see creation fail)."""

    def __init__(self) -> None:
        self.server = FakeServer()
        self.answer = "echo"
        self.server.add_route("POST", HOOK_PATH, self._receive)
        self.server.add_route("POST", HOOK_PATH + "-new", self._receive)

    def _receive(self, request: FakeRequest) -> FakeResponse:
        token = request.param("validationToken") or ""
        if self.answer == "json":
            return FakeResponse.json({"validationToken": token})
        if self.answer == "refuse":
            return FakeResponse(status=404)
        return FakeResponse.text(token)

    @property
    def url(self) -> str:
        return self.server.base_url + HOOK_PATH


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    with hook.server:
        yield hook


class Saved:
    def __init__(self) -> None:
        self.calls: list[dict[str, str | None]] = []

    async def __call__(self, updates: Mapping[str, str | None]) -> None:
        self.calls.append(dict(updates))

    @property
    def merged(self) -> dict[str, str | None]:
        merged: dict[str, str | None] = {}
        for call in self.calls:
            merged.update(call)
        return merged


def maintenance(
    client: httpx.AsyncClient,
    fake: GraphFake,
    saved: Saved,
    *,
    url: str | None,
    **credentials: str,
) -> MaintenanceContext:
    async def upstream() -> SourceContext:
        return context_for(client, fake)

    return MaintenanceContext(
        project_id="p",
        connector_id="outlook",
        config=config(fake),
        credentials=user_credentials(**credentials),
        upstream=upstream,
        webhook_url=url,
        save_credentials=saved,
        now=NOW,
    )


async def test_maintenance_creates_the_subscription_after_storing_a_fresh_client_state(
    fake: GraphFake, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    saved = Saved()
    done = await OutlookSource(DESCRIPTOR).maintain(
        maintenance(client, fake, saved, url=receiver.url)
    )

    assert done == "subscription created"
    [subscription] = fake.subscriptions.values()
    first = saved.calls[0]
    assert list(first) == ["clientState"]  # stored before Graph can send a notification
    assert subscription.client_state == first["clientState"]
    assert len(subscription.client_state or "") >= 32
    assert subscription.notification_url == receiver.url
    assert subscription.lifecycle_url == receiver.url
    assert subscription.resource == "me/mailFolders('inbox')/messages"
    assert subscription.change_type == "created,updated"
    assert saved.merged["subscriptionId"] == subscription.id
    assert subscription.expires - NOW > timedelta(days=2)


async def test_maintenance_renews_a_subscription_before_it_expires(
    fake: GraphFake, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    source = OutlookSource(DESCRIPTOR)
    saved = Saved()
    await source.maintain(maintenance(client, fake, saved, url=receiver.url))
    [subscription] = fake.subscriptions.values()
    subscription.expires = NOW + timedelta(hours=3)
    stored = {k: v for k, v in saved.merged.items() if v is not None}
    stored["subscriptionExpiresAt"] = subscription.expires.isoformat()

    again = Saved()
    done = await source.maintain(maintenance(client, fake, again, url=receiver.url, **stored))

    assert done == "subscription renewed"
    assert list(fake.subscriptions) == [subscription.id]
    assert subscription.expires - NOW > timedelta(days=2)
    assert again.merged["subscriptionExpiresAt"] is not None


async def test_maintenance_leaves_a_current_subscription_alone_and_recreates_a_lost_one(
    fake: GraphFake, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    source = OutlookSource(DESCRIPTOR)
    saved = Saved()
    await source.maintain(maintenance(client, fake, saved, url=receiver.url))
    stored = {k: v for k, v in saved.merged.items() if v is not None}

    assert await source.maintain(
        maintenance(client, fake, Saved(), url=receiver.url, **stored)
    ) == ("subscription is current")
    assert not [r for r in fake.server.requests if r.method == "PATCH"]

    fake.subscriptions.clear()  # Graph removed it (subscriptionRemoved)
    again = Saved()
    assert await source.maintain(maintenance(client, fake, again, url=receiver.url, **stored)) == (
        "subscription recreated"
    )
    [recreated] = fake.subscriptions.values()
    assert recreated.client_state == stored["clientState"]
    assert again.merged["subscriptionId"] == recreated.id != stored["subscriptionId"]


class CrashBeforeTheIdIsSaved(Saved):
    """A save that fails once Graph made the subscription: the process died in between."""

    async def __call__(self, updates: Mapping[str, str | None]) -> None:
        if "subscriptionId" in updates:
            raise RuntimeError("killed before the subscription id was stored")
        await super().__call__(updates)


async def test_a_subscription_left_over_by_a_crash_is_deleted_before_the_next_is_made(
    fake: GraphFake, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    source = OutlookSource(DESCRIPTOR)
    crashed = CrashBeforeTheIdIsSaved()
    with pytest.raises(RuntimeError, match="killed"):
        await source.maintain(maintenance(client, fake, crashed, url=receiver.url))
    [left_over] = fake.subscriptions  # made at Graph, unknown to the instance
    fake.subscriptions_page_size = 1  # the list is read across pages
    fake.subscriptions["elsewhere"] = replace(
        fake.subscriptions[left_over], id="elsewhere", notification_url=receiver.url + "-other"
    )
    stored = {k: v for k, v in crashed.merged.items() if v is not None}
    before = len(fake.server.requests)

    again = Saved()
    done = await source.maintain(maintenance(client, fake, again, url=receiver.url, **stored))

    assert done == "subscription created"
    kept = again.merged["subscriptionId"]
    assert kept is not None
    assert sorted(fake.subscriptions) == sorted([kept, "elsewhere"])  # another URL's is not ours
    assert kept != left_over
    since = [
        (r.method, r.path) for r in fake.server.requests[before:] if "/subscriptions" in r.path
    ]
    assert since[:3] == [
        ("GET", "/v1.0/subscriptions"),  # two pages of one: both read
        ("GET", "/v1.0/subscriptions"),
        ("DELETE", f"/v1.0/subscriptions/{left_over}"),
    ]


async def test_without_a_public_url_maintenance_does_nothing(
    fake: GraphFake, client: httpx.AsyncClient
) -> None:
    saved = Saved()
    done = await OutlookSource(DESCRIPTOR).maintain(maintenance(client, fake, saved, url=None))
    assert done == "no public webhook URL: polling only"
    assert fake.server.requests == []
    assert saved.calls == []


async def test_graph_validates_both_urls_before_it_creates_the_subscription(
    fake: GraphFake, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await OutlookSource(DESCRIPTOR).maintain(maintenance(client, fake, Saved(), url=receiver.url))

    assert [(v.url, v.status, v.passed) for v in fake.validations] == [
        (receiver.url, 200, True),
        (receiver.url, 200, True),
    ]
    tokens = [r.param("validationToken") or "" for r in receiver.server.requests]
    assert tokens == [v.token for v in fake.validations]  # sent decoded, echoed as sent
    assert all(t.startswith("Validation: Testing client application reachability") for t in tokens)


@pytest.mark.parametrize("answer", ["json", "refuse"])
async def test_no_subscription_when_the_hook_url_does_not_answer_the_validation(
    fake: GraphFake, client: httpx.AsyncClient, receiver: Receiver, answer: str
) -> None:
    receiver.answer = answer
    saved = Saved()
    with pytest.raises(UpstreamError, match="400"):
        await OutlookSource(DESCRIPTOR).maintain(maintenance(client, fake, saved, url=receiver.url))
    assert fake.subscriptions == {}
    assert [v.passed for v in fake.validations] == [False]
    assert "subscriptionId" not in saved.merged


async def test_a_new_webhook_url_moves_the_subscription_there(
    fake: GraphFake, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    source = OutlookSource(DESCRIPTOR)
    saved = Saved()
    await source.maintain(maintenance(client, fake, saved, url=receiver.url))
    stored = {k: v for k, v in saved.merged.items() if v is not None}
    assert stored["subscriptionUrl"] == receiver.url

    again = Saved()
    moved = receiver.url + "-new"  # the operator issued a new webhook URL
    done = await source.maintain(maintenance(client, fake, again, url=moved, **stored))

    assert done == "subscription moved to the instance's webhook URL"
    [subscription] = fake.subscriptions.values()
    assert subscription.id != stored["subscriptionId"]
    assert subscription.notification_url == moved
    assert subscription.client_state == stored["clientState"]
    assert again.merged["subscriptionUrl"] == moved
    assert [
        r.method for r in fake.server.requests_to(f"/v1.0/subscriptions/{stored['subscriptionId']}")
    ] == ["DELETE"]


@pytest.mark.parametrize(
    ("event", "polls"),
    [("missed", 1), ("subscriptionRemoved", 1), ("reauthorizationRequired", 0)],
)
async def test_missed_notifications_ask_for_a_catch_up_poll(
    fake: GraphFake, client: httpx.AsyncClient, event: str, polls: int
) -> None:
    requested: list[str] = []

    async def request_poll(reason: str) -> None:
        requested.append(reason)

    async def upstream() -> SourceContext:
        return context_for(client, fake)

    ctx = WebhookContext(
        "p",
        "outlook",
        {"clientState": CLIENT_STATE},
        config(fake),
        NOW,
        upstream,
        request_poll=request_poll,
    )
    body = {
        "value": [
            lifecycle_notification(
                event, client_state=CLIENT_STATE, subscription_id="s", expires=NOW
            )
        ]
    }
    handler = OutlookSource(DESCRIPTOR).webhooks
    assert isinstance(await handler.verify(delivery(body), ctx), Verified)
    result = await handler.signals(delivery(body), ctx)

    assert isinstance(result, Unhandled)
    assert len(requested) == polls
    if polls:
        assert event in requested[0]
