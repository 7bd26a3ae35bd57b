"""Credentials a consent does not give, sent with its start and stored at its callback.

A connector's consent method may require a credential the provider's consent does not
issue (GitHub PRs' webhook secret). ``POST …/oauth/start`` takes such credentials beside
the settings; they are checked before anyone is sent to the provider, kept encrypted in
the secret store (held there as the PKCE verifier is, :mod:`ucf.service.short_secrets`)
and stored on the instance at the callback. Run on both stacks: SQLite with the local
secret store, DynamoDB (dynalite) with Secrets Manager (moto's server).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio

from tests.service.consents import (
    come_back,
    deleted_at_its_deadline,
    flow_of,
    register_pkce_tool,
    secret_exists,
)
from tests.service.stacks import STACKS, stack_settings
from tests.web.test_oauth import PKCE_APP, consent, pkce_descriptor
from ucf.fakes.oauth import AuthorizationServer
from ucf.service.context import UcfContext
from ucf.service.errors import NotFoundError, ValidationFailed
from ucf.service.oauth import FLOW_LIFETIME, OAuthFlows, OAuthRefused
from ucf.service.short_secrets import SECRET_MARGIN

PROJECT = "proj-held"
CONNECTOR = "pkce-tool"
REDIRECT = "http://ucf.test/oauth/callback"
T0 = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
FAR = T0 + timedelta(days=365)
SECOND = timedelta(seconds=1)
SIGNING = "held-signing-key-5d1c9e"
EXTRA = "held-extra-value-77ab20"


def held_descriptor(base_url: str) -> dict[str, Any]:
    """The PKCE tool with a required credential no consent gives, and an optional one."""
    descriptor = pkce_descriptor(base_url)
    descriptor["auth"]["config"]["credentialFields"] += [
        {"key": "signingKey", "label": "Signing key", "type": "password", "required": True},
        {"key": "extraKey", "label": "Extra key", "type": "password", "required": False},
    ]
    return descriptor


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest_asyncio.fixture(params=STACKS, loop_scope="function")
async def context(
    request: pytest.FixtureRequest,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    provider: AuthorizationServer,
) -> AsyncIterator[UcfContext]:
    settings, _ = stack_settings(request, data_dir, monkeypatch)
    async with await UcfContext.open(settings) as opened:
        await register_pkce_tool(opened, held_descriptor(provider.server.base_url), T0)
        yield opened


async def _start(
    context: UcfContext, provider: AuthorizationServer, credentials: dict[str, Any]
) -> str:
    """A consent started through the API at T0 with ``credentials``; its consent URL."""
    return await OAuthFlows.of(context).start(
        PROJECT,
        CONNECTOR,
        config={"baseUrl": provider.server.base_url},
        redirect_uri=REDIRECT,
        now=T0,
        check_settings=True,
        credentials=credentials,
    )


async def _stored(context: UcfContext) -> dict[str, str]:
    record = await context.instances.record(PROJECT, CONNECTOR)
    return dict(await context.instances.credentials(record))


def files_text(directory: Path) -> str:
    """Every file under ``directory``, as text (bytes kept one to one)."""
    return "\n".join(
        path.read_bytes().decode("latin-1") for path in directory.rglob("*") if path.is_file()
    )


async def _plain_records(context: UcfContext, data_dir: Path) -> str:
    """Everything the store keeps outside the secret store, as text: every file of the
    data directory on SQLite (the local secret store's encrypted file too), every item
    of the table on DynamoDB."""
    db = getattr(context.store.secret_leases, "_db", None)
    if not hasattr(db, "table"):
        return files_text(data_dir)
    items: list[Any] = []
    assert db is not None
    params: dict[str, Any] = {"TableName": db.table}
    while True:
        page = await db.call("scan", **params)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return json.dumps(items)
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def test_held_credentials_are_kept_encrypted_and_stored_on_the_new_instance(
    context: UcfContext, provider: AuthorizationServer, data_dir: Path
) -> None:
    url = await _start(context, provider, {"signingKey": f" {SIGNING} ", "extraKey": EXTRA})
    flow = await flow_of(context, url, T0)
    ref = str(flow["credentialsRef"])
    assert await context.secrets.get(ref) == {"signingKey": SIGNING, "extraKey": EXTRA}
    assert ref in await context.store.secret_leases.due(now=FAR, limit=10)
    held = await _plain_records(context, data_dir)
    assert PKCE_APP in held  # the registered client id is a plain record: the scan sees them
    assert SIGNING not in held
    assert EXTRA not in held

    connected = await come_back(context, url, now=T0 + SECOND)

    assert connected.created
    stored = await _stored(context)
    assert stored["signingKey"] == SIGNING
    assert stored["extraKey"] == EXTRA
    assert stored["accessToken"].startswith("fake-access-")
    assert not await secret_exists(context, ref)
    assert await context.store.secret_leases.due(now=FAR, limit=10) == []
    after = await _plain_records(context, data_dir)
    assert SIGNING not in after
    assert EXTRA not in after
    shown = json.dumps((await context.instances.get(PROJECT, CONNECTOR)).to_json())
    assert SIGNING not in shown
    assert EXTRA not in shown


async def test_an_abandoned_consents_held_credentials_are_deleted_past_their_time(
    context: UcfContext, provider: AuthorizationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await _start(context, provider, {"signingKey": SIGNING})
    flow = await flow_of(context, url, T0)
    ref, verifier = str(flow["credentialsRef"]), str(flow["verifierRef"])
    deadline = T0 + FLOW_LIFETIME + SECRET_MARGIN

    await deleted_at_its_deadline(context, monkeypatch, ref, deadline)
    assert not await secret_exists(context, verifier)
    assert await context.store.secret_leases.due(now=FAR, limit=10) == []


async def test_held_credentials_deleted_before_the_user_came_back_fail_cleanly(
    context: UcfContext, provider: AuthorizationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upkeep whose clock ran ahead deleted them: refused as an expired consent, never
    an instance made without what its script gave; the verifier goes too."""
    url = await _start(context, provider, {"signingKey": SIGNING})
    flow = await flow_of(context, url, T0)
    await context.secrets.delete(str(flow["credentialsRef"]))

    with pytest.raises(OAuthRefused, match="start the connection again"):
        await come_back(context, url, now=T0 + SECOND)

    assert provider.exchanged == 0
    assert not await secret_exists(context, str(flow["verifierRef"]))
    with pytest.raises(NotFoundError):
        await context.instances.record(PROJECT, CONNECTOR)


async def test_a_refused_consent_deletes_its_held_credentials(
    context: UcfContext, provider: AuthorizationServer
) -> None:
    url = await _start(context, provider, {"signingKey": SIGNING})
    ref = str((await flow_of(context, url, T0))["credentialsRef"])
    back = parse_qs(urlsplit(await consent(url, decision="deny")).query)

    with pytest.raises(OAuthRefused, match="did not grant access"):
        await OAuthFlows.of(context).complete(
            state=back["state"][0], code=None, error=back["error"][0], session=None, now=T0
        )

    assert not await secret_exists(context, ref)
    assert await context.store.secret_leases.due(now=FAR, limit=10) == []


async def test_a_reconnect_replaces_the_given_credentials_and_keeps_the_others(
    context: UcfContext, provider: AuthorizationServer
) -> None:
    await come_back(
        context,
        await _start(context, provider, {"signingKey": SIGNING, "extraKey": EXTRA}),
        now=T0 + SECOND,
    )
    first = await _stored(context)

    nothing = await _start(context, provider, {})  # the instance's own count: none required
    await come_back(context, nothing, now=T0 + 2 * SECOND)
    kept = await _stored(context)
    assert (kept["signingKey"], kept["extraKey"]) == (SIGNING, EXTRA)
    assert kept["accessToken"] != first["accessToken"]

    rotated = await _start(context, provider, {"signingKey": "rotated-signing-key-0c4d"})
    connected = await come_back(context, rotated, now=T0 + 3 * SECOND)

    assert not connected.created
    assert connected.return_to == "instance"
    after = await _stored(context)
    assert (after["signingKey"], after["extraKey"]) == ("rotated-signing-key-0c4d", EXTRA)
    assert after["accessToken"] != kept["accessToken"]
    assert await context.store.secret_leases.due(now=FAR, limit=10) == []


async def test_the_start_checks_the_credentials_as_the_setup_form_does(
    context: UcfContext, provider: AuthorizationServer
) -> None:
    """Every problem at its path, before anyone is sent to the provider and before any
    secret is stored."""
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({}, ["credentials.signingKey"]),
        ({"signingKey": "  "}, ["credentials.signingKey"]),
        ({"signingKey": 7}, ["credentials.signingKey"]),  # not a string: not "required" too
        ({"signingKey": SIGNING, "nope": "x"}, ["credentials.nope"]),
        (
            {
                "signingKey": SIGNING,
                "clientId": "mine",
                "clientSecret": "mine",
                "accessToken": "t",
                "refreshToken": "r",
                "accessTokenExpiresAt": "2030-01-01T00:00:00Z",
            },
            [
                "credentials.clientId",
                "credentials.clientSecret",
                "credentials.accessToken",
                "credentials.refreshToken",
                "credentials.accessTokenExpiresAt",
            ],
        ),
    ]
    for credentials, paths in cases:
        with pytest.raises(ValidationFailed) as refused:
            await _start(context, provider, credentials)
        assert [p["path"] for p in refused.value.details] == paths, credentials
    given = refused.value.details[0]["message"]
    assert "given by the consent" in given
    assert await context.store.secret_leases.due(now=FAR, limit=10) == []
    assert provider.exchanged == 0


