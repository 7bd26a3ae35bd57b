"""A faithful fake of Sentry's organization issues API and integration-platform webhooks.

What it reproduces (getsentry/sentry api-docs and getsentry/sentry-docs; the links
are under Sources in docs/connectors/sentry.md):

* ``GET /api/0/organizations/{org}/issues/`` — ``project`` (repeatable; ``-1``
  is every project), ``query`` in Sentry's search syntax (``is:resolved``,
  ``lastSeen:>=2024-05-01T10:00:00Z``, ``firstSeen:<…``, free text; default
  ``is:unresolved``), ``sort`` (``date`` = last seen, ``new`` = first seen,
  ``freq``, ``user``), ``statsPeriod`` (the time window: issues seen within
  it), ``limit`` (max 100) and ``cursor``. The answer is a bare JSON array.
* Pagination by ``Link`` header with **both** directions on every page, each
  with ``results="true|false"`` and ``cursor="0:<offset>:<is_prev>"``; plus
  ``X-Hits``.
* ``Authorization: Bearer <token>`` (``401 {"detail": "Invalid token"}``
  otherwise), ``404`` for another organization.
* ``X-Sentry-Rate-Limit-Limit/-Remaining/-Reset`` (epoch seconds) and the
  concurrency pair on every answer; the rate-limit fault is a ``429`` whose
  body is a bare JSON *string* and which sets no ``Retry-After``.
* Webhooks: ``{action, installation: {uuid}, data: {issue: …}, actor}`` with
  ``Request-ID``, ``Sentry-Hook-Resource``, ``Sentry-Hook-Timestamp`` and
  ``Sentry-Hook-Signature: <hex HMAC-SHA256(client secret, body)>``; bodies
  are compact JSON, as Sentry serialises them.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from urllib.parse import urlencode

from ucf.core.timestamps import parse_timestamp
from ucf.fakes.kit import FakeRequest, FakeResponse, Fault, iso_seconds
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

ORG: Final = "acme"
WEB: Final = "https://acme.sentry.io"
GOOD_TOKEN: Final = "sntrys_FAKE0good0internal0integration0token0for0ucf"  # noqa: S105
BAD_TOKEN: Final = "sntrys_FAKE0revoked0token0nobody0accepts0000000000"  # noqa: S105
CLIENT_SECRET: Final = "8f3b2c1d0e9a4f5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b"  # noqa: S105
INSTALLATION: Final = "a8e5d37a-696c-4c54-adb5-b3f28d64c7de"
RATE_LIMIT: Final = 40

PROJECTS: Final = (
    ("2", "pump-station", "python"),
    ("3", "front-end", "javascript"),
    ("5", "payments", "go"),
)
PEOPLE: Final = (
    ("1", "Jane Bloggs", "jane@acme.example"),
    ("2", "Rahul Iyer", "rahul@acme.example"),
    ("3", "Mei Chen", "mei@acme.example"),
)
ERRORS: Final = (
    ("ZeroDivisionError", "division by zero", "billing.tax in compute"),
    ("ReferenceError", "blooopy is not defined", "?(runner)"),
    ("KeyError", "'customer_id'", "orders.views in create"),
    ("TypeError", "Cannot read properties of undefined (reading 'map')", "app/cart.tsx"),
    ("ConnectionError", "timeout talking to payments-db", "payments.repo in save"),
    ("ValueError", "invalid literal for int() with base 10: ''", "search.api in parse"),
)
LEVELS: Final = ("error", "warning", "fatal", "error", "info")
PRIORITIES: Final = ("high", "medium", "low", None)

Status = Literal["unresolved", "resolved", "ignored"]


iso = iso_seconds  # Sentry's REST timestamps


def iso_micro(moment: datetime) -> str:
    """Sentry's webhook timestamps: microseconds and ``Z`` (``2019-08-19T20:58:37.391000Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------- dataset


