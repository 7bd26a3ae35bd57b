"""Records the stores keep, shared by every backend.

Plain frozen dataclasses (built by ``@datarecord``, :mod:`ucf.core.records`, at
a quarter of ``@dataclass``'s import cost), independent of the descriptor
models: the store keeps a descriptor as the JSON object it was given, and the
service layer converts.
Every timestamp is a timezone-aware ``datetime`` in UTC; backends normalise on
the way in (see :func:`utc`) so that records compare equal across backends.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, TypeVar

from ucf.core.records import datarecord
from ucf.stores.errors import InvalidRecord

if TYPE_CHECKING:
    from ucf.core.signal import NormalisedSignal

HealthState = Literal["healthy", "degraded", "error", "unknown"]
HEALTH_STATES: tuple[HealthState, ...] = ("healthy", "degraded", "error", "unknown")

DEFAULT_CHECKPOINT_KEY: Final = "default"
DEFAULT_SIGNAL_RETENTION: Final = timedelta(days=30)
DEFAULT_DESCRIPTOR_HISTORY: Final = 50
"""Earlier versions kept per connector (``UCF_DESCRIPTOR_HISTORY``): :func:`pruned_versions`."""


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; naive datetimes are taken to be UTC already."""
    zone = moment.tzinfo
    if zone is UTC:  # what astimezone(UTC) would return, without the call (per stored signal)
        return moment
    if zone is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def text_time(moment: datetime) -> str:
    """ISO 8601 UTC with microseconds (the brief's ``createdAt``): sorts as text, reads back
    exactly. Both backends store record times this way."""
    return utc(moment).isoformat(timespec="microseconds")


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch: the unit signals are ordered and filtered by."""
    return int(utc(moment).timestamp() * 1000)


def from_epoch_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Final = _Unset.UNSET
"""Marks a field a partial update leaves alone (``None`` may be a real value)."""


@datarecord
class StoreOptions:
    """Behaviour that is configuration rather than identity of the store."""

    signal_retention: timedelta = DEFAULT_SIGNAL_RETENTION
    descriptor_history: int = DEFAULT_DESCRIPTOR_HISTORY
    """How many descriptors an edit replaced are kept per connector, at least
    (:func:`pruned_versions`)."""


# --- descriptors ---------------------------------------------------------------------


@datarecord
class DescriptorRecord:
    connector_id: str
    descriptor: dict[str, Any]
    built_in: bool
    version: str
    created_at: datetime
    updated_at: datetime


@datarecord
class DescriptorVersion:
    """A descriptor as it was before an edit replaced it (the registry keeps the newest
    ones: :func:`pruned_versions`).

    ``saved_at`` is when it became current (its record's ``updated_at`` then), and
    identifies it among its connector's versions; ``replaced_at`` is when an edit
    replaced it.
    """

    connector_id: str
    version: str
    descriptor: dict[str, Any]
    saved_at: datetime
    replaced_at: datetime


_K = TypeVar("_K")


def credential_part(descriptor: Mapping[str, Any]) -> str:
    """What of a stored descriptor says which credentials it keeps (its sign-in methods,
    its webhook's verification), as text: two versions equal here name the same keys
    (``ConnectorDescriptor.unused_credentials``, ``webhook_secret_keys``)."""
    ingestion = descriptor.get("ingestion")
    hooks: list[Any] = []
    if isinstance(ingestion, Mapping):
        for block in (ingestion, ingestion.get("webhook")):
            if isinstance(block, Mapping):
                hooks.append(
                    [block.get(key) for key in ("mode", "verification", "signature", "token")]
                )
    part = [descriptor.get("auth"), descriptor.get("authAlternatives"), hooks]
    return json.dumps(part, sort_keys=True, default=str)


def pruned_versions(versions: Sequence[tuple[_K, Mapping[str, Any]]], keep: int) -> list[_K]:
    """Which of a connector's earlier versions (``(key, descriptor)``, newest first) an
    edit that brings them over ``keep`` deletes: those past the newest ``keep``, except
    the newest of each way of signing in and verifying (:func:`credential_part`) that no
    newer kept version has.

    History was unbounded: every edit kept the descriptor it replaced, forever. The
    newest ``keep`` are what a user reads and restores. An older one is still needed
    when it alone declares credentials an instance may hold: which keys an instance
    signed in with before (a method since removed, a key renamed) is read from earlier
    versions (``ConnectorService.earlier_descriptors``), and a key no kept version
    declares would stay stored, encrypted, for good, once its version was gone. So the
    newest version of each such sign-in stays too: a few more than ``keep`` at most,
    one per sign-in the connector ever had. That version may not parse any more, where
    an older one of the same sign-in would (the models changed since): then that
    sign-in is forgotten, as a version that does not parse is today.
    """
    if len(versions) <= keep:
        return []
    seen = {credential_part(descriptor) for _, descriptor in versions[:keep]}
    pruned: list[_K] = []
    for key, descriptor in versions[keep:]:
        part = credential_part(descriptor)
        if part in seen:
            pruned.append(key)
        else:
            seen.add(part)
    return pruned


def descriptor_identity(descriptor: Mapping[str, Any]) -> tuple[str, str]:
    """The (connector id, version) a descriptor object declares."""
    connector_id = descriptor.get("id")
    if not isinstance(connector_id, str) or not connector_id:
        raise InvalidRecord(
            "descriptor has no string 'id'", "give the descriptor an 'id' such as 'github-issues'"
        )
    version = descriptor.get("version", "0")
    if not isinstance(version, str):
        version = str(version)
    return connector_id, version


def replacement_version(connector_id: str, descriptor: Mapping[str, Any]) -> str:
    """The version of a descriptor replacing ``connector_id``'s; it may not change the id."""
    declared_id, version = descriptor_identity(descriptor)
    if declared_id != connector_id:
        raise InvalidRecord(
            f"descriptor declares id {declared_id!r} but is stored as {connector_id!r}",
            "keep the id unchanged, or register a new descriptor and delete the old one",
        )
    return version


_VERSION_RE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)(.*)$")


def version_key(version: str) -> tuple[tuple[int, ...], int, str]:
    """Sort key for semver-ish strings: '1.10.0' > '1.9.0' > '1.9.0-rc1' > 'garbage'.

    Descriptors are hand-written; a pre-release suffix sorts below the release and
    a version with no digits sorts below every numbered one, so a typo never
    triggers a surprise upgrade.
    """
    match = _VERSION_RE.match(version)
    if match is None:
        return ((), 0, version)
    numbers = tuple(int(part) for part in match.group(1).split("."))
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers = numbers[:-1]
    suffix = match.group(2).strip()
    return (numbers, 0 if suffix else 1, suffix)


def is_newer_version(candidate: str, current: str) -> bool:
    return version_key(candidate) > version_key(current)


_LAST_NUMBER = re.compile(r"^(.*?)(\d+)$")


def next_version(version: str) -> str:
    """The version after ``version``, always newer by :func:`is_newer_version`: the last
    number up by one (``1.0.3`` → ``1.0.4``, ``v2`` → ``v3``, ``1.0.0-rc1`` →
    ``1.0.0-rc2``); where that would not sort higher (``-rc9`` → ``-rc10``), the release's
    last number up (``1.0.1``); ``.1`` added to a version without numbers."""
    found = _LAST_NUMBER.match(version)
    if found is not None:
        candidate = f"{found.group(1)}{int(found.group(2)) + 1}"
        if is_newer_version(candidate, version):
            return candidate
    core = _VERSION_RE.match(version)
    if core is not None:
        *head, last = core.group(1).split(".")
        start = version[: core.start(1)]
        return start.strip() + ".".join([*head, str(int(last) + 1)])
    return f"{version}.1" if version else "1"


# --- instances -----------------------------------------------------------------------


@datarecord
class InstanceRecord:
    """A configured connection of one connector in one project (SPEC §5.1)."""

    project_id: str
    connector_id: str
    enabled: bool
    credential_secret_ref: str | None
    """A reference understood by the secret store, never the secret itself."""
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_health_check: datetime | None = None
    healthy: bool | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    health_state: HealthState = "unknown"
    last_sync_at: datetime | None = None
    last_latency_ms: float | None = None
    last_delivery_at: datetime | None = None
    """When a webhook delivery to this instance last passed verification."""
    delivery_failures: int = 0
    """Deliveries that failed verification since the last one that passed."""
    poll_requested_at: datetime | None = None
    """When something asked for a poll sooner than the schedule (Graph's ``missed``
    lifecycle notification); cleared by the poll that starts after it."""


@datarecord
class InstanceChanges:
    """A partial update: fields left ``UNSET`` keep their stored value."""

    enabled: bool | _Unset = UNSET
    credential_secret_ref: str | _Unset | None = UNSET
    config: Mapping[str, Any] | _Unset = UNSET


@datarecord
class HealthObservation:
    """One health check or poll outcome, applied atomically to an instance.

    The store increments or resets ``consecutiveFailures`` itself so that two
    workers reporting at once never lose a failure; the resulting state follows
    :func:`health_state_after`.
    """

    ok: bool
    at: datetime
    latency_ms: float | None = None
    error: str | None = None
    synced: bool = False
    """True when this observation is a successful poll: sets ``lastSyncAt``."""
    failures_before_error: int = 3
    degraded: bool = False
    """A success that was slow, throttled or cut short: resets the failure count, shows
    'degraded'; its ``error``, when set, says why (``lastError``)."""


def health_state_after(
    ok: bool, consecutive_failures: int, failures_before_error: int, *, degraded: bool = False
) -> HealthState:
    """Healthy on success (degraded if slow or throttled); degraded on the first
    failures; error once they persist."""
    if ok:
        return "degraded" if degraded else "healthy"
    if consecutive_failures >= failures_before_error:
        return "error"
    return "degraded"


# --- checkpoints ---------------------------------------------------------------------


@datarecord
class Checkpoint:
    """A poll checkpoint and its version; version 0 means none stored yet."""

    value: Any
    version: int
    updated_at: datetime | None = None


# --- signals -------------------------------------------------------------------------


@datarecord
class SignalWrite:
    """One signal to store, with the dedup key that decides whether it is new.

    ``signal`` is the wire (camelCase) object; its ``id``, ``timestamp`` and
    ``projectId`` must be present. Build it with :meth:`of` from a model.
    """

    dedup_key: str
    project_id: str
    connector_id: str
    signal: Mapping[str, Any]
    received_at: datetime
    signal_id: str = field(init=False)
    timestamp: datetime = field(init=False)

    def __post_init__(self) -> None:
        sid, ts = _checked_signal(self.signal, self.project_id)
        object.__setattr__(self, "signal_id", sid)
        object.__setattr__(self, "timestamp", ts)
        received = self.received_at
        if received.tzinfo is not UTC:
            object.__setattr__(self, "received_at", utc(received))

    @classmethod
    def batch(
        cls,
        signals: Sequence[Mapping[str, Any]],
        dedup_keys: Sequence[str],
        *,
        project_id: str,
        connector_id: str,
        received_at: datetime,
    ) -> list[SignalWrite]:
        """One write per signal, all of one project and connector received together.

        The same records and checks as constructing each one, at about half the
        cost (a poll builds one per item, ~1.5 -> 0.7 µs): the frozen
        dataclass's ``__init__`` sets each field through ``object.__setattr__``
        and then calls ``__post_init__``; here the slots are filled directly
        and the shared receive time is converted once.
        """
        if len(signals) != len(dedup_keys):
            raise ValueError("one dedup key per signal")
        received = received_at if received_at.tzinfo is UTC else utc(received_at)
        new = object.__new__
        out: list[SignalWrite] = []
        for signal, key in zip(signals, dedup_keys, strict=True):
            sid, ts = _checked_signal(signal, project_id)
            write = new(cls)
            _SET_DEDUP_KEY(write, key)
            _SET_PROJECT_ID(write, project_id)
            _SET_CONNECTOR_ID(write, connector_id)
            _SET_SIGNAL(write, signal)
            _SET_RECEIVED_AT(write, received)
            _SET_SIGNAL_ID(write, sid)
            _SET_TIMESTAMP(write, ts)
            out.append(write)
        return out

    @classmethod
    def of(
        cls,
        signal: NormalisedSignal,
        *,
        dedup_key: str,
        received_at: datetime,
        connector_id: str | None = None,
    ) -> SignalWrite:
        return cls(
            dedup_key=dedup_key,
            project_id=signal.project_id,
            connector_id=connector_id or signal.source,
            signal=signal.to_wire(),
            received_at=received_at,
        )


# SignalWrite.batch fills the slots through their descriptors, which a frozen class's
# __setattr__ does not intercept (the dataclass's own __init__ goes through
# object.__setattr__ for the same reason).
_SET_DEDUP_KEY: Final = SignalWrite.__dict__["dedup_key"].__set__
_SET_PROJECT_ID: Final = SignalWrite.__dict__["project_id"].__set__
_SET_CONNECTOR_ID: Final = SignalWrite.__dict__["connector_id"].__set__
_SET_SIGNAL: Final = SignalWrite.__dict__["signal"].__set__
_SET_RECEIVED_AT: Final = SignalWrite.__dict__["received_at"].__set__
_SET_SIGNAL_ID: Final = SignalWrite.__dict__["signal_id"].__set__
_SET_TIMESTAMP: Final = SignalWrite.__dict__["timestamp"].__set__


def _checked_signal(signal: Mapping[str, Any], project_id: str) -> tuple[str, datetime]:
    """A signal's id and UTC timestamp, or :class:`InvalidRecord` for a signal a store
    must not take (no string id, another project's, a timestamp not ISO 8601)."""
    sid = signal.get("id")
    if not isinstance(sid, str) or not sid:
        raise InvalidRecord("signal has no string 'id'", "build signals with ucf.core.signal")
    if signal.get("projectId") != project_id:
        raise InvalidRecord(
            f"signal {sid} belongs to project {signal.get('projectId')!r}, not {project_id!r}",
            "write each signal under its own projectId",
        )
    raw_ts = signal.get("timestamp")
    try:
        # Python 3.11 reads the "Z" of iso_utc's text itself: no copy with "+00:00".
        ts = datetime.fromisoformat(
            raw_ts if raw_ts.__class__ is str else str(raw_ts).replace("Z", "+00:00")
        )
    except ValueError:
        raise InvalidRecord(
            f"signal {sid} has timestamp {raw_ts!r}, not ISO 8601",
            "use ucf.core.signal.iso_utc",
        ) from None
    # A poll writes a page of signals: skip the conversion when already in UTC.
    return sid, ts if ts.tzinfo is UTC else utc(ts)


@datarecord
class CheckpointMove:
    """A poll's checkpoint compare-and-set, made once a page's signals are stored.

    Handed to :meth:`~ucf.stores.protocols.SignalStore.ingest` with the page, so a
    backend that can (SQLite) makes the page's signals, their outbox entries and
    the checkpoint one transaction: one commit per page, not two.
    """

    project_id: str
    connector_id: str
    expected_version: int
    value: Any
    now: datetime
    key: str = DEFAULT_CHECKPOINT_KEY


@datarecord
class IngestResult:
    """Per item of the batch, in order: True if newly stored, False if a duplicate."""

    inserted: tuple[bool, ...]
    checkpoint_moved: bool | None = None
    """The :class:`CheckpointMove`'s compare-and-set won (None: none was asked for)."""

    @property
    def inserted_count(self) -> int:
        return sum(self.inserted)

    @property
    def duplicate_count(self) -> int:
        return len(self.inserted) - self.inserted_count


@datarecord
class SignalQuery:
    """Filters on a project's signals; ``since`` inclusive, ``until`` exclusive (signal time)."""

    source: str | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None


# --- coordination --------------------------------------------------------------------


@datarecord
class Lease:
    name: str
    owner: str
    expires_at: datetime


class RateDecision(NamedTuple):
    allowed: bool
    retry_after_seconds: float
    """0 when allowed; otherwise how long until ``cost`` tokens are available."""


class BucketState(NamedTuple):
    tokens: float
    updated_s: float


def take_tokens(
    state: BucketState | None,
    *,
    capacity: float,
    refill_per_second: float,
    now_s: float,
    cost: float,
) -> tuple[RateDecision, BucketState]:
    """One token-bucket decision, the same arithmetic for every backend.

    Returns the decision and the bucket to store: refilled to ``now_s`` and, when
    allowed, less ``cost``. A new bucket (``None``) starts full. A caller whose
    clock lags the last writer's adds nothing and never moves the stamp back.
    """
    if capacity <= 0 or refill_per_second < 0 or cost <= 0:
        raise ValueError("capacity and cost must be positive, refill_per_second not negative")
    tokens, updated_s = (capacity, now_s) if state is None else state
    tokens = min(capacity, tokens + max(0.0, now_s - updated_s) * refill_per_second)
    stamp = max(now_s, updated_s)
    if tokens >= cost:
        return RateDecision(True, 0.0), BucketState(tokens - cost, stamp)
    if refill_per_second == 0 or cost > capacity:
        return RateDecision(False, math.inf), BucketState(tokens, stamp)
    return RateDecision(False, (cost - tokens) / refill_per_second), BucketState(tokens, stamp)


def give_tokens(
    state: BucketState | None,
    *,
    capacity: float,
    refill_per_second: float,
    now_s: float,
    tokens: float,
) -> BucketState | None:
    """The bucket with ``tokens`` given back (taken for work that then failed on ucf's
    side): refilled to ``now_s`` as :func:`take_tokens` refills it, plus ``tokens``, never
    above ``capacity``. None when there is no bucket: a missing bucket is full, so there
    is nothing to give back to and nothing to write."""
    if capacity <= 0 or refill_per_second < 0 or tokens <= 0:
        raise ValueError("capacity and tokens must be positive, refill_per_second not negative")
    if state is None:
        return None
    held, updated_s = state
    refilled = min(capacity, held + max(0.0, now_s - updated_s) * refill_per_second)
    return BucketState(min(capacity, refilled + tokens), max(now_s, updated_s))


def full_at(state: BucketState, *, capacity: float, refill_per_second: float) -> float:
    """When the bucket is full again (epoch seconds; ``inf`` without refill): a full bucket
    is the same as none, so each backend drops it from then on (SQLite's prune, DynamoDB's
    TTL)."""
    if refill_per_second <= 0:
        return math.inf
    return state.updated_s + max(0.0, capacity - state.tokens) / refill_per_second


# Records a poll never builds live in modules of their own, loaded on first use
# (PEP 562): a Lambda poll worker's cold start skips their dataclasses. Every
# name stays importable from here.
_ELSEWHERE: Final = {
    "DeliveryHealth": "ucf.stores.delivery_health",
    "DeliveryObservation": "ucf.stores.delivery_health",
    "health_after_delivery": "ucf.stores.delivery_health",
    "OutboxEntry": "ucf.stores.read_models",
    "OutboxLag": "ucf.stores.read_models",
    "ParkedEntry": "ucf.stores.read_models",
    "SignalCounts": "ucf.stores.read_models",
    "SignalPage": "ucf.stores.read_models",
    "StoredSignal": "ucf.stores.read_models",
    "InitReport": "ucf.stores.reports",
    "SyncReport": "ucf.stores.reports",
}

if TYPE_CHECKING:
    from ucf.stores.delivery_health import DeliveryHealth as DeliveryHealth
    from ucf.stores.delivery_health import DeliveryObservation as DeliveryObservation
    from ucf.stores.delivery_health import health_after_delivery as health_after_delivery
    from ucf.stores.read_models import OutboxEntry as OutboxEntry
    from ucf.stores.read_models import OutboxLag as OutboxLag
    from ucf.stores.read_models import ParkedEntry as ParkedEntry
    from ucf.stores.read_models import SignalCounts as SignalCounts
    from ucf.stores.read_models import SignalPage as SignalPage
    from ucf.stores.read_models import StoredSignal as StoredSignal
    from ucf.stores.reports import InitReport as InitReport
    from ucf.stores.reports import SyncReport as SyncReport
else:

    def __getattr__(name: str) -> Any:
        module = _ELSEWHERE.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
