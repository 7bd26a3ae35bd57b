"""Descriptor registry and instances: the same behaviour on every backend."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.stores.builders import T0
from ucf.stores import AlreadyExists, Changed, InvalidRecord, NotFound, Store, open_store
from ucf.stores.models import (
    DeliveryObservation,
    HealthObservation,
    InstanceChanges,
    StoreOptions,
)


def descriptor(connector_id: str, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {
        "id": connector_id,
        "name": connector_id.title(),
        "kind": "generic",
        "version": version,
        "auth": {"type": "bearer"},
        **extra,
    }


LATER = T0 + timedelta(hours=1)


# --- descriptors ---------------------------------------------------------------------


async def test_registered_descriptor_reads_back_exactly(store: Store) -> None:
    body = descriptor("linear", nested={"a": [1, 2, {"b": None}]}, unicode="café ✓")
    record = await store.descriptors.register(body, now=T0)
    assert record.connector_id == "linear"
    assert record.descriptor == body
    assert record.built_in is False
    assert record.version == "1.0.0"
    assert record.created_at == record.updated_at == T0
    assert await store.descriptors.get("linear") == record


async def test_registering_a_taken_id_is_refused_and_keeps_the_original(store: Store) -> None:
    await store.descriptors.register(descriptor("linear", name="first"), now=T0)
    with pytest.raises(AlreadyExists, match="linear"):
        await store.descriptors.register(descriptor("linear", name="second"), now=LATER)
    stored = await store.descriptors.get("linear")
    assert stored is not None
    assert stored.descriptor["name"] == "first"


async def test_descriptor_without_an_id_is_rejected(store: Store) -> None:
    with pytest.raises(InvalidRecord, match="id"):
        await store.descriptors.register({"name": "nameless"}, now=T0)


async def test_descriptors_are_listed_by_id(store: Store) -> None:
    for connector_id in ("trello", "asana", "jira"):
        await store.descriptors.register(descriptor(connector_id), now=T0)
    assert [r.connector_id for r in await store.descriptors.list_all()] == [
        "asana",
        "jira",
        "trello",
    ]


async def test_unknown_descriptor_reads_as_none(store: Store) -> None:
    assert await store.descriptors.get("nope") is None


async def test_update_replaces_body_keeps_created_at(store: Store) -> None:
    await store.descriptors.register(descriptor("linear"), now=T0)
    updated = await store.descriptors.update(
        "linear", descriptor("linear", "1.1.0", name="Linear 2"), now=LATER
    )
    assert updated.descriptor["name"] == "Linear 2"
    assert updated.version == "1.1.0"
    assert (updated.created_at, updated.updated_at) == (T0, LATER)
    assert await store.descriptors.get("linear") == updated


async def test_an_update_keeps_the_descriptor_it_replaced_readable(store: Store) -> None:
    """An edit's previous versions stay readable, newest first, each with when it was
    saved and replaced; deleting the connector deletes them, so an id registered again
    starts without another connector's past."""
    await store.descriptors.register(descriptor("linear", name="first"), now=T0)
    await store.descriptors.update("linear", descriptor("linear", "1.0.1"), now=LATER)
    latest = LATER + timedelta(minutes=1)
    await store.descriptors.update("linear", descriptor("linear", "1.0.2"), now=latest)
    versions = await store.descriptors.versions("linear")
    assert [(v.version, v.saved_at, v.replaced_at) for v in versions] == [
        ("1.0.1", LATER, latest),
        ("1.0.0", T0, LATER),
    ]
    assert versions[1].descriptor == descriptor("linear", name="first")
    assert await store.descriptors.versions("ghost") == []

    await store.descriptors.delete("linear")
    await store.descriptors.register(descriptor("linear"), now=latest)
    assert await store.descriptors.versions("linear") == []


async def test_an_edit_past_the_history_bound_drops_the_oldest_but_keeps_each_sign_in(
    store_url: str,
) -> None:
    """History was unbounded: every edit kept the descriptor it replaced, forever. Past
    the bound (3 here) an edit drops the oldest in its own write, except the newest
    version of a sign-in no kept version has: which keys an instance may still hold is
    read from it (``ConnectorService.earlier_descriptors``)."""
    async with open_store(store_url, options=StoreOptions(descriptor_history=3)) as store:
        await store.descriptors.register(descriptor("linear", auth={"type": "basic"}), now=T0)
        for n in range(1, 5):
            now = T0 + timedelta(minutes=n)
            await store.descriptors.update("linear", descriptor("linear", f"1.0.{n}"), now=now)
        # 1.0.0 (basic), 1.0.1-1.0.3 (bearer): four, one over the bound; 1.0.0 stays.
        versions = await store.descriptors.versions("linear")
        assert [v.version for v in versions] == ["1.0.3", "1.0.2", "1.0.1", "1.0.0"]
        for n in range(5, 8):
            now = T0 + timedelta(minutes=n)
            await store.descriptors.update("linear", descriptor("linear", f"1.0.{n}"), now=now)
        versions = await store.descriptors.versions("linear")
        assert [v.version for v in versions] == ["1.0.6", "1.0.5", "1.0.4", "1.0.0"]
        assert versions[-1].descriptor["auth"] == {"type": "basic"}
        stored = await store.descriptors.get("linear")
        assert stored is not None
        assert stored.version == "1.0.7"


