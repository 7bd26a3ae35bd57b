"""Descriptors and instances in the brief's layout (SPEC §5.1), on conditional writes.

Creates are ``attribute_not_exists(PK)`` puts (a collision is ``AlreadyExists``),
updates and deletes are conditioned on the item existing (``NotFound``), and the
health counter is a compare-and-set on ``consecutiveFailures`` so that two
workers reporting failures at once never lose one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ucf.stores.dynamodb import keys as k
from ucf.stores.dynamodb.client import ConditionFailed, DynamoClient, Item
from ucf.stores.dynamodb.table import GSI2
from ucf.stores.errors import (
    StoreError,
    StoreUnavailable,
    descriptor_changed,
    descriptor_exists,
    instance_exists,
    no_descriptor,
    no_instance,
)
from ucf.stores.models import (
    DEFAULT_DESCRIPTOR_HISTORY,
    UNSET,
    DescriptorRecord,
    DescriptorVersion,
    HealthObservation,
    InstanceChanges,
    InstanceRecord,
    descriptor_identity,
    health_state_after,
    is_newer_version,
    pruned_versions,
    replacement_version,
    text_time,
)

if TYPE_CHECKING:
    from ucf.stores.delivery_health import DeliveryObservation
    from ucf.stores.reports import SyncReport

_CAS_ATTEMPTS = 32
_DESCRIPTOR_NAME = {"#descriptor": "descriptor"}  # DESCRIPTOR is a DynamoDB reserved word

log = logging.getLogger("ucf.stores.dynamodb")


def _time(item: Item, name: str) -> datetime | None:
    text = k.get_s(item, name)
    return None if text is None else datetime.fromisoformat(text)


def _required_time(item: Item, name: str) -> datetime:
    moment = _time(item, name)
    assert moment is not None, f"{name} missing from {item.get('PK')}"
    return moment


# --- descriptors ----------------------------------------------------------------------


def _descriptor_record(item: Item) -> DescriptorRecord:
    return DescriptorRecord(
        connector_id=item["connectorId"]["S"],
        descriptor=json.loads(item["descriptor"]["S"]),
        built_in=bool(item["builtIn"]["BOOL"]),
        version=item["version"]["S"],
        created_at=_required_time(item, "createdAt"),
        updated_at=_required_time(item, "updatedAt"),
    )


def _after(seen: str, now: datetime | str) -> str:
    """``now`` as a descriptor's new ``updatedAt``, but later than ``seen`` (the one it
    replaces): :meth:`DynamoDescriptorRegistry.versions` leaves out version items saved
    before the connector's creation (a deleted namesake's), so an edit stamped earlier
    (another Lambda's clock a little behind, a clock stepped back) hid the version the
    next edit saved from its history for good."""
    stamp = now if isinstance(now, str) else text_time(now)
    if stamp > seen:
        return stamp
    return text_time(datetime.fromisoformat(seen) + timedelta(microseconds=1))


class DynamoDescriptorRegistry:
    def __init__(self, client: DynamoClient, *, history: int = DEFAULT_DESCRIPTOR_HISTORY) -> None:
        self._db = client
        self._history = history
        """Earlier versions kept per connector, at least (:func:`pruned_versions`)."""

    async def list_all(self) -> list[DescriptorRecord]:
        # GSI2 holds every descriptor under one key, in id order. Index reads are
        # eventually consistent: a descriptor registered a moment ago may be missing
        # from a listing for a fraction of a second; ``get`` always sees it.
        items = await self._db.query_all(
            IndexName=GSI2,
            KeyConditionExpression="GSI2PK = :pk",
            ExpressionAttributeValues={":pk": k.s(k.DESCRIPTORS_GSI2PK)},
        )
        # Keys escape '#' and '%', which can reorder ids around '$'; sort by the id itself.
        return sorted((_descriptor_record(item) for item in items), key=lambda r: r.connector_id)

    async def get(self, connector_id: str) -> DescriptorRecord | None:
        reply = await self._db.call(
            "get_item",
            TableName=self._db.table,
            Key=k.descriptor(connector_id),
            ConsistentRead=True,
        )
        item = reply.get("Item")
        return None if item is None else _descriptor_record(item)

    def _item(
        self, connector_id: str, version: str, body: str, built_in: bool, created: str, updated: str
    ) -> Item:
        return {
            **k.descriptor(connector_id),
            "GSI2PK": k.s(k.DESCRIPTORS_GSI2PK),
            "GSI2SK": k.s(f"CONNECTOR#{k.part(connector_id)}"),
            "connectorId": k.s(connector_id),
            "descriptor": k.s(body),
            "builtIn": k.b(built_in),
            "version": k.s(version),
            "createdAt": k.s(created),
            "updatedAt": k.s(updated),
        }

    async def register(
        self, descriptor: Mapping[str, Any], *, now: datetime, built_in: bool = False
    ) -> DescriptorRecord:
        connector_id, version = descriptor_identity(descriptor)
        stamp = text_time(now)
        item = self._item(
            connector_id,
            version,
            k.dump_json(dict(descriptor), what="descriptor"),
            built_in,
            stamp,
            stamp,
        )
        try:
            await self._db.call(
                "put_item",
                TableName=self._db.table,
                Item=item,
                ConditionExpression="attribute_not_exists(PK)",
            )
        except ConditionFailed:
            raise descriptor_exists(connector_id) from None
        return _descriptor_record(item)

    async def update(
        self,
        connector_id: str,
        descriptor: Mapping[str, Any],
        *,
        now: datetime,
        built_in: bool | None = None,
        if_saved_at: datetime | None = None,
    ) -> DescriptorRecord:
        """The replaced descriptor is written to its version item first, then the new one
        over it on a compare-and-set of ``updatedAt`` (no transaction: dynalite has none).
        A crash between the two leaves a version item equal to the current descriptor,
        which :meth:`versions` leaves out; a writer that lost the race re-reads (or, given
        ``if_saved_at``, is refused) and the version it kept is a real, earlier one.

        Then the versions past the bound go (:meth:`_prune`), in the same call: a crash
        or a store error before that leaves a version too many (logged), which the next
        edit prunes."""
        version = replacement_version(connector_id, descriptor)
        body = k.dump_json(dict(descriptor), what="descriptor")
        stamp = text_time(now)
        for _ in range(_CAS_ATTEMPTS):
            current = await self._current_item(connector_id)
            if current is None:
                raise no_descriptor(connector_id)
            seen = current["updatedAt"]["S"]
            if if_saved_at is not None and seen != text_time(if_saved_at):
                raise descriptor_changed(connector_id)
            stamp = _after(seen, now)
            await self._db.call(
                "put_item",
                TableName=self._db.table,
                Item={
                    **k.descriptor_version(connector_id, seen),
                    "connectorId": k.s(connector_id),
                    "version": current["version"],
                    "descriptor": current["descriptor"],
                    "savedAt": k.s(seen),
                    "replacedAt": k.s(stamp),
                },
            )
            assignments = ["#descriptor = :d", "version = :v", "updatedAt = :u"]
            values: dict[str, Any] = {
                ":d": k.s(body),
                ":v": k.s(version),
                ":u": k.s(stamp),
                ":seen": k.s(seen),
            }
            if built_in is not None:
                assignments.append("builtIn = :b")
                values[":b"] = k.b(built_in)
            try:
                reply = await self._db.call(
                    "update_item",
                    TableName=self._db.table,
                    Key=k.descriptor(connector_id),
                    UpdateExpression="SET " + ", ".join(assignments),
                    ConditionExpression="attribute_exists(PK) AND updatedAt = :seen",
                    ExpressionAttributeNames=_DESCRIPTOR_NAME,
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
            except ConditionFailed:
                if if_saved_at is not None:
                    raise descriptor_changed(connector_id) from None
                continue  # another edit came between: keep its version too, then retry
            record = _descriptor_record(reply["Attributes"])
            try:
                await self._prune(connector_id, reply["Attributes"])
            except StoreError as error:
                # The edit is stored: answering it with an error would have the caller
                # retry a write that was made (a 503 without its ETag, the credentials
                # it frees never pruned). A version too many waits for the next edit.
                log.warning(
                    "descriptor %r saved; pruning its history past %d versions failed "
                    "(%s): the next edit prunes it",
                    connector_id,
                    self._history,
                    error,
                )
            return record
        raise StoreUnavailable(
            f"descriptor {connector_id!r} kept changing while it was being replaced",
            fix="another process is writing it in a loop; retry shortly",
        )

    async def _current_item(self, connector_id: str) -> Item | None:
        reply = await self._db.call(
            "get_item",
            TableName=self._db.table,
            Key=k.descriptor(connector_id),
            ConsistentRead=True,
        )
        item: Item | None = reply.get("Item")
        return item

    async def _version_items(self, connector_id: str) -> list[Item]:
        pk = k.descriptor_version(connector_id, "")["PK"]
        return await self._db.query_all(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={":pk": pk, ":prefix": k.s(k.VERSION_PREFIX)},
            ScanIndexForward=False,
            ConsistentRead=True,
        )

    async def _prune(self, connector_id: str, current: Item) -> None:
        """Delete the version items :func:`pruned_versions` lets go, counted among those
        :meth:`versions` lists for ``current`` (the record the edit stored). One Query
        of the connector's versions per edit; a concurrent edit pruning the same items
        deletes what is already gone, which DynamoDB takes without a word."""
        items = await self._version_items(connector_id)
        if len(items) <= self._history:
            return
        live = current["updatedAt"]["S"]
        born = current["createdAt"]["S"]
        listed = [
            item for item in items if item["savedAt"]["S"] != live and item["savedAt"]["S"] >= born
        ]
        pruned = pruned_versions(
            [((i["PK"], i["SK"]), json.loads(i["descriptor"]["S"])) for i in listed],
            self._history,
        )
        if pruned:
            await self._db.batch_write(
                [{"DeleteRequest": {"Key": {"PK": pk, "SK": sk}}} for pk, sk in pruned]
            )

    async def versions(self, connector_id: str) -> list[DescriptorVersion]:
        """Only this connector's own: version items saved before it was registered are a
        deleted one's, left by a :meth:`delete` cut short between its two writes (or an
        edit that raced it); never listed, so never restored as this one's past."""
        items = await self._version_items(connector_id)
        current = await self._current_item(connector_id)
        if current is None:
            return []
        live = current["updatedAt"]["S"]
        born = current["createdAt"]["S"]
        return [
            DescriptorVersion(
                connector_id=connector_id,
                version=item["version"]["S"],
                descriptor=json.loads(item["descriptor"]["S"]),
                saved_at=_required_time(item, "savedAt"),
                replaced_at=_required_time(item, "replacedAt"),
            )
            for item in items
            # left by a replacement cut short; a deleted connector's of the same id
            if item["savedAt"]["S"] != live and item["savedAt"]["S"] >= born
        ]

    async def delete(self, connector_id: str, *, if_saved_at: datetime | None = None) -> None:
        condition: dict[str, Any] = {"ConditionExpression": "attribute_exists(PK)"}
        if if_saved_at is not None:
            condition = {
                "ConditionExpression": "attribute_exists(PK) AND updatedAt = :seen",
                "ExpressionAttributeValues": {":seen": k.s(text_time(if_saved_at))},
            }
        try:
            await self._db.call(
                "delete_item",
                TableName=self._db.table,
                Key=k.descriptor(connector_id),
                **condition,
            )
        except ConditionFailed:
            if if_saved_at is not None and await self._current_item(connector_id) is not None:
                raise descriptor_changed(connector_id) from None
            raise no_descriptor(connector_id) from None
        items = await self._version_items(connector_id)
        if items:
            await self._db.batch_write(
                [{"DeleteRequest": {"Key": {"PK": i["PK"], "SK": i["SK"]}}} for i in items]
            )

    async def sync_builtin(
        self, descriptors: Sequence[Mapping[str, Any]], *, now: datetime
    ) -> SyncReport:
        from ucf.stores.reports import SyncReport  # a sync at start, never on a poll

        prepared = [
            (*descriptor_identity(d), k.dump_json(dict(d), what="descriptor")) for d in descriptors
        ]
        outcomes = await self._db.concurrently(
            self._sync_one(connector_id, version, body, text_time(now))
            for connector_id, version, body in prepared
        )
        report: dict[str, list[str]] = {
            "inserted": [],
            "upgraded": [],
            "unchanged": [],
            "shadowed": [],
        }
        for (connector_id, _, _), outcome in zip(prepared, outcomes, strict=True):
            report[outcome].append(connector_id)
        return SyncReport(
            inserted=tuple(report["inserted"]),
            upgraded=tuple(report["upgraded"]),
            unchanged=tuple(report["unchanged"]),
            shadowed=tuple(report["shadowed"]),
        )

    async def _sync_one(self, connector_id: str, version: str, body: str, stamp: str) -> str:
        """Decide and write one shipped descriptor; re-decide if another process raced us."""
        for _ in range(_CAS_ATTEMPTS):
            current = await self.get(connector_id)
            try:
                if current is None:
                    await self._db.call(
                        "put_item",
                        TableName=self._db.table,
                        Item=self._item(connector_id, version, body, True, stamp, stamp),
                        ConditionExpression="attribute_not_exists(PK)",
                    )
                    return "inserted"
                if not current.built_in:
                    return "shadowed"
                if not is_newer_version(version, current.version):
                    return "unchanged"
                stamp = _after(text_time(current.updated_at), stamp)
                await self._db.call(
                    "update_item",
                    TableName=self._db.table,
                    Key=k.descriptor(connector_id),
                    UpdateExpression="SET #descriptor = :d, version = :v, updatedAt = :u",
                    ConditionExpression="builtIn = :true AND version = :seen",
                    ExpressionAttributeNames=_DESCRIPTOR_NAME,
                    ExpressionAttributeValues={
                        ":d": k.s(body),
                        ":v": k.s(version),
                        ":u": k.s(stamp),
                        ":true": k.b(True),
                        ":seen": k.s(current.version),
                    },
                )
                return "upgraded"
            except ConditionFailed:
                continue  # someone else wrote it between our read and write: look again
        raise StoreUnavailable(
            f"descriptor {connector_id!r} kept changing while built-ins were loaded",
            fix="another process is writing it in a loop; retry shortly",
        )


