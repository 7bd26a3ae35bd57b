"""Signals leave ucf through the outbox: one :class:`DeliveryWorker` per configured sink.

The signal store always holds every signal (the API reads it); each extra sink
(``UCF_SINK_JSONL``, ``UCF_SINK_HTTP``, ``UCF_SINK_SQS``, ``UCF_SINK_EVENTBRIDGE``;
the AWS ones live in :mod:`ucf.service.aws_sinks`) gets its own outbox entries, written in
the same atomic ingest as the signal. A worker loops claim → deliver → ack, and
on failure releases the batch with a backoff. Guarantees:

- **At least once, across restarts.** Entries are durable; an entry neither
  acked nor released (its worker died) is claimed again when its lease ends.
  A crash between "delivered" and "acked" delivers it twice: downstream
  consumers deduplicate on the signal ``id``.
- **In order per instance.** ``claim`` returns the oldest entries first, a sink
  delivers a batch in that order, and a failed batch is released and retried
  before anything claimed after it: the worker sleeps until the batch is due
  again instead of claiming later entries. Across processes, one worker per
  sink is active at a time, holding the store lease ``delivery:{sink}`` (others
  stand by), and that lease always outlives every claim and every backoff its
  holder made, so a successor can never overtake entries still hidden by a
  claim of a dead predecessor.
- **Graceful stop.** :meth:`DeliveryWorker.stop` finishes the batch in flight;
  cancelling the task gives it ``stop_grace`` seconds to finish, then gives the
  batch back at once. Either way the sink lease is handed over immediately
  when no claim or backoff of ours is outstanding.

A sink is a strategy with one verb, ``async deliver(entries)``, raising on
failure; it never sees the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, Protocol

import httpx

from ucf.core.records import datarecord
from ucf.runtime.completion import to_the_end
from ucf.runtime.decoding import ACCEPT_ENCODING
from ucf.runtime.health import secret_free
from ucf.runtime.http import (
    CappedTransport,
    HttpSettings,
    UpstreamError,
    describe,
    send_with_retries,
)
from ucf.runtime.network import AsyncioBackend
from ucf.runtime.redaction import SECRETS
from ucf.runtime.trust import BackgroundTrustTransport
from ucf.service.context import UcfContext
from ucf.service.settings import Settings, check_sink_url
from ucf.stores.errors import StoreError
from ucf.stores.models import OutboxEntry, OutboxLag

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_LEASE",
    "MIN_SEND_SECONDS",
    "SEND_DEADLINE",
    "Backoff",
    "DeliveryFailed",
    "DeliveryStats",
    "DeliveryWorker",
    "HttpPostSink",
    "JsonlFileSink",
    "OutOfTime",
    "Sink",
    "SinkDelivery",
    "check_sink_url",
    "delivery_services",
    "idempotency_key",
    "outbox_lag",
    "sink_http_settings",
    "start_delivery",
    "stop_delivery",
]

log = logging.getLogger("ucf.delivery")

DEFAULT_BATCH_SIZE: Final = 100
DEFAULT_LEASE: Final = timedelta(seconds=60)
MIN_SEND_SECONDS: Final = 2.0
"""A send is not started with less time than this left before a worker's ``deadline``."""


