"""A faithful fake of the Asana API (events, tasks, stories, users/me, OAuth) and its webhooks.

What it reproduces, from Asana's API reference (https://developers.asana.com/reference):

* ``GET /events?resource=<project gid>&sync=<token>``: without a token, or with
  one that is unknown or expired, ``412 Precondition Failed`` with
  ``{"errors": [{"message": …}], "sync": "<fresh token>"}``; with a valid one
  ``{"data": [<compact events>], "sync": "<next token>", "has_more": bool}``, at
  most 100 events a call. Re-requesting a token gives the same answer. Events
  "bubble up": a comment on a task of the project is an event of the project.
  :meth:`AsanaFake.expire_sync_tokens` makes every token issued so far invalid.
* Event objects ``{user, created_at, action, resource {gid, resource_type,
  resource_subtype, name}, parent, change {field, action}}`` (``parent`` only for
  ``added``/``removed``; ``change`` only for ``changed``), as webhooks carry them.
  Changes also add system stories (``marked_complete``, ``assigned``), as Asana does.
* ``GET /tasks?project=…&modified_since=…&opt_fields=…&limit=…&offset=…``:
  compact tasks (``gid, name, resource_type, resource_subtype``) unless
  ``opt_fields`` asks for more; ``limit`` 1–100, ``next_page {offset, path, uri}``
  only when ``limit`` is sent; a request without ``project`` (or ``tag``, or
  ``assignee`` + ``workspace``) is a 400 saying so.
* ``GET /tasks/{gid}``, ``GET /stories/{gid}`` (``opt_fields`` too) and ``404
  Unknown object`` for deleted ones; ``GET /users/me``.
* ``Authorization: Bearer`` (PAT or OAuth access token), ``401 {"errors":
  [{"message": "Not Authorized"}]}`` otherwise; ``POST /-/oauth_token`` with
  ``grant_type=refresh_token`` gives an hour-long access token; the consent
  (``/-/oauth_authorize``, the code exchange, ``/-/oauth_revoke``) is Asana's fake
  authorization server (``ucf.fakes.oauth_providers.mount_asana``).
* ``429`` with ``Retry-After`` in seconds (https://developers.asana.com/docs/rate-limits).
* Webhooks (https://developers.asana.com/docs/webhooks-guide): the handshake POST
  with ``X-Hook-Secret``, then ``{"events": [...]}`` bodies signed
  ``X-Hook-Signature: <hex HMAC-SHA256(secret, raw body)>``; heartbeats are
  ``{"events": []}``.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qs, urlencode

from ucf.fakes.kit import FakeRequest, FakeResponse, Fault, iso_millis
from ucf.fakes.oauth_providers import mount_asana
from ucf.fakes.scenario import (
    Activity,
    DeliveryVerification,
    HandshakeSample,
    MetadataExpectation,
    ProviderFake,
    Scenario,
    WebhookDelivery,
    WebhookSample,
    hmac_digest,
)

API_PREFIX: Final = "/api/1.0"
GOOD_TOKEN: Final = "2/1200000000000101/1209999999999999:0fakegoodpersonalaccesstoken"  # noqa: S105
BAD_TOKEN: Final = "2/1200000000000101/1208888888888888:0fakerevokedtokennobodyaccepts"  # noqa: S105
HOOK_SECRET: Final = "fake0asana0hook0secret0from0the0x0hook0secret0handshake"  # noqa: S105
CLIENT_ID: Final = "1209000000000001"
CLIENT_SECRET: Final = "fake0asana0oauth0client0secret"  # noqa: S105
REFRESH_TOKEN: Final = "2/1200000000000101/1209000000000001:fakerefreshtoken"  # noqa: S105
WORKSPACE: Final = ("1200000000000001", "Acme Corp")
PROJECT: Final = ("1200000000000002", "Platform roadmap")
OTHER_PROJECT: Final = ("1200000000000003", "Support queue")
PEOPLE: Final = (
    ("1200000000000101", "Ada Lovelace", "ada@acme.example"),
    ("1200000000000102", "Grace Hopper", "grace@acme.example"),
    ("1200000000000103", "Alan Turing", "alan@acme.example"),
    ("1200000000000104", "Katherine Johnson", "katherine@acme.example"),
)
SECTIONS: Final = (
    ("1200000000000201", "Backlog"),
    ("1200000000000202", "In progress"),
    ("1200000000000203", "Done"),
)
TAGS: Final = (
    ("1200000000000301", "backend"),
    ("1200000000000302", "frontend"),
    ("1200000000000303", "infra"),
    ("1200000000000304", "customer"),
)
PRIORITY_FIELD: Final = "1200000000000401"
PRIORITY_OPTIONS: Final = (
    ("1200000000000411", "High", "red"),
    ("1200000000000412", "Medium", "yellow-orange"),
    ("1200000000000413", "Low", "blue-green"),
)
TOPICS: Final = (
    "Migrate billing to the new API",
    "Fix flaky login test",
    "Quarterly security review",
    "Rate-limit the export endpoint",
    "Update onboarding docs",
    "Investigate slow dashboard",
    "Rotate TLS certificates",
    "Design dark mode",
)
EVENTS_PER_CALL: Final = 100
SYNC_EXPIRED: Final = (
    "Sync token invalid or too old. If you are attempting to keep resources in sync, you must "
    "fetch the full dataset for this query now and use the new sync token for the next sync."
)
RATE_LIMITED: Final = "You have made too many requests recently. Please, be chill."

iso = iso_millis  # Asana writes 2012-02-22T02:06:58.147Z


def task_gid(number: int) -> str:
    return str(1201000000000000 + number)


def story_gid(number: int) -> str:
    return str(1202000000000000 + number)


def _user(index: int) -> dict[str, Any]:
    gid, name, _ = PEOPLE[index % len(PEOPLE)]
    return {"gid": gid, "resource_type": "user", "name": name}


def _compact(kind: str, gid: str, name: str) -> dict[str, Any]:
    return {"gid": gid, "resource_type": kind, "name": name}


def error(status: int, message: str, **headers: str) -> FakeResponse:
    """Asana's error envelope."""
    return FakeResponse.json({"errors": [{"message": message}]}, status, headers or None)