# --- instances ------------------------------------------------------------------------


def _instance_record(item: Item) -> InstanceRecord:
    return InstanceRecord(
        project_id=item["projectId"]["S"],
        connector_id=item["connectorId"]["S"],
        enabled=bool(item["enabled"]["BOOL"]),
        credential_secret_ref=k.get_s(item, "credentialSecretArn"),
        config=json.loads(item["config"]["S"]),
        created_at=_required_time(item, "createdAt"),
        updated_at=_required_time(item, "updatedAt"),
        last_health_check=_time(item, "lastHealthCheck"),
        healthy=k.get_b(item, "healthy"),
        consecutive_failures=k.get_n(item, "consecutiveFailures") or 0,
        last_error=k.get_s(item, "lastError"),
        health_state=item["healthState"]["S"],
        last_sync_at=_time(item, "lastSyncAt"),
        last_latency_ms=k.get_f(item, "lastLatencyMs"),
        last_delivery_at=_time(item, "lastDeliveryAt"),
        delivery_failures=k.get_n(item, "deliveryFailures") or 0,
        poll_requested_at=_time(item, "pollRequestedAt"),
    )


class DynamoInstanceStore:
    def __init__(self, client: DynamoClient) -> None:
        self._db = client

    async def get(self, project_id: str, connector_id: str) -> InstanceRecord | None:
        reply = await self._db.call(
            "get_item",
            TableName=self._db.table,
            Key=k.instance(project_id, connector_id),
            ConsistentRead=True,
        )
        item = reply.get("Item")
        return None if item is None else _instance_record(item)

    async def list_by_project(self, project_id: str) -> list[InstanceRecord]:
        items = await self._db.query_all(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={
                ":pk": k.s(k.project_pk(project_id)),
                ":prefix": k.s(k.INSTANCE_PREFIX),
            },
            ConsistentRead=True,
        )
        return sorted((_instance_record(item) for item in items), key=lambda r: r.connector_id)

    async def list_by_connector(self, connector_id: str) -> list[InstanceRecord]:
        # The brief's GSI2 (eventually consistent, like every index read).
        items = await self._db.query_all(
            IndexName=GSI2,
            KeyConditionExpression="GSI2PK = :pk AND begins_with(GSI2SK, :prefix)",
            ExpressionAttributeValues={
                ":pk": k.s(f"CONNECTOR#{k.part(connector_id)}"),
                ":prefix": k.s("PROJECT#"),
            },
        )
        return sorted((_instance_record(item) for item in items), key=lambda r: r.project_id)

    async def list_enabled(self) -> list[InstanceRecord]:
        # Projects are few (the directory partition lists them); each project's
        # instances are one consistent query. No table scan.
        projects = await self._db.query_all(
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": k.s(k.PROJECTS_PK)},
            ConsistentRead=True,
        )
        listings = await self._db.concurrently(
            self.list_by_project(item["projectId"]["S"]) for item in projects
        )
        enabled = [record for listing in listings for record in listing if record.enabled]
        return sorted(enabled, key=lambda r: (r.project_id, r.connector_id))

    async def create(
        self,
        project_id: str,
        connector_id: str,
        *,
        config: Mapping[str, Any],
        now: datetime,
        credential_secret_ref: str | None = None,
        enabled: bool = True,
    ) -> InstanceRecord:
        stamp = text_time(now)
        item: Item = {
            **k.instance(project_id, connector_id),
            **k.instance_gsi2(project_id, connector_id),
            "projectId": k.s(project_id),
            "connectorId": k.s(connector_id),
            "enabled": k.b(enabled),
            "config": k.s(k.dump_json(dict(config), what="instance config")),
            "consecutiveFailures": k.n(0),
            "healthState": k.s("unknown"),
            "createdAt": k.s(stamp),
            "updatedAt": k.s(stamp),
        }
        if credential_secret_ref is not None:
            item["credentialSecretArn"] = k.s(credential_secret_ref)
        # The directory entry first: harmless if we crash before the instance exists.
        await self._db.call(
            "put_item",
            TableName=self._db.table,
            Item={**k.project_directory(project_id), "projectId": k.s(project_id)},
        )
        try:
            await self._db.call(
                "put_item",
                TableName=self._db.table,
                Item=item,
                ConditionExpression="attribute_not_exists(PK)",
            )
        except ConditionFailed:
            raise instance_exists(project_id, connector_id) from None
        return _instance_record(item)

    async def update(
        self, project_id: str, connector_id: str, changes: InstanceChanges, *, now: datetime
    ) -> InstanceRecord:
        sets = ["updatedAt = :u"]
        removes: list[str] = []
        values: dict[str, Any] = {":u": k.s(text_time(now))}
        if changes.enabled is not UNSET:
            sets.append("enabled = :e")
            values[":e"] = k.b(changes.enabled)
        if changes.credential_secret_ref is not UNSET:
            if changes.credential_secret_ref is None:
                removes.append("credentialSecretArn")
            else:
                sets.append("credentialSecretArn = :r")
                values[":r"] = k.s(changes.credential_secret_ref)
        if changes.config is not UNSET:
            sets.append("config = :c")
            values[":c"] = k.s(k.dump_json(dict(changes.config), what="instance config"))
        expression = "SET " + ", ".join(sets) + (f" REMOVE {', '.join(removes)}" if removes else "")
        return await self._update(project_id, connector_id, expression, values)

    async def _update(
        self,
        project_id: str,
        connector_id: str,
        expression: str,
        values: dict[str, Any],
        condition: str = "attribute_exists(PK)",
    ) -> InstanceRecord:
        try:
            reply = await self._db.call(
                "update_item",
                TableName=self._db.table,
                Key=k.instance(project_id, connector_id),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ConditionFailed:
            raise no_instance(project_id, connector_id) from None
        return _instance_record(reply["Attributes"])

    async def set_enabled(
        self, project_id: str, connector_id: str, enabled: bool, *, now: datetime
    ) -> InstanceRecord:
        return await self.update(
            project_id, connector_id, InstanceChanges(enabled=enabled), now=now
        )

    async def record_health(
        self, project_id: str, connector_id: str, observation: HealthObservation
    ) -> InstanceRecord:
        """A success is written as it is: what it stores (no failures, healthy or
        degraded) does not depend on the stored record, so it needs no read, one round
        trip fewer for every successful poll and delivery. A failure counts on from the
        stored counter: read, then written only if the counter is still the one read."""
        if observation.ok:
            expression, values = self._health_update(observation, failures=0)
            return await self._update(project_id, connector_id, expression, values)
        for _ in range(_CAS_ATTEMPTS):
            current = await self.get(project_id, connector_id)
            if current is None:
                raise no_instance(project_id, connector_id)
            failures = current.consecutive_failures + 1
            expression, values = self._health_update(observation, failures=failures)
            values[":seen"] = k.n(current.consecutive_failures)
            try:
                reply = await self._db.call(
                    "update_item",
                    TableName=self._db.table,
                    Key=k.instance(project_id, connector_id),
                    UpdateExpression=expression,
                    # The counter we read is still the stored one: no failure is lost.
                    ConditionExpression="consecutiveFailures = :seen",
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
            except ConditionFailed:
                continue
            return _instance_record(reply["Attributes"])
        raise StoreUnavailable(
            f"health of {project_id}/{connector_id} changed under us {_CAS_ATTEMPTS} times in a row",
            fix="too many workers report health for one instance at once; retry shortly",
        )

    @staticmethod
    def _health_update(
        observation: HealthObservation, *, failures: int
    ) -> tuple[str, dict[str, Any]]:
        """The ``UpdateExpression`` and its values that store ``observation``."""
        state = health_state_after(
            observation.ok,
            failures,
            observation.failures_before_error,
            degraded=observation.degraded,
        )
        stamp = k.s(text_time(observation.at))
        sets = ["lastHealthCheck = :at", "healthy = :ok", "consecutiveFailures = :f"]
        sets.append("healthState = :state")
        removes: list[str] = []
        values: dict[str, Any] = {
            ":at": stamp,
            ":ok": k.b(observation.ok),
            ":f": k.n(failures),
            ":state": k.s(state),
        }
        _set_last_error(observation.error, sets, removes, values)  # a degraded success may say why
        if observation.latency_ms is not None:
            sets.append("lastLatencyMs = :lat")
            values[":lat"] = k.n(float(observation.latency_ms))
        if observation.ok and observation.synced:
            sets.append("lastSyncAt = :at")
        return _update_expression(sets, removes), values

    async def record_delivery(
        self, project_id: str, connector_id: str, observation: DeliveryObservation
    ) -> InstanceRecord:
        from ucf.stores.delivery_health import health_after_delivery  # webhooks only

        for _ in range(_CAS_ATTEMPTS):
            current = await self.get(project_id, connector_id)
            if current is None:
                raise no_instance(project_id, connector_id)
            after = health_after_delivery(current, observation)
            sets = ["healthState = :state", "deliveryFailures = :df"]
            values: dict[str, Any] = {
                ":state": k.s(after.health_state),
                ":df": k.n(after.delivery_failures),
                ":seenDf": k.n(current.delivery_failures),
                ":seenF": k.n(current.consecutive_failures),
            }
            removes: list[str] = []
            _set_last_error(after.last_error, sets, removes, values)
            if after.last_delivery_at is not None:
                sets.append("lastDeliveryAt = :delivered")
                values[":delivered"] = k.s(text_time(after.last_delivery_at))
            expression = _update_expression(sets, removes)
            seen_df = (
                "(attribute_not_exists(deliveryFailures) OR deliveryFailures = :seenDf)"
                if current.delivery_failures == 0
                else "deliveryFailures = :seenDf"
            )
            try:
                reply = await self._db.call(
                    "update_item",
                    TableName=self._db.table,
                    Key=k.instance(project_id, connector_id),
                    UpdateExpression=expression,
                    # Nobody reported deliveries or polls meanwhile: the rule saw the truth.
                    ConditionExpression=f"{seen_df} AND consecutiveFailures = :seenF",
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
            except ConditionFailed:
                continue
            return _instance_record(reply["Attributes"])
        raise StoreUnavailable(
            f"deliveries of {project_id}/{connector_id} were reported under us "
            f"{_CAS_ATTEMPTS} times in a row",
            fix="too many workers report deliveries for one instance at once; retry shortly",
        )

    async def request_poll(self, project_id: str, connector_id: str, *, at: datetime) -> None:
        await self._update(
            project_id,
            connector_id,
            "SET pollRequestedAt = :at",
            {":at": k.s(text_time(at))},
        )

    async def clear_poll_request(
        self, project_id: str, connector_id: str, *, up_to: datetime
    ) -> bool:
        try:
            await self._db.call(
                "update_item",
                TableName=self._db.table,
                Key=k.instance(project_id, connector_id),
                UpdateExpression="REMOVE pollRequestedAt",
                # Text times sort as times (text_time): a later request stays.
                ConditionExpression="pollRequestedAt <= :upTo",
                ExpressionAttributeValues={":upTo": k.s(text_time(up_to))},
            )
        except ConditionFailed:
            return False
        return True

    async def delete(self, project_id: str, connector_id: str) -> None:
        try:
            await self._db.call(
                "delete_item",
                TableName=self._db.table,
                Key=k.instance(project_id, connector_id),
                ConditionExpression="attribute_exists(PK)",
            )
        except ConditionFailed:
            raise no_instance(project_id, connector_id) from None


def _set_last_error(
    error: str | None, sets: list[str], removes: list[str], values: dict[str, Any]
) -> None:
    """``lastError`` set to ``error``, or removed when there is none."""
    if error is None:
        removes.append("lastError")
    else:
        sets.append("lastError = :err")
        values[":err"] = k.s(error)


def _update_expression(sets: list[str], removes: list[str]) -> str:
    """``SET …`` and, if any, ``REMOVE …``: an ``UpdateExpression``."""
    expression = "SET " + ", ".join(sets)
    return expression + " REMOVE " + ", ".join(removes) if removes else expression
