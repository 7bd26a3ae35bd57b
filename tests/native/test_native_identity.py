"""One change, one signal, for the native connectors that poll and receive webhooks, on both
stores.

``tests/catalogue/test_signal_identity.py`` holds the descriptor connectors to
"whichever channel sees a change first stores it; every later sighting creates
nothing" (docs/security.md, "Signal identity and dedup"). Jira keys its signals
in its own handler code; here its real poll and its real webhook handler, behind
the real gateway, meet the same changes in both orders, on SQLite and on
DynamoDB (dynalite): the webhook first (then redelivered under a new delivery
id, with its times written in UTC where the REST API writes the site's offset),
then the poll; the poll first, then the webhook; and a poll re-run from an
older checkpoint, as after a crash between a page's write and its checkpoint.
Outlook's notification and delta poll meet one new message while Exchange is
still filing it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.service.poll_support import all_signals, settings_for
from tests.stores.dynalite import dynamodb_url, unique_table_name
from ucf.fakes import graph as fake_graph
from ucf.fakes import jira as fake_jira
from ucf.fakes.graph import GraphFake
from ucf.fakes.jira import Issue, JiraFake, JiraScenario
from ucf.fakes.scenario import WebhookSample
from ucf.service.context import UcfContext
from ucf.service.poll import poll_instance
from ucf.service.webhooks import Accepted, Delivery, WebhookGateway, receive_webhook, webhook_path

PROJECT = "ops"
URL = f"https://ucf.example.com{webhook_path('jira', PROJECT)}"


@pytest.fixture
def jira() -> Iterator[JiraFake]:
    with JiraFake(datetime.now(UTC)) as fake:
        yield fake


async def _context(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> UcfContext:
    if store == "sqlite":
        return await UcfContext.open(settings_for(tmp_path))
    url = dynamodb_url(request.getfixturevalue("dynalite_endpoint"), unique_table_name())
    return await UcfContext.open(settings_for(tmp_path, UCF_STORE=url))


def _in_utc(value: Any) -> Any:
    """Every Jira time in ``value`` written at UTC (``…+0000``), as another path may."""
    if isinstance(value, dict):
        return {key: _in_utc(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_in_utc(item) for item in value]
    moment = _jira_moment(value)
    if moment is None:
        return value
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _jira_moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) != 28 or value[10] != "T":
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)
    except ValueError:
        return None


def _sample(event: str, issue: Issue, *, utc: bool = False, **parts: Any) -> WebhookSample:
    sample = fake_jira.delivery(
        event,
        event,
        datetime.now(UTC),
        issue=issue.webhook_issue(),
        user=fake_jira.user(1),
        **parts,
    )
    if not utc:
        return sample
    payload = _in_utc(json.loads(sample.body))
    return WebhookSample.of(event, payload, headers=dict(sample.headers))


async def _push(gateway: WebhookGateway, sample: WebhookSample) -> tuple[int, int]:
    signed = fake_jira.sign_delivery(sample, url=URL)
    outcome = await receive_webhook(
        gateway, "jira", PROJECT, Delivery("POST", signed.body, signed.headers, {}, URL)
    )
    assert isinstance(outcome, Accepted), outcome
    return outcome.inserted, outcome.duplicates


def _retry(sample: WebhookSample) -> WebhookSample:
    """The same body under a new ``X-Atlassian-Webhook-Identifier``."""
    return WebhookSample(
        sample.name, sample.body, {**sample.headers, "X-Atlassian-Webhook-Identifier": "9"}
    )


@pytest.mark.parametrize("store", ["sqlite", "dynamodb"])
async def test_a_jira_change_seen_by_webhooks_and_polls_in_any_order_is_one_signal(
    store: str, jira: JiraFake, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    context = await _context(store, tmp_path, request)
    try:
        scenario = JiraScenario()
        await context.instances.create(
            PROJECT,
            "jira",
            credentials=scenario.credentials(),
            config=scenario.config(jira.base_url),
        )
        first = await poll_instance(context, PROJECT, "jira")
        assert first.status == "ok", first.error
        before = await context.store.checkpoints.get(PROJECT, "jira")
        stored = len(await all_signals(context, PROJECT))
        gateway = WebhookGateway(context)

        # The webhook first: a comment (Jira sends comment_created and an issue_updated),
        # a transition and a new issue; each sent again under a new delivery id.
        data = jira.data
        ops = [i for i in data.issues.values() if i.project == "OPS" and i.status != "Done"]
        now = datetime.now(UTC) - timedelta(seconds=5)
        with data.lock:
            commented, moved = ops[3], ops[7]
            comment = data.comment(commented, "Seen again after the deploy.", now, 2)
            history = data.transition(moved, "Done", now, author=1)
            created = data.create("OPS", "Refunds stuck in pending", now, 3)
        pushed = [
            _sample("comment_created", commented, utc=True, comment=comment.json(commented.id)),
            _sample(
                "jira:issue_updated",
                commented,
                issue_event_type_name="issue_commented",
                comment=comment.json(commented.id),
            ),
            _sample(
                "jira:issue_updated",
                moved,
                utc=True,
                issue_event_type_name="issue_generic",
                changelog={"id": str(history.id), "items": history.items},
            ),
            _sample("jira:issue_created", created, issue_event_type_name="issue_created"),
        ]
        results = [await _push(gateway, sample) for sample in pushed]
        assert results == [(1, 0), (0, 1), (1, 0), (1, 0)]
        for sample in pushed:
            assert await _push(gateway, _retry(sample)) == (0, 1)
        stored += 3
        assert len(await all_signals(context, PROJECT)) == stored

        # Then the poll that lists those three issues: nothing new.
        second = await poll_instance(context, PROJECT, "jira")
        assert second.status == "ok", second.error
        assert second.inserted == 0
        assert len(await all_signals(context, PROJECT)) == stored

        # The poll first, then the webhook.
        with data.lock:
            relabelled = ops[11]
            relabel = data.relabel(relabelled, ["customer", "p1"], datetime.now(UTC), author=3)
        third = await poll_instance(context, PROJECT, "jira")
        assert third.inserted == 1
        late = _sample(
            "jira:issue_updated",
            relabelled,
            utc=True,
            issue_event_type_name="issue_updated",
            changelog={"id": str(relabel.id), "items": relabel.items},
        )
        assert await _push(gateway, late) == (0, 1)
        stored += 1

        # A poll re-run from where the first one left off, as after a crash: nothing new.
        now_checkpoint = await context.store.checkpoints.get(PROJECT, "jira")
        assert await context.store.checkpoints.compare_and_set(
            PROJECT,
            "jira",
            expected_version=now_checkpoint.version,
            value=before.value,
            now=datetime.now(UTC),
        )
        again = await poll_instance(context, PROJECT, "jira")
        assert again.status == "ok", again.error
        assert again.inserted == 0
        assert again.duplicates >= 4
        signals = await all_signals(context, PROJECT)
        assert len(signals) == stored
        assert len({s.dedup_key for s in signals}) == len({s.signal["id"] for s in signals})
    finally:
        await context.close()


CLIENT_STATE = "a-client-state-of-this-instance-0123456789"
OUTLOOK_URL = f"https://ucf.example.com{webhook_path('outlook', PROJECT)}"


@pytest.fixture
def graph() -> Iterator[GraphFake]:
    with GraphFake(datetime.now(UTC)) as fake:
        yield fake


async def _notify(gateway: WebhookGateway, graph: GraphFake, message_id: str) -> tuple[int, int]:
    body = json.dumps({"value": [graph.notification(message_id, client_state=CLIENT_STATE)]})
    delivery = Delivery(
        "POST", body.encode(), {"Content-Type": "application/json"}, {}, OUTLOOK_URL
    )
    outcome = await receive_webhook(gateway, "outlook", PROJECT, delivery)
    assert isinstance(outcome, Accepted), outcome
    return outcome.inserted, outcome.duplicates


@pytest.mark.parametrize("store", ["sqlite", "dynamodb"])
async def test_a_new_mail_notified_while_exchange_files_it_and_polled_after_is_one_signal(
    store: str, graph: GraphFake, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Graph notifies a new message at once; Exchange then touches it while filing it (its
    ``lastModifiedDateTime`` moves seconds after arrival), and the user may read it
    within minutes. The notification's fetch and the next delta poll see two versions
    of one arrival: one ``email_received`` signal, with one id, not two."""
    context = await _context(store, tmp_path, request)
    try:
        await _outlook_instance(context, graph)
        first = await poll_instance(context, PROJECT, "outlook")
        assert first.status == "ok", first.error
        before = {s.signal["id"] for s in await all_signals(context, PROJECT)}
        gateway = WebhookGateway(context)

        arrived = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
        message = graph.mailbox.receive(arrived, 2)
        message.modified = arrived  # notified (and fetched) before Exchange has filed it
        assert await _notify(gateway, graph, message.id) == (1, 0)
        graph.mailbox.change(message, arrived + timedelta(seconds=3))  # filed
        graph.mailbox.change(message, arrived + timedelta(minutes=1), is_read=True)
        assert await _notify(gateway, graph, message.id) == (0, 1)  # Graph's "updated"
        polled = await poll_instance(context, PROJECT, "outlook")
        assert polled.status == "ok", polled.error
        assert polled.inserted == 0

        new = [s for s in await all_signals(context, PROJECT) if s.signal["id"] not in before]
        assert [(s.signal["type"], s.signal["raw"]["id"]) for s in new] == [
            ("email_received", message.id)
        ]
        assert new[0].signal["timestamp"] == arrived.strftime("%Y-%m-%dT%H:%M:%S.000Z")

        # A change once the message has settled is a signal of its own.
        # (Its arrival, named again by every sighting within 7 days, is a duplicate.)
        graph.mailbox.change(message, arrived + timedelta(minutes=10), flag="flagged")
        assert await _notify(gateway, graph, message.id) == (1, 1)
        later = await poll_instance(context, PROJECT, "outlook")
        assert later.inserted == 0
    finally:
        await context.close()


