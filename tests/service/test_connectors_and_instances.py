"""Connector catalogue and instances as the API and dashboard use them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.store_gates import AnswerLate
from ucf.service.context import UcfContext
from ucf.service.errors import ConflictError, ForbiddenError, NotFoundError, ValidationFailed
from ucf.stores.secrets.base import SecretIntegrityError
from ucf.stores.secrets.local import DB_FILE_NAME

ROOT = Path(__file__).resolve().parents[2]


def custom_descriptor() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (ROOT / "tests/fixtures/descriptors/brief-github-issues.json").read_text()
    )
    data["id"] = "my-tracker"
    data["name"] = "My Tracker"
    data["category"] = "Custom"
    return data


async def test_builtin_catalogue_is_loaded_at_start(context: UcfContext) -> None:
    ids = [c.id for c in await context.connectors.list()]
    assert "github-issues" in ids
    github = await context.connectors.get("github-issues")
    assert github.built_in
    assert github.mapping is not None


async def test_catalogue_filters_by_category_and_searches_by_name(context: UcfContext) -> None:
    await context.connectors.register(custom_descriptor())
    assert [c.id for c in await context.connectors.list(category="Custom")] == ["my-tracker"]
    assert [c.id for c in await context.connectors.list(query="TRACKER")] == ["my-tracker"]
    assert await context.connectors.list(query="no such thing") == []


async def test_invalid_descriptor_is_refused_with_every_problem(context: UcfContext) -> None:
    data = custom_descriptor()
    data["fieldMapping"]["idPath"] = "$[["
    data["category"] = "Nope"
    with pytest.raises(ValidationFailed) as caught:
        await context.connectors.register(data)
    # Shape and meaning in one pass: the bad category does not hide the bad path.
    assert {d["path"] for d in caught.value.details} == {"category", "fieldMapping.idPath"}
    data["category"] = "Custom"
    with pytest.raises(ValidationFailed) as caught:
        await context.connectors.register(data)
    assert {d["path"] for d in caught.value.details} == {"fieldMapping.idPath"}


async def test_custom_connectors_can_be_updated_and_deleted_builtins_cannot(
    context: UcfContext,
) -> None:
    await context.connectors.register(custom_descriptor())
    with pytest.raises(ConflictError):
        await context.connectors.register(custom_descriptor())
    changed = custom_descriptor()
    changed["name"] = "Renamed"
    assert (
        await context.connectors.edit("my-tracker", changed)
    ).connector.descriptor.name == "Renamed"
    await context.connectors.delete("my-tracker")
    with pytest.raises(NotFoundError):
        await context.connectors.get("my-tracker")
    with pytest.raises(ForbiddenError):
        await context.connectors.delete("github-issues")


async def test_instance_keeps_credentials_in_the_secret_store_and_shows_them_masked(
    context: UcfContext,
) -> None:
    token = "ghp_" + "A" * 36
    instance = await context.instances.create(
        "proj-1",
        "github-issues",
        credentials={"token": token},
        config={"owner": "octo", "repo": "hello"},
    )
    view = instance.to_json()
    assert view["credentials"] == {"token": "••••AAAA"}
    assert view["config"] == {  # the settings given, and the defaults of the others
        "owner": "octo",
        "repo": "hello",
        "baseUrl": "https://api.github.com",
        "signInUrl": "https://github.com",
    }
    assert view["authMethod"] == "pat"
    assert token not in json.dumps(view)
    record = await context.instances.record("proj-1", "github-issues")
    assert record.credential_secret_ref is not None
    assert token not in json.dumps(record.config)
    assert await context.instances.credentials(record) == {"token": token}


async def test_a_connect_cancelled_while_the_store_creates_the_instance_keeps_its_secret(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shutdown cancels the request after the store created the instance but before it
    heard back: the instance must keep the credentials it was created with, not point
    at a secret the clean-up deleted (no credentials, no webhook URL, and a "conflict"
    for every attempt to connect it again)."""
    token = "ghp_" + "B" * 36
    instances = context.store.instances
    gate = AnswerLate(monkeypatch, instances, "create")
    request = asyncio.create_task(
        context.instances.create(
            "proj-c",
            "github-issues",
            credentials={"token": token},
            config={"owner": "o", "repo": "r"},
        )
    )
    await gate.cancel_in_between(request)

    record = await context.instances.record("proj-c", "github-issues")
    assert await context.instances.credentials(record) == {"token": token}
    assert (await context.instances.secrets(record)).hook_id is not None


