"""A faithful fake of the Notion API (search, users/me) and Notion's webhooks.

What it reproduces (Notion's API reference and notion-sdk-js; the links are under
Sources in docs/connectors/notion.md):

* ``POST /v1/search`` with a JSON body: ``sort`` (``{"timestamp":
  "last_edited_time", "direction"}``), ``filter`` (``{"property": "object",
  "value": "page"|"database"}``), ``page_size`` (1–100, default 100) and
  ``start_cursor``, validated as Notion's body validator does —
  ``"start_cursor": null`` is a ``400 validation_error`` ("should be a string or
  `undefined`"), which is why the descriptor sets ``omitNullBodyFields``.
* List responses ``{"object": "list", "results", "next_cursor", "has_more",
  "type": "page_or_database", "page_or_database": {}, "request_id"}``; cursors
  are opaque UUIDs, valid for the query that issued them.
* Page and database objects of ``Notion-Version: 2022-06-28`` (pages in a
  database with title, status, select, multi_select, people and relation
  properties; standalone pages; databases with a property schema), with
  ``last_edited_time`` rounded down to the minute as Notion does.
* ``Authorization: Bearer <secret>`` (``401 unauthorized`` otherwise) and a
  required ``Notion-Version`` header (``400 missing_version``).
* Rate limiting: ``429 {"object": "error", "code": "rate_limited", …}`` with
  ``Retry-After`` in seconds (Notion sends no other rate-limit headers).
* Webhooks: event envelopes ``{id, timestamp, workspace_id, workspace_name,
  subscription_id, integration_id, type, authors, accessible_by,
  attempt_number, entity, data}`` signed ``X-Notion-Signature:
  sha256=<hex HMAC-SHA256(verification_token, raw body)>``, after the one-time
  unsigned ``{"verification_token": "secret_…"}`` POST.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from ucf.fakes.kit import FakeRequest, FakeResponse, Fault, iso_millis
from ucf.fakes.oauth_providers import mount_notion
from ucf.fakes.scenario import (
    Activity,
    MetadataExpectation,
    ProviderFake,
    PushedChange,
    Scenario,
    WebhookDelivery,
    WebhookSample,
    hmac_digest,
)

VERSIONS: Final = ("2022-06-28", "2025-09-03")
GOOD_TOKEN: Final = "ntn_FAKE0good0internal0integration0secret0for0ucf"  # noqa: S105
BAD_TOKEN: Final = "ntn_FAKE0revoked0integration0secret0nobody0accepts"  # noqa: S105
VERIFICATION_TOKEN: Final = "secret_FAKE0notion0webhook0verification0token0ucf"  # noqa: S105
WORKSPACE_ID: Final = "13950b26-c203-4f3b-b97d-93ec06319565"
WORKSPACE_NAME: Final = "Acme Product"
BOT_ID: Final = "0ef2e755-4912-8096-91c1-00376a88a5ca"
OAUTH_CLIENT_ID: Final = "1a2b3c4d-0000-4000-8000-fa4e0a0c11e7"
OAUTH_CLIENT_SECRET: Final = "secret_FAKE0notion0public0integration0oauth0client"  # noqa: S105
NAMESPACE: Final = uuid.UUID("4f4e2f5a-6b1c-4f6e-9a2d-0c1e2d3f4a5b")

PEOPLE: Final = (
    ("Ada Lovelace", "ada@acme.example"),
    ("Grace Hopper", "grace@acme.example"),
    ("Alan Turing", "alan@acme.example"),
    ("Katherine Johnson", "katherine@acme.example"),
)
STATUSES: Final = ("Not started", "In progress", "Done")
PRIORITIES: Final = ("High", "Medium", "Low", "Critical")
TAGS: Final = ("backend", "frontend", "docs", "infra", "research")
TOPICS: Final = (
    "Q3 roadmap",
    "Incident review: login outage",
    "Onboarding checklist",
    "API rate limit design",
    "Customer interview notes",
    "Release 2.4 plan",
    "On-call handbook",
    "Pricing page copy",
)


def notion_id(kind: str, number: int) -> str:
    """A stable UUID (with dashes, as the API writes ids) for the n-th object of a kind."""
    return str(uuid.uuid5(NAMESPACE, f"{kind}-{number}"))


def minute(moment: datetime) -> datetime:
    """Notion rounds ``last_edited_time`` down to the minute."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


