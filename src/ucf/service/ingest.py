"""The one path every signal takes into the store: sanitise, then insert-if-absent + outbox.

Polls and webhooks both end here, so "stored exactly once, delivered at least
once" is decided in one place: ``SignalStore.ingest`` inserts each new dedup key
and enqueues its outbox entries in the same atomic write.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ucf.core.mapping import MappedSignal
from ucf.core.sanitiser import Sanitiser
from ucf.stores.models import SignalWrite
from ucf.stores.protocols import SignalStore


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    inserted: int
    duplicates: int
    inserted_ids: tuple[str, ...]


class SignalIngestor:
    """Sanitises mapped signals and stores them with their outbox entries."""

    def __init__(self, signals: SignalStore, sanitiser: Sanitiser, sinks: Sequence[str]) -> None:
        self._signals = signals
        self._sanitiser = sanitiser
        self.sinks = tuple(sinks)
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after each ingest that stored a new signal; returns the unsubscribe.

        The in-process deliverers listen, so a new signal leaves for the sinks at
        once rather than at their next idle tick. A listener must be quick and
        must not raise (it runs inside the ingest, on the ingesting task).
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    async def ingest(
        self,
        mapped: Sequence[MappedSignal],
        *,
        project_id: str,
        connector_id: str,
        received_at: datetime,
    ) -> IngestOutcome:
        if not mapped:
            return IngestOutcome(0, 0, ())
        writes = [
            SignalWrite(
                dedup_key=item.dedup_key,
                project_id=project_id,
                connector_id=connector_id,
                signal=self._sanitiser.sanitise_wire(item.wire),
                received_at=received_at,
            )
            for item in mapped
        ]
        result = await self._signals.ingest(writes, sinks=self.sinks)
        inserted_ids = tuple(
            write.signal_id for write, new in zip(writes, result.inserted, strict=True) if new
        )
        if inserted_ids and self.sinks:
            for listener in tuple(self._listeners):
                listener()
        return IngestOutcome(
            inserted=len(inserted_ids),
            duplicates=len(writes) - len(inserted_ids),
            inserted_ids=inserted_ids,
        )
