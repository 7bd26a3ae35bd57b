"""Asana's poll: one project's event stream, resolved to full tasks and comments.

The Events API (https://developers.asana.com/reference/getevents) is a change
feed with a cursor, the *sync token*::

    GET /events?resource=1201&sync=de4774f6915eae04714ca93bb2f5ee81
    {"data": [{"action": "changed", "resource": {"gid": "1202", "resource_type": "task"},
               "change": {"field": "assignee", "action": "changed", ...}, ...}],
     "sync": "edfc0896b370b7a479886d316131bf5c", "has_more": false}

* The first request (no ``sync``) and a request with an expired token answer
  ``412 Precondition Failed`` with a fresh token in the body: events start
  *from that moment*. Tokens "always expire after 24 hours, but may expire
  sooner", so whatever changed before the fresh token is read with
  ``GET /tasks?project=…&modified_since=…`` (https://developers.asana.com/reference/gettasks),
  paginated with ``limit``/``offset`` (https://developers.asana.com/docs/pagination).
  The checkpoint therefore keeps the token *and* the time of the last poll
  that read the stream to its end (``<time> <sync token>``), so an expired
  token costs a catch-up, never a lost change.
* Events are compact: each page's task and comment gids are de-duplicated and
  fetched in full (``opt_fields``), a few at a time.
* ``429`` with ``Retry-After`` (https://developers.asana.com/docs/rate-limits)
  is waited out by :class:`~ucf.native.UpstreamCalls`.

A signal's identity is the task gid and the ``modified_at`` its change gave the
task: an assignment's or an edit's event time (the catch-up, which sees no
events, reads the task's ``modified_at``), a comment's ``created_at``; a
creation is ``created``, once per task; a completion ``completed:<completed_at>``;
an existing task added to the project is a change at its ``modified_at`` as
fetched (see :func:`changes_of`). So the poll, a catch-up and a webhook that
report the same change store one signal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx

from ucf.native import (
    CheckpointInvalid,
    ConfigError,
    ConnectorDescriptor,
    CredentialMissing,
    CredentialsChanged,
    HealthCheckPlan,
    HealthResult,
    HttpSettings,
    ItemError,
    MalformedResponse,
    MappedSignal,
    MappingResult,
    OAuth2Config,
    OAuth2Flow,
    Page,
    PollSchedule,
    Priority,
    SourceContext,
    UpstreamCalls,
    build_auth,
    build_signal,
    parse_json,
    parse_timestamp,
    resolve_config,
)

__all__ = [
    "CATCH_UP_OVERLAP",
    "CREATED",
    "INITIAL_LOOKBACK",
    "STORY_FIELDS",
    "TASK_FIELDS",
    "AsanaSource",
    "Change",
    "Checkpoint",
    "EventPlan",
    "Hint",
    "changes_from_state",
    "changes_of",
    "resolve_events",
    "signal_of",
]

CONNECTOR: Final = "asana"
DEFAULT_BASE_URL: Final = "https://app.asana.com/api/1.0"

TASK_FIELDS: Final = ",".join(
    (
        "name",
        "resource_subtype",
        "created_at",
        "modified_at",
        "completed",
        "completed_at",
        "due_on",
        "permalink_url",
        "assignee.name",
        "followers.name",
        "tags.name",
        "memberships.project.name",
        "memberships.section.name",
        "custom_fields.name",
        "custom_fields.resource_subtype",
        "custom_fields.display_value",
        "custom_fields.enum_value.name",
        "parent.name",
    )
)
"""What a signal needs of a task (``opt_fields``; Asana returns compact tasks without it)."""

STORY_FIELDS: Final = "created_at,created_by.name,resource_subtype,text,target.name"
"""What a comment signal needs of a story."""

PAGE_SIZE: Final = 100
"""``limit`` of ``GET /tasks`` (1-100); Asana paginates only when it is sent."""

INITIAL_LOOKBACK: Final = timedelta(days=7)
"""How far back the first poll reads the project's tasks (``modified_since``)."""

CATCH_UP_OVERLAP: Final = timedelta(minutes=15)
"""Read this much before the last complete poll when a sync token has expired: events
reach the stream "within a minute" on average, "most within 10 minutes" (Asana's
webhooks guide), so a change made just before that poll may not have been in it."""

FETCH_CONCURRENCY: Final = 8
"""Tasks fetched at once per page (Asana allows 50 concurrent GETs per token)."""

