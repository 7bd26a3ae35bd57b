"""One poll of one connector instance, crash-safe: ``poll_instance``.

The order of writes is the whole guarantee (ARCHITECTURE "Delivery")::

    acquire lease poll:{project}:{connector}      (one poller per instance, any number of workers)
    load credentials and checkpoint (+ version)   (after the lease: a rotated refresh token is current)
    for each page:
        map → sanitise → insert new dedup keys + their outbox entries   (one atomic write)
        then compare-and-set the checkpoint to the page's safe value    (CAS fails: stop)
        (SQLite: both in one transaction, one commit per page; DynamoDB: two writes, in order)
    record health, release the lease

A crash before the ingest commits loses nothing (the checkpoint did not move,
the page is fetched again); a crash between ingest and CAS duplicates nothing
(the page is fetched again and every dedup key is already stored); the
checkpoint a page carries is one the polling engine declares safe once that
page is stored (see :mod:`ucf.runtime.delta`). ``tests/service/test_crash_safety.py``
kills a polling process at random points to prove it.

Rate limits: a descriptor's ``rateLimitRpm`` is the upstream's budget *per
credential*, and credentials belong to an instance, so each instance draws
from its own shared bucket ``rpm:{connector}:{project}`` in the store — every
worker and Lambda polling that instance takes from the same one. A health
check draws one token; a poll draws a few at a time where the budget is large
(:class:`StoreRateGate`, :func:`reserve_for_rpm`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from ucf.core.mapping import ItemError, MappingResult
from ucf.core.records import datarecord
from ucf.core.side_by_side import both
from ucf.runtime.auth import CredentialsChanged
from ucf.runtime.connection import connect
from ucf.runtime.delta import CheckpointInvalid
from ucf.runtime.health import HealthPolicy, Outcome, classify, outcome_of_success, secret_free
from ucf.runtime.http import (
    AuthFailed,
    RateLimited,
    UpstreamError,
    UpstreamUnavailable,
    expect_request,
)
from ucf.runtime.poll_schedule import DEFAULT_LEASE_TTL as DEFAULT_LEASE_TTL
from ucf.runtime.polling import ConfigError, NotPollable, Page, bucket_for_rpm
from ucf.runtime.sources import NativeSourceMissing, Source, SourceContext
from ucf.runtime.ssrf import EgressDenied
from ucf.service.connectors import Connector
from ucf.service.context import UcfContext
from ucf.service.ingest import IngestOutcome
from ucf.service.poll_lease import HeldLease as HeldLease
from ucf.service.poll_lease import lease_name as lease_name
from ucf.service.secret_turns import StoredCredentials
from ucf.service.worker_id import default_worker_id as default_worker_id
from ucf.stores.errors import NotFound
from ucf.stores.models import (
    Checkpoint,
    CheckpointMove,
    HealthState,
    InstanceRecord,
    RateDecision,
)
from ucf.stores.protocols import RateLimitStore
from ucf.stores.secrets.base import UNREADABLE_SECRET

__all__ = [
    "DEFAULT_LEASE_TTL",
    "HeldLease",
    "ItemProblem",
    "PageReport",
    "PollDeadlineExceeded",
    "PollJob",
    "PollResult",
    "PollStatus",
    "StartAt",
    "StoreRateGate",
    "default_worker_id",
    "fetch_ahead",
    "instance_context",
    "lease_name",
    "poll_instance",
    "poll_job",
    "poll_rate_gate",
    "rate_bucket",
    "rate_gate_for",
    "request_poll",
    "reserve_for_rpm",
    "rotation_writer",
]

log = logging.getLogger("ucf.poll")

BACKLOG_NOTE: Final = (
    "behind: maxPages ({pages} pages) reached with more waiting; the next poll goes on "
    "from where this one stopped"
)
"""``lastError`` of an instance whose poll was cut short (health ``degraded``)."""

MAX_ITEM_PROBLEMS: Final = 100
"""Per-item errors kept in a result; the count is always exact."""

PollStatus = Literal["ok", "failed", "skipped", "stopped", "conflict"]
"""``ok``: the poll ran to its last page. ``failed``: the upstream, the settings or
the credentials stopped it (see ``error``). ``skipped``: another worker holds the
lease, or the instance was not due. ``stopped``: shutdown asked it to stop after
a stored page. ``conflict``: someone else moved the checkpoint or took the lease."""

POLL_ERRORS: Final = (
    UpstreamError,
    EgressDenied,
    ConfigError,
    CheckpointInvalid,
    NotPollable,
    NativeSourceMissing,
)
"""What ends a poll as *failed* (the instance's fault or the upstream's). Store errors
are ucf's own trouble and propagate: they say nothing about the instance's health."""


def rate_bucket(project_id: str, connector_id: str) -> str:
    return f"rpm:{connector_id}:{project_id}"


# --------------------------------------------------------------------------- results


@datarecord
class ItemProblem:
    """An item that did not become a signal, and why (no item content, only its id)."""

    page: int
    index: int
    reason: str
    item_id: str | None = None


@datarecord
class PageReport:
    """One stored page, for progress lines and logs."""

    page: Page
    mapped: MappingResult
    ingested: IngestOutcome
    checkpoint: str | None


@datarecord
class PollResult:
    project_id: str
    connector_id: str
    status: PollStatus
    pages: int = 0
    items: int = 0
    inserted: int = 0
    duplicates: int = 0
    item_errors: int = 0
    problems: tuple[ItemProblem, ...] = ()
    """The first :data:`MAX_ITEM_PROBLEMS` per-item errors."""
    duration_seconds: float = 0.0
    rate_limit_waits: int = 0
    """Times the upstream throttled us (429 / rate-limit headers) and we waited."""
    rate_limit_wait_seconds: float = 0.0
    gate_wait_seconds: float = 0.0
    """Time spent pacing ourselves to the descriptor's ``rateLimitRpm``."""
    checkpoint: str | None = None
    """The stored checkpoint after this poll."""
    truncated: bool = False
    """The max-pages guard ended the poll while the API had more."""
    error: str | None = None
    """Secret-free, one line."""
    outcome: Outcome | None = None
    retry_after: float | None = None
    """Seconds the upstream asked us to stay away, when it said so."""
    latency_ms: float | None = None
    """Mean upstream response time of the poll's requests."""
    health: HealthState | None = None
    """The instance's health state after this poll was recorded."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "projectId": self.project_id,
            "connectorId": self.connector_id,
            "status": self.status,
            "pages": self.pages,
            "items": self.items,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "itemErrors": self.item_errors,
            "problems": [
                {"page": p.page, "index": p.index, "itemId": p.item_id, "reason": p.reason}
                for p in self.problems
            ],
            "durationSeconds": round(self.duration_seconds, 3),
            "rateLimitWaits": self.rate_limit_waits,
            "rateLimitWaitSeconds": round(self.rate_limit_wait_seconds, 3),
            "gateWaitSeconds": round(self.gate_wait_seconds, 3),
            "checkpoint": self.checkpoint,
            "truncated": self.truncated,
            "error": self.error,
            "latencyMs": None if self.latency_ms is None else round(self.latency_ms, 1),
            "health": self.health,
        }


@datarecord(frozen=False)
class _Tally:
    """Counters of a poll in progress."""

    pages: int = 0
    items: int = 0
    inserted: int = 0
    duplicates: int = 0
    item_errors: int = 0
    problems: list[ItemProblem] = field(default_factory=list)
    rate_limit_waits: int = 0
    rate_limit_wait_seconds: float = 0.0
    gate_wait_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    truncated: bool = False

    def add(self, page: Page, mapped: MappingResult, ingested: IngestOutcome) -> None:
        self.pages += 1
        self.items += len(page.items)
        self.inserted += ingested.inserted
        self.duplicates += ingested.duplicates
        self.item_errors += len(mapped.errors)
        room = MAX_ITEM_PROBLEMS - len(self.problems)
        self.problems += [_problem(page.number, e) for e in mapped.errors[: max(room, 0)]]
        self.rate_limit_waits += page.rate_limit_waits
        self.rate_limit_wait_seconds += page.rate_limit_wait_seconds
        self.gate_wait_seconds += page.gate_wait_seconds
        self.elapsed_seconds += page.elapsed_seconds
        self.truncated = page.truncated

    @property
    def latency_ms(self) -> float | None:
        return self.elapsed_seconds * 1000 / self.pages if self.pages else None


def _problem(page: int, error: ItemError) -> ItemProblem:
    return ItemProblem(page=page, index=error.index, reason=error.reason, item_id=error.item_id)


# --------------------------------------------------------------------------- rate gate


RESERVE_SHARE: Final = 20
"""A poll draws at most this fraction of its bucket's burst ahead (1/20: 5 %)."""
MAX_RESERVE: Final = 32
"""Tokens a poll draws at once at most, whatever its ``rateLimitRpm``."""
RESERVE_HOLD: Final = timedelta(seconds=1)
"""Tokens drawn ahead and not used within this time are dropped, never returned."""


