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

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Self

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
            # service.connectors.ConnectorService.on_upgrade`).
            await self.instances.drop_unused_credentials(connector, before)

        service.on_upgrade(upgraded)
        return service

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