OAUTH_TOKEN_PATH: Final = "/-/oauth_token"  # noqa: S105 - a path
"""https://app.asana.com/-/oauth_token (https://developers.asana.com/docs/oauth)."""

PRIORITIES: Final[Mapping[str, Priority]] = {
    "urgent": "critical",
    "critical": "critical",
    "highest": "critical",
    "high": "high",
    "medium": "medium",
    "normal": "medium",
    "low": "low",
    "lowest": "low",
}
"""Options of a "Priority" custom field (Asana's template offers High/Medium/Low)."""

SIGNAL_TYPES: Final[Mapping[str, str]] = {
    "created": "task_created",
    "updated": "task_updated",
    "completed": "task_completed",
    "assigned": "task_assigned",
    "commented": "task_commented",
}

CREATED: Final = "created"
"""The version of a task's creation (a completion's is ``completed:<completed_at>``, the
others' its ``modified_at``)."""

OWN_VERSIONS: Final = frozenset({"created", "completed"})
"""Kinds of task change versioned by what happened, not by the task's ``modified_at``."""

CREATED_WINDOW: Final = timedelta(seconds=60)
"""A task listed by ``modified_since`` whose last change is this close to its creation is new;
so is a task whose ``added`` event is this close to it (later, it was an existing task)."""


# --------------------------------------------------------------------------- items


@dataclass(frozen=True, slots=True)
class Change:
    """One item of a page: a task and what happened to it, or a comment on it.

    ``kind`` is decided where the events are known (see :func:`changes_of`);
    ``project_gid`` picks the task's section in the followed project. ``at`` is the
    time of the event that made an assignment or an edit, as Asana wrote it: that
    change's version, the ``modified_at`` it gave the task (None: the task's
    ``modified_at`` as fetched, which a later change may have moved since).
    """

    kind: str
    task: dict[str, Any]
    story: dict[str, Any] | None = None
    project_gid: str = ""
    at: str | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where the stream resumes (the sync token) and where a catch-up would start.

    Stored as text, the time first so checkpoints sort by it and read well::

        2024-05-10T10:45:00.000Z de4774f6915eae04714ca93bb2f5ee81

    ``since`` is the start of the last poll that read the stream to its end,
    less :data:`CATCH_UP_OVERLAP`: everything modified before it has been seen.
    """

    since: datetime
    sync: str

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        moment, _, sync = text.partition(" ")
        since = _time(moment)
        if since is None or not sync or " " in sync:
            raise CheckpointInvalid(
                f"checkpoint {text[:80]!r} is not an Asana position ('<ISO time> <sync token>')"
            )
        return cls(since, sync)

    def dump(self) -> str:
        return f"{_asana_time(self.since)} {self.sync}"


def _gid(value: Any) -> str | None:
    """A gid as Asana writes them (digits); anything else never reaches a URL path."""
    gid = value.get("gid") if isinstance(value, dict) else None
    return gid if isinstance(gid, str) and gid.isdigit() else None


def _time(value: Any) -> datetime | None:
    """An Asana time (ISO 8601; without an offset, UTC) in UTC; None for anything else,
    a time outside datetime's range in UTC included."""
    return parse_timestamp(value, "iso8601")


