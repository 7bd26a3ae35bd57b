"""A faithful fake of Jira Cloud's REST API (issue search) and its admin webhooks.

What it reproduces, from Atlassian's documentation:

* ``GET|POST /rest/api/3/search/jql`` — the enhanced search
  (https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-search/):
  ``jql`` (bounded: a query without a restriction is refused), ``fields``
  (issue ids only unless named; ``*all``/``*navigable``), ``expand``
  (``changelog``), ``maxResults`` (default 50, at most 100 here), opaque
  ``nextPageToken`` pages, ``isLast``; the token is *absent* on the last page.
  The old ``/rest/api/3/search`` answers 410 Gone: it was removed.
* JQL as a poller uses it (https://support.atlassian.com/jira-software-cloud/docs/jql-fields/):
  ``AND``/``OR``/parentheses, ``=``, ``!=``, ``>=``, ``>``, ``<=``, ``<``, ``in``
  over ``project``, ``key``, ``status``, ``labels``, ``issuetype``, ``priority``,
  ``created`` and ``updated``; dates ``"yyyy-MM-dd HH:mm"``, ``"yyyy/MM/dd HH:mm"``,
  ``"yyyy-MM-dd"``, relative ``"-15m"``/``"-2h"``/``"-1d"``/``"-1w"`` and epoch
  milliseconds — read in the *searching user's* time zone; ``ORDER BY``.
* ``GET /rest/api/3/myself`` (with ``timeZone``) and ``GET /rest/api/3/issue/{idOrKey}``.
* Basic auth ``email:api_token`` on the site; OAuth 2.0 (3LO) ``Bearer`` tokens on
  ``/ex/jira/{cloudId}/rest/api/3/…`` (the gateway), minted by ``POST /oauth/token``
  with *rotating* refresh tokens (each use invalidates the old one): Atlassian's fake
  authorization server (``ucf.fakes.oauth_providers.ATLASSIAN``) with its consent page at
  ``/authorize`` and ``/oauth/token/accessible-resources``.
* Timestamps as Jira writes them: milliseconds and the site's offset,
  ``2026-04-25T18:35:13.605+0530``.
* Rate limits: ``429`` with ``Retry-After``, ``X-RateLimit-Limit``,
  ``X-RateLimit-Remaining``, ``X-RateLimit-Reset`` (ISO 8601, minute precision)
  and ``RateLimit-Reason``
  (https://developer.atlassian.com/cloud/jira/platform/rate-limiting/).
* Webhook deliveries as Jira sends them (https://developer.atlassian.com/cloud/jira/platform/webhooks/):
  ``webhookEvent``, ``timestamp`` (epoch ms), ``issue_event_type_name``,
  ``user``, ``issue``, ``changelog``/``comment``; headers
  ``X-Atlassian-Webhook-Identifier`` (the same on every retry),
  ``X-Atlassian-Webhook-Flow``, and ``X-Hub-Signature: sha256=<hex>`` when the
  webhook has a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Self
from zoneinfo import ZoneInfo

from ucf.fakes.kit import FakeRequest, FakeResponse, Fault
from ucf.fakes.oauth_providers import mount_atlassian
from ucf.fakes.scenario import (
    Activity,
    DeliveryVerification,
    MetadataExpectation,
    ProviderFake,
    Scenario,
    WebhookDelivery,
    WebhookSample,
    hmac_digest,
)

SITE: Final = "https://acme-ops.atlassian.net"
CLOUD_ID: Final = "1324a887-45db-1bf4-1e99-ef0ff456d421"
ZONE_NAME: Final = "Asia/Kolkata"  # +05:30: a site zone a UTC-only poller gets wrong
ZONE: Final = ZoneInfo(ZONE_NAME)

GOOD_EMAIL: Final = "ops-bot@acme.example"
GOOD_TOKEN: Final = "ATATT3xFfGF0fake0good0token0for0the0ucf0battery"  # noqa: S105 - a fake's
BAD_TOKEN: Final = "ATATT3xFfGF0fake0revoked0token0nobody0accepts"  # noqa: S105 - a fake's
WEBHOOK_SECRET: Final = "It's a Secret to Everybody"  # noqa: S105 - Atlassian's documented example
CLIENT_ID: Final = "fake-3lo-client-id"
CLIENT_SECRET: Final = "fake-3lo-client-secret"  # noqa: S105 - a fake's
ACCESSIBLE_SITE: Final = {
    "id": CLOUD_ID,
    "url": SITE,
    "name": "acme-ops",
    "scopes": ["read:jira-work", "read:jira-user"],
    "avatarUrl": "https://site-admin-avatar-cdn.prod.public.atl-paas.net/avatars/240/site.png",
}
"""One entry of ``GET https://api.atlassian.com/oauth/token/accessible-resources``
(https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/#3-1-get-the-cloudid-for-your-site)."""

PROJECTS: Final = {"OPS": ("10000", "Operations"), "DEV": ("10001", "Development")}
PEOPLE: Final = (
    ("5b10a2844c20165700ede21g", "Mia Krystof"),
    ("5b10ac8d82e05b22cc7d4ef5", "Emma Richards"),
    ("557058:f58131cb-b67d-43c7-b30d-6b58d40bd077", "Ravi Shankar"),
    ("5d53f3cbc6b9320d9ea5bdc2", "Jonas Berg"),
    ("60e5a86a471e61006a4f2c1b", "Aiko Tanaka"),
)
STATUSES: Final = {
    "To Do": ("10000", "new", "blue-gray"),
    "In Progress": ("3", "indeterminate", "yellow"),
    "In Review": ("10002", "indeterminate", "yellow"),
    "Done": ("10001", "done", "green"),
}
PRIORITY_IDS: Final = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}
PRIORITY_CYCLE: Final = ("Highest", "High", "Medium", "Low", "Lowest")
COMPONENTS: Final = ("API", "Dashboard", "Billing", "Infrastructure")
LABELS: Final = ("customer", "regression", "security", "ops", "tech-debt")
TOPICS: Final = (
    "Checkout fails for saved cards",
    "Nightly export misses the last hour",
    "Login page slow behind the VPN",
    "Alert storm after the deploy",
    "Rotate the database credentials",
    "Dashboard graph shows stale data",
    "Webhook retries pile up",
    "Search returns archived projects",
)