@dataclass
class Issue:
    id: str
    short_id: str
    error: int
    project: int
    first_seen: datetime
    last_seen: datetime
    count: int
    level: str
    priority: str | None
    status: Status = "unresolved"
    substatus: str | None = "ongoing"
    assignee: int | None = None
    annotations: list[str] = field(default_factory=list)

    def json(self, *, timestamps: Callable[[datetime], str] = iso) -> dict[str, Any]:
        kind, value, culprit = ERRORS[self.error]
        project_id, slug, platform = PROJECTS[self.project]
        assigned = None
        if self.assignee is not None:
            person_id, name, email = PEOPLE[self.assignee]
            assigned = {"type": "user", "id": person_id, "name": name, "email": email}
        status_details: dict[str, Any] = {}
        if self.status == "resolved":
            status_details = {"inNextRelease": True}
        return {
            "annotations": [
                {"displayName": key, "url": f"https://acme.atlassian.net/browse/{key}"}
                for key in self.annotations
            ],
            "assignedTo": assigned,
            "count": str(self.count),
            "culprit": culprit,
            "firstSeen": timestamps(self.first_seen),
            "hasSeen": self.count > 3,
            "id": self.id,
            "isBookmarked": False,
            "isPublic": False,
            "isSubscribed": self.assignee is not None,
            "isUnhandled": self.level == "fatal",
            "issueCategory": "error",
            "issueType": "error",
            "lastSeen": timestamps(self.last_seen),
            "level": self.level,
            "logger": None,
            "metadata": {"type": kind, "value": value, "filename": culprit.split(" ")[0]},
            "numComments": 0,
            "permalink": f"{WEB}/issues/{self.id}/",
            "platform": platform,
            "priority": self.priority,
            "project": {"id": project_id, "name": slug, "slug": slug, "platform": platform},
            "shareId": None,
            "shortId": self.short_id,
            "stats": {"24h": [[int(self.last_seen.timestamp()) // 3600 * 3600, self.count]]},
            "status": self.status,
            "statusDetails": status_details,
            "subscriptionDetails": None,
            "substatus": self.substatus,
            "title": f"{kind}: {value}",
            "type": "error",
            "userCount": max(1, self.count // 3),
        }


class Dataset:
    """An organization's issues laid out around ``now``.

    150 issues last seen over the last six days (two pages at ``limit=100``):
    new ones seen once, recurring ones, regressions, resolved and archived
    ones; four more last seen a month ago, outside a seven-day initial window.
    """

    def __init__(self, now: datetime, *, count: int = 150) -> None:
        self._numbers = itertools.count(1)
        self._short = {slug: itertools.count(1) for _, slug, _ in PROJECTS}
        self.issues: dict[str, Issue] = {}
        window = timedelta(days=6)
        for index in range(count):
            self.add(now - window + window * index / count, index)
        for index in range(4):
            self.add(now - timedelta(days=30 + index), index)

    def add(self, last_seen: datetime, index: int, *, new: bool = False) -> Issue:
        number = next(self._numbers)
        project = index % len(PROJECTS)
        slug = PROJECTS[project][1]
        last_seen = last_seen.replace(microsecond=0)
        once = new or index % 5 == 0
        issue = Issue(
            id=str(4_500_000_000 + number),
            short_id=f"{slug.upper()}-{next(self._short[slug]):X}",
            error=index % len(ERRORS),
            project=project,
            first_seen=last_seen if once else last_seen - timedelta(hours=1 + index % 40),
            last_seen=last_seen,
            count=1 if once else 2 + index * 7 % 300,
            level=LEVELS[index % len(LEVELS)],
            priority=PRIORITIES[index % len(PRIORITIES)],
            assignee=index % len(PEOPLE) if index % 3 == 1 else None,
            annotations=[f"OPS-{100 + index}"] if index % 6 == 1 else [],
        )
        if once:
            issue.substatus = "new"
        elif index % 7 == 2:
            issue.status, issue.substatus = "resolved", None
        elif index % 7 == 4:
            issue.substatus = "regressed"
        elif index % 11 == 3:
            issue.status, issue.substatus = "ignored", "archived_until_escalating"
        self.issues[issue.id] = issue
        return issue


# --------------------------------------------------------------------------- search

_TOKEN: Final = re.compile(r'(\w+):(>=|<=|>|<)?("[^"]*"|\S+)|(\S+)')


@dataclass
class Search:
    """The parts of Sentry's issue search syntax the fake understands."""

    statuses: set[str] = field(default_factory=set)
    bounds: list[tuple[str, str, datetime]] = field(default_factory=list)
    words: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Search | str:
        search = cls()
        for key, op, value, word in _TOKEN.findall(text):
            if word:
                search.words.append(word.lower())
            elif key == "is":
                if value not in ("resolved", "unresolved", "ignored", "archived"):
                    return f'Invalid value for "is" search: {value}'
                search.statuses.add("ignored" if value == "archived" else value)
            elif key in ("lastSeen", "firstSeen"):
                moment = parse_timestamp(value.strip('"'), "iso8601")
                if moment is None or not op:
                    return f"Invalid date for {key}: {value}"
                search.bounds.append((key, op, moment))
            else:
                search.words.append(f"{key}:{value}".lower())
        return search

    def matches(self, issue: Issue) -> bool:
        if self.statuses and issue.status not in self.statuses:
            return False
        for key, op, moment in self.bounds:
            seen = issue.last_seen if key == "lastSeen" else issue.first_seen
            if not {
                ">=": seen >= moment,
                ">": seen > moment,
                "<=": seen <= moment,
                "<": seen < moment,
            }[op]:
                return False
        title = " ".join(str(part) for part in ERRORS[issue.error]).lower()
        return all(word in title for word in self.words)


_PERIOD: Final = re.compile(r"(\d+)([smhdw])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# --------------------------------------------------------------------------- the fake


def _detail(status: int, detail: str) -> FakeResponse:
    return FakeResponse.json({"detail": detail}, status)


class SentryFake(ProviderFake):
    """``sentry.io`` for one organization, answering as documented."""

    poll_route = "/api/0/organizations/{org}/issues/"

    def __init__(self, now: datetime) -> None:
        super().__init__()
        self.data = Dataset(now)
        self.now = now
        self.tokens = {GOOD_TOKEN}
        self.remaining = RATE_LIMIT
        self.server.add_route(
            "GET", "/api/0/organizations/{org}/issues/", self._guard(self._issues)
        )
        self.server.add_route("GET", "/api/0/organizations/{org}/", self._guard(self._organization))

    # -- protocol

    def add_activity(self, now: datetime) -> Activity:
        """Two new errors; one issue seen again; one resolved issue regressed."""
        data = self.data
        self.now = max(self.now, now)
        fresh = [data.add(now, 1, new=True), data.add(now, 2, new=True)]
        ongoing = sorted(
            (i for i in data.issues.values() if i.substatus == "ongoing"), key=lambda i: i.last_seen
        )[-1]
        resolved = sorted(
            (i for i in data.issues.values() if i.status == "resolved"), key=lambda i: i.last_seen
        )[-1]
        ongoing.last_seen, ongoing.count = now.replace(microsecond=0), ongoing.count + 1
        resolved.status, resolved.substatus = "unresolved", "regressed"
        resolved.last_seen, resolved.count = now.replace(microsecond=0), resolved.count + 1
        return Activity(
            new_ids=frozenset(i.id for i in fresh),
            changed_ids=frozenset({ongoing.id, resolved.id}),
        )

    def push_change(self, now: datetime) -> PushedChange:
        """A resolved issue regresses: ``issue.unresolved``, its ``lastSeen`` in microseconds
        where the REST listing writes whole seconds."""
        self.now = max(self.now, now)
        issue = max(
            (i for i in self.data.issues.values() if i.status == "resolved"),
            key=lambda i: i.last_seen,
        )
        issue.status, issue.substatus = "unresolved", "regressed"
        issue.last_seen, issue.count = now, issue.count + 1
        sample = WebhookSample.of(
            "issue.unresolved",
            issue_event("unresolved", issue, actor=None),
            headers={"Sentry-Hook-Resource": "issue"},
        )
        return PushedChange(issue.id, sample)

    def ids_changed_since(self, moment: datetime) -> frozenset[str]:
        return frozenset(i.id for i in self.data.issues.values() if i.last_seen >= moment)

    def rate_limit_fault(self, retry_after: int) -> Fault:
        reset = int(time.time()) + retry_after
        return Fault.rate_limited(
            None,
            headers=self._rate_headers(remaining=0, reset=reset),
            body=(
                f"You are attempting to use this endpoint too frequently. Limit is {RATE_LIMIT} "
                "requests in 1 seconds"
            ),
        )

    # -- plumbing

    def _rate_headers(self, *, remaining: int, reset: int) -> dict[str, str]:
        return {
            "X-Sentry-Rate-Limit-Limit": str(RATE_LIMIT),
            "X-Sentry-Rate-Limit-Remaining": str(remaining),
            "X-Sentry-Rate-Limit-Reset": str(reset),
            "X-Sentry-Rate-Limit-ConcurrentLimit": "25",
            "X-Sentry-Rate-Limit-ConcurrentRemaining": "24",
        }

    def _guard(
        self, handler: Callable[[FakeRequest], FakeResponse]
    ) -> Callable[[FakeRequest], FakeResponse]:
        def guarded(request: FakeRequest) -> FakeResponse:
            header = request.headers.get("authorization")
            if header is None:
                return _detail(401, "Authentication credentials were not provided.")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or token not in self.tokens:
                return _detail(401, "Invalid token")
            if request.path_params.get("org") != ORG:
                return _detail(404, "The requested resource does not exist")
            self.remaining = max(1, self.remaining - 1)
            response = handler(request)
            headers = {
                **dict(response.header_items()),
                **self._rate_headers(remaining=self.remaining, reset=int(time.time()) + 1),
            }
            return FakeResponse(response.status, headers, response.body)

        return guarded

    def _organization(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json(
            {
                "id": "1",
                "slug": ORG,
                "name": "Acme",
                "status": {"id": "active", "name": "active"},
                "dateCreated": "2018-11-06T21:19:55.101Z",
                "isEarlyAdopter": False,
                "features": ["issue-priority-ui"],
                "links": {"organizationUrl": WEB, "regionUrl": "https://us.sentry.io"},
            }
        )

    def _issues(self, request: FakeRequest) -> FakeResponse:
        projects = request.query.get("project", [])
        try:
            wanted = {int(p) for p in projects}
        except ValueError:
            return _detail(400, "Invalid project parameter. Values must be numbers.")
        issues = list(self.data.issues.values())
        if wanted and -1 not in wanted:
            issues = [i for i in issues if int(PROJECTS[i.project][0]) in wanted]
        period = request.param("statsPeriod") or "14d"
        matched = _PERIOD.fullmatch(period)
        if matched is None:
            return _detail(400, f"Invalid statsPeriod: {period!r}")
        start = max(datetime.now(UTC), self.now) - timedelta(
            seconds=int(matched.group(1)) * _UNITS[matched.group(2)]
        )
        issues = [i for i in issues if i.last_seen >= start]
        search = Search.parse(request.param("query", "is:unresolved") or "")
        if isinstance(search, str):
            return _detail(400, f"Error parsing search query: {search}")
        issues = [i for i in issues if search.matches(i)]
        sort = request.param("sort") or "date"
        keys: dict[str, Callable[[Issue], Any]] = {
            "date": lambda i: (i.last_seen, i.id),
            "new": lambda i: (i.first_seen, i.id),
            "freq": lambda i: (i.count, i.id),
            "user": lambda i: (i.count // 3, i.id),
        }
        if sort not in keys:
            return _detail(400, f"Invalid sort: {sort}")
        issues.sort(key=keys[sort], reverse=True)
        try:
            limit = min(100, max(1, int(request.param("limit") or "100")))
            _, offset_text, _ = (request.param("cursor") or "0:0:0").split(":")
            offset = int(offset_text)
        except ValueError:
            return _detail(400, "Invalid cursor parameter.")
        rows = [i.json() for i in issues[offset : offset + limit]]
        return FakeResponse.json(
            rows,
            headers={
                "Link": self._link(request, offset, limit, len(issues)),
                "X-Hits": str(len(issues)),
                "X-Max-Hits": "1000",
            },
        )

    def _link(self, request: FakeRequest, offset: int, limit: int, total: int) -> str:
        """Sentry's Link header: previous and next always, each saying whether it has results."""
        query = urlencode(
            [(k, v) for k, values in request.query.items() if k != "cursor" for v in values]
        )
        base = f"{request.url_for(request.path)}?{query}"
        previous = f"0:{max(0, offset - limit)}:1"
        following = f"0:{offset + limit}:0"
        return (
            f'<{base}&cursor={previous}>; rel="previous"; '
            f'results="{"true" if offset > 0 else "false"}"; cursor="{previous}", '
            f'<{base}&cursor={following}>; rel="next"; '
            f'results="{"true" if offset + limit < total else "false"}"; cursor="{following}"'
        )


# --------------------------------------------------------------------------- webhooks


def issue_event(action: str, issue: Issue, *, actor: int | None) -> dict[str, Any]:
    """An ``issue`` webhook body: the issue (webhook timestamps) plus its three URLs."""
    data = issue.json(timestamps=iso_micro)
    data.update(
        {
            "url": f"https://sentry.io/api/0/organizations/{ORG}/issues/{issue.id}/",
            "web_url": f"https://sentry.io/organizations/{ORG}/issues/{issue.id}/",
            "project_url": f"https://sentry.io/organizations/{ORG}/issues/?project={data['project']['id']}",
        }
    )
    if actor is None:
        who: dict[str, Any] = {"type": "application", "id": "sentry", "name": "Sentry"}
    else:
        person_id, name, _ = PEOPLE[actor]
        who = {"type": "user", "id": int(person_id), "name": name}
    return {
        "action": action,
        "installation": {"uuid": INSTALLATION},
        "data": {"issue": data},
        "actor": who,
    }


def sign_delivery(
    sample: WebhookSample, *, url: str, at: datetime, secret: str = CLIENT_SECRET
) -> WebhookDelivery:
    """Sentry's headers: the resource, a timestamp (not signed) and the HMAC of the body."""
    headers = {
        "Content-Type": "application/json",
        "Request-ID": str(uuid.uuid4()),
        "Sentry-Hook-Timestamp": str(int(at.timestamp())),
        **sample.headers,
        "Sentry-Hook-Signature": hmac_digest(secret, sample.body),
    }
    return WebhookDelivery(sample.name, url, sample.body, headers, sample.expected_types)


class SentryScenario(Scenario):
    connector_id = "sentry"
    polling_signal_types = frozenset(
        {"error_created", "error_seen_again", "error_regressed", "error_resolved"}
    )
    webhook_signal_types = frozenset(
        {"error_created", "error_resolved", "error_assigned", "error_unresolved", "error_archived"}
    )
    # Dataset issue n is Dataset.add index n - 1 (see Dataset.add).
    metadata = (
        # Index 1: a recurring warning, medium priority, front-end, assigned to Rahul,
        # linked to OPS-101.
        MetadataExpectation(
            item_id="4500000002",
            priority="medium",
            participants=("Rahul Iyer",),
            tags=("front-end", "warning"),
            related_tickets=("OPS-101",),
        ),
        # Index 2: fatal (critical whatever its priority), payments, nobody assigned.
        MetadataExpectation(item_id="4500000003", priority="critical", tags=("payments", "fatal")),
        # Index 3: no priority field, level error → high.
        MetadataExpectation(item_id="4500000004", priority="high", tags=("pump-station", "error")),
        # The webhook's assigned issue.
        MetadataExpectation(
            item_id="4600000001",
            priority="high",
            participants=("Mei Chen",),
            tags=("pump-station", "error"),
        ),
    )

    def fake(self, now: datetime) -> SentryFake:
        return SentryFake(now)

    def config(self, base_url: str) -> dict[str, str]:
        return {"baseUrl": base_url, "organization": ORG, "project": "-1"}

    def credentials(self) -> dict[str, str]:
        return {"authToken": GOOD_TOKEN, "clientSecret": CLIENT_SECRET}

    def bad_credentials(self) -> dict[str, str]:
        return {"authToken": BAD_TOKEN, "clientSecret": CLIENT_SECRET}

    @property
    def webhook_secret(self) -> str:
        return CLIENT_SECRET

    def webhook_samples(self) -> list[WebhookSample]:
        now = datetime.now(UTC)

        def issue(number: int, **changes: Any) -> Issue:
            base = Issue(
                id=str(4_600_000_000 + number),
                short_id=f"PUMP-STATION-{number:X}",
                error=number % len(ERRORS),
                project=0,
                first_seen=now - timedelta(hours=2),
                last_seen=now,
                count=12,
                level="error",
                priority="high",
            )
            for key, value in changes.items():
                setattr(base, key, value)
            return base

        samples = [
            ("created", issue(2, first_seen=now, count=1, substatus="new"), None, "error_created"),
            ("resolved", issue(3, status="resolved", substatus=None), 1, "error_resolved"),
            ("assigned", issue(1, assignee=2), 2, "error_assigned"),
            ("unresolved", issue(4, substatus="regressed"), None, "error_unresolved"),
            (
                "archived",
                issue(5, status="ignored", substatus="archived_until_escalating"),
                0,
                "error_archived",
            ),
        ]
        return [
            WebhookSample.of(
                f"issue.{action}",
                issue_event(action, item, actor=actor),
                headers={"Sentry-Hook-Resource": "issue"},
                expected_types=(expected,),
            )
            for action, item, actor, expected in samples
        ]

    def unknown_event_sample(self) -> WebhookSample:
        payload = {
            "action": "created",
            "data": {
                "comment": "adding a comment",
                "project_slug": "pump-station",
                "comment_id": 1234,
                "issue_id": 100,
                "timestamp": iso_micro(datetime.now(UTC)),
            },
            "installation": {"uuid": INSTALLATION},
            "actor": {"type": "user", "id": 1, "name": "Jane Bloggs"},
        }
        return WebhookSample.of(
            "comment.created", payload, headers={"Sentry-Hook-Resource": "comment"}
        )

    def sign(self, sample: WebhookSample, *, url: str, at: datetime) -> WebhookDelivery:
        return sign_delivery(sample, url=url, at=at)


def scenario(connector_id: str) -> Scenario:
    """The scenario of ``sentry`` (see :mod:`ucf.fakes.scenario`)."""
    if connector_id != "sentry":
        raise LookupError(f"ucf.fakes.sentry has no scenario for {connector_id!r}")
    return SentryScenario()
