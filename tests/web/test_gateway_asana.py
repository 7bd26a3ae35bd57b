"""Asana's native webhooks through the real app: handshake, signatures, heartbeats,
compact events fetched from the (fake) Asana API, and one signal per change
whether a poll or a delivery saw it first."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from tests.web.conftest import Web
from tests.web.support import PROJECT, webhook_path
from ucf.fakes.asana import (
    GOOD_TOKEN,
    HOOK_SECRET,
    AsanaFake,
    AsanaScenario,
    handshake_sample,
    heartbeat,
    sign_delivery,
)
from ucf.fakes.asana import (
    PROJECT as ASANA_PROJECT,
)
from ucf.fakes.kit import Fault
from ucf.fakes.scenario import WebhookSample

PATH = webhook_path("asana", PROJECT)
INSTANCE = f"/api/projects/{PROJECT}/instances/asana"


@pytest.fixture
def scenario() -> AsanaScenario:
    return AsanaScenario(count=30)


@pytest.fixture
def asana(scenario: AsanaScenario) -> Iterator[AsanaFake]:
    with scenario.fake(datetime.now(UTC)) as fake:
        yield fake


@pytest_asyncio.fixture(loop_scope="function")
async def connected(web: Web, asana: AsanaFake) -> AsyncIterator[Web]:
    """The built-in ``asana`` connector, connected to the fake with a PAT and no hook secret."""
    made = await web.client.post(
        f"/api/projects/{PROJECT}/instances",
        json={
            "connectorId": "asana",
            "config": {"baseUrl": asana.api_url, "projectGid": ASANA_PROJECT[0]},
            "credentials": {"token": GOOD_TOKEN},
        },
    )
    assert made.status_code == 201, made.text
    yield web


async def post(web: Web, sample: WebhookSample, *, secret: str | None = HOOK_SECRET) -> Any:
    if secret is None:
        return await web.anonymous.post(PATH, content=sample.body, headers=dict(sample.headers))
    delivery = sign_delivery(sample, url=PATH, secret=secret)
    return await web.anonymous.post(PATH, content=delivery.body, headers=dict(delivery.headers))


async def stored(web: Web) -> list[dict[str, Any]]:
    page = await web.client.get(f"/api/projects/{PROJECT}/signals", params={"limit": 500})
    items: list[dict[str, Any]] = page.json()["items"]
    return items


async def own_path(web: Web) -> str:
    """The instance's own webhook URL: the only one a secret-handing handshake is heard at."""
    url: str = (await web.client.get(INSTANCE)).json()["webhookUrl"]
    return url.removeprefix("http://ucf.test")


async def send_handshake(web: Web, secret: str = HOOK_SECRET) -> Any:
    sample = handshake_sample(secret)
    return await web.anonymous.post(await own_path(web), headers=dict(sample.headers))