PAGE_MAX: Final = 100
UNBOUNDED: Final = (
    "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
)


def jira_time(moment: datetime) -> str:
    """``2026-04-25T18:35:13.605+0530``: milliseconds and the site's offset, as Jira writes."""
    local = moment.astimezone(ZONE)
    return (
        local.strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{local.microsecond // 1000:03d}"
        + (local.strftime("%z"))
    )


def _ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def user(index: int, *, with_zone: bool = False) -> dict[str, Any]:
    account_id, name = PEOPLE[index % len(PEOPLE)]
    person: dict[str, Any] = {
        "self": f"{SITE}/rest/api/3/user?accountId={account_id}",
        "accountId": account_id,
        "avatarUrls": {
            size: f"https://avatar-management--avatars.us-west-2.prod.public.atl-paas.net/{account_id}/{size}"
            for size in ("48x48", "24x24", "16x16", "32x32")
        },
        "displayName": name,
        "active": True,
        "accountType": "atlassian",
    }
    if with_zone:
        person["timeZone"] = ZONE_NAME
    return person


def adf(text: str) -> dict[str, Any]:
    """A plain paragraph per line as an Atlassian Document Format document."""
    return {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": line}]}
            for line in text.split("\n")
        ],
    }


# --------------------------------------------------------------------------- dataset


@dataclass
class Comment:
    id: int
    author: int
    text: str
    created: datetime
    updated: datetime

    def json(self, issue_id: int) -> dict[str, Any]:
        return {
            "self": f"{SITE}/rest/api/3/issue/{issue_id}/comment/{self.id}",
            "id": str(self.id),
            "author": user(self.author),
            "body": adf(self.text),
            "updateAuthor": user(self.author),
            "created": jira_time(self.created),
            "updated": jira_time(self.updated),
            "jsdPublic": True,
        }


@dataclass
class History:
    id: int
    author: int
    created: datetime
    items: list[dict[str, Any]]

    def json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "author": user(self.author),
            "created": jira_time(self.created),
            "items": self.items,
        }


def status_item(old: str, new: str) -> dict[str, Any]:
    return {
        "field": "status",
        "fieldtype": "jira",
        "fieldId": "status",
        "from": STATUSES[old][0],
        "fromString": old,
        "to": STATUSES[new][0],
        "toString": new,
    }


def labels_item(old: list[str], new: list[str]) -> dict[str, Any]:
    return {
        "field": "labels",
        "fieldtype": "jira",
        "fieldId": "labels",
        "from": None,
        "fromString": " ".join(old),
        "to": None,
        "toString": " ".join(new),
    }