iso = iso_millis  # Notion's timestamps


def rich_text(text: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "text",
            "text": {"content": text, "link": None},
            "annotations": {
                "bold": False,
                "italic": False,
                "strikethrough": False,
                "underline": False,
                "code": False,
                "color": "default",
            },
            "plain_text": text,
            "href": None,
        }
    ]


def person(index: int) -> dict[str, Any]:
    name, email = PEOPLE[index % len(PEOPLE)]
    return {
        "object": "user",
        "id": notion_id("user", index % len(PEOPLE)),
        "name": name,
        "avatar_url": None,
        "type": "person",
        "person": {"email": email},
    }


def partial_user(index: int) -> dict[str, str]:
    return {"object": "user", "id": notion_id("user", index % len(PEOPLE))}


def option(name: str, color: str = "default") -> dict[str, str]:
    return {"id": notion_id("option", sum(map(ord, name))), "name": name, "color": color}


def url_of(title: str, object_id: str) -> str:
    slug = "-".join(word for word in "".join(c if c.isalnum() else " " for c in title).split())
    return f"https://www.notion.so/{slug}-{object_id.replace('-', '')}"


# --------------------------------------------------------------------------- dataset


@dataclass
class Page:
    """A page, in the tracker database (``row``) or standalone under the wiki page."""

    id: str
    title: str
    created: datetime
    edited: datetime
    editor: int
    row: bool = True
    status: str = "Not started"
    priority: str | None = None
    tags: list[str] = field(default_factory=list)
    assignees: list[int] = field(default_factory=list)
    related: list[str] = field(default_factory=list)

    def json(self, database_id: str, wiki_id: str) -> dict[str, Any]:
        if self.row:
            parent: dict[str, Any] = {"type": "database_id", "database_id": database_id}
            properties: dict[str, Any] = {
                "Name": {"id": "title", "type": "title", "title": rich_text(self.title)},
                "Status": {
                    "id": "s%3Bta",
                    "type": "status",
                    "status": option(self.status, "blue"),
                },
                "Priority": {
                    "id": "Pr%3Ao",
                    "type": "select",
                    "select": option(self.priority, "red") if self.priority else None,
                },
                "Tags": {
                    "id": "T%40gs",
                    "type": "multi_select",
                    "multi_select": [option(tag) for tag in self.tags],
                },
                "Assignee": {
                    "id": "As%7Dg",
                    "type": "people",
                    "people": [person(index) for index in self.assignees],
                },
                "Related tasks": {
                    "id": "R%5Ela",
                    "type": "relation",
                    "relation": [{"id": page_id} for page_id in self.related],
                    "has_more": False,
                },
            }
        else:
            parent = {"type": "page_id", "page_id": wiki_id}
            properties = {"title": {"id": "title", "type": "title", "title": rich_text(self.title)}}
        return {
            "object": "page",
            "id": self.id,
            "created_time": iso(minute(self.created)),
            "last_edited_time": iso(minute(self.edited)),
            "created_by": partial_user(self.editor + 1),
            "last_edited_by": partial_user(self.editor),
            "cover": None,
            "icon": {"type": "emoji", "emoji": "📄"},
            "parent": parent,
            "archived": False,
            "in_trash": False,
            "properties": properties,
            "url": url_of(self.title, self.id),
            "public_url": None,
        }


