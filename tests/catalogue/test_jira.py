"""Jira Cloud beyond the battery: JQL windows in the user's zone, one signal per change
whichever way it arrives, OAuth 3LO with rotating refresh tokens, ADF text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.catalogue.conftest import Harness, RecordingSleep, descriptor_of, webhook_url
from tests.catalogue.profiles import NativeProfile
from ucf.fakes import FakeResponse, Fault
from ucf.fakes import jira as fake_jira
from ucf.fakes.jira import JiraFake, JiraScenario, compile_jql
from ucf.fakes.scenario import WebhookDelivery, WebhookSample
from ucf.native import (
    AuthFailed,
    CheckpointInvalid,
    ConfigError,
    MalformedResponse,
    WebhookContext,
    WebhookRequest,
)
from ucf.native.jira.adf import plain_text
from ucf.native.jira.auth import AtlassianEndpoints
from ucf.native.jira.signals import normalise_issues
from ucf.native.jira.source import JiraSource, search_jql
from ucf.runtime.connection import connect


def _profile(harness: Harness) -> NativeProfile:
    profile = harness.profile("jira")
    assert isinstance(profile, NativeProfile)
    return profile


def _jira_fake(profile: NativeProfile, now: datetime) -> JiraFake:
    fake = profile.scenario.fake(now)
    assert isinstance(fake, JiraFake)
    return fake


def _searches(fake: JiraFake) -> list[dict[str, Any]]:
    return [r.json() for r in fake.server.requests_to("/rest/api/3/search/jql")]


# --------------------------------------------------------------------------- polling


async def test_the_poll_writes_its_window_in_the_jira_users_time_zone(
    harness: Harness, now: datetime
) -> None:
    profile = _profile(harness)
    with _jira_fake(profile, now) as fake:
        first = await profile.poll(fake, checkpoint=None, now=now)
        searches = _searches(fake)
    assert first.checkpoint is not None
    jql = str(searches[0]["jql"])
    since = (now - timedelta(days=7)).astimezone(ZoneInfo(fake_jira.ZONE_NAME))
    assert jql == f'(project = OPS) AND updated >= "{since:%Y-%m-%d %H:%M}" ORDER BY updated ASC'
    assert searches[0]["expand"] == "changelog"
    assert {"updated", "status", "comment", "priority"} <= set(searches[0]["fields"])
    assert not fake.server.requests_to("/rest/api/3/search"), "the removed search is never used"


async def test_a_change_just_after_the_checkpoint_in_the_same_minute_is_not_missed(
    harness: Harness, now: datetime
) -> None:
    """JQL dates are whole minutes: the window must start before the checkpoint's minute."""
    profile = _profile(harness)
    with _jira_fake(profile, now) as fake:
        first = await profile.poll(fake, checkpoint=None, now=now)
        newest = max(i.updated for i in fake.data.issues.values() if i.project == "OPS")
        issue = next(i for i in fake.data.issues.values() if i.project == "OPS")
        fake.data.transition(issue, "Done", newest + timedelta(milliseconds=1))
        second = await profile.poll(fake, checkpoint=first.checkpoint, now=now)
    fresh = [s for s in second.signals if s.dedup_key not in first.keys]
    assert [(s.item_id, s.signal.type) for s in fresh] == [(str(issue.id), "issue_status_changed")]


async def test_a_change_the_search_index_shows_late_is_caught_by_the_overlap(
    harness: Harness, now: datetime
) -> None:
    """Jira's search is eventually consistent: an edit made a minute before the newest one
    seen may only become visible after the checkpoint moved past it."""
    profile = _profile(harness)
    with _jira_fake(profile, now) as fake:
        newest = max(i.updated for i in fake.data.issues.values() if i.project == "OPS")
        hidden = fake.data.create("OPS", "Indexed late", newest - timedelta(seconds=70))
        fake.data.issues.pop(hidden.id)  # not in the index yet
        first = await profile.poll(fake, checkpoint=None, now=now)
        fake.data.issues[hidden.id] = hidden  # the index catches up
        second = await profile.poll(fake, checkpoint=first.checkpoint, now=now)
    assert str(hidden.id) not in first.item_ids
    assert str(hidden.id) in second.item_ids
    assert second.checkpoint == first.checkpoint  # nothing newer: the checkpoint holds