async def test_an_update_made_from_a_stale_read_is_refused(store: Store) -> None:
    """Two edits made from one version must not both pass: the second is told."""
    read = await store.descriptors.register(descriptor("linear"), now=T0)
    await store.descriptors.update(
        "linear", descriptor("linear", "1.0.1"), now=LATER, if_saved_at=read.updated_at
    )
    with pytest.raises(Changed, match="linear"):
        await store.descriptors.update(
            "linear",
            descriptor("linear", "1.0.1", name="other"),
            now=LATER + timedelta(seconds=1),
            if_saved_at=read.updated_at,
        )
    stored = await store.descriptors.get("linear")
    assert stored is not None
    assert stored.descriptor == descriptor("linear", "1.0.1")
    assert [v.version for v in await store.descriptors.versions("linear")] == ["1.0.0"]


async def test_update_of_missing_descriptor_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="ghost"):
        await store.descriptors.update("ghost", descriptor("ghost"), now=T0)


async def test_update_cannot_change_a_descriptors_id(store: Store) -> None:
    await store.descriptors.register(descriptor("linear"), now=T0)
    with pytest.raises(InvalidRecord, match="id"):
        await store.descriptors.update("linear", descriptor("asana"), now=LATER)


async def test_delete_removes_and_second_delete_is_not_found(store: Store) -> None:
    await store.descriptors.register(descriptor("linear"), now=T0)
    await store.descriptors.delete("linear")
    assert await store.descriptors.get("linear") is None
    with pytest.raises(NotFound):
        await store.descriptors.delete("linear")


async def test_a_delete_of_the_descriptor_saved_then_spares_one_saved_since(
    store: Store,
) -> None:
    """``If-Match`` on a connector's DELETE was checked on a read just before the delete,
    so an edit saved in between was deleted with the rest. With ``if_saved_at`` the
    delete's own write decides: another version saved since is ``Changed``, kept."""
    first = await store.descriptors.register(descriptor("linear"), now=T0)
    edited = await store.descriptors.update("linear", descriptor("linear", "1.0.1"), now=LATER)
    with pytest.raises(Changed):
        await store.descriptors.delete("linear", if_saved_at=first.updated_at)
    kept = await store.descriptors.get("linear")
    assert kept is not None
    assert kept.version == "1.0.1"
    await store.descriptors.delete("linear", if_saved_at=edited.updated_at)
    assert await store.descriptors.get("linear") is None
    with pytest.raises(NotFound):
        await store.descriptors.delete("linear", if_saved_at=edited.updated_at)


async def test_builtin_sync_inserts_then_upgrades_only_on_higher_version(store: Store) -> None:
    first = await store.descriptors.sync_builtin(
        [descriptor("jira", "1.9.0"), descriptor("github-issues", "2.0.0")], now=T0
    )
    assert sorted(first.inserted) == ["github-issues", "jira"]
    jira = await store.descriptors.get("jira")
    assert jira is not None
    assert jira.built_in is True

    second = await store.descriptors.sync_builtin(
        [
            descriptor("jira", "1.10.0", name="new"),
            descriptor("github-issues", "1.9.9", name="old"),
        ],
        now=LATER,
    )
    assert second.upgraded == ("jira",)
    assert second.unchanged == ("github-issues",)
    jira = await store.descriptors.get("jira")
    github = await store.descriptors.get("github-issues")
    assert jira is not None
    assert github is not None
    assert (jira.version, jira.descriptor["name"], jira.created_at) == ("1.10.0", "new", T0)
    assert github.version == "2.0.0"
    assert github.updated_at == T0


async def test_builtin_sync_never_overwrites_a_user_descriptor_of_the_same_id(
    store: Store,
) -> None:
    await store.descriptors.register(descriptor("jira", "0.1.0", name="mine"), now=T0)
    report = await store.descriptors.sync_builtin([descriptor("jira", "9.0.0")], now=LATER)
    assert report.shadowed == ("jira",)
    stored = await store.descriptors.get("jira")
    assert stored is not None
    assert (stored.built_in, stored.descriptor["name"]) == (False, "mine")