@dataclass
class Database:
    id: str
    title: str
    created: datetime
    edited: datetime
    wiki_id: str
    extra_columns: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "Name": {"id": "title", "name": "Name", "type": "title", "title": {}},
            "Status": {"id": "s%3Bta", "name": "Status", "type": "status", "status": {}},
            "Priority": {
                "id": "Pr%3Ao",
                "name": "Priority",
                "type": "select",
                "select": {"options": [option(p, "red") for p in PRIORITIES]},
            },
            "Tags": {
                "id": "T%40gs",
                "name": "Tags",
                "type": "multi_select",
                "multi_select": {"options": [option(t) for t in TAGS]},
            },
            "Assignee": {"id": "As%7Dg", "name": "Assignee", "type": "people", "people": {}},
            "Related tasks": {
                "id": "R%5Ela",
                "name": "Related tasks",
                "type": "relation",
                "relation": {"database_id": self.id, "type": "single_property"},
            },
        }
        for index, column in enumerate(self.extra_columns):
            schema[column] = {"id": f"x{index}", "name": column, "type": "date", "date": {}}
        return {
            "object": "database",
            "id": self.id,
            "cover": None,
            "icon": {"type": "emoji", "emoji": "🗂️"},
            "created_time": iso(minute(self.created)),
            "created_by": partial_user(0),
            "last_edited_by": partial_user(1),
            "last_edited_time": iso(minute(self.edited)),
            "title": rich_text(self.title),
            "description": [],
            "is_inline": False,
            "properties": schema,
            "parent": {"type": "page_id", "page_id": self.wiki_id},
            "url": url_of(self.title, self.id),
            "public_url": None,
            "archived": False,
            "in_trash": False,
        }


class Dataset:
    """A team workspace laid out around ``now``.

    ~160 pages and three databases edited over the last six days (two pages of
    search results at ``page_size=100``), a handful untouched for a month
    (outside a seven-day initial window).
    """

    def __init__(self, now: datetime, *, count: int = 160) -> None:
        self._numbers = itertools.count(1)
        self.wiki_id = notion_id("wiki", 0)
        self.pages: dict[str, Page] = {}
        self.databases: dict[str, Database] = {}
        window = timedelta(days=6)
        self.tracker = self._database("Engineering tasks", now - timedelta(hours=30), now)
        self._database("Meeting notes", now - timedelta(days=3, hours=2), now)
        for index in range(count):
            edited = now - window + window * index / count
            self._page(now, edited, index)
        stale = now - timedelta(days=40)
        self._database("Archive 2023", stale, now)
        for index in range(4):
            self._page(now, stale - timedelta(days=index), index)

    def _database(self, title: str, edited: datetime, now: datetime) -> Database:
        number = next(self._numbers)
        database = Database(
            id=notion_id("database", number),
            title=title,
            created=edited - timedelta(days=90),
            edited=edited,
            wiki_id=self.wiki_id,
        )
        self.databases[database.id] = database
        return database

    def _page(self, now: datetime, edited: datetime, index: int) -> Page:
        number = next(self._numbers)
        row = index % 5 != 4
        page = Page(
            id=notion_id("page", number),
            title=f"{TOPICS[index % len(TOPICS)]} #{number}",
            created=edited - timedelta(hours=index % 9),
            edited=edited,
            editor=index,
            row=row,
        )
        if row:
            page.status = STATUSES[index % len(STATUSES)]
            page.priority = PRIORITIES[index % len(PRIORITIES)] if index % 3 else None
            page.tags = [TAGS[index % len(TAGS)], TAGS[(index + 2) % len(TAGS)]][: 1 + index % 2]
            page.assignees = [index % len(PEOPLE)] if index % 2 else []
            if index % 4 == 1 and self.pages:
                page.related = [next(reversed(self.pages))]
        self.pages[page.id] = page
        return page

    def objects(self) -> list[Page | Database]:
        return [*self.pages.values(), *self.databases.values()]

    def json_of(self, item: Page | Database) -> dict[str, Any]:
        if isinstance(item, Page):
            return item.json(self.tracker.id, self.wiki_id)
        return item.json()


# --------------------------------------------------------------------------- the fake


def error(status: int, code: str, message: str, **extra: Any) -> FakeResponse:
    """Notion's error envelope."""
    body = {
        "object": "error",
        "status": status,
        "code": code,
        "message": message,
        "request_id": str(uuid.uuid4()),
        **extra,
    }
    return FakeResponse.json(body, status)


def _validation(message: str) -> FakeResponse:
    return error(400, "validation_error", f"body failed validation: {message}")


def _shown(value: Any) -> str:
    if value is None:
        return "`null`"
    return f"`{json.dumps(value)}`"


