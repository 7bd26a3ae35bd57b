"""Polling at scale on AWS: the schedule finds what is due, SQS fans it out, workers poll.

The schedule and the workers decide with the same code as ``ucf worker``:
:meth:`Scheduler.due <ucf.service.scheduler.Scheduler.due>` lists the
instances due now (interval, stable jitter, backoff — all derived from the
store), and each worker re-checks "still due" under the instance's lease
(:func:`ucf.service.poll.poll_instance`), so a stale or repeated message
polls nothing.

**The queue is FIFO** (a standard queue works too; the URL's ``.fifo`` tells
which), and that is a decision, not a default:

- *Message group = the instance.* SQS hands out one message of a group at a
  time, so one instance's requests are worked through one after the other
  rather than by concurrent Lambdas racing for its lease. Different instances
  are different groups and are polled in parallel.
- *Deduplication id = instance + schedule tick* (the EventBridge event's
  ``time``). A retried or doubled tick enqueues nothing new; the next tick
  (one minute later) is a new request — which matters when a poll stopped
  early (Lambda's deadline) and must go on from its checkpoint.

Correctness never rests on the queue: the lease keeps two Lambdas from
polling one instance at once, "still due" keeps a late message from polling
again, and a message lost or expired is made again by the next tick.

Ordering across groups carries no meaning for us, so a worker polls every
message of a batch and reports only the failed ones (``batchItemFailures``),
even on a FIFO queue, rather than stopping at the first failure as AWS
suggests for FIFO consumers that need strict order.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from ucf.aws.config import AwsConfigError, aws_client
from ucf.core.records import datarecord
from ucf.core.side_by_side import both

if TYPE_CHECKING:
    from ucf.service.connectors import Connector
    from ucf.service.context import UcfContext
    from ucf.service.poll import PollResult
    from ucf.service.poll_lease import HeldLease
    from ucf.service.scheduler import SchedulePolicy
    from ucf.service.settings import Settings

__all__ = [
    "POLL_QUEUE_ENV",
    "BadPollRequest",
    "BatchOutcome",
    "EnqueueFailed",
    "EnqueueReport",
    "PollQueue",
    "PollRequest",
    "enqueue_due",
    "poll_messages",
    "schedule_policy",
]

log = logging.getLogger("ucf.aws.polling")

POLL_QUEUE_ENV: Final = "UCF_POLL_QUEUE_URL"
SQS_BATCH: Final = 10
"""SendMessageBatch takes at most ten entries."""


class BadPollRequest(ValueError):
    """A queue message that is not a poll request: it will never succeed (goes to the DLQ)."""


class EnqueueFailed(RuntimeError):
    """SQS refused some poll requests even after a retry; the tick fails, Lambda may retry it."""


@datarecord
class PollRequest:
    """ "Poll this instance if it is (still) due": the body of one queue message."""

    project_id: str
    connector_id: str

    def body(self) -> str:
        return json.dumps(
            {"projectId": self.project_id, "connectorId": self.connector_id},
            separators=(",", ":"),
        )

    @classmethod
    def from_body(cls, body: str) -> PollRequest:
        try:
            data = json.loads(body)
        except (TypeError, ValueError):
            raise BadPollRequest("the message body is not JSON") from None
        if not isinstance(data, dict):
            raise BadPollRequest("the message body is not a JSON object")
        project, connector = data.get("projectId"), data.get("connectorId")
        if not (isinstance(project, str) and project and isinstance(connector, str) and connector):
            raise BadPollRequest("the message needs non-empty string projectId and connectorId")
        return cls(project, connector)

    @property
    def group_id(self) -> str:
        """The FIFO message group: one per instance (hashed: ids may hold any character)."""
        return _digest(self.project_id, self.connector_id)

    def deduplication_id(self, tick: str) -> str:
        return _digest(self.project_id, self.connector_id, tick)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class PollQueue:
    """The SQS queue of poll requests (``UCF_POLL_QUEUE_URL``), sent to in batches of ten."""

    def __init__(self, url: str, client: Any) -> None:
        self.url = url
        self._client = client

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PollQueue:
        url = environ.get(POLL_QUEUE_ENV, "").strip()
        if not url:
            raise AwsConfigError(
                f"{POLL_QUEUE_ENV} is not set: the schedule needs the URL of the poll queue"
            )
        return cls(url, aws_client("sqs", environ))

    @property
    def fifo(self) -> bool:
        return self.url.endswith(".fifo")

    def entries(self, requests: Sequence[PollRequest], *, tick: str) -> list[dict[str, str]]:
        """SendMessageBatch entries; on a FIFO queue with their group and deduplication ids."""
        entries = []
        for index, request in enumerate(requests):
            entry = {"Id": str(index), "MessageBody": request.body()}
            if self.fifo:
                entry["MessageGroupId"] = request.group_id
                entry["MessageDeduplicationId"] = request.deduplication_id(tick)
            entries.append(entry)
        return entries

    async def send(self, requests: Sequence[PollRequest], *, tick: str) -> int:
        """Enqueue every request (a refused entry is retried once); how many were sent."""
        entries = self.entries(requests, tick=tick)
        failed: list[dict[str, str]] = []
        for start in range(0, len(entries), SQS_BATCH):
            failed += await self._send_batch(entries[start : start + SQS_BATCH])
        if failed:
            still = [
                entry
                for start in range(0, len(failed), SQS_BATCH)
                for entry in await self._send_batch(failed[start : start + SQS_BATCH])
            ]
            if still:
                raise EnqueueFailed(
                    f"SQS refused {len(still)} of {len(entries)} poll request(s) twice"
                )
        return len(entries)

    async def _send_batch(self, batch: list[dict[str, str]]) -> list[dict[str, str]]:
        """The entries of ``batch`` SQS did not accept."""
        reply = await asyncio.to_thread(
            self._client.send_message_batch, QueueUrl=self.url, Entries=batch
        )
        by_id = {entry["Id"]: entry for entry in batch}
        refused = []
        for failure in reply.get("Failed", []):
            log.warning(
                "SQS refused a poll request (%s, sender fault: %s)",
                failure.get("Code"),
                failure.get("SenderFault"),
            )
            refused.append(by_id[failure["Id"]])
        return refused

    def close(self) -> None:
        self._client.close()


def schedule_policy(settings: Settings) -> SchedulePolicy:
    """The due-time rules of ``ucf worker``, with ``UCF_POLL_INTERVAL_OVERRIDE`` applied."""
    from ucf.service.scheduler import SchedulePolicy

    return SchedulePolicy(interval_override=settings.poll_interval_override)


# --------------------------------------------------------------------------- the schedule


@datarecord
class EnqueueReport:
    due: int
    enqueued: int
    next_due_at: datetime | None
    """The earliest instance not due yet (None: none left to poll)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "due": self.due,
            "enqueued": self.enqueued,
            "nextDueAt": None if self.next_due_at is None else self.next_due_at.isoformat(),
        }