@dataclass
class Issue:
    id: int
    project: str
    number: int
    summary: str
    reporter: int
    assignee: int | None
    created: datetime
    updated: datetime
    status: str = "To Do"
    priority: str = "Medium"
    issuetype: str = "Task"
    labels: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    description: str = ""
    comments: list[Comment] = field(default_factory=list)
    histories: list[History] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.project}-{self.number}"

    def all_fields(self) -> dict[str, Any]:
        project_id, project_name = PROJECTS[self.project]
        status_id, category, colour = STATUSES[self.status]
        return {
            "summary": self.summary,
            "status": {
                "self": f"{SITE}/rest/api/3/status/{status_id}",
                "description": "",
                "iconUrl": f"{SITE}/images/icons/statuses/generic.png",
                "name": self.status,
                "id": status_id,
                "statusCategory": {
                    "self": f"{SITE}/rest/api/3/statuscategory/{category}",
                    "id": {"new": 2, "indeterminate": 4, "done": 3}[category],
                    "key": category,
                    "colorName": colour,
                    "name": {"new": "To Do", "indeterminate": "In Progress", "done": "Done"}[
                        category
                    ],
                },
            },
            "priority": {
                "self": f"{SITE}/rest/api/3/priority/{PRIORITY_IDS[self.priority]}",
                "iconUrl": f"{SITE}/images/icons/priorities/{self.priority.lower()}.svg",
                "name": self.priority,
                "id": PRIORITY_IDS[self.priority],
            },
            "issuetype": {
                "self": f"{SITE}/rest/api/3/issuetype/10002",
                "id": "10002",
                "name": self.issuetype,
                "subtask": False,
                "hierarchyLevel": 0,
            },
            "project": {
                "self": f"{SITE}/rest/api/3/project/{project_id}",
                "id": project_id,
                "key": self.project,
                "name": project_name,
                "projectTypeKey": "software",
                "simplified": False,
            },
            "reporter": user(self.reporter),
            "creator": user(self.reporter),
            "assignee": user(self.assignee) if self.assignee is not None else None,
            "labels": list(self.labels),
            "components": [
                {
                    "self": f"{SITE}/rest/api/3/component/{10100 + COMPONENTS.index(name)}",
                    "id": str(10100 + COMPONENTS.index(name)),
                    "name": name,
                }
                for name in self.components
            ],
            "issuelinks": [
                {
                    "id": str(20000 + index),
                    "self": f"{SITE}/rest/api/3/issueLink/{20000 + index}",
                    "type": {
                        "id": "10000",
                        "name": "Blocks",
                        "inward": "is blocked by",
                        "outward": "blocks",
                    },
                    "outwardIssue": {"id": str(11000 + index), "key": key},
                }
                for index, key in enumerate(self.links)
            ],
            "created": jira_time(self.created),
            "updated": jira_time(self.updated),
            "description": adf(self.description) if self.description else None,
            "comment": {
                "comments": [c.json(self.id) for c in self.comments],
                "self": f"{SITE}/rest/api/3/issue/{self.id}/comment",
                "maxResults": len(self.comments),
                "total": len(self.comments),
                "startAt": 0,
            },
        }

    def json(self, fields: set[str] | None, *, changelog: bool) -> dict[str, Any]:
        """The issue as search and ``GET /issue`` return it; ``fields`` None means ids only."""
        if fields is None and not changelog:
            return {"id": str(self.id)}
        item: dict[str, Any] = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": str(self.id),
            "self": f"{SITE}/rest/api/3/issue/{self.id}",
            "key": self.key,
        }
        if fields is not None:
            every = self.all_fields()
            item["fields"] = (
                every
                if "*all" in fields
                else {name: every[name] for name in every if name in fields}
            )
        if changelog:
            histories = [h.json() for h in sorted(self.histories, key=lambda h: h.created)]
            item["changelog"] = {
                "startAt": 0,
                "maxResults": len(histories),
                "total": len(histories),
                "histories": histories,
            }
        return item

    def webhook_issue(self, *, reduced: bool = False) -> dict[str, Any]:
        """``issue`` of a delivery; comment events carry a reduced set of fields."""
        every = self.all_fields()
        if reduced:
            keep = ("summary", "issuetype", "project", "assignee", "priority", "status")
            every = {name: every[name] for name in keep}
        else:
            every.pop("comment")
        return {
            "id": str(self.id),
            "self": f"{SITE}/rest/api/3/issue/{self.id}",
            "key": self.key,
            "fields": every,
        }


class Dataset:
    """A Jira site laid out around ``now``: two projects, issues whose last change varies.

    130 OPS issues changed over the last six days (two pages of 100), 20 DEV
    issues (a JQL filter on ``project = OPS`` leaves them out), three OPS issues
    untouched for a month (outside a seven-day first window). The last change
    of issue *i* is, by ``i % 4``: its creation, a status transition, a comment,
    or another edit (labels), so a poll meets every kind.
    """

    def __init__(self, now: datetime, *, ops: int = 130, dev: int = 20) -> None:
        self.lock = threading.Lock()
        self._ids = itertools.count(10001)
        self._comment_ids = itertools.count(100001)
        self._history_ids = itertools.count(200001)
        self._numbers = {"OPS": itertools.count(1), "DEV": itertools.count(1)}
        self.issues: dict[int, Issue] = {}
        window = timedelta(days=6)
        for index in range(ops):
            self._laid_out("OPS", now - window + window * index / ops, index)
        for index in range(dev):
            self._laid_out(
                "DEV", now - window + window * index / dev + timedelta(seconds=11), index
            )
        for index in range(3):
            self._laid_out("OPS", now - timedelta(days=30 + index), index)

    def _new(self, project: str, created: datetime, index: int) -> Issue:
        issue = Issue(
            id=next(self._ids),
            project=project,
            number=next(self._numbers[project]),
            summary=f"{TOPICS[index % len(TOPICS)]}",
            reporter=index % len(PEOPLE),
            assignee=(index + 1) % len(PEOPLE) if index % 3 else None,
            created=created,
            updated=created,
            priority=PRIORITY_CYCLE[index % len(PRIORITY_CYCLE)],
            issuetype=("Bug", "Task", "Story")[index % 3],
            labels=[LABELS[index % len(LABELS)]],
            components=[COMPONENTS[index % len(COMPONENTS)]],
            description=f"Seen by customers since the {index % 28 + 1}th.\nSee the runbook.",
        )
        if index % 5 == 0 and self.issues:
            issue.links = [next(iter(self.issues.values())).key]
        self.issues[issue.id] = issue
        return issue

    def _laid_out(self, project: str, last_change: datetime, index: int) -> Issue:
        last_change = _ms(last_change + timedelta(milliseconds=index * 7 % 1000))
        kind = index % 4
        created = last_change if kind == 0 else last_change - timedelta(hours=index % 5 + 1)
        issue = self._new(project, created, index)
        if kind == 1:
            self.transition(issue, "In Progress", last_change, author=index + 2)
        elif kind == 2:
            self.comment(issue, "Reproduced on staging; logs attached.", last_change, index + 3)
        elif kind == 3:
            self.relabel(issue, [*issue.labels, "triaged"], last_change, author=index + 1)
        return issue

    # -- changes (each sets ``updated`` as Jira does)

    def transition(self, issue: Issue, status: str, at: datetime, *, author: int = 0) -> History:
        history = History(
            next(self._history_ids), author, _ms(at), [status_item(issue.status, status)]
        )
        issue.histories.append(history)
        issue.status = status
        issue.updated = history.created
        return history

    def relabel(self, issue: Issue, labels: list[str], at: datetime, *, author: int = 0) -> History:
        history = History(
            next(self._history_ids), author, _ms(at), [labels_item(issue.labels, labels)]
        )
        issue.histories.append(history)
        issue.labels = labels
        issue.updated = history.created
        return history

    def comment(self, issue: Issue, text: str, at: datetime, author: int = 0) -> Comment:
        moment = _ms(at)
        comment = Comment(next(self._comment_ids), author % len(PEOPLE), text, moment, moment)
        issue.comments.append(comment)
        issue.updated = moment
        return comment

    def create(self, project: str, summary: str, at: datetime, index: int = 0) -> Issue:
        issue = self._new(project, _ms(at), index)
        issue.summary = summary
        return issue


