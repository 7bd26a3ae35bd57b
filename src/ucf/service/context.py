"""Everything a use case needs, opened once per process and closed once.

``ucf serve``, ``ucf worker``, ``ucf poll --store`` and the Lambda handlers all
build one :class:`UcfContext` and hand it to the use cases.

The parts a use case may not need — the outbound HTTP client, the connector
catalogue, the sanitiser and ingestor, the instance service — are built on
first use, and their modules imported then: a Lambda function that only
drains the outbox never loads the descriptor models, the mapping engine or
JSONPath (``bench/coldstart.py``). ``open(..., on_demand=True)`` goes further
for such short-lived processes: the secret store connects, and the shipped
catalogue is synced into the store, on first use rather than at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from ucf.service.settings import Settings
from ucf.stores.models import StoreOptions
from ucf.stores.protocols import Store
from ucf.stores.secrets.base import SecretStore
from ucf.stores.secrets.factory import deferred_secret_store, open_secret_store
from ucf.stores.url import open_store

if TYPE_CHECKING:
    import httpx

    from ucf.core.sanitiser import Sanitiser
    from ucf.service.connectors import Connector, ConnectorService
    from ucf.service.ingest import SignalIngestor
    from ucf.service.instances import InstanceService
    from ucf.service.secret_turns import SecretTurns


log = logging.getLogger(__name__)

UPGRADES_PENDING: Final = "upgrades-pending"
"""The one record an earlier version kept every pending catalogue upgrade in (connector
id to the descriptor it replaced); still read, and moved to :func:`upgrade_pending_key`'s
records, so a database it left loses none."""


def upgrade_pending_key(connector_id: str) -> str:
    """The record of one catalogue upgrade whose work on its connector's instances is
    not done yet: the descriptor it replaced (:meth:`UcfContext.finish_upgrades`).

    One record per connector, not one for all: two processes upgrading two connectors
    at once each wrote back the shared record as they had read it, and one upgrade was
    forgotten; and whole descriptors of a large catalogue in one item neared DynamoDB's
    400 KB limit."""
    return f"{UPGRADES_PENDING}#{connector_id}"


UPGRADE_RETRY_FOR: Final = timedelta(days=30)
"""How long such work is tried again (once a day) before it is given up."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class UcfContext:
    """The store, the secret store and the settings; the rest made when first asked for."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        secrets: SecretStore,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.store = store
        self.secrets = secrets
        self.clock = clock

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utc_now,
        on_demand: bool = False,
        provisioned: bool = False,
    ) -> Self:
        """Open the store (and the secret store), and sync the shipped catalogue.

        ``on_demand``: the secret store connects on its first call and the
        catalogue is synced before the first read of a connector, so a process
        that needs neither (a Lambda draining the outbox) pays for neither; a
        misconfigured secret store then fails that first call, not ``open``.

        ``provisioned``: the deployment created the store, so it is not
        initialised (nor checked) here: the SAM template creates the DynamoDB
        table with its index and TTL, and ``tests/aws/test_template.py`` holds
        that table to the schema ``ucf store init`` would create. That spares
        each Lambda cold start its DescribeTable and DescribeTimeToLive round
        trips; a table that is missing anyway fails the first call with the
        store's "does not exist" error.
        """
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = open_store(
            settings.store_url,
            options=StoreOptions(
                signal_retention=settings.signal_retention,
                descriptor_history=settings.descriptor_history,
            ),
        )
        if not provisioned:
            await store.init()
        try:
            if on_demand:
                secrets = deferred_secret_store(settings.secret_store_url, settings.data_dir)
            else:
                secrets = await open_secret_store(
                    settings.secret_store_url, data_dir=settings.data_dir
                )
        except BaseException:
            await store.close()
            raise
        context = cls(settings, store, secrets, clock=clock)
        if not on_demand:
            context.http  # noqa: B018 - built now, with the rest of start-up
            context.ingestor  # noqa: B018
            await context.connectors.sync_builtin()
        return context

    @cached_property
    def http(self) -> httpx.AsyncClient:
        """The one outbound HTTP client (SSRF guard, timeouts, size caps).

        Its CA bundle loads when a poll names an ``https`` upstream
        (:func:`ucf.service.poll.poll_instance`), or at the first ``https`` request,
        not when the client is built: a process whose upstreams are all plain
        ``http`` never parses it (~15 ms of CPU at a poll worker's cold start).
        """
        from ucf.runtime.http import create_client

        return create_client(self.settings.http, self.settings.egress, load_ca_now=False)

    @cached_property
    def connectors(self) -> ConnectorService:
        from ucf.service.connectors import ConnectorService

        service = ConnectorService(self.store.descriptors, self.store.instances, self.clock)

        async def upgraded(connector: Connector, before: Connector) -> None:
            # A shipped connector upgraded at a start is treated as an edit (:meth:`ucf.
            # service.connectors.ConnectorService.on_upgrade`), remembered until done.
            await self._upgrade_pending(connector.id, before)
            await self.instances.drop_unused_credentials(connector, before)
            await self._upgrade_done(connector.id)

        service.on_upgrade(upgraded)
        return service

    async def _upgrade_pending(self, connector_id: str, before: Connector) -> None:
        """Remember, before its work starts, that the upgrade of ``connector_id`` from
        ``before`` has its instances still to see to (:meth:`finish_upgrades`)."""
        await self._move_old_pending()
        now = self.clock()
        key = upgrade_pending_key(connector_id)
        # The oldest: an earlier upgrade's work not done yet read the instances against it.
        if await self.store.records.get(key, now=now) is None:
            await self.store.records.put(
                key, {"before": before.stored}, expires_at=now + UPGRADE_RETRY_FOR
            )

    async def _upgrade_done(self, connector_id: str) -> None:
        await self.store.records.delete(upgrade_pending_key(connector_id))

    async def _move_old_pending(self) -> None:
        """Move the single record an earlier version kept (:data:`UPGRADES_PENDING`) to
        one record per connector, then delete it. Its entries are older than any record
        of the new form, so theirs is the descriptor the instances were read against: it
        replaces one already there. Two processes moving it at once write the same."""
        now = self.clock()
        old = await self.store.records.get(UPGRADES_PENDING, now=now)
        if old is None:
            return
        for connector_id, stored in old.items():
            await self.store.records.put(
                upgrade_pending_key(connector_id),
                {"before": stored},
                expires_at=now + UPGRADE_RETRY_FOR,
            )
        await self.store.records.delete(UPGRADES_PENDING)

    async def pending_upgrades(self) -> dict[str, dict[str, Any]]:
        """The shipped connectors whose upgrade's work on their instances is not done, each
        with the descriptor it replaced. Read per stored shipped connector (those the only
        ones an upgrade reaches): one read each, once a day."""
        await self._move_old_pending()
        now = self.clock()
        pending: dict[str, dict[str, Any]] = {}
        for record in await self.store.descriptors.list_all():
            if not record.built_in:
                continue
            found = await self.store.records.get(upgrade_pending_key(record.connector_id), now=now)
            if found is not None:
                pending[record.connector_id] = found["before"]
        return pending

    async def finish_upgrades(self) -> int:
        """Do again what a catalogue upgrade does to its connector's instances where it
        did not finish (:meth:`ConnectorService.on_upgrade`); how many upgrades are done.

        The upgrade is stored before that work, once, by the process that wins it: a
        work that failed (a store or secret store error, a Lambda's time out) was never
        done again, and no later edit or start does it (an edit's "before" is the
        upgraded version, whose reading of the instance is the wrong one). An instance
        whose method the upgrade moved to an alternative then read as the other one:
        every poll failed until someone PATCHed it. Called once a day by the scheduler.
        """
        from ucf.service.connectors import Connector
        from ucf.service.errors import NotFoundError

        done = 0
        for connector_id, stored in (await self.pending_upgrades()).items():
            try:
                connector = await self.connectors.get(connector_id)
            except NotFoundError:
                await self._upgrade_done(connector_id)
                continue
            before = Connector(
                stored,
                built_in=True,
                created_at=connector.created_at,
                updated_at=connector.created_at,
            )
            try:
                await self.instances.drop_unused_credentials(connector, before)
            except Exception:  # the next one's work is not held up by this one's
                log.exception("finishing the upgrade of '%s' failed", connector_id)
                continue
            await self._upgrade_done(connector_id)
            done += 1
        return done

    @cached_property
    def instances(self) -> InstanceService:
        from ucf.service.instances import InstanceService

        return InstanceService(self.store, self.secrets, self.connectors, self.clock)

    @cached_property
    def secret_turns(self) -> SecretTurns:
        """Changes of one credential set take turns, here and in every other process."""
        from ucf.service.secret_turns import SecretTurns

        return SecretTurns(self.store.leases, self.clock)

    @cached_property
    def sanitiser(self) -> Sanitiser:
        from ucf.core.sanitiser import Sanitiser

        return Sanitiser()

    @cached_property
    def ingestor(self) -> SignalIngestor:
        from ucf.service.ingest import SignalIngestor

        return SignalIngestor(self.store.signals, self.sanitiser, self.settings.sinks)

    async def close(self) -> None:
        http = self.__dict__.get("http")
        try:
            if http is not None:
                await http.aclose()
        finally:
            try:
                await self.secrets.close()
            finally:
                await self.store.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