async def enqueue_due(
    context: UcfContext, queue: PollQueue, *, tick: str, worker_id: str
) -> EnqueueReport:
    """One schedule tick: store maintenance, one poll request per instance due now, then
    the sources' upkeep (Outlook renews its Graph subscriptions), as ``ucf worker`` does."""
    from ucf.service.scheduler import NEVER, Scheduler

    scheduler = Scheduler(context, worker_id, policy=schedule_policy(context.settings))
    # On DynamoDB this finishes ingests a crash cut short (TTL does the purging).
    await scheduler.purge(force=True)
    ready, upcoming = await scheduler.due()
    requests = [PollRequest(record.project_id, record.connector_id) for record in ready]
    sent = await queue.send(requests, tick=tick) if requests else 0
    # After the polls are on their way: upkeep must never delay them. Each source's
    # upkeep runs at most every 15 minutes (remembered in the store) under its own lease.
    await scheduler.maintain()
    return EnqueueReport(
        due=len(ready), enqueued=sent, next_due_at=None if upcoming >= NEVER else upcoming
    )


# --------------------------------------------------------------------------- the worker


@datarecord(frozen=False)
class BatchOutcome:
    """What a batch of queue messages came to: polls run, and the messages to redeliver."""

    results: list[PollResult] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    """Message ids that are not poll requests, or whose failure inside ucf could not be
    recorded in the instance's health."""

    def response(self) -> dict[str, Any]:
        """Lambda's partial batch response: only these messages become visible again."""
        return {"batchItemFailures": [{"itemIdentifier": message} for message in self.failed]}


