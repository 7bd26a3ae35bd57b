"""Upkeep between polls for sources that need it (``Source.maintain``).

Graph's mail subscriptions expire after days; nothing a poll or a delivery
does would renew them. A source that defines ``async maintain(context) ->
str`` gets called here with a :class:`~ucf.runtime.native.MaintenanceContext`:
the instance's config and credentials, its upstream (auth, rate gate, rotated
tokens persisted like a poll's), its own public webhook URL
(``UCF_PUBLIC_URL`` + ``/api/webhooks/{connectorId}/{projectId}/{hookId}``)
when ``UCF_PUBLIC_URL`` is set, and a way to keep new values in its secret
store. The scheduler runs it soon after an instance appears and then at most
every :data:`~ucf.runtime.native.MAINTENANCE_EVERY` seconds; a failure is
logged and retried next time, it never stops polling.

Upkeep runs under the instance's lease ``maintain:{project}:{connector}``
(its own, so it neither waits for a long poll nor holds one up), and reads
the instance's secrets only once the lease is held: two workers starting
at once cannot both see "no subscription yet" and create two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

from ucf.runtime.native import MaintenanceContext
from ucf.runtime.sources import SourceContext
from ucf.service.connectors import Connector
from ucf.service.context import UcfContext
from ucf.service.poll import (
    DEFAULT_LEASE_TTL,
    HeldLease,
    default_worker_id,
    instance_context,
    rate_gate_for,
    rotation_writer,
)
from ucf.service.webhooks import webhook_path
from ucf.stores.models import InstanceRecord

__all__ = ["maintain_instance", "maintains", "maintenance_lease", "webhook_url"]

log = logging.getLogger("ucf.maintenance")


def maintains(connector: Connector) -> bool:
    """Whether the connector's source has upkeep to do (only native sources can)."""
    if connector.kind != "native":
        return False
    try:
        return callable(getattr(connector.source, "maintain", None))
    except Exception:  # a native package that fails to load: the poll reports it
        return False


def maintenance_lease(project_id: str, connector_id: str) -> str:
    return f"maintain:{project_id}:{connector_id}"


def webhook_url(
    context: UcfContext, connector_id: str, project_id: str, hook_id: str | None = None
) -> str | None:
    """The instance's public gateway URL, when ucf knows where the internet reaches it:
    its own unguessable one with ``hook_id`` (what the dashboard shows as
    ``webhookUrl``), else the shared one."""
    base = context.settings.public_url
    if base is None:
        return None
    return base.rstrip("/") + webhook_path(connector_id, project_id, hook_id)


async def maintain_instance(
    context: UcfContext,
    record: InstanceRecord,
    connector: Connector,
    *,
    owner: str | None = None,
    lease_ttl: timedelta = DEFAULT_LEASE_TTL,
) -> str | None:
    """Run the source's ``maintain`` for one instance under its maintenance lease; what it
    did, or None when it failed or another worker holds the lease."""
    hook = getattr(connector.source, "maintain", None)
    if not callable(hook):
        return None
    lease = HeldLease(
        context.store.leases,
        maintenance_lease(record.project_id, record.connector_id),
        owner or default_worker_id(),
        lease_ttl,
        context.clock,
    )
    if not await lease.acquire():
        log.info(
            "maintenance of %s/%s: another worker is doing it",
            record.project_id,
            record.connector_id,
        )
        return None
    try:
        return await _maintain(context, record, connector, hook)
    finally:
        await asyncio.shield(lease.release())


async def _maintain(
    context: UcfContext,
    record: InstanceRecord,
    connector: Connector,
    hook: Callable[[MaintenanceContext], Awaitable[object]],
) -> str | None:
    # Read under the lease: what the previous holder stored (a subscription id) is seen.
    stored = await context.instances.runtime_secrets(record, connector)
    credentials = dict(stored.credentials)
    config = {key: str(value) for key, value in record.config.items()}
    ref = record.credential_secret_ref
    upstream: SourceContext | None = None

    async def open_upstream() -> SourceContext:
        nonlocal upstream
        if upstream is None:
            upstream = instance_context(
                context,
                connector,
                credentials=credentials,
                config=config,
                on_rotate=rotation_writer(context, ref),
                rate_gate=rate_gate_for(context, record.project_id, connector),
            )
        return upstream

    async def save(updates: Mapping[str, str | None]) -> None:
        if ref is None:
            new = {k: v for k, v in updates.items() if v is not None}
            await context.instances.update(record.project_id, record.connector_id, credentials=new)
            return
        await context.secret_turns.merge(context.secrets, ref, dict(updates))

    maintenance = MaintenanceContext(
        project_id=record.project_id,
        connector_id=record.connector_id,
        config=config,
        credentials=credentials,
        upstream=open_upstream,
        webhook_url=webhook_url(context, record.connector_id, record.project_id, stored.hook_id),
        save_credentials=save,
        now=context.clock(),
    )
    try:
        done = str(await hook(maintenance))
    except Exception as error:
        log.warning(
            "maintenance of %s/%s failed: %s: %s",
            record.project_id,
            record.connector_id,
            type(error).__name__,
            error,
        )
        return None
    log.info("maintenance of %s/%s: %s", record.project_id, record.connector_id, done)
    return done
