"""A faithful fake of Linear's GraphQL API and its webhooks.

Sources: Linear's developer docs and SDK, linked under Sources in
docs/connectors/linear.md.

The fake is a real GraphQL server: queries are parsed, validated and executed
by graphql-core against a subset of Linear's own schema
(``packages/sdk/src/schema.graphql``: the ``Issue`` fields a connector reads,
``IssueConnection``/``PageInfo``, ``IssueFilter.updatedAt: DateComparator``,
``PaginationOrderBy``), so a descriptor that asks for a field Linear does not
have gets Linear's validation error, and only the selected fields come back.

* ``POST /graphql``; ``issues(filter, first ≤ 250 (default 50), after,
  orderBy: createdAt|updatedAt, includeArchived)``, newest first by the order
  field; Relay ``pageInfo { hasNextPage endCursor }``.
* ``Authorization: <personal API key>`` (no ``Bearer``) or ``Bearer <OAuth
  token>``; anything else is HTTP 400 with an ``AUTHENTICATION_ERROR``.
* ``X-RateLimit-Requests-*`` / ``X-RateLimit-Complexity-*`` headers (resets in
  epoch ms); the rate-limit fault is HTTP 400 with ``RATELIMITED`` and
  ``Retry-After``.
* Webhooks: ``Linear-Signature`` = hex HMAC-SHA256 of the raw body,
  ``webhookTimestamp`` (ms) in the body, ``Linear-Delivery``, ``Linear-Event``;
  payloads shaped as the SDK's ``EntityWebhookPayload`` / ``IssueWebhookPayload``.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Final

from graphql import GraphQLError, GraphQLSchema, build_schema, graphql_sync

from ucf.core.timestamps import parse_timestamp
from ucf.fakes.kit import FakeRequest, FakeResponse, Fault, iso_millis
from ucf.fakes.oauth_providers import mount_linear
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

API_KEY: Final = "lin_api_FAKEgoodKeyForTheUcfCatalogueBattery0001"
BAD_API_KEY: Final = "lin_api_FAKErevokedKeyNobodyAccepts000000000"
OAUTH_TOKEN: Final = "lin_oauth_FAKEaccessTokenForTheBattery"  # noqa: S105 - a fake's
OAUTH_CLIENT_ID: Final = "fakelinearoauthclientid0001"
OAUTH_CLIENT_SECRET: Final = "fakelinearoauthclientsecret0001"  # noqa: S105 - a fake's
WEBHOOK_SECRET: Final = "lin_wh_FAKEsigningSecretOfTheBatteryWebhook"  # noqa: S105 - a fake's
ORGANIZATION_ID: Final = "e5a6b2f4-0c8b-4c1e-9f7a-5d3b1c2a4e6f"
WORKSPACE: Final = "acme"
TEAM: Final = {"id": "7a1c9b3e-2d4f-4e6a-8b0c-1d2e3f4a5b6c", "key": "ENG", "name": "Engineering"}

SCHEMA_SDL: Final = """
scalar DateTime
scalar DateTimeOrDuration
scalar TimelessDate
scalar JSONObject

enum PaginationOrderBy { createdAt updatedAt }

input DateComparator {
  eq: DateTimeOrDuration
  gt: DateTimeOrDuration
  gte: DateTimeOrDuration
  in: [DateTimeOrDuration!]
  lt: DateTimeOrDuration
  lte: DateTimeOrDuration
  neq: DateTimeOrDuration
  nin: [DateTimeOrDuration!]
}

input IssueFilter {
  createdAt: DateComparator
  updatedAt: DateComparator
  and: [IssueFilter!]
  or: [IssueFilter!]
}

type PageInfo {
  endCursor: String
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
}

type User {
  active: Boolean!
  avatarUrl: String
  displayName: String!
  email: String!
  id: ID!
  name: String!
  url: String!
}
type UserConnection { nodes: [User!]! pageInfo: PageInfo! }