class NotionFake(ProviderFake):
    """``api.notion.com`` for one integration, answering as documented."""

    poll_route = "/v1/search"

    def __init__(self, now: datetime) -> None:
        super().__init__()
        self.data = Dataset(now)
        self.tokens = {GOOD_TOKEN}
        self._cursors: dict[str, tuple[str, int]] = {}
        # A public integration's consent: /v1/oauth/authorize, /v1/oauth/token, /revoke.
        self.auth = mount_notion(
            self.server,
            OAUTH_CLIENT_ID,
            OAUTH_CLIENT_SECRET,
            access_tokens=self.tokens,
            workspace={"id": WORKSPACE_ID, "name": WORKSPACE_NAME, "bot_id": BOT_ID},
        )
        self.server.add_route("POST", "/v1/search", self._guard(self._search))
        self.server.add_route("GET", "/v1/users/me", self._guard(self._me))

    # -- protocol

    def add_activity(self, now: datetime) -> Activity:
        """Two pages created, two edited (one re-prioritised), the tracker's schema changed."""
        data = self.data
        fresh = [
            data._page(now, now, index=1),
            data._page(now, now, index=4),
        ]
        fresh[0].title = "Postmortem: webhook backlog"
        fresh[0].priority, fresh[0].tags = "Critical", ["infra"]
        rows = sorted(
            (p for p in data.pages.values() if p.row and p not in fresh), key=lambda p: p.edited
        )
        done, reprioritised = rows[-1], rows[-15]
        done.status, reprioritised.priority = "Done", "High"
        changed: list[Page | Database] = [done, reprioritised]
        for page in (done, reprioritised):
            page.edited = now
        data.tracker.extra_columns.append("Due date")
        data.tracker.edited = now
        changed.append(data.tracker)
        return Activity(
            new_ids=frozenset(p.id for p in fresh), changed_ids=frozenset(i.id for i in changed)
        )

    def push_change(self, now: datetime) -> PushedChange:
        """A tracker row set to Done: ``page.properties_updated`` at the millisecond, while
        the page's ``last_edited_time`` only says the minute."""
        page = next(p for p in self.data.pages.values() if p.row and p.status != "Done")
        page.status, page.edited = "Done", now
        payload = event(
            "page.properties_updated",
            page.id,
            now,
            parent=(self.data.tracker.id, "database"),
            data={"updated_properties": ["s%3Bta"]},
        )
        return PushedChange(page.id, WebhookSample.of("page.properties_updated", payload))

    def ids_changed_since(self, moment: datetime) -> frozenset[str]:
        return frozenset(i.id for i in self.data.objects() if minute(i.edited) >= moment)

    def rate_limit_fault(self, retry_after: int) -> Fault:
        return Fault.rate_limited(
            retry_after,
            body={
                "object": "error",
                "status": 429,
                "code": "rate_limited",
                "message": "You have been rate limited. Please try again in a few minutes.",
                "additional_data": {"rate_limit_reason": "integration_rate_limit"},
                "request_id": str(uuid.uuid4()),
            },
        )

    # -- plumbing

    def _guard(
        self, handler: Callable[[FakeRequest], FakeResponse]
    ) -> Callable[[FakeRequest], FakeResponse]:
        def guarded(request: FakeRequest) -> FakeResponse:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme != "Bearer" or token not in self.tokens:
                return error(401, "unauthorized", "API token is invalid.")
            version = request.headers.get("notion-version")
            if version is None:
                return error(
                    400,
                    "missing_version",
                    "Notion-Version header failed validation: Notion-Version header should be "
                    "defined, instead was `undefined`.",
                )
            if version not in VERSIONS:
                return error(
                    400,
                    "validation_error",
                    f"Notion-Version header failed validation: {version!r} is not a valid version.",
                )
            return handler(request)

        return guarded

    def _me(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json(
            {
                "object": "user",
                "id": BOT_ID,
                "name": "ucf",
                "avatar_url": None,
                "type": "bot",
                "bot": {
                    "owner": {"type": "workspace", "workspace": True},
                    "workspace_name": WORKSPACE_NAME,
                },
                "request_id": str(uuid.uuid4()),
            }
        )

    def _search(self, request: FakeRequest) -> FakeResponse:
        try:
            body = request.json() if request.body else {}
        except ValueError:
            return error(400, "invalid_json", "Error parsing JSON body.")
        if not isinstance(body, dict):
            return _validation(f"body should be an object, instead was {_shown(body)}.")
        page_size = body.get("page_size", 100)
        if (
            not isinstance(page_size, int)
            or isinstance(page_size, bool)
            or not 1 <= page_size <= 100
        ):
            return _validation(
                f"body.page_size should be a number between 1 and 100, instead was "
                f"{_shown(page_size)}."
            )
        cursor = body.get("start_cursor", ...)
        if cursor is not ... and not isinstance(cursor, str):
            return _validation(
                f"body.start_cursor should be a string or `undefined`, instead was {_shown(cursor)}."
            )
        direction = "descending"
        if "sort" in body:
            sort = body["sort"]
            if (
                not isinstance(sort, dict)
                or sort.get("timestamp") != "last_edited_time"
                or sort.get("direction") not in ("ascending", "descending")
            ):
                return _validation(
                    'body.sort.timestamp should be `"last_edited_time"` and body.sort.direction '
                    f'`"ascending"` or `"descending"`, instead was {_shown(sort)}.'
                )
            direction = sort["direction"]
        kinds: tuple[type, ...] = (Page, Database)
        if "filter" in body:
            wanted = body["filter"]
            value = wanted.get("value") if isinstance(wanted, dict) else None
            if (
                not isinstance(wanted, dict)
                or wanted.get("property") != "object"
                or value
                not in (
                    "page",
                    "database",
                )
            ):
                return _validation(
                    'body.filter.value should be `"page"` or `"database"`, instead was '
                    f"{_shown(value)}."
                )
            kinds = (Page,) if value == "page" else (Database,)
        query = body.get("query", "")
        query_key = json.dumps(
            {"q": query, "k": [k.__name__ for k in kinds], "d": direction}, sort_keys=True
        )
        start = 0
        if isinstance(cursor, str):
            issued = self._cursors.get(cursor)
            if issued is None or issued[0] != query_key:
                return _validation(f"The start_cursor provided is invalid: {cursor}")
            start = issued[1]
        items = [i for i in self.data.objects() if isinstance(i, kinds)]
        if isinstance(query, str) and query:
            items = [i for i in items if query.lower() in i.title.lower()]
        items.sort(key=lambda i: (minute(i.edited), i.id), reverse=direction == "descending")
        window = items[start : start + page_size]
        more = start + page_size < len(items)
        next_cursor: str | None = None
        if more:
            next_cursor = str(uuid.uuid4())
            self._cursors[next_cursor] = (query_key, start + page_size)
        return FakeResponse.json(
            {
                "object": "list",
                "results": [self.data.json_of(i) for i in window],
                "next_cursor": next_cursor,
                "has_more": more,
                "type": "page_or_database",
                "page_or_database": {},
                "request_id": str(uuid.uuid4()),
            }
        )


# --------------------------------------------------------------------------- webhooks


EventKind = Literal["page", "database"]


def event(
    event_type: str,
    entity_id: str,
    at: datetime,
    *,
    parent: tuple[str, str],
    authors: tuple[int, ...] = (0,),
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One webhook event, in the envelope Notion documents for every event type."""
    kind = event_type.split(".", 1)[0]
    return {
        "id": str(uuid.uuid5(NAMESPACE, f"event-{event_type}-{entity_id}-{at.isoformat()}")),
        "timestamp": iso(at),
        "workspace_id": WORKSPACE_ID,
        "workspace_name": WORKSPACE_NAME,
        "subscription_id": "29d75c0d-5546-4414-8459-7b7a92f1fc4b",
        "integration_id": BOT_ID,
        "type": event_type,
        "authors": [{"id": notion_id("user", a), "type": "person"} for a in authors],
        "accessible_by": [{"id": notion_id("user", 0), "type": "person"}],
        "attempt_number": 1,
        "entity": {"id": entity_id, "type": kind},
        "data": {"parent": {"id": parent[0], "type": parent[1]}, **(data or {})},
    }


def sign_delivery(
    sample: WebhookSample, *, url: str, secret: str = VERIFICATION_TOKEN
) -> WebhookDelivery:
    """Notion's headers: the HMAC of the raw body keyed with the verification token."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "notion-api",
        **sample.headers,
        "X-Notion-Signature": "sha256=" + hmac_digest(secret, sample.body),
    }
    return WebhookDelivery(sample.name, url, sample.body, headers, sample.expected_types)


class NotionScenario(Scenario):
    connector_id = "notion"
    polling_signal_types = frozenset({"page_updated", "database_updated"})
    webhook_signal_types = frozenset({"page_updated", "database_updated"})

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self._data = Dataset(now, count=20)
        rows = [p for p in self._data.pages.values() if p.row]
        self._rich, self._plain = rows[2], rows[0]
        # Numbers 1-2 are databases, so page number n is Dataset._page index n - 3.
        self.metadata = (
            # index 1: Medium, tagged frontend + infra, Grace assigned, relates to the page before.
            MetadataExpectation(
                item_id=notion_id("page", 4),
                priority="medium",
                participants=("Grace Hopper",),
                tags=("frontend", "infra"),
                related_tickets=(notion_id("page", 3),),
            ),
            # index 7: Critical, tagged docs + research, Katherine assigned.
            MetadataExpectation(
                item_id=notion_id("page", 10),
                priority="critical",
                participants=("Katherine Johnson",),
                tags=("docs", "research"),
            ),
            MetadataExpectation(
                item_id=notion_id("webhook-page", 1),
                participants=(notion_id("user", 2), notion_id("user", 3)),
                related_tickets=(self._data.tracker.id,),
            ),
        )

    def fake(self, now: datetime) -> NotionFake:
        return NotionFake(now)

    def config(self, base_url: str) -> dict[str, str]:
        return {"baseUrl": base_url}

    def credentials(self) -> dict[str, str]:
        return {"token": GOOD_TOKEN, "verificationToken": VERIFICATION_TOKEN}

    def bad_credentials(self) -> dict[str, str]:
        return {"token": BAD_TOKEN, "verificationToken": VERIFICATION_TOKEN}

    def oauth_app(self) -> tuple[str, str] | None:
        return OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET

    @property
    def webhook_secret(self) -> str:
        return VERIFICATION_TOKEN

    def webhook_samples(self) -> list[WebhookSample]:
        now = datetime.now(UTC).replace(microsecond=0)
        tracker = (self._data.tracker.id, "database")
        wiki = (self._data.wiki_id, "page")
        created = notion_id("webhook-page", 1)
        payloads: list[tuple[dict[str, Any], tuple[str, ...]]] = [
            (
                event("page.created", created, now, parent=tracker, authors=(2, 3)),
                ("page_updated",),
            ),
            (
                event(
                    "page.content_updated",
                    self._plain.id,
                    now,
                    parent=tracker,
                    data={"updated_blocks": [{"id": notion_id("block", 1), "type": "block"}]},
                ),
                ("page_updated",),
            ),
            (
                event(
                    "page.properties_updated",
                    self._rich.id,
                    now,
                    parent=tracker,
                    data={"updated_properties": ["Pr%3Ao", "s%3Bta"]},
                ),
                ("page_updated",),
            ),
            (
                event(
                    "database.schema_updated",
                    self._data.tracker.id,
                    now,
                    parent=wiki,
                    data={
                        "updated_properties": [
                            {"id": "x0", "name": "Due date", "action": "created"}
                        ]
                    },
                ),
                ("database_updated",),
            ),
            (
                event("data_source.content_updated", self._data.tracker.id, now, parent=wiki),
                ("database_updated",),
            ),
        ]
        return [WebhookSample.of(str(p["type"]), p, expected_types=types) for p, types in payloads]

    def unknown_event_sample(self) -> WebhookSample:
        now = datetime.now(UTC).replace(microsecond=0)
        comment = event(
            "comment.created",
            notion_id("comment", 1),
            now,
            parent=(self._plain.id, "page"),
            data={"page_id": self._plain.id},
        )
        comment["entity"]["type"] = "comment"
        return WebhookSample.of("comment.created", comment)

    def verification_request(self) -> WebhookSample:
        """The one-time, unsigned POST Notion sends when the subscription is created."""
        return WebhookSample.of("verification", {"verification_token": VERIFICATION_TOKEN})

    def sign(self, sample: WebhookSample, *, url: str, at: datetime) -> WebhookDelivery:
        return sign_delivery(sample, url=url)


def scenario(connector_id: str) -> Scenario:
    """The scenario of ``notion`` (see :mod:`ucf.fakes.scenario`)."""
    if connector_id != "notion":
        raise LookupError(f"ucf.fakes.notion has no scenario for {connector_id!r}")
    return NotionScenario()