# --------------------------------------------------------------------------- JQL


class JqlError(ValueError):
    """A query Jira would refuse with 400 and this message."""


_TOKEN: Final = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|(?P<op>!=|>=|<=|=|>|<|~)'
    r"|(?P<paren>[(),])|(?P<word>[^\s(),=!<>~\"']+))"
)
_RELATIVE: Final = re.compile(r"^([+-]?\d+)([wdhm]?)$")
_UNITS: Final = {"w": 7 * 24 * 60, "d": 24 * 60, "h": 60, "m": 1, "": 1}


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise JqlError(f"Error in the JQL Query: unexpected character at position {position}.")
        kind = match.lastgroup or "word"
        value = match.group(kind)
        if kind == "string":
            value = value[1:-1].replace('\\"', '"').replace("\\'", "'")
        tokens.append((kind, value))
        position = match.end()
    return tokens


Predicate = Callable[[Issue], bool]


class _Parser:
    """``clause := term (OR term)*; term := factor (AND factor)*; factor := ( clause ) | field op value``."""

    FIELDS: Final = (
        "project",
        "key",
        "status",
        "labels",
        "issuetype",
        "priority",
        "created",
        "updated",
    )

    def __init__(self, tokens: list[tuple[str, str]], now: datetime) -> None:
        self.tokens = tokens
        self.at = 0
        self.now = now

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise JqlError("Error in the JQL Query: the query ended unexpectedly.")
        self.at += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "word" and token[1].upper() == word:
            self.at += 1
            return True
        return False

    def clause(self) -> Predicate:
        parts = [self.term()]
        while self.keyword("OR"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else (lambda i: any(p(i) for p in parts))

    def term(self) -> Predicate:
        parts = [self.factor()]
        while self.keyword("AND"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda i: all(p(i) for p in parts))

    def factor(self) -> Predicate:
        token = self.peek()
        if token == ("paren", "("):
            self.take()
            inner = self.clause()
            if self.take() != ("paren", ")"):
                raise JqlError("Error in the JQL Query: expecting ')'.")
            return inner
        kind, name = self.take()
        if kind != "word" or name.lower() not in self.FIELDS:
            raise JqlError(
                f"Field '{name}' does not exist or you do not have permission to view it."
            )
        name = name.lower()
        if self.keyword("IN"):
            return self._in(name)
        op_kind, op = self.take()
        if op_kind != "op":
            raise JqlError(f"Error in the JQL Query: expecting an operator after '{name}'.")
        kind, value = self.take()
        if kind not in ("word", "string"):
            raise JqlError(f"Error in the JQL Query: expecting a value after '{name} {op}'.")
        if name in ("created", "updated"):
            return self._date(name, op, value)
        return self._text(name, op, value)

    def _in(self, name: str) -> Predicate:
        if self.take() != ("paren", "("):
            raise JqlError("Error in the JQL Query: expecting '(' after IN.")
        values: list[str] = []
        while True:
            _, value = self.take()
            values.append(value.lower())
            separator = self.take()
            if separator == ("paren", ")"):
                break
            if separator != ("paren", ","):
                raise JqlError("Error in the JQL Query: expecting ',' or ')'.")
        return lambda i: any(v in values for v in _values(i, name))

    def _text(self, name: str, op: str, value: str) -> Predicate:
        wanted = value.lower()
        if op == "=":
            return lambda i: wanted in _values(i, name)
        if op == "!=":
            return lambda i: wanted not in _values(i, name)
        raise JqlError(f"The operator '{op}' is not supported by the '{name}' field.")

    def _date(self, name: str, op: str, value: str) -> Predicate:
        moment = self.when(value)
        compare: dict[str, Callable[[datetime, datetime], bool]] = {
            ">=": lambda a, b: a >= b,
            ">": lambda a, b: a > b,
            "<=": lambda a, b: a <= b,
            "<": lambda a, b: a < b,
            "=": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
        }
        if op not in compare:
            raise JqlError(f"The operator '{op}' is not supported by the '{name}' field.")
        test = compare[op]
        return lambda i: test(i.created if name == "created" else i.updated, moment)

    def when(self, value: str) -> datetime:
        """A JQL date literal in the searching user's zone (minute precision at best)."""
        text = value.strip()
        relative = _RELATIVE.match(text)
        if relative is not None and (relative.group(2) or text.startswith(("-", "+"))):
            minutes = int(relative.group(1)) * _UNITS[relative.group(2)]
            return (self.now + timedelta(minutes=minutes)).replace(second=0, microsecond=0)
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, UTC)
        for pattern in ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d"):
            try:
                local = datetime.strptime(text, pattern)  # naive: the user's zone, below
            except ValueError:
                continue
            return local.replace(tzinfo=ZONE).astimezone(UTC)
        raise JqlError(
            f"Date value '{value}' for field 'updated' is invalid. Valid formats include: "
            "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period "
            "format e.g. '-5d', '4w 2d'."
        )