type Team { id: ID! key: String! name: String! }
type WorkflowState { color: String! id: ID! name: String! position: Float! type: String! }
type IssueLabel { color: String! id: ID! name: String! }
type IssueLabelConnection { nodes: [IssueLabel!]! pageInfo: PageInfo! }
type Project { id: ID! name: String! state: String! url: String! }

type Cycle {
  completedAt: DateTime
  createdAt: DateTime!
  description: String
  endsAt: DateTime!
  id: ID!
  name: String
  number: Float!
  progress: Float!
  startsAt: DateTime!
  updatedAt: DateTime!
}

type IssueRelation {
  createdAt: DateTime!
  id: ID!
  issue: Issue!
  relatedIssue: Issue!
  type: String!
  updatedAt: DateTime!
}
type IssueRelationConnection { nodes: [IssueRelation!]! pageInfo: PageInfo! }

type Issue {
  addedToCycleAt: DateTime
  archivedAt: DateTime
  assignee: User
  branchName: String!
  canceledAt: DateTime
  completedAt: DateTime
  createdAt: DateTime!
  creator: User
  customerTicketCount: Int!
  cycle: Cycle
  description: String
  dueDate: TimelessDate
  estimate: Float
  id: ID!
  identifier: String!
  labelIds: [String!]!
  labels(first: Int, after: String): IssueLabelConnection!
  number: Float!
  parent: Issue
  previousIdentifiers: [String!]!
  priority: Float!
  priorityLabel: String!
  project: Project
  relations(first: Int, after: String): IssueRelationConnection!
  sortOrder: Float!
  startedAt: DateTime
  state: WorkflowState!
  subscribers(first: Int, after: String): UserConnection!
  team: Team!
  title: String!
  trashed: Boolean
  updatedAt: DateTime!
  url: String!
}
type IssueEdge { cursor: String! node: Issue! }
type IssueConnection { edges: [IssueEdge!]! nodes: [Issue!]! pageInfo: PageInfo! }

type Organization { id: ID! name: String! urlKey: String! }