@pytest.mark.parametrize("store", ["sqlite", "dynamodb"])
async def test_a_mail_first_seen_once_settled_is_received_once_whichever_path_sees_it(
    store: str, graph: GraphFake, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A message read 10 minutes after it arrived, first seen after that: by a poll (a
    poll-only instance with a long interval), or by a notification of the read. It was
    ``email_updated`` only: the agent never heard of a mail it received. It is one
    ``email_received`` (at its arrival) and one ``email_updated``, whichever path sees
    it first, and no second ``email_received`` at a later change."""
    context = await _context(store, tmp_path, request)
    try:
        await _outlook_instance(context, graph)
        assert (await poll_instance(context, PROJECT, "outlook")).status == "ok"
        before = {s.signal["id"] for s in await all_signals(context, PROJECT)}
        gateway = WebhookGateway(context)

        arrived = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
        polled_first = graph.mailbox.receive(arrived, 2)
        graph.mailbox.change(polled_first, arrived + timedelta(minutes=10), is_read=True)
        notified_first = graph.mailbox.receive(arrived, 3)
        graph.mailbox.change(notified_first, arrived + timedelta(minutes=10), is_read=True)
        assert await _notify(gateway, graph, notified_first.id) == (2, 0)
        polled = await poll_instance(context, PROJECT, "outlook")
        assert (polled.inserted, polled.duplicates) == (2, 2)
        assert await _notify(gateway, graph, polled_first.id) == (0, 2)

        graph.mailbox.change(polled_first, arrived + timedelta(minutes=20), flag="flagged")
        assert await _notify(gateway, graph, polled_first.id) == (1, 1)
        assert (await poll_instance(context, PROJECT, "outlook")).inserted == 0

        new = [s.signal for s in await all_signals(context, PROJECT)]
        new = [s for s in new if s["id"] not in before]
        for message, types in (
            (polled_first, ["email_received", "email_updated", "email_updated"]),
            (notified_first, ["email_received", "email_updated"]),
        ):
            assert sorted(s["type"] for s in new if s["raw"]["id"] == message.id) == types
        [received] = [
            s for s in new if s["type"] == "email_received" and s["raw"]["id"] == polled_first.id
        ]
        assert received["timestamp"] == arrived.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    finally:
        await context.close()


async def _outlook_instance(context: UcfContext, graph: GraphFake) -> None:
    await context.instances.create(
        PROJECT,
        "outlook",
        credentials={
            "clientId": fake_graph.CLIENT_ID,
            "clientSecret": fake_graph.CLIENT_SECRET,
            "clientState": CLIENT_STATE,
        },
        config={
            "baseUrl": f"{graph.base_url}/v1.0",
            "authorityUrl": graph.base_url,
            "tenant": fake_graph.TENANT,
            "mailbox": fake_graph.MAILBOX,
        },
    )


@pytest.mark.parametrize("store", ["sqlite", "dynamodb"])
async def test_a_jira_issue_edited_within_a_second_of_its_creation_is_created_once(
    store: str, jira: JiraFake, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """An automation rule edits a new issue at once (auto-assign, a label). The poll reads
    the issue after the edit, still within a second of its creation, and calls it
    created; the creation's webhook carries the issue as it was. Both are the one
    creation: one ``issue_created`` (the edit's webhook is an ``issue_updated``)."""
    context = await _context(store, tmp_path, request)
    try:
        scenario = JiraScenario()
        await context.instances.create(
            PROJECT,
            "jira",
            credentials=scenario.credentials(),
            config=scenario.config(jira.base_url),
        )
        assert (await poll_instance(context, PROJECT, "jira")).status == "ok"
        before = {s.signal["id"] for s in await all_signals(context, PROJECT)}
        gateway = WebhookGateway(context)

        now = datetime.now(UTC) - timedelta(seconds=10)
        with jira.data.lock:
            issue = jira.data.create("OPS", "Card payments fail in the EU", now, 3)
            created = _sample("jira:issue_created", issue, issue_event_type_name="issue_created")
            edit = jira.data.relabel(issue, ["auto-triaged"], now + timedelta(milliseconds=400))
        polled = await poll_instance(context, PROJECT, "jira")  # before the webhooks arrive
        assert polled.inserted == 1
        assert await _push(gateway, created) == (0, 1)
        edited = _sample(
            "jira:issue_updated",
            issue,
            issue_event_type_name="issue_updated",
            changelog={"id": str(edit.id), "items": edit.items},
        )
        assert await _push(gateway, edited) == (1, 0)
        assert (await poll_instance(context, PROJECT, "jira")).inserted == 0

        new = [s.signal for s in await all_signals(context, PROJECT)]
        new = [s for s in new if s["id"] not in before]
        assert sorted(s["type"] for s in new) == ["issue_created", "issue_updated"]
    finally:
        await context.close()


@pytest.mark.parametrize("store", ["sqlite", "dynamodb"])
@pytest.mark.parametrize("comment_first", [True, False], ids=["comment-first", "history-first"])
async def test_a_jira_transition_made_with_a_comment_is_both_signals_in_any_order(
    store: str,
    comment_first: bool,
    jira: JiraFake,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """A transition screen's comment: Jira writes the changelog entry and the comment a
    millisecond apart, in either order, and (with only ``jira:issue_updated``
    subscribed) sends one delivery carrying both. The poll signalled the later of the
    two, the delivery only the transition: the comment was lost when it came first, and
    a poll-only instance lost the transition when it came last. Both paths, in both
    orders, give both: one ``issue_status_changed`` and one ``issue_commented``."""
    context = await _context(store, tmp_path, request)
    try:
        scenario = JiraScenario()
        await context.instances.create(
            PROJECT,
            "jira",
            credentials=scenario.credentials(),
            config=scenario.config(jira.base_url),
        )
        assert (await poll_instance(context, PROJECT, "jira")).status == "ok"
        before = {s.signal["id"] for s in await all_signals(context, PROJECT)}
        gateway = WebhookGateway(context)
        data = jira.data
        ops = [i for i in data.issues.values() if i.project == "OPS" and i.status != "Done"]

        def resolve(issue: Issue, at: datetime) -> WebhookSample:
            with data.lock:
                first, last = at, at + timedelta(milliseconds=1)
                comment_at, history_at = (first, last) if comment_first else (last, first)
                comment = data.comment(issue, "Fixed in 2.4.1, verified on staging.", comment_at)
                history = data.transition(issue, "Done", history_at, author=1)
                issue.updated = last
            return _sample(
                "jira:issue_updated",
                issue,
                issue_event_type_name="issue_generic",
                changelog={"id": str(history.id), "items": history.items},
                comment=comment.json(issue.id),
            )

        now = datetime.now(UTC) - timedelta(seconds=10)
        pushed_first, polled_first = ops[2], ops[6]
        assert await _push(gateway, resolve(pushed_first, now)) == (2, 0)
        late = resolve(polled_first, now + timedelta(seconds=2))
        polled = await poll_instance(context, PROJECT, "jira")
        assert polled.inserted == 2  # and the first issue's two as duplicates
        assert await _push(gateway, late) == (0, 2)

        new = [
            s.signal for s in await all_signals(context, PROJECT) if s.signal["id"] not in before
        ]
        for issue in (pushed_first, polled_first):
            of_issue = (s["type"] for s in new if s["summary"].startswith(f"{issue.key} "))
            assert sorted(of_issue) == [
                "issue_commented",
                "issue_status_changed",
            ]
    finally:
        await context.close()