async def poll_messages(
    context: UcfContext,
    messages: Iterable[tuple[str, str]],
    *,
    worker_id: str,
    stop: asyncio.Event | None = None,
    fetch_until: float | None = None,
) -> BatchOutcome:
    """Poll the instance of each ``(message id, body)`` once, at most a few at a time.

    ``fetch_until`` (the event loop's time) ends every poll's fetching by then
    (:func:`ucf.service.poll.poll_instance`): the invocation's deadline.

    A message fails (and SQS redelivers it, then dead-letters it) only when it
    is not a poll request, or when its poll failed inside ucf (a store error, a
    corrupt secret) and even recording that in the instance's health failed.
    Any other failed poll is the instance's health, recorded in the store with
    its backoff, and its message is done with: redelivering would only bypass
    the backoff, and hold the instance's FIFO group for the visibility timeout.
    Messages naming one instance twice are polled once: an owner may re-take
    its own lease, so two polls of one instance in one worker must not start.
    """
    outcome = BatchOutcome()
    by_instance: dict[PollRequest, list[str]] = {}
    for message_id, body in messages:
        try:
            request = PollRequest.from_body(body)
        except BadPollRequest as error:
            log.error("message %s is not a poll request: %s", message_id, error)
            outcome.failed.append(message_id)
            continue
        by_instance.setdefault(request, []).append(message_id)
    slots = asyncio.Semaphore(max(1, context.settings.max_concurrent_polls))
    policy = schedule_policy(context.settings)

    async def poll(request: PollRequest, message_ids: list[str]) -> None:
        async with slots:
            if fetch_until is not None and asyncio.get_running_loop().time() >= fetch_until:
                # Its turn came with no time left to fetch: not the upstream's failure.
                # The instance stays due, and the next tick polls it.
                log.info(
                    "skipped %s/%s: no time left in this invocation",
                    request.project_id,
                    request.connector_id,
                )
                return
            try:
                turn = await _take_turn(context, request, worker_id, policy.lease_ttl)
                result = (
                    None
                    if turn is None
                    else await _poll_if_due(context, request, policy, turn, stop, fetch_until)
                )
            except Exception as error:
                if await _recorded_in_health(context, request, policy, error):
                    return
                log.exception(
                    "poll of %s/%s failed inside ucf; the message will be redelivered",
                    request.project_id,
                    request.connector_id,
                )
                outcome.failed.extend(message_ids)
                return
        if result is not None:
            outcome.results.append(result)
            _log_result(result)

    polls = [asyncio.create_task(poll(request, ids)) for request, ids in by_instance.items()]
    try:
        await _first_calls_sent()
        _ready_to_poll(context)
    finally:
        await asyncio.gather(*polls)
    return outcome


async def _recorded_in_health(
    context: UcfContext, request: PollRequest, policy: SchedulePolicy, error: Exception
) -> bool:
    """Record a poll that failed inside ucf in its instance's health; False if even that
    failed (the store is down), and the message is then redelivered.

    Recorded, the failure backs the instance off like any failed poll (the schedule
    sends the next request once it is due again) and the message is done with. Not
    redelivered: on a FIFO queue a redelivered message holds its group, the instance,
    for the queue's visibility timeout (30 minutes), each tick adds a request behind
    it, and a corrupt secret fails every time anyway.
    """
    from ucf.runtime.health import Outcome, classify, secret_free
    from ucf.stores.errors import NotFound

    log.error(
        "poll of %s/%s failed inside ucf; recorded in its health",
        request.project_id,
        request.connector_id,
        exc_info=error,
    )
    observation = classify(
        Outcome.FAILED,
        at=context.clock(),
        policy=policy.health,
        error=secret_free(f"the poll failed inside ucf: {error}"),
    )
    try:
        await context.store.instances.record_health(
            request.project_id, request.connector_id, observation
        )
    except NotFound:
        return True  # disconnected meanwhile: nothing left to poll or to redeliver
    except Exception:
        log.exception(
            "could not record the failed poll of %s/%s", request.project_id, request.connector_id
        )
        return False
    return True