# --------------------------------------------------------------------------- dataset


@dataclass
class Task:
    number: int
    name: str
    created: datetime
    modified: datetime
    section: int = 0
    assignee: int | None = None
    followers: list[int] = field(default_factory=list)
    tags: list[int] = field(default_factory=list)
    priority: int | None = None
    completed_at: datetime | None = None
    parent: int | None = None
    also_in_other_project: bool = False
    in_project: bool = True
    """Whether the task is in the followed project (the support project otherwise)."""
    associated: datetime | None = None
    """When it last joined or left the project: ``modified_since`` counts that ("a task
    being added to a project"), ``modified_at`` does not ("moving to a new container")."""

    @property
    def gid(self) -> str:
        return task_gid(self.number)

    def modified_since(self, since: datetime) -> bool:
        """Whether ``GET /tasks?modified_since=`` lists the task (its associations count)."""
        return self.modified >= since or (self.associated is not None and self.associated >= since)

    def json(self, base_url: str) -> dict[str, Any]:
        memberships = []
        if self.in_project:
            memberships.append(
                {
                    "project": _compact("project", *PROJECT),
                    "section": _compact("section", *SECTIONS[self.section]),
                }
            )
        if self.also_in_other_project or not self.in_project:
            memberships.append(
                {
                    "project": _compact("project", *OTHER_PROJECT),
                    "section": _compact("section", "1200000000000299", "Triage"),
                }
            )
        custom_fields = [
            {
                "gid": PRIORITY_FIELD,
                "resource_type": "custom_field",
                "name": "Priority",
                "resource_subtype": "enum",
                "type": "enum",
                "enum_value": None
                if self.priority is None
                else {
                    "gid": PRIORITY_OPTIONS[self.priority][0],
                    "resource_type": "enum_option",
                    "name": PRIORITY_OPTIONS[self.priority][1],
                    "color": PRIORITY_OPTIONS[self.priority][2],
                    "enabled": True,
                },
                "display_value": None
                if self.priority is None
                else PRIORITY_OPTIONS[self.priority][1],
            }
        ]
        return {
            "gid": self.gid,
            "resource_type": "task",
            "resource_subtype": "default_task",
            "name": self.name,
            "notes": f"{self.name}: details in the linked doc.",
            "created_at": iso(self.created),
            "modified_at": iso(self.modified),
            "completed": self.completed_at is not None,
            "completed_at": None if self.completed_at is None else iso(self.completed_at),
            "due_on": None,
            "permalink_url": f"https://app.asana.com/0/{PROJECT[0]}/{self.gid}",
            "assignee": None if self.assignee is None else _user(self.assignee),
            "followers": [_user(index) for index in self.followers],
            "tags": [_compact("tag", *TAGS[index]) for index in self.tags],
            "memberships": memberships,
            "custom_fields": custom_fields,
            "parent": None
            if self.parent is None
            else _compact("task", task_gid(self.parent), f"Task {self.parent}"),
            "workspace": _compact("workspace", *WORKSPACE),
        }