def _asana_time(moment: datetime) -> str:
    """``2024-05-10T11:00:00.000Z``, the form Asana writes and reads."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Hint:
    """What one event says about a task, and when (its ``created_at`` as Asana wrote it).

    ``kind`` is ``added`` (to the project, or as a subtask: a creation, or an existing
    task moved or added there), ``completed``, ``assigned`` or ``updated``.
    """

    kind: str
    at: str | None = None


@dataclass(slots=True)
class EventPlan:
    """What a batch of compact events asks to fetch: tasks (with what happened) and comments.

    Webhook payloads and ``GET /events`` pages carry the same event objects
    (https://developers.asana.com/reference/events)::

        {"user": {"gid": "1201", "resource_type": "user"}, "created_at": "2024-05-10T11:00:00.147Z",
         "action": "changed", "resource": {"gid": "1202", "resource_type": "task"},
         "parent": null, "change": {"field": "completed", "action": "changed"}}

    A task ``added`` to the project (or as a subtask) is new or newly there
    (:func:`changes_of` tells which); ``changed`` names the field; a story ``added``
    under a task with subtype ``comment_added`` is a comment. Removals, deletions
    and everything else (sections, the project itself, system stories) are no signal.
    """

    tasks: dict[str, list[Hint]] = field(default_factory=dict)
    comments: dict[str, str] = field(default_factory=dict)
    """story gid -> task gid"""

    def add(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        resource = event.get("resource")
        gid = _gid(resource)
        if gid is None:
            return
        assert isinstance(resource, dict)
        kind, action = resource.get("resource_type"), event.get("action")
        parent = event.get("parent")
        if kind == "task":
            hint = _task_hint(action, parent, event.get("change"))
            if hint is not None:
                at = event.get("created_at")
                when = at if isinstance(at, str) and _time(at) is not None else None
                self.tasks.setdefault(gid, []).append(Hint(hint, when))
        elif kind == "story" and action == "added":
            subtype = resource.get("resource_subtype")
            task = _gid(parent)
            on_task = isinstance(parent, dict) and parent.get("resource_type") == "task"
            if task is not None and on_task and subtype in (None, "comment_added"):
                self.comments[gid] = task

    def __bool__(self) -> bool:
        return bool(self.tasks or self.comments)


def _task_hint(action: Any, parent: Any, change: Any) -> str | None:
    if action == "added":
        placed_in = parent.get("resource_type") if isinstance(parent, dict) else None
        return "added" if placed_in in ("project", "task") else "updated"
    if action == "changed":
        changed = change.get("field") if isinstance(change, dict) else None
        if changed == "completed":
            return "completed"
        if changed == "assignee":
            return "assigned"
        return "updated"
    if action == "undeleted":
        return "updated"
    return None  # removed from the project, deleted: nothing to fetch


def changes_of(hints: Iterable[Hint], task: dict[str, Any], project_gid: str = "") -> list[Change]:
    """What a batch's events say about one task, checked against the task as fetched.

    * ``added`` at (about) the task's creation is its creation, once per task
      (``created``). An existing task moved or added to the project is a change of
      the task, at its ``modified_at``: that is all a catch-up can see of it
      (``modified_since`` lists such a task, with no trace of when it was added).
    * A completion is one if the task is still complete (``completed:<completed_at>``).
    * An assignment is one if the task still has an assignee, versioned by its event's
      time (the ``modified_at`` it gave the task): read again after a later edit, or
      after a later comment, it is still the one assignment.
    * The other changes are one ``task_updated`` at the latest of them (its event's
      time), unless none came after this batch's creation, completion or assignment:
      that signal then says it (the most telling).

    So the same events give the same signals however deliveries or event pages split
    them: a creation and a completion in one batch are both signalled, as they are
    when two pages bring them.
    """
    created = _time(task.get("created_at"))
    creation = completion = False
    own: list[datetime | None] = []  # when this batch's creation, completion, assignment were
    assigned: tuple[datetime | None, str | None] | None = None
    edit: tuple[datetime | None, str | None] | None = None  # (when, version: None = modified_at)
    for hint in hints:
        at = _time(hint.at)
        if hint.kind == "added" and (
            created is None or at is None or abs(at - created) <= CREATED_WINDOW
        ):
            creation = True
            own.append(at)
        elif hint.kind == "completed" and task.get("completed") is True:
            completion = True
            own.append(at)
        elif hint.kind == "assigned" and task.get("assignee"):
            if assigned is None or _later(at, assigned[0]):
                assigned = (at, hint.at)
        elif edit is None or _later(at, edit[0]):
            edit = (at, None if hint.kind == "added" else hint.at)
    changes = []
    if creation:
        changes.append(Change("created", task, project_gid=project_gid))
    if completion:
        changes.append(Change("completed", task, project_gid=project_gid))
    if assigned is not None and _after_all(assigned[0], own):
        changes.append(Change("assigned", task, project_gid=project_gid, at=assigned[1]))
        own.append(assigned[0])
    if edit is not None and _after_all(edit[0], own):
        changes.append(Change("updated", task, project_gid=project_gid, at=edit[1]))
    return changes


def _later(at: datetime | None, than: datetime | None) -> bool:
    """Whether ``at`` comes after ``than``; a time unknown is the latest (read as fetched)."""
    return at is None or (than is not None and at > than)


def _after_all(at: datetime | None, others: Sequence[datetime | None]) -> bool:
    """Whether a change at ``at`` came after every one of ``others`` (none: yes)."""
    return not others or (at is not None and all(o is not None and at > o for o in others))


def changes_from_state(
    task: dict[str, Any], since: datetime, project_gid: str = ""
) -> list[Change]:
    """What a ``modified_since=since`` listing can tell without events: new, completed, or
    changed (a task created and completed within a minute is both, as its events say).

    New is created since ``since`` and last changed within a minute of it: a task
    created before, listed with its ``modified_at`` of then, was added to the project
    (``modified_since`` counts that, ``modified_at`` does not), not created.
    """
    modified = _time(task.get("modified_at"))
    if modified is None:
        return [Change("updated", task, project_gid=project_gid)]
    created = _time(task.get("created_at"))
    new = created is not None and created >= since and modified - created <= CREATED_WINDOW
    completed = _time(task.get("completed_at"))
    if (
        task.get("completed") is True
        and completed is not None
        and modified - completed <= timedelta(seconds=2)
    ):
        kinds = ["created", "completed"] if new else ["completed"]
    else:
        kinds = ["created"] if new else ["updated"]
    return [Change(kind, task, project_gid=project_gid) for kind in kinds]


async def _bounded(calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run ``calls`` a few at a time, results in order; the first failure cancels the rest."""
    results: list[Any] = [None] * len(calls)
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def run(index: int) -> None:
        async with gate:
            results[index] = await calls[index]()

    try:
        async with asyncio.TaskGroup() as group:
            for index in range(len(calls)):
                group.create_task(run(index))
    except BaseExceptionGroup as failed:
        first: BaseException = failed
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return results


async def _fetch(calls: UpstreamCalls, url: str, fields: str) -> dict[str, Any] | None:
    """One object in full, or None when it is gone (``404``: deleted since its event)."""
    response = await calls.send("GET", url, params={"opt_fields": fields}, accept=(404,))
    if response.status_code == 404:
        return None
    body = parse_json(response)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise MalformedResponse(f"GET {httpx.URL(url).path}: no 'data' object in the response")
    return data


async def resolve_events(
    calls: UpstreamCalls, base_url: str, events: Iterable[Any], project_gid: str
) -> tuple[list[Change], int]:
    """Compact events as full tasks and comments; also how many were gone when fetched."""
    plan = EventPlan()
    for event in events:
        plan.add(event)
    if not plan:
        return [], 0
    task_gids = list(plan.tasks)
    task_gids += [gid for gid in dict.fromkeys(plan.comments.values()) if gid not in plan.tasks]
    story_gids = list(plan.comments)
    fetches: list[Callable[[], Awaitable[Any]]] = [
        _fetcher(calls, f"{base_url}/tasks/{gid}", TASK_FIELDS) for gid in task_gids
    ]
    fetches += [_fetcher(calls, f"{base_url}/stories/{gid}", STORY_FIELDS) for gid in story_gids]
    fetched = await _bounded(fetches)
    tasks = dict(zip(task_gids, fetched[: len(task_gids)], strict=True))
    comments: list[Change] = []
    owned: set[tuple[str, Any]] = set()  # (task gid, the task version a comment made)
    gone = 0
    for story_gid, story in zip(story_gids, fetched[len(task_gids) :], strict=True):
        task_gid = plan.comments[story_gid]
        task = tasks[task_gid]
        if story is None or task is None:
            gone += 1
            continue
        if story.get("resource_subtype", "comment_added") != "comment_added":
            continue  # a system story the event did not label
        comments.append(Change("commented", task, story, project_gid))
        owned.add((task_gid, story.get("created_at")))
    # A comment is the task version it made (its created_at is the task's modified_at:
    # signal_of). A task change read at the task's modified_at as fetched (an existing
    # task added to the project), fetched after a comment of this batch, is at that
    # version, which the comment owns: listed as well, it took the key first and the
    # comment was dropped as its duplicate. A creation and a completion are versions of
    # their own, an assignment and an edit are versioned by their events' times.
    changes: list[Change] = []
    for gid, hints in plan.tasks.items():
        task = tasks[gid]
        if task is None:
            gone += 1
            continue
        for change in changes_of(hints, task, project_gid):
            version = change.at if change.at is not None else task.get("modified_at")
            if change.kind not in OWN_VERSIONS and (gid, version) in owned:
                continue
            changes.append(change)
    return changes + comments, gone


def _fetcher(calls: UpstreamCalls, url: str, fields: str) -> Callable[[], Awaitable[Any]]:
    return lambda: _fetch(calls, url, fields)


# --------------------------------------------------------------------------- signals


def _names(values: Any) -> list[str]:
    if not isinstance(values, list):
        return []
    found = []
    for value in values:
        if isinstance(value, dict):
            name = value.get("name") or value.get("gid")
            if isinstance(name, str) and name:
                found.append(name)
    return found


def _priority(task: Mapping[str, Any]) -> Priority | None:
    fields = task.get("custom_fields")
    if not isinstance(fields, list):
        return None
    for custom in fields:
        if (
            not isinstance(custom, dict)
            or str(custom.get("name", "")).strip().lower() != "priority"
        ):
            continue
        option = custom.get("enum_value")
        text = option.get("name") if isinstance(option, dict) else custom.get("display_value")
        if isinstance(text, str):
            return PRIORITIES.get(text.strip().lower())
    return None


def _sections(task: Mapping[str, Any], project_gid: str) -> list[str]:
    memberships = task.get("memberships")
    if not isinstance(memberships, list):
        return []
    sections = []
    for membership in memberships:
        if not isinstance(membership, dict):
            continue
        project = membership.get("project")
        if project_gid and isinstance(project, dict) and project.get("gid") != project_gid:
            continue
        section = membership.get("section")
        if isinstance(section, dict) and isinstance(section.get("name"), str):
            sections.append(section["name"])
    return sections


def signal_of(change: Change, project_id: str) -> MappedSignal:
    """One signal; raises ``ValueError`` for an item without the fields its identity needs."""
    task = change.task
    task_gid = _gid(task)
    if task_gid is None:
        raise ValueError("the task has no gid")
    name = task.get("name") if isinstance(task.get("name"), str) else ""
    assignee = task.get("assignee")
    people = [assignee.get("name") or assignee.get("gid")] if isinstance(assignee, dict) else []
    people += _names(task.get("followers"))
    related = [task_gid]
    parent = _gid(task.get("parent"))
    if parent is not None:
        related.append(parent)
    story = change.story
    if story is not None:
        # A comment is the task version it made: adding a story modifies the task, so
        # its created_at is the task's modified_at then, and a catch-up that lists the
        # task as it was after the comment names the same version (one signal).
        created = story.get("created_at")
        at = _time(created)
        if _gid(story) is None or at is None or not isinstance(created, str):
            raise ValueError("the comment has no gid or created_at")
        author = story.get("created_by")
        if isinstance(author, dict):
            people.insert(0, author.get("name") or author.get("gid"))
        text = story.get("text") if isinstance(story.get("text"), str) else ""
        summary = f"{name}: {text}" if text else name
        version, raw = created, {**story, "target": task}
    else:
        modified = task.get("modified_at")
        at = _time(modified)
        if at is None or not isinstance(modified, str):
            raise ValueError("the task has no modified_at")
        summary, version, raw = name, modified, task
        # A creation and a completion are versions of their own: each fetch of the task
        # reads its latest modified_at, so one edited before a poll or a delivery
        # fetched it was read as a second creation or completion (and a comment after a
        # completion, which owns that modified_at, was dropped as its duplicate).
        if change.kind == "created":
            version, at = CREATED, _time(task.get("created_at")) or at
        elif change.kind == "completed":
            completed = task.get("completed_at")
            done = _time(completed)
            if done is not None and isinstance(completed, str):
                version, at = f"completed:{completed}", done
        elif change.at is not None and (when := _time(change.at)) is not None:
            # An assignment or an edit is the version its event made: the task's
            # modified_at then, which a later edit or comment has moved since.
            version, at = change.at, when
    return build_signal(
        source=CONNECTOR,
        project_id=project_id,
        item_id=task_gid,
        version=version,
        timestamp=at,
        signal_type=SIGNAL_TYPES.get(change.kind, "task_updated"),
        summary=summary or f"Asana task {task_gid}",
        raw=raw,
        priority=_priority(task),
        participants=[p for p in people if isinstance(p, str) and p],
        related_tickets=related,
        tags=_names(task.get("tags")) + _sections(task, change.project_gid),
    )


def normalise(items: Sequence[Any], project_id: str) -> MappingResult:
    """Changes as signals; an item that cannot be one is an :class:`ItemError`, never a raise."""
    result = MappingResult()
    for index, item in enumerate(items):
        if not isinstance(item, Change):
            result.errors.append(ItemError(index, f"not an Asana change: {type(item).__name__}"))
            continue
        try:
            result.signals.append(signal_of(item, project_id))
        except ValueError as error:
            result.errors.append(ItemError(index, str(error), _gid(item.task)))
    return result


# --------------------------------------------------------------------------- the source


def token_url(base_url: str) -> str:
    """Asana's token endpoint on the API's host: ``https://app.asana.com/-/oauth_token``."""
    url = httpx.URL(base_url)
    return str(url.copy_with(path=OAUTH_TOKEN_PATH, query=None))


class AsanaSource:
    """The ``asana`` connector's runtime (see the module doc)."""

    schedule = PollSchedule(
        interval_seconds=120,
        rate_limit_rpm=120,
        initial_lookback_seconds=int(INITIAL_LOOKBACK.total_seconds()),
    )
    """Events are cheap ("faster and subject to higher rate limits than requesting the
    resource itself"); free domains allow 150 requests a minute, so keep headroom."""

    def __init__(self, descriptor: ConnectorDescriptor) -> None:
        from ucf.native.asana.webhooks import AsanaWebhooks  # the handler uses this module

        self._descriptor = descriptor
        self._health = HealthCheckPlan.compile(descriptor)
        self.webhooks = AsanaWebhooks(self)

    @property
    def descriptor(self) -> ConnectorDescriptor:
        return self._descriptor

    # -- settings

    def settings(self, config: Mapping[str, str]) -> tuple[str, str]:
        """``(base URL, project gid)``, checked; a clear :class:`ConfigError` otherwise."""
        resolved = resolve_config(self._descriptor, config)
        project = resolved.get("projectGid", "").strip()
        if not project.isdigit():
            raise ConfigError(f"projectGid must be an Asana gid (digits), not {project!r}")
        return resolved.get("baseUrl", DEFAULT_BASE_URL), project

    def auth(
        self,
        credentials: Mapping[str, str],
        *,
        config: Mapping[str, str],
        token_client: httpx.AsyncClient,
        on_rotate: CredentialsChanged | None,
        now: Callable[[], datetime],
        settings: HttpSettings,
    ) -> httpx.Auth:
        """OAuth 2.0 with refresh when a refresh token is stored, else the personal access token.

        Both are Bearer tokens (https://developers.asana.com/docs/authentication).
        """
        if credentials.get("refreshToken"):
            base = config.get("baseUrl") or DEFAULT_BASE_URL
            oauth = _oauth_config(token_url(base))
            return OAuth2Flow(
                oauth,
                credentials,
                token_url=oauth.token_url,
                token_client=token_client,
                on_rotate=on_rotate,
                now=now,
                settings=settings,
                sleep=asyncio.sleep,
            )
        if not credentials.get("token"):
            raise CredentialMissing(
                "credential 'token' is not set (or connect with OAuth: clientId, clientSecret "
                "and refreshToken)"
            )
        return build_auth(self._descriptor.auth, credentials, token_client=token_client)

    # -- poll

    def fetch_delta(
        self,
        context: SourceContext,
        checkpoint: str | None,
        *,
        now: datetime,
        max_pages: int | None = None,
    ) -> AsyncIterator[Page]:
        base, project = self.settings(context.config)
        state = None if checkpoint is None else Checkpoint.parse(checkpoint)
        return self._pages(context, base, project, state, checkpoint, now, max_pages)

    async def _pages(
        self,
        context: SourceContext,
        base: str,
        project: str,
        state: Checkpoint | None,
        stored: str | None,
        now: datetime,
        max_pages: int | None,
    ) -> AsyncIterator[Page]:
        calls = UpstreamCalls(context)
        number = 0
        current = stored
        since = now - INITIAL_LOOKBACK if state is None else state.since
        sync = None if state is None else state.sync
        sent: set[str] = set()  # the sync tokens this poll sent: one handed back again loops
        while True:
            if sync is not None:
                sent.add(sync)
            params = {"resource": project} if sync is None else {"resource": project, "sync": sync}
            response = await calls.send("GET", f"{base}/events", params=params, accept=(412,))
            body = parse_json(response)
            fresh = body.get("sync") if isinstance(body, dict) else None
            if not isinstance(fresh, str) or not fresh or " " in fresh:
                raise MalformedResponse(f"GET /events: no sync token (HTTP {response.status_code})")
            if response.status_code == 412:
                # No token yet, or it expired: read what the stream cannot replay.
                done = Checkpoint(now - CATCH_UP_OVERLAP, fresh)
                catch_up = self._catch_up(
                    calls, base, project, since, number, current, done, max_pages
                )
                async for page in catch_up:
                    yield page
                return
            events = body.get("data")
            if not isinstance(events, list):
                raise MalformedResponse("GET /events: 'data' is not a list")
            more = body.get("has_more") is True
            changes, gone = await resolve_events(calls, base, events, project)
            number += 1
            cut = more and max_pages is not None and number >= max_pages
            last = not more or cut
            # Mid-stream the catch-up start stays where it was: a later page may still hold
            # older changes. Only a stream read to its end moves it up to this poll.
            current = Checkpoint(since if more else now - CATCH_UP_OVERLAP, fresh).dump()
            yield calls.page(number, changes, current, last=last, truncated=cut, dropped=gone)
            if last:
                return
            if fresh in sent:
                raise MalformedResponse(
                    f"GET /events: has_more with a sync token this poll already sent, after"
                    f" {number} page(s); stopped (following it would loop)"
                )
            sync = fresh

    async def _catch_up(
        self,
        calls: UpstreamCalls,
        base: str,
        project: str,
        since: datetime,
        number: int,
        stored: str | None,
        position: Checkpoint,
        max_pages: int | None,
    ) -> AsyncIterator[Page]:
        """``GET /tasks?project=…&modified_since=…`` page by page; the new position is stored
        only with the last page (a crash midway redoes the catch-up, which dedup absorbs)."""
        params: dict[str, str] = {
            "project": project,
            "modified_since": _asana_time(since),
            "opt_fields": TASK_FIELDS,
            "limit": str(PAGE_SIZE),
        }
        offsets: set[str] = set()  # the offsets this catch-up followed: a repeat loops
        while True:
            body = await calls.json("GET", f"{base}/tasks", params=params)
            tasks = body.get("data") if isinstance(body, dict) else None
            if not isinstance(tasks, list):
                raise MalformedResponse("GET /tasks: 'data' is not a list")
            next_page = body.get("next_page")
            offset = next_page.get("offset") if isinstance(next_page, dict) else None
            more = isinstance(offset, str) and bool(offset)
            number += 1
            cut = more and max_pages is not None and number >= max_pages
            last = not more or cut
            changes = [
                change
                for task in tasks
                if isinstance(task, dict)
                for change in changes_from_state(task, since, project)
            ]
            checkpoint = position.dump() if not more else stored
            yield calls.page(number, changes, checkpoint, last=last, truncated=cut)
            if last:
                return
            assert isinstance(offset, str)
            if offset in offsets:
                raise MalformedResponse(
                    f"GET /tasks: next_page names an offset this catch-up already read, after"
                    f" {number} page(s); stopped (following it would loop)"
                )
            offsets.add(offset)
            params["offset"] = offset

    def normalise(self, items: Sequence[Any], *, project_id: str, now: datetime) -> MappingResult:
        return normalise(items, project_id)

    def extract_items(self, response: Any) -> list[Any]:
        """Refuse a saved page for ``ucf map --poll``, saying why.

        The poll maps the tasks its event stream names, each read from the API
        (:class:`Change`), so no saved JSON is an item here: every one was an
        item error, "not an Asana change: dict", which told the user nothing.
        """
        raise ValueError(
            "asana maps the tasks its event stream names, read from its API, so a saved"
            " page cannot be mapped offline; try it live instead (ucf poll)"
        )

    async def health_check(self, context: SourceContext) -> HealthResult:
        """``GET /users/me`` (https://developers.asana.com/reference/getuser) with the instance's auth."""
        return await self._health.run(context)


def _oauth_config(url: str) -> OAuth2Config:
    return OAuth2Config.model_validate(
        {
            "authoriseUrl": "https://app.asana.com/-/oauth_authorize",
            "tokenUrl": url,
            "scopes": [],
            "credentialFields": [
                {"key": "clientId", "label": "Client ID", "type": "text", "required": True},
                {
                    "key": "clientSecret",
                    "label": "Client secret",
                    "type": "password",
                    "required": True,
                },
                {
                    "key": "refreshToken",
                    "label": "Refresh token",
                    "type": "password",
                    "required": True,
                },
            ],
        }
    )