def _values(issue: Issue, name: str) -> list[str]:
    if name == "project":
        return [issue.project.lower(), PROJECTS[issue.project][0]]
    if name == "key":
        return [issue.key.lower()]
    if name == "status":
        return [issue.status.lower()]
    if name == "labels":
        return [label.lower() for label in issue.labels]
    if name == "issuetype":
        return [issue.issuetype.lower()]
    return [issue.priority.lower()]


_ORDER_BY: Final = re.compile(r"\border\s+by\b", re.IGNORECASE)


def compile_jql(text: str, now: datetime) -> tuple[Predicate, Callable[[list[Issue]], None]]:
    """The query's filter and its ordering; :class:`JqlError` as Jira would refuse it."""
    parts = _ORDER_BY.split(text, maxsplit=1)
    where = parts[0].strip()
    if not where:
        raise JqlError(UNBOUNDED)
    parser = _Parser(_tokens(where), now)
    predicate = parser.clause()
    if parser.peek() is not None:
        raise JqlError(f"Error in the JQL Query: unexpected '{parser.peek()[1]}'.")  # type: ignore[index]
    keys: list[tuple[str, bool]] = []
    if len(parts) > 1:
        for spec in parts[1].split(","):
            words = spec.split()
            if not words or words[0].lower() not in ("updated", "created", "key"):
                raise JqlError(f"Error in the JQL Query: cannot order by '{spec.strip()}'.")
            descending = len(words) > 1 and words[1].upper() == "DESC"
            keys.append((words[0].lower(), descending))
    if len(keys) > 7:
        raise JqlError("The ORDER BY clause takes at most 7 fields.")

    def order(issues: list[Issue]) -> None:
        issues.sort(key=lambda i: i.id)
        for name, descending in reversed(keys or [("key", True)]):
            sort_key: Callable[[Issue], Any] = {
                "updated": lambda i: i.updated,
                "created": lambda i: i.created,
                "key": lambda i: (i.project, i.number),
            }[name]
            issues.sort(key=sort_key, reverse=descending)

    return predicate, order


# --------------------------------------------------------------------------- the fake


def _error(status: int, *messages: str) -> FakeResponse:
    return FakeResponse.json({"errorMessages": list(messages), "errors": {}}, status)


@dataclass(frozen=True, slots=True)
class SearchRequest:
    jql: str
    fields: set[str] | None
    changelog: bool
    max_results: int
    token: str | None