@dataclass
class Story:
    number: int
    task: int
    author: int | None
    created: datetime
    text: str
    subtype: str = "comment_added"

    @property
    def gid(self) -> str:
        return story_gid(self.number)

    def json(self, task: Task) -> dict[str, Any]:
        return {
            "gid": self.gid,
            "resource_type": "story",
            "resource_subtype": self.subtype,
            "type": "comment" if self.subtype == "comment_added" else "system",
            "created_at": iso(self.created),
            "created_by": None if self.author is None else _user(self.author),
            "text": self.text,
            "target": _compact("task", task.gid, task.name),
        }


def event(
    action: str,
    resource: dict[str, Any],
    at: datetime,
    *,
    user: int | None = 0,
    parent: dict[str, Any] | None = None,
    changed: str | None = None,
) -> dict[str, Any]:
    """One compact event, as ``GET /events`` and webhook bodies carry it."""
    body: dict[str, Any] = {
        "user": None if user is None else {"gid": PEOPLE[user][0], "resource_type": "user"},
        "created_at": iso(at),
        "action": action,
        "resource": resource,
        "parent": parent,
    }
    if changed is not None:
        body["change"] = {"field": changed, "action": "changed"}
    return body


def task_resource(task: Task) -> dict[str, Any]:
    return {
        "gid": task.gid,
        "resource_type": "task",
        "resource_subtype": "default_task",
        "name": task.name,
    }


def story_resource(story: Story) -> dict[str, Any]:
    return {"gid": story.gid, "resource_type": "story", "resource_subtype": story.subtype}


