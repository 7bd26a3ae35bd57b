"""Everything a use case needs, opened once per process and closed once.

``ucf serve``, ``ucf worker``, ``ucf poll --store`` and the Lambda handlers all
build one :class:`UcfContext` and hand it to the use cases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import anyio.lowlevel
import httpx

from ucf.core.sanitiser import Sanitiser
from ucf.runtime.http import create_client
from ucf.service.connectors import ConnectorService
from ucf.service.ingest import SignalIngestor
from ucf.service.instances import InstanceService
from ucf.service.settings import Settings
from ucf.stores.models import StoreOptions
from ucf.stores.protocols import Store
from ucf.stores.secrets.base import SecretStore
from ucf.stores.secrets.factory import open_secret_store
from ucf.stores.url import open_store


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class UcfContext:
    settings: Settings
    store: Store
    secrets: SecretStore
    http: httpx.AsyncClient
    connectors: ConnectorService
    instances: InstanceService
    ingestor: SignalIngestor
    sanitiser: Sanitiser
    clock: Callable[[], datetime] = utc_now

    @classmethod
    async def open(cls, settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> Self:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = open_store(
            settings.store_url, options=StoreOptions(signal_retention=settings.signal_retention)
        )
        await store.init()
        try:
            secrets = await open_secret_store(settings.secret_store_url, data_dir=settings.data_dir)
        except BaseException:
            await store.close()
            raise
        connectors = ConnectorService(store.descriptors, store.instances, clock)
        sanitiser = Sanitiser()
        context = cls(
            settings=settings,
            store=store,
            secrets=secrets,
            http=create_client(settings.http, settings.egress),
            connectors=connectors,
            instances=InstanceService(store, secrets, connectors, clock),
            ingestor=SignalIngestor(store.signals, sanitiser, settings.sinks),
            sanitiser=sanitiser,
            clock=clock,
        )
        await connectors.sync_builtin()
        # httpx's connection pool loads anyio's event-loop backend on its first
        # request; load it now, with the rest of start-up, not inside a poll.
        await anyio.lowlevel.checkpoint()
        return context

    async def close(self) -> None:
        try:
            await self.http.aclose()
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