FIRST_CALL_TURNS: Final = 4
"""Turns of the event loop a poll needs to hand its first store calls (its connector's read
and its lease's conditional write) to the store's threads: three (its own first step, the
two calls' tasks of :func:`ucf.core.side_by_side.both`, the lease's own task of
:func:`ucf.runtime.completion.to_the_end`) and one to spare. Fewer only costs the overlap
(``tests/aws/test_cold_start.py`` tells: with two, the lease's write waits)."""


async def _first_calls_sent() -> None:
    """Let each poll send its first store calls before :func:`_ready_to_poll` holds the loop."""
    for _ in range(FIRST_CALL_TURNS):
        await asyncio.sleep(0)


def _ready_to_poll(context: UcfContext) -> None:
    """What every poll needs, built while the polls' first store calls are in flight.

    The HTTP client (its CA bundle then loads on a thread of its own:
    :mod:`ucf.runtime.trust`) and the poll machinery (the mapping engine, the
    sanitiser, the ingest: ``ucf.service.poll``'s imports) were ~60 ms of a cold
    start's CPU on the event loop, made before any store call; the connector's
    read and the lease's write, two round trips, now wait for DynamoDB meanwhile
    (``bench/coldstart.py``; in AWS the first also opens the connection).
    """
    context.http  # noqa: B018 - built now, used by every poll's fetch
    importlib.import_module("ucf.service.poll")


async def _take_turn(
    context: UcfContext, request: PollRequest, worker_id: str, ttl: timedelta
) -> tuple[Connector, HeldLease] | None:
    """The instance's connector, and its poll lease tried for, side by side (one round trip).

    :func:`ucf.service.poll.poll_instance` takes over the lease, held or not (not
    held: skipped, another worker polls it). None, with nothing held, when the
    connector is gone. Whatever fails, a lease taken here is released.
    """
    from ucf.service.errors import NotFoundError
    from ucf.service.poll_lease import HeldLease, lease_name

    lease = HeldLease(
        context.store.leases,
        lease_name(request.project_id, request.connector_id),
        worker_id,
        ttl,
        context.clock,
    )

    async def connector() -> Connector | None:
        try:
            return await context.connectors.get(request.connector_id)
        except NotFoundError:
            return None

    try:
        found, _ = await both(connector(), lease.acquire())
    except BaseException:
        if lease.held:
            await asyncio.shield(lease.release())
        raise
    if found is None:
        if lease.held:
            await lease.release()
        log.info("skipped %s/%s: no such connector", request.project_id, request.connector_id)
        return None
    return found, lease


async def _poll_if_due(
    context: UcfContext,
    request: PollRequest,
    policy: SchedulePolicy,
    turn: tuple[Connector, HeldLease],
    stop: asyncio.Event | None,
    fetch_until: float | None = None,
) -> PollResult | None:
    from ucf.service.errors import NotFoundError
    from ucf.service.poll import poll_instance
    from ucf.service.scheduler import due_at
    from ucf.stores.models import InstanceRecord

    connector, lease = turn

    def still_due(fresh: InstanceRecord) -> bool:
        return fresh.enabled and due_at(fresh, connector, policy) <= context.clock()

    try:
        return await poll_instance(
            context,
            request.project_id,
            request.connector_id,
            owner=lease.owner,
            policy=policy.health,
            stop=stop,
            lease_ttl=policy.lease_ttl,
            should_poll=still_due,
            connector=connector,
            fetch_until=fetch_until,
            lease=lease,
        )
    except NotFoundError:  # disconnected since the schedule saw it
        log.info("skipped %s/%s: no such instance", request.project_id, request.connector_id)
        return None


def _log_result(result: PollResult) -> None:
    where = f"{result.project_id}/{result.connector_id}"
    if result.status == "failed":
        log.warning("poll of %s failed [%s]: %s", where, result.health or "-", result.error)
    elif result.status == "skipped":
        log.info("skipped %s: %s", where, result.error)
    else:
        log.info(
            "polled %s: %s, %d page(s), %d new, %d duplicate(s), %.2f s",
            where,
            result.status,
            result.pages,
            result.inserted,
            result.duplicates,
            result.duration_seconds,
        )