class Dataset:
    """A project laid out around ``now``: ``count`` tasks changed over the last six days
    (two pages of ``GET /tasks`` at ``limit=100``), a few untouched for a month."""

    def __init__(self, now: datetime, *, count: int = 150) -> None:
        self._tasks = itertools.count(1)
        self._stories = itertools.count(1)
        self.tasks: dict[str, Task] = {}
        self.stories: dict[str, Story] = {}
        self.deleted: set[str] = set()
        self.events: list[dict[str, Any]] = []
        for index in range(4):
            self._task(now - timedelta(days=40 + index), index)
        window = timedelta(days=6)
        for index in range(count):
            self._task(now - window + window * index / count, index)
        # One comment from before any sync token (webhook samples name it).
        self.discussed = [t for t in self.tasks.values() if t.completed_at is None][-4]
        story = Story(
            next(self._stories),
            self.discussed.number,
            3,
            self.discussed.modified,
            "Can we ship this before the freeze?",
        )
        self.stories[story.gid] = story

    def _task(self, modified: datetime, index: int) -> Task:
        number = next(self._tasks)
        task = Task(
            number=number,
            name=f"{TOPICS[index % len(TOPICS)]} #{number}",
            created=modified - timedelta(hours=1 + index % 30),
            modified=modified,
            section=index % len(SECTIONS),
            assignee=index % len(PEOPLE) if index % 3 else None,
            followers=[(index + 1) % len(PEOPLE)],
            tags=[index % len(TAGS)] + ([(index + 2) % len(TAGS)] if index % 2 else []),
            priority=index % len(PRIORITY_OPTIONS) if index % 4 else None,
            completed_at=modified if index % len(SECTIONS) == 2 else None,
            parent=number - 1 if index % 11 == 10 else None,
            also_in_other_project=index % 7 == 3,
        )
        self.tasks[task.gid] = task
        return task

    def tasks_in_order(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.gid not in self.deleted]

    # -- changes, each recorded as Asana's events

    def create_task(self, now: datetime, name: str, *, user: int = 0) -> Task:
        task = self._task(now, index=len(self.tasks))
        task.name, task.created, task.completed_at, task.section = name, now, None, 0
        self.events.append(
            event(
                "added", task_resource(task), now, user=user, parent=_compact("project", *PROJECT)
            )
        )
        return task

    def create_elsewhere(self, created: datetime, name: str) -> Task:
        """A task of the support project, untouched since ``created``: no event of ours."""
        task = self._task(created, index=len(self.tasks))
        task.name, task.created, task.completed_at = name, created, None
        task.in_project = False
        return task

    def add_to_project(self, task: Task, now: datetime, *, user: int = 0) -> None:
        """An existing task added to the followed project (``POST /tasks/{gid}/addProject``):
        an ``added`` event under the project; its ``modified_at`` stays (the reference:
        "moving to a new container" does not change it), ``modified_since`` lists it."""
        task.in_project, task.associated, task.section = True, now, 0
        project = _compact("project", *PROJECT)
        self.events.append(event("added", task_resource(task), now, user=user, parent=project))

    def remove_from_project(self, task: Task, now: datetime, *, user: int = 0) -> None:
        task.in_project, task.associated = False, now
        project = _compact("project", *PROJECT)
        self.events.append(event("removed", task_resource(task), now, user=user, parent=project))

    def complete(self, task: Task, now: datetime, *, user: int = 1) -> None:
        task.completed_at = task.modified = now
        task.section = 2
        self.events.append(
            event("changed", task_resource(task), now, user=user, changed="completed")
        )
        self._system_story(task, now, user, "marked_complete", "marked this task complete")

    def assign(self, task: Task, person: int, now: datetime, *, user: int = 0) -> None:
        task.assignee, task.modified = person, now
        self.events.append(
            event("changed", task_resource(task), now, user=user, changed="assignee")
        )
        self._system_story(task, now, user, "assigned", f"assigned to {PEOPLE[person][1]}")

    def rename(self, task: Task, name: str, now: datetime, *, user: int = 2) -> None:
        task.name, task.modified = name, now
        self.events.append(event("changed", task_resource(task), now, user=user, changed="name"))

    def comment(self, task: Task, author: int, text: str, now: datetime) -> Story:
        story = Story(next(self._stories), task.number, author, now, text)
        self.stories[story.gid] = story
        task.modified = now  # adding a story modifies the task (modified_since sees it)
        self.events.append(
            event(
                "added",
                story_resource(story),
                now,
                user=author,
                parent={
                    "gid": task.gid,
                    "resource_type": "task",
                    "resource_subtype": "default_task",
                },
            )
        )
        return story

    def delete(self, task: Task, now: datetime, *, user: int = 0) -> None:
        self.deleted.add(task.gid)
        self.events.append(event("deleted", task_resource(task), now, user=user))

    def _system_story(self, task: Task, now: datetime, user: int, subtype: str, text: str) -> None:
        story = Story(next(self._stories), task.number, user, now, text, subtype)
        self.stories[story.gid] = story
        parent = {"gid": task.gid, "resource_type": "task", "resource_subtype": "default_task"}
        self.events.append(event("added", story_resource(story), now, user=user, parent=parent))


# --------------------------------------------------------------------------- opt_fields