async def test_issues_seen_again_in_the_overlap_keep_their_identity(
    harness: Harness, now: datetime
) -> None:
    profile = _profile(harness)
    with _jira_fake(profile, now) as fake:
        first = await profile.poll(fake, checkpoint=None, now=now)
        again = await profile.poll(fake, checkpoint=first.checkpoint, now=now)
    assert again.signals, "the overlap re-reads the last two minutes"
    assert again.keys <= first.keys, "re-read issues must dedupe against the first poll"


async def test_a_429_waits_for_jiras_retry_after(harness: Harness, now: datetime) -> None:
    profile = _profile(harness)
    sleep = RecordingSleep()
    with _jira_fake(profile, now) as fake:
        fake.server.inject(fake.rate_limit_fault(retry_after=7), path=fake.poll_route, times=1)
        poll = await profile.poll(fake, checkpoint=None, now=now, sleep=sleep)
    assert 7 in [round(s) for s in sleep.calls]
    assert sum(p.rate_limit_waits for p in poll.pages) == 1


async def test_a_last_page_without_a_token_ends_the_poll_even_without_is_last(
    harness: Harness, now: datetime
) -> None:
    profile = _profile(harness)
    with _jira_fake(profile, now) as fake:
        fake.server.inject(
            Fault.respond(FakeResponse.json({"issues": []})),
            path=fake.poll_route,
        )
        poll = await profile.poll(fake, checkpoint=None, now=now)
    assert len(poll.pages) == 1
    assert poll.pages[0].last


def _hostile_issue(issue_id: int, updated: str) -> dict[str, Any]:
    return {"id": str(issue_id), "key": f"OPS-{issue_id}", "fields": {"updated": updated}}


