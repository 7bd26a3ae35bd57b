"""Sinks into AWS: an SQS queue (``UCF_SINK_SQS``) or an EventBridge bus (``UCF_SINK_EVENTBRIDGE``).

Both send one message or event per signal, in batches of up to ten, through
boto3: credentials come from the standard chain (environment, profile,
Lambda's role…), and the endpoint from the standard variables
(``AWS_ENDPOINT_URL_SQS``, ``AWS_ENDPOINT_URL_EVENTBRIDGE``; ucf also honours
``AWS_ENDPOINT_URL_EVENTS``), which is how the tests point them at moto.

A batch call can succeed for some entries and fail for others. Each failed
entry is sorted by its error code:

- **refused for what it is** (too large, malformed): set aside, parked by the
  worker exactly as an HTTP 413 or 422 is, while the rest of the batch counts
  as delivered;
- **anything else** (throttling, an internal error): sent again, a few times
  within the batch, and if it still fails, what the batch's calls got through
  so far counts as delivered and the rest goes back to the outbox with its
  backoff (a FIFO queue's call holds one message per instance, so an
  instance's messages got through in order, up to the failing one).

A batch is sent in calls of ten; a call is started only while one call's time
still fits in the batch's (:data:`~ucf.service.delivery.SEND_DEADLINE`): a
queue too slow to take a whole batch in time gets part of it, which counts,
and the rest goes again at once. Sending it all again at every retry, the
calls that got through included, a batch that never fit never moved. A call
that still takes longer (botocore's own retries) is given up on just before
the batch's time ends: the calls before it count, and its messages go again
(taken twice, maybe: at least once).

A message over the destination's size limit is never sent: it is refused
before the call, with the limit in the reason. The limits come from the
providers' documentation (cited beside each constant); for SQS the queue's
own ``MaximumMessageSize`` attribute is read once, so a queue configured
smaller is respected.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ucf.service.delivery import SEND_DEADLINE, DeliveryFailed, OutOfTime
from ucf.stores.models import OutboxEntry

__all__ = [
    "EVENTBRIDGE_MAX_ENTRY_BYTES",
    "EventBridgeSink",
    "SqsSink",
    "aws_sink_client",
    "message_group_id",
]

log = logging.getLogger("ucf.delivery")

BATCH_ENTRIES: Final = 10
"""SendMessageBatch and PutEvents both take at most ten entries per call."""

SQS_MAX_BYTES: Final = 1024 * 1024
"""SQS's largest message, and largest batch payload (the sum of its messages), since
August 2025 (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html).
A queue may be configured smaller: its ``MaximumMessageSize`` attribute wins."""

EVENTBRIDGE_MAX_ENTRY_BYTES: Final = 256 * 1024
"""PutEvents: "The total entry size must be less than 256KB", counted as the UTF-8 bytes
of Source, DetailType and Detail
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html)."""

EVENT_SOURCE: Final = "ucf"
EVENT_DETAIL_TYPE: Final = "NormalisedSignal"

ENTRY_ATTEMPTS: Final = 3
"""Sends of one failed entry within a batch before the batch goes back to the outbox."""

CONNECT_SECONDS: Final = 3.0
READ_SECONDS: Final = 5.0
"""A call's connection and answer timeouts (:func:`aws_sink_client`)."""
CALL_SECONDS: Final = CONNECT_SECONDS + READ_SECONDS
"""What one attempt of a call may take: a batch's next call starts only with this much
of its time left (the client retrying within the call may take longer: then the call is
given up on at the batch's time, :data:`GIVE_UP_SECONDS`, and the calls before it count)."""

GIVE_UP_SECONDS: Final = 0.2
"""A call still unanswered this long before the send's deadline is given up on (its
thread finishes on its own): the batch's earlier calls count, and the worker's timeout,
which would end the send as a whole, has not fired yet."""

_SQS_REFUSING: Final = frozenset(
    {"InvalidMessageContents", "InvalidParameterValue", "InvalidAttributeValue"}
)
"""SQS error codes about a message itself (its size, characters or attributes)."""

_EVENTBRIDGE_REFUSING: Final = frozenset({"MalformedDetail", "InvalidArgument"})
"""PutEvents entry error codes about an event itself."""

