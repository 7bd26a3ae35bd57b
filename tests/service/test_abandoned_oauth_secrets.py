"""A consent nobody completes leaves no secret behind.

A consent's PKCE verifier and a setup flow's tokens are stored in the secret store
under a fresh ref that only an expiring record names. They were deleted only when the
flow completed: a user who closed the provider's page, or a setup page never reloaded,
left the secret for good (on AWS a Secrets Manager secret billed monthly, for a ticket
one holding a live refresh token). Now each is held in the store with a time, and the
scheduler's upkeep deletes it past that time. Run on both stacks: SQLite with the local
secret store, DynamoDB (dynalite) with Secrets Manager (moto's server).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.service.consents import (
    come_back,
    deleted_at_its_deadline,
    flow_of,
    register_pkce_tool,
    secret_exists,
    upkeep_at,
)
from tests.service.stacks import STACKS, stack_settings
from tests.web.test_oauth import pkce_descriptor
from ucf.fakes.oauth import AuthorizationServer
from ucf.service.context import UcfContext
from ucf.service.errors import NotFoundError
from ucf.service.oauth import FLOW_LIFETIME, TICKET_LIFETIME, OAuthFlows, OAuthRefused
from ucf.service.scheduler import Scheduler
from ucf.service.short_secrets import (
    SECRET_MARGIN,
    consume_secret,
    delete_due_secrets,
    keep_secret_until,
)
from ucf.stores.secrets.base import (
    SecretStoreConfigError,
    SecretStoreUnavailable,
)

PROJECT = "proj-abandoned"
CONNECTOR = "pkce-tool"
REDIRECT = "http://ucf.test/oauth/callback"
T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
FAR = T0 + timedelta(days=365)
SECOND = timedelta(seconds=1)


@pytest_asyncio.fixture(params=STACKS, loop_scope="function")
async def context(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    provider: AuthorizationServer,
) -> AsyncIterator[UcfContext]:
    settings, _ = stack_settings(request, tmp_path, monkeypatch)
    async with await UcfContext.open(settings) as opened:
        await register_pkce_tool(opened, pkce_descriptor(provider.server.base_url), T0)
        yield opened


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def _start(context: UcfContext, provider: AuthorizationServer, **kw: Any) -> str:
    """A consent started at T0; the provider's consent URL."""
    return await OAuthFlows.of(context).start(
        PROJECT,
        CONNECTOR,
        config={"baseUrl": provider.server.base_url},
        redirect_uri=REDIRECT,
        now=T0,
        **kw,
    )


async def _verifier_ref(context: UcfContext, url: str) -> str:
    return str((await flow_of(context, url, T0))["verifierRef"])