@pytest.mark.parametrize(
    "hostile",
    [
        ["2099-01-01T00:00:00.000+0000"],
        ["0001-01-01T00:00:00.000+0100", "9999-12-31T23:59:59.000-0100"],
    ],
    ids=["future", "out-of-range"],
)
async def test_an_updated_time_in_the_future_or_out_of_range_never_moves_the_checkpoint(
    harness: Harness, now: datetime, hostile: list[str]
) -> None:
    """A future ``updated`` (a broken clock, a hostile site) became the checkpoint: the
    next window started in 2099 and every real change until then was skipped. A time
    whose offset pushes it outside datetime's range raised OverflowError, a crash."""
    profile = _profile(harness)
    real = (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    issues = [_hostile_issue(1, real), *(_hostile_issue(2, when) for when in hostile)]
    with _jira_fake(profile, now) as fake:
        fake.server.inject(
            Fault.respond(FakeResponse.json({"issues": issues, "isLast": True})),
            path=fake.poll_route,
        )
        poll = await profile.poll(fake, checkpoint=None, now=now)
    assert poll.checkpoint == real.replace(".000+0000", ".000Z")


async def test_a_next_page_token_that_comes_back_fails_the_poll_instead_of_looping(
    harness: Harness, now: datetime
) -> None:
    """Jira answering the same ``nextPageToken`` again was followed until the poll's
    deadline, one request per page, every poll."""
    profile = _profile(harness)
    page = {"issues": [], "isLast": False, "nextPageToken": "CAEaAggD"}
    with _jira_fake(profile, now) as fake:
        fake.server.inject(Fault.respond(FakeResponse.json(page)), path=fake.poll_route, times=5)
        with pytest.raises(MalformedResponse, match="nextPageToken this poll already followed"):
            await profile.poll(fake, checkpoint=None, now=now)
        assert len(fake.server.requests_to(fake.poll_route)) == 2


async def test_a_checkpoint_too_early_for_the_overlap_is_refused_not_a_crash(
    harness: Harness, now: datetime
) -> None:
    profile = _profile(harness)
    with _jira_fake(profile, now) as fake, pytest.raises(CheckpointInvalid):
        await profile.poll(fake, checkpoint="0001-01-01T00:00:00.000Z", now=now)


def test_the_users_filter_is_bracketed_so_its_or_cannot_widen_the_window() -> None:
    since = datetime(2026, 3, 1, 10, 30, tzinfo=ZoneInfo("UTC"))
    jql = search_jql(
        "project = OPS OR project = SUP", since, ZoneInfo("America/St_Johns"), now=since
    )
    assert jql == (
        '(project = OPS OR project = SUP) AND updated >= "2026-03-01 07:00" ORDER BY updated ASC'
    )
    predicate, _ = compile_jql(jql, since)
    assert callable(predicate)


def test_without_a_known_zone_the_window_is_relative() -> None:
    now = datetime(2026, 3, 1, 10, 30, tzinfo=ZoneInfo("UTC"))
    assert search_jql("", now - timedelta(minutes=90), None, now=now) == (
        'updated >= "-91m" ORDER BY updated ASC'
    )


async def test_a_filter_with_its_own_order_by_is_refused_before_any_request(
    harness: Harness, now: datetime
) -> None:
    profile = _profile(harness)
    with _jira_fake(profile, now) as fake:
        source = profile.source()
        context = connect(
            source,
            credentials=profile.scenario.credentials(),
            config={"siteUrl": fake.base_url, "jql": "project = OPS ORDER BY key"},
            client=harness.client,
        )
        with pytest.raises(ConfigError, match="ORDER BY"):
            async for _ in source.fetch_delta(context, None, now=now):
                pass
        assert fake.server.requests == []


# --------------------------------------------------------------------------- one change, one signal


async def test_a_change_seen_by_the_poll_and_by_its_webhook_is_one_signal(
    harness: Harness, now: datetime
) -> None:
    profile = _profile(harness)
    scenario = profile.scenario
    assert isinstance(scenario, JiraScenario)
    with scenario.fake(now) as fake:
        samples = fake_jira.webhook_samples(fake.data, now + timedelta(minutes=1))
        poll = await profile.poll(fake, checkpoint=None, now=now + timedelta(minutes=2))
    by_webhook = []
    for sample in samples:
        delivered = await profile.deliver(
            scenario.sign(sample, url=webhook_url("jira"), at=now), now
        )
        by_webhook += delivered.signals
    pushed = {s.dedup_key: s.signal.type for s in by_webhook}
    polled = {s.dedup_key: s.signal.type for s in poll.signals}
    shared = set(pushed) & set(polled)
    # Every change the poll can see (all but the deletion) is the same signal both ways.
    assert sorted(pushed[k] for k in shared) == sorted(
        t for t in pushed.values() if t != "issue_deleted"
    )
    assert all(pushed[k] == polled[k] for k in shared)


async def test_unsigned_deliveries_are_refused_unless_the_user_chose_to_accept_them(
    harness: Harness, now: datetime
) -> None:
    profile = _profile(harness)
    sample = profile.scenario.webhook_samples()[0]
    unsigned = fake_jira.sign_delivery(sample, url=webhook_url("jira"), secret=None)
    without_secret = {"email": fake_jira.GOOD_EMAIL, "apiToken": fake_jira.GOOD_TOKEN}
    refused = await profile.check(unsigned, now, without_secret)
    assert refused.code == "missing_secret"
    handler = profile.handler

    async def no_upstream() -> object:
        raise AssertionError("verification needs no upstream")

    accepting = WebhookContext(
        project_id="p",
        connector_id="jira",
        credentials=without_secret,
        config={"siteUrl": "https://acme.atlassian.net", "unsignedWebhooks": "accept"},
        now=now,
        upstream=no_upstream,
    )
    request = WebhookRequest("POST", unsigned.body, unsigned.headers)
    assert type(await handler.verify(request, accepting)).__name__ == "Verified"
    # With a secret set, "accept" does not lower the bar: an unsigned delivery is refused.
    signed_instance = WebhookContext(
        project_id="p",
        connector_id="jira",
        credentials={**without_secret, "webhookSecret": fake_jira.WEBHOOK_SECRET},
        config={"siteUrl": "https://acme.atlassian.net", "unsignedWebhooks": "accept"},
        now=now,
        upstream=no_upstream,
    )
    verdict = await handler.verify(request, signed_instance)
    assert getattr(verdict, "code", None) == "missing_header"


async def test_atlassians_published_signature_example_verifies(
    harness: Harness, now: datetime
) -> None:
    """https://developer.atlassian.com/cloud/jira/platform/webhooks/#secure-admin-webhooks:
    secret "It's a Secret to Everybody", body "Hello World!"."""
    delivery = WebhookDelivery(
        "example",
        webhook_url("jira"),
        b"Hello World!",
        {
            "X-Hub-Signature": "sha256=a4771c39fbe90f317c7824e83ddef3caae9cb3d976c214ace1f2937e133263c9"
        },
    )
    assert (await _profile(harness).check(delivery, now)).accepted


async def test_an_undecodable_delivery_is_malformed_not_a_crash(
    harness: Harness, now: datetime
) -> None:
    profile = _profile(harness)
    for body in (
        b"\xff\xfe",
        b"[1, 2]",
        b'{"issue": {}}',
        b'{"webhookEvent": "comment_created"}',
        b"[" * 10_000 + b"]" * 10_000,  # past json's recursion limit
    ):
        sample = WebhookSample("bad", body)
        delivered = await profile.deliver(
            fake_jira.sign_delivery(sample, url=webhook_url("jira")), now
        )
        assert not delivered.handled
        assert delivered.errors
        assert delivered.errors[0].startswith("malformed")


# --------------------------------------------------------------------------- OAuth 2.0 (3LO)


async def test_oauth_refreshes_through_the_gateway_and_stores_the_rotated_token_first(
    http_client: httpx.AsyncClient, now: datetime
) -> None:
    scenario = JiraScenario()
    stored: list[dict[str, str]] = []
    with scenario.fake(now) as fake:
        source = JiraSource(
            descriptor_of("jira"),
            endpoints=AtlassianEndpoints(
                gateway=fake.base_url, token_url=f"{fake.base_url}/oauth/token"
            ),
        )

        async def on_rotate(credentials: dict[str, str]) -> None:
            # Persisted before use: the old refresh token is already dead upstream.
            assert credentials["refreshToken"] in fake.refresh_tokens
            assert credentials["accessToken"] in fake.access_tokens
            used = [r.headers.get("authorization") for r in fake.server.requests]
            assert f"Bearer {credentials['accessToken']}" not in used
            stored.append(credentials)

        context = connect(
            source,
            credentials={
                "clientId": fake_jira.CLIENT_ID,
                "clientSecret": fake_jira.CLIENT_SECRET,
                "refreshToken": "fake-refresh-token-0",
                "accessToken": "expired-access-token",
            },
            config={"siteUrl": fake.base_url, "cloudId": fake_jira.CLOUD_ID},
            client=http_client,
            on_rotate=on_rotate,
        )
        health = await source.health_check(context)
        pages = [p async for p in source.fetch_delta(context, None, now=now)]
        gateway = fake.server.requests_to(f"/ex/jira/{fake_jira.CLOUD_ID}/rest/api/3/search/jql")
        site = fake.server.requests_to("/rest/api/3/search/jql")
    assert health.ok, health.error
    assert len(stored) == 1, "one refresh (on the 401 of the expired token), then reuse"
    assert stored[0]["refreshToken"] != "fake-refresh-token-0"
    assert sum(len(p.items) for p in pages) > 100
    assert gateway, "OAuth calls go through api.atlassian.com/ex/jira/{cloudId}"
    assert not site
    assert all(r.headers["authorization"].startswith("Bearer ") for r in gateway)


async def test_oauth_without_a_cloud_id_fails_before_any_request(
    http_client: httpx.AsyncClient,
) -> None:
    source = JiraSource(descriptor_of("jira"))
    with pytest.raises(AuthFailed, match="cloudId"):
        connect(
            source,
            credentials={"refreshToken": "r", "clientId": "c", "clientSecret": "s"},
            config={"siteUrl": "https://acme.atlassian.net"},
            client=http_client,
        )


async def test_missing_api_token_names_the_field_not_a_value(
    http_client: httpx.AsyncClient,
) -> None:
    source = JiraSource(descriptor_of("jira"))
    with pytest.raises(AuthFailed, match="apiToken") as caught:
        connect(
            source,
            credentials={"email": "someone@example.com"},
            config={"siteUrl": "https://acme.atlassian.net"},
            client=http_client,
        )
    assert "someone@example.com" not in str(caught.value)


# --------------------------------------------------------------------------- ADF


def test_atlassian_document_format_becomes_plain_text() -> None:
    document = {
        "type": "doc",
        "version": 1,
        "content": [
            {
                "type": "heading",
                "attrs": {"level": 2},
                "content": [{"type": "text", "text": "Steps"}],
            },
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "Ask "},
                    {"type": "mention", "attrs": {"id": "5b10", "text": "@Mia Krystof"}},
                    {"type": "text", "text": " "},
                    {"type": "emoji", "attrs": {"shortName": ":fire:", "text": "🔥"}},
                    {"type": "hardBreak"},
                    {"type": "text", "text": "then retry", "marks": [{"type": "strong"}]},
                ],
            },
            {
                "type": "bulletList",
                "content": [
                    {
                        "type": "listItem",
                        "content": [
                            {"type": "paragraph", "content": [{"type": "text", "text": "one"}]}
                        ],
                    },
                    {
                        "type": "listItem",
                        "content": [
                            {
                                "type": "paragraph",
                                "content": [
                                    {"type": "inlineCard", "attrs": {"url": "https://x.example/1"}}
                                ],
                            }
                        ],
                    },
                ],
            },
        ],
    }
    assert (
        plain_text(document) == "Steps\nAsk @Mia Krystof 🔥\nthen retry\none\nhttps://x.example/1"
    )
    assert plain_text("already text") == "already text"
    assert plain_text(None) == ""
    assert plain_text({"type": "doc", "content": "not a list"}) == ""