async def test_user_edit_of_a_builtin_can_take_it_out_of_sync(store: Store) -> None:
    await store.descriptors.sync_builtin([descriptor("jira", "1.0.0")], now=T0)
    await store.descriptors.update(
        "jira", descriptor("jira", "1.0.0", name="edited"), now=LATER, built_in=False
    )
    report = await store.descriptors.sync_builtin([descriptor("jira", "2.0.0")], now=LATER)
    assert report.shadowed == ("jira",)


# --- instances -----------------------------------------------------------------------


async def test_created_instance_starts_unknown_and_reads_back(store: Store) -> None:
    created = await store.instances.create(
        "p1",
        "jira",
        config={"baseUrl": "https://acme.atlassian.net", "projectKey": "OPS"},
        credential_secret_ref="secret://p1/jira",
        now=T0,
    )
    assert created.enabled is True
    assert created.health_state == "unknown"
    assert created.healthy is None
    assert created.consecutive_failures == 0
    assert created.credential_secret_ref == "secret://p1/jira"
    assert created.config["projectKey"] == "OPS"
    assert created.created_at == created.updated_at == T0
    assert await store.instances.get("p1", "jira") == created


async def test_second_instance_of_a_connector_in_a_project_is_refused(store: Store) -> None:
    await store.instances.create("p1", "jira", config={}, now=T0)
    with pytest.raises(AlreadyExists, match="jira"):
        await store.instances.create("p1", "jira", config={}, now=T0)


async def test_instances_list_by_project_by_connector_and_enabled(store: Store) -> None:
    await store.instances.create("p1", "jira", config={}, now=T0)
    await store.instances.create("p1", "asana", config={}, now=T0, enabled=False)
    await store.instances.create("p2", "jira", config={}, now=T0)
    await store.instances.create("p0", "jira", config={}, now=T0, enabled=False)

    by_project = await store.instances.list_by_project("p1")
    assert [i.connector_id for i in by_project] == ["asana", "jira"]
    by_connector = await store.instances.list_by_connector("jira")
    assert [i.project_id for i in by_connector] == ["p0", "p1", "p2"]
    enabled = await store.instances.list_enabled()
    assert [(i.project_id, i.connector_id) for i in enabled] == [("p1", "jira"), ("p2", "jira")]
    assert await store.instances.list_by_project("nobody") == []


async def test_partial_update_changes_only_given_fields(store: Store) -> None:
    await store.instances.create(
        "p1", "jira", config={"a": "1"}, credential_secret_ref="ref-1", now=T0
    )
    updated = await store.instances.update(
        "p1", "jira", InstanceChanges(config={"a": "2"}), now=LATER
    )
    assert (updated.config, updated.credential_secret_ref, updated.enabled) == (
        {"a": "2"},
        "ref-1",
        True,
    )
    assert updated.updated_at == LATER
    cleared = await store.instances.update(
        "p1", "jira", InstanceChanges(credential_secret_ref=None), now=LATER
    )
    assert cleared.credential_secret_ref is None
    assert cleared.config == {"a": "2"}


async def test_updating_a_missing_instance_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.instances.update("p1", "jira", InstanceChanges(enabled=False), now=T0)
    with pytest.raises(NotFound):
        await store.instances.set_enabled("p1", "jira", True, now=T0)
    with pytest.raises(NotFound):
        await store.instances.delete("p1", "jira")
    with pytest.raises(NotFound):
        await store.instances.record_health("p1", "jira", HealthObservation(ok=True, at=T0))


async def test_disabling_removes_an_instance_from_the_schedule(store: Store) -> None:
    await store.instances.create("p1", "jira", config={}, now=T0)
    disabled = await store.instances.set_enabled("p1", "jira", False, now=LATER)
    assert disabled.enabled is False
    assert await store.instances.list_enabled() == []


async def test_health_failures_degrade_then_error_and_success_resets(store: Store) -> None:
    await store.instances.create("p1", "jira", config={}, now=T0)
    states = []
    for minute in range(3):
        record = await store.instances.record_health(
            "p1",
            "jira",
            HealthObservation(
                ok=False, at=T0 + timedelta(minutes=minute), error="401 Unauthorized"
            ),
        )
        states.append((record.health_state, record.consecutive_failures))
    assert states == [("degraded", 1), ("degraded", 2), ("error", 3)]
    assert record.healthy is False
    assert record.last_error == "401 Unauthorized"
    assert record.last_health_check == T0 + timedelta(minutes=2)

    ok = await store.instances.record_health(
        "p1", "jira", HealthObservation(ok=True, at=LATER, latency_ms=123.5, synced=True)
    )
    assert (ok.health_state, ok.healthy, ok.consecutive_failures) == ("healthy", True, 0)
    assert ok.last_error is None
    assert ok.last_latency_ms == 123.5
    assert ok.last_sync_at == LATER
    assert ok.updated_at == T0, "health reports do not count as configuration changes"