async def test_an_abandoned_consents_verifier_is_deleted_past_its_time_and_not_before(
    context: UcfContext, provider: AuthorizationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await _start(context, provider)
    ref = await _verifier_ref(context, url)
    deadline = T0 + FLOW_LIFETIME + SECRET_MARGIN

    await deleted_at_its_deadline(context, monkeypatch, ref, deadline)
    assert await context.store.secret_leases.due(now=FAR, limit=10) == []


async def test_an_unredeemed_tickets_tokens_are_deleted_past_their_time_and_not_before(
    context: UcfContext, provider: AuthorizationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The setup flow's consent completed; the setup page never came back for the tokens
    (a live refresh token nobody would ever use)."""
    url = await _start(context, provider, session="s-1", return_to="setup")
    back_at = T0 + timedelta(minutes=2)
    connected = await come_back(context, url, now=back_at, session="s-1")
    assert connected.ticket is not None
    ticket = await context.store.records.get(
        f"oauth-ticket:{_digest(connected.ticket)}", now=back_at
    )
    assert ticket is not None
    ref = str(ticket["tokensRef"])
    assert (await context.secrets.get(ref))["accessToken"].startswith("fake-access-")
    deadline = back_at + TICKET_LIFETIME + SECRET_MARGIN

    await deleted_at_its_deadline(context, monkeypatch, ref, deadline)
    assert await context.store.secret_leases.due(now=FAR, limit=10) == []
    with pytest.raises(OAuthRefused, match="already used or has expired"):
        await OAuthFlows.of(context).redeem(
            connected.ticket, project_id=PROJECT, connector_id=CONNECTOR, now=deadline
        )


async def test_a_completed_flow_leaves_no_secret_and_nothing_held(
    context: UcfContext, provider: AuthorizationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A setup flow redeemed, and a flow that creates the instance: their verifier and
    tokens are deleted as they are used and not held for the upkeep; the upkeep past
    every time deletes nothing the instance signs in with."""
    url = await _start(context, provider, session="s-1", return_to="setup")
    verifier = await _verifier_ref(context, url)
    connected = await come_back(context, url, now=T0 + SECOND, session="s-1")
    ticket = await context.store.records.get(
        f"oauth-ticket:{_digest(connected.ticket)}", now=T0 + SECOND
    )
    assert ticket is not None
    tokens, _ = await OAuthFlows.of(context).redeem(
        connected.ticket, project_id=PROJECT, connector_id=CONNECTOR, now=T0 + 2 * SECOND
    )
    assert tokens["accessToken"].startswith("fake-access-")
    assert not await secret_exists(context, verifier)
    assert not await secret_exists(context, str(ticket["tokensRef"]))

    url = await _start(context, provider)
    verifier = await _verifier_ref(context, url)
    created = await come_back(context, url, now=T0 + SECOND)
    assert created.created
    assert not await secret_exists(context, verifier)

    assert await context.store.secret_leases.due(now=FAR, limit=10) == []
    await upkeep_at(context, monkeypatch, FAR)
    record = await context.instances.record(PROJECT, CONNECTOR)
    assert record.credential_secret_ref is not None
    assert await secret_exists(context, record.credential_secret_ref)


async def test_a_consent_completed_at_its_last_moment_races_nothing_away(
    context: UcfContext, provider: AuthorizationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upkeep runs at the flow's last second, then the user comes back: the verifier
    is there and the instance is created."""
    url = await _start(context, provider)
    last = T0 + FLOW_LIFETIME - SECOND
    await upkeep_at(context, monkeypatch, last)

    created = await come_back(context, url, now=last)

    assert created.created
    assert provider.exchanged == 1


async def test_a_verifier_deleted_before_the_user_came_back_fails_cleanly(
    context: UcfContext, provider: AuthorizationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upkeep whose clock runs past the hold's time (another worker's) deleted the
    verifier while this worker still takes the flow: refused with "start the connection
    again", the code never sent without its verifier, nothing stored."""
    url = await _start(context, provider)
    await upkeep_at(context, monkeypatch, T0 + FLOW_LIFETIME + SECRET_MARGIN)

    with pytest.raises(OAuthRefused, match="start the connection again"):
        await come_back(context, url, now=T0 + FLOW_LIFETIME - SECOND)

    assert provider.exchanged == 0
    with pytest.raises(NotFoundError):
        await context.instances.record(PROJECT, CONNECTOR)


async def test_tokens_deleted_before_their_ticket_was_redeemed_fail_cleanly(
    context: UcfContext, provider: AuthorizationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await _start(context, provider, session="s-1", return_to="setup")
    connected = await come_back(context, url, now=T0 + SECOND, session="s-1")
    await upkeep_at(context, monkeypatch, T0 + SECOND + TICKET_LIFETIME + SECRET_MARGIN)

    with pytest.raises(OAuthRefused, match="connect again"):
        await OAuthFlows.of(context).redeem(
            connected.ticket, project_id=PROJECT, connector_id=CONNECTOR, now=T0 + 2 * SECOND
        )


@pytest.mark.parametrize("context", ["dynamodb"], indirect=True)
async def test_a_schedule_tick_with_nothing_due_costs_one_read(
    context: UcfContext, provider: AuthorizationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The AWS schedule function lives one tick and looks each tick: one Query of the
    index when nothing is due, never a call to Secrets Manager. A scheduler that lives
    on looks again only after ``SECRET_SWEEP_EVERY``."""
    await _start(context, provider)  # held, not due yet
    calls: list[str] = []

    def called(model: Any, **_: Any) -> None:
        calls.append(model.name)

    context.store.secret_leases._db.events.register("before-call", called)  # type: ignore[attr-defined]
    context.secrets._client.meta.events.register("before-call", called)  # type: ignore[attr-defined]
    monkeypatch.setattr(context, "clock", lambda: T0 + timedelta(minutes=1))
    scheduler = Scheduler(context, "w-tick")

    assert await scheduler.delete_abandoned_secrets() == 0
    assert calls == ["Query"]
    assert await scheduler.delete_abandoned_secrets() == 0
    assert calls == ["Query"]


class _Refusing:
    """The secret store as a backend that refuses to delete some refs (an IAM policy or
    a resource policy denying ``DeleteSecret``, a secret another deployment's prefix
    names): every other call goes to the real store."""

    def __init__(self, store: Any, refused: set[str], error: type[Exception] = Exception) -> None:
        self._store = store
        self.refused = refused
        self.error = SecretStoreUnavailable if error is Exception else error
        self.deletes: list[str] = []

    async def put(self, ref: str | None, values: Any) -> str:
        return str(await self._store.put(ref, values))

    async def get(self, ref: str) -> dict[str, str]:
        return dict(await self._store.get(ref))

    async def delete(self, ref: str) -> None:
        self.deletes.append(ref)
        if ref in self.refused:
            raise self.error(f"refused to delete {ref!r}", "check the role")
        await self._store.delete(ref)

    async def rotate(self, ref: str, values: Any, *, keep_previous: bool = True) -> None:
        await self._store.rotate(ref, values, keep_previous=keep_previous)

    async def close(self) -> None:
        return None


async def test_a_secret_that_cannot_be_deleted_does_not_hold_up_the_others(
    context: UcfContext,
) -> None:
    """A secret whose delete keeps failing was the earliest due at every look: a batch
    of such ones (a full batch: at once again, every tick on AWS) was all the upkeep
    ever tried, and every secret due after them stayed for good. It is tried again
    later, behind the others."""
    leases = context.store.secret_leases
    stuck = await keep_secret_until(context.secrets, leases, {"k": "stuck"}, until=T0)
    other = await keep_secret_until(context.secrets, leases, {"k": "other"}, until=T0 + SECOND)
    refusing = _Refusing(context.secrets, {stuck})

    assert await delete_due_secrets(refusing, leases, now=T0 + SECOND, limit=1) == (0, False)
    assert await delete_due_secrets(refusing, leases, now=T0 + 2 * SECOND, limit=1) == (1, True)
    assert not await secret_exists(context, other)
    assert await secret_exists(context, stuck)
    assert await leases.due(now=T0 + 2 * SECOND, limit=10) == []
    assert await leases.due(now=FAR, limit=10) == [stuck]  # still held: tried again later


@pytest.mark.parametrize("error", [SecretStoreUnavailable, SecretStoreConfigError])
async def test_a_secret_store_refusing_deletes_costs_one_call_a_look(
    context: UcfContext, error: type[Exception]
) -> None:
    """Unavailable (down, throttled past its retries, the role refused) or unusable as
    configured (it fails to open), each delete of a batch waited out its own retries or
    its own open: on AWS a hundred of them outlast the schedule function's minute, and
    the sources' upkeep after them never ran. The look stops at the first."""
    leases = context.store.secret_leases
    refs = [
        await keep_secret_until(context.secrets, leases, {"k": str(i)}, until=T0 + i * SECOND)
        for i in range(3)
    ]
    refusing = _Refusing(context.secrets, set(refs), error)

    assert await delete_due_secrets(refusing, leases, now=T0 + 5 * SECOND) == (0, False)
    assert refusing.deletes == refs[:1]
    for ref in refs:
        assert await secret_exists(context, ref)


async def test_a_secret_read_but_not_deleted_is_still_handed_to_its_flow(
    context: UcfContext,
) -> None:
    """The flow's record is taken before its secret is read: a delete that failed after
    the read (Secrets Manager throttled past its retries) failed the flow, whose user
    had to consent again, for a secret the upkeep deletes anyway as long as it is held.
    The flow gets it; the hold stays, and the upkeep deletes it past its time."""
    leases = context.store.secret_leases
    ref = await keep_secret_until(context.secrets, leases, {"k": "v"}, until=T0)
    refusing = _Refusing(context.secrets, {ref})

    assert await consume_secret(refusing, leases, ref) == {"k": "v"}
    assert await leases.due(now=T0, limit=10) == [ref]
    assert await delete_due_secrets(context.secrets, leases, now=T0) == (1, False)
    assert not await secret_exists(context, ref)