type Query {
  issues(
    after: String
    before: String
    filter: IssueFilter
    first: Int
    includeArchived: Boolean
    last: Int
    orderBy: PaginationOrderBy
  ): IssueConnection!
  viewer: User!
  organization: Organization!
}
"""

PEOPLE: Final[tuple[tuple[str, str], ...]] = (
    ("Ada Lovelace", "ada"),
    ("Grace Hopper", "grace"),
    ("Alan Turing", "alan"),
    ("Katherine Johnson", "katherine"),
    ("Linus Torvalds", "linus"),
)
LABELS: Final[tuple[tuple[str, str], ...]] = (
    ("Bug", "#eb5757"),
    ("Feature", "#bb87fc"),
    ("Improvement", "#4ea7fc"),
)
STATES: Final[tuple[tuple[str, str, str], ...]] = (
    ("Backlog", "backlog", "#bec2c8"),
    ("Todo", "unstarted", "#e2e2e2"),
    ("In Progress", "started", "#f2c94c"),
    ("Done", "completed", "#5e6ad2"),
    ("Canceled", "canceled", "#95a2b3"),
)
PRIORITY_LABELS: Final = ("No priority", "Urgent", "High", "Medium", "Low")
TITLES: Final = (
    "Login fails after password reset",
    "Add CSV export to reports",
    "Speed up the issue search",
    "Crash when a webhook payload is empty",
    "Onboarding checklist for new teams",
    "Rate limit headers missing on 429",
)


iso_ms = iso_millis  # Linear's timestamps


def _uuid(kind: str, number: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://linear.app/{WORKSPACE}/{kind}/{number}"))


def user(index: int) -> dict[str, Any]:
    name, handle = PEOPLE[index % len(PEOPLE)]
    return {
        "id": _uuid("user", index % len(PEOPLE)),
        "name": name,
        "displayName": handle,
        "email": f"{handle}@acme.dev",
        "avatarUrl": f"https://public.linear.app/avatars/{handle}.png",
        "active": True,
        "url": f"https://linear.app/{WORKSPACE}/profiles/{handle}",
    }


def label(index: int) -> dict[str, Any]:
    name, color = LABELS[index % len(LABELS)]
    return {"id": _uuid("label", index % len(LABELS)), "name": name, "color": color}


def state(index: int) -> dict[str, Any]:
    name, kind, color = STATES[index % len(STATES)]
    return {
        "id": _uuid("state", index % len(STATES)),
        "name": name,
        "type": kind,
        "color": color,
        "position": float(index % len(STATES)),
    }


def _connection(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "nodes": nodes,
        "pageInfo": {
            "hasNextPage": False,
            "hasPreviousPage": False,
            "startCursor": None,
            "endCursor": None,
        },
    }


# --------------------------------------------------------------------------- dataset


@dataclass
class Cycle:
    number: int
    starts: datetime
    ends: datetime
    created: datetime
    updated: datetime
    name: str | None = None

    @property
    def id(self) -> str:
        return _uuid("cycle", self.number)

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": float(self.number),
            "name": self.name,
            "description": None,
            "startsAt": iso_ms(self.starts),
            "endsAt": iso_ms(self.ends),
            "completedAt": None,
            "progress": 0.4,
            "createdAt": iso_ms(self.created),
            "updatedAt": iso_ms(self.updated),
        }


@dataclass
class Issue:
    number: int
    title: str
    created: datetime
    updated: datetime
    priority: int
    state: int
    creator: int
    assignee: int | None
    labels: list[int] = field(default_factory=list)
    cycle: Cycle | None = None
    added_to_cycle: datetime | None = None
    related: list[Issue] = field(default_factory=list)
    subscribers: list[int] = field(default_factory=list)

    @property
    def id(self) -> str:
        return _uuid("issue", self.number)

    @property
    def identifier(self) -> str:
        return f"{TEAM['key']}-{self.number}"

    @property
    def url(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")
        return f"https://linear.app/{WORKSPACE}/issue/{self.identifier}/{slug}"

    def _common(self) -> dict[str, Any]:
        done = STATES[self.state][1] == "completed"
        return {
            "id": self.id,
            "identifier": self.identifier,
            "number": float(self.number),
            "title": self.title,
            "description": f"Reported by support. See {self.url}",
            "priority": float(self.priority),
            "priorityLabel": PRIORITY_LABELS[self.priority],
            "url": self.url,
            "createdAt": iso_ms(self.created),
            "updatedAt": iso_ms(self.updated),
            "archivedAt": None,
            "canceledAt": None,
            "completedAt": iso_ms(self.updated) if done else None,
            "startedAt": iso_ms(self.created) if STATES[self.state][1] == "started" else None,
            "addedToCycleAt": iso_ms(self.added_to_cycle) if self.added_to_cycle else None,
            "dueDate": None,
            "estimate": float(self.number % 5) or None,
            "labelIds": [label(i)["id"] for i in self.labels],
            "previousIdentifiers": [],
            "sortOrder": -float(self.number),
            "trashed": None,
        }

    def graph(self) -> dict[str, Any]:
        """The node ``issues`` resolves to (every field of the schema subset)."""
        return {
            **self._common(),
            "branchName": f"{PEOPLE[self.creator][1]}/{self.identifier.lower()}",
            "customerTicketCount": self.number % 3,
            "state": state(self.state),
            "team": TEAM,
            "creator": user(self.creator),
            "assignee": user(self.assignee) if self.assignee is not None else None,
            "labels": _connection([label(i) for i in self.labels]),
            "cycle": self.cycle.json() if self.cycle else None,
            "project": None,
            "parent": None,
            "subscribers": _connection([user(i) for i in self.subscribers]),
            "relations": _connection(
                [
                    {
                        "id": _uuid("relation", self.number * 1000 + other.number),
                        "type": "related",
                        "issue": {"id": self.id, "identifier": self.identifier},
                        "relatedIssue": {"id": other.id, "identifier": other.identifier},
                        "createdAt": iso_ms(self.created),
                        "updatedAt": iso_ms(self.created),
                    }
                    for other in self.related
                ]
            ),
        }

    def webhook(self) -> dict[str, Any]:
        """``IssueWebhookPayload``: ids beside the child objects, labels as a plain list."""
        return {
            **self._common(),
            "teamId": TEAM["id"],
            "team": TEAM,
            "stateId": state(self.state)["id"],
            "state": {k: v for k, v in state(self.state).items() if k != "position"},
            "creatorId": user(self.creator)["id"],
            "creator": _user_child(self.creator),
            "assigneeId": user(self.assignee)["id"] if self.assignee is not None else None,
            "assignee": _user_child(self.assignee) if self.assignee is not None else None,
            "labels": [label(i) for i in self.labels],
            "cycleId": self.cycle.id if self.cycle else None,
            "cycle": (
                {
                    k: v
                    for k, v in self.cycle.json().items()
                    if k in ("id", "number", "name", "startsAt", "endsAt")
                }
                if self.cycle
                else None
            ),
            "subscriberIds": [user(i)["id"] for i in self.subscribers],
            "prioritySortOrder": float(self.priority),
            "reactionData": {},
            "botActor": None,
        }


def _user_child(index: int) -> dict[str, Any]:
    """``UserChildWebhookPayload``."""
    full = user(index)
    return {key: full[key] for key in ("id", "name", "email", "avatarUrl", "url")}


class Dataset:
    """One team's issues and cycles around ``now``.

    150 issues changed in the last six days (two pages at ``first: 100``),
    three untouched for a month.
    """

    def __init__(self, now: datetime, *, count: int = 150) -> None:
        week = timedelta(days=7)
        self.cycles = [
            Cycle(n, now - week * (3 - n), now - week * (2 - n), now - week * 4, now - week * 4)
            for n in range(1, 4)
        ]
        self.issues: dict[int, Issue] = {}
        window = timedelta(days=6)
        for index in range(count):
            self._add(now - window + window * index / count, index)
        for index in range(3):
            self._add(now - timedelta(days=30 + index), index)
        issues = list(self.issues.values())
        for position, issue in enumerate(issues):
            if position % 6 == 0 and position + 1 < len(issues):
                issue.related.append(issues[position + 1])

    def _add(self, updated: datetime, index: int) -> Issue:
        number = len(self.issues) + 1
        updated = updated.replace(microsecond=(updated.microsecond // 1000) * 1000)
        created = updated if index % 3 == 0 else updated - timedelta(hours=1 + index % 7)
        cycle = self.cycles[index % 3] if index % 2 else None
        issue = Issue(
            number=number,
            title=f"{TITLES[index % len(TITLES)]} ({number})",
            created=created,
            updated=updated,
            priority=index % 5,
            state=index % len(STATES),
            creator=index % len(PEOPLE),
            assignee=(index + 1) % len(PEOPLE) if index % 4 else None,
            labels=[index % len(LABELS)],
            cycle=cycle,
            added_to_cycle=created if cycle else None,
            subscribers=[index % len(PEOPLE), (index + 2) % len(PEOPLE)],
        )
        self.issues[number] = issue
        return issue

    def create(self, now: datetime, title: str, *, priority: int) -> Issue:
        issue = self._add(now, len(self.issues))
        issue.title, issue.priority = title, priority
        issue.created = issue.updated = _ms(now)
        issue.cycle, issue.added_to_cycle = None, None
        return issue

    def touch(self, issue: Issue, now: datetime, change: Callable[[Issue], None]) -> Issue:
        change(issue)
        issue.updated = _ms(now)
        return issue


def _ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=(moment.microsecond // 1000) * 1000)


# --------------------------------------------------------------------------- the fake


class _GraphError(Exception):
    """A resolver failure reported as Linear reports it (``extensions``)."""

    def __init__(self, message: str, code: str, user_message: str) -> None:
        super().__init__(message)
        self.extensions = {
            "type": "invalid input",
            "code": code,
            "statusCode": 400,
            "userError": True,
            "userPresentableMessage": user_message,
        }


_DURATION: Final = re.compile(
    r"^(-)?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$"
)


def _moment(value: Any, now: datetime) -> datetime:
    """A ``DateTimeOrDuration``: ISO 8601, or a duration like ``-P2W1D`` relative to now."""
    text = str(value)
    match = _DURATION.match(text)
    if match and text not in ("P", "-P"):
        sign, weeks, days, hours, minutes, seconds = match.groups()
        delta = timedelta(
            weeks=int(weeks or 0),
            days=int(days or 0),
            hours=int(hours or 0),
            minutes=int(minutes or 0),
            seconds=int(seconds or 0),
        )
        return now - delta if sign else now + delta
    parsed = parse_timestamp(text, "iso8601")
    if parsed is None:
        raise _GraphError(
            f"Argument Validation Error: {text!r} is not a DateTimeOrDuration",
            "INVALID_INPUT",
            "Invalid date.",
        )
    return parsed


_COMPARATORS: Final[dict[str, Callable[[datetime, Any], bool]]] = {
    "eq": lambda v, x: v == x,
    "neq": lambda v, x: v != x,
    "gt": lambda v, x: v > x,
    "gte": lambda v, x: v >= x,
    "lt": lambda v, x: v < x,
    "lte": lambda v, x: v <= x,
    "in": lambda v, x: v in x,
    "nin": lambda v, x: v not in x,
}


def _matches(issue: Issue, spec: dict[str, Any] | None, now: datetime) -> bool:
    if not spec:
        return True
    for key, comparator in spec.items():
        if key == "and":
            if not all(_matches(issue, part, now) for part in comparator):
                return False
            continue
        if key == "or":
            if not any(_matches(issue, part, now) for part in comparator):
                return False
            continue
        value = issue.updated if key == "updatedAt" else issue.created
        for operator, operand in (comparator or {}).items():
            if operand is None:
                continue
            target = (
                [_moment(o, now) for o in operand]
                if isinstance(operand, list)
                else _moment(operand, now)
            )
            if not _COMPARATORS[operator](value, target):
                return False
    return True


def _cursor(issue: Issue) -> str:
    return base64.b64encode(f"issue:{issue.id}".encode()).decode()


class LinearFake(ProviderFake):
    """``api.linear.app/graphql`` for one workspace."""

    poll_route = "/graphql"

    def __init__(self, now: datetime) -> None:
        super().__init__()
        self.data = Dataset(now)
        self.keys = {API_KEY}
        self.oauth_tokens = {OAUTH_TOKEN}
        self.remaining = 5000
        self.server.add_route("POST", "/graphql", self._graphql)
        # linear.app/oauth/authorize and api.linear.app/oauth/{token,revoke}: the consent.
        self.auth = mount_linear(
            self.server, OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, access_tokens=self.oauth_tokens
        )

    @cached_property
    def schema(self) -> GraphQLSchema:
        return build_schema(SCHEMA_SDL)

    # -- protocol

    def add_activity(self, now: datetime) -> Activity:
        """Two new issues; one moved into the current cycle, one raised to urgent."""
        data = self.data
        fresh = [
            data.create(now, "Checkout page times out", priority=1),
            data.create(now, "Typo on the pricing page", priority=4),
        ]
        open_issues = [i for i in data.issues.values() if i.cycle is None]
        current = data.cycles[-1]

        def into_cycle(issue: Issue) -> None:
            issue.cycle, issue.added_to_cycle = current, _ms(now)

        def escalate(issue: Issue) -> None:
            issue.priority = 1

        changed = [
            data.touch(open_issues[4], now, into_cycle),
            data.touch(open_issues[9], now, escalate),
        ]
        return Activity(
            new_ids=frozenset(i.id for i in fresh), changed_ids=frozenset(i.id for i in changed)
        )

    def push_change(self, now: datetime) -> PushedChange:
        """An issue raised to urgent: an ``Issue`` ``update`` with ``updatedFrom``."""
        issue = list(self.data.issues.values())[5]
        before = {"priority": float(issue.priority), "updatedAt": iso_ms(issue.updated)}

        def escalate(changed: Issue) -> None:
            changed.priority = 1

        self.data.touch(issue, now, escalate)
        payload = envelope("Issue", "update", issue.webhook(), url=issue.url, updated_from=before)
        return PushedChange(issue.id, WebhookSample.of("Issue.update", payload))

    def ids_changed_since(self, moment: datetime) -> frozenset[str]:
        return frozenset(i.id for i in self.data.issues.values() if i.updated >= moment)

    def rate_limit_fault(self, retry_after: int) -> Fault:
        reset_ms = int((time.time() + retry_after) * 1000)
        body = {
            "errors": [
                {
                    "message": "Rate limit exceeded",
                    "extensions": {
                        "type": "ratelimited",
                        "code": "RATELIMITED",
                        "statusCode": 429,
                        "userError": True,
                        "userPresentableMessage": "Too many requests. Please try again later.",
                    },
                }
            ]
        }
        headers = {
            **self._rate_headers(requests_remaining=0),
            "X-RateLimit-Requests-Reset": str(reset_ms),
        }
        return Fault.rate_limited(retry_after, status=400, headers=headers, body=body)

    # -- plumbing

    def _rate_headers(self, *, requests_remaining: int | None = None) -> dict[str, str]:
        reset = str(int((time.time() + 3600) * 1000))
        remaining = self.remaining if requests_remaining is None else requests_remaining
        return {
            "X-RateLimit-Requests-Limit": "5000",
            "X-RateLimit-Requests-Remaining": str(remaining),
            "X-RateLimit-Requests-Reset": reset,
            "X-RateLimit-Complexity-Limit": "3000000",
            "X-RateLimit-Complexity-Remaining": "2999000",
            "X-RateLimit-Complexity-Reset": reset,
        }

    def _authenticated(self, request: FakeRequest) -> bool:
        header = request.headers.get("authorization", "")
        if header in self.keys:
            return True
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and token in self.oauth_tokens

    def _graphql(self, request: FakeRequest) -> FakeResponse:
        if not self._authenticated(request):
            return FakeResponse.json(
                {
                    "errors": [
                        {
                            "message": "Authentication required, not authenticated",
                            "extensions": {
                                "type": "authentication error",
                                "code": "AUTHENTICATION_ERROR",
                                "statusCode": 401,
                                "userError": True,
                                "userPresentableMessage": (
                                    "You need to authenticate to access this operation."
                                ),
                            },
                        }
                    ]
                },
                400,
            )
        try:
            envelope = request.json()
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("query"), str):
            return FakeResponse.json({"errors": [{"message": "Must provide query string."}]}, 400)
        self.remaining = max(0, self.remaining - 1)
        now = datetime.now(UTC)
        result = graphql_sync(
            self.schema,
            envelope["query"],
            root_value=_Root(self, now),
            variable_values=envelope.get("variables"),
            operation_name=envelope.get("operationName"),
        )
        body: dict[str, Any] = {}
        if result.errors:
            body["errors"] = [_error_json(error) for error in result.errors]
        if result.data is not None:
            body["data"] = result.data
        status = 400 if result.data is None else 200
        headers = {**self._rate_headers(), "X-Complexity": "160"}
        return FakeResponse.json(body, status, headers)


def _error_json(error: GraphQLError) -> dict[str, Any]:
    formatted = dict(error.formatted)
    original = error.original_error
    if isinstance(original, _GraphError):
        formatted["extensions"] = original.extensions
    elif "extensions" not in formatted:
        formatted["extensions"] = {
            "type": "graphql error",
            "code": "GRAPHQL_VALIDATION_FAILED",
            "userError": True,
        }
    return formatted


class _Root:
    """Root resolvers (graphql-core calls attributes of the root value)."""

    def __init__(self, fake: LinearFake, now: datetime) -> None:
        self._fake = fake
        self._now = now

    def viewer(self, _info: Any) -> dict[str, Any]:
        return user(0)

    def organization(self, _info: Any) -> dict[str, Any]:
        return {"id": ORGANIZATION_ID, "name": "Acme", "urlKey": WORKSPACE}

    def issues(self, _info: Any, **args: Any) -> dict[str, Any]:
        first = args.get("first")
        if args.get("last") is not None or args.get("before") is not None:
            raise _GraphError(
                "backwards pagination is not supported by this fake",
                "INVALID_INPUT",
                "Unsupported pagination.",
            )
        if first is None:
            first = 50
        if not 0 < first <= 250:
            raise _GraphError(
                "Argument Validation Error: first must not be greater than 250",
                "INVALID_INPUT",
                "Invalid pagination arguments.",
            )
        order = args.get("orderBy") or "createdAt"
        issues = [
            i for i in self._fake.data.issues.values() if _matches(i, args.get("filter"), self._now)
        ]

        def by_order(issue: Issue) -> tuple[datetime, int]:
            return (issue.updated if order == "updatedAt" else issue.created, issue.number)

        issues.sort(key=by_order, reverse=True)
        after = args.get("after")
        if after:
            try:
                ident = base64.b64decode(after).decode().removeprefix("issue:")
            except (ValueError, UnicodeDecodeError):
                raise _GraphError(
                    "Argument Validation Error: after is not a valid cursor",
                    "INVALID_INPUT",
                    "Invalid cursor.",
                ) from None
            position = next((n for n, i in enumerate(issues) if i.id == ident), None)
            issues = issues[position + 1 :] if position is not None else []
        page, rest = issues[:first], issues[first:]
        return {
            "nodes": [i.graph() for i in page],
            "edges": [{"cursor": _cursor(i), "node": i.graph()} for i in page],
            "pageInfo": {
                "hasNextPage": bool(rest),
                "hasPreviousPage": bool(after),
                "startCursor": _cursor(page[0]) if page else None,
                "endCursor": _cursor(page[-1]) if page else None,
            },
        }


# --------------------------------------------------------------------------- webhooks


def envelope(
    kind: str,
    action: str,
    data: dict[str, Any],
    *,
    url: str | None,
    updated_from: dict[str, Any] | None = None,
    actor: int = 0,
) -> dict[str, Any]:
    """``EntityWebhookPayload`` (without ``webhookTimestamp``, set when signing)."""
    payload: dict[str, Any] = {
        "action": action,
        "actor": {
            "id": user(actor)["id"],
            "type": "user",
            "name": user(actor)["name"],
            "email": user(actor)["email"],
            "url": user(actor)["url"],
        },
        "createdAt": data["updatedAt"],
        "data": data,
        "url": url,
        "type": kind,
        "organizationId": ORGANIZATION_ID,
        "webhookId": _uuid("webhook", 1),
    }
    if updated_from is not None:
        payload["updatedFrom"] = updated_from
    return payload


def sign_delivery(
    sample: WebhookSample, *, url: str, at: datetime, secret: str = WEBHOOK_SECRET
) -> WebhookDelivery:
    """Linear's delivery: ``webhookTimestamp`` (ms) in the body, its hex HMAC in a header."""
    payload = sample.json()
    if isinstance(payload, dict):
        payload["webhookTimestamp"] = int(at.timestamp() * 1000)
        body = json.dumps(payload, separators=(",", ":")).encode()
    else:
        body = sample.body
    kind = payload.get("type", "") if isinstance(payload, dict) else ""
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Linear-Webhook",
        "Linear-Delivery": str(uuid.uuid4()),
        "Linear-Event": str(kind),
        **sample.headers,
        "Linear-Signature": hmac_digest(secret, body),
    }
    return WebhookDelivery(sample.name, url, body, headers, sample.expected_types)