async def test_an_edit_meanwhile_keeps_the_callbacks_rules_with_the_held_credentials(
    context: UcfContext, provider: AuthorizationServer
) -> None:
    """An edit that makes a setting required: the tokens go to the setup flow as before,
    and the credentials the start gave go with them (not asked for again). One the edit
    removed is dropped, as a removed setting is."""
    url = await _start(context, provider, {"signingKey": SIGNING, "extraKey": EXTRA})
    edited = held_descriptor(provider.server.base_url)
    edited["version"] = "1.1.0"
    edited["configFields"].append({"key": "region", "label": "Region", "required": True})
    edited["auth"]["config"]["credentialFields"].pop()  # extraKey
    await context.instances.update_connector(CONNECTOR, edited)

    connected = await come_back(context, url, now=T0 + SECOND)

    assert connected.ticket is not None
    assert connected.edited
    assert any("config.region" in said for said in connected.unfit)
    tokens, _ = await OAuthFlows.of(context).redeem(
        connected.ticket, project_id=PROJECT, connector_id=CONNECTOR, now=T0 + 2 * SECOND
    )
    assert tokens["signingKey"] == SIGNING
    assert "extraKey" not in tokens
    assert tokens["accessToken"].startswith("fake-access-")
    with pytest.raises(NotFoundError):
        await context.instances.record(PROJECT, CONNECTOR)
