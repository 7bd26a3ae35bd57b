"""The poll scheduler: every enabled instance, at its interval, by any number of workers.

``ucf worker`` runs it standalone and ``ucf serve`` in-process; both are the
same :class:`Scheduler`. What it guarantees:

- **Interval with jitter.** An instance is due ``intervalSeconds`` after its
  last successful poll, plus a stable per-instance jitter of up to
  ``jitter_ratio`` of the interval, so instances sharing an interval spread
  out instead of firing together (and every worker computes the same time).
- **Bounded concurrency.** At most ``concurrency`` polls run at once per worker.
- **One poller per instance.** Polls run under the instance's lease (see
  :func:`ucf.service.poll.poll_instance`), and an instance is checked to be
  still due once the lease is held, so two workers never poll it at once and
  the loser of a race does not poll again right after the winner.
- **Backoff.** A failing instance waits ``interval × 2^(failures-1)`` after its
  last attempt, capped (:func:`ucf.runtime.health.retry_delay`); refused
  credentials wait the cap at once; an upstream's ``Retry-After`` is honoured;
  changing an instance's settings makes it due at once.
- **Requested polls.** A webhook handler that learns deliveries were lost
  (Graph's ``missed``) calls :func:`ucf.service.poll.request_poll`: the
  instance's ``pollRequestedAt`` makes it due on every worker at its next look
  (at once in the process that received it: :meth:`Scheduler.wake`).
- **Graceful shutdown.** :meth:`Scheduler.stop` (SIGTERM/SIGINT in ``ucf
  worker``) launches nothing new and asks running polls to stop after the page
  they are storing; whatever is still running after ``shutdown_grace`` is
  cancelled. Neither can leave a half-written page: a page's signals are one
  atomic write and the checkpoint moves only after it.
- **Retention.** Expired signals are purged every ``purge_every``.
- **Secrets.** Once a day, webhook secrets only earlier versions of a connector
  verified with are deleted past their retention (30 days after the edit), and
  a catalogue upgrade's work on its instances that failed is done again. Every
  ten minutes (every tick on AWS, one Query when nothing is due), the short-lived
  secrets of OAuth consents abandoned or setup tickets never redeemed are
  deleted past their deadline (:mod:`ucf.service.short_secrets`).
- **Upkeep.** Sources with a ``maintain`` hook (Outlook's Graph subscription)
  get it called for each enabled instance soon after it appears, then at most
  every ``MAINTENANCE_EVERY`` seconds, in the background of the loop, under
  the instance's maintenance lease so two workers never do it at once
  (:mod:`ucf.service.maintenance`).
- **Fresh health for instances that do not poll.** Every poll is a health
  check; an instance that only receives webhooks gets its descriptor's health
  check (Test Connection, recorded) once it has had neither a check nor a
  verified delivery for ``idle_check_after`` (:func:`check_due_at`), so its
  health never stays "healthy" on the strength of an old observation.

All state that matters lives in the store (last sync, failures, leases); the
in-memory ``not_before`` only adds an upstream's ``Retry-After`` and must not
be needed for correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import zlib
from collections.abc import Callable
from dataclasses import field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from ucf.core.records import datarecord
from ucf.runtime.health import HealthPolicy, Outcome, retry_delay
from ucf.runtime.poll_schedule import DEFAULT_LEASE_TTL
from ucf.service.connectors import Connector
from ucf.service.context import UcfContext
from ucf.service.errors import NotFoundError
from ucf.stores.models import InstanceRecord

if TYPE_CHECKING:
    from ucf.service.poll import PollResult

# Polling, health checks and upkeep (with the HTTP stack, the mapping engine and the
# sources) are imported when the scheduler first runs one: deciding what is due needs
# none of them, and the AWS schedule function only decides (bench/coldstart.py).

__all__ = ["SchedulePolicy", "Scheduler", "check_due_at", "due_at"]

log = logging.getLogger("ucf.scheduler")

NEVER: Final = datetime.max.replace(tzinfo=UTC)
LONG_AGO: Final = datetime.min.replace(tzinfo=UTC)
ERROR_PAUSE: Final = timedelta(seconds=60)
"""How long an instance rests after a poll crashed on ucf's own side (a store error)."""
RETIRE_EVERY: Final = timedelta(days=1)
"""How often retired webhook secrets are looked for (:meth:`Scheduler.retire_webhook_secrets`)."""
RETIRED_KEY: Final = "retired-webhook-secrets"
SECRET_SWEEP_EVERY: Final = timedelta(minutes=10)
"""How often a long-lived scheduler looks for short-lived secrets past their time
(:meth:`Scheduler.delete_abandoned_secrets`); one that lives a tick looks each tick."""


