"""Where a poll starts and what it may store: one small class per delta strategy.

A strategy object lives for one poll. :meth:`Delta.init_request` makes the
first request incremental (``since=…``, ``sync=…``, a stored deltaLink);
:meth:`Delta.update_state` reads each page; :meth:`Delta.checkpoint` answers
the question crash safety hangs on — *what may be stored once this page's
signals are stored?* A value that is only right once the whole listing has
been read is held back until then; otherwise a crash after page 1 would store
a position past items that sit on page 2.

Checkpoints are strings. A timestamp checkpoint is stored as ISO 8601 UTC
(``2024-05-01T10:00:00.000Z``) whatever the API's filter format, so it reads
the same in the store, the dashboard and ``ucf poll --checkpoint``.

A listing that only completes at its end (newest-first, a since-id, a delta
token) and is cut short by ``maxPages`` must not start over next time, or a
backlog larger than ``maxPages × pageSize`` is re-read from the top forever.
Its checkpoint becomes a :class:`ResumePosition` instead —
``resume:{"checkpoint": old, "pending": high-water mark, "next": next page}`` —
and the next poll continues the same listing (same filter) from the next
page; once that listing completes, the pending high-water mark is stored.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import field
from datetime import datetime, timedelta
from typing import Any, Final

from ucf.core.descriptor_view import (
    CursorView,
    DeltaTokenView,
    FieldMappingView,
    PollingView,
    SinceIdView,
    TimestampFilterView,
)
from ucf.core.jsonpath import CompiledPath, compile_path
from ucf.core.records import datarecord
from ucf.core.signal_identity import iso_utc
from ucf.core.timestamps import format_timestamp, parse_timestamp, parser_for
from ucf.runtime.pagination import PageRequest

__all__ = [
    "CheckpointInvalid",
    "Cursor",
    "Delta",
    "DeltaFactory",
    "DeltaToken",
    "ResumePosition",
    "SinceId",
    "TimestampFilter",
    "delta_factory",
]

ItemTimestamp = Callable[[Any], datetime | None]


class CheckpointInvalid(ValueError):
    """A stored or given checkpoint this strategy cannot read."""


RESUME_PREFIX: Final = "resume:"


@datarecord
class ResumePosition:
    """Where a listing cut short by ``maxPages`` goes on, as a checkpoint string.

    ``checkpoint`` is the checkpoint the listing started from (the next poll
    filters by it again, so it continues the *same* listing); ``pending`` is
    the high-water mark of the pages read so far, stored once the listing
    completes; ``next`` is the next page's request (a cursor, an offset, a
    next-page URL, a page token), as the paginator would have sent it.
    """

    checkpoint: str | None
    pending: str | None
    next: PageRequest

    def encode(self) -> str:
        request: dict[str, Any] = {}
        if self.next.params:
            request["params"] = self.next.params
        if self.next.url is not None:
            request["url"] = self.next.url
        if self.next.page_token is not None:
            request["pageToken"] = self.next.page_token
        body = {"checkpoint": self.checkpoint, "pending": self.pending, "next": request}
        return RESUME_PREFIX + json.dumps(body, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def decode(cls, text: str) -> ResumePosition | None:
        """The position ``text`` encodes; None when it is a plain checkpoint."""
        if not text.startswith(RESUME_PREFIX):
            return None
        try:
            body = json.loads(text.removeprefix(RESUME_PREFIX))
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise CheckpointInvalid("a resume checkpoint must be resume: and a JSON object")
        checkpoint, pending, request = body.get("checkpoint"), body.get("pending"), body.get("next")
        params = request.get("params", {}) if isinstance(request, dict) else None
        url = request.get("url") if isinstance(request, dict) else None
        if (
            not _text_or_none(checkpoint)
            or not _text_or_none(pending)
            or not isinstance(params, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())
            or not _text_or_none(url)
        ):
            raise CheckpointInvalid("a resume checkpoint needs checkpoint, pending and next")
        assert isinstance(request, dict)
        return cls(
            checkpoint,
            pending,
            PageRequest(params=dict(params), url=url, page_token=request.get("pageToken")),
        )


def _text_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


class Delta(ABC):
    """One poll's incremental position.

    ``stored`` is the checkpoint the listing filters from; ``held`` is what the
    store holds now (the same, or a :class:`ResumePosition` around it), which
    is what a page may leave in place; ``resume_from``, when set, is the page
    a cut-short listing goes on from.
    """

    def __init__(self, stored: str | None) -> None:
        self.stored = stored
        self.held = stored
        self.resume_from: PageRequest | None = None

    def pending(self) -> str | None:
        """The checkpoint to store if the listing ended now (the high-water mark)."""
        return self.checkpoint(complete=True)

    def seed(self, pending: str | None) -> None:  # noqa: B027 - optional hook
        """Start from the high-water mark a cut-short poll of the same listing reached."""

    def completes_at_end(self) -> bool:
        """Whether only a complete listing yields a new position, so a poll cut short
        must remember where it stopped (False: every page's checkpoint is one)."""
        return True

    def truncated(self, next_request: PageRequest) -> str | None:
        """The checkpoint of a poll that ``maxPages`` cut short before ``next_request``."""
        if not self.completes_at_end():
            return self.checkpoint(complete=False)
        return ResumePosition(self.stored, self.pending(), next_request).encode()

    @abstractmethod
    def init_request(self, request: PageRequest) -> None:
        """Make the first request ask only for what changed since ``stored``."""

    def template_value(self) -> str | None:
        """What ``{{checkpoint}}`` renders as (Linear GraphQL variables, Confluence CQL)."""
        return self.stored

    def keep(self, items: list[Any]) -> list[Any]:
        """Items worth mapping (a client-side since filter drops the rest)."""
        return items

    def reached_checkpoint(self, items: list[Any]) -> bool:
        """Newest-first listings: True once a page reaches what earlier polls saw."""
        return False

    @abstractmethod
    def update_state(self, body: Any, items: list[Any]) -> None:
        """Read one page (the response body and its items)."""

    @abstractmethod
    def checkpoint(self, *, complete: bool) -> str | None:
        """The checkpoint safe to store after the pages read so far.

        ``complete`` is True once the listing has been read to its end (no next
        page, or a newest-first listing reached the old checkpoint).
        """


def _before(moment: datetime | None, span: timedelta) -> datetime | None:
    """``moment - span``; None when there is no moment or it would fall before year 1
    (a checkpoint of ``0001-01-01T00:00:00Z`` less the overlap)."""
    if moment is None:
        return None
    try:
        return moment - span
    except OverflowError:
        return None


class TimestampFilter(Delta):
    """Ask for items updated since the newest timestamp seen.

    GitHub ``GET /repos/o/r/issues?since=2024-05-01T09:59:59Z&sort=updated&direction=asc``::

        [{"id": 1, "number": 7, "updated_at": "2024-05-01T10:00:00Z", ...}, ...]

    The first poll reaches back ``initialLookbackSeconds``; later polls ask from
    the checkpoint minus ``overlapSeconds`` so same-second (or minute-precision:
    Notion, Confluence) updates are never missed — the dedup key absorbs the
    repeats. The new checkpoint is the newest item timestamp (capped at now, so
    a bogus future date cannot skip real items), never earlier than the old one.
    It advances after every page only when ``sortedAscending`` says later pages
    cannot hold older items; otherwise only once the listing is complete.
    """

    def __init__(
        self,
        spec: TimestampFilterView,
        stored: str | None,
        *,
        now: datetime,
        lookback: timedelta,
        item_timestamp: ItemTimestamp,
        client_side: bool,
        stop_at_checkpoint: bool,
    ) -> None:
        super().__init__(stored)
        self.spec = spec
        self._timestamp = item_timestamp
        self._client_side = client_side
        self._stop_at_checkpoint = stop_at_checkpoint
        self._now = now
        if stored is None:
            floor = now - lookback
            self.since = floor
        else:
            parsed = parse_timestamp(stored)
            since = _before(parsed, timedelta(seconds=spec.overlap_seconds))
            if parsed is None or since is None:
                raise CheckpointInvalid(f"checkpoint {stored!r} is not a timestamp")
            floor = parsed
            self.since = since
        self.floor = floor
        self.newest = floor

    def template_value(self) -> str:
        return format_timestamp(self.since, self.spec.format)

    def init_request(self, request: PageRequest) -> None:
        if self.spec.query_param is not None:
            request.defaults[self.spec.query_param] = self.template_value()

    def _older(self, item: Any) -> bool:
        moment = self._timestamp(item)
        return moment is not None and moment < self.since

    def keep(self, items: list[Any]) -> list[Any]:
        if not self._client_side:
            return items
        return [item for item in items if not self._older(item)]

    def reached_checkpoint(self, items: list[Any]) -> bool:
        return self._stop_at_checkpoint and any(self._older(item) for item in items)

    def update_state(self, body: Any, items: list[Any]) -> None:
        for item in items:
            moment = self._timestamp(item)
            if moment is not None and self.newest < moment <= self._now:
                self.newest = moment

    def completes_at_end(self) -> bool:
        return not self.spec.sorted_ascending

    def seed(self, pending: str | None) -> None:
        moment = parse_timestamp(pending) if pending is not None else None
        if moment is not None and self.newest < moment <= self._now:
            self.newest = moment

    def checkpoint(self, *, complete: bool) -> str | None:
        if complete or self.spec.sorted_ascending:
            return iso_utc(self.newest)
        return self.held


class DeltaToken(Delta):
    """An opaque "changes since now" token handed out on the last page.

    Microsoft Graph ``GET /me/mailFolders/inbox/messages/delta`` pages with
    ``@odata.nextLink``; the final page carries::

        {"value": [...], "@odata.deltaLink":
         "https://graph.microsoft.com/v1.0/me/mailFolders/inbox/messages/delta?$deltatoken=Y3…"}

    With ``tokenIsUrl`` the next poll calls that URL verbatim; otherwise the
    token is sent as ``tokenParam``. It is stored only once the listing is
    complete: the token stands for everything before it.
    """

    def __init__(self, spec: DeltaTokenView, stored: str | None) -> None:
        super().__init__(stored)
        self.spec = spec
        self._path = compile_path(spec.token_path)
        self.found: str | None = None

    def init_request(self, request: PageRequest) -> None:
        if self.stored is None:
            return
        if self.spec.token_is_url:
            request.url = self.stored
        else:
            request.defaults[self.spec.token_param] = self.stored

    def update_state(self, body: Any, items: list[Any]) -> None:
        token = self._path.first(body)
        if isinstance(token, str) and token:
            self.found = token

    def pending(self) -> str | None:
        return self.found

    def seed(self, pending: str | None) -> None:
        self.found = pending

    def checkpoint(self, *, complete: bool) -> str | None:
        if complete and self.found is not None:
            return self.found
        return self.held


class Cursor(Delta):
    """A durable cursor each page hands back, valid to resume from.

    Asana ``GET /events?resource=1201&sync=de4774f6915eae04714ca93bb2f5ee81``::

        {"data": [...], "sync": "edfc0896b370b7a479886d316131bf5c", "has_more": false}

    Each page's cursor resumes after that page, so it is safe to store per page.
    """

    def __init__(self, spec: CursorView, stored: str | None) -> None:
        super().__init__(stored)
        self.spec = spec
        self._path = compile_path(spec.cursor_path)
        self.latest: str | None = None

    def init_request(self, request: PageRequest) -> None:
        if self.stored is not None:
            request.defaults[self.spec.cursor_param] = self.stored

    def update_state(self, body: Any, items: list[Any]) -> None:
        value = self._path.first(body)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            self.latest = str(value)

    def completes_at_end(self) -> bool:
        return False

    def checkpoint(self, *, complete: bool) -> str | None:
        return self.latest if self.latest is not None else self.held


class SinceId(Delta):
    """Ask for items with ids above the highest one seen.

    Trello ``GET /1/boards/{id}/actions?since=5f1b2c3d4e5f60718293a4b5&limit=1000``
    (newest first)::

        [{"id": "5f1b2c3d4e5f60718293a4b9", "type": "updateCard", "date": "2024-05-01T10:00:00.000Z", ...}]

    Ids compare as numbers or as strings (Trello's hex ids of equal length sort
    by creation). Newest-first means later pages hold lower ids, so the
    maximum is stored only once the listing is complete.
    """

    def __init__(self, spec: SinceIdView, stored: str | None) -> None:
        super().__init__(stored)
        self.spec = spec
        self._path = compile_path(spec.id_path)
        self.highest: str | None = stored
        if stored is not None and self._key(stored) is None:
            raise CheckpointInvalid(f"checkpoint {stored!r} is not a {spec.order} id")

    def _key(self, value: Any) -> Any:
        """What ids compare by: an int, or the string itself; None for a non-id."""
        if isinstance(value, bool) or value is None:
            return None
        if self.spec.order == "numeric":
            try:
                return int(str(value))
            except ValueError:
                return None
        return value if isinstance(value, str) and value else None

    def init_request(self, request: PageRequest) -> None:
        if self.stored is not None:
            request.defaults[self.spec.id_param] = self.stored

    def update_state(self, body: Any, items: list[Any]) -> None:
        for item in items:
            self._consider(self._path.first(item))

    def _consider(self, value: Any) -> None:
        key = self._key(value)
        best = self._key(self.highest) if self.highest is not None else None
        if key is not None and (best is None or key > best):
            self.highest = str(value)

    def seed(self, pending: str | None) -> None:
        self._consider(pending)

    def checkpoint(self, *, complete: bool) -> str | None:
        return self.highest if complete else self.held


DeltaFactory = Callable[[str | None, datetime], Delta]


def _resuming(make: DeltaFactory) -> DeltaFactory:
    """``make``, reading a :class:`ResumePosition` checkpoint as "go on from there"."""

    def build(stored: str | None, now: datetime) -> Delta:
        position = ResumePosition.decode(stored) if stored is not None else None
        if position is None:
            return make(stored, now)
        delta = make(position.checkpoint, now)
        delta.held = stored
        delta.seed(position.pending)
        delta.resume_from = position.next
        return delta

    return build


@datarecord
class _ItemTimestamp:
    """An item's own time, read once per item of every page: path and parser looked up once."""

    path: CompiledPath
    fmt: Any
    _first: Callable[[Any], Any] = field(init=False, repr=False, compare=False)
    _parse: Callable[[Any], datetime | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_first", self.path.first)
        object.__setattr__(self, "_parse", parser_for(self.fmt))

    def __call__(self, item: Any) -> datetime | None:
        return self._parse(self._first(item))


def delta_factory(spec: PollingView, mapping: FieldMappingView) -> DeltaFactory:
    """Plan a descriptor's delta strategy once; call the result with (checkpoint, now) per poll."""
    return _resuming(_plain_factory(spec, mapping))


def _plain_factory(spec: PollingView, mapping: FieldMappingView) -> DeltaFactory:
    delta = spec.delta
    if isinstance(delta, TimestampFilterView):
        timestamps = _ItemTimestamp(compile_path(mapping.timestamp_path), mapping.timestamp_format)
        lookback = timedelta(seconds=spec.initial_lookback_seconds)
        client_side, stop_at = spec.client_side_since, spec.stop_at_checkpoint
        return lambda stored, now: TimestampFilter(
            delta,
            stored,
            now=now,
            lookback=lookback,
            item_timestamp=timestamps,
            client_side=client_side,
            stop_at_checkpoint=stop_at,
        )
    if isinstance(delta, DeltaTokenView):
        compile_path(delta.token_path)
        return lambda stored, _now: DeltaToken(delta, stored)
    if isinstance(delta, CursorView):
        compile_path(delta.cursor_path)
        return lambda stored, _now: Cursor(delta, stored)
    compile_path(delta.id_path)
    return lambda stored, _now: SinceId(delta, stored)