def test_the_fake_refuses_an_unbounded_query_like_jira() -> None:
    with pytest.raises(fake_jira.JqlError, match="Unbounded"):
        compile_jql("ORDER BY updated ASC", datetime.now(ZoneInfo("UTC")))
    assert json.loads(json.dumps(fake_jira.UNBOUNDED))


@pytest.mark.parametrize("comment_first", [True, False], ids=["comment-first", "history-first"])
def test_a_polled_transition_made_with_a_comment_is_both_signals_in_either_order(
    comment_first: bool,
) -> None:
    """A poll-only instance: the transition screen's comment and the changelog entry are a
    millisecond apart. The poll named only the later one (the transition was lost when
    the comment came last, the comment when it came first); it names both."""
    now = datetime.now(UTC).replace(microsecond=0)
    data = fake_jira.Dataset(now, ops=8, dev=2)
    issue = next(i for i in data.issues.values() if i.project == "OPS" and i.status != "Done")
    first, last = now, now + timedelta(milliseconds=1)
    data.comment(issue, "Fixed in 2.4.1.", first if comment_first else last, 2)
    data.transition(issue, "Done", last if comment_first else first, author=1)
    issue.updated = last
    result = normalise_issues([issue.json({"*all"}, changelog=True)], project_id="p")
    assert sorted(s.wire["type"] for s in result.signals) == [
        "issue_commented",
        "issue_status_changed",
    ]
