"""Steps of a consent as service tests take them: on a context of either stack
(:mod:`tests.service.stacks`), against the fake authorization server (the ``provider``
fixture of this folder's conftest), with the scheduler's upkeep at a chosen time."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.web.test_oauth import PKCE_APP, PKCE_SECRET, consent
from ucf.service.context import UcfContext
from ucf.service.oauth import OAuthFlows
from ucf.service.scheduler import Scheduler
from ucf.stores.secrets.base import SecretNotFound


async def register_pkce_tool(
    context: UcfContext, descriptor: dict[str, Any], now: datetime
) -> None:
    """``descriptor`` registered, with the PKCE tool's OAuth app."""
    connector = await context.connectors.register(descriptor)
    await context.instances.oauth_clients.register(
        connector, client_id=PKCE_APP, client_secret=PKCE_SECRET, now=now
    )


def state_of(url: str) -> str:
    """The ``state`` of a consent URL."""
    return parse_qs(urlsplit(url).query)["state"][0]


async def flow_of(context: UcfContext, url: str, now: datetime) -> dict[str, Any]:
    """The stored record of the flow a consent URL started."""
    digest = hashlib.sha256(state_of(url).encode()).hexdigest()
    flow = await context.store.records.get(f"oauth-state:{digest}", now=now)
    assert flow is not None
    return dict(flow)


async def come_back(
    context: UcfContext, url: str, *, now: datetime, session: str | None = None
) -> Any:
    """The user allows access at the provider and comes back at ``now``."""
    back = parse_qs(urlsplit(await consent(url)).query)
    return await OAuthFlows.of(context).complete(
        state=back["state"][0], code=back["code"][0], error=None, session=session, now=now
    )


async def upkeep_at(context: UcfContext, monkeypatch: pytest.MonkeyPatch, at: datetime) -> None:
    """The scheduler's upkeep at ``at``, as a scheduler that lives one tick runs it."""
    monkeypatch.setattr(context, "clock", lambda: at)
    await Scheduler(context, f"w-{at.timestamp()}").maintain()


async def secret_exists(context: UcfContext, ref: str) -> bool:
    try:
        await context.secrets.get(ref)
    except SecretNotFound:
        return False
    return True


async def deleted_at_its_deadline(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch, ref: str, deadline: datetime
) -> None:
    """The upkeep a second before ``deadline`` keeps the secret ``ref``; the one at it
    deletes it (and holds nothing more after it)."""
    await upkeep_at(context, monkeypatch, deadline - timedelta(seconds=1))
    assert await secret_exists(context, ref)

    await upkeep_at(context, monkeypatch, deadline)
    assert not await secret_exists(context, ref)