_UNSENDABLE = re.compile("[\ud800-\udfff\ufffe\uffff]")
_MESSAGE_GROUP_ID = re.compile(r"[!-~]{1,128}")  # SQS: 1-128 printable ASCII characters
_REGION_IN_HOST = re.compile(r"^(?:sqs\.)?([a-z]{2}(?:-[a-z]+)+-\d+)\.")


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """One outbox entry as the request entry that carries it, and its size by the
    destination's own count."""

    entry: OutboxEntry
    request: dict[str, Any]
    size: int


@dataclass(frozen=True, slots=True)
class _EntryFailure:
    index: int
    code: str
    message: str


def _json_text(signal: Mapping[str, Any]) -> str:
    """The signal as compact JSON, the same text the HTTP sink posts.

    SQS allows only some characters in a message (no lone surrogates, no
    U+FFFE/U+FFFF), and a lone surrogate from a source's JSON cannot be UTF-8
    encoded at all; a signal holding one travels with every non-ASCII
    character escaped (``\\uXXXX``) instead: the same JSON value, longer text.
    """
    text = json.dumps(signal, ensure_ascii=False, separators=(",", ":"))
    if _UNSENDABLE.search(text):
        return json.dumps(signal, ensure_ascii=True, separators=(",", ":"))
    return text


def message_group_id(project_id: str, connector_id: str) -> str:
    """``project/connector``: one FIFO message group per connector instance.

    SQS allows 1-128 printable ASCII characters; ids outside that get a stable
    hash instead, so the same instance always lands in the same group.
    """
    readable = f"{project_id}/{connector_id}"
    if _MESSAGE_GROUP_ID.fullmatch(readable):
        return readable
    material = f"{len(project_id)}:{project_id}/{connector_id}".encode()
    return "ucf-" + hashlib.sha256(material).hexdigest()[:40]


def _region_of(destination: str) -> str | None:
    """The region an SQS queue URL or an ARN names (None for a local endpoint or a bare name)."""
    if destination.startswith("arn:"):
        parts = destination.split(":")
        return parts[3] if len(parts) > 5 and parts[3] else None
    host = re.sub(r"^[a-z]+://", "", destination).split("/", 1)[0]
    match = _REGION_IN_HOST.match(host)
    return match.group(1) if match else None


def aws_sink_client(service: str, *, region: str | None, endpoint: str | None = None) -> Any:
    """A boto3 client with explicit timeouts and bounded retries.

    Botocore's "standard" mode retries throttling and 5xx with backoff: three
    attempts of at most 3 + 5 s each, with up to 3 s of backoff between them, so
    one call can take 27 s, more than the 18 s the AWS delivery function gives a
    batch: the batch's time bounds it (the call is given up on, the calls before it
    count), and a batch starts its next call
    only while one attempt's time (:data:`CALL_SECONDS`) is left.
    """
    from botocore.config import Config

    from ucf.stores.aws_session import aws_client

    config = Config(
        connect_timeout=CONNECT_SECONDS,
        read_timeout=READ_SECONDS,
        retries={"mode": "standard", "total_max_attempts": 3},
    )
    return aws_client(service, region_name=region, endpoint_url=endpoint, config=config)


def _packed(
    items: Sequence[_Outgoing], max_bytes: int, *, one_per_group: bool
) -> Iterator[list[_Outgoing]]:
    """``items`` in order, in calls of at most ten entries and ``max_bytes`` in all.

    ``one_per_group``: a call never holds two messages of one FIFO message group.
    A batch call may fail one entry and take the next; were the next of the
    same instance, it would overtake the failed one for good. With one message
    per group per call, the failed one is retried before its successor is sent.
    """
    chunk: list[_Outgoing] = []
    groups: set[str] = set()
    size = 0
    for item in items:
        group = str(item.request.get("MessageGroupId", "")) if one_per_group else ""
        if chunk and (
            len(chunk) == BATCH_ENTRIES or size + item.size > max_bytes or group in groups
        ):
            yield chunk
            chunk, size = [], 0
            groups.clear()
        chunk.append(item)
        size += item.size
        if group:
            groups.add(group)
    if chunk:
        yield chunk