@datarecord
class SchedulePolicy:
    jitter_ratio: float = 0.1
    rescan_seconds: float = 15.0
    """Longest sleep between looks at the instance list (new instances, other workers)."""
    purge_every: timedelta = timedelta(hours=1)
    shutdown_grace: float = 20.0
    """Seconds running polls get to store their current page after stop()."""
    lease_ttl: timedelta = DEFAULT_LEASE_TTL
    health: HealthPolicy = field(default_factory=HealthPolicy)
    interval_override: timedelta | None = None
    """Every instance's interval instead of its descriptor's (``UCF_POLL_INTERVAL_OVERRIDE``)."""
    idle_check_after: timedelta = timedelta(hours=1)
    """An instance that does not poll is health-checked after this long without a check
    or a verified webhook delivery."""

    def __post_init__(self) -> None:
        if not 0 <= self.jitter_ratio <= 1:
            raise ValueError("jitter_ratio must be between 0 and 1")
        if self.rescan_seconds <= 0 or self.shutdown_grace < 0:
            raise ValueError("rescan_seconds must be positive and shutdown_grace not negative")


def _stable_fraction(project_id: str, connector_id: str) -> float:
    """A number in [0, 1) fixed per instance: the same jitter on every worker."""
    return zlib.crc32(f"{project_id}\0{connector_id}".encode()) / 2**32


def due_at(record: InstanceRecord, connector: Connector, policy: SchedulePolicy) -> datetime:
    """When ``record`` should next be polled (``NEVER`` for connectors that do not poll).

    Derived from the store alone, so every worker agrees: a healthy instance is
    due an interval after its last successful poll (at once if it never had
    one), or at once when a poll was requested since the last one started
    (:func:`~ucf.service.poll.request_poll`); a failing one after its backoff
    from the last attempt, unless its settings changed since (the user fixed
    something: try now). A request does not cut a backoff short: the poll
    after it answers the request too.
    """
    schedule = connector.schedule
    if schedule is None or not record.enabled:
        return NEVER
    interval = policy.interval_override or timedelta(seconds=schedule.interval_seconds)
    jitter = interval * (
        policy.jitter_ratio * _stable_fraction(record.project_id, record.connector_id)
    )
    backoff = retry_delay(record, interval, policy.health)
    if backoff is not None:
        last = record.last_health_check
        if last is None or record.updated_at > last:
            return LONG_AGO
        return last + backoff + jitter
    if record.last_sync_at is None:
        return LONG_AGO
    regular = record.last_sync_at + interval + jitter
    requested = record.poll_requested_at  # request_poll(): sooner, never later
    return regular if requested is None else min(regular, requested)


def check_due_at(record: InstanceRecord, connector: Connector, policy: SchedulePolicy) -> datetime:
    """When an instance that does not poll gets its scheduled health check.

    ``NEVER`` for polling connectors (each poll records health) and disabled
    instances; at once for one never checked nor delivered to; otherwise
    ``idle_check_after`` (plus the instance's stable jitter) after the later of
    its last health check and its last verified delivery.
    """
    if connector.descriptor.polling is not None or not record.enabled:
        return NEVER
    seen = [t for t in (record.last_health_check, record.last_delivery_at) if t is not None]
    if not seen:
        return LONG_AGO
    idle = policy.idle_check_after
    jitter = idle * (policy.jitter_ratio * _stable_fraction(record.project_id, record.connector_id))
    return max(seen) + idle + jitter