async def test_a_disconnect_cancelled_after_the_instance_went_still_forgets_its_checkpoint(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled once the store deleted the instance: its checkpoint and its secret go
    too, or connecting the project again would resume from the old checkpoint (and skip
    the initial window) and the credentials would stay behind."""
    await context.instances.create(
        "proj-d",
        "github-issues",
        credentials={"token": "ghp_" + "D" * 36},
        config={"owner": "o", "repo": "r"},
    )
    record = await context.instances.record("proj-d", "github-issues")
    assert await context.store.checkpoints.compare_and_set(
        "proj-d", "github-issues", expected_version=0, value="cursor", now=context.clock()
    )
    instances = context.store.instances
    gate = AnswerLate(monkeypatch, instances, "delete")
    request = asyncio.create_task(context.instances.delete("proj-d", "github-issues"))
    await gate.cancel_in_between(request)

    checkpoint = await context.store.checkpoints.get("proj-d", "github-issues")
    assert (checkpoint.value, checkpoint.version) == (None, 0)
    assert (await context.instances.secrets(record)).credentials == {}


async def test_instance_settings_are_checked_against_the_form(context: UcfContext) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await context.instances.create(
            "p", "github-issues", credentials={"tokn": "x"}, config={"owner": "o", "colour": "red"}
        )
    paths = {d["path"] for d in caught.value.details}
    assert paths == {"config.colour", "config.repo", "credentials.tokn", "credentials.token"}
    with pytest.raises(ValidationFailed) as caught:
        await context.instances.create(
            "p", "github-issues", credentials={"tokn": "x"}, config={"owner": "o", "repo": "r"}
        )
    assert {d["path"] for d in caught.value.details} == {"credentials.tokn", "credentials.token"}


async def test_rotating_credentials_merges_and_disconnect_removes_the_secret(
    context: UcfContext,
) -> None:
    await context.instances.create(
        "p",
        "github-issues",
        credentials={"token": "old-token-value-1"},
        config={"owner": "o", "repo": "r"},
    )
    await context.instances.update(
        "p", "github-issues", credentials={"webhookSecret": "s3cret-value-99"}
    )
    record = await context.instances.record("p", "github-issues")
    assert await context.instances.credentials(record) == {
        "token": "old-token-value-1",
        "webhookSecret": "s3cret-value-99",
    }
    disabled = await context.instances.update("p", "github-issues", enabled=False)
    assert disabled.record.enabled is False
    ref = record.credential_secret_ref
    assert ref is not None
    await context.instances.delete("p", "github-issues")
    with pytest.raises(NotFoundError):
        await context.instances.get("p", "github-issues")
    assert await context.instances.credentials(record) == {}


async def test_a_connected_custom_connector_cannot_be_deleted(context: UcfContext) -> None:
    await context.connectors.register(custom_descriptor())
    await context.instances.create(
        "p", "my-tracker", credentials={"token": "t"}, config={"baseUrl": "https://api.example.com"}
    )
    with pytest.raises(ConflictError):
        await context.connectors.delete("my-tracker")


def test_api_token_is_made_once_and_an_empty_token_file_is_a_clear_error(tmp_path: Path) -> None:
    from ucf.service.settings import Settings, TokenFileError, ensure_api_token

    settings = Settings.from_env({}, data_dir=tmp_path)
    token, created = ensure_api_token(settings)
    assert created
    assert token.startswith("ucf_")
    assert (tmp_path / "api-token").stat().st_mode & 0o777 == 0o600
    assert ensure_api_token(settings) == (token, False)
    assert [p.name for p in tmp_path.iterdir()] == ["api-token"]  # no draft left behind
    (tmp_path / "api-token").write_text("\n")
    with pytest.raises(TokenFileError, match="is empty"):
        ensure_api_token(settings)


def _shipped_with(changes: dict[str, Any]) -> list[dict[str, Any]]:
    from ucf.catalogue import builtin_descriptors

    shipped = builtin_descriptors()
    for data in shipped:
        if data["id"] == "github-issues":
            data.update(changes)
    return shipped


async def test_a_shipped_descriptor_is_validated_when_written_not_again_once_stored(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ucf.service import connectors as module
    from ucf.service.connectors import ConnectorService

    stored = (await context.connectors.get("github-issues")).descriptor
    broken = {"category": "Nope"}  # would fail validation
    restart = ConnectorService(context.store.descriptors, context.store.instances, context.clock)

    # The same version is already stored (validated then): left alone, not checked again.
    monkeypatch.setattr(module, "builtin_descriptors", lambda: _shipped_with(broken))
    report = await restart.sync_builtin()
    assert "github-issues" in report.unchanged
    assert report.inserted == report.upgraded == ()
    assert (await restart.get("github-issues")).descriptor == stored

    # A higher version would be written: validated first, and refused.
    bumped = {**broken, "version": "99.0.0"}
    monkeypatch.setattr(module, "builtin_descriptors", lambda: _shipped_with(bumped))
    with pytest.raises(ValidationFailed):
        await ConnectorService(
            context.store.descriptors, context.store.instances, context.clock
        ).sync_builtin()
    assert (await restart.get("github-issues")).descriptor == stored


async def test_a_context_opened_on_demand_syncs_the_catalogue_on_its_first_read(
    tmp_path: Path,
) -> None:
    from ucf.catalogue import builtin_descriptors
    from ucf.service.settings import Settings

    settings = Settings.from_env({}, data_dir=tmp_path)
    async with await UcfContext.open(settings, on_demand=True) as context:
        assert await context.store.descriptors.list_all() == []
        assert "http" not in vars(context)  # nothing built that was not asked for
        github = await context.connectors.get("github-issues")
        assert github.built_in
        shipped = {data["id"] for data in builtin_descriptors()}
        assert shipped <= {r.connector_id for r in await context.store.descriptors.list_all()}


async def test_an_instance_on_the_registered_app_uses_its_current_client_secret(
    context: UcfContext,
) -> None:
    """Refreshes used to save the app's client id and secret into the instance's own
    entry; once the operator rotated the app's secret, those copies won. A copy for the
    same client id no longer does; an instance on a client of its own keeps its own."""
    slack = await context.connectors.get("slack")
    now = context.clock()
    await context.instances.oauth_clients.register(
        slack, client_id="app-client-1", client_secret="app-secret-old", now=now
    )
    config = {"baseUrl": "https://slack.com/api", "channel": "C0123"}
    copied = {"clientId": "app-client-1", "clientSecret": "app-secret-old", "accessToken": "xoxb-1"}
    await context.instances.create("p", "slack", credentials=copied, config=config)
    own = {"clientId": "own-client-9", "clientSecret": "own-secret-9", "accessToken": "xoxb-2"}
    await context.instances.create("q", "slack", credentials=own, config=config)
    await context.instances.oauth_clients.register(
        slack, client_id="app-client-1", client_secret="app-secret-new", now=now
    )

    on_app = await context.instances.credentials(await context.instances.record("p", "slack"))
    assert (on_app["clientId"], on_app["clientSecret"]) == ("app-client-1", "app-secret-new")
    on_own = await context.instances.credentials(await context.instances.record("q", "slack"))
    assert (on_own["clientId"], on_own["clientSecret"]) == ("own-client-9", "own-secret-9")


async def test_credentials_that_cannot_be_read_fail_once_the_apps_read_is_over(
    context: UcfContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instance's secret and the registered app are read side by side; a damaged
    secret fails the read only once the app's read is over too. It used to fail at
    once, the app's read left running past the request that made it."""
    slack = await context.connectors.get("slack")
    await context.instances.oauth_clients.register(
        slack, client_id="app-client-1", client_secret="app-secret", now=context.clock()
    )
    await context.instances.create(
        "p",
        "slack",
        credentials={"accessToken": "xoxb-1"},
        config={"baseUrl": "https://slack.com/api", "channel": "C0123"},
    )
    record = await context.instances.record("p", "slack")
    with contextlib.closing(sqlite3.connect(tmp_path / DB_FILE_NAME)) as db, db:
        db.execute(
            "UPDATE secrets SET envelope = zeroblob(64) WHERE ref = ?",
            (record.credential_secret_ref,),
        )
    clients = context.instances.oauth_clients
    read = clients.get
    answer = asyncio.Event()

    async def answered_when_let(*args: Any, **kwargs: Any) -> Any:
        result = await read(*args, **kwargs)
        await answer.wait()
        return result

    monkeypatch.setattr(clients, "get", answered_when_let)
    reading = asyncio.create_task(context.instances.credentials(record))

    done, _ = await asyncio.wait({reading}, timeout=1)  # the secret failed long before
    answer.set()
    with pytest.raises(SecretIntegrityError):
        await reading
    assert not done, "the read failed while the app's read was in flight"


async def _ids(context: UcfContext) -> set[str]:
    return {record.connector_id for record in await context.store.descriptors.list_all()}


def _fresh(context: UcfContext) -> Any:
    """The connector service of a new process over the same store (its own first sync)."""
    from ucf.service.connectors import ConnectorService

    return ConnectorService(context.store.descriptors, context.store.instances, context.clock)


async def test_a_shipped_connector_stored_as_a_sync_would_leave_it_is_read_alone(
    context: UcfContext,
) -> None:
    await context.store.descriptors.delete("linear")  # a catalogue a sync would complete
    restart = _fresh(context)

    github = await restart.get("github-issues")
    again = await restart.get("github-issues")

    assert github.built_in
    assert again.descriptor == github.descriptor
    assert "linear" not in await _ids(context)  # no sync for a connector already current
    assert "linear" in {c.descriptor.id for c in await restart.list()}  # listing syncs


async def test_a_first_read_of_a_shipped_connector_reads_its_own_file_not_the_catalogue(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Lambda's first read of the connector it runs compares the stored copy with that
    connector's shipped file alone: listing and parsing the whole catalogue for it was
    ~6 ms of a poll worker's cold start (``bench/coldstart.py``)."""
    from ucf.service import connectors as module

    def listed() -> list[dict[str, Any]]:
        raise AssertionError("the whole shipped catalogue was read")

    monkeypatch.setattr(module, "builtin_descriptors", listed)

    github = await _fresh(context).get("github-issues")

    assert github.built_in
    assert github.descriptor == (await context.connectors.get("github-issues")).descriptor


async def test_a_shipped_connector_stored_older_syncs_the_catalogue_before_it_is_read(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ucf.service import connectors as module

    await context.store.descriptors.delete("linear")
    shipped = _shipped_with({"version": "99.0.0"})
    monkeypatch.setattr(module, "builtin_descriptors", lambda: shipped)
    monkeypatch.setattr(
        module, "builtin_descriptor", lambda cid: next(d for d in shipped if d["id"] == cid)
    )

    github = await _fresh(context).get("github-issues")

    assert github.descriptor.version == "99.0.0"  # the shipped upgrade, not the stored copy
    assert "linear" in await _ids(context)


async def test_a_connector_no_shipped_file_names_syncs_the_catalogue_before_it_is_looked_up(
    context: UcfContext,
) -> None:
    await context.store.descriptors.delete("linear")

    with pytest.raises(NotFoundError):
        await _fresh(context).get("no-such-connector")

    assert "linear" in await _ids(context)


async def test_find_reads_a_current_shipped_connector_alone_and_anything_else_after_a_sync(
    context: UcfContext,
) -> None:
    """What the webhook gateway looks a URL's connector up with: a delivery to a shipped
    connector stored as a sync would leave it syncs nothing (the Lambda API's first one)."""
    await context.store.descriptors.delete("linear")  # a catalogue a sync would complete
    restart = _fresh(context)

    github = await restart.find("github-issues")

    assert github is not None
    assert github.built_in
    assert "linear" not in await _ids(context)  # read alone
    assert await restart.find("no-such-connector") is None
    assert "linear" in await _ids(context)  # an id no shipped file has: synced first


async def test_a_urls_connector_id_too_long_for_a_file_name_is_no_connector(
    context: UcfContext,
) -> None:
    """The webhook gateway's lookup of a URL's id before this process's first sync (a
    Lambda API function's first delivery): an id longer than a file name can be names
    no shipped connector, answered None (a 404), not the file system's error (a 500)."""
    restart = _fresh(context)

    assert await restart.find("a" * 300) is None
    with pytest.raises(NotFoundError):
        await _fresh(context).get("a" * 300)


async def test_find_raises_a_sync_failure_instead_of_answering_none(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalogue that cannot be read is an error, not "no such connector" (a 404): even
    the invalid record a lookup by a URL's id answers None for, when the sync meets it."""
    from ucf.stores.errors import InvalidRecord

    restart = _fresh(context)

    async def unreadable() -> list[Any]:
        raise InvalidRecord("a stored descriptor record is not one")

    monkeypatch.setattr(context.store.descriptors, "list_all", unreadable)
    with pytest.raises(InvalidRecord):
        await restart.find("no-such-connector")


async def test_a_shipped_descriptor_is_stored_as_the_models_read_it(
    context: UcfContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway and the poll read the stored JSON without the models
    (``ucf.core.descriptor_view``), so a shipped or installed native descriptor is
    stored as the models read it: values coerced ("5" → 5, "false" → False), keys
    given by field name as aliases, a key left out still left out."""
    import copy

    from ucf.catalogue import builtin_descriptors
    from ucf.core.descriptor_view import connector_view
    from ucf.service import connectors as module
    from ucf.service.connectors import ConnectorService

    shipped = builtin_descriptors()
    github = next(data for data in shipped if data["id"] == "github-issues")
    written = copy.deepcopy(github)
    written["version"] = "99.0.0"
    ingestion = written["ingestion"]
    webhook = ingestion.get("webhook", ingestion)
    webhook["rateLimitPerMinute"] = "5"  # the models take it as 5
    webhook["handshakes"] = [{"type": "head_ok", "signed": "false"}]  # as False
    github.clear()
    github.update(written)
    monkeypatch.setattr(module, "builtin_descriptors", lambda: shipped)

    restart = ConnectorService(context.store.descriptors, context.store.instances, context.clock)
    assert "github-issues" in (await restart.sync_builtin()).upgraded
    connector = await restart.get("github-issues")
    stored = (await context.store.descriptors.get("github-issues")).descriptor  # type: ignore[union-attr]

    stored_webhook = stored["ingestion"].get("webhook", stored["ingestion"])
    assert stored_webhook["rateLimitPerMinute"] == 5
    assert stored_webhook["handshakes"] == [{"type": "head_ok", "signed": False}]
    assert "omitNullBodyFields" not in str(stored)  # defaults not written out
    assert connector.view == connector_view(connector.descriptor)


async def test_a_descriptor_stored_before_signal_types_were_bounded_still_loads(
    context: UcfContext,
) -> None:
    """Signal types are at most 128 characters in a descriptor being written, but one
    stored before the bound (with a 200-character type) is read with the models again: it
    failed to load, and the whole catalogue with it (a 500 for GET /api/connectors)."""
    data = custom_descriptor()
    data["fieldMapping"]["defaultType"] = "t" * 200
    data["fieldMapping"]["signalTypeRules"][0]["then"] = "u" * 200
    await context.store.descriptors.register(data, now=context.clock())  # as stored before

    listed = {c.id: c.to_json() for c in await context.connectors.list()}
    assert listed["my-tracker"]["fieldMapping"]["defaultType"] == "t" * 200
    mine = await context.connectors.get("my-tracker")
    assert mine.descriptor.field_mapping is not None
    assert mine.descriptor.field_mapping.signal_type_rules[0].then == "u" * 200

    # Written again, it must be shortened: the bound holds for every descriptor written.
    with pytest.raises(ValidationFailed) as caught:
        await context.connectors.edit("my-tracker", data)
    assert {d["path"] for d in caught.value.details} == {
        "fieldMapping.defaultType",
        "fieldMapping.signalTypeRules[0].then",
    }


async def test_an_instance_saves_its_settings_after_its_connector_dropped_one(
    context: UcfContext,
) -> None:
    """A descriptor edit that replaces a setting left the old one stored: every save of
    the instance was then refused ("unknown setting"), with no field to clear it."""
    data = custom_descriptor()
    data["configFields"] = [
        {"key": "baseUrl", "label": "Base URL", "type": "url"},
        {"key": "team", "label": "Team"},
    ]
    await context.connectors.register(data)
    await context.instances.create(
        "p",
        "my-tracker",
        credentials={"token": "t"},
        config={"baseUrl": "https://api.example.com", "team": "red"},
    )
    data["configFields"][1] = {"key": "region", "label": "Region"}
    await context.connectors.edit("my-tracker", data)

    with pytest.raises(ValidationFailed) as caught:  # a typed unknown setting is still refused
        await context.instances.update("p", "my-tracker", config={"team": "blue"})
    assert [d["path"] for d in caught.value.details] == ["config.team"]
    saved = await context.instances.update("p", "my-tracker", config={"region": "eu"})
    assert saved.record.config == {"baseUrl": "https://api.example.com", "region": "eu"}


def _github_copy(*, secret_required: bool) -> dict[str, Any]:
    """GitHub Issues' descriptor as a connector of one's own; its webhook secret (a field
    both sign-in methods share) required or not."""
    data: dict[str, Any] = json.loads(
        (ROOT / "src/ucf/catalogue/github-issues.json").read_text(encoding="utf-8")
    )
    data["id"], data["name"], data["category"] = "my-github", "My GitHub", "Custom"
    for method in (data["auth"], *data["authAlternatives"]):
        for field in method["config"]["credentialFields"]:
            if field["key"] == "webhookSecret":
                field["required"] = secret_required
    return data


async def test_a_switch_to_a_consent_without_tokens_is_refused_when_a_shared_field_lacks(
    context: UcfContext,
) -> None:
    """An instance that cannot sign in (an edit made the webhook secret, shared by both
    methods, required) took a PATCH naming the OAuth alternative with its app and no token:
    'no OAuth token' is said only once every field is there, so the one problem left was
    the known missing secret, and the switch counted as no worse. Giving the secret then
    was refused for the token; the instance needed a switch back."""
    await context.connectors.register(_github_copy(secret_required=False))
    config = {"owner": "o", "repo": "r"}
    await context.instances.create("p", "my-github", credentials={"token": "t-1"}, config=config)
    await context.connectors.edit("my-github", _github_copy(secret_required=True))
    switch = {"authMethod": "oauth2", "clientId": "app-id", "clientSecret": "app-secret"}
    with pytest.raises(ValidationFailed) as caught:
        await context.instances.update("p", "my-github", credentials=switch)
    assert any("no OAuth token" in d["message"] for d in caught.value.details)
    shown = await context.instances.get("p", "my-github")
    assert shown.auth_method == "pat"
    rotated = await context.instances.update("p", "my-github", credentials={"token": "t-2"})
    assert [p["path"] for p in rotated.sign_in_problems] == ["credentials.webhookSecret"]
