"""The one path every signal takes into the store: sanitise, then insert-if-absent + outbox
(and a poll page's checkpoint, in the same write where the store can).

Polls and webhooks both end here, so "stored exactly once, delivered at least
once" is decided in one place: ``SignalStore.ingest`` inserts each new dedup key
and enqueues its outbox entries in the same atomic write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Final

from ucf.core.mapping import MappedSignal
from ucf.core.records import datarecord
from ucf.core.sanitiser import Sanitiser
from ucf.stores.errors import SignalTooLarge
from ucf.stores.models import CheckpointMove, IngestResult, SignalWrite
from ucf.stores.protocols import SignalStore

log = logging.getLogger("ucf.ingest")


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
SMALLER_RAW: Final = (0.8, 0.2, 0.0)
"""Shares of the ``raw`` budget that would fit, tried in turn for a signal too large for the
store (0.0: the first of ``raw``'s members only; every pass cuts with its ``truncated``
note)."""


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
        inserted: Sequence[bool]
        moved: bool | None = None
        if len(mapped) <= YIELD_EVERY:
            writes = self._writes(mapped, project_id, connector_id, received_at)
            writes, result = await self._store(mapped, writes, checkpoint)
            inserted = result.inserted
            moved = result.checkpoint_moved
        else:
            inserted = []
            writes = []
            for start in range(0, len(mapped), YIELD_EVERY):
                writes += self._writes(
                    mapped[start : start + YIELD_EVERY], project_id, connector_id, received_at
                )
                await asyncio.sleep(0)  # let the gateway and /healthz have the loop
            for start in range(0, len(writes), STORE_SLICE):
                last = start + STORE_SLICE >= len(writes)
                stop = start + STORE_SLICE
                stored, result = await self._store(
                    mapped[start:stop], writes[start:stop], checkpoint if last else None
                )
                writes[start:stop] = stored
                inserted += result.inserted
                moved = result.checkpoint_moved
        # a list comprehension, not tuple()'s generator (resumed once per write)
        inserted_ids = tuple(
            [write.signal_id for write, new in zip(writes, inserted, strict=True) if new]
        )
        if inserted_ids and self.sinks:
            for listener in tuple(self._listeners):
                listener()
        return IngestOutcome(
            len(inserted_ids), len(writes) - len(inserted_ids), inserted_ids, moved
        )

    async def _store(
        self,
        mapped: Sequence[MappedSignal],
        writes: list[SignalWrite],
        checkpoint: CheckpointMove | None,
    ) -> tuple[list[SignalWrite], IngestResult]:
        """Store ``writes`` (sanitised from ``mapped``, one for one); a signal the store
        refuses as too large is sanitised again with less of its ``raw``, until it fits.
        The writes as stored (a signal too large for the store with less of its raw)
        and the store's result, as a plain pair (every delivery builds one).

        The sanitiser bounds ``raw`` in characters, and a store counts bytes (DynamoDB:
        400 KB an item): 200 000 characters of CJK text, emoji or escaped quotes are
        two to four times as many bytes. Refused, the whole page would be refused at
        every poll, and the instance would never get past it. The store refuses
        before writing anything, so trying again is safe; the signal keeps its id,
        summary and metadata, and says in its notes what was cut.
        """
        tries: dict[int, Iterator[float]] = {}  # per refused signal: the shares left
        while True:
            try:
                result = await self._signals.ingest(writes, sinks=self.sinks, checkpoint=checkpoint)
            except SignalTooLarge as error:
                index = next(
                    (i for i, w in enumerate(writes) if w.signal_id == error.signal_id), None
                )
                share = (
                    None
                    if index is None
                    else next(tries.setdefault(index, iter(SMALLER_RAW)), None)
                )
                if index is None or share is None:
                    raise
                writes[index] = self._smaller(mapped[index], writes[index], error, share)
                continue
            return writes, result

    def _smaller(
        self, item: MappedSignal, write: SignalWrite, error: SignalTooLarge, share: float
    ) -> SignalWrite:
        """``item`` sanitised again, its ``raw`` bounded to ``share`` of what would fit."""
        policy = self._sanitiser.policy
        fits = policy.max_raw_total_chars * error.limit / error.size
        budget = max(1, int(fits * share))
        smaller = Sanitiser(
            replace(
                policy,
                max_raw_total_chars=budget,
                max_raw_items=max(1, min(policy.max_raw_items, budget)),
            )
        )
        log.warning(
            "signal %s is %d bytes as JSON, more than the store keeps (%d): stored with "
            "its raw cut to %d characters",
            write.signal_id,
            error.size,
            error.limit,
            budget,
        )
        [wire] = smaller.sanitise_wires([item.wire])
        [again] = SignalWrite.batch(
            [wire],
            [item.dedup_key],
            project_id=write.project_id,
            connector_id=write.connector_id,
            received_at=write.received_at,
        )
        return again
