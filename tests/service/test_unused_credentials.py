"""Credentials an instance no longer signs in with are deleted from the secret store.

An instance's credentials are one secret. A switch to another sign-in method (a PATCH
of its credentials, or its connector edited to another method) merged the new ones in
and kept the old method's key, OAuth app secret and tokens, encrypted but stored for
good. Run on both stacks: SQLite with the local secret store, DynamoDB (dynalite) with
Secrets Manager (moto's server), where a rotation keeps the replaced version as
``AWSPREVIOUS`` unless it is retired.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.service.stacks import STACKS, stack_settings
from ucf.catalogue import builtin_descriptors
from ucf.core.descriptor import AUTH_METHOD_KEY
from ucf.fakes.linear import OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_TOKEN, LinearFake
from ucf.service.context import UPGRADES_PENDING, UcfContext, upgrade_pending_key
from ucf.service.errors import ValidationFailed
from ucf.service.instance_secrets import RESERVED
from ucf.service.instances import InstanceService
from ucf.service.poll import poll_instance
from ucf.service.scheduler import Scheduler
from ucf.service.settings import Settings
from ucf.stores.errors import StoreUnavailable

PROJECT = "proj-unused"
API_KEY = "lin_api_" + "Kq9LmZ4vT7wYb3NcHs6JdP1fGa5Ue0Ao"
WEBHOOK_SECRET = "whs-0123456789abcdef"
OAUTH = {
    AUTH_METHOD_KEY: "oauth2",
    "clientId": "client-0123",
    "clientSecret": "client-secret-0123456789",
    "accessToken": "access-0123456789abcdef",
    "refreshToken": "refresh-0123456789abcdef",
}


@pytest.fixture(params=STACKS)
async def context(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[UcfContext]:
    settings, moto = stack_settings(request, tmp_path, monkeypatch)
    async with await UcfContext.open(settings) as opened:
        opened.test_moto = moto  # type: ignore[attr-defined]
        opened.test_settings = settings  # type: ignore[attr-defined]
        await opened.instances.create(
            PROJECT,
            "linear",
            credentials={"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET},
            config={"baseUrl": "http://127.0.0.1:9"},
        )
        yield opened


async def _stored(context: UcfContext) -> dict[str, str]:
    """The instance's credential set as the secret store holds it (no reserved keys)."""
    record = await context.instances.record(PROJECT, "linear")
    assert record.credential_secret_ref is not None
    stored = await context.secrets.get(record.credential_secret_ref)
    return {key: value for key, value in stored.items() if not key.startswith(RESERVED)}


def _previous_version(context: UcfContext, ref: str) -> str | None:
    """What Secrets Manager still hands out as the version before the current one."""
    moto = getattr(context, "test_moto", None)
    if moto is None:
        return None
    client = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto)
    try:
        answer = client.get_secret_value(SecretId=ref, VersionStage="AWSPREVIOUS")
    except client.exceptions.ResourceNotFoundException:
        return None
    finally:
        client.close()
    return str(answer["SecretString"])


async def test_a_switch_to_another_sign_in_method_deletes_the_old_ones_credentials(
    context: UcfContext,
) -> None:
    await context.instances.update(PROJECT, "linear", credentials=OAUTH)

    assert await _stored(context) == {**OAUTH, "webhookSecret": WEBHOOK_SECRET}
    record = await context.instances.record(PROJECT, "linear")
    assert record.credential_secret_ref is not None
    assert API_KEY not in (_previous_version(context, record.credential_secret_ref) or "")

    back = {AUTH_METHOD_KEY: "api_key", "apiKey": API_KEY}
    await context.instances.update(PROJECT, "linear", credentials=back)

    assert await _stored(context) == {**back, "webhookSecret": WEBHOOK_SECRET}
    assert OAUTH["refreshToken"] not in (
        _previous_version(context, record.credential_secret_ref) or ""
    )


