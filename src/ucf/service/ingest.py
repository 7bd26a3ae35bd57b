"""The one path every signal takes into the store: sanitise, then insert-if-absent + outbox
(and a poll page's checkpoint, in the same write where the store can).

Polls and webhooks both end here, so "stored exactly once, delivered at least
once" is decided in one place: ``SignalStore.ingest`` inserts each new dedup key
and enqueues its outbox entries in the same atomic write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final

from ucf.core.mapping import MappedSignal
from ucf.core.records import datarecord
from ucf.core.sanitiser import Sanitiser
from ucf.stores.models import CheckpointMove, SignalWrite
from ucf.stores.protocols import SignalStore


@datarecord
class IngestOutcome:
    inserted: int
    duplicates: int
    inserted_ids: tuple[str, ...]
    checkpoint_moved: bool | None = None
    """Whether the :class:`CheckpointMove` asked for won (None: none was asked for)."""


YIELD_EVERY: Final = 256
"""Signals sanitised between two turns of the event loop (a few milliseconds' work)."""
STORE_SLICE: Final = 1000
"""Signals stored in one transaction of a large batch (tens of milliseconds of SQLite)."""


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

    def _writes(
        self,
        mapped: Sequence[MappedSignal],
        project_id: str,
        connector_id: str,
        received_at: datetime,
    ) -> list[SignalWrite]:
        # One scan over the slice's strings (the signal-by-signal answer whenever it finds
        # anything), not two per signal.
        sanitised = self._sanitiser.sanitise_wires([item.wire for item in mapped])
        return SignalWrite.batch(
            sanitised,
            [item.dedup_key for item in mapped],
            project_id=project_id,
            connector_id=connector_id,
            received_at=received_at,
        )

    async def ingest(
        self,
        mapped: Sequence[MappedSignal],
        *,
        project_id: str,
        connector_id: str,
        received_at: datetime,
        checkpoint: CheckpointMove | None = None,
    ) -> IngestOutcome:
        """Sanitise, then store each new signal with its outbox entries; then, if asked,
        move ``checkpoint`` (in the same transaction as the last slice where the store
        can: one commit per page on SQLite).

        A large batch (a poll's page of thousands of items) is sanitised a slice at
        a time, handing the event loop back between slices, and stored in
        transactions of :data:`STORE_SLICE` signals, so a webhook delivery or a
        health probe waits for one slice, not the whole page. Each signal is still
        stored atomically with its outbox entries; the caller moves a checkpoint
        only after the whole batch is stored, and a crash between two slices is
        repaired by the next poll (the stored keys are duplicates). Worker threads
        were measured worse: the GIL convoy queued every request behind them.
        """
        if not mapped and checkpoint is None:
            return IngestOutcome(0, 0, ())
        inserted: list[bool] = []
        moved: bool | None = None
        if len(mapped) <= YIELD_EVERY:
            writes = self._writes(mapped, project_id, connector_id, received_at)
            stored = await self._signals.ingest(writes, sinks=self.sinks, checkpoint=checkpoint)
            inserted += stored.inserted
            moved = stored.checkpoint_moved
        else:
            writes = []
            for start in range(0, len(mapped), YIELD_EVERY):
                writes += self._writes(
                    mapped[start : start + YIELD_EVERY], project_id, connector_id, received_at
                )
                await asyncio.sleep(0)  # let the gateway and /healthz have the loop
            for start in range(0, len(writes), STORE_SLICE):
                last = start + STORE_SLICE >= len(writes)
                stored = await self._signals.ingest(
                    writes[start : start + STORE_SLICE],
                    sinks=self.sinks,
                    checkpoint=checkpoint if last else None,
                )
                inserted += stored.inserted
                moved = stored.checkpoint_moved
        inserted_ids = tuple(
            write.signal_id for write, new in zip(writes, inserted, strict=True) if new
        )
        if inserted_ids and self.sinks:
            for listener in tuple(self._listeners):
                listener()
        return IngestOutcome(
            inserted=len(inserted_ids),
            duplicates=len(writes) - len(inserted_ids),
            inserted_ids=inserted_ids,
            checkpoint_moved=moved,
        )