def project_fields(value: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """``value`` cut to ``opt_fields`` as Asana does: the gid and resource type always, each
    named field, and nested objects cut to their own named fields (compact when none)."""
    wanted: dict[str, list[str]] = {}
    for path in fields:
        head, _, rest = path.partition(".")
        wanted.setdefault(head, [])
        if rest:
            wanted[head].append(rest)
    out: dict[str, Any] = {"gid": value.get("gid"), "resource_type": value.get("resource_type")}
    for key, inner in wanted.items():
        if key not in value:
            continue
        out[key] = _cut(value[key], inner)
    return out


def _cut(value: Any, inner: list[str]) -> Any:
    if isinstance(value, list):
        return [_cut(item, inner) for item in value]
    if not isinstance(value, dict):
        return value
    if "gid" in value:
        if not inner:
            return {k: value[k] for k in ("gid", "resource_type", "name") if k in value}
        return project_fields(value, inner)
    # A membership {project, section} has no gid of its own: keep the keys asked for.
    kept: dict[str, list[str]] = {}
    for path in inner:
        head, _, rest = path.partition(".")
        kept.setdefault(head, [])
        if rest:
            kept[head].append(rest)
    return {key: _cut(value[key], rest) for key, rest in kept.items() if key in value}


def _opt_fields(request: FakeRequest) -> list[str] | None:
    raw = request.param("opt_fields")
    if raw is None:
        return None
    return [f.strip() for f in raw.split(",") if f.strip()]


def _shape(
    value: dict[str, Any], fields: list[str] | None, compact: tuple[str, ...]
) -> dict[str, Any]:
    if fields is None:
        return {k: value[k] for k in ("gid", "resource_type", *compact) if k in value}
    return project_fields(value, fields)


# --------------------------------------------------------------------------- the fake


class AsanaFake(ProviderFake):
    """``app.asana.com`` for one workspace, answering under ``/api/1.0`` as documented."""

    poll_route = f"{API_PREFIX}/events"

    def __init__(self, now: datetime, *, count: int = 150) -> None:
        super().__init__()
        self.data = Dataset(now, count=count)
        self.tokens = {GOOD_TOKEN}
        self.events_per_call = EVENTS_PER_CALL
        self._syncs: dict[str, int] = {}
        self._offsets: dict[str, tuple[str, int]] = {}
        self.access_tokens_issued = 0
        route = self.server.add_route
        route("GET", f"{API_PREFIX}/events", self._guard(self._events))
        route("GET", f"{API_PREFIX}/tasks", self._guard(self._tasks))
        route("GET", f"{API_PREFIX}/tasks/{{gid}}", self._guard(self._task))
        route("GET", f"{API_PREFIX}/stories/{{gid}}", self._guard(self._story))
        route("GET", f"{API_PREFIX}/users/me", self._guard(self._me))
        route("POST", "/-/oauth_token", self._oauth_token)
        gid, name, email = PEOPLE[0]
        # The consent ("Connect with Asana"): /-/oauth_authorize, the code exchange and the
        # refresh of the tokens it issued, /-/oauth_revoke; its access tokens are the API's.
        self.auth = mount_asana(
            self.server,
            CLIENT_ID,
            CLIENT_SECRET,
            user={"id": int(gid), "gid": gid, "name": name, "email": email},
            access_tokens=self.tokens,
            token_route=False,
        )

    @property
    def api_url(self) -> str:
        """What an instance's ``baseUrl`` is: the fake's ``/api/1.0``."""
        return self.base_url + API_PREFIX

    # -- protocol

    def add_activity(self, now: datetime) -> Activity:
        """Two tasks created, one completed, one reassigned, one renamed, one commented on."""
        data = self.data
        fresh = [
            data.create_task(now, "Postmortem: webhook backlog"),
            data.create_task(now, "Add retries to the export job", user=1),
        ]
        open_tasks = [t for t in data.tasks_in_order() if t.completed_at is None and t not in fresh]
        done, reassigned, renamed, discussed = (
            open_tasks[-1],
            open_tasks[-2],
            open_tasks[-3],
            open_tasks[-5],
        )
        data.complete(done, now)
        data.assign(reassigned, (reassigned.assignee or 0) + 1, now)
        data.rename(renamed, renamed.name + " (v2)", now)
        data.comment(discussed, 3, "Blocked on the vendor's answer, see thread.", now)
        changed = frozenset(t.gid for t in (done, reassigned, renamed, discussed))
        return Activity(new_ids=frozenset(t.gid for t in fresh), changed_ids=changed)

    def ids_changed_since(self, moment: datetime) -> frozenset[str]:
        return frozenset(t.gid for t in self.data.tasks_in_order() if t.modified >= moment)

    def rate_limit_fault(self, retry_after: int) -> Fault:
        return Fault.rate_limited(retry_after, body={"errors": [{"message": RATE_LIMITED}]})

    def expire_sync_tokens(self) -> None:
        """Every sync token issued so far answers 412 from now on (Asana: "may expire sooner")."""
        self.server.call_between_requests(self._syncs.clear)

    # -- plumbing

    def _guard(
        self, handler: Callable[[FakeRequest], FakeResponse]
    ) -> Callable[[FakeRequest], FakeResponse]:
        def guarded(request: FakeRequest) -> FakeResponse:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or token not in self.tokens:
                return error(401, "Not Authorized")
            return handler(request)

        return guarded

    def _issue_sync(self, position: int) -> str:
        token = secrets.token_hex(16)
        self._syncs[token] = position
        return token

    def _events(self, request: FakeRequest) -> FakeResponse:
        resource = request.param("resource")
        if not resource:
            return error(400, "resource: Missing input")
        if resource != PROJECT[0] and resource not in self.data.tasks:
            return error(404, f"resource: Unknown object: {resource}")
        log = self.data.events
        if resource != PROJECT[0]:
            log = [
                e
                for e in log
                if resource in (e["resource"]["gid"], (e.get("parent") or {}).get("gid"))
            ]
        position = self._syncs.get(request.param("sync") or "")
        if position is None:
            body = {"errors": [{"message": SYNC_EXPIRED}], "sync": self._issue_sync(len(log))}
            return FakeResponse.json(body, 412)
        window = log[position : position + self.events_per_call]
        end = position + len(window)
        more = end < len(log)
        return FakeResponse.json({"data": window, "sync": self._issue_sync(end), "has_more": more})

    def _tasks(self, request: FakeRequest) -> FakeResponse:
        project = request.param("project")
        unscoped = request.param("assignee") is None or request.param("workspace") is None
        if project is None and request.param("tag") is None and unscoped:
            return error(
                400,
                "You must specify a project or tag if you do not specify assignee and workspace",
            )
        limit_text = request.param("limit")
        limit: int | None = None
        if limit_text is not None:
            if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
                return error(400, "limit: Must be between 1 and 100, inclusive")
            limit = int(limit_text)
        tasks = [
            t for t in self.data.tasks_in_order() if t.in_project and project in (PROJECT[0], None)
        ]
        since_text = request.param("modified_since")
        if since_text is not None:
            try:
                since = datetime.fromisoformat(since_text.replace("Z", "+00:00"))
            except ValueError:
                return error(400, f"modified_since: Invalid date-time: {since_text}")
            tasks = [t for t in tasks if t.modified_since(since)]
        query = urlencode(sorted((k, v[0]) for k, v in request.query.items() if k != "offset"))
        start = 0
        offset = request.param("offset")
        if offset is not None:
            issued = self._offsets.get(offset)
            if issued is None or issued[0] != query:
                return error(400, "offset: Your pagination token is invalid or expired")
            start = issued[1]
        end = len(tasks) if limit is None else start + limit
        fields = _opt_fields(request)
        base = self.base_url
        page = [
            _shape(t.json(base), fields, ("name", "resource_subtype")) for t in tasks[start:end]
        ]
        body: dict[str, Any] = {"data": page}
        if limit is not None:
            next_page = None
            if end < len(tasks):
                token = secrets.token_urlsafe(24)
                self._offsets[token] = (query, end)
                path = f"/tasks?{query}&offset={token}"
                next_page = {
                    "offset": token,
                    "path": path,
                    "uri": request.url_for(API_PREFIX + path),
                }
            body["next_page"] = next_page
        return FakeResponse.json(body)

    def _task(self, request: FakeRequest) -> FakeResponse:
        gid = request.path_params["gid"]
        task = self.data.tasks.get(gid)
        if task is None or gid in self.data.deleted:
            return error(404, f"task: Unknown object: {gid}")
        fields = _opt_fields(request)
        return FakeResponse.json(
            {"data": _shape(task.json(self.base_url), fields, ("name", "resource_subtype"))}
        )

    def _story(self, request: FakeRequest) -> FakeResponse:
        gid = request.path_params["gid"]
        story = self.data.stories.get(gid)
        task = None if story is None else self.data.tasks.get(task_gid(story.task))
        if story is None or task is None:
            return error(404, f"story: Unknown object: {gid}")
        fields = _opt_fields(request)
        return FakeResponse.json(
            {
                "data": _shape(
                    story.json(task),
                    fields,
                    ("resource_subtype", "text", "created_at", "created_by", "type"),
                )
            }
        )

    def _me(self, request: FakeRequest) -> FakeResponse:
        gid, name, email = PEOPLE[0]
        return FakeResponse.json(
            {
                "data": {
                    "gid": gid,
                    "resource_type": "user",
                    "name": name,
                    "email": email,
                    "photo": None,
                    "workspaces": [_compact("workspace", *WORKSPACE)],
                }
            }
        )

    def _oauth_token(self, request: FakeRequest) -> FakeResponse:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") == "authorization_code" or (
            form.get("grant_type") == "refresh_token" and form.get("refresh_token") != REFRESH_TOKEN
        ):
            return self.auth.token(request)  # the consent's grants
        if form.get("grant_type") != "refresh_token":
            return FakeResponse.json({"error": "unsupported_grant_type"}, 400)
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return FakeResponse.json({"error": "invalid_client"}, 401)
        if form.get("refresh_token") != REFRESH_TOKEN:
            return FakeResponse.json({"error": "invalid_grant"}, 400)
        self.access_tokens_issued += 1
        token = f"2/{PEOPLE[0][0]}/{CLIENT_ID}:fakeaccess{self.access_tokens_issued:06d}"
        self.tokens.add(token)
        gid, name, email = PEOPLE[0]
        return FakeResponse.json(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": 3600,
                "data": {"id": int(gid), "gid": gid, "name": name, "email": email},
            }
        )