async def test_a_refused_switch_leaves_the_credentials_as_they_were(
    context: UcfContext,
) -> None:
    """Naming the OAuth method without its tokens cannot sign in: refused, and the key
    it would have made unused is still there."""
    with pytest.raises(ValidationFailed):
        await context.instances.update(
            PROJECT, "linear", credentials={AUTH_METHOD_KEY: "oauth2", "clientId": "c"}
        )

    assert await _stored(context) == {"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET}


async def test_a_rotation_within_the_same_method_keeps_every_credential(
    context: UcfContext,
) -> None:
    await context.instances.update(PROJECT, "linear", credentials={"apiKey": API_KEY + "x"})

    assert await _stored(context) == {"apiKey": API_KEY + "x", "webhookSecret": WEBHOOK_SECRET}


def _shipped_linear() -> dict[str, Any]:
    """Linear's descriptor as the catalogue ships it (a fresh copy each call)."""
    (linear,) = (d for d in builtin_descriptors() if d["id"] == "linear")
    return linear


def _linear_with_a_token_only() -> dict[str, Any]:
    """Linear's descriptor edited to sign in with a PAT ('token') and nothing else."""
    linear = _shipped_linear()
    edited = copy.deepcopy(linear)
    edited.pop("authAlternatives", None)
    edited["auth"] = {
        "method": "pat",
        "config": {
            "delivery": "bearer",
            "paramName": "Authorization",
            "credentialKey": "token",
            "credentialFields": [
                {"key": "token", "label": "Token", "type": "password", "required": True},
                {
                    "key": "webhookSecret",
                    "label": "Webhook secret",
                    "type": "password",
                    "required": False,
                },
            ],
        },
    }
    return edited


async def test_a_connector_edited_to_another_sign_in_method_keeps_the_key_until_a_token_comes(
    context: UcfContext,
) -> None:
    """The edit is saved (its instance now lacks a token, which its page says) and the
    key stays, so undoing the edit finds the instance working; once a token completes
    its sign-in, the key only an earlier version used is deleted, the webhook secret
    kept."""
    record = await context.instances.record(PROJECT, "linear")
    await context.instances.update_connector("linear", _linear_with_a_token_only())
    assert await _stored(context) == {"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET}

    token = "tok-" + "0a1b2c3d4e5f60718293"
    await context.instances.update(PROJECT, "linear", credentials={"token": token})

    assert await _stored(context) == {"token": token, "webhookSecret": WEBHOOK_SECRET}
    assert record.credential_secret_ref is not None
    assert API_KEY not in (_previous_version(context, record.credential_secret_ref) or "")


async def test_an_edit_that_renames_the_key_is_undone_by_a_restore_with_the_key_intact(
    context: UcfContext,
) -> None:
    """A slip in an edit (the key's name changed) leaves every instance unable to sign
    in; it must not also delete their keys, or no restore could bring them back."""
    linear = _shipped_linear()
    renamed = json.loads(json.dumps(linear).replace('"apiKey"', '"accessKey"'))
    await context.instances.update_connector("linear", renamed)
    assert (await context.instances.get(PROJECT, "linear")).sign_in_problems
    _, versions = await context.connectors.versions("linear")

    await context.instances.restore_connector("linear", versions[0].version)

    assert await _stored(context) == {"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET}
    assert (await context.instances.get(PROJECT, "linear")).sign_in_problems == ()


async def test_a_connector_edit_that_is_refused_deletes_no_credential(
    context: UcfContext,
) -> None:
    edited = _linear_with_a_token_only()
    edited["id"] = "not-linear"  # refused: the id must match

    with pytest.raises(ValidationFailed):
        await context.instances.update_connector("linear", edited)

    assert await _stored(context) == {"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET}


async def test_a_connector_edit_that_keeps_the_sign_in_method_keeps_every_credential(
    context: UcfContext,
) -> None:
    linear = _shipped_linear()
    edited = copy.deepcopy(linear)
    edited["description"] = "Linear, edited"

    await context.instances.update_connector("linear", edited)

    assert await _stored(context) == {"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET}


async def test_a_restore_to_another_sign_in_method_deletes_the_credentials_it_leaves(
    context: UcfContext,
) -> None:
    """A restore is an edit back to an earlier descriptor: the token the edited connector
    signed in with goes once the instance signs in with a key again."""
    await context.instances.update_connector("linear", _linear_with_a_token_only())
    token = "tok-" + "9f8e7d6c5b4a39281706"
    await context.instances.update(PROJECT, "linear", credentials={"token": token})
    assert await _stored(context) == {"token": token, "webhookSecret": WEBHOOK_SECRET}
    _, versions = await context.connectors.versions("linear")
    await context.instances.restore_connector("linear", versions[0].version)
    assert await _stored(context) == {"token": token, "webhookSecret": WEBHOOK_SECRET}

    await context.instances.update(PROJECT, "linear", credentials={"apiKey": API_KEY})

    assert await _stored(context) == {"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET}


async def test_an_edit_that_renames_the_webhook_secret_is_undone_by_a_restore_with_it_intact(
    context: UcfContext,
) -> None:
    """A slip in an edit that renames the webhook's secret leaves every instance signing
    in (its key is untouched) but unable to verify a delivery. The secret is no sign-in
    credential, so the sign-in check let the edit delete it: a restore then found every
    instance refusing each delivery, and only the provider's dashboard had the secret."""
    linear = _shipped_linear()
    renamed = json.loads(json.dumps(linear).replace('"webhookSecret"', '"signingSecret"'))
    renamed["ingestion"]["webhook"]["signature"]["secretCredential"] = "signingSecret"
    await context.instances.update_connector("linear", renamed)
    _, versions = await context.connectors.versions("linear")

    await context.instances.restore_connector("linear", versions[0].version)

    assert await _stored(context) == {"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET}


async def test_an_edit_that_drops_the_webhook_is_undone_by_a_restore_with_its_secret_intact(
    context: UcfContext,
) -> None:
    """The same with the webhook taken out (polling only, for a while): the instances
    still sign in, and the secret their deliveries are verified with must come back
    with the webhook."""
    linear = _shipped_linear()
    polling = copy.deepcopy(linear)
    polling["ingestion"] = {"mode": "polling", **linear["ingestion"]["polling"]}
    for method in [polling["auth"], *polling.get("authAlternatives", [])]:
        fields = method["config"]["credentialFields"]
        method["config"]["credentialFields"] = [f for f in fields if f["key"] != "webhookSecret"]
    await context.instances.update_connector("linear", polling)
    assert not (await context.instances.get(PROJECT, "linear")).sign_in_problems
    _, versions = await context.connectors.versions("linear")

    await context.instances.restore_connector("linear", versions[0].version)

    assert await _stored(context) == {"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET}


async def test_a_key_rotated_after_a_slip_keeps_the_webhook_secret_for_the_restore(
    context: UcfContext,
) -> None:
    """After the slip, the instance's key is rotated before anyone notices: the rotation
    completes its sign-in, and keys only earlier versions declared go, but the secret
    its deliveries were verified with is no sign-in's and nothing replaced it (the
    renamed one was never given): the restore needs it."""
    linear = _shipped_linear()
    renamed = json.loads(json.dumps(linear).replace('"webhookSecret"', '"signingSecret"'))
    renamed["ingestion"]["webhook"]["signature"]["secretCredential"] = "signingSecret"
    await context.instances.update_connector("linear", renamed)
    await context.instances.update(PROJECT, "linear", credentials={"apiKey": API_KEY + "x"})
    _, versions = await context.connectors.versions("linear")

    await context.instances.restore_connector("linear", versions[0].version)

    assert await _stored(context) == {"apiKey": API_KEY + "x", "webhookSecret": WEBHOOK_SECRET}


async def test_a_webhook_secret_renamed_and_given_deletes_the_old_one(
    context: UcfContext,
) -> None:
    """Once the renamed secret is given, deliveries verify with it: the one only earlier
    versions verified with goes, as any key only they declared."""
    linear = _shipped_linear()
    renamed = json.loads(json.dumps(linear).replace('"webhookSecret"', '"signingSecret"'))
    renamed["ingestion"]["webhook"]["signature"]["secretCredential"] = "signingSecret"
    await context.instances.update_connector("linear", renamed)

    await context.instances.update(PROJECT, "linear", credentials={"signingSecret": "new-1"})

    assert await _stored(context) == {"apiKey": API_KEY, "signingSecret": "new-1"}


async def test_earlier_versions_are_parsed_once_for_each_way_of_signing_in(
    context: UcfContext,
) -> None:
    """Every PATCH that completes a sign-in reads the earlier versions for the keys they
    declared: a connector edited many times (its sign-in seldom) had each version parsed
    again, ~1.7 ms of CPU each on the event loop. Versions that declare the same sign-in
    and verification name the same keys: one of them is enough."""
    linear = _shipped_linear()
    for n in range(4):
        edited = copy.deepcopy(linear)
        edited["description"] = f"Linear, edit {n}"
        await context.instances.update_connector("linear", edited)
    await context.instances.update_connector("linear", _linear_with_a_token_only())
    await context.instances.update_connector("linear", linear)
    _, versions = await context.connectors.versions("linear")
    assert len(versions) == 6

    earlier = await context.connectors.earlier_descriptors("linear")

    assert [d.auth.method for d in earlier] == ["pat", "api_key"]


async def test_an_edit_that_renames_an_optional_token_is_undone_by_a_restore_with_it_intact(
    context: UcfContext,
) -> None:
    """An optional credential the instance signs in with (Outlook's refresh token: without
    it the instance signs in as the app) renamed by a slip: the instance still signs in,
    so the sign-in check let the edit delete the token, which only a new consent gives
    back; the restore found the instance reading as the app, not the user."""
    (outlook,) = (d for d in builtin_descriptors() if d["id"] == "outlook")
    signed_in = {"clientId": "c-1", "clientSecret": "s-1", "refreshToken": "r-0123456789"}
    await context.instances.create(
        PROJECT, "outlook", credentials=signed_in, config={"baseUrl": "http://127.0.0.1:9"}
    )
    renamed = json.loads(json.dumps(outlook).replace('"refreshToken"', '"userRefreshToken"'))
    renamed["auth"]["config"]["refreshTokenKey"] = "userRefreshToken"
    await context.instances.update_connector("outlook", renamed)
    assert not (await context.instances.get(PROJECT, "outlook")).sign_in_problems
    _, versions = await context.connectors.versions("outlook")

    await context.instances.restore_connector("outlook", versions[0].version)

    record = await context.instances.record(PROJECT, "outlook")
    assert record.credential_secret_ref is not None
    stored = await context.secrets.get(record.credential_secret_ref)
    assert {k: v for k, v in stored.items() if not k.startswith(RESERVED)} == signed_in


def _linear_with_oauth_only() -> dict[str, Any]:
    """Linear's descriptor as it might have been before its API key was offered: OAuth
    2.0 its one way to sign in, so an instance made then stores no ``authMethod``."""
    linear = _shipped_linear()
    edited = copy.deepcopy(linear)
    edited["auth"] = edited.pop("authAlternatives")[0]
    return edited


TOKENS = {key: value for key, value in OAUTH.items() if key != AUTH_METHOD_KEY}
OTHER = "proj-oauth-then"


async def _oauth_instance_before_the_key(context: UcfContext) -> None:
    """An instance of ``OTHER`` made while Linear signed in with OAuth alone (no
    ``authMethod`` stored), its connector then given the API key as ``auth`` back and
    OAuth as the alternative."""
    linear = _shipped_linear()
    await context.connectors.edit("linear", _linear_with_oauth_only())
    await context.instances.create(
        OTHER, "linear", credentials=TOKENS, config={"baseUrl": "http://127.0.0.1:9"}
    )
    await context.instances.update_connector("linear", linear)


async def _stored_of(context: UcfContext, project: str) -> dict[str, str]:
    record = await context.instances.record(project, "linear")
    assert record.credential_secret_ref is not None
    stored = await context.secrets.get(record.credential_secret_ref)
    return {key: value for key, value in stored.items() if not key.startswith(RESERVED)}


async def test_an_edit_that_moves_an_instances_method_to_an_alternative_keeps_it_signing_in(
    context: UcfContext,
) -> None:
    """An instance signing in with ``auth`` stores no ``authMethod``: an edit that made
    another method ``auth`` and the instance's an alternative switched it to a method it
    has no credential for (every poll failed, while its page said it could sign in).
    The edit now records the method it signed in with."""
    await _oauth_instance_before_the_key(context)

    instance = await context.instances.get(OTHER, "linear")

    assert instance.auth_method == "oauth2"
    assert instance.sign_in_problems == ()
    assert await _stored_of(context, OTHER) == {**TOKENS, AUTH_METHOD_KEY: "oauth2"}


async def test_a_client_secret_patched_after_such_an_edit_keeps_the_oauth_tokens(
    context: UcfContext,
) -> None:
    """The same instance, its connector changed by a path that records nothing (an edit
    before this check existed, a catalogue upgrade at start-up): a PATCH of its client
    secret alone completed the OAuth sign-in (the check inferred the method) but the
    pruning read the instance as an API-key one and deleted its tokens, which only a new
    consent gives back. It now keeps them, and the method it was checked with."""
    linear = _shipped_linear()
    await context.connectors.edit("linear", _linear_with_oauth_only())
    await context.instances.create(
        OTHER, "linear", credentials=TOKENS, config={"baseUrl": "http://127.0.0.1:9"}
    )
    await context.connectors.edit("linear", linear)  # nothing pruned, nothing recorded
    assert AUTH_METHOD_KEY not in await _stored_of(context, OTHER)

    updated = await context.instances.update(
        OTHER, "linear", credentials={"clientSecret": "client-secret-rotated-0001"}
    )

    assert await _stored_of(context, OTHER) == {
        **TOKENS,
        "clientSecret": "client-secret-rotated-0001",
        AUTH_METHOD_KEY: "oauth2",
    }
    assert updated.auth_method == "oauth2"
    assert updated.sign_in_problems == ()


async def _restarted_with(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch, linear: dict[str, Any]
) -> UcfContext:
    """A new process on the same stores whose catalogue ships ``linear`` (a higher
    version): its start-up sync upgrades the stored one."""
    from ucf.service import connectors as module

    shipped = [d for d in builtin_descriptors() if d["id"] != "linear"]
    monkeypatch.setattr(
        module, "builtin_descriptors", lambda: [*shipped, {**linear, "version": "99.0.0"}]
    )
    restarted = await UcfContext.open(context.test_settings)  # type: ignore[attr-defined]
    assert (await restarted.connectors.get("linear")).descriptor.version == "99.0.0"
    return restarted


async def _restarted_with_its_upgrade_work_failing(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> UcfContext:
    """:func:`_restarted_with` Linear upgraded to OAuth first and its key beside it, the
    upgrade's work on the instances failing (the store throttled)."""
    swapped = copy.deepcopy(_linear_with_oauth_only())
    swapped["authAlternatives"] = [_shipped_linear()["auth"]]

    async def throttled(*args: Any, **kwargs: Any) -> int:
        raise StoreUnavailable("throttled")

    monkeypatch.setattr(InstanceService, "drop_unused_credentials", throttled)
    return await _restarted_with(context, monkeypatch, swapped)


async def test_a_catalogue_upgrade_that_makes_oauth_the_first_method_keeps_key_instances_signing_in(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shipped descriptor upgraded at start-up is an edit nobody made: one that put
    OAuth first and the API key beside it switched every key instance (no
    ``authMethod`` stored) to OAuth, which it has no token for. It records their method,
    as an edit does."""
    swapped = copy.deepcopy(_linear_with_oauth_only())
    linear = _shipped_linear()
    swapped["authAlternatives"] = [linear["auth"]]

    restarted = await _restarted_with(context, monkeypatch, swapped)
    try:
        instance = await restarted.instances.get(PROJECT, "linear")
        left = await restarted.pending_upgrades()
    finally:
        await restarted.close()

    assert instance.auth_method == "api_key"
    assert instance.sign_in_problems == ()
    assert left == {}  # done: nothing for the daily job
    assert await _stored(context) == {
        "apiKey": API_KEY,
        "webhookSecret": WEBHOOK_SECRET,
        AUTH_METHOD_KEY: "api_key",
    }


async def test_a_catalogue_upgrade_whose_work_failed_is_done_by_the_next_daily_job(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upgrade is stored first, its work on the instances after, once, by the start
    that won it: that work failing (the store throttled, a Lambda timed out) left every
    key instance read as OAuth, unable to sign in, and no later start or edit did it
    again. It is remembered until done, and the daily job does it."""
    work = InstanceService.drop_unused_credentials  # put back once the restart failed it
    restarted = await _restarted_with_its_upgrade_work_failing(context, monkeypatch)
    try:
        # Its method is not recorded: it was read as OAuth, which it has no token for,
        # until the runtime read, as its page does, the method its credentials complete.
        assert AUTH_METHOD_KEY not in await _stored(context)
        monkeypatch.setattr(InstanceService, "drop_unused_credentials", work)
        await Scheduler(restarted, "daily").retire_webhook_secrets()
        instance = await restarted.instances.get(PROJECT, "linear")
        left = await restarted.pending_upgrades()
    finally:
        await restarted.close()

    assert instance.auth_method == "api_key"
    assert instance.sign_in_problems == ()
    assert left == {}
    assert (await _stored(context))[AUTH_METHOD_KEY] == "api_key"  # recorded: done


async def test_an_upgrade_pending_in_the_single_record_of_an_earlier_version_is_done(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database an earlier version left holds its pending upgrades in one record
    (``upgrades-pending``: connector id to the descriptor it replaced): the daily job
    still does their work, and the record goes."""
    work = InstanceService.drop_unused_credentials  # put back once the restart failed it
    restarted = await _restarted_with_its_upgrade_work_failing(context, monkeypatch)
    try:
        records = restarted.store.records
        now = restarted.clock()
        pending = await records.take(upgrade_pending_key("linear"), now=now)
        assert pending is not None
        await records.put(UPGRADES_PENDING, {"linear": pending["before"]})
        monkeypatch.setattr(InstanceService, "drop_unused_credentials", work)

        assert await restarted.finish_upgrades() == 1
        instance = await restarted.instances.get(PROJECT, "linear")
        old = await records.get(UPGRADES_PENDING, now=now)
        left = await restarted.pending_upgrades()
    finally:
        await restarted.close()

    assert instance.auth_method == "api_key"
    assert (await _stored(context))[AUTH_METHOD_KEY] == "api_key"  # the work was done
    assert old is None
    assert left == {}


async def test_two_processes_upgrading_two_connectors_at_once_both_remember_theirs(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each start that upgrades a shipped connector remembers it until its work is done.
    In one shared record, read then written back, two starts upgrading two connectors at
    once each wrote back what it had read: one upgrade was forgotten, its work never done
    again. Both reads are held here until both have read."""
    other = await UcfContext.open(context.test_settings)  # type: ignore[attr-defined]
    try:
        both_read = asyncio.Barrier(2)
        holding = True

        def held(store: Any) -> None:
            read = store.get

            async def get(key: str, *, now: Any) -> Any:
                found = await read(key, now=now)
                if holding:
                    await both_read.wait()
                return found

            monkeypatch.setattr(store, "get", get)

        held(context.store.records)
        held(other.store.records)
        linear = await context.connectors.get("linear")
        jira = await other.connectors.get("jira")
        await asyncio.wait_for(
            asyncio.gather(
                context._upgrade_pending("linear", linear),
                other._upgrade_pending("jira", jira),
            ),
            timeout=10,
        )
        holding = False
        pending = await context.pending_upgrades()
    finally:
        await other.close()

    assert pending == {"linear": linear.stored, "jira": jira.stored}


async def test_a_catalogue_upgrade_that_drops_a_method_deletes_its_credentials_as_an_edit_does(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OAuth alternative gone in a new catalogue version: an edit deletes an
    instance's OAuth app secret it no longer signs in with; the upgrade kept it."""
    app = {"clientId": "client-0123", "clientSecret": "client-secret-0123456789"}
    await context.instances.create(
        OTHER,
        "linear",
        credentials={"apiKey": API_KEY, **app},
        config={"baseUrl": "http://127.0.0.1:9"},
    )
    linear = _shipped_linear()
    key_only = copy.deepcopy(linear)
    key_only.pop("authAlternatives")

    restarted = await _restarted_with(context, monkeypatch, key_only)
    await restarted.close()

    assert await _stored_of(context, OTHER) == {"apiKey": API_KEY}
    assert await _stored(context) == {"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET}


def _linear_without_its_webhook() -> dict[str, Any]:
    """Linear polled only: no webhook, no webhook secret field."""
    linear = _shipped_linear()
    polling = copy.deepcopy(linear)
    polling["ingestion"] = {"mode": "polling", **linear["ingestion"]["polling"]}
    for method in [polling["auth"], *polling.get("authAlternatives", [])]:
        fields = method["config"]["credentialFields"]
        method["config"]["credentialFields"] = [f for f in fields if f["key"] != "webhookSecret"]
    return polling


async def test_a_webhook_secret_the_connector_stopped_verifying_with_goes_after_its_retention(
    context: UcfContext,
) -> None:
    """A connector edited to do without its webhook kept every instance's secret until
    the instance was deleted, through every PATCH (a restore might need it). Once the
    version without it has stood 30 days, the secret goes; the key stays."""
    await context.instances.update_connector("linear", _linear_without_its_webhook())
    await context.instances.update(PROJECT, "linear", credentials={"apiKey": API_KEY + "x"})
    saved = (await context.connectors.get("linear")).updated_at

    assert await context.instances.retire_webhook_secrets(saved + timedelta(days=29)) == 0
    assert await _stored(context) == {"apiKey": API_KEY + "x", "webhookSecret": WEBHOOK_SECRET}

    assert await context.instances.retire_webhook_secrets(saved + timedelta(days=31)) == 1
    assert await _stored(context) == {"apiKey": API_KEY + "x"}
    record = await context.instances.record(PROJECT, "linear")
    assert record.credential_secret_ref is not None
    assert WEBHOOK_SECRET not in (_previous_version(context, record.credential_secret_ref) or "")


async def test_a_webhook_secret_the_connector_still_verifies_with_is_never_retired(
    context: UcfContext,
) -> None:
    linear = _shipped_linear()
    edited = copy.deepcopy(linear)
    edited["description"] = "Linear, edited"
    await context.instances.update_connector("linear", edited)
    saved = (await context.connectors.get("linear")).updated_at

    assert await context.instances.retire_webhook_secrets(saved + timedelta(days=365)) == 0
    assert await _stored(context) == {"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET}


async def test_the_scheduler_retires_webhook_secrets_once_a_day(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ucf serve``'s loop and the AWS schedule function run it with their upkeep; the
    day is remembered in the store, so a scheduler that lives one tick (Lambda) does not
    read every connector's versions each minute."""
    from ucf.service.scheduler import Scheduler

    await context.instances.update_connector("linear", _linear_without_its_webhook())
    later = (await context.connectors.get("linear")).updated_at + timedelta(days=31)
    monkeypatch.setattr(context, "clock", lambda: later)

    assert await Scheduler(context, "w-1").retire_webhook_secrets() == 1
    assert await _stored(context) == {"apiKey": API_KEY}
    looked: list[object] = []

    async def look(now: object, **options: object) -> int:
        looked.append(now)
        return 0

    monkeypatch.setattr(context.instances, "retire_webhook_secrets", look)
    await Scheduler(context, "w-2").retire_webhook_secrets()
    assert looked == []  # done today, by another worker
    monkeypatch.setattr(context, "clock", lambda: later + timedelta(days=1, seconds=1))
    await Scheduler(context, "w-3").retire_webhook_secrets()
    assert len(looked) == 1


async def test_the_schedulers_retention_of_a_retired_webhook_secret_is_a_setting(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``UCF_WEBHOOK_SECRET_RETENTION_DAYS`` (was a constant 30 days): the daily job keeps
    such a secret as long as it says, and deletes it after."""
    settings = Settings.from_env(
        {"UCF_WEBHOOK_SECRET_RETENTION_DAYS": "10"}, data_dir=context.settings.data_dir
    )
    monkeypatch.setattr(
        context,
        "settings",
        dataclasses.replace(
            context.settings, webhook_secret_retention=settings.webhook_secret_retention
        ),
    )
    await context.instances.update_connector("linear", _linear_without_its_webhook())
    saved = (await context.connectors.get("linear")).updated_at

    monkeypatch.setattr(context, "clock", lambda: saved + timedelta(days=9))
    assert await Scheduler(context, "w-1").retire_webhook_secrets() == 0
    assert await _stored(context) == {"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET}
    monkeypatch.setattr(context, "clock", lambda: saved + timedelta(days=11))
    assert await Scheduler(context, "w-2").retire_webhook_secrets() == 1
    assert await _stored(context) == {"apiKey": API_KEY}


async def test_an_edit_records_no_method_the_instance_could_not_sign_in_with(
    context: UcfContext,
) -> None:
    """An instance stored without ``authMethod`` whose credentials complete another
    method than ``auth`` (OAuth tokens on a key connector, from before the method was
    recorded): it never signed in with ``auth``. An edit that makes OAuth ``auth`` lets
    it sign in at last; recording the key method it never had would have kept it out."""
    linear = _shipped_linear()
    await context.connectors.edit("linear", _linear_with_oauth_only())
    await context.instances.create(
        OTHER, "linear", credentials=TOKENS, config={"baseUrl": "http://127.0.0.1:9"}
    )
    await context.connectors.edit("linear", linear)  # nothing recorded
    swapped = copy.deepcopy(_linear_with_oauth_only())
    swapped["authAlternatives"] = [linear["auth"]]

    await context.instances.update_connector("linear", swapped)

    instance = await context.instances.get(OTHER, "linear")
    assert instance.auth_method == "oauth2"
    assert instance.sign_in_problems == ()
    assert await _stored_of(context, OTHER) == TOKENS


async def test_an_instance_stored_without_its_method_polls_with_the_one_its_credentials_complete(
    context: UcfContext,
) -> None:
    """Made while Linear signed in with OAuth alone (no ``authMethod`` stored), its
    connector then given the API key as ``auth`` back by a path that records nothing:
    its page's check inferred OAuth from the tokens and said it could sign in, while the
    runtime read ``auth`` and every poll failed for want of a key. Both read it alike
    now, and the poll sends the OAuth token."""
    with LinearFake(datetime.now(UTC)) as fake:
        linear = _shipped_linear()
        await context.connectors.edit("linear", _linear_with_oauth_only())
        await context.instances.create(
            OTHER,
            "linear",
            credentials={
                "clientId": OAUTH_CLIENT_ID,
                "clientSecret": OAUTH_CLIENT_SECRET,
                "accessToken": OAUTH_TOKEN,
                "refreshToken": "refresh-0123456789abcdef",
            },
            config={"baseUrl": fake.base_url, "signInUrl": fake.base_url},
        )
        await context.connectors.edit("linear", linear)  # nothing recorded
        assert AUTH_METHOD_KEY not in await _stored_of(context, OTHER)
        fake.keys.clear()  # only the OAuth token reads

        instance = await context.instances.get(OTHER, "linear")
        polled = await poll_instance(context, OTHER, "linear")

    assert (instance.auth_method, instance.sign_in_problems) == ("oauth2", ())
    assert polled.status == "ok", polled
    assert polled.inserted > 0


async def test_an_edit_keeps_the_oauth_tokens_an_instance_stored_without_its_method_signs_in_with(
    context: UcfContext,
) -> None:
    """An instance from before ``authMethod`` was stored, holding OAuth tokens and a key
    its API-key method cannot sign in with (that method then required a webhook secret
    it lacks): the runtime signs in with OAuth, the method its credentials complete. An
    edit that made OAuth ``auth`` and the key method, no longer requiring the secret, an
    alternative: the pruning read the instance's method as the old ``auth`` (the key),
    recorded it and deleted the tokens it polled with, which only a new consent gives
    back. It reads the method as the runtime does now, and keeps the tokens."""
    linear = _shipped_linear()
    strict = copy.deepcopy(linear)
    for field in strict["auth"]["config"]["credentialFields"]:
        if field["key"] == "webhookSecret":
            field["required"] = True
    await context.connectors.edit("linear", strict)
    stale_key = "lin_api_" + "stale0123456789abcdefghijklmnop"
    await context.instances.create(
        OTHER,
        "linear",
        credentials={AUTH_METHOD_KEY: "oauth2", **TOKENS, "apiKey": stale_key},
        config={"baseUrl": "http://127.0.0.1:9"},
    )
    # Stored as an earlier version stored it: without authMethod.
    record = await context.instances.record(OTHER, "linear")
    assert record.credential_secret_ref is not None
    raw = await context.secrets.get(record.credential_secret_ref)
    raw.pop(AUTH_METHOD_KEY)
    await context.secrets.put(record.credential_secret_ref, raw)
    assert (await context.instances.get(OTHER, "linear")).auth_method == "oauth2"
    swapped = copy.deepcopy(_linear_with_oauth_only())
    swapped["authAlternatives"] = [linear["auth"]]

    await context.instances.update_connector("linear", swapped)

    instance = await context.instances.get(OTHER, "linear")
    stored = await _stored_of(context, OTHER)
    assert (instance.auth_method, instance.sign_in_problems) == ("oauth2", ())
    assert {key: stored.get(key) for key in TOKENS} == TOKENS
    assert stored.get(AUTH_METHOD_KEY, "oauth2") == "oauth2"


async def test_a_patch_that_leaves_an_instance_unable_to_sign_in_keeps_its_other_methods_keys(
    context: UcfContext,
) -> None:
    """An instance stored without ``authMethod`` (made while Linear signed in with OAuth
    alone) whose refresh token is missing cannot sign in either way. A PATCH of its
    client secret alone is taken (it makes nothing worse), but its pruning read the
    instance as an API-key one, ``auth``, and deleted its client id and access token,
    though no method's sign-in was complete to say they were unused: the refresh token
    given next found them gone. Credentials go only once the sign-in is complete."""
    linear = _shipped_linear()
    await context.connectors.edit("linear", _linear_with_oauth_only())
    await context.instances.create(
        OTHER, "linear", credentials=TOKENS, config={"baseUrl": "http://127.0.0.1:9"}
    )
    await context.connectors.edit("linear", linear)  # nothing pruned, nothing recorded
    record = await context.instances.record(OTHER, "linear")
    assert record.credential_secret_ref is not None
    raw = await context.secrets.get(record.credential_secret_ref)
    raw.pop("refreshToken")
    await context.secrets.put(record.credential_secret_ref, raw)

    patched = await context.instances.update(
        OTHER, "linear", credentials={"clientSecret": "client-secret-rotated-0001"}
    )
    assert patched.sign_in_problems != ()
    completed = await context.instances.update(
        OTHER, "linear", credentials={"refreshToken": "refresh-given-again-0001"}
    )

    assert (completed.auth_method, completed.sign_in_problems) == ("oauth2", ())
    assert await _stored_of(context, OTHER) == {
        **TOKENS,
        "clientSecret": "client-secret-rotated-0001",
        "refreshToken": "refresh-given-again-0001",
        AUTH_METHOD_KEY: "oauth2",
    }