class _BatchSink:
    """What the SQS and EventBridge sinks share: size checks, packing, per-entry retries.

    A subclass says how one signal becomes a request entry (:meth:`_prepare`),
    how one call is made (:meth:`_call`, in a worker thread: boto3 blocks), and
    which error codes refuse an entry for good.
    """

    name: str
    refusing: frozenset[str]
    one_per_group = False
    """Never two messages of one FIFO message group in one call (see :func:`_packed`)."""
    _unit = "message"
    """What one signal becomes at the destination (for messages)."""
    _action = "call it"
    """The IAM actions a sink needs (for messages)."""

    def __init__(self, client: Any, *, retry_pause: float = 0.2) -> None:
        self._client = client
        self._retry_pause = retry_pause
        self.call_seconds = CALL_SECONDS
        """A batch's next call starts only with this much of its time left."""

    # -- what subclasses say

    def _prepare(self, entry: OutboxEntry) -> _Outgoing:
        raise NotImplementedError

    def _call(self, requests: list[dict[str, Any]]) -> list[_EntryFailure]:
        raise NotImplementedError

    async def _max_bytes(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Close the client's connection pool (the sink's service stops)."""
        self._client.close()

    # -- delivery

    async def deliver(self, entries: Sequence[OutboxEntry]) -> None:
        if not entries:
            return
        limit = await self._max_bytes()
        refused: dict[str, str] = {}
        outgoing: list[_Outgoing] = []
        for entry in entries:
            item = self._prepare(entry)
            if item.size > limit:
                refused[entry.entry_id] = (
                    f"{self.name}: signal {entry.signal.get('id')} is {item.size} bytes, over "
                    f"the {limit}-byte limit of one {self._unit}"
                )
            else:
                outgoing.append(item)
        delivered: list[str] = []
        loop = asyncio.get_running_loop()
        # A call is started with one call's time left, or half the send's when that is less
        # (a short send: the calls are quick, or none of them fits anyway).
        deadline = SEND_DEADLINE.get()
        stop_at: float | None = None
        if deadline is None:
            deadline = needed = math.inf
        else:
            needed = min(self.call_seconds, (deadline - loop.time()) / 2)
            stop_at = deadline - GIVE_UP_SECONDS
        for chunk in _packed(outgoing, limit, one_per_group=self.one_per_group):
            # Once part of the batch is settled, delivered or refused, a call that would not
            # fit is not started: given up on, its messages would go again (twice, maybe).
            if (delivered or refused) and deadline - loop.time() < needed:
                raise OutOfTime(
                    f"{self.name}: {len(delivered)} of {len(entries)} signal(s) sent and "
                    f"{len(refused)} refused in the batch's time; the rest is sent next",
                    refused=refused,
                    delivered=delivered,
                )
            try:
                # The call is given up on just before the send's own timeout would end the
                # batch as a whole, taking what the calls before it got through back with it.
                async with asyncio.timeout_at(stop_at):
                    await self._send(chunk, delivered, refused)
            except TimeoutError:
                if not delivered and not refused:
                    raise
                raise OutOfTime(
                    f"{self.name}: no answer to a call within the batch's time; the "
                    f"{len(delivered)} of {len(entries)} signal(s) taken before count, the "
                    "rest (that call's maybe taken too) is sent next",
                    refused=refused,
                    delivered=delivered,
                ) from None
            except DeliveryFailed as failure:
                if not delivered and not refused:
                    raise
                raise DeliveryFailed(
                    str(failure),
                    retry_after=failure.retry_after,
                    rejected=failure.rejected,
                    refused=refused,
                    delivered=delivered,
                ) from None
        if refused:
            raise DeliveryFailed(
                f"{self.name} refused {len(refused)} of {len(entries)} signal(s)", refused=refused
            )

    async def _send(
        self, chunk: list[_Outgoing], delivered: list[str], refused: dict[str, str]
    ) -> None:
        """Send one call's worth, retrying failed entries. The ids of those taken are added
        to ``delivered``, and those refused for good to ``refused`` (with why), as the
        answers say so: a call that then fails for its other entries keeps both, so a
        refused entry is parked at once instead of being sent again with the rest."""
        pending = chunk
        for attempt in range(1, ENTRY_ATTEMPTS + 1):
            failures = await self._guarded([item.request for item in pending])
            failed = {failure.index for failure in failures}
            delivered += (
                item.entry.entry_id for index, item in enumerate(pending) if index not in failed
            )
            if not failures:
                return
            retry: list[int] = []
            for failure in failures:
                entry = pending[failure.index].entry
                if failure.code in self.refusing:
                    refused[entry.entry_id] = (
                        f"{self.name}: {failure.code}: {failure.message}".rstrip(": ")
                    )
                else:
                    retry.append(failure.index)
            if not retry:
                return
            worst = next(f for f in failures if f.index == min(retry))
            pending = [pending[index] for index in sorted(retry)]
            if attempt == ENTRY_ATTEMPTS:
                raise DeliveryFailed(
                    f"{self.name}: {len(retry)} of {len(chunk)} entries still failing after "
                    f"{ENTRY_ATTEMPTS} attempts ({worst.code}: {worst.message})"
                )
            await asyncio.sleep(self._retry_pause * attempt)

    async def _guarded(self, requests: list[dict[str, Any]]) -> list[_EntryFailure]:
        """One call in a worker thread; a failed call is a :class:`DeliveryFailed`."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(self._call, requests)
        except ClientError as error:
            code = _error_code(error)
            raise DeliveryFailed(
                f"{self.name}: {code}: {_error_message(error)}{self._hint(code)}",
                rejected=code in self.refusing,
            ) from None
        except BotoCoreError as error:
            raise DeliveryFailed(f"{self.name}: {type(error).__name__}: {error}") from None

    def _hint(self, code: str) -> str:
        if "AccessDenied" in code or code in (
            "UnrecognizedClientException",
            "InvalidClientTokenId",
        ):
            return f" (check the credentials and that they may {self._action})"
        return ""