# --------------------------------------------------------------------------- webhooks


def handshake_sample(secret: str = HOOK_SECRET) -> WebhookSample:
    """The unsigned POST Asana sends while ``POST /webhooks`` is in flight."""
    return WebhookSample("handshake", b"", {"X-Hook-Secret": secret})


def heartbeat() -> WebhookSample:
    return WebhookSample.of("heartbeat", {"events": []})


def sign_delivery(sample: WebhookSample, *, url: str, secret: str = HOOK_SECRET) -> WebhookDelivery:
    """Asana's headers: ``X-Hook-Signature`` = hex HMAC-SHA256 of the raw body."""
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Asana",
        **sample.headers,
        "X-Hook-Signature": hmac_digest(secret, sample.body),
    }
    return WebhookDelivery(sample.name, url, sample.body, headers, sample.expected_types)


class AsanaScenario(Scenario):
    connector_id = "asana"
    polling_signal_types = frozenset(
        {"task_created", "task_updated", "task_completed", "task_assigned", "task_commented"}
    )
    webhook_signal_types = polling_signal_types
    # X-Hook-Signature: HMAC-SHA256 of the body with the secret the handshake handed over.
    webhook_verification = DeliveryVerification("webhookSecret", signs_body=True)
    unmapped_events_answered_200 = True

    def __init__(self, count: int = 150) -> None:
        # The deliveries name tasks of the fake's dataset: the handler fetches them from it.
        self._data = Dataset(datetime.now(UTC), count=count)
        self._count = count
        # Dataset index i is task number i + 5 (four stale tasks first).
        self.metadata = (
            # index 1: Medium, frontend + customer, in "In progress", Grace assigned, Alan follows.
            MetadataExpectation(
                item_id=task_gid(6),
                priority="medium",
                participants=("Grace Hopper", "Alan Turing"),
                tags=("frontend", "customer", "In progress"),
                related_tickets=(task_gid(6),),
            ),
            # index 3: High, nobody assigned; also in the support project, whose section
            # ("Triage") is not a tag of the followed project's signal.
            MetadataExpectation(
                item_id=task_gid(8),
                priority="high",
                participants=("Ada Lovelace",),
                tags=("customer", "frontend", "Backlog"),
                related_tickets=(task_gid(8),),
            ),
            # index 10: a subtask of task 14, which is a related ticket.
            MetadataExpectation(
                item_id=task_gid(15),
                priority="medium",
                participants=("Alan Turing", "Katherine Johnson"),
                tags=("infra", "In progress"),
                related_tickets=(task_gid(15), task_gid(14)),
            ),
        )

    def fake(self, now: datetime) -> AsanaFake:
        return AsanaFake(now, count=self._count)

    def config(self, base_url: str) -> dict[str, str]:
        return {"baseUrl": base_url + API_PREFIX, "projectGid": PROJECT[0]}

    def credentials(self) -> dict[str, str]:
        return {"token": GOOD_TOKEN, "webhookSecret": HOOK_SECRET}

    def bad_credentials(self) -> dict[str, str]:
        return {"token": BAD_TOKEN, "webhookSecret": HOOK_SECRET}

    def oauth_app(self) -> tuple[str, str] | None:
        return CLIENT_ID, CLIENT_SECRET

    @property
    def webhook_secret(self) -> str:
        return HOOK_SECRET

    def webhook_samples(self) -> list[WebhookSample]:
        now = datetime.now(UTC)
        data = self._data
        # Five different tasks: one change is one task version, so two samples naming the
        # same task would rightly be one signal.
        discussed = data.discussed
        open_tasks = [
            t for t in data.tasks_in_order() if t.completed_at is None and t is not discussed
        ]
        created, renamed = open_tasks[-1], open_tasks[-2]
        assigned = [t for t in open_tasks[:-2] if t.assignee is not None][-1]
        done = [t for t in data.tasks_in_order() if t.completed_at is not None][-1]
        project = _compact("project", *PROJECT)
        on_task = {
            "gid": discussed.gid,
            "resource_type": "task",
            "resource_subtype": "default_task",
        }
        comment = story_resource(data.stories[story_gid(1)])
        # Its creation's event: an existing task added to the project is a change of it.
        added = event("added", task_resource(created), created.created, parent=project)
        completed = event("changed", task_resource(done), now, changed="completed")
        reassigned = event("changed", task_resource(assigned), now, changed="assignee")
        name_changed = event("changed", task_resource(renamed), now, user=2, changed="name")
        commented = event("added", comment, now, user=3, parent=on_task)
        payloads: list[tuple[str, list[dict[str, Any]], tuple[str, ...]]] = [
            ("task added", [added], ("task_created",)),
            ("task completed", [completed], ("task_completed",)),
            ("assignee changed", [reassigned], ("task_assigned",)),
            ("name changed", [name_changed], ("task_updated",)),
            ("comment added", [commented], ("task_commented",)),
        ]
        return [
            WebhookSample.of(name, {"events": events}, expected_types=types)
            for name, events, types in payloads
        ]

    def unknown_event_sample(self) -> WebhookSample:
        """A section renamed and a task removed from the project: nothing to signal."""
        now = datetime.now(UTC)
        section = {"gid": SECTIONS[1][0], "resource_type": "section", "name": SECTIONS[1][1]}
        task = task_resource(self._data.tasks_in_order()[-1])
        events = [
            event("changed", section, now, changed="name"),
            event("removed", task, now, parent=_compact("project", *PROJECT)),
        ]
        return WebhookSample.of("section changed", {"events": events})

    def handshake(self, *, url: str, at: datetime) -> HandshakeSample:
        """The unsigned POST of ``POST /webhooks``: echo ``X-Hook-Secret``, keep it."""
        sample = handshake_sample()
        delivery = WebhookDelivery(sample.name, url, sample.body, dict(sample.headers))
        return HandshakeSample(
            delivery,
            answer_headers={"X-Hook-Secret": HOOK_SECRET},
            keeps={"webhookSecret": HOOK_SECRET},
        )

    def heartbeat(self) -> WebhookSample:
        return heartbeat()

    def sign(self, sample: WebhookSample, *, url: str, at: datetime) -> WebhookDelivery:
        return sign_delivery(sample, url=url)


def scenario(connector_id: str) -> Scenario:
    """The scenario of ``asana`` (see :mod:`ucf.fakes.scenario`)."""
    if connector_id != "asana":
        raise LookupError(f"ucf.fakes.asana has no scenario for {connector_id!r}")
    return AsanaScenario()