async def test_health_check_without_sync_keeps_last_sync_time(store: Store) -> None:
    await store.instances.create("p1", "jira", config={}, now=T0)
    await store.instances.record_health(
        "p1", "jira", HealthObservation(ok=True, at=T0, synced=True)
    )
    later = await store.instances.record_health(
        "p1", "jira", HealthObservation(ok=True, at=LATER, latency_ms=5.0)
    )
    assert later.last_sync_at == T0
    assert later.last_health_check == LATER


async def test_a_verified_delivery_makes_a_webhook_only_instance_healthy_and_fresh(
    store: Store,
) -> None:
    await store.instances.create("p1", "notion", config={}, now=T0)
    record = await store.instances.record_delivery(
        "p1", "notion", DeliveryObservation(at=LATER, verified=True)
    )
    assert (record.health_state, record.last_delivery_at, record.delivery_failures) == (
        "healthy",
        LATER,
        0,
    )
    assert record.last_health_check is None  # a delivery is not a health check
    assert await store.instances.get("p1", "notion") == record


async def test_verification_failures_in_a_row_degrade_and_a_verified_delivery_heals(
    store: Store,
) -> None:
    await store.instances.create("p1", "notion", config={}, now=T0)
    failed = DeliveryObservation(at=LATER, verified=False, failed=1, error="signature mismatch")
    states = []
    for _ in range(4):
        record = await store.instances.record_delivery("p1", "notion", failed)
        states.append((record.health_state, record.delivery_failures))
    assert states == [("unknown", 1), ("unknown", 2), ("degraded", 3), ("degraded", 4)]
    assert record.last_error is not None
    assert "4 webhook deliveries in a row failed verification" in record.last_error
    assert "signature mismatch" in record.last_error
    assert record.consecutive_failures == 0  # never a poll failure: no backoff, never red
    healed = await store.instances.record_delivery(
        "p1", "notion", DeliveryObservation(at=LATER + timedelta(minutes=1), verified=True)
    )
    assert (healed.health_state, healed.last_error, healed.delivery_failures) == (
        "healthy",
        None,
        0,
    )


async def test_verification_failures_leave_a_failing_poll_s_state_alone(store: Store) -> None:
    await store.instances.create("p1", "jira", config={}, now=T0)
    for _ in range(3):
        await store.instances.record_health(
            "p1", "jira", HealthObservation(ok=False, at=T0, error="503")
        )
    record = await store.instances.record_delivery(
        "p1", "jira", DeliveryObservation(at=LATER, verified=False, failed=5, error="bad")
    )
    assert (record.health_state, record.last_error, record.delivery_failures) == ("error", "503", 5)
    record = await store.instances.record_delivery(
        "p1", "jira", DeliveryObservation(at=LATER, verified=True)
    )
    assert (record.health_state, record.last_error) == ("error", "503")


async def test_a_requested_poll_is_kept_until_a_poll_that_saw_it_clears_it(
    store: Store,
) -> None:
    await store.instances.create("p1", "outlook", config={}, now=T0)
    await store.instances.request_poll("p1", "outlook", at=LATER)
    record = await store.instances.get("p1", "outlook")
    assert record is not None
    assert record.poll_requested_at == LATER
    assert record.updated_at == T0, "a poll request is not a configuration change"
    assert [r.poll_requested_at for r in await store.instances.list_enabled()] == [LATER]
    # A poll that started having seen an earlier request leaves this later one alone.
    assert not await store.instances.clear_poll_request("p1", "outlook", up_to=T0)
    assert (await store.instances.get("p1", "outlook")).poll_requested_at == LATER  # type: ignore[union-attr]
    assert await store.instances.clear_poll_request("p1", "outlook", up_to=LATER)
    assert (await store.instances.get("p1", "outlook")).poll_requested_at is None  # type: ignore[union-attr]
    assert not await store.instances.clear_poll_request("p1", "outlook", up_to=LATER)


async def test_a_poll_request_for_a_missing_instance_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.instances.request_poll("p1", "outlook", at=T0)
    assert not await store.instances.clear_poll_request("p1", "outlook", up_to=T0)


async def test_deleted_instance_is_gone(store: Store) -> None:
    await store.instances.create("p1", "jira", config={}, now=T0)
    await store.instances.delete("p1", "jira")
    assert await store.instances.get("p1", "jira") is None
    assert await store.instances.list_by_connector("jira") == []