class JiraFake(ProviderFake):
    """One Jira Cloud site (``SITE``), answering on loopback as documented."""

    poll_route = "/rest/api/3/search/jql"

    def __init__(self, now: datetime, *, page_max: int = PAGE_MAX) -> None:
        """``page_max``: the most issues a page holds, whatever ``maxResults`` asks (Jira
        documents that it may return fewer; small pages make many-page tests cheap)."""
        super().__init__()
        self.data = Dataset(now)
        self.now = now
        self.page_max = page_max
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = {"fake-refresh-token-0"}
        self.sites: list[dict[str, Any]] = [dict(ACCESSIBLE_SITE)]
        """What ``accessible-resources`` lists for any token (a test may empty it). Once
        started, the one site's ``url`` is this fake's address: the fake is that site."""
        routes: list[tuple[str, str, Callable[[FakeRequest], FakeResponse]]] = [
            ("GET", "/rest/api/3/myself", self._myself),
            ("GET", "/rest/api/3/search/jql", self._search),
            ("POST", "/rest/api/3/search/jql", self._search),
            ("GET", "/rest/api/3/issue/{key}", self._issue),
        ]
        for method, path, handler in routes:
            self.server.add_route(method, path, self._basic(handler))
            self.server.add_route(method, f"/ex/jira/{{cloud}}{path}", self._bearer(handler))
        for method in ("GET", "POST"):
            self.server.add_route(method, "/rest/api/3/search", self._removed)
        # auth.atlassian.com (consent, /oauth/token) and api.atlassian.com's
        # accessible-resources, on this one origin; the tokens are the gateway's.
        self.auth = mount_atlassian(
            self.server,
            CLIENT_ID,
            CLIENT_SECRET,
            sites=self.sites,
            access_tokens=self.access_tokens,
            refresh_tokens=self.refresh_tokens,
        )

    def start(self) -> Self:
        super().start()
        for site in self.sites:
            if site.get("url") == SITE:
                site["url"] = self.base_url
        return self

    @property
    def token_grants(self) -> int:
        """Codes exchanged and refresh tokens used so far."""
        return self.auth.exchanged + self.auth.refreshed

    # -- protocol

    def add_activity(self, now: datetime) -> Activity:
        """Two new OPS issues; one moved to In Review, one commented, one relabelled."""
        data = self.data
        with data.lock:
            fresh = [
                data.create("OPS", "Payments API returns 502 for EU cards", now, 1),
                data.create("OPS", "Status page does not show the incident", now, 2),
            ]
            ops = [i for i in data.issues.values() if i.project == "OPS" and i.status != "Done"]
            moved, commented, relabelled = ops[5], ops[9], ops[14]
            data.transition(moved, "In Review", now, author=1)
            data.comment(commented, "Customer confirms the fix works.", now, 2)
            data.relabel(relabelled, ["customer", "p1"], now, author=3)
        return Activity(
            new_ids=frozenset(str(i.id) for i in fresh),
            changed_ids=frozenset(str(i.id) for i in (moved, commented, relabelled)),
        )

    def ids_changed_since(self, moment: datetime) -> frozenset[str]:
        with self.data.lock:
            return frozenset(
                str(i.id)
                for i in self.data.issues.values()
                if i.project == "OPS" and i.updated >= moment
            )

    def rate_limit_fault(self, retry_after: int) -> Fault:
        reset = datetime.now(UTC) + timedelta(seconds=retry_after)
        return Fault.rate_limited(
            retry_after,
            headers={
                "X-RateLimit-Limit": "100",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%MZ"),
                "RateLimit-Reason": "jira-burst-based",
            },
            body={"errorMessages": ["Rate limit exceeded."], "errors": {}},
        )

    # -- auth

    def _basic(
        self, handler: Callable[[FakeRequest], FakeResponse]
    ) -> Callable[[FakeRequest], FakeResponse]:
        def guarded(request: FakeRequest) -> FakeResponse:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            try:
                pair = base64.b64decode(value, validate=True).decode() if scheme == "Basic" else ""
            except ValueError:
                pair = ""
            if pair != f"{GOOD_EMAIL}:{GOOD_TOKEN}":
                return FakeResponse.text(
                    "Client must be authenticated to access this resource.", 401
                )
            return handler(request)

        return guarded

    def _bearer(
        self, handler: Callable[[FakeRequest], FakeResponse]
    ) -> Callable[[FakeRequest], FakeResponse]:
        def guarded(request: FakeRequest) -> FakeResponse:
            if request.path_params.get("cloud") != CLOUD_ID:
                return FakeResponse.json({"code": 404, "message": "Not Found"}, 404)
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme != "Bearer" or token not in self.access_tokens:
                return FakeResponse.json({"code": 401, "message": "Unauthorized"}, 401)
            return handler(request)

        return guarded

    def issue_access_token(self) -> str:
        token = f"fake-access-{secrets.token_hex(8)}"
        self.access_tokens.add(token)
        return token

    # -- routes

    def _myself(self, request: FakeRequest) -> FakeResponse:
        me = user(0, with_zone=True)
        me["emailAddress"] = GOOD_EMAIL
        me["locale"] = "en_US"
        me["groups"] = {"size": 2, "items": []}
        me["applicationRoles"] = {"size": 1, "items": []}
        me["expand"] = "groups,applicationRoles"
        return FakeResponse.json(me)

    @staticmethod
    def _removed(request: FakeRequest) -> FakeResponse:
        return _error(
            410,
            "The requested API has been removed. Please migrate to the /rest/api/3/search/jql "
            "API. A full migration guideline is available at "
            "https://developer.atlassian.com/changelog/#CHANGE-2046",
        )

    @staticmethod
    def _search_request(request: FakeRequest) -> SearchRequest:
        if request.method == "POST":
            try:
                body = request.json()
            except ValueError:
                raise JqlError("Unexpected character in the request body: not JSON.") from None
            if not isinstance(body, dict):
                raise JqlError("The request body must be a JSON object.")
            jql = body.get("jql") or ""
            raw_fields = body.get("fields")
            fields = None if not raw_fields else {str(f) for f in raw_fields}
            expand = body.get("expand") or ""
            if not isinstance(expand, str):
                raise JqlError("'expand' must be a comma-delimited string.")
            max_results = body.get("maxResults", 50)
            token = body.get("nextPageToken")
        else:
            jql = request.param("jql") or ""
            listed = [f for v in request.query.get("fields", []) for f in v.split(",") if f]
            fields = set(listed) or None
            expand = request.param("expand") or ""
            max_results = request.param("maxResults") or 50
            token = request.param("nextPageToken")
        try:
            size = int(max_results)
        except (TypeError, ValueError):
            raise JqlError("maxResults must be a number.") from None
        if fields is not None and "*navigable" in fields:
            fields = {"*all"}
        return SearchRequest(
            str(jql),
            fields,
            "changelog" in str(expand).split(","),
            max(1, min(PAGE_MAX, size)),
            token,
        )

    @staticmethod
    def _token_for(jql: str, offset: int) -> str:
        digest = hashlib.sha256(jql.encode()).hexdigest()[:12]
        raw = json.dumps({"o": offset, "q": digest}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _offset_of(token: str, jql: str) -> int:
        try:
            padded = token + "=" * (-len(token) % 4)
            state = json.loads(base64.urlsafe_b64decode(padded))
            offset = int(state["o"])
        except (ValueError, KeyError, TypeError):
            raise JqlError("The provided next page token is invalid or expired.") from None
        if state.get("q") != hashlib.sha256(jql.encode()).hexdigest()[:12]:
            raise JqlError("The provided next page token is invalid or expired.")
        return offset

    def _search(self, request: FakeRequest) -> FakeResponse:
        try:
            search = self._search_request(request)
            predicate, order = compile_jql(search.jql, datetime.now(UTC))
            offset = self._offset_of(search.token, search.jql) if search.token else 0
        except JqlError as error:
            return _error(400, str(error))
        with self.data.lock:
            matching = [i for i in self.data.issues.values() if predicate(i)]
            order(matching)
            page = [
                i.json(search.fields, changelog=search.changelog)
                for i in matching[offset : offset + min(search.max_results, self.page_max)]
            ]
        after = offset + len(page)
        body: dict[str, Any] = {"issues": page, "isLast": after >= len(matching)}
        if after < len(matching):
            body["nextPageToken"] = self._token_for(search.jql, after)
        return FakeResponse.json(body)

    def _issue(self, request: FakeRequest) -> FakeResponse:
        wanted = request.path_params.get("key", "")
        with self.data.lock:
            found = next(
                (i for i in self.data.issues.values() if wanted in (str(i.id), i.key)), None
            )
            if found is None:
                return _error(404, "Issue does not exist or you do not have permission to see it.")
            listed = {f for v in request.query.get("fields", []) for f in v.split(",") if f}
            body = found.json(
                listed or {"*all"}, changelog="changelog" in (request.param("expand") or "")
            )
        return FakeResponse.json(body)


# --------------------------------------------------------------------------- webhooks


def sign_delivery(
    sample: WebhookSample, *, url: str, secret: str | None = WEBHOOK_SECRET
) -> WebhookDelivery:
    """Jira's delivery headers; ``X-Hub-Signature`` only when the webhook has a secret."""
    headers = {
        "Content-Type": "application/json; charset=UTF-8",
        "User-Agent": "Atlassian Webhook HTTP Client",
        "X-Atlassian-Webhook-Flow": "Primary",
        **sample.headers,
    }
    if secret is not None:
        headers["X-Hub-Signature"] = "sha256=" + hmac_digest(secret, sample.body)
    return WebhookDelivery(sample.name, url, sample.body, headers, sample.expected_types)


def app_delivery(
    sample: WebhookSample,
    *,
    url: str,
    client_secret: str = CLIENT_SECRET,
    claims: Mapping[str, Any] | None = None,
) -> WebhookDelivery:
    """A delivery of a webhook an OAuth 2.0 app registered: no ``X-Hub-Signature``, a
    bearer JWT signed HS256 with the app's client secret. Atlassian documents the
    scheme, not the claims: these carry ``iat`` and ``exp`` (three minutes)."""
    now = int(time.time())
    token = hs256_token(
        client_secret, claims if claims is not None else {"iat": now, "exp": now + 180}
    )
    delivery = sign_delivery(sample, url=url, secret=None)
    headers = {**delivery.headers, "Authorization": f"Bearer {token}"}
    return WebhookDelivery(sample.name, url, sample.body, headers, sample.expected_types)


def hs256_token(secret: str, claims: Mapping[str, Any], *, algorithm: str = "HS256") -> str:
    """A compact JWS (RFC 7515) over ``claims``, written out here rather than by the
    library ucf verifies with, so that the two are checked against each other."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    header = part(json.dumps({"alg": algorithm, "typ": "JWT"}).encode())
    payload = part(json.dumps(dict(claims)).encode())
    signed = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return f"{header}.{payload}.{part(signature)}"


_DELIVERY_IDS = itertools.count(2_000_000)


def delivery(
    name: str,
    event: str,
    at: datetime,
    *,
    expected: tuple[str, ...] = (),
    **parts: Any,
) -> WebhookSample:
    """A sample as Jira posts it: ``timestamp`` (epoch ms), ``webhookEvent``, then the parts."""
    payload: dict[str, Any] = {"timestamp": int(at.timestamp() * 1000), "webhookEvent": event}
    payload.update(parts)
    headers = {"X-Atlassian-Webhook-Identifier": str(next(_DELIVERY_IDS))}
    return WebhookSample.of(name, payload, headers=headers, expected_types=expected)


def webhook_samples(data: Dataset, now: datetime) -> list[WebhookSample]:
    """One delivery per event the connector maps, each a change made in ``data`` at ``now``."""
    with data.lock:
        created = data.create("OPS", "Checkout page shows a blank total", now, 0)
        ops = [i for i in data.issues.values() if i.project == "OPS" and i.id != created.id]
        moved, relabelled, commented, deleted, edited = ops[1], ops[2], ops[3], ops[4], ops[6]
        transition = data.transition(moved, "Done", now, author=2)
        relabel = data.relabel(relabelled, ["security", "customer"], now, author=1)
        comment = data.comment(commented, "Fixed in the 14:05 deploy.", now, 3)
        edited_comment = data.comment(edited, "Rolled back; investigating.", now, 4)
        data.issues.pop(deleted.id)

    def changelog(history: History) -> dict[str, Any]:
        return {"id": str(history.id), "items": history.items}

    return [
        delivery(
            "jira:issue_created",
            "jira:issue_created",
            now,
            expected=("issue_created",),
            issue_event_type_name="issue_created",
            user=user(created.reporter),
            issue=created.webhook_issue(),
            changelog={"id": "300001", "items": [status_item("To Do", "To Do")]},
        ),
        delivery(
            "jira:issue_updated.status",
            "jira:issue_updated",
            now,
            expected=("issue_status_changed",),
            issue_event_type_name="issue_generic",
            user=user(2),
            issue=moved.webhook_issue(),
            changelog=changelog(transition),
        ),
        delivery(
            "jira:issue_updated.labels",
            "jira:issue_updated",
            now,
            expected=("issue_updated",),
            issue_event_type_name="issue_updated",
            user=user(1),
            issue=relabelled.webhook_issue(),
            changelog=changelog(relabel),
        ),
        delivery(
            "comment_created",
            "comment_created",
            now,
            expected=("issue_commented",),
            comment=comment.json(commented.id),
            issue=commented.webhook_issue(reduced=True),
        ),
        delivery(
            "jira:issue_updated.commented",
            "jira:issue_updated",
            now,
            expected=("issue_commented",),
            issue_event_type_name="issue_commented",
            user=user(4),
            issue=edited.webhook_issue(),
            comment=edited_comment.json(edited.id),
        ),
        delivery(
            "jira:issue_deleted",
            "jira:issue_deleted",
            now,
            expected=("issue_deleted",),
            issue_event_type_name="issue_deleted",
            user=user(0),
            issue=deleted.webhook_issue(),
        ),
    ]


# --------------------------------------------------------------------------- the scenario


class JiraScenario(Scenario):
    connector_id = "jira"
    polling_signal_types = frozenset(
        {"issue_created", "issue_updated", "issue_status_changed", "issue_commented"}
    )
    webhook_signal_types = frozenset(
        {
            "issue_created",
            "issue_updated",
            "issue_status_changed",
            "issue_commented",
            "issue_deleted",
        }
    )
    # X-Hub-Signature over the body; Jira signs no timestamp, the identity dedups a replay.
    webhook_verification = DeliveryVerification("webhookSecret", signs_body=True)

    # Issue 10001 (OPS-1): created at its last change, Highest, reported by Mia Krystof,
    # nobody assigned, label customer, component API. Issue 10006 (OPS-6): its last
    # change a status transition; Highest, reported by Mia, assigned to Emma Richards,
    # label customer, component Dashboard, blocks OPS-1.
    metadata = (
        MetadataExpectation(
            item_id="10001",
            priority="critical",
            participants=("Mia Krystof",),
            tags=("customer", "API"),
            related_tickets=("OPS-1",),
        ),
        MetadataExpectation(
            item_id="10006",
            priority="critical",
            participants=("Mia Krystof", "Emma Richards"),
            tags=("customer", "Dashboard"),
            related_tickets=("OPS-6", "OPS-1"),
        ),
    )

    def fake(self, now: datetime) -> JiraFake:
        return JiraFake(now)

    def config(self, base_url: str) -> dict[str, str]:
        return {"siteUrl": base_url, "jql": "project = OPS"}

    def credentials(self) -> dict[str, str]:
        return {"email": GOOD_EMAIL, "apiToken": GOOD_TOKEN, "webhookSecret": WEBHOOK_SECRET}

    def bad_credentials(self) -> dict[str, str]:
        return {"email": GOOD_EMAIL, "apiToken": BAD_TOKEN, "webhookSecret": WEBHOOK_SECRET}

    @property
    def webhook_secret(self) -> str:
        return WEBHOOK_SECRET

    def oauth_app(self) -> tuple[str, str] | None:
        return CLIENT_ID, CLIENT_SECRET

    def webhook_samples(self) -> list[WebhookSample]:
        now = datetime.now(UTC)
        return webhook_samples(Dataset(now - timedelta(minutes=5), ops=12, dev=0), now)

    def unknown_event_sample(self) -> WebhookSample:
        now = datetime.now(UTC)
        return delivery(
            "worklog_created",
            "worklog_created",
            now,
            worklog={
                "self": f"{SITE}/rest/api/3/issue/10010/worklog/10000",
                "author": user(1),
                "timeSpent": "1h",
                "timeSpentSeconds": 3600,
                "id": "10000",
                "issueId": "10010",
                "started": jira_time(now),
                "created": jira_time(now),
                "updated": jira_time(now),
            },
        )

    def sign(self, sample: WebhookSample, *, url: str, at: datetime) -> WebhookDelivery:
        return sign_delivery(sample, url=url)


def scenario(connector_id: str) -> Scenario:
    """The scenario of ``jira`` (see :mod:`ucf.fakes.scenario`)."""
    if connector_id != "jira":
        raise LookupError(f"ucf.fakes.jira has no scenario for {connector_id!r}")
    return JiraScenario()


def deliveries(now: datetime, url: str) -> Iterator[WebhookDelivery]:
    """Every sample, signed (for tests that post them through the gateway)."""
    for sample in JiraScenario().webhook_samples():
        yield sign_delivery(sample, url=url)
