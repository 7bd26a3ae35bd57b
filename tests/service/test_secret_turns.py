"""Changes of one credential set take turns, in a process and across processes.

Each test interleaves two read-modify-writes of one secret entry through the
real SQLite store and the real local secret store; the first change is held
inside its read by a gate, as a slow secret store would hold it. Unserialised,
the second change reads the old entry and the later write drops the other's key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.runtime.test_auth import NOW, SETTINGS, Provider, get, oauth
from tests.stores.dynalite import dynamodb_url, unique_table_name
from ucf.fakes import FakeServer
from ucf.runtime.auth import build_auth
from ucf.runtime.http import create_client
from ucf.runtime.ssrf import EgressPolicy
from ucf.service.context import UcfContext
from ucf.service.poll import rotation_writer
from ucf.service.secret_turns import TURN_TTL, SecretTurns
from ucf.service.settings import Settings
from ucf.stores.errors import StoreUnavailable
from ucf.stores.secrets.base import SecretStoreUnavailable

LEASE_MS = 800
"""The lease of the two slow-turn tests: its renewals (a store write each) must come in
time on a loaded machine, where a 300 ms lease lapsed now and then (seen with four
other sessions sharing the two cores)."""


class ReadGate:
    """Holds the first read of the secret store until the test lets it go on."""

    def __init__(self, context: UcfContext, monkeypatch: pytest.MonkeyPatch) -> None:
        self.first_read = asyncio.Event()
        self.go_on = asyncio.Event()
        real_get = context.secrets.get

        async def first_read_waits(ref: str) -> dict[str, str]:
            values = await real_get(ref)
            if not self.first_read.is_set():
                self.first_read.set()
                await self.go_on.wait()
            return values

        monkeypatch.setattr(context.secrets, "get", first_read_waits)

    async def held(self) -> None:
        await asyncio.wait_for(self.first_read.wait(), timeout=5)


@pytest.fixture(params=["sqlite", "dynamodb"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Each test on both stores: their leases are the turns across processes (one
    conditional write each), and DynamoDB's run through dynalite."""
    store_url = None
    if request.param == "dynamodb":
        endpoint = request.getfixturevalue("dynalite_endpoint")
        store_url = dynamodb_url(endpoint, unique_table_name("ucf-turns"))
    return Settings.from_env(
        {"UCF_ALLOW_HOSTS": "127.0.0.1"}, data_dir=tmp_path, store_url=store_url
    )


@pytest.fixture
async def context(settings: Settings) -> AsyncIterator[UcfContext]:
    async with await UcfContext.open(settings) as ctx:
        yield ctx


@pytest.fixture
async def other_process(context: UcfContext, settings: Settings) -> AsyncIterator[UcfContext]:
    """A second ucf on the same store and secret store: nothing in memory shared with
    the ``context`` fixture's (another ``ucf worker``, another Lambda function)."""
    async with await UcfContext.open(settings) as ctx:
        yield ctx