def _error_code(error: Any) -> str:
    code = str(error.response.get("Error", {}).get("Code", "Error"))
    return code.removeprefix("AWS.SimpleQueueService.")


def _error_message(error: Any) -> str:
    return str(error.response.get("Error", {}).get("Message", "")) or "no message"


class SqsSink(_BatchSink):
    """One SQS message per signal: the body is the signal's JSON, as the HTTP sink sends it.

    ``SendMessageBatch``, ten at a time. Message attributes ``signalId``,
    ``projectId``, ``source`` and ``type`` (strings) let a consumer filter or
    route without parsing the body. On a FIFO queue (URL ending ``.fifo``),
    ``MessageGroupId`` is ``project/connector``, so SQS keeps each instance's
    order and hands one instance's messages out one at a time, and
    ``MessageDeduplicationId`` is the signal id, so an outbox entry sent again
    within SQS's five-minute deduplication window is dropped by SQS. A call
    then carries at most one message per instance (:func:`_packed` says why);
    a standard queue keeps no order, so it batches freely.
    """

    name = "sqs"
    refusing = _SQS_REFUSING
    _action = "sqs:SendMessage and sqs:GetQueueAttributes on the queue"

    def __init__(self, queue_url: str, client: Any, *, retry_pause: float = 0.2) -> None:
        super().__init__(client, retry_pause=retry_pause)
        self.queue_url = queue_url
        self.fifo = queue_url.rstrip("/").endswith(".fifo")
        self.one_per_group = self.fifo
        self._limit: int | None = None

    async def _max_bytes(self) -> int:
        """The queue's ``MaximumMessageSize``, read once (it also proves the queue is there)."""
        if self._limit is None:
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                reply = await asyncio.to_thread(
                    self._client.get_queue_attributes,
                    QueueUrl=self.queue_url,
                    AttributeNames=["MaximumMessageSize"],
                )
            except ClientError as error:
                code = _error_code(error)
                raise DeliveryFailed(
                    f"sqs: cannot read the queue {self.queue_url} ({code}): check that "
                    f"UCF_SINK_SQS is the queue's URL{self._hint(code)}"
                ) from None
            except BotoCoreError as error:
                raise DeliveryFailed(f"sqs: {type(error).__name__}: {error}") from None
            size = int(reply.get("Attributes", {}).get("MaximumMessageSize", SQS_MAX_BYTES))
            self._limit = min(size, SQS_MAX_BYTES)
        return self._limit

    def _prepare(self, entry: OutboxEntry) -> _Outgoing:
        signal = entry.signal
        body = _json_text(signal)
        attributes = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in (
                ("signalId", str(signal.get("id", ""))),
                ("projectId", entry.project_id),
                ("source", entry.connector_id),
                ("type", str(signal.get("type", ""))),
            )
            if value  # SQS refuses an empty attribute value
        }
        request: dict[str, Any] = {
            "MessageBody": body,
            "MessageAttributes": attributes,
        }
        if self.fifo:
            request["MessageGroupId"] = message_group_id(entry.project_id, entry.connector_id)
            request["MessageDeduplicationId"] = str(signal["id"])
        # SQS counts the body and each attribute's name, data type and value.
        size = len(body.encode()) + sum(
            len(name.encode()) + len(b"String") + len(value["StringValue"].encode())
            for name, value in attributes.items()
        )
        return _Outgoing(entry, request, size)

    def _call(self, requests: list[dict[str, Any]]) -> list[_EntryFailure]:
        entries = [{**request, "Id": str(index)} for index, request in enumerate(requests)]
        reply = self._client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        return [
            _EntryFailure(int(failed["Id"]), _sqs_code(failed), str(failed.get("Message", "")))
            for failed in reply.get("Failed", [])
        ]