Key = tuple[str, str]


def _policy_for(interval_override: timedelta | None) -> SchedulePolicy:
    """The default policy; an overridden interval also bounds the rescan, so instances
    created through the API are first polled within one interval, not the usual 15 s."""
    if interval_override is None:
        return SchedulePolicy()
    default = SchedulePolicy()
    rescan = min(default.rescan_seconds, interval_override.total_seconds())
    return dataclasses.replace(default, interval_override=interval_override, rescan_seconds=rescan)


class Scheduler:
    """Polls every enabled instance of the store at its interval (see the module doc)."""

    def __init__(
        self,
        context: UcfContext,
        worker_id: str | None = None,
        concurrency: int | None = None,
        *,
        policy: SchedulePolicy | None = None,
        on_result: Callable[[PollResult], None] | None = None,
    ) -> None:
        limit = concurrency if concurrency is not None else context.settings.max_concurrent_polls
        if limit < 1:
            raise ValueError("concurrency must be at least 1")
        self.context = context
        if not worker_id:
            from ucf.service.poll import default_worker_id

            worker_id = default_worker_id()
        self.worker_id = worker_id
        self.concurrency = limit
        self.policy = policy or _policy_for(context.settings.poll_interval_override)
        self._on_result = on_result
        self._slots = asyncio.Semaphore(limit)
        self._running: dict[Key, asyncio.Task[PollResult | None]] = {}
        self._checking: dict[Key, asyncio.Task[None]] = {}
        self._not_before: dict[Key, datetime] = {}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._last_purge: datetime | None = None
        self._maintained: dict[Key, datetime] = {}
        self._retired_at: datetime | None = None
        self._swept_at: datetime | None = None
        self._maintenance: asyncio.Task[int] | None = None

    # -- control

    def stop(self, *, now: bool = False) -> None:
        """Launch nothing new; running polls stop after the page they are storing.

        ``now`` (a second Ctrl-C) cancels them at once instead: the page in flight
        is abandoned, which is safe (its ingest is atomic, its checkpoint later).
        """
        self._stopping.set()
        self._wake.set()
        if now:
            for task in list(self._running.values()):
                task.cancel()

    def wake(self) -> None:
        """Look at the store now rather than after the current sleep (a poll was requested
        in this process; other workers see it at their next rescan)."""
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def running(self) -> int:
        return len(self._running)

    # -- what is due

    async def _pollable(self) -> list[tuple[InstanceRecord, Connector]]:
        connectors = {c.id: c for c in await self.context.connectors.list()}
        pairs = []
        for record in await self.context.store.instances.list_enabled():
            connector = connectors.get(record.connector_id)
            if connector is not None and connector.polls:
                pairs.append((record, connector))
        return pairs

    def _due_time(self, record: InstanceRecord, connector: Connector) -> datetime:
        key = (record.project_id, record.connector_id)
        due = due_at(record, connector, self.policy)
        not_before = self._not_before.get(key)
        return max(due, not_before) if not_before is not None else due

    async def due(self) -> tuple[list[InstanceRecord], datetime]:
        """Instances due now (not already polling here), and the next due time after."""
        now = self.context.clock()
        ready: list[InstanceRecord] = []
        upcoming = NEVER
        for record, connector in await self._pollable():
            if (record.project_id, record.connector_id) in self._running:
                continue
            when = self._due_time(record, connector)
            if when <= now:
                ready.append(record)
            else:
                upcoming = min(upcoming, when)
        ready.sort(key=lambda r: (r.last_sync_at or LONG_AGO, r.project_id, r.connector_id))
        return ready, upcoming

    # -- polling

    async def _poll(self, record: InstanceRecord) -> PollResult | None:
        key = (record.project_id, record.connector_id)
        async with self._slots:
            if self.stopping:
                return None
            try:
                from ucf.service.poll import poll_instance

                connector = await self.context.connectors.get(record.connector_id)

                def should_poll(fresh: InstanceRecord) -> bool:
                    return (
                        fresh.enabled and self._due_time(fresh, connector) <= self.context.clock()
                    )

                result = await poll_instance(
                    self.context,
                    record.project_id,
                    record.connector_id,
                    owner=self.worker_id,
                    policy=self.policy.health,
                    stop=self._stopping,
                    lease_ttl=self.policy.lease_ttl,
                    should_poll=should_poll,
                    connector=connector,
                )
            except NotFoundError:
                return None  # disconnected since we listed it
            except Exception:
                log.exception("poll of %s/%s failed inside ucf", *key)
                self._not_before[key] = self.context.clock() + ERROR_PAUSE
                return None
        self._remember(result)
        _log_result(result)
        if self._on_result is not None:
            self._on_result(result)
        return result

    def _remember(self, result: PollResult) -> None:
        key = (result.project_id, result.connector_id)
        now = self.context.clock()
        if result.outcome is Outcome.RATE_LIMITED and result.retry_after:
            # The upstream's word, but no longer than a failing instance ever waits:
            # ``Retry-After: 1e9`` would pause it for 31 years, and 1e13 overflowed
            # the datetime and crashed this worker's poll task.
            cap = self.policy.health.backoff_cap
            seconds = min(result.retry_after, cap.total_seconds())
            self._not_before[key] = now + timedelta(seconds=seconds)
        elif result.outcome is Outcome.REJECTED:
            self._not_before[key] = now + self.policy.health.backoff_cap
        else:
            self._not_before.pop(key, None)

    def _launch(self, record: InstanceRecord) -> asyncio.Task[PollResult | None]:
        key = (record.project_id, record.connector_id)
        task = asyncio.create_task(self._poll(record), name=f"poll {key[0]}/{key[1]}")
        self._running[key] = task

        def finished(_: asyncio.Task[PollResult | None]) -> None:
            self._running.pop(key, None)
            self._wake.set()

        task.add_done_callback(finished)
        return task

    # -- health checks of instances that do not poll

    async def idle(self) -> list[InstanceRecord]:
        """Enabled instances that do not poll and whose health check is due now."""
        now = self.context.clock()
        connectors = {c.id: c for c in await self.context.connectors.list()}
        found = []
        for record in await self.context.store.instances.list_enabled():
            connector = connectors.get(record.connector_id)
            key = (record.project_id, record.connector_id)
            if connector is None or key in self._checking:
                continue
            if check_due_at(record, connector, self.policy) <= now:
                found.append(record)
        return found

    async def _check(self, record: InstanceRecord) -> None:
        key = (record.project_id, record.connector_id)
        async with self._slots:
            if self.stopping:
                return
            from ucf.service.health import test_connection

            try:
                result = await test_connection(self.context, *key, policy=self.policy.health)
            except NotFoundError:
                return
            except Exception:
                log.exception("scheduled health check of %s/%s failed inside ucf", *key)
                return
        log.info(
            "health check of %s/%s (idle): %s%s",
            *key,
            result.state,
            f" ({result.error})" if result.error else "",
        )

    def _launch_check(self, record: InstanceRecord) -> asyncio.Task[None]:
        key = (record.project_id, record.connector_id)
        task = asyncio.create_task(self._check(record), name=f"check {key[0]}/{key[1]}")
        self._checking[key] = task
        task.add_done_callback(lambda _: self._checking.pop(key, None))
        return task

    async def _launch_checks(self) -> list[asyncio.Task[None]]:
        try:
            idle = await self.idle()
        except Exception:
            log.exception("listing instances for health checks failed; retrying shortly")
            return []
        return [self._launch_check(record) for record in idle if not self.stopping]

    # -- retention

    async def purge(self, *, force: bool = False) -> int:
        now = self.context.clock()
        recent = self._last_purge is not None and now - self._last_purge < self.policy.purge_every
        if recent and not force:
            return 0
        self._last_purge = now
        try:
            purged = await self.context.store.signals.purge_expired(now=now)
        except Exception:
            log.exception("purging expired signals failed")
            return 0
        if purged:
            log.info("purged %d expired signal(s)", purged)
        return purged

    # -- upkeep

    async def maintain(self) -> int:
        """Run ``maintain`` for every enabled instance that needs it now; how many ran.
        First, the service's own upkeep: retired webhook secrets (once a day) and
        short-lived secrets past their time (:meth:`delete_abandoned_secrets`).

        When it last ran is kept in the store too, so a scheduler that lives for
        one tick (the AWS schedule Lambda) still runs upkeep every
        :data:`MAINTENANCE_EVERY` seconds, not every tick.
        """
        from ucf.runtime.native import MAINTENANCE_EVERY  # native upkeep only: loaded here

        await self.retire_webhook_secrets()
        await self.delete_abandoned_secrets()
        now = self.context.clock()
        every = timedelta(seconds=MAINTENANCE_EVERY)
        records = self.context.store.records
        connectors = {c.id: c for c in await self.context.connectors.list()}
        ran = 0
        for record in await self.context.store.instances.list_enabled():
            connector = connectors.get(record.connector_id)
            if connector is None or connector.kind != "native":
                continue  # only native sources have upkeep (see maintains)
            from ucf.service.maintenance import maintain_instance, maintains

            if not maintains(connector):
                continue
            key = (record.project_id, record.connector_id)
            last = self._maintained.get(key)
            if last is not None and now - last < every:
                continue
            done_key = f"maintained:{record.project_id}:{record.connector_id}"
            if await records.get(done_key, now=now) is not None:
                self._maintained[key] = now
                continue
            self._maintained[key] = now
            await records.put(done_key, {"at": now.isoformat()}, expires_at=now + every)
            await maintain_instance(
                self.context,
                record,
                connector,
                owner=self.worker_id,
                lease_ttl=self.policy.lease_ttl,
            )
            ran += 1
        return ran

    async def retire_webhook_secrets(self) -> int:
        """Once a day (remembered in the store, as upkeep is), delete the webhook secrets
        only earlier versions of a connector verified with, past their retention
        (:meth:`~ucf.service.instances.InstanceService.retire_webhook_secrets`); how many
        instances lost one. A failure is logged and tried again the next day."""
        now = self.context.clock()
        if self._retired_at is not None and now - self._retired_at < RETIRE_EVERY:
            return 0
        self._retired_at = now
        records = self.context.store.records
        try:
            if await records.get(RETIRED_KEY, now=now) is not None:
                return 0
            await records.put(RETIRED_KEY, {"at": now.isoformat()}, expires_at=now + RETIRE_EVERY)
        except Exception:
            log.exception("deleting retired webhook secrets failed")
            return 0
        try:
            # A catalogue upgrade whose work on its instances failed is done again daily
            # (first: an upgrade may name the secrets below again).
            await self.context.finish_upgrades()
        except Exception:
            log.exception("finishing a catalogue upgrade's work on its instances failed")
        try:
            return await self.context.instances.retire_webhook_secrets(
                now, after=self.context.settings.webhook_secret_retention
            )
        except Exception:
            log.exception("deleting retired webhook secrets failed")
            return 0

    async def delete_abandoned_secrets(self) -> int:
        """Delete the short-lived secrets of flows nobody completed (a consent's PKCE
        verifier, an unredeemed setup ticket's tokens) once past their time
        (:mod:`ucf.service.short_secrets`); how many. One store read when none is due,
        so the AWS schedule function, which lives a tick, pays one read a tick; a
        long-lived scheduler looks every :data:`SECRET_SWEEP_EVERY`, at once again after
        a full batch. A failure is logged and tried again at the next look."""
        now = self.context.clock()
        if self._swept_at is not None and now - self._swept_at < SECRET_SWEEP_EVERY:
            return 0
        self._swept_at = now
        from ucf.service.short_secrets import delete_due_secrets

        try:
            deleted, more = await delete_due_secrets(
                self.context.secrets, self.context.store.secret_leases, now=now
            )
        except Exception:
            log.exception("deleting short-lived secrets past their time failed")
            return 0
        if more:
            self._swept_at = None
        return deleted

    def _maintain_in_background(self) -> None:
        if self._maintenance is not None and not self._maintenance.done():
            return

        async def guarded() -> int:
            try:
                return await self.maintain()
            except Exception:
                log.exception("instance maintenance failed")
                return 0

        self._maintenance = asyncio.create_task(guarded(), name="maintenance")

    # -- loops

    async def run_once(self) -> list[PollResult]:
        """Poll every instance due now, once, and return when all are done (cron, tests)."""
        await self.purge(force=True)
        await self.maintain()
        ready, _ = await self.due()
        tasks = [self._launch(record) for record in ready if not self.stopping]
        checks = await self._launch_checks()
        results = await self._finish(tasks)
        if checks:
            await asyncio.wait(checks)
        return [r for r in results if r is not None]

    async def run(self) -> None:
        """Poll until :meth:`stop`; then let running polls store their page and return."""
        log.info("scheduler %s started, up to %d poll(s) at once", self.worker_id, self.concurrency)
        try:
            while not self.stopping:
                # Cleared before the look, not before the sleep: a stop(), wake() or
                # finished poll during the look then ends the sleep at once instead of
                # being erased and waiting out a rescan.
                self._wake.clear()
                await self.purge()
                self._maintain_in_background()
                try:
                    ready, upcoming = await self.due()
                except Exception:
                    log.exception("listing instances failed; retrying shortly")
                    ready, upcoming = [], NEVER
                for record in ready:
                    self._launch(record)
                await self._launch_checks()
                await self._sleep_until(upcoming)
        finally:
            await self._finish(list(self._running.values()))
            # Upkeep and idle health checks are abandoned (a check writes one observation
            # at its very end; upkeep is redone next period), but only once each has let
            # go of its lease: the caller closes the store as soon as we return.
            await _cancel_and_wait([self._maintenance, *self._checking.values()])
            log.info("scheduler %s stopped", self.worker_id)

    async def _sleep_until(self, moment: datetime) -> None:
        seconds = (moment - self.context.clock()).total_seconds() if moment < NEVER else 1e9
        seconds = min(max(seconds, 0.05), self.policy.rescan_seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _finish(
        self, tasks: list[asyncio.Task[PollResult | None]]
    ) -> list[PollResult | None]:
        """Wait for ``tasks``; once stopping, they get ``shutdown_grace``, then are cancelled."""
        if not tasks:
            return []
        watchdog = asyncio.create_task(self._cancel_after_grace(tasks))
        try:
            await asyncio.wait(tasks)
        finally:
            watchdog.cancel()
        return [
            None if task.cancelled() or task.exception() is not None else task.result()
            for task in tasks
        ]

    async def _cancel_after_grace(self, tasks: list[asyncio.Task[PollResult | None]]) -> None:
        await self._stopping.wait()
        await asyncio.wait(tasks, timeout=self.policy.shutdown_grace)
        for task in tasks:
            task.cancel()  # abandons the page in flight: its ingest is atomic, the CAS after it


async def _cancel_and_wait(tasks: list[asyncio.Task[Any] | None]) -> None:
    """Cancel ``tasks`` and wait until each has run its clean-up (a lease release)."""
    live = [task for task in tasks if task is not None and not task.done()]
    for task in live:
        task.cancel()
    if live:
        await asyncio.wait(live)


def _log_result(result: PollResult) -> None:
    where = f"{result.project_id}/{result.connector_id}"
    if result.status == "ok":
        log.info(
            "polled %s: %d page(s), %d new, %d duplicate(s), %d item error(s), %.2f s [%s]",
            where,
            result.pages,
            result.inserted,
            result.duplicates,
            result.item_errors,
            result.duration_seconds,
            result.health or "-",
        )
    elif result.status == "failed":
        log.warning("poll of %s failed [%s]: %s", where, result.health or "-", result.error)
    elif result.status in ("stopped", "conflict"):
        log.info(
            "poll of %s %s after %d page(s): %s",
            where,
            result.status,
            result.pages,
            result.error or "",
        )
    else:
        log.debug("skipped %s: %s", where, result.error)