async def test_merges_of_one_ref_in_one_process_take_turns(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance's poll saves a refreshed token while its upkeep saves a new key."""
    ref = await context.secrets.put(None, {"refreshToken": "old"})
    gate = ReadGate(context, monkeypatch)
    turns = context.secret_turns
    poll = asyncio.create_task(turns.merge(context.secrets, ref, {"refreshToken": "new"}))
    await gate.held()
    upkeep = asyncio.create_task(turns.merge(context.secrets, ref, {"clientState": "cs-1"}))
    await asyncio.wait({upkeep}, timeout=0.5)  # unserialised, it reads and writes meanwhile
    assert not upkeep.done()
    gate.go_on.set()
    await asyncio.gather(poll, upkeep)
    monkeypatch.undo()

    assert await context.secrets.get(ref) == {"refreshToken": "new", "clientState": "cs-1"}


async def test_merges_from_two_processes_take_turns(
    context: UcfContext, other_process: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll worker and the upkeep are different Lambda functions on AWS."""
    ref = await context.secrets.put(None, {"refreshToken": "old"})
    gate = ReadGate(context, monkeypatch)
    poll = asyncio.create_task(
        context.secret_turns.merge(context.secrets, ref, {"refreshToken": "new"})
    )
    await gate.held()
    upkeep = asyncio.create_task(
        other_process.secret_turns.merge(other_process.secrets, ref, {"clientState": "cs-1"})
    )
    await asyncio.wait({upkeep}, timeout=0.5)
    assert not upkeep.done()  # waiting for the turn the poll holds in the shared store
    gate.go_on.set()
    await asyncio.gather(poll, upkeep)
    monkeypatch.undo()

    expected = {"refreshToken": "new", "clientState": "cs-1"}
    assert await context.secrets.get(ref) == expected
    assert await other_process.secrets.get(ref) == expected


async def test_an_operator_rotation_and_a_poll_refresh_both_stay(
    context: UcfContext, other_process: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instance service's changes (rotation, handshakes, pending secrets) take the
    same turns as the poll's token saves."""
    await context.instances.create(
        "p",
        "github-issues",
        credentials={"token": "old-token-value-1"},
        config={"owner": "o", "repo": "r"},
    )
    record = await context.instances.record("p", "github-issues")
    ref = record.credential_secret_ref
    assert ref is not None
    gate = ReadGate(context, monkeypatch)
    poll = asyncio.create_task(
        context.secret_turns.merge(context.secrets, ref, {"token": "refreshed-token-2"})
    )
    await gate.held()
    rotation = asyncio.create_task(
        other_process.instances.update(
            "p", "github-issues", credentials={"webhookSecret": "s3cret-value-99"}
        )
    )
    await asyncio.wait({rotation}, timeout=0.5)
    assert not rotation.done()
    gate.go_on.set()
    await asyncio.gather(poll, rotation)
    monkeypatch.undo()

    assert await context.instances.credentials(record) == {
        "token": "refreshed-token-2",
        "webhookSecret": "s3cret-value-99",
    }


async def test_a_cancelled_change_gives_its_turn_back(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = await context.secrets.put(None, {"refreshToken": "old"})
    gate = ReadGate(context, monkeypatch)
    poll = asyncio.create_task(
        context.secret_turns.merge(context.secrets, ref, {"refreshToken": "new"})
    )
    await gate.held()
    poll.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poll

    assert await context.store.leases.get(f"secret-turn:{ref}", now=context.clock()) is None
    await asyncio.wait_for(
        context.secret_turns.merge(context.secrets, ref, {"clientState": "cs-1"}), timeout=1
    )
    assert await context.secrets.get(ref) == {"refreshToken": "old", "clientState": "cs-1"}


async def test_a_turn_left_by_a_holder_that_died_lapses(context: UcfContext) -> None:
    ref = await context.secrets.put(None, {"refreshToken": "old"})
    died_at = context.clock()
    assert await context.store.leases.acquire(
        f"secret-turn:{ref}", "host:4242:dead", ttl=TURN_TTL, now=died_at
    )
    now = [died_at + TURN_TTL - timedelta(seconds=1)]

    def clock() -> datetime:
        return now[0]

    waiting = SecretTurns(context.store.leases, clock, wait_seconds=5)
    merge = asyncio.create_task(waiting.merge(context.secrets, ref, {"refreshToken": "new"}))
    await asyncio.wait({merge}, timeout=0.3)
    assert not merge.done()  # the turn is still the dead holder's
    now[0] = died_at + TURN_TTL + timedelta(seconds=1)
    await asyncio.wait_for(merge, timeout=2)
    assert await context.secrets.get(ref) == {"refreshToken": "new"}


async def test_a_turn_never_given_back_ends_in_a_clear_error(
    context: UcfContext, other_process: UcfContext
) -> None:
    ref = await context.secrets.put(None, {"refreshToken": "old"})
    impatient = SecretTurns(context.store.leases, context.clock, wait_seconds=0.3)
    async with other_process.secret_turns.turn(ref):
        with pytest.raises(SecretStoreUnavailable, match="kept changing these credentials"):
            await impatient.merge(context.secrets, ref, {"refreshToken": "new"})
    assert await context.secrets.get(ref) == {"refreshToken": "old"}


async def test_runs_in_two_processes_refresh_one_rotating_token_once(
    context: UcfContext, other_process: UcfContext
) -> None:
    """The poll worker and the upkeep both find the access token expired; the provider
    rotates refresh tokens and kills the old one at once. The second run takes the token
    the first stored, instead of being refused with the dead refresh token."""
    provider = Provider()
    credentials = {"clientId": "cid", "clientSecret": "csecret", "refreshToken": "refresh-1"}
    ref = await context.secrets.put(None, credentials)
    with FakeServer() as server:
        server.add_route("POST", "/oauth/token", provider.token)
        server.add_route("GET", "/api/me", provider.api)
        async with create_client(SETTINGS, EgressPolicy(frozenset({"127.0.0.1"}))) as client:
            runs = []
            for ucf in (context, other_process):
                keeper = rotation_writer(ucf, ref)
                assert keeper is not None
                flow = build_auth(
                    oauth(server),
                    credentials,
                    token_client=client,
                    on_rotate=keeper,
                    now=lambda: NOW,
                )
                runs.append(get(client, flow, server.url("/api/me")))
            responses = await asyncio.wait_for(asyncio.gather(*runs), timeout=30)

    assert [r.status_code for r in responses] == [200, 200]
    assert [call["refresh_token"] for call in provider.token_calls] == [["refresh-1"]]
    stored = await other_process.secrets.get(ref)
    assert stored["refreshToken"] == "refresh-2"
    assert stored["accessToken"] == "access-2"


async def test_a_turn_held_longer_than_its_lease_is_kept(
    context: UcfContext, other_process: UcfContext
) -> None:
    """A slow token refresh inside the turn: the lease is renewed, nobody takes over."""
    ref = await context.secrets.put(None, {"refreshToken": "old"})
    ttl = timedelta(milliseconds=LEASE_MS)
    slow = SecretTurns(other_process.store.leases, other_process.clock, ttl=ttl)
    waiting = SecretTurns(context.store.leases, context.clock, ttl=ttl)
    async with slow.turn(ref):
        merge = asyncio.create_task(waiting.merge(context.secrets, ref, {"clientState": "cs"}))
        await asyncio.wait({merge}, timeout=3 * LEASE_MS / 1000)  # three lease lifetimes
        assert not merge.done()
    await asyncio.wait_for(merge, timeout=5)
    assert await context.secrets.get(ref) == {"refreshToken": "old", "clientState": "cs"}


async def test_a_renewal_the_store_fails_once_is_tried_again(
    context: UcfContext, other_process: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One renewal of a slow turn's lease meets a store hiccup (DynamoDB throttling, a
    dropped connection): the next renewal keeps the turn, nobody takes over meanwhile."""
    ref = await context.secrets.put(None, {"refreshToken": "old"})
    ttl = timedelta(milliseconds=LEASE_MS)
    leases = other_process.store.leases
    real_renew = leases.renew
    failures: list[str] = []

    async def renew_fails_once(name: str, owner: str, *, ttl: timedelta, now: datetime) -> bool:
        if not failures:
            failures.append(name)
            raise StoreUnavailable("the store did not answer")
        return await real_renew(name, owner, ttl=ttl, now=now)

    monkeypatch.setattr(leases, "renew", renew_fails_once)
    slow = SecretTurns(leases, other_process.clock, ttl=ttl)
    waiting = SecretTurns(context.store.leases, context.clock, ttl=ttl)
    async with slow.turn(ref):
        merge = asyncio.create_task(waiting.merge(context.secrets, ref, {"clientState": "cs"}))
        await asyncio.wait({merge}, timeout=3 * LEASE_MS / 1000)  # three lease lifetimes
        assert failures
        assert not merge.done()
    await asyncio.wait_for(merge, timeout=5)


async def test_a_release_the_store_fails_leaves_the_change_made(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change is written; the store then fails to delete the lease. The caller learns
    the change succeeded (a poll keeps its refreshed token, the operator's update is not
    reported failed after it was made) and the lease lapses by itself."""
    ref = await context.secrets.put(None, {"refreshToken": "old"})

    async def release_fails(name: str, owner: str) -> bool:
        raise StoreUnavailable("the store did not answer")

    monkeypatch.setattr(context.store.leases, "release", release_fails)
    merged = await context.secret_turns.merge(context.secrets, ref, {"refreshToken": "new"})

    assert merged == {"refreshToken": "new"}
    assert await context.secrets.get(ref) == {"refreshToken": "new"}


async def test_a_task_started_in_a_turn_takes_turns_once_that_turn_is_over(
    context: UcfContext, other_process: UcfContext
) -> None:
    """Tasks inherit the turns their creator holds (an OAuth refresh saves its token from
    a task of its own), but a task that outlives the turn must not inherit it for good:
    it would change the credentials later while another process holds their turn."""
    ref = await context.secrets.put(None, {"refreshToken": "old"})
    later = asyncio.Event()

    async def background() -> None:
        await later.wait()
        await context.secret_turns.merge(context.secrets, ref, {"clientState": "cs"})

    async with context.secret_turns.turn(ref):
        task = asyncio.create_task(background())
    async with other_process.secret_turns.turn(ref):
        later.set()
        await asyncio.wait({task}, timeout=0.3)
        assert not task.done()  # it waits for the other process's turn
    await asyncio.wait_for(task, timeout=5)
    assert await context.secrets.get(ref) == {"refreshToken": "old", "clientState": "cs"}


async def test_a_turn_cancelled_while_its_lease_is_taken_leaves_nothing_behind(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled twice while the store takes the lease: the lease it got is given back,
    no renewal is left running, and the cancellation still ends the change."""
    ref = await context.secrets.put(None, {"refreshToken": "old"})
    leases = context.store.leases
    real_acquire = leases.acquire
    taking, go_on = asyncio.Event(), asyncio.Event()

    async def slow_acquire(name: str, owner: str, *, ttl: timedelta, now: datetime) -> bool:
        taking.set()
        await go_on.wait()
        return await real_acquire(name, owner, ttl=ttl, now=now)

    monkeypatch.setattr(leases, "acquire", slow_acquire)
    change = asyncio.create_task(
        context.secret_turns.merge(context.secrets, ref, {"refreshToken": "new"})
    )
    await asyncio.wait_for(taking.wait(), timeout=5)
    change.cancel()
    await asyncio.sleep(0.05)
    change.cancel()  # a second Ctrl-C, a shutdown grace running out
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await change

    assert await leases.get(f"secret-turn:{ref}", now=context.clock()) is None
    assert not [t for t in asyncio.all_tasks() if "_keep" in repr(t.get_coro())]
    assert await context.secrets.get(ref) == {"refreshToken": "old"}