def _sqs_code(failed: Mapping[str, Any]) -> str:
    code = str(failed.get("Code", "Error")).removeprefix("AWS.SimpleQueueService.")
    # A receiver fault is SQS's own trouble, whatever its code says: never refuse for it.
    return code if failed.get("SenderFault", True) else f"ServerFault.{code}"


class EventBridgeSink(_BatchSink):
    """One EventBridge event per signal: ``Source`` ``ucf``, ``DetailType``
    ``NormalisedSignal``, ``Detail`` the signal's JSON (as the HTTP sink sends it).

    ``PutEvents``, ten at a time, to the bus ``UCF_SINK_EVENTBRIDGE`` names (a
    name or an ARN). A rule matching ``{"source": ["ucf"]}`` on that bus routes
    the events to the pipeline.
    """

    name = "eventbridge"
    refusing = _EVENTBRIDGE_REFUSING
    _unit = "event entry"
    _action = "events:PutEvents on the bus"

    def __init__(
        self,
        bus: str,
        client: Any,
        *,
        max_entry_bytes: int = EVENTBRIDGE_MAX_ENTRY_BYTES,
        retry_pause: float = 0.2,
    ) -> None:
        super().__init__(client, retry_pause=retry_pause)
        self.bus = bus
        self.max_entry_bytes = max_entry_bytes

    async def _max_bytes(self) -> int:
        return self.max_entry_bytes

    def _prepare(self, entry: OutboxEntry) -> _Outgoing:
        detail = _json_text(entry.signal)
        request = {
            "Source": EVENT_SOURCE,
            "DetailType": EVENT_DETAIL_TYPE,
            "Detail": detail,
            "EventBusName": self.bus,
        }
        size = len(EVENT_SOURCE) + len(EVENT_DETAIL_TYPE) + len(detail.encode())
        return _Outgoing(entry, request, size)

    def _call(self, requests: list[dict[str, Any]]) -> list[_EntryFailure]:
        reply = self._client.put_events(Entries=requests)
        return [
            _EntryFailure(index, str(result["ErrorCode"]), str(result.get("ErrorMessage", "")))
            for index, result in enumerate(reply.get("Entries", []))
            if result.get("ErrorCode")
        ]


def sqs_sink(queue_url: str) -> SqsSink:
    """The SQS sink for ``UCF_SINK_SQS``, its client in the queue's region."""
    return SqsSink(queue_url, aws_sink_client("sqs", region=_region_of(queue_url)))


def eventbridge_sink(bus: str, *, endpoint: str | None = None) -> EventBridgeSink:
    """The EventBridge sink for ``UCF_SINK_EVENTBRIDGE``, its client in the bus's region."""
    client = aws_sink_client("events", region=_region_of(bus), endpoint=endpoint)
    return EventBridgeSink(bus, client)