def reserve_for_rpm(rpm: int) -> int:
    """Tokens a poll draws from the shared bucket at once: 1 below 240 rpm (every
    request draws its own, the first one's beside the poll's reads:
    :meth:`StoreRateGate.draw_ahead`), then 1/20 of the ten-second burst, at most 32."""
    capacity, _ = bucket_for_rpm(rpm)
    return max(1, min(MAX_RESERVE, int(capacity // RESERVE_SHARE)))


class StoreRateGate:
    """``rateLimitRpm`` as a token bucket in the store: every worker draws from one budget.

    Implements :class:`ucf.runtime.polling.RateGate`. The bucket is the
    engine's (:func:`~ucf.runtime.polling.bucket_for_rpm`): ten seconds' worth of
    burst, then ``rpm / 60`` per second.

    ``reserve`` > 1 (a poll's gate, :func:`reserve_for_rpm`) draws that many
    tokens in one store write while the bucket has them, and spends them on the
    next requests: one write per ``reserve`` requests instead of one each (on
    SQLite the draw waits behind the page being committed, on DynamoDB it is a
    read and a conditional write). Every request still spends a token taken from
    the shared bucket, so all workers together never take more than it grants;
    what changes is *when* a token is spent: up to :data:`RESERVE_HOLD` after it
    was drawn (unused ones are then dropped, not returned). Any stretch of time
    can therefore see at most ``reserve`` more requests from one poll than the
    bucket alone would allow (5 % of its burst; one poll per instance runs at a
    time, under its lease): ``reserve - 1`` left over from a request's own draw,
    or all ``reserve`` drawn ahead of the first request (:meth:`draw_ahead`; with
    ``reserve`` 1, that one token). When the bucket holds fewer than ``reserve``
    tokens, the gate draws one at a time, exactly as with ``reserve`` 1.

    One reserve draw at a time: a native source may send requests side by side
    through its one gate (Asana's fetches a page's tasks eight at a time), and
    requests that find the reserve empty while a draw is in flight wait for it
    and spend what it brings. Each drawing for itself would take ``reserve``
    tokens from the shared bucket per request in flight and keep only the last
    draw's: the rest counted against every worker's budget, and spent by none.
    """

    def __init__(
        self,
        buckets: RateLimitStore,
        key: str,
        rpm: int,
        *,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        reserve: int = 1,
    ) -> None:
        self._buckets = buckets
        self._key = key
        self._capacity, self._refill = bucket_for_rpm(rpm)
        self._clock = clock
        self._sleep = sleep
        self._reserve = reserve
        self._drawing = asyncio.Lock()
        self._held = 0
        self._held_until = self._reserve_from = datetime.min.replace(tzinfo=UTC)

    async def acquire(self) -> float:
        if self._spend_held():
            return 0.0
        if self._reserve > 1:
            async with self._drawing:  # one reserve draw at a time (see the class)
                if self._spend_held() or await self._draw_reserve():
                    return 0.0
        waited = 0.0
        while True:
            delay = await self._draw()
            if delay is None:
                return waited
            await self._sleep(delay)
            waited += delay

    async def acquire_within(self, seconds: float) -> bool:
        """A token if one comes within ``seconds`` of waiting; False when the budget
        stays spent that long (known at once from the bucket's refill time).

        Never gives up in the middle of a draw, as a timeout around :meth:`acquire`
        would: the store may have granted the token just as the timeout cancelled
        the call, and the caller would report the budget spent while the token it
        was given went to waste.
        """
        if self._spend_held():
            return True
        waited = 0.0
        while True:
            delay = await self._draw()
            if delay is None:
                return True
            if waited + delay > seconds:
                return False
            await self._sleep(delay)
            waited += delay

    async def draw_ahead(self) -> None:
        """Draw the first request's token now, before the request is ready: a reserve's
        worth where this gate draws reserves, one token otherwise.

        A poll draws it beside its credentials' and checkpoint's reads
        (:func:`poll_instance`): on DynamoDB the draw is a read and a conditional
        write, two round trips the first request otherwise waited for after those
        reads. What is drawn is held as a reserve is, for at most
        :data:`RESERVE_HOLD`: only the moment a token is spent moves, so a stretch
        of time may see one request more than with the token drawn at the request
        (the class's bound counts it). An empty bucket is not waited for here (nothing is drawn;
        the first request waits for its token as before), and a token drawn for a
        poll that then fails before its first request is dropped, never returned. A
        reserve the bucket refuses is not tried again before it could fit, as in
        :meth:`_draw_reserve`.
        """
        if self._held and self._clock() < self._held_until:
            return
        async with self._drawing:
            now = self._clock()
            tokens = self._reserve if self._reserve > 1 and now >= self._reserve_from else 1
            decision = await self._take(tokens, now)
            if decision.allowed:
                self._held, self._held_until = tokens, now + RESERVE_HOLD
            elif tokens > 1:
                self._reserve_from = self._retry_reserve_at(decision, now)

    def _spend_held(self) -> bool:
        """One of the tokens drawn ahead, if one is left and still fresh."""
        if self._held and self._clock() < self._held_until:
            self._held -= 1
            return True
        self._held = 0
        return False

    async def _draw_reserve(self) -> bool:
        """``reserve`` tokens in one draw, one of them for this request; False (nothing
        taken) when the bucket has fewer (then not tried again before it could have
        refilled that many: a throttled poll makes one draw per request, as before),
        or when this gate draws singly."""
        now = self._clock()
        if self._reserve <= 1 or now < self._reserve_from:
            return False
        decision = await self._take(self._reserve, now)
        if not decision.allowed:  # single draws until the bucket could hold a reserve again
            self._reserve_from = self._retry_reserve_at(decision, now)
            return False
        self._held, self._held_until = self._reserve - 1, now + RESERVE_HOLD
        return True

    @staticmethod
    def _retry_reserve_at(refused: RateDecision, now: datetime) -> datetime:
        """When a reserve the bucket refused could fit again (single draws until then)."""
        return now + timedelta(seconds=min(refused.retry_after_seconds, 60))

    async def _draw(self) -> float | None:
        """One token now (None), or how long to wait before the next try."""
        decision = await self._take(1, self._clock())
        if decision.allowed:
            return None
        return min(max(decision.retry_after_seconds, 0.005), 60.0)

    async def _take(self, tokens: int, now: datetime) -> RateDecision:
        return await self._buckets.try_acquire(
            self._key,
            capacity=self._capacity,
            refill_per_second=self._refill,
            now=now,
            cost=tokens,
        )


def rate_gate_for(
    context: UcfContext, project_id: str, connector: Connector, *, for_poll: bool = False
) -> StoreRateGate | None:
    """The instance's ``rateLimitRpm`` budget, shared by its polls and health checks.

    This gate draws one token per request; a poll's (:func:`poll_rate_gate`) draws a
    few at a time (:func:`reserve_for_rpm`; the guarantee is :class:`StoreRateGate`'s).
    """
    schedule = connector.schedule
    if schedule is None:
        return None
    rpm = schedule.rate_limit_rpm
    return StoreRateGate(
        context.store.rate_limits,
        rate_bucket(project_id, connector.id),
        rpm,
        clock=context.clock,
        reserve=reserve_for_rpm(rpm) if for_poll else 1,
    )


def poll_rate_gate(
    context: UcfContext, project_id: str, connector: Connector
) -> StoreRateGate | None:
    """The same budget for a poll's many requests, drawn a few tokens at a time."""
    return rate_gate_for(context, project_id, connector, for_poll=True)


def instance_context(
    context: UcfContext,
    connector: Connector,
    *,
    credentials: Mapping[str, str],
    config: Mapping[str, str],
    on_rotate: CredentialsChanged | None,
    rate_gate: StoreRateGate | None = None,
) -> SourceContext:
    """An instance's upstream context inside the service: the process's HTTP client
    and settings, the store's clock (see :func:`ucf.runtime.connection.connect`)."""
    return connect(
        connector.source,
        credentials=credentials,
        config=config,
        client=context.http,
        settings=context.settings.http,
        on_rotate=on_rotate,
        rate_gate=rate_gate,
        now=context.clock,
    )


# --------------------------------------------------------------------------- lease


@contextlib.asynccontextmanager
async def _leased(
    context: UcfContext,
    project_id: str,
    connector_id: str,
    owner: str,
    ttl: timedelta,
    taken: HeldLease | None = None,
) -> AsyncIterator[HeldLease | None]:
    """The instance's poll lease, or None when another worker holds it. ``taken``: the
    caller already tried for it (:func:`poll_instance`); released here all the same."""
    if taken is not None:
        lease = taken
        acquired = lease.held
    else:
        lease = HeldLease(
            context.store.leases, lease_name(project_id, connector_id), owner, ttl, context.clock
        )
        acquired = await lease.acquire()
    if not acquired:
        yield None
        return
    try:
        yield lease
    finally:
        await asyncio.shield(lease.release())


# --------------------------------------------------------------------------- poll requests


async def request_poll(
    context: UcfContext, project_id: str, connector_id: str, *, reason: str
) -> None:
    """Make the instance due now on every worker: its ``pollRequestedAt`` in the store.

    The scheduler's :func:`~ucf.service.scheduler.due_at` reads it like any other
    field, so whichever worker (or Lambda tick) looks next polls the instance;
    the poll that starts clears the request it saw (:func:`poll_instance`), and a
    request made while it runs stays for one more poll. Many requests before a
    poll starts make one poll.
    """
    try:
        await context.store.instances.request_poll(project_id, connector_id, at=context.clock())
    except NotFound:  # disconnected meanwhile: nothing left to poll
        return
    log.info("poll of %s/%s requested: %s", project_id, connector_id, reason)


# --------------------------------------------------------------------------- the job


@datarecord(slots=False)
class PollJob:
    """What one poll runs: a connector, for a project, with settings and credentials.

    ``credential_ref`` is where rotated OAuth tokens are written back; None when
    the credentials did not come from the secret store (``ucf poll`` flags).
    """

    project_id: str
    connector: Connector
    config: Mapping[str, str]
    credentials: Mapping[str, str]
    credential_ref: str | None = None

    @property
    def connector_id(self) -> str:
        return self.connector.id


@datarecord
class StartAt:
    """Start a poll here instead of at the stored checkpoint (None: the initial window)."""

    checkpoint: str | None


def _as_checkpoint(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise CheckpointInvalid(f"stored checkpoint {value!r} is not text")


def rotation_writer(context: UcfContext, ref: str | None) -> StoredCredentials | None:
    """Persists rotated OAuth credentials before they are used (the old refresh token is
    dead), and lets a refresh take another run's newer token (a ``CredentialKeeper``)."""
    if ref is None:
        return None
    return StoredCredentials(context.secret_turns, context.secrets, ref)


def _outcome_of(error: BaseException) -> Outcome:
    if isinstance(error, AuthFailed):
        return Outcome.REJECTED
    if isinstance(error, RateLimited):
        return Outcome.RATE_LIMITED
    return Outcome.FAILED


class PollDeadlineExceeded(UpstreamUnavailable):
    """The poll ran past ``UCF_POLL_TIMEOUT``: the pages stored so far are kept, the
    next poll goes on from the stored checkpoint."""


async def fetch_ahead(
    pages: AsyncIterator[Page], *, deadline: float | None = None, limit: str = "UCF_POLL_TIMEOUT"
) -> AsyncGenerator[Page, None]:
    """``pages``, with the next one fetched while the current one is being stored.

    The upstream's response time then hides behind mapping, sanitising and the
    store write, instead of adding to them. Nothing about safety changes: pages
    are still stored one at a time, in order, each before its checkpoint moves;
    a page fetched ahead but never stored (shutdown, a failure) is fetched again
    by the next poll. Upstream errors surface once the pages before them are stored.

    ``deadline`` (seconds) bounds the fetching side: past it the request in
    flight is abandoned and :class:`PollDeadlineExceeded` follows the pages
    already fetched. Only fetching is cancelled, never a store write, so a
    slow upstream cannot hold the poll's slot and cannot leave half a page stored.
    ``limit`` names what set the deadline, for the error.
    """
    queue: asyncio.Queue[Page | Exception | None] = asyncio.Queue(maxsize=1)

    async def produce() -> None:
        scope = asyncio.timeout(deadline)
        fetched = 0
        try:
            async with scope:
                async for page in pages:
                    fetched += 1
                    await queue.put(page)
            await queue.put(None)
        except Exception as error:  # handed to the consumer, in order
            if isinstance(error, TimeoutError) and scope.expired():
                error = PollDeadlineExceeded(
                    f"poll stopped at its {deadline:g} s deadline ({limit}) after"
                    f" {fetched} page(s); stored pages are kept and the next poll goes on"
                    " from the checkpoint"
                )
            await queue.put(error)

    producer = asyncio.create_task(produce(), name="fetch ahead")
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
        close = getattr(pages, "aclose", None)  # stop the request loop of a generator
        if close is not None:
            await close()


NORMALISE_SLICE: Final = 256
"""Items mapped between two turns of the event loop."""


async def normalise_in_slices(
    source: Source, items: list[Any], project_id: str, now: datetime
) -> MappingResult:
    """``source.normalise`` over a page, a slice at a time, handing the event loop back
    between slices: mapping tens of thousands of items at once held the webhook gateway
    and /healthz for seconds. Item errors keep their index in the page."""
    if len(items) <= NORMALISE_SLICE:
        return source.normalise(items, project_id=project_id, now=now)
    result = MappingResult()
    for start in range(0, len(items), NORMALISE_SLICE):
        part = source.normalise(
            items[start : start + NORMALISE_SLICE], project_id=project_id, now=now
        )
        result.signals += part.signals
        result.errors += [dataclasses.replace(e, index=e.index + start) for e in part.errors]
        result.skipped += part.skipped
        await asyncio.sleep(0)
    return result


PageHook = Callable[[PageReport], None]


@datarecord
class _Stored:
    page: Page
    mapped: MappingResult
    ingested: IngestOutcome
    moved: bool
    """False when another poller had moved the checkpoint (the signals are stored all the same)."""


async def _store_page(
    context: UcfContext,
    job: PollJob,
    page: Page,
    mapped: MappingResult,
    *,
    received: datetime,
    current: str | None,
    version: int,
) -> _Stored:
    """One page's signals and outbox entries, then (never before) its checkpoint: one
    transaction on SQLite, one commit per page; two writes in that order on DynamoDB."""
    move = None
    if page.checkpoint != current:
        move = CheckpointMove(job.project_id, job.connector_id, version, page.checkpoint, received)
    ingested = await context.ingestor.ingest(
        mapped.signals,
        project_id=job.project_id,
        connector_id=job.connector_id,
        received_at=received,
        checkpoint=move,
    )
    return _Stored(page, mapped, ingested, ingested.checkpoint_moved is not False)


HAND_OVER_TURNS: Final = 2
"""Turns of the event loop a page's store task needs to reach the store's thread: its
first step (sanitising the page, queueing the write) and the store's committer (handing
the queued write to the thread; on SQLite the loop waits there while the page's
statements run, so that only the commit is left to overlap the next page's mapping)."""


async def _hand_over(store: asyncio.Task[_Stored]) -> None:
    """Let a page's store task hand its write to the store's thread before the page loop
    maps the next page.

    The page loop does not otherwise give the event loop a turn between starting a
    page's store task and mapping the next page (that page is usually fetched
    already), so the write reached the store's thread only once the loop waited for
    it: mapping and storing took turns instead of overlapping.
    """
    for _ in range(HAND_OVER_TURNS):
        if store.done():
            return
        await asyncio.sleep(0)


async def _run(
    context: UcfContext,
    job: PollJob,
    lease: HeldLease,
    *,
    start_at: StartAt | None,
    max_pages: int | None,
    stop: asyncio.Event | None,
    on_page: PageHook | None,
    started: float,
    checkpoint: Checkpoint | None = None,
    fetch_until: float | None = None,
    rate_gate: StoreRateGate | None = None,
) -> PollResult:
    """The page loop, under a held lease: ingest, then CAS, page after page.

    ``checkpoint`` is the stored one when the caller read it under this lease
    (beside the credentials: :func:`poll_instance`); otherwise it is read here.
    ``fetch_until`` (the event loop's time) ends the fetching sooner than
    ``UCF_POLL_TIMEOUT`` would (:func:`poll_instance`). ``rate_gate`` is the
    instance's (:func:`poll_rate_gate`) when the caller has drawn from it already.
    """
    store = context.store
    project_id, connector_id = job.project_id, job.connector_id
    tally = _Tally()
    stored = (
        checkpoint
        if checkpoint is not None
        else await store.checkpoints.get(project_id, connector_id)
    )
    version = stored.version
    current: str | None = None
    status: PollStatus = "ok"
    error: str | None = None
    outcome: Outcome | None = None
    retry_after: float | None = None
    try:
        current = _as_checkpoint(stored.value)
        source = job.connector.source
        if source.schedule is None:
            raise NotPollable(f"{connector_id} receives webhooks only; there is nothing to poll")
        source_context = instance_context(
            context,
            job.connector,
            credentials=job.credentials,
            config=job.config,
            on_rotate=rotation_writer(context, job.credential_ref),
            rate_gate=rate_gate or poll_rate_gate(context, project_id, job.connector),
        )
        begin = current if start_at is None else start_at.checkpoint
        fetched = source.fetch_delta(
            source_context, begin, now=context.clock(), max_pages=max_pages
        )
        # Two stages: while one page is being stored (the store's thread, mostly
        # waiting on SQLite or the network), the next is fetched and mapped here.
        # Storing stays strictly in order, one page at a time, each page's
        # signals before its checkpoint: a page mapped ahead but never stored is
        # simply fetched again by the next poll.
        in_flight: asyncio.Task[_Stored] | None = None

        async def settle() -> bool:
            """Wait for the page being stored; whether the poll may go on."""
            nonlocal in_flight, version, current, status, error
            assert in_flight is not None
            stored_page, in_flight = await in_flight, None
            tally.add(stored_page.page, stored_page.mapped, stored_page.ingested)
            if not stored_page.moved:
                status = "conflict"
                error = "the checkpoint was moved by another poller; stopped"
                return False
            if stored_page.page.checkpoint != current:
                version += 1
                current = stored_page.page.checkpoint
            if on_page is not None:
                on_page(
                    PageReport(stored_page.page, stored_page.mapped, stored_page.ingested, current)
                )
            if stop is not None and stop.is_set() and not stored_page.page.last:
                status = "stopped"
                return False
            return True

        try:
            deadline = context.settings.poll_timeout.total_seconds()
            limit = "UCF_POLL_TIMEOUT"
            if fetch_until is not None:
                left = max(fetch_until - asyncio.get_running_loop().time(), 0.0)
                if left < deadline:
                    deadline, limit = left, "the time its invocation has left"
            async with contextlib.aclosing(
                fetch_ahead(fetched, deadline=deadline, limit=limit)
            ) as pages:
                async for page in pages:
                    received = context.clock()
                    mapped = await normalise_in_slices(source, page.items, project_id, received)
                    if in_flight is not None and not await settle():
                        break
                    if lease.lost:
                        status, error = "conflict", "another worker took over this instance's lease"
                        break
                    in_flight = asyncio.create_task(
                        _store_page(
                            context,
                            job,
                            page,
                            mapped,
                            received=received,
                            current=current,
                            version=version,
                        )
                    )
                    await _hand_over(in_flight)
        finally:
            if in_flight is not None:  # the last page, or the one before a failure
                await settle()
    except POLL_ERRORS as failure:
        status = "failed"
        outcome = _outcome_of(failure)
        error = secret_free(str(failure) or type(failure).__name__, tuple(job.credentials.values()))
        if isinstance(failure, UpstreamError):
            retry_after = failure.retry_after
    return PollResult(
        project_id=project_id,
        connector_id=connector_id,
        status=status,
        pages=tally.pages,
        items=tally.items,
        inserted=tally.inserted,
        duplicates=tally.duplicates,
        item_errors=tally.item_errors,
        problems=tuple(tally.problems),
        duration_seconds=time.perf_counter() - started,
        rate_limit_waits=tally.rate_limit_waits,
        rate_limit_wait_seconds=tally.rate_limit_wait_seconds,
        gate_wait_seconds=tally.gate_wait_seconds,
        checkpoint=current,
        truncated=tally.truncated,
        error=error,
        outcome=outcome,
        retry_after=retry_after,
        latency_ms=tally.latency_ms,
    )


def _skipped(project_id: str, connector_id: str, reason: str, started: float) -> PollResult:
    return PollResult(
        project_id,
        connector_id,
        "skipped",
        error=reason,
        duration_seconds=time.perf_counter() - started,
    )


async def poll_job(
    context: UcfContext,
    job: PollJob,
    *,
    owner: str | None = None,
    start_at: StartAt | None = None,
    max_pages: int | None = None,
    stop: asyncio.Event | None = None,
    on_page: PageHook | None = None,
    lease_ttl: timedelta = DEFAULT_LEASE_TTL,
) -> PollResult:
    """Poll a connector that need not be a stored instance (``ucf poll --store``).

    Signals and the checkpoint go to the store exactly as for an instance, under
    the same lease; health is not recorded (there may be no instance to record
    it on). ``start_at`` overrides where the poll starts (the CAS still guards
    the stored checkpoint).
    """
    started = time.perf_counter()
    owner = owner or default_worker_id()
    async with _leased(context, job.project_id, job.connector_id, owner, lease_ttl) as lease:
        if lease is None:
            return _skipped(
                job.project_id, job.connector_id, "another worker is polling it", started
            )
        return await _run(
            context,
            job,
            lease,
            start_at=start_at,
            max_pages=max_pages,
            stop=stop,
            on_page=on_page,
            started=started,
        )


async def poll_instance(
    context: UcfContext,
    project_id: str,
    connector_id: str,
    *,
    owner: str | None = None,
    policy: HealthPolicy | None = None,
    max_pages: int | None = None,
    stop: asyncio.Event | None = None,
    on_page: PageHook | None = None,
    lease_ttl: timedelta = DEFAULT_LEASE_TTL,
    should_poll: Callable[[InstanceRecord], bool] | None = None,
    connector: Connector | None = None,
    fetch_until: float | None = None,
    lease: HeldLease | None = None,
) -> PollResult:
    """Poll one configured instance, store its new signals, advance its checkpoint.

    ``should_poll`` is asked again on the instance as read under the lease (the
    scheduler passes "still due", so a worker that lost the race to another one
    does not poll right after it). Every completed or failed poll is recorded
    in the instance's health before the lease is released. ``connector`` is
    the instance's, when the caller has just read it to decide what is due (the
    scheduler, the AWS poll worker): it is not read again, here nor for the
    credentials (on AWS two GetItems fewer per poll: ``bench/coldstart.py``).
    ``fetch_until`` (the event loop's time) is when fetching must be over whatever
    ``UCF_POLL_TIMEOUT`` says: a Lambda's deadline, which a slow upstream must not
    outlast (the whole invocation would be cut off, every poll of its batch with it).
    ``lease`` is the instance's poll lease when the caller has already tried for it
    (:meth:`HeldLease.acquire`; the AWS poll worker takes it beside its connector
    read): not taken again, and released here as one taken here is. Not held, the
    poll is skipped as when another worker holds it.
    """
    started = time.perf_counter()
    owner = owner or default_worker_id()
    policy = policy or HealthPolicy()
    async with _leased(context, project_id, connector_id, owner, lease_ttl, lease) as lease:
        if lease is None:
            return _skipped(project_id, connector_id, "another worker is polling it", started)
        record = await context.instances.record(project_id, connector_id)
        if should_poll is not None and not should_poll(record):
            return _skipped(project_id, connector_id, "not due", started)
        # An https upstream's CA bundle loads (on a thread) while the credentials and
        # the checkpoint are read; a plain-http one (baseUrl) never needs it.
        base_url = record.config.get("baseUrl")
        expect_request(context.http, base_url if isinstance(base_url, str) else "")
        if record.poll_requested_at is not None:  # this poll answers it; a later one stays
            await context.store.instances.clear_poll_request(
                project_id, connector_id, up_to=record.poll_requested_at
            )
        if connector is None:
            connector = await context.connectors.get(connector_id)
        # None depends on another: on AWS a GetSecretValue (and the registered OAuth
        # app's GetItem) beside the checkpoint's GetItem and the first request's token
        # (the rate bucket's read and write), rather than one after the other.
        gate = poll_rate_gate(context, project_id, connector)
        try:
            credentials, checkpoint = await both(
                context.instances.credentials(record, connector),
                _beside(
                    context.store.checkpoints.get(project_id, connector_id),
                    None if gate is None else gate.draw_ahead(),
                ),
            )
        except UNREADABLE_SECRET as error:
            # The instance's trouble, not the store's: recorded in its health (which the
            # instance list shows), as the AWS poll worker does, rather than only logged.
            result = PollResult(
                project_id,
                connector_id,
                "failed",
                error=secret_free(str(error)),
                outcome=Outcome.FAILED,
                duration_seconds=time.perf_counter() - started,
            )
        else:
            job = PollJob(
                project_id=project_id,
                connector=connector,
                config={key: str(value) for key, value in record.config.items()},
                credentials=credentials,
                credential_ref=record.credential_secret_ref,
            )
            result = await _run(
                context,
                job,
                lease,
                start_at=None,
                max_pages=max_pages,
                stop=stop,
                on_page=on_page,
                started=started,
                checkpoint=checkpoint,
                fetch_until=fetch_until,
                rate_gate=gate,
            )
        health = await _record_health(context, result, policy)
    return _with_health(result, health)


async def _beside(read: Awaitable[Checkpoint], draw: Awaitable[None] | None) -> Checkpoint:
    """``read``'s result, ``draw`` run beside it (:func:`ucf.core.side_by_side.both`)."""
    if draw is None:
        return await read
    checkpoint, _ = await both(read, draw)
    return checkpoint


async def _record_health(
    context: UcfContext, result: PollResult, policy: HealthPolicy
) -> HealthState | None:
    """Feed the instance's health state machine with a completed or failed poll."""
    at = context.clock()
    if result.status == "ok":
        latency = result.latency_ms or 0.0
        outcome = outcome_of_success(
            latency_ms=latency,
            throttled=result.rate_limit_waits > 0,
            policy=policy,
            truncated=result.truncated,
        )
        observation = classify(
            outcome,
            at=at,
            policy=policy,
            latency_ms=result.latency_ms,
            synced=True,
            error=BACKLOG_NOTE.format(pages=result.pages) if result.truncated else None,
        )
    elif result.status == "failed" and result.outcome is not None:
        observation = classify(
            result.outcome,
            at=at,
            policy=policy,
            latency_ms=result.latency_ms,
            error=result.error,
        )
    else:
        return None
    try:
        record = await context.store.instances.record_health(
            result.project_id, result.connector_id, observation
        )
    except NotFound:  # disconnected while we polled: nothing left to report on
        return None
    return record.health_state


def _with_health(result: PollResult, health: HealthState | None) -> PollResult:
    return result if health is None else dataclasses.replace(result, health=health)