class DeliveryFailed(Exception):
    """A sink could not take a batch; ``retry_after`` is when it asked us to come back.

    ``rejected`` means the sink refused the signals themselves (a 400 or 422
    for what they contain, a 413 for their size): sending the same batch again
    cannot succeed, so the worker finds which signals are refused and parks them.

    ``refused`` is for sinks that know per entry (SQS, EventBridge): entry id →
    why it was refused for good, and *every other entry of the batch was
    delivered*. The worker parks those and acknowledges the rest at once.

    ``delivered`` is for sinks that send a batch in several calls (SQS,
    EventBridge): the entries taken before the failure. With it, ``refused``
    names only the entries refused so far; the worker acknowledges the one,
    parks the other, and the rest of the batch fails as this error says
    (``rejected``: sorted out one by one; otherwise tried again after its
    backoff), instead of sending again what was taken already.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        rejected: bool = False,
        refused: Mapping[str, str] | None = None,
        delivered: Sequence[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.delivered = None if delivered is None else tuple(delivered)
        self.rejected = rejected or (bool(refused) and self.delivered is None)
        self.refused = dict(refused) if refused else None


class OutOfTime(DeliveryFailed):
    """The send's time ran out partway, no failure of the sink's: a sink sending a batch
    in several calls (SQS, EventBridge) stopped before a call that would not fit, or gave
    up on one that outlasted the batch's time. What it ``delivered`` is acknowledged, what
    it ``refused`` parked, and the rest claimed again at once, with no backoff and no
    failure counted (raised only once part of the batch is settled: each one moves the queue)."""

    def __init__(
        self, message: str, *, delivered: Sequence[str], refused: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message, refused=refused, delivered=delivered)


SEND_DEADLINE: Final[ContextVar[float | None]] = ContextVar("ucf_send_deadline", default=None)
"""The event loop's time by which the send in progress must be over (set around each one,
:meth:`DeliveryWorker._attempt`): a sink that sends a batch in several calls starts no
call that would not fit, and says what it delivered (``DeliveryFailed.delivered``)."""


#: Answers that refuse the content, not the request: anything else (401, 403, 404,
#: 5xx…) is the sink's or its configuration's problem, and the queue waits for it.
REJECTING_STATUSES: Final = frozenset({400, 413, 415, 422})


class Sink(Protocol):
    """Where signals go after the store. Deliver all of ``entries``, in order, or raise."""

    async def deliver(self, entries: Sequence[OutboxEntry]) -> None: ...


# --------------------------------------------------------------------------- sinks


def _json_line(entry: OutboxEntry) -> bytes:
    return json.dumps(entry.signal, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class JsonlFileSink:
    """Appends one wire JSON signal per line; flushed and fsynced per batch.

    At least once: a crash between the write and the ack appends the batch again
    on redelivery, so consumers deduplicate on ``id``. A crash mid-write can leave
    a torn last line; the next batch starts on a fresh line so only that line is
    unreadable (consumers skip lines that do not parse). The file is opened per
    batch, so it may be rotated away underneath us, and is created 0600: signals
    are sanitised, but still a project's private data.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    async def deliver(self, entries: Sequence[OutboxEntry]) -> None:
        if not entries:
            return
        data = b"".join(_json_line(entry) for entry in entries)
        try:
            await asyncio.to_thread(self._append, data)
        except OSError as error:
            raise DeliveryFailed(
                f"cannot append to {self.path}: {error.strerror or error}"
            ) from error

    def _append(self, data: bytes) -> None:
        created = not self.path.exists()
        if created:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # isolate a line torn by an earlier crash
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)  # the new file's name survives a power cut too
            finally:
                os.close(directory)


def idempotency_key(entries: Sequence[OutboxEntry]) -> str:
    """The same batch of signals always gets the same key.

    Built from the signal ids (deterministic ULIDs), not from outbox entry ids,
    which a requeued signal does not keep.
    """
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(str(entry.signal.get("id", "")).encode())
        digest.update(b"\n")
    return "ucf-" + digest.hexdigest()[:40]


def sink_http_settings(base: HttpSettings, lease: timedelta = DEFAULT_LEASE) -> HttpSettings:
    """Timeouts and retries sized to the time a worker may spend on one batch: half the
    ``lease`` the worker claims with (:attr:`DeliveryWorker.deliver_timeout`).

    An answer may take all of it (at most ``base.read_timeout``): a pipeline slower
    than ucf waits is sent the same batch again after every backoff, and nothing
    behind it moves, so it is waited for rather than retried. Retries fit in what is
    left after a quick failure (a 5xx, a refused connection). Redirects are not
    followed: a POST silently turned into a GET loses signals.
    """
    budget = lease.total_seconds() / 2
    return replace(
        base,
        connect_timeout=min(base.connect_timeout, budget / 4),
        read_timeout=min(base.read_timeout, budget),
        write_timeout=min(base.write_timeout, budget),
        pool_timeout=min(base.pool_timeout, budget / 4),
        max_retries=min(base.max_retries, 2),
        max_total_retry_wait=min(base.max_total_retry_wait, budget / 4),
        follow_redirects=False,
    )


