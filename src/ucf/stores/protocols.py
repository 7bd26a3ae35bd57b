"""What a store backend must provide: one small async protocol per noun.

Both backends (SQLite, DynamoDB) implement every protocol here and run the same
conformance suite (``tests/stores``). Rules every implementation keeps:

- Time is always passed in (``now=...``); stores never read the clock, so tests
  are deterministic and all workers agree on what "expired" means.
- Every write that two workers could race on is atomic in the backend
  (a transaction in SQLite, a conditional write in DynamoDB): dedup, CAS,
  leases, token buckets, health counters.
- Errors are the typed ones of :mod:`ucf.stores.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:  # built where they are used: see ucf.stores.models
    from ucf.stores.delivery_health import DeliveryObservation
    from ucf.stores.read_models import (
        OutboxEntry,
        OutboxLag,
        ParkedEntry,
        SignalCounts,
        SignalPage,
        StoredSignal,
    )
    from ucf.stores.reports import InitReport, SyncReport

from ucf.stores.models import (
    DEFAULT_CHECKPOINT_KEY,
    Checkpoint,
    CheckpointMove,
    DescriptorRecord,
    DescriptorVersion,
    HealthObservation,
    IngestResult,
    InstanceChanges,
    InstanceRecord,
    Lease,
    RateDecision,
    SignalQuery,
    SignalWrite,
)


class DescriptorRegistry(Protocol):
    """Connector descriptors (SPEC §5.2), kept as the JSON objects they were given."""

    async def list_all(self) -> list[DescriptorRecord]:
        """All descriptors, ordered by connector id."""
        ...

    async def get(self, connector_id: str) -> DescriptorRecord | None: ...

    async def register(
        self, descriptor: Mapping[str, Any], *, now: datetime, built_in: bool = False
    ) -> DescriptorRecord:
        """Store a new descriptor under its ``id``; raises ``AlreadyExists`` if taken."""
        ...

    async def update(
        self,
        connector_id: str,
        descriptor: Mapping[str, Any],
        *,
        now: datetime,
        built_in: bool | None = None,
        if_saved_at: datetime | None = None,
    ) -> DescriptorRecord:
        """Replace a descriptor; ``NotFound`` if missing, ``InvalidRecord`` if ids differ.

        The descriptor replaced is kept among the connector's :meth:`versions`.
        ``built_in=None`` keeps the flag; the service passes False when a user
        edits a shipped descriptor so that start-up sync no longer touches it.
        ``if_saved_at``: replace only the descriptor stored then (its
        ``updated_at``), ``Changed`` if another write came first (two edits made
        from one version must not both raise it to the same next one).
        """
        ...

    async def versions(self, connector_id: str) -> list[DescriptorVersion]:
        """The descriptors edits replaced, newest first; none for an unknown id."""
        ...

    async def delete(self, connector_id: str, *, if_saved_at: datetime | None = None) -> None:
        """Remove a descriptor and its versions; raises ``NotFound`` if missing.

        ``if_saved_at``: only the descriptor saved then, decided in the delete's own
        write; ``Changed`` when another was saved since (nothing deleted)."""
        ...

    async def sync_builtin(
        self, descriptors: Sequence[Mapping[str, Any]], *, now: datetime
    ) -> SyncReport:
        """Load shipped descriptors: insert missing, upgrade built-ins whose version rose.

        A user-created descriptor with the same id is never overwritten; it is
        reported in ``SyncReport.shadowed``. ``createdAt`` survives upgrades.
        """
        ...


class InstanceStore(Protocol):
    """Configured connections, one per (project, connector) (SPEC §5.1)."""

    async def get(self, project_id: str, connector_id: str) -> InstanceRecord | None: ...

    async def list_by_project(self, project_id: str) -> list[InstanceRecord]:
        """A project's instances, ordered by connector id."""
        ...

    async def list_by_connector(self, connector_id: str) -> list[InstanceRecord]:
        """Every project's instance of one connector (the brief's GSI2), by project id."""
        ...

    async def list_enabled(self) -> list[InstanceRecord]:
        """All enabled instances of all projects: what the scheduler polls."""
        ...

    async def create(
        self,
        project_id: str,
        connector_id: str,
        *,
        config: Mapping[str, Any],
        now: datetime,
        credential_secret_ref: str | None = None,
        enabled: bool = True,
    ) -> InstanceRecord:
        """A new instance in health state 'unknown'; ``AlreadyExists`` if present."""
        ...

    async def update(
        self, project_id: str, connector_id: str, changes: InstanceChanges, *, now: datetime
    ) -> InstanceRecord:
        """Apply a partial update; ``NotFound`` if missing."""
        ...

    async def set_enabled(
        self, project_id: str, connector_id: str, enabled: bool, *, now: datetime
    ) -> InstanceRecord: ...

    async def record_health(
        self, project_id: str, connector_id: str, observation: HealthObservation
    ) -> InstanceRecord:
        """Atomically apply one health outcome (failure counter, state, error, latency)."""
        ...

    async def record_delivery(
        self, project_id: str, connector_id: str, observation: DeliveryObservation
    ) -> InstanceRecord:
        """Atomically apply webhook deliveries (:func:`~ucf.stores.models.health_after_delivery`)."""
        ...

    async def request_poll(self, project_id: str, connector_id: str, *, at: datetime) -> None:
        """Ask every worker's scheduler to poll the instance as soon as it can: sets
        ``pollRequestedAt`` (leaving ``updatedAt`` alone); ``NotFound`` if missing."""
        ...

    async def clear_poll_request(
        self, project_id: str, connector_id: str, *, up_to: datetime
    ) -> bool:
        """Clear ``pollRequestedAt`` iff it is not later than ``up_to`` (the request the
        starting poll saw): a request made meanwhile survives. True if cleared."""
        ...

    async def delete(self, project_id: str, connector_id: str) -> None:
        """Remove an instance; raises ``NotFound`` if missing."""
        ...