async def shake(web: Web, secret: str = HOOK_SECRET) -> Any:
    """Asana's handshake arrives, and the operator confirms the secret it handed over."""
    response = await send_handshake(web, secret)
    [pending] = (await web.client.get(INSTANCE)).json()["pendingSecrets"]
    confirmed = await web.client.post(f"{INSTANCE}/pending-secrets/{pending['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    return response


async def test_the_handshake_is_echoed_and_its_secret_waits_for_the_operator(
    connected: Web,
) -> None:
    shared = await connected.anonymous.post(
        PATH, headers=dict(handshake_sample("planted-secret-00000000000000000").headers)
    )
    assert shared.status_code == 403  # the guessable URL hears no secret-handing handshake

    first = await send_handshake(connected)
    assert first.status_code == 200
    assert first.headers["x-hook-secret"] == HOOK_SECRET
    instance = (await connected.client.get(INSTANCE)).json()
    assert "webhookSecret" not in instance["credentials"]  # pending until confirmed
    assert [p["masked"] for p in instance["pendingSecrets"]] == ["••••" + HOOK_SECRET[-4:]]
    assert HOOK_SECRET not in str(instance)
    assert (await post(connected, heartbeat())).status_code == 401

    pending = instance["pendingSecrets"][0]["id"]
    confirm = await connected.client.post(f"{INSTANCE}/pending-secrets/{pending}/confirm")
    assert confirm.json()["credentials"]["webhookSecret"] == "••••" + HOOK_SECRET[-4:]
    assert (await post(connected, heartbeat())).status_code == 200

    # A stranger who knows the URL is answered as Asana expects, but replaces nothing.
    stranger = await send_handshake(connected, "stranger-secret-0000000000000000")
    assert stranger.status_code == 200
    after = (await connected.client.get(INSTANCE)).json()
    assert after["credentials"]["webhookSecret"] == "••••" + HOOK_SECRET[-4:]
    assert [p["differsFromConfirmed"] for p in after["pendingSecrets"]] == [True]
    forged = await post(connected, heartbeat(), secret="stranger-secret-0000000000000000")
    assert forged.status_code == 401


async def test_a_handshake_that_changes_nothing_takes_no_turn(
    connected: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone who knows the URL can repeat a handshake, before any rate limit: one that
    hands over the secret already held must not queue behind, or hold up, the changes
    of the instance's credentials (a poll saving its refreshed token waits for its turn)."""
    await shake(connected)
    leases = connected.state.context.store.leases
    taken: list[str] = []
    real_acquire = leases.acquire

    async def acquire(name: str, owner: str, *, ttl: timedelta, now: datetime) -> bool:
        taken.append(name)
        return await real_acquire(name, owner, ttl=ttl, now=now)

    monkeypatch.setattr(leases, "acquire", acquire)
    for _ in range(3):
        assert (await send_handshake(connected)).status_code == 200
    assert [name for name in taken if name.startswith("secret-turn:")] == []
    assert (await connected.client.get(INSTANCE)).json()["pendingSecrets"] == []


async def test_deliveries_before_any_handshake_are_refused(connected: Web) -> None:
    response = await post(connected, heartbeat())
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_signed_deliveries_store_each_change_once_and_redeliveries_nothing(
    connected: Web, scenario: AsanaScenario
) -> None:
    assert (await shake(connected)).status_code == 200
    samples = scenario.webhook_samples()
    for sample in samples:
        response = await post(connected, sample)
        assert response.status_code == 200, (sample.name, response.text)
        assert response.json()["inserted"] == 1, sample.name
    signals = await stored(connected)
    assert sorted(s["type"] for s in signals) == sorted(
        t for s in samples for t in s.expected_types
    )
    assert {s["source"] for s in signals} == {"asana"}

    again = await post(connected, samples[0])
    assert again.status_code == 200
    assert again.json()["inserted"] == 0
    assert again.json()["duplicates"] == 1
    assert len(await stored(connected)) == len(signals)


async def test_a_tampered_delivery_is_refused_and_stores_nothing(
    connected: Web, scenario: AsanaScenario
) -> None:
    await shake(connected)
    delivery = sign_delivery(scenario.webhook_samples()[0], url=PATH).tampered()
    response = await connected.anonymous.post(
        PATH, content=delivery.body, headers=dict(delivery.headers)
    )
    assert response.status_code == 401
    assert await stored(connected) == []


async def test_a_heartbeat_is_a_200_that_stores_nothing(connected: Web, asana: AsanaFake) -> None:
    await shake(connected)
    before = len(asana.server.requests)
    response = await post(connected, heartbeat())
    assert response.status_code == 200
    assert response.json()["inserted"] == 0
    assert await stored(connected) == []
    assert len(asana.server.requests) == before, "a heartbeat needs no call to Asana"


async def test_events_that_name_no_task_are_a_200_not_a_202(
    connected: Web, scenario: AsanaScenario
) -> None:
    await shake(connected)
    response = await post(connected, scenario.unknown_event_sample())
    assert response.status_code == 200  # Asana counts only 200 and 204 as delivered
    assert await stored(connected) == []


async def test_asana_unreachable_answers_503_so_asana_delivers_again(
    connected: Web, scenario: AsanaScenario, asana: AsanaFake
) -> None:
    await shake(connected)
    sample = scenario.webhook_samples()[1]
    # Every attempt of the runtime's retries (FAST_HTTP: two) finds Asana down.
    asana.server.inject(Fault.status(503), path="/api/1.0/tasks/{gid}", times=2)
    down = await post(connected, sample)
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "upstream_unavailable"
    assert await stored(connected) == []
    again = await post(connected, sample)
    assert again.status_code == 200, again.text
    assert again.json()["inserted"] == 1


async def test_a_change_seen_by_a_poll_and_by_a_webhook_is_one_signal(
    connected: Web, asana: AsanaFake
) -> None:
    await shake(connected)
    first = await connected.client.post(f"{INSTANCE}/poll")
    assert first.status_code == 200, first.text
    before = len(await stored(connected))

    now = datetime.now(UTC)
    task = asana.data.tasks_in_order()[-2]
    asana.data.complete(task, now)
    polled = await connected.client.post(f"{INSTANCE}/poll")
    assert polled.json()["inserted"] == 1
    events = [e for e in asana.data.events if e["resource"]["resource_type"] == "task"][-1:]
    pushed = await post(connected, WebhookSample.of("completed", {"events": events}))
    assert pushed.status_code == 200
    assert pushed.json() == {"received": 1, "inserted": 0, "duplicates": 1}
    signals = await stored(connected)
    assert len(signals) == before + 1
    # The first poll's catch-up saw the task as it was; its completion is one signal.
    of_task = sorted(s["type"] for s in signals if s["raw"]["gid"] == task.gid)
    assert of_task == ["task_completed", "task_updated"]


async def _completed_after_a_first_poll(
    connected: Web, asana: AsanaFake
) -> tuple[set[str], Any, datetime, int]:
    """The handshake and a first poll, then a task completed 20 s ago: the ids stored
    before it, the task, now, and where the completion's events start."""
    await shake(connected)
    assert (await connected.client.post(f"{INSTANCE}/poll")).status_code == 200
    before = {s["id"] for s in await stored(connected)}
    now = datetime.now(UTC)
    task = asana.data.tasks_in_order()[-2]
    mark = len(asana.data.events)
    asana.data.complete(task, now - timedelta(seconds=20))
    return before, task, now, mark


async def test_a_comment_right_after_another_change_of_its_task_is_not_swallowed_by_it(
    connected: Web, asana: AsanaFake
) -> None:
    """Completed, then commented ("Done, deployed …"): Asana sends both events together
    and the task, fetched after both, carries the comment's time as its ``modified_at``.
    The comment owns that version (a comment is the task version it made); the
    completion is a version of its own. Read as a completion at the comment's
    version, the task took the key first and the comment's text was dropped."""
    before, task, now, mark = await _completed_after_a_first_poll(connected, asana)
    asana.data.comment(task, 2, "Done, deployed in the 14:05 release.", now)
    pushed = await post(connected, WebhookSample.of("both", {"events": asana.data.events[mark:]}))
    assert pushed.status_code == 200, pushed.text
    assert pushed.json() == {"received": 2, "inserted": 2, "duplicates": 0}
    polled = await connected.client.post(f"{INSTANCE}/poll")
    assert (polled.json()["inserted"], polled.json()["duplicates"]) == (0, 2)

    new = {s["type"]: s for s in await stored(connected) if s["id"] not in before}
    assert sorted(new) == ["task_commented", "task_completed"]
    assert new["task_commented"]["summary"].endswith("Done, deployed in the 14:05 release.")
    assert (
        new["task_completed"]["timestamp"]
        == (now - timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    )


async def test_a_completion_pushed_alone_and_polled_with_the_comment_after_it_is_one_signal(
    connected: Web, asana: AsanaFake
) -> None:
    """The completion's delivery fetched the task before the comment; the poll then reads
    both events and fetches the task at the comment's version. Read as a completion
    at that version, it was a second ``task_completed`` for one completion (and the
    comment was lost as its duplicate)."""
    before, task, now, mark = await _completed_after_a_first_poll(connected, asana)
    completion = WebhookSample.of("completed", {"events": asana.data.events[mark:]})
    assert (await post(connected, completion)).json()["inserted"] == 1
    asana.data.comment(task, 2, "Done, deployed in the 14:05 release.", now)
    polled = await connected.client.post(f"{INSTANCE}/poll")
    assert polled.json()["inserted"] == 1

    new = [s for s in await stored(connected) if s["id"] not in before]
    assert sorted(s["type"] for s in new) == ["task_commented", "task_completed"]


async def test_a_new_task_is_created_once_though_edited_before_the_poll(
    connected: Web, asana: AsanaFake
) -> None:
    """A task is created and pushed (fetched at once), then renamed; the poll comes before
    the rename's delivery and reads both events, the task as renamed. The creation is
    one ``task_created`` (the poll's, keyed by the rename's ``modified_at``, was a
    second one), and the rename one ``task_updated``: the poll's (an edit after the
    creation is its own change), which the rename's delivery then duplicates."""
    await shake(connected)
    assert (await connected.client.post(f"{INSTANCE}/poll")).status_code == 200
    before = {s["id"] for s in await stored(connected)}

    now = datetime.now(UTC)
    mark = len(asana.data.events)
    task = asana.data.create_task(now - timedelta(seconds=40), "Refunds stuck in pending")
    creation = WebhookSample.of("created", {"events": asana.data.events[mark:]})
    assert (await post(connected, creation)).json()["inserted"] == 1
    asana.data.rename(task, "Refunds stuck in pending (EU only)", now)
    rename = WebhookSample.of("renamed", {"events": asana.data.events[-1:]})
    polled = await connected.client.post(f"{INSTANCE}/poll")
    assert (polled.json()["inserted"], polled.json()["duplicates"]) == (1, 1)
    assert (await post(connected, rename)).json()["duplicates"] == 1

    new = [s for s in await stored(connected) if s["id"] not in before]
    assert sorted(s["type"] for s in new) == ["task_created", "task_updated"]


async def test_a_task_created_and_commented_in_one_batch_is_two_signals(
    connected: Web, asana: AsanaFake
) -> None:
    """Created, then commented at once (an integration that files a task and posts its
    link): one delivery brings both events. The creation is a version of its own, so
    the comment, which owns the task's ``modified_at``, does not swallow it."""
    await shake(connected)
    assert (await connected.client.post(f"{INSTANCE}/poll")).status_code == 200
    now = datetime.now(UTC)
    mark = len(asana.data.events)
    task = asana.data.create_task(now - timedelta(seconds=5), "Refunds stuck in pending")
    asana.data.comment(task, 2, "From #support: 14 customers so far.", now)
    both = WebhookSample.of("both", {"events": asana.data.events[mark:]})
    assert (await post(connected, both)).json() == {"received": 2, "inserted": 2, "duplicates": 0}
    polled = await connected.client.post(f"{INSTANCE}/poll")
    assert (polled.json()["inserted"], polled.json()["duplicates"]) == (0, 2)
    of_task = [s["type"] for s in await stored(connected) if s["raw"].get("gid") == task.gid]
    assert of_task == ["task_created"]  # the comment's raw is the story, its task the target


async def test_a_completion_pushed_then_the_task_edited_before_the_poll_is_one_signal(
    connected: Web, asana: AsanaFake
) -> None:
    """Completed and pushed (fetched at once), then renamed; the poll comes before the
    rename's delivery and reads both events, the task as renamed and still complete.
    Read as a completion at the rename's ``modified_at``, it was a second
    ``task_completed``; the rename is one ``task_updated`` (the poll's; its own
    delivery duplicates it)."""
    before, task, now, mark = await _completed_after_a_first_poll(connected, asana)
    completion = WebhookSample.of("completed", {"events": asana.data.events[mark:]})
    assert (await post(connected, completion)).json()["inserted"] == 1
    asana.data.rename(task, "Renamed once done", now)
    rename = WebhookSample.of("renamed", {"events": asana.data.events[-1:]})
    polled = await connected.client.post(f"{INSTANCE}/poll")
    assert (polled.json()["inserted"], polled.json()["duplicates"]) == (1, 1)
    assert (await post(connected, rename)).json()["duplicates"] == 1

    new = [s for s in await stored(connected) if s["id"] not in before]
    assert sorted(s["type"] for s in new) == ["task_completed", "task_updated"]


async def _first_poll(connected: Web) -> set[str]:
    """The handshake and a first poll; the ids it stored."""
    await shake(connected)
    assert (await connected.client.post(f"{INSTANCE}/poll")).status_code == 200
    return {s["id"] for s in await stored(connected)}


async def _of_task(connected: Web, gid: str, before: set[str]) -> list[str]:
    """The types of the signals about task ``gid`` stored since ``before``, sorted."""
    return sorted(
        s["type"]
        for s in await stored(connected)
        if s["id"] not in before and gid in (s["raw"]["gid"], s["raw"].get("target", {}).get("gid"))
    )


async def test_an_existing_task_added_to_the_project_is_one_signal_whichever_path_sees_it(
    connected: Web, asana: AsanaFake
) -> None:
    """A task filed days ago elsewhere is added to the project: Asana sends an ``added``
    event under the project, and a catch-up (``modified_since`` counts a task added to a
    project) lists it with its old ``modified_at``. It was a ``task_created`` (keyed
    ``created``) for the delivery and a ``task_updated`` for the catch-up: two signals
    for one addition, and a creation of a task that is days old. It is one change of
    the task, at the ``modified_at`` both can read."""
    before = await _first_poll(connected)
    now = datetime.now(UTC)
    task = asana.data.create_elsewhere(now - timedelta(days=3), "Card declines spike in NL")
    mark = len(asana.data.events)
    asana.data.add_to_project(task, now - timedelta(seconds=30))
    added = WebhookSample.of("added", {"events": asana.data.events[mark:]})
    assert (await post(connected, added)).json()["inserted"] == 1
    asana.expire_sync_tokens()  # the next poll is a catch-up
    polled = await connected.client.post(f"{INSTANCE}/poll")
    assert polled.status_code == 200, polled.text
    assert await _of_task(connected, task.gid, before) == ["task_updated"]


async def test_a_task_removed_changed_elsewhere_and_added_back_is_signalled_again(
    connected: Web, asana: AsanaFake
) -> None:
    """Removed from the project, renamed in the other one, added back: its return is news
    (a ``task_updated`` at its new ``modified_at``). Keyed ``created`` like its first
    addition, it was dropped as a duplicate of the task's creation."""
    before = await _first_poll(connected)
    now = datetime.now(UTC)
    task = asana.data.create_elsewhere(now - timedelta(days=3), "Card declines spike in NL")
    mark = len(asana.data.events)
    asana.data.add_to_project(task, now - timedelta(minutes=9))
    first = WebhookSample.of("added", {"events": asana.data.events[mark:]})
    assert (await post(connected, first)).json()["inserted"] == 1
    asana.data.remove_from_project(task, now - timedelta(minutes=8))
    task.name, task.modified = "Card declines spike in NL and BE", now - timedelta(minutes=5)
    mark = len(asana.data.events)
    asana.data.add_to_project(task, now - timedelta(minutes=1))
    again = WebhookSample.of("added again", {"events": asana.data.events[mark:]})
    assert (await post(connected, again)).json()["inserted"] == 1
    polled = await connected.client.post(f"{INSTANCE}/poll")
    assert polled.json()["inserted"] == 0
    assert await _of_task(connected, task.gid, before) == ["task_updated", "task_updated"]


async def test_a_creation_and_a_completion_in_one_delivery_are_the_signals_of_two_event_pages(
    connected: Web, asana: AsanaFake
) -> None:
    """A task created and completed within seconds: one delivery brings both events, and
    gave only ``task_created``; an events poll whose pages split them gave both. Both
    paths give both."""
    before = await _first_poll(connected)
    now = datetime.now(UTC)
    mark = len(asana.data.events)
    task = asana.data.create_task(now - timedelta(seconds=20), "Restart the export job")
    asana.data.complete(task, now - timedelta(seconds=10))
    both = WebhookSample.of("both", {"events": asana.data.events[mark:]})
    assert (await post(connected, both)).json()["inserted"] == 2
    asana.events_per_call = 1  # the events poll reads them one page each
    polled = await connected.client.post(f"{INSTANCE}/poll")
    assert (polled.json()["inserted"], polled.json()["duplicates"]) == (0, 2)
    assert await _of_task(connected, task.gid, before) == ["task_completed", "task_created"]


async def test_an_assignment_pushed_then_the_task_renamed_before_the_poll_is_assigned_once(
    connected: Web, asana: AsanaFake
) -> None:
    """Assigned and pushed (fetched at once), then renamed; the poll reads both events and
    the task as renamed. Keyed by the task's ``modified_at`` as fetched, the poll's read
    was a second ``task_assigned`` (Asana keeps no assignment time on the task). The
    assignment is versioned by its event's time, the ``modified_at`` it gave the task."""
    before = await _first_poll(connected)
    now = datetime.now(UTC)
    task = [t for t in asana.data.tasks_in_order() if t.completed_at is None][-3]
    mark = len(asana.data.events)
    asana.data.assign(task, 3, now - timedelta(seconds=20))
    assigned = WebhookSample.of("assigned", {"events": asana.data.events[mark:]})
    assert (await post(connected, assigned)).json()["inserted"] == 1
    asana.data.rename(task, task.name + " (EU)", now - timedelta(seconds=5))
    rename = WebhookSample.of("renamed", {"events": asana.data.events[-1:]})
    polled = await connected.client.post(f"{INSTANCE}/poll")
    assert (polled.json()["inserted"], polled.json()["duplicates"]) == (1, 1)
    assert (await post(connected, rename)).json()["duplicates"] == 1
    assert await _of_task(connected, task.gid, before) == ["task_assigned", "task_updated"]


async def test_an_assignment_fetched_after_a_later_comment_leaves_the_comment_its_signal(
    connected: Web, asana: AsanaFake
) -> None:
    """Assigned, then commented before the assignment's delivery was fetched: the task is
    read at the comment's ``modified_at``. Keyed by it, the assignment took the
    comment's key, and the comment's own delivery was dropped as its duplicate."""
    before = await _first_poll(connected)
    now = datetime.now(UTC)
    task = [t for t in asana.data.tasks_in_order() if t.completed_at is None][-3]
    mark = len(asana.data.events)
    asana.data.assign(task, 3, now - timedelta(seconds=20))
    assigned = WebhookSample.of("assigned", {"events": asana.data.events[mark:]})
    mark = len(asana.data.events)
    asana.data.comment(task, 2, "Taking this one, ETA Friday.", now - timedelta(seconds=5))
    commented = WebhookSample.of("commented", {"events": asana.data.events[mark:]})
    assert (await post(connected, assigned)).json()["inserted"] == 1
    assert (await post(connected, commented)).json()["inserted"] == 1
    polled = await connected.client.post(f"{INSTANCE}/poll")
    assert (polled.json()["inserted"], polled.json()["duplicates"]) == (0, 2)
    assert await _of_task(connected, task.gid, before) == ["task_assigned", "task_commented"]