class LinearScenario(Scenario):
    connector_id = "linear"
    polling_signal_types = frozenset({"issue_created", "issue_updated", "cycle_changed"})
    webhook_signal_types = frozenset({"issue_created", "issue_updated", "cycle_changed"})
    # Issue ENG-1: urgent Bug, created by Ada, nobody assigned, related to ENG-2.
    # ENG-2: high-priority Feature by Grace, assigned to Alan.
    metadata = (
        MetadataExpectation(
            item_id=_uuid("issue", 1),
            participants=("Ada Lovelace",),
            tags=("Bug",),
            related_tickets=("ENG-2",),
        ),
        MetadataExpectation(
            item_id=_uuid("issue", 2),
            priority="critical",
            participants=("Alan Turing", "Grace Hopper"),
            tags=("Feature",),
        ),
    )

    def __init__(self) -> None:
        self._samples = Dataset(datetime.now(UTC), count=12)

    def fake(self, now: datetime) -> LinearFake:
        return LinearFake(now)

    def config(self, base_url: str) -> dict[str, str]:
        return {"baseUrl": base_url}

    def credentials(self) -> dict[str, str]:
        return {"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET}

    def bad_credentials(self) -> dict[str, str]:
        return {"apiKey": BAD_API_KEY, "webhookSecret": WEBHOOK_SECRET}

    def oauth_app(self) -> tuple[str, str] | None:
        return OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET

    @property
    def webhook_secret(self) -> str:
        return WEBHOOK_SECRET

    def webhook_samples(self) -> list[WebhookSample]:
        now = _ms(datetime.now(UTC))
        issues = list(self._samples.issues.values())
        created = replace(issues[0], created=now, updated=now, cycle=None, added_to_cycle=None)
        escalated = replace(issues[1], priority=1, updated=now)
        moved = replace(issues[2], cycle=self._samples.cycles[-1], added_to_cycle=now, updated=now)
        cycle = self._samples.cycles[-1]
        cycle_now = replace(cycle, name="Sprint 42", updated=now)
        cases = [
            (
                "Issue.create",
                envelope("Issue", "create", created.webhook(), url=created.url),
                "issue_created",
            ),
            (
                "Issue.update",
                envelope(
                    "Issue",
                    "update",
                    escalated.webhook(),
                    url=escalated.url,
                    updated_from={
                        "priority": float(issues[1].priority),
                        "updatedAt": iso_ms(issues[1].updated),
                    },
                ),
                "issue_updated",
            ),
            (
                "Issue.update (cycle)",
                envelope(
                    "Issue",
                    "update",
                    moved.webhook(),
                    url=moved.url,
                    updated_from={
                        "cycleId": issues[2].cycle.id if issues[2].cycle else None,
                        "addedToCycleAt": None,
                        "updatedAt": iso_ms(issues[2].updated),
                    },
                ),
                "cycle_changed",
            ),
            (
                "Cycle.update",
                envelope(
                    "Cycle",
                    "update",
                    {**cycle_now.json(), "teamId": TEAM["id"]},
                    url=f"https://linear.app/{WORKSPACE}/team/{TEAM['key']}/cycle/{cycle.number}",
                    updated_from={"name": None, "updatedAt": iso_ms(cycle.updated)},
                ),
                "cycle_changed",
            ),
        ]
        return [
            WebhookSample.of(name, payload, expected_types=(kind,)) for name, payload, kind in cases
        ]

    def unknown_event_sample(self) -> WebhookSample:
        now = iso_ms(datetime.now(UTC))
        data = {
            **label(3),
            "createdAt": now,
            "updatedAt": now,
            "teamId": TEAM["id"],
            "creatorId": user(0)["id"],
            "isGroup": False,
        }
        return WebhookSample.of(
            "IssueLabel.create", envelope("IssueLabel", "create", data, url=None)
        )

    def sign(self, sample: WebhookSample, *, url: str, at: datetime) -> WebhookDelivery:
        return sign_delivery(sample, url=url, at=at)


def scenario(connector_id: str) -> Scenario:
    """The scenario of ``linear`` (see :mod:`ucf.fakes.scenario`)."""
    if connector_id != "linear":
        raise LookupError(f"ucf.fakes.linear has no scenario for {connector_id!r}")
    return LinearScenario()