class HttpPostSink:
    """POSTs ``{"signals": [...]}`` (a batch, in order) as JSON to the downstream pipeline.

    Transient failures (5xx, timeouts, dropped connections, 429 with
    ``Retry-After``) are retried by :func:`send_with_retries` within the batch's
    budget; past it, the worker releases the batch and retries it later,
    honouring ``Retry-After``. Because a retried POST may have been processed
    already (the answer was lost), every request carries an ``Idempotency-Key``
    header that is the same for the same batch of signals; consumers should
    also deduplicate on each signal's ``id``, since a batch re-formed after a
    restart may group signals differently. Only a 2xx answer counts.
    """

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        settings: HttpSettings | None = None,
        token: str | None = None,
    ) -> None:
        self.url = check_sink_url(url)
        self._client = client
        # The URL's path and query can be its credential (Slack-style hook URLs), and a
        # failure's message names the request (``POST host/path: …``) in logs, delivery
        # health and the delivery function's result: they name the host alone.
        request = client.build_request("POST", self.url)
        port = "" if request.url.port is None else f":{request.url.port}"
        self._described = describe(request)
        self._shown = f"POST {request.url.host}{port} (UCF_SINK_HTTP, its path not shown)"
        self._settings = settings or sink_http_settings(HttpSettings())
        self._headers = {"Content-Type": "application/json"}
        if token:
            SECRETS.add(token)  # never in a log line, whatever error quotes it
            self._headers["Authorization"] = f"Bearer {token}"

    async def deliver(self, entries: Sequence[OutboxEntry]) -> None:
        if not entries:
            return
        body = json.dumps(
            {"signals": [entry.signal for entry in entries]},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        headers = {**self._headers, "Idempotency-Key": idempotency_key(entries)}
        timeout = self._settings.timeout()  # ours, whatever client we were given

        def build() -> httpx.Request:
            return self._client.build_request(
                "POST", self.url, content=body, headers=headers, timeout=timeout
            )

        try:
            response = await send_with_retries(self._client, build, settings=self._settings)
        except UpstreamError as error:
            raise DeliveryFailed(
                self._without_path(str(error)),
                retry_after=error.retry_after,
                rejected=error.status in REJECTING_STATUSES,
            ) from None  # its message names the path
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(
                self._without_path(
                    f"{describe(response.request)}: answered HTTP {response.status_code}, not 2xx"
                )
            )

    def _without_path(self, message: str) -> str:
        return message.replace(self._described, self._shown)


# --------------------------------------------------------------------------- the worker


@datarecord
class Backoff:
    """Seconds before a failed batch is tried again: ``base × 2^(n-1)``, capped.

    An explicit ``Retry-After`` from the sink wins (within the cap).
    """

    base: float = 1.0
    cap: float = 300.0

    def delay(self, failures: int, asked: float | None = None) -> float:
        if asked is not None:
            return min(max(asked, 0.0), self.cap)
        return min(self.cap, self.base * (1 << min(max(failures - 1, 0), 32)))


@datarecord(frozen=False, slots=False)
class DeliveryStats:
    """What a worker did so far, for logs and metrics (secret-free)."""

    delivered: int = 0
    batches: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    active: bool = False
    """Holds the sink lease (False: another process delivers, we stand by)."""
    parked: int = 0
    """Signals the sink refused for good, set aside (``ucf outbox requeue`` brings them back)."""


class DeliveryWorker:
    """Moves one sink's outbox entries into the sink (see the module doc).

    ``lease`` hides a claimed batch from other claimers; a batch must be
    delivered within half of it (``deliver_timeout``). The sink lease lasts
    twice ``lease`` and is renewed whenever less than ``1.5 × lease`` is left.

    ``deadline`` (the event loop's time; a Lambda function's timeout less its
    wind-down) is when the process stops for good: no send runs past it, and a
    batch being sorted out one signal at a time goes on, even once stopping,
    while a send still fits before it (see :meth:`_sort_out`). With less than
    :data:`MIN_SEND_SECONDS` left the worker claims nothing more and stops.
    """

    def __init__(
        self,
        context: UcfContext,
        sink_name: str,
        sink: Sink,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        lease: timedelta = DEFAULT_LEASE,
        idle_seconds: float = 0.5,
        standby_seconds: float = 5.0,
        stop_grace: float = 10.0,
        backoff: Backoff | None = None,
        owner: str | None = None,
        deadline: float | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if lease <= timedelta(0):
            raise ValueError("lease must be positive")
        self.context = context
        self.sink_name = sink_name
        self.sink = sink
        self.batch_size = batch_size
        self.lease = lease
        self.deliver_timeout = lease.total_seconds() / 2
        self.deadline = deadline
        self._timeout = self.deliver_timeout
        """What the last send was given (less than ``deliver_timeout`` near the deadline)."""
        self.idle_seconds = idle_seconds
        self.standby_seconds = standby_seconds
        self.stop_grace = stop_grace
        self.backoff = backoff or Backoff()
        # Unique per worker: a restarted process reusing a host:pid-style name
        # must not inherit a dead worker's sink lease while its claims are hidden.
        if owner is None:
            from ucf.service.poll import default_worker_id  # not loaded by a Lambda: it names one

            owner = default_worker_id()
        self.owner = f"{owner}:{secrets.token_hex(4)}"
        self.lease_name = f"delivery:{sink_name}"
        self.stats = DeliveryStats()
        self._sink_lease_ttl = lease * 2
        self._lease_until: datetime | None = None
        self._hold_until: datetime | None = None
        self._outstanding = False
        self._retry_limit: int | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    # -- control

    def stop(self) -> None:
        """Finish the batch in flight, then return from :meth:`run`."""
        self._stopping.set()
        self._wake.set()

    def wake(self) -> None:
        """Look for entries now instead of at the next idle tick (e.g. right after an ingest)."""
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- the loop

    async def run(self) -> None:
        """Deliver until :meth:`stop` or cancellation; never raises for sink or store trouble."""
        log.info("delivery to %s started (worker %s)", self.sink_name, self.owner)
        # New signals stored in this process wake the worker at once: delivery within
        # moments of the ingest, not at the next idle tick.
        unsubscribe = self.context.ingestor.subscribe(self.wake)
        try:
            while not self.stopping:
                try:
                    pause = await self._step()
                except StoreError as error:
                    log.warning("delivery to %s: store error: %s", self.sink_name, error)
                    pause = self.standby_seconds
                except Exception:
                    log.exception("delivery to %s failed inside ucf", self.sink_name)
                    pause = self.standby_seconds
                if pause:
                    await self._pause(pause)
        finally:
            unsubscribe()
            await self._hand_over()
            log.info(
                "delivery to %s stopped: %d signal(s) in %d batch(es), %d failure(s)",
                self.sink_name,
                self.stats.delivered,
                self.stats.batches,
                self.stats.failures,
            )

    async def run_once(self) -> int:
        """Deliver what is available now, batch after batch; the number delivered.

        Stops at the first failure (the batch is released with its backoff) or
        when another worker holds the sink. For tests and ``--once`` style runs.
        """
        before = self.stats.delivered
        try:
            while not self.stopping and await self._step() == 0:
                pass
        finally:
            await self._hand_over()
        return self.stats.delivered - before

    async def _step(self) -> float:
        """One claim-deliver-settle round; how long to pause before the next (0: go on)."""
        if self.deadline is not None and (
            self.deadline - asyncio.get_running_loop().time() < MIN_SEND_SECONDS
        ):
            # No send fits any more: a claim would only be given back (a refused batch
            # at once, to be claimed, sent whole and refused again, round after round).
            log.info(
                "delivery to %s: less than %g s left before the deadline, nothing more claimed",
                self.sink_name,
                MIN_SEND_SECONDS,
            )
            self.stop()
            return 0.0
        now = self.context.clock()
        if self._hold_until is not None and now < self._hold_until:
            # A released batch is not due yet; claiming now would overtake it.
            return (self._hold_until - now).total_seconds()
        if not await self._hold_sink():
            return self.standby_seconds
        now = self.context.clock()
        limit = self._retry_limit or self.batch_size
        self._outstanding = True  # from here until settled, entries may be hidden by our claim
        claimed_at = asyncio.get_running_loop().time()  # the claim's lease starts at ``now``
        entries, cancelled = await to_the_end(
            self.context.store.outbox.claim(self.sink_name, limit=limit, lease=self.lease, now=now)
        )
        if cancelled:
            await self._give_back(entries)
            raise asyncio.CancelledError
        if not entries:
            self._outstanding = False
            return self.idle_seconds
        failure = await self._deliver(entries, claimed_at)
        if failure is None:
            return 0.0
        return failure

    async def _hold_sink(self) -> bool:
        """Acquire or renew the sink lease when less than ``lease + lease/2`` is left.

        After a renewal at least ``2 × lease`` remains, so every claim we make
        next (hidden for ``lease``) ends before a successor can take over.
        """
        now = self.context.clock()
        if self._lease_until is not None and self._lease_until - now > self.lease * 1.5:
            return True
        held, cancelled = await to_the_end(
            self.context.store.leases.acquire(
                self.lease_name, self.owner, ttl=self._sink_lease_ttl, now=now
            )
        )
        if held and not self.stats.active:
            log.info("delivery to %s: this worker is now the active one", self.sink_name)
        self.stats.active = held
        self._lease_until = now + self._sink_lease_ttl if held else None
        if cancelled:
            raise asyncio.CancelledError  # now known to hold it, so the stop hands it over
        return held

    async def _give_back(self, entries: list[OutboxEntry]) -> None:
        """Cancelled while claiming: whatever the claim took is claimable again at once."""
        if entries:
            try:
                await self.context.store.outbox.release(
                    self.sink_name,
                    [entry.entry_id for entry in entries],
                    retry_at=self.context.clock(),
                )
            except StoreError as error:  # hidden until the claim's lease ends; nothing lost
                log.warning(
                    "delivery to %s: could not give back a claim: %s", self.sink_name, error
                )
                return
        self._outstanding = False

    async def _deliver(self, entries: list[OutboxEntry], claimed_at: float) -> float | None:
        """Deliver and settle one batch: None on success, else the backoff in seconds.

        ``claimed_at`` is the event loop's time when the claim (and its lease) began.
        """
        ids = [entry.entry_id for entry in entries]
        attempt = asyncio.ensure_future(self._attempt(entries))
        try:
            await asyncio.shield(attempt)
        except asyncio.CancelledError:
            await self._settle_on_cancel(attempt, ids)
            raise
        except DeliveryFailed as error:
            if error.delivered is not None:
                # Settled to the end, as below: what the sink took must not go again.
                rest, cancelled = await to_the_end(self._settle_taken(entries, error))
                if cancelled:
                    raise asyncio.CancelledError from None
                if not rest:
                    self._settled()
                    return None
                entries, ids = rest, [entry.entry_id for entry in rest]
                if isinstance(error, OutOfTime):
                    log.info("delivery to %s: %s", self.sink_name, error)
                    await self.context.store.outbox.release(
                        self.sink_name, ids, retry_at=self.context.clock()
                    )
                    self._settled()  # the rest is claimable again now, and claimed next
                    return None
            elif error.refused is not None:
                # Settled to the end even if a stop comes meanwhile: the sink took the
                # others, so they must be acknowledged, not sent again after the claim.
                _, cancelled = await to_the_end(self._settle_refused(entries, error.refused))
                if cancelled:
                    raise asyncio.CancelledError from None
                return None
            if error.rejected:
                return await self._sort_out(entries, claimed_at)
            return await self._failed(ids, error)
        except Exception as error:
            return await self._failed(ids, error)
        await self._acked(ids)
        return None

    async def _settle_refused(self, entries: list[OutboxEntry], refused: Mapping[str, str]) -> None:
        """The sink named the entries it refused for good and took the others: acknowledge
        these, then park those (:meth:`_set_aside`); the batch is settled."""
        delivered = [entry.entry_id for entry in entries if entry.entry_id not in refused]
        if delivered:
            await self._acked(delivered)
        else:
            self._settled()
        for entry in entries:
            if entry.entry_id in refused:
                await self._set_aside(entry, refused[entry.entry_id])

    def _settled(self) -> None:
        """The batch is settled without an ack of this worker's to end it."""
        self._outstanding = False
        self._retry_limit = None
        self._hold_until = None
        self.stats.batches += 1
        self.stats.consecutive_failures = 0
        self.stats.last_error = None

    async def _settle_taken(
        self, entries: list[OutboxEntry], error: DeliveryFailed
    ) -> list[OutboxEntry]:
        """The sink failed partway (``error.delivered``): park what it refused, acknowledge
        what it took; the entries left to fail. The claim still hides those, so the
        worker keeps them outstanding (the sink lease must outlive it)."""
        refused = error.refused or {}
        taken = set(error.delivered or ())
        acked = [e.entry_id for e in entries if e.entry_id in taken and e.entry_id not in refused]
        if acked:
            try:
                await self.context.store.outbox.ack(self.sink_name, acked)
            except StoreError as failure:  # delivered but still pending: sent again later
                log.warning("delivery to %s: ack failed: %s", self.sink_name, failure)
            self.stats.delivered += len(acked)
            self.stats.consecutive_failures = 0  # the sink took some: it is not down
        for entry in entries:
            if entry.entry_id in refused:
                await self._set_aside(entry, refused[entry.entry_id])
        return [e for e in entries if e.entry_id not in taken and e.entry_id not in refused]

    async def _sort_out(self, entries: list[OutboxEntry], claimed_at: float) -> float | None:
        """The sink refused a batch for what it holds: send its signals one by one, in
        order, parking each one refused, so one bad signal never stops the queue.

        The first signal is always tried unless the worker is stopping (so every
        round settles at least one); later ones only while an attempt would
        still end inside the claim's lease. What is left is given back
        and claimed again next round. A worker with a ``deadline`` goes on
        while stopping too, as long as a send fits before it: the AWS delivery
        function stops claiming at its budget, which a short timeout ends at
        the first claim, and a refused batch given back whole by every
        invocation never moved.
        """
        outbox = self.context.store.outbox
        last_start = claimed_at + self.lease.total_seconds() - self.deliver_timeout
        settled = 0
        try:
            for entry in entries:
                if not self._may_send_another(settled, last_start):
                    break
                try:
                    await self._attempt([entry])
                except DeliveryFailed as error:
                    if not error.rejected:
                        return await self._failed([e.entry_id for e in entries[settled:]], error)
                    reason = (error.refused or {}).get(entry.entry_id) or str(error)
                    await self._park(entry, reason)
                except Exception as error:
                    return await self._failed([e.entry_id for e in entries[settled:]], error)
                else:
                    await outbox.ack(self.sink_name, [entry.entry_id])
                    self.stats.delivered += 1
                settled += 1
        finally:
            rest = [entry.entry_id for entry in entries[settled:]]
            if rest and self._outstanding:  # stopped or out of time: claimable again now
                await outbox.release(self.sink_name, rest, retry_at=self.context.clock())
                self._outstanding = False
        self._outstanding = False
        self._retry_limit = None
        self._hold_until = None
        self.stats.batches += 1
        self.stats.consecutive_failures = 0
        self.stats.last_error = None
        return None

    async def _set_aside(self, entry: OutboxEntry, why: str) -> None:
        """Park an entry the sink refused in a batch it otherwise settled, after what it
        took is acknowledged: a park that fails (the store's trouble) is logged and undoes
        none of that. It stopped the settling: what the sink had taken was never
        acknowledged, and went again once the claim lapsed (on a standard queue or a bus,
        twice each). The entry stays claimed; once the claim lapses it is sent again,
        refused again and parked then."""
        try:
            await self._park(entry, why)
        except StoreError as error:
            log.warning(
                "delivery to %s: signal %s refused for good but not parked (sent again once "
                "its claim lapses): %s",
                self.sink_name,
                entry.signal.get("id"),
                error,
            )

    async def _park(self, entry: OutboxEntry, why: str) -> None:
        reason = secret_free(why or "refused")
        await self.context.store.outbox.park(
            self.sink_name, [entry.entry_id], reason=reason, now=self.context.clock()
        )
        self.stats.parked += 1
        log.warning(
            "delivery to %s: signal %s refused for good and parked (ucf outbox requeue "
            "sends it again): %s",
            self.sink_name,
            entry.signal.get("id"),
            reason,
        )

    def _may_send_another(self, settled: int, last_start: float) -> bool:
        """Whether :meth:`_sort_out` sends its next signal (``settled`` of them done)."""
        now = asyncio.get_running_loop().time()
        if settled and now > last_start:
            return False  # it could end past the claim's lease
        if self.deadline is not None:
            return self.deadline - now >= MIN_SEND_SECONDS
        return not self.stopping

    async def _attempt(self, entries: list[OutboxEntry]) -> None:
        timeout = self.deliver_timeout
        if self.deadline is not None:  # no send runs past it
            timeout = max(min(timeout, self.deadline - asyncio.get_running_loop().time()), 0.0)
        self._timeout = timeout
        deadline = SEND_DEADLINE.set(asyncio.get_running_loop().time() + timeout)
        try:
            async with asyncio.timeout(timeout):
                await self.sink.deliver(entries)
        finally:
            SEND_DEADLINE.reset(deadline)

    async def _acked(self, ids: list[str]) -> None:
        """Remove a delivered batch from the outbox, then count it.

        The ack runs to its end even when a stop cancels the worker meanwhile:
        otherwise the worker would not know its claim is gone and would leave the
        sink lease to lapse instead of handing it over (the cancellation is
        re-raised once the bookkeeping is done).
        """
        cancelled = False
        try:
            _, cancelled = await to_the_end(self.context.store.outbox.ack(self.sink_name, ids))
        except StoreError as error:
            # Delivered but still pending: redelivered after the lease (at least once).
            log.warning("delivery to %s: ack failed: %s", self.sink_name, error)
        else:
            self._outstanding = False
        self._retry_limit = None
        self._hold_until = None
        self.stats.delivered += len(ids)
        self.stats.batches += 1
        self.stats.consecutive_failures = 0
        self.stats.last_error = None
        if cancelled:
            raise asyncio.CancelledError

    async def _failed(self, ids: list[str], error: Exception) -> float:
        self.stats.failures += 1
        self.stats.consecutive_failures += 1
        if isinstance(error, TimeoutError):
            message = f"no answer within {self._timeout:g} s"
        else:
            message = str(error) or type(error).__name__
        message = secret_free(message)
        self.stats.last_error = message
        asked = error.retry_after if isinstance(error, DeliveryFailed) else None
        delay = self.backoff.delay(self.stats.consecutive_failures, asked)
        now = self.context.clock()
        retry_at = now + timedelta(seconds=delay)
        # Keep the sink until the batch is due again: nobody may claim after it before.
        self._hold_until = retry_at
        margin = self.lease
        if self._lease_until is None or self._lease_until < retry_at + margin:
            ttl = retry_at + margin - now
            if await self.context.store.leases.renew(self.lease_name, self.owner, ttl=ttl, now=now):
                self._lease_until = now + ttl
        await self.context.store.outbox.release(self.sink_name, ids, retry_at=retry_at)
        self._outstanding = False
        self._retry_limit = len(ids)  # retry the very same batch (same idempotency key)
        log.warning(
            "delivery of %d signal(s) to %s failed (%d in a row), retrying in %.1f s: %s",
            len(ids),
            self.sink_name,
            self.stats.consecutive_failures,
            delay,
            message,
        )
        return delay

    async def _settle_on_cancel(self, attempt: asyncio.Future[None], ids: list[str]) -> None:
        """Cancelled mid-batch: let it finish for ``stop_grace`` seconds, then give it back."""
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({attempt}, timeout=self.stop_grace)
        if not attempt.done():
            attempt.cancel()
            with contextlib.suppress(BaseException):
                await attempt
        try:
            if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
                await self._acked(ids)
            else:
                # Possibly received downstream already: a duplicate at worst.
                now = self.context.clock()
                await self.context.store.outbox.release(self.sink_name, ids, retry_at=now)
                self._outstanding = False
        except StoreError as error:
            log.warning("delivery to %s: could not settle on stop: %s", self.sink_name, error)

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless woken (a wake() during the last step counts too)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def _hand_over(self) -> None:
        """Release the sink lease if nothing of ours still hides or delays entries."""
        if self._lease_until is None:
            return
        now = self.context.clock()
        if self._outstanding:
            return  # the lease lapses on its own once the claim is over
        if self._hold_until is not None and self._hold_until > now:
            await self._hold_only_until(self._hold_until + self.lease, now)
            return
        try:
            await self.context.store.leases.release(self.lease_name, self.owner)
        except StoreError as error:
            log.warning("delivery to %s: could not hand over the sink: %s", self.sink_name, error)
        self._lease_until = None
        self.stats.active = False

    async def _hold_only_until(self, until: datetime, now: datetime) -> None:
        """Keep the sink until ``until`` (a failed batch due again, plus the lease: see
        :meth:`_failed`) and no longer: the lease was taken for twice the lease, which
        on AWS (72 s with the 36 s default) outlasts the next tick that should take
        over, so a sink outage was retried every other minute."""
        if self._lease_until is None or self._lease_until <= until:
            return
        try:
            if await self.context.store.leases.renew(
                self.lease_name, self.owner, ttl=until - now, now=now
            ):
                self._lease_until = until
        except StoreError as error:  # it lapses later on its own; nothing is lost
            log.warning(
                "delivery to %s: could not shorten the sink lease: %s", self.sink_name, error
            )


# --------------------------------------------------------------------------- wiring


class SinkFactory(Protocol):
    """Opens a sink from the settings, for a worker claiming batches with ``lease``
    (the HTTP sink sizes its timeouts to it: :func:`sink_http_settings`)."""

    def __call__(
        self, settings: Settings, *, lease: timedelta = DEFAULT_LEASE
    ) -> AbstractAsyncContextManager[Sink]: ...


_ACCEPTED_BODY_BYTES: Final = 64 * 1024
_ACCEPTED_BODY_SECONDS: Final = 1.0
_BODY_FRAMING: Final = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class _StatusIsTheAnswer(httpx.AsyncBaseTransport):
    """A 2xx from the pipeline means it took the batch (docs/pipeline.md), whatever follows.

    Under it, the capped, decoding transport would read the body of that answer
    and turn one it cannot read (cut short, not its ``Content-Encoding``, over
    the size cap, endless) into a failure: the batch, already taken, would be
    sent again at every retry, and the queue behind it would never move. So a
    2xx's body is only drained, raw and briefly (a small one frees the
    connection for the next batch), and handed up empty. Other answers pass
    through untouched: they are read and classified as before.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if not 200 <= response.status_code < 300:
            return response
        try:
            async with asyncio.timeout(_ACCEPTED_BODY_SECONDS):
                drained = 0
                assert isinstance(response.stream, httpx.AsyncByteStream)
                async for chunk in response.stream:
                    drained += len(chunk)
                    if drained > _ACCEPTED_BODY_BYTES:
                        break
        except (httpx.TransportError, TimeoutError):
            pass  # the answer was given: what is left of it does not matter
        finally:
            await response.aclose()
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in _BODY_FRAMING
        ]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=b"",
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextlib.asynccontextmanager
async def _jsonl_sink(
    settings: Settings, *, lease: timedelta = DEFAULT_LEASE
) -> AsyncIterator[Sink]:
    assert settings.jsonl_sink is not None
    yield JsonlFileSink(settings.jsonl_sink)


@contextlib.asynccontextmanager
async def _http_sink(
    settings: Settings, *, lease: timedelta = DEFAULT_LEASE
) -> AsyncIterator[Sink]:
    """The sink URL is the operator's own configuration, not user input, so it gets a
    plain client rather than the SSRF-guarded one: pipelines usually live on private
    addresses. Environment proxies are still ignored."""
    assert settings.http_sink is not None
    http = sink_http_settings(settings.http, lease)
    # The CA bundle loads while the first batch is read from the store (ucf.runtime.trust),
    # for an https sink: a plain-http one (a pipeline on a private address) never needs it.
    # The sockets, locks and events are asyncio's, as for upstream calls (no anyio backend).
    transport = BackgroundTrustTransport(
        trust_env=False,
        network_backend=AsyncioBackend(),
        load_now=not settings.http_sink.startswith("http://"),
    )
    capped = CappedTransport(_StatusIsTheAnswer(transport), http.max_response_bytes)
    async with httpx.AsyncClient(
        transport=capped,  # the same bounded decoding and size cap as every upstream call
        timeout=http.timeout(),
        headers={"User-Agent": http.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
        follow_redirects=False,
        trust_env=False,
    ) as client:
        yield HttpPostSink(
            settings.http_sink, client, settings=http, token=settings.http_sink_token
        )


@contextlib.asynccontextmanager
async def _sqs_sink(settings: Settings, *, lease: timedelta = DEFAULT_LEASE) -> AsyncIterator[Sink]:
    """boto3 is imported here, when an SQS sink is configured, not with this module."""
    from ucf.service.aws_sinks import sqs_sink

    assert settings.sqs_sink is not None
    sink = await asyncio.to_thread(sqs_sink, settings.sqs_sink)  # boto3 loads its models
    try:
        yield sink
    finally:
        sink.close()


@contextlib.asynccontextmanager
async def _eventbridge_sink(
    settings: Settings, *, lease: timedelta = DEFAULT_LEASE
) -> AsyncIterator[Sink]:
    from ucf.service.aws_sinks import eventbridge_sink

    bus = settings.eventbridge_sink
    assert bus is not None
    sink = await asyncio.to_thread(eventbridge_sink, bus, endpoint=settings.eventbridge_endpoint)
    try:
        yield sink
    finally:
        sink.close()


SINKS: Final[dict[str, SinkFactory]] = {
    "jsonl": _jsonl_sink,
    "http": _http_sink,
    "sqs": _sqs_sink,
    "eventbridge": _eventbridge_sink,
}
"""Sink name (as in ``Settings.sinks`` and the outbox) → how to build it."""


class SinkDelivery:
    """One configured sink's deliverer as a background service: ``run()`` until ``stop()``.

    Opens the sink (and its HTTP client) for as long as it runs. ``ucf serve``
    runs these next to the scheduler; :func:`start_delivery` runs them as tasks.
    """

    def __init__(
        self,
        context: UcfContext,
        sink_name: str,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        lease: timedelta = DEFAULT_LEASE,
        owner: str | None = None,
    ) -> None:
        if sink_name not in SINKS:
            raise ValueError(f"unknown sink {sink_name!r}; known: {', '.join(sorted(SINKS))}")
        if sink_name == "http" and context.settings.http_sink is not None:
            check_sink_url(context.settings.http_sink)  # fail at start-up, not in a task
        self.context = context
        self.sink_name = sink_name
        self._options = (batch_size, lease, owner)
        self._worker: DeliveryWorker | None = None
        self._stopped = False

    @property
    def stats(self) -> DeliveryStats | None:
        return None if self._worker is None else self._worker.stats

    async def run(self) -> None:
        batch_size, lease, owner = self._options
        async with SINKS[self.sink_name](self.context.settings, lease=lease) as sink:
            self._worker = DeliveryWorker(
                self.context, self.sink_name, sink, batch_size=batch_size, lease=lease, owner=owner
            )
            if self._stopped:
                return
            await self._worker.run()

    def stop(self) -> None:
        """Finish the batch in flight, hand the sink over, return from :meth:`run`."""
        self._stopped = True
        if self._worker is not None:
            self._worker.stop()

    def wake(self) -> None:
        """New signals were just stored: look now rather than at the next idle tick."""
        if self._worker is not None:
            self._worker.wake()


def delivery_services(
    context: UcfContext,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lease: timedelta = DEFAULT_LEASE,
    owner: str | None = None,
) -> list[SinkDelivery]:
    """One :class:`SinkDelivery` per configured sink (none when no sink is configured)."""
    return [
        SinkDelivery(context, name, batch_size=batch_size, lease=lease, owner=owner)
        for name in context.settings.sinks
    ]


def start_delivery(
    context: UcfContext,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lease: timedelta = DEFAULT_LEASE,
    owner: str | None = None,
) -> list[asyncio.Task[None]]:
    """The :func:`delivery_services` running as tasks on the current loop.

    Stop them with :func:`stop_delivery` before closing the context.
    """
    services = delivery_services(context, batch_size=batch_size, lease=lease, owner=owner)
    return [
        asyncio.create_task(service.run(), name=f"delivery:{service.sink_name}")
        for service in services
    ]


async def stop_delivery(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Stop the tasks of :func:`start_delivery`: batches in flight get their grace period."""
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            log.error("%s ended with %s", task.get_name(), type(result).__name__)


async def outbox_lag(context: UcfContext) -> dict[str, OutboxLag]:
    """Pending entries and the oldest one's age per configured sink (for ``/metrics``)."""
    now = context.clock()
    return {name: await context.store.outbox.lag(name, now=now) for name in context.settings.sinks}