class CheckpointStore(Protocol):
    """Poll positions; compare-and-set so two workers never move one backwards."""

    async def get(
        self, project_id: str, connector_id: str, key: str = DEFAULT_CHECKPOINT_KEY
    ) -> Checkpoint:
        """The checkpoint, or ``Checkpoint(None, 0)`` if none was ever stored."""
        ...

    async def compare_and_set(
        self,
        project_id: str,
        connector_id: str,
        *,
        expected_version: int,
        value: Any,
        now: datetime,
        key: str = DEFAULT_CHECKPOINT_KEY,
    ) -> bool:
        """Store ``value`` as version ``expected_version + 1`` iff the stored version
        is still ``expected_version`` (0: none stored). False means someone else won."""
        ...

    async def delete(self, project_id: str, connector_id: str) -> None:
        """Forget every checkpoint key of an instance (used when it is deleted)."""
        ...


class SignalStore(Protocol):
    """Signals, stored exactly once per dedup key, expiring after the retention."""

    async def ingest(
        self,
        batch: Sequence[SignalWrite],
        *,
        sinks: Sequence[str] = (),
        checkpoint: CheckpointMove | None = None,
    ) -> IngestResult:
        """Insert each signal whose dedup key is new, and in the same atomic write
        enqueue one outbox entry per sink for each newly inserted signal.

        A crash can leave neither a stored signal without its outbox entries nor
        an entry without its signal. Within a batch the first of two equal dedup
        keys wins. ``expiresAt`` is ``received_at`` plus the store's retention.

        No sinks, no entries: the signals are stored and queryable all the same.
        A sink is a queue of its own that starts empty: one configured later
        receives the signals ingested from then on, never a backlog of earlier
        ones (those stay readable through the store, e.g. ``/api/signals``).

        ``checkpoint``: then compare-and-set that checkpoint (``checkpoint_moved``
        says whether it won), never before the batch is stored. SQLite does both in
        one transaction; a backend without multi-item transactions for a batch
        (DynamoDB) sets it after the batch, which a crash between the two leaves
        safe (the page is fetched again and every key is a duplicate). A lost
        compare-and-set keeps the stored signals.
        """
        ...

    async def get(self, project_id: str, signal_id: str) -> StoredSignal | None:
        """One signal of this project; never another project's, even by exact id."""
        ...

    async def query(
        self,
        project_id: str,
        filters: SignalQuery = SignalQuery(),  # noqa: B008 - frozen, shared safely
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SignalPage:
        """Newest first by signal timestamp (then id); ``InvalidCursor`` on a bad cursor."""
        ...

    async def counts(self, project_id: str, connector_id: str, *, now: datetime) -> SignalCounts:
        """Signals received in the 24 h and 7 days before ``now``."""
        ...

    async def purge_expired(self, *, now: datetime) -> int:
        """Delete signals whose ``expiresAt`` is past (and their outbox entries).

        DynamoDB deletes by its TTL attribute and may return 0 here.
        """
        ...


class Outbox(Protocol):
    """Per-sink delivery queue filled by ``SignalStore.ingest``: at least once, durable.

    Each sink has its own entries, so a slow HTTP sink never holds back a JSONL
    file sink. A claim hides entries from other claimers until its lease ends;
    an entry not acknowledged by then is claimed again (after a crash, too).
    """

    async def claim(
        self, sink: str, *, limit: int, lease: timedelta, now: datetime
    ) -> list[OutboxEntry]:
        """Up to ``limit`` available entries, oldest first (so in order per instance)."""
        ...

    async def ack(self, sink: str, entry_ids: Sequence[str]) -> None:
        """Mark delivered (removes them); an entry already gone is no error.

        No count comes back: DynamoDB removes a batch in one call that says
        nothing of what was there, instead of one call per entry.
        """
        ...

    async def release(self, sink: str, entry_ids: Sequence[str], *, retry_at: datetime) -> int:
        """Give entries back after a failed delivery, claimable again at ``retry_at``."""
        ...

    async def lag(self, sink: str, *, now: datetime) -> OutboxLag: ...

    async def park(self, sink: str, entry_ids: Sequence[str], *, reason: str, now: datetime) -> int:
        """Set claimed entries aside for good (the sink refused them); how many were pending.

        A parked entry is never claimed again until :meth:`requeue_parked`; the
        entries after it are delivered meanwhile, so one signal the sink cannot
        accept does not stop the queue.
        """
        ...

    async def parked(self, sink: str, *, limit: int) -> list[ParkedEntry]:
        """Parked entries, oldest first."""
        ...

    async def requeue_parked(self, sink: str, *, now: datetime) -> int:
        """Put every parked entry back in the queue (after the sink was fixed); how many."""
        ...


class LeaseStore(Protocol):
    """Named leases, e.g. "poll:{project}:{connector}", so one worker does a job."""

    async def acquire(self, name: str, owner: str, *, ttl: timedelta, now: datetime) -> bool:
        """True if ``owner`` now holds the lease: it was free, expired, or already theirs."""
        ...

    async def renew(self, name: str, owner: str, *, ttl: timedelta, now: datetime) -> bool:
        """Extend to ``now + ttl`` iff ``owner`` still holds it (nobody took it over)."""
        ...

    async def release(self, name: str, owner: str) -> bool:
        """Drop the lease iff ``owner`` holds it; False otherwise."""
        ...

    async def get(self, name: str, *, now: datetime) -> Lease | None:
        """The current unexpired holder, if any."""
        ...


class RateLimitStore(Protocol):
    """Token buckets shared by every worker and Lambda: one atomic decision each."""

    async def try_acquire(
        self,
        bucket_key: str,
        *,
        capacity: float,
        refill_per_second: float,
        now: datetime,
        cost: float = 1.0,
    ) -> RateDecision:
        """Take ``cost`` tokens if available. A new bucket starts full.

        Never grants more than ``capacity`` plus what refilled since, whatever the
        number of concurrent callers.
        """
        ...

    async def give_back(
        self,
        bucket_key: str,
        *,
        capacity: float,
        refill_per_second: float,
        now: datetime,
        tokens: float = 1.0,
    ) -> None:
        """Return ``tokens`` taken for work that then failed on ucf's side (a delivery its
        signal write refused), never filling the bucket above ``capacity``. Under extreme
        contention it may give up, never granting a token twice: it raises
        :class:`~ucf.stores.errors.StoreUnavailable` then, as when the store fails."""
        ...


class KeyValueStore(Protocol):
    """Small JSON records by key, optionally expiring: what a flow must remember between
    two requests that may reach different workers (an OAuth consent in progress), or a
    setting of the service itself (a registered OAuth client). Never secrets: those go
    to the secret store and only their refs come here."""

    async def put(
        self, key: str, value: dict[str, Any], *, expires_at: datetime | None = None
    ) -> None:
        """Create or replace; ``expires_at`` None keeps it until deleted."""
        ...

    async def get(self, key: str, *, now: datetime) -> dict[str, Any] | None:
        """The record, unless absent or expired."""
        ...

    async def take(self, key: str, *, now: datetime) -> dict[str, Any] | None:
        """Delete and return the record in one atomic step: of racing callers, exactly one
        gets it (single use). An expired record is deleted and not returned."""
        ...

    async def delete(self, key: str) -> None: ...


class SecretLeaseStore(Protocol):
    """Secrets a flow keeps for a short while, each with the time after which nobody will
    use it: a consent's PKCE verifier, the tokens of a setup flow's ticket. The record
    that names such a secret expires (and DynamoDB's TTL may delete it any time after),
    so the ref is remembered here, apart from it, until the secret is deleted: the
    scheduler's upkeep (every ten minutes, every tick on AWS) deletes each one past its
    time that its flow never consumed."""

    async def hold(self, ref: str, *, until: datetime) -> None:
        """Remember ``ref`` until ``release``; it is due from ``until`` on."""
        ...

    async def due(self, *, now: datetime, limit: int) -> list[str]:
        """Up to ``limit`` refs held until ``now`` or earlier, earliest first. On DynamoDB
        the index lags a moment: a ref just released may still be listed once."""
        ...

    async def release(self, ref: str) -> None:
        """Forget ``ref`` (its secret was consumed or deleted); releasing it twice is fine."""
        ...


class StoreLifecycle(Protocol):
    """How a backend is created, migrated and closed."""

    @property
    def description(self) -> str:
        """Where the data lives, for humans: 'SQLite file /x/ucf.db'."""
        ...

    async def init(self) -> InitReport:
        """Create or migrate the schema/table; idempotent, reports what it did."""
        ...

    async def close(self) -> None: ...


class Store:
    """The bundle the rest of ucf uses: ``store.signals.ingest(...)`` and so on.

    Use as ``async with open_store(url) as store:``; entering runs ``init()``
    (idempotent), leaving closes connections.
    """

    def __init__(
        self,
        *,
        lifecycle: StoreLifecycle,
        descriptors: DescriptorRegistry,
        instances: InstanceStore,
        checkpoints: CheckpointStore,
        signals: SignalStore,
        outbox: Outbox,
        leases: LeaseStore,
        rate_limits: RateLimitStore,
        records: KeyValueStore,
        secret_leases: SecretLeaseStore,
    ) -> None:
        self._lifecycle = lifecycle
        self.descriptors = descriptors
        self.instances = instances
        self.checkpoints = checkpoints
        self.signals = signals
        self.outbox = outbox
        self.leases = leases
        self.rate_limits = rate_limits
        self.records = records
        self.secret_leases = secret_leases

    @property
    def description(self) -> str:
        return self._lifecycle.description

    async def init(self) -> InitReport:
        return await self._lifecycle.init()

    async def close(self) -> None:
        await self._lifecycle.close()

    async def __aenter__(self) -> Self:
        await self.init()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
