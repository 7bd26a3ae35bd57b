"""The Asana connector against its fake, for what the catalogue battery does not reach:
expired sync tokens, event-stream paging and resume, deleted tasks, OAuth, bad input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.catalogue.profiles import RecordingSleep
from ucf.catalogue import builtin_descriptors
from ucf.core.mapping import MappedSignal
from ucf.core.validation import parse_descriptor
from ucf.fakes.asana import (
    CLIENT_ID,
    CLIENT_SECRET,
    GOOD_TOKEN,
    HOOK_SECRET,
    PROJECT,
    REFRESH_TOKEN,
    AsanaFake,
    AsanaScenario,
    handshake_sample,
)
from ucf.fakes.kit import FakeResponse, Fault
from ucf.native import (
    CheckpointInvalid,
    ConfigError,
    CredentialMissing,
    Handshake,
    Malformed,
    MalformedResponse,
    MappingResult,
    Refused,
    Verified,
    WebhookContext,
    WebhookRequest,
)
from ucf.native.asana.source import (
    CATCH_UP_OVERLAP,
    AsanaSource,
    Change,
    Checkpoint,
    Hint,
    changes_of,
)
from ucf.native.asana.webhooks import signature
from ucf.runtime.connection import connect
from ucf.runtime.http import HttpSettings, create_client
from ucf.runtime.polling import Page
from ucf.runtime.sources import SourceContext
from ucf.runtime.ssrf import EgressPolicy

SETTINGS = HttpSettings(connect_timeout=2, read_timeout=2, max_retries=2, backoff_base=0.01)
NOW = datetime.now(UTC).replace(microsecond=0)
DESCRIPTOR = parse_descriptor(next(d for d in builtin_descriptors() if d["id"] == "asana"))


@pytest.fixture
def fake() -> Iterator[AsanaFake]:
    with AsanaFake(NOW, count=30) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="function")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with create_client(SETTINGS, EgressPolicy(frozenset({"127.0.0.1"}))) as http:
        yield http


@pytest.fixture
def source() -> AsanaSource:
    return AsanaSource(DESCRIPTOR)


def context(
    source: AsanaSource,
    client: httpx.AsyncClient,
    fake: AsanaFake,
    credentials: dict[str, str] | None = None,
    *,
    sleep: RecordingSleep | None = None,
    on_rotate: Any = None,
) -> SourceContext:
    return connect(
        source,
        credentials=credentials or {"token": GOOD_TOKEN},
        config={"baseUrl": fake.api_url, "projectGid": PROJECT[0]},
        client=client,
        settings=SETTINGS,
        sleep=sleep or RecordingSleep(),
        on_rotate=on_rotate,
    )


async def poll(
    source: AsanaSource,
    ctx: SourceContext,
    checkpoint: str | None,
    *,
    now: datetime = NOW,
    max_pages: int | None = None,
) -> tuple[list[Page], list[MappedSignal]]:
    pages, signals = [], []
    async for page in source.fetch_delta(ctx, checkpoint, now=now, max_pages=max_pages):
        pages.append(page)
        result = source.normalise(page.items, project_id="p", now=now)
        assert result.errors == []
        signals += result.signals
    return pages, signals


def kinds(signals: list[MappedSignal]) -> list[str]:
    return sorted(s.wire["type"] for s in signals)


# --------------------------------------------------------------------------- the event stream


async def test_an_expired_sync_token_is_replaced_and_the_changes_meanwhile_are_not_lost(
    source: AsanaSource, client: httpx.AsyncClient, fake: AsanaFake
) -> None:
    ctx = context(source, client, fake)
    first, _ = await poll(source, ctx, None)
    start = first[-1].checkpoint
    assert start is not None

    # ucf stops; Asana keeps changing and forgets the token.
    later = NOW + timedelta(hours=30)
    activity = fake.add_activity(later - timedelta(hours=1))
    fake.expire_sync_tokens()
    pages, signals = await poll(source, ctx, start, now=later)

    assert {s.item_id for s in signals} >= activity.ids
    assert not [s for s in signals if s.wire["type"] == "task_commented"]  # a catch-up sees tasks
    checkpoint = Checkpoint.parse(pages[-1].checkpoint or "")
    assert checkpoint.sync != Checkpoint.parse(start).sync
    assert checkpoint.since == later - CATCH_UP_OVERLAP
    # The catch-up starts where the last complete poll left off (less the overlap).
    listed = fake.server.requests_to("/api/1.0/tasks")[-1]
    since = Checkpoint.parse(start).since
    assert since == NOW - CATCH_UP_OVERLAP
    assert listed.param("modified_since") == since.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    # The fresh token follows the stream from there: only what changes next.
    fake.data.rename(fake.data.tasks_in_order()[0], "Renamed after the catch-up", later)
    _, after = await poll(source, ctx, pages[-1].checkpoint, now=later + timedelta(minutes=2))
    assert kinds(after) == ["task_updated"]


async def test_the_event_stream_is_read_page_by_page_and_resumes_where_a_page_stopped(
    source: AsanaSource, client: httpx.AsyncClient, fake: AsanaFake
) -> None:
    ctx = context(source, client, fake)
    first, _ = await poll(source, ctx, None)
    start = first[-1].checkpoint
    assert start is not None
    fake.events_per_call = 3
    activity = fake.add_activity(NOW + timedelta(minutes=5))
    later = NOW + timedelta(minutes=10)

    cut, partial = await poll(source, ctx, start, now=later, max_pages=1)
    assert len(cut) == 1
    assert cut[0].truncated
    assert cut[0].last
    resumed_from = Checkpoint.parse(cut[0].checkpoint or "")
    assert resumed_from.since == Checkpoint.parse(start).since  # mid-stream: not moved

    rest, remaining = await poll(source, ctx, cut[0].checkpoint, now=later)
    assert len(rest) >= 2
    assert {s.item_id for s in partial + remaining} == activity.ids
    assert Checkpoint.parse(rest[-1].checkpoint or "").since == later - CATCH_UP_OVERLAP
    every = [r for r in fake.server.requests_to("/api/1.0/events") if r.param("sync")]
    assert all(r.param("resource") == PROJECT[0] for r in every)


async def test_a_catch_up_cut_short_stores_no_position_so_the_next_poll_redoes_it(
    source: AsanaSource, client: httpx.AsyncClient
) -> None:
    with AsanaFake(NOW, count=150) as large:  # two pages of GET /tasks at limit=100
        ctx = context(source, client, large)
        cut, partial = await poll(source, ctx, None, max_pages=1)
        assert [(p.truncated, p.last, p.checkpoint) for p in cut] == [(True, True, None)]
        assert len(partial) == 100
        whole, signals = await poll(source, ctx, None)
        assert [p.checkpoint is None for p in whole] == [True, False]
        assert {s.item_id for s in signals} == large.ids_changed_since(NOW - timedelta(days=7))
        assert {s.dedup_key for s in partial} <= {s.dedup_key for s in signals}


async def read_until_failure(
    source: AsanaSource, ctx: SourceContext, checkpoint: str | None
) -> tuple[list[Page], BaseException | None]:
    pages: list[Page] = []
    try:
        async for page in source.fetch_delta(ctx, checkpoint, now=NOW):
            pages.append(page)
    except MalformedResponse as error:
        return pages, error
    return pages, None


async def test_an_event_page_handing_back_the_token_it_was_asked_with_fails_not_loops(
    source: AsanaSource, client: httpx.AsyncClient, fake: AsanaFake
) -> None:
    """``has_more: true`` with the sync token just sent was followed until the poll's
    deadline: the same page again and again."""
    ctx = context(source, client, fake)
    first, _ = await poll(source, ctx, None)
    start = first[-1].checkpoint
    assert start is not None
    stuck = Checkpoint.parse(start).sync
    page = {"data": [], "sync": stuck, "has_more": True}
    fake.server.inject(Fault.respond(FakeResponse.json(page)), path="/api/1.0/events", times=5)
    sent_before = len(fake.server.requests_to("/api/1.0/events"))
    pages, error = await read_until_failure(source, ctx, start)
    assert isinstance(error, MalformedResponse)
    assert "already sent" in str(error)
    assert len(fake.server.requests_to("/api/1.0/events")) - sent_before == 1
    assert len(pages) == 1  # that page's checkpoint (the same token) is safe to store


async def test_a_catch_up_whose_next_offset_repeats_fails_not_loops(
    source: AsanaSource, client: httpx.AsyncClient, fake: AsanaFake
) -> None:
    """A ``next_page.offset`` that comes back was followed until the deadline; the
    catch-up stores its position only at its end, so every later poll looped again."""
    ctx = context(source, client, fake)
    page = {"data": [], "next_page": {"offset": "eyJ0eXAiOJiKV1iQLCJhbGciOiJIUzI1NiJ9"}}
    fake.server.inject(Fault.respond(FakeResponse.json(page)), path="/api/1.0/tasks", times=5)
    pages, error = await read_until_failure(source, ctx, None)
    assert isinstance(error, MalformedResponse)
    assert "already read" in str(error)
    assert len(fake.server.requests_to("/api/1.0/tasks")) == 2
    assert all(p.checkpoint is None for p in pages)  # no position past an unread catch-up


async def test_a_comment_and_a_catch_up_that_lists_its_task_afterwards_are_one_signal(
    source: AsanaSource, client: httpx.AsyncClient, fake: AsanaFake
) -> None:
    ctx = context(source, client, fake)
    first, _ = await poll(source, ctx, None)
    later = NOW + timedelta(minutes=5)
    task = fake.data.tasks_in_order()[5]
    fake.data.comment(task, 2, "Looks good to me", later)
    streamed, [comment] = await poll(source, ctx, first[-1].checkpoint, now=later)
    assert comment.wire["type"] == "task_commented"

    fake.expire_sync_tokens()
    _, caught_up = await poll(source, ctx, streamed[-1].checkpoint, now=later)
    [same] = [s for s in caught_up if s.item_id == task.gid]
    assert same.wire["type"] == "task_updated"
    assert same.dedup_key == comment.dedup_key  # the store keeps the comment, adds nothing


async def test_each_change_is_fetched_once_and_system_stories_are_not_comments(
    source: AsanaSource, client: httpx.AsyncClient, fake: AsanaFake
) -> None:
    ctx = context(source, client, fake)
    first, _ = await poll(source, ctx, None)
    task = fake.data.tasks_in_order()[-2]
    later = NOW + timedelta(minutes=5)
    fake.data.assign(task, 3, later)
    fake.data.rename(task, "Renamed too", later)
    fake.data.complete(task, later)  # three task events, two system stories
    before = len(fake.server.requests_to(f"/api/1.0/tasks/{task.gid}"))
    _, signals = await poll(source, ctx, first[-1].checkpoint, now=later)
    assert kinds(signals) == ["task_completed"]  # the most telling of one version
    assert len(fake.server.requests_to(f"/api/1.0/tasks/{task.gid}")) == before + 1


async def test_a_task_deleted_since_its_event_is_dropped_not_an_error(
    source: AsanaSource, client: httpx.AsyncClient, fake: AsanaFake
) -> None:
    ctx = context(source, client, fake)
    first, _ = await poll(source, ctx, None)
    later = NOW + timedelta(minutes=5)
    doomed = fake.data.tasks_in_order()[-1]
    fake.data.rename(doomed, "About to go", later)
    fake.data.delete(doomed, later)
    pages, signals = await poll(source, ctx, first[-1].checkpoint, now=later)
    assert signals == []
    assert pages[-1].dropped == 1


async def test_a_rate_limited_task_fetch_waits_as_asked(
    source: AsanaSource, client: httpx.AsyncClient, fake: AsanaFake
) -> None:
    sleep = RecordingSleep()
    ctx = context(source, client, fake, sleep=sleep)
    first, _ = await poll(source, ctx, None)
    later = NOW + timedelta(minutes=5)
    fake.data.rename(fake.data.tasks_in_order()[3], "Renamed", later)
    fake.server.inject(fake.rate_limit_fault(retry_after=7), path="/api/1.0/tasks/{gid}")
    pages, signals = await poll(source, ctx, first[-1].checkpoint, now=later)
    assert kinds(signals) == ["task_updated"]
    assert sleep.calls == [7.0]
    assert pages[-1].rate_limit_waits == 1


# --------------------------------------------------------------------------- auth and input


async def test_oauth_credentials_refresh_an_access_token_and_hand_it_to_the_store(
    source: AsanaSource, client: httpx.AsyncClient, fake: AsanaFake
) -> None:
    stored: list[dict[str, str]] = []

    async def keep(credentials: dict[str, str]) -> None:
        stored.append(credentials)

    oauth = {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "refreshToken": REFRESH_TOKEN}
    ctx = context(source, client, fake, oauth, on_rotate=keep)
    health = await source.health_check(ctx)
    assert health.ok, health.error
    assert fake.access_tokens_issued == 1
    assert stored
    assert stored[-1]["accessToken"].startswith("2/")
    assert stored[-1]["refreshToken"] == REFRESH_TOKEN  # Asana does not rotate it
    me = fake.server.requests_to("/api/1.0/users/me")[-1]
    assert me.headers["authorization"] == f"Bearer {stored[-1]['accessToken']}"


def test_without_a_token_or_oauth_credentials_nothing_is_sent(
    source: AsanaSource, client: httpx.AsyncClient, fake: AsanaFake
) -> None:
    with pytest.raises(CredentialMissing, match="'token' is not set"):
        context(source, client, fake, {"webhookSecret": HOOK_SECRET})
    assert fake.server.requests == []


async def test_a_project_gid_that_is_not_a_gid_is_a_config_error(
    source: AsanaSource, client: httpx.AsyncClient, fake: AsanaFake
) -> None:
    ctx = connect(
        source,
        credentials={"token": GOOD_TOKEN},
        config={"baseUrl": fake.api_url, "projectGid": "../workspaces"},
        client=client,
    )
    with pytest.raises(ConfigError, match="projectGid must be an Asana gid"):
        source.fetch_delta(ctx, None, now=NOW)
    assert fake.server.requests == []


@pytest.mark.parametrize("stored", ["not a checkpoint", "2024-13-45 abc", '{"sync": "x"}'])
def test_a_checkpoint_of_another_kind_is_refused_clearly(
    source: AsanaSource, client: httpx.AsyncClient, fake: AsanaFake, stored: str
) -> None:
    with pytest.raises(CheckpointInvalid, match="not an Asana position"):
        source.fetch_delta(context(source, client, fake), stored, now=NOW)


def test_an_item_that_is_not_a_task_is_an_item_error_not_a_crash(source: AsanaSource) -> None:
    result = source.normalise(
        [Change("updated", {"gid": "12", "name": "no modified_at"}), {"gid": "1"}],
        project_id="p",
        now=NOW,
    )
    assert result.signals == []
    assert [e.reason for e in result.errors] == [
        "the task has no modified_at",
        "not an Asana change: dict",
    ]


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_outside_datetimes_range_in_utc_is_an_item_error_not_a_crash(
    source: AsanaSource, when: str
) -> None:
    """Converting such a ``modified_at`` to UTC raised OverflowError out of normalise."""
    task = {"gid": "12", "name": "odd clock", "modified_at": when, "created_at": when}
    result = source.normalise([Change("task_updated", task)], project_id="p", now=NOW)
    assert result.signals == []
    assert [e.reason for e in result.errors] == ["the task has no modified_at"]


# --------------------------------------------------------------------------- webhooks


def webhook_context(fake: AsanaFake | None, credentials: dict[str, str]) -> WebhookContext:
    async def upstream() -> SourceContext:
        raise AssertionError("verification needs no upstream")

    base = fake.api_url if fake is not None else "http://127.0.0.1:9/api/1.0"
    return WebhookContext(
        project_id="p",
        connector_id="asana",
        credentials=credentials,
        config={"baseUrl": base, "projectGid": PROJECT[0]},
        now=NOW,
        upstream=upstream,
    )


def request(body: bytes, **headers: str) -> WebhookRequest:
    return WebhookRequest(method="POST", body=body, headers=headers)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_header"),
        ({"X-Hook-Signature": "not-hex"}, "signature_mismatch"),
        ({"X-Hook-Signature": signature("another secret", b'{"events":[]}')}, "signature_mismatch"),
    ],
)
async def test_unsigned_or_missigned_deliveries_are_refused(
    source: AsanaSource, headers: dict[str, str], code: str
) -> None:
    verdict = await source.webhooks.verify(
        request(b'{"events":[]}', **headers), webhook_context(None, {"webhookSecret": HOOK_SECRET})
    )
    assert isinstance(verdict, Refused)
    assert verdict.code == code


async def test_a_signed_delivery_verifies_in_upper_or_lower_case_hex(source: AsanaSource) -> None:
    body = b'{"events":[]}'
    for sent in (signature(HOOK_SECRET, body), signature(HOOK_SECRET, body).upper()):
        verdict = await source.webhooks.verify(
            request(body, **{"X-Hook-Signature": sent}),
            webhook_context(None, {"webhookSecret": HOOK_SECRET}),
        )
        assert isinstance(verdict, Verified)


async def test_the_handshake_hands_its_secret_over_and_echoes_it(source: AsanaSource) -> None:
    sample = handshake_sample("fresh-secret-123")
    verdict = await source.webhooks.verify(
        request(sample.body, **sample.headers), webhook_context(None, {})
    )
    assert isinstance(verdict, Handshake)
    assert verdict.response.status == 200
    assert dict(verdict.response.headers) == {"X-Hook-Secret": "fresh-secret-123"}
    assert dict(verdict.keep) == {"webhookSecret": "fresh-secret-123"}
    assert "fresh-secret-123" not in repr(verdict)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"events": {}}',
        b"\xff\xfe",
        b"[" * 10_000 + b"]" * 10_000,
        b'{"events": [{"resource": {"gid": NaN}}]}',  # NaN: not JSON, refused
    ],
)
async def test_a_body_without_an_events_list_is_malformed(source: AsanaSource, body: bytes) -> None:
    with pytest.raises(Malformed):
        await source.webhooks.signals(request(body), webhook_context(None, {}))


async def test_a_delivery_resolves_compact_events_through_the_instances_upstream(
    source: AsanaSource, client: httpx.AsyncClient, fake: AsanaFake
) -> None:
    scenario = AsanaScenario(count=30)
    sample = scenario.webhook_samples()[-1]  # a comment
    ctx = context(source, client, fake)

    async def upstream() -> SourceContext:
        return ctx

    hook = WebhookContext(
        project_id="p",
        connector_id="asana",
        credentials={"token": GOOD_TOKEN},
        config={"baseUrl": fake.api_url, "projectGid": PROJECT[0]},
        now=NOW,
        upstream=upstream,
    )
    result = await source.webhooks.signals(request(sample.body), hook)
    assert isinstance(result, MappingResult)
    [comment] = result.signals
    assert comment.wire["type"] == "task_commented"
    assert comment.wire["metadata"]["participants"][0] == "Katherine Johnson"
    assert (
        comment.wire["raw"]["target"]["gid"]
        == json.loads(sample.body)["events"][0]["parent"]["gid"]
    )
    assert comment.version == comment.wire["raw"]["created_at"]
    assert fake.server.requests_to("/api/1.0/stories/" + comment.wire["raw"]["gid"])


def _at(seconds: int) -> str:
    return (NOW + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.mark.parametrize(
    ("hints", "expected"),
    [
        # Created with its fields set at once: the creation says it.
        ([Hint("added", _at(0)), Hint("updated", _at(0))], [("created", None)]),
        # Renamed a little later: its own change, at its event's time.
        (
            [Hint("added", _at(0)), Hint("updated", _at(9))],
            [("created", None), ("updated", _at(9))],
        ),
        # Created and completed: both, as two event pages give them.
        (
            [Hint("added", _at(0)), Hint("completed", _at(5))],
            [("created", None), ("completed", None)],
        ),
        # Assigned, then renamed: each at its own event's time.
        (
            [Hint("assigned", _at(3)), Hint("updated", _at(7))],
            [("assigned", _at(3)), ("updated", _at(7))],
        ),
        # Renamed, then assigned: the assignment says it.
        ([Hint("updated", _at(3)), Hint("assigned", _at(7))], [("assigned", _at(7))]),
        # Added to the project days after its creation: a change at its modified_at.
        ([Hint("added", _at(3 * 86400))], [("updated", None)]),
    ],
)
def test_a_batch_of_events_names_each_creation_completion_assignment_and_the_latest_edit(
    hints: list[Hint], expected: list[tuple[str, str | None]]
) -> None:
    task = {
        "gid": "1201",
        "created_at": _at(0),
        "modified_at": _at(3 * 86400),
        "completed": True,
        "completed_at": _at(5),
        "assignee": {"gid": "7", "name": "Ada"},
    }
    assert [(c.kind, c.at) for c in changes_of(hints, task)] == expected
