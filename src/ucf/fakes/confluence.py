"""A faithful fake of the Confluence Cloud REST API v1 content search.

What it reproduces (Atlassian's published v1 OpenAPI and the CQL reference; the
links are under Sources in docs/connectors/confluence.md):

* ``GET /wiki/rest/api/content/search`` — ``cql``, ``expand``, ``limit``
  (default 25, capped at 100: "may be restricted by fixed system limits") and
  ``cursor``; **no** ``start``. Response ``{"results", "start", "limit", "size",
  "_links": {"base", "context", "self", "next"?, "prev"?}}`` where ``next`` is a
  *relative* URL under ``base`` (which ends in ``/wiki``) carrying ``cursor=``,
  absent on the last page.
* CQL: ``space = KEY``/``space in (…)``, ``type = page``/``type in (page,
  blogpost, comment)``, ``lastmodified``/``created`` with ``= != > >= < <=``,
  ``title ~ "…"``, ``label = …``, joined by ``and``, ``order by <field> [asc|desc]``.
  Date literals ``"yyyy/MM/dd HH:mm"``, ``"yyyy-MM-dd HH:mm"``, ``"yyyy/MM/dd"``,
  ``"yyyy-MM-dd"`` are read **in the user's time zone** (a setting of the fake)
  and compared with full-precision modification times. A query it cannot parse
  is a ``400`` with Confluence's ``{"statusCode", "data", "message"}`` body.
* Content objects with ``version`` (``by``, ``when``, ``number``), ``history``
  (``createdBy``, ``createdDate``), ``container`` (the space for pages and blog
  posts, the page for comments), ``metadata.labels`` and ``_links.webui`` when
  expanded; ``_expandable`` otherwise.
* HTTP Basic ``email:api_token`` (``401`` otherwise); ``GET
  /wiki/rest/api/user/current``.
* Rate limiting: ``429`` with ``Retry-After`` (seconds), ``X-RateLimit-Limit``,
  ``X-RateLimit-Remaining: 0``, ``X-RateLimit-Reset`` (ISO 8601) and
  ``RateLimit-Reason``; the 429 body shape is ``[unverified]``.
"""

from __future__ import annotations

import base64
import itertools
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final, Literal
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from ucf.fakes.kit import FakeRequest, FakeResponse, Fault, iso_millis
from ucf.fakes.scenario import Activity, MetadataExpectation, ProviderFake, Scenario

EMAIL: Final = "mia@acme.example"
GOOD_TOKEN: Final = "ATATT3xFfGF0FAKE0good0confluence0api0token0for0ucf"  # noqa: S105
BAD_TOKEN: Final = "ATATT3xFfGF0FAKE0revoked0token0nobody0accepts000"  # noqa: S105
SPACES: Final = ((98306, "ENG", "Engineering"), (131073, "OPS", "Operations"))
PEOPLE: Final = (
    ("5b10ac8d82e05b22cc7d4ef5", "Mia Krystof"),
    ("5b10a2844c20165700ede21g", "Noah Okafor"),
    ("5c4ed5a1b8e0d31c8c2e9a77", "Priya Raman"),
    ("70121:8c2b3f9e-5a1d-4f3e-9b7c-0d1e2f3a4b5c", "Lars Nilsen"),
)
TOPICS: Final = (
    "Runbook: payments",
    "Architecture decision record",
    "Release checklist",
    "Incident postmortem",
    "Team onboarding",
    "API style guide",
    "Quarterly goals",
)
LABELS: Final = ("runbook", "adr", "release", "postmortem", "onboarding")
CQL_DATE: Final = re.compile(r"(\d{4})[/-](\d{2})[/-](\d{2})(?: (\d{2}):(\d{2}))?")

Kind = Literal["page", "blogpost", "comment"]


iso_ms = iso_millis


def user(index: int, base: str) -> dict[str, Any]:
    account, name = PEOPLE[index % len(PEOPLE)]
    return {
        "type": "known",
        "accountId": account,
        "accountType": "atlassian",
        "email": "",
        "publicName": name,
        "profilePicture": {
            "path": f"/wiki/aa-avatar/{account}",
            "width": 48,
            "height": 48,
            "isDefault": False,
        },
        "displayName": name,
        "isExternalCollaborator": False,
        "_expandable": {"operations": "", "personalSpace": ""},
        "_links": {"self": f"{base}/rest/api/user?accountId={account}"},
    }


def space_json(index: int, base: str) -> dict[str, Any]:
    ident, key, name = SPACES[index]
    return {
        "id": ident,
        "key": key,
        "name": name,
        "type": "global",
        "status": "current",
        "_expandable": {"settings": "", "metadata": "", "operations": "", "homepage": ""},
        "_links": {"webui": f"/spaces/{key}", "self": f"{base}/rest/api/space/{key}"},
    }


# --------------------------------------------------------------------------- dataset


@dataclass
class Version:
    number: int
    by: int
    when: datetime
    message: str = ""


@dataclass
class Content:
    id: str
    type: Kind
    title: str
    space: int
    created: datetime
    author: int
    versions: list[Version]
    labels: list[str] = field(default_factory=list)
    container: Content | None = None

    @property
    def modified(self) -> datetime:
        return self.versions[-1].when

    def webui(self) -> str:
        key = SPACES[self.space][1]
        if self.type == "comment" and self.container is not None:
            return f"{self.container.webui()}?focusedCommentId={self.id}#comment-{self.id}"
        kind = "blog" if self.type == "blogpost" else "pages"
        return f"/spaces/{key}/{kind}/{self.id}/{quote(self.title.replace(' ', '+'), safe='+')}"

    def reference(self, base: str) -> dict[str, Any]:
        """The compact form a comment's ``container`` shows its page in."""
        return {
            "id": self.id,
            "type": self.type,
            "status": "current",
            "title": self.title,
            "_expandable": {"container": "", "metadata": "", "version": "", "history": ""},
            "_links": {"webui": self.webui(), "self": f"{base}/rest/api/content/{self.id}"},
        }

    def json(self, base: str, expand: frozenset[str]) -> dict[str, Any]:
        latest = self.versions[-1]
        item: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "status": "current",
            "title": self.title,
        }
        expandable: dict[str, str] = {}
        if "version" in expand:
            item["version"] = {
                "by": user(latest.by, base),
                "when": iso_ms(latest.when),
                "friendlyWhen": latest.when.strftime("%b %d, %Y"),
                "message": latest.message,
                "number": latest.number,
                "minorEdit": False,
                "contentTypeModified": False,
                "_expandable": {"collaborators": "", "content": f"/rest/api/content/{self.id}"},
                "_links": {"self": f"{base}/rest/api/content/{self.id}/version/{latest.number}"},
            }
        else:
            expandable["version"] = ""
        if "history" in expand:
            item["history"] = {
                "latest": True,
                "createdBy": user(self.author, base),
                "createdDate": iso_ms(self.created),
                "_expandable": {
                    "lastUpdated": "",
                    "previousVersion": "",
                    "contributors": "",
                    "nextVersion": "",
                },
                "_links": {"self": f"{base}/rest/api/content/{self.id}/history"},
            }
        else:
            expandable["history"] = f"/rest/api/content/{self.id}/history"
        if "container" in expand:
            item["container"] = (
                self.container.reference(base)
                if self.type == "comment" and self.container is not None
                else space_json(self.space, base)
            )
        else:
            expandable["container"] = f"/rest/api/space/{SPACES[self.space][1]}"
        if "metadata.labels" in expand:
            item["metadata"] = {
                "labels": {
                    "results": [
                        {
                            "prefix": "global",
                            "name": name,
                            "id": str(1000 + LABELS.index(name)),
                            "label": name,
                        }
                        for name in self.labels
                    ],
                    "start": 0,
                    "limit": 200,
                    "size": len(self.labels),
                    "_links": {"self": f"{base}/rest/api/content/{self.id}/label"},
                },
                "_expandable": {
                    "currentuser": "",
                    "properties": "",
                    "frontend": "",
                    "editorHtml": "",
                },
            }
        else:
            expandable["metadata"] = ""
        item["extensions"] = {"location": "footer"} if self.type == "comment" else {"position": 0}
        item["_expandable"] = {
            **expandable,
            "childTypes": "",
            "operations": "",
            "children": "",
            "body": "",
        }
        item["_links"] = {
            "webui": self.webui(),
            "edit": f"/pages/resumedraft.action?draftId={self.id}",
            "tinyui": "/x/"
            + base64.urlsafe_b64encode(int(self.id).to_bytes(4, "big")).decode().rstrip("="),
            "self": f"{base}/rest/api/content/{self.id}",
        }
        return item


class Dataset:
    """Two spaces of a Confluence site, laid out around ``now``.

    Engineering holds 55 pages (a few of them blog posts) and ~35 comments changed over
    the last six days (two pages of results at ``limit=50``), plus pages last
    edited a month ago; Operations holds pages the space filter must leave out.
    """

    def __init__(self, now: datetime, *, pages: int = 55) -> None:
        self._ids = itertools.count(1)
        self.contents: dict[str, Content] = {}
        window = timedelta(days=6)
        for index in range(pages):
            edited = now - window + window * index / pages
            page = self.add_page(edited, index, kind="blogpost" if index % 11 == 5 else "page")
            if index % 5 != 0:
                self.edit(page, edited + timedelta(minutes=20), (index + 1) % len(PEOPLE))
            if index % 3 != 2:
                self.comment(
                    page, edited + timedelta(minutes=31 + index % 7), (index + 2) % len(PEOPLE)
                )
        for index in range(3):
            self.add_page(now - timedelta(days=40 + index), index)
        for index in range(6):
            self.add_page(now - window + window * index / 6, index, space=1)

    def _id(self) -> str:
        return str(98_300 + 17 * next(self._ids))

    def add_page(self, at: datetime, index: int, *, kind: Kind = "page", space: int = 0) -> Content:
        page = Content(
            id=self._id(),
            type=kind,
            title=f"{TOPICS[index % len(TOPICS)]} {index + 1}",
            space=space,
            created=at.replace(microsecond=(at.microsecond // 1000) * 1000),
            author=index % len(PEOPLE),
            versions=[
                Version(
                    1, index % len(PEOPLE), at.replace(microsecond=(at.microsecond // 1000) * 1000)
                )
            ],
            labels=[LABELS[index % len(LABELS)]] if index % 2 == 0 else [],
        )
        self.contents[page.id] = page
        return page

    def edit(self, content: Content, at: datetime, by: int, message: str = "") -> Content:
        moment = at.replace(microsecond=(at.microsecond // 1000) * 1000)
        content.versions.append(Version(content.versions[-1].number + 1, by, moment, message))
        return content

    def comment(self, page: Content, at: datetime, by: int) -> Content:
        moment = at.replace(microsecond=(at.microsecond // 1000) * 1000)
        comment = Content(
            id=self._id(),
            type="comment",
            title=f"Re: {page.title}",
            space=page.space,
            created=moment,
            author=by,
            versions=[Version(1, by, moment)],
            container=page,
        )
        self.contents[comment.id] = comment
        return comment


# --------------------------------------------------------------------------- CQL


class CqlError(ValueError):
    pass


_CLAUSE: Final = re.compile(
    r"""\s*(?P<field>[A-Za-z.]+)\s*
        (?P<op>not\s+in|in|!=|>=|<=|=|>|<|~)\s*
        (?P<value>"(?:[^"\\]|\\.)*"|\([^)]*\)|[^\s()]+)\s*""",
    re.IGNORECASE | re.VERBOSE,
)
_ORDER: Final = re.compile(r"\s+order\s+by\s+(\w+)(?:\s+(asc|desc))?\s*$", re.IGNORECASE)
_AND: Final = re.compile(r"\s+and\s+", re.IGNORECASE)


def _values(text: str) -> list[str]:
    if text.startswith("("):
        return [v.strip().strip('"') for v in text[1:-1].split(",") if v.strip()]
    return [text.strip('"')]


@dataclass(frozen=True)
class Cql:
    """A parsed CQL query: conditions joined by ``and``, and an order."""

    tests: tuple[Callable[[Content], bool], ...]
    order: str
    descending: bool

    @classmethod
    def parse(cls, text: str, zone: tzinfo) -> Cql:
        order, descending = "lastmodified", True
        ordered = _ORDER.search(text)
        if ordered is not None:
            order = ordered.group(1).lower()
            descending = (ordered.group(2) or "asc").lower() == "desc"
            if order not in ("lastmodified", "created", "title", "id"):
                raise CqlError(f"Cannot order by '{ordered.group(1)}'")
            text = text[: ordered.start()]
        tests = [cls._clause(part, zone) for part in _AND.split(text.strip()) if part.strip()]
        if not tests:
            raise CqlError("CQL query is empty")
        return cls(tuple(tests), order, descending)

    @staticmethod
    def _clause(part: str, zone: tzinfo) -> Callable[[Content], bool]:
        match = _CLAUSE.fullmatch(part)
        if match is None:
            raise CqlError(f"Could not parse '{part.strip()}'")
        name = match.group("field").lower()
        op = " ".join(match.group("op").lower().split())
        values = _values(match.group("value"))
        if name in ("lastmodified", "created"):
            if op not in ("=", "!=", ">", ">=", "<", "<="):
                raise CqlError(f"Operator '{op}' is not supported for {name}")
            moment = _cql_date(values[0], zone)

            def compare(content: Content) -> bool:
                seen = content.modified if name == "lastmodified" else content.created
                return {
                    "=": seen == moment,
                    "!=": seen != moment,
                    ">": seen > moment,
                    ">=": seen >= moment,
                    "<": seen < moment,
                    "<=": seen <= moment,
                }[op]

            return compare
        getters: dict[str, Callable[[Content], list[str]]] = {
            "space": lambda c: [SPACES[c.space][1]],
            "space.key": lambda c: [SPACES[c.space][1]],
            "type": lambda c: [c.type],
            "label": lambda c: list(c.labels),
            "id": lambda c: [c.id],
            "title": lambda c: [c.title],
        }
        getter = getters.get(name)
        if getter is None:
            raise CqlError(f"The field '{match.group('field')}' is not supported")
        if op == "~":
            return lambda c: any(values[0].lower() in v.lower() for v in getter(c))
        if op in ("=", "in"):
            return lambda c: any(v in values for v in getter(c))
        if op in ("!=", "not in"):
            return lambda c: not any(v in values for v in getter(c))
        raise CqlError(f"Operator '{op}' is not supported for {name}")

    def select(self, contents: list[Content]) -> list[Content]:
        chosen = [c for c in contents if all(test(c) for test in self.tests)]
        keys: dict[str, Callable[[Content], Any]] = {
            "lastmodified": lambda c: (c.modified, int(c.id)),
            "created": lambda c: (c.created, int(c.id)),
            "title": lambda c: (c.title, int(c.id)),
            "id": lambda c: int(c.id),
        }
        return sorted(chosen, key=keys[self.order], reverse=self.descending)


def _cql_date(text: str, zone: tzinfo) -> datetime:
    match = CQL_DATE.fullmatch(text.strip())
    if match is None:
        raise CqlError(
            f'\'{text}\' is not a valid date: use "yyyy/MM/dd HH:mm", "yyyy-MM-dd HH:mm", '
            '"yyyy/MM/dd" or "yyyy-MM-dd"'
        )
    year, month, day, hour, minute = match.groups()
    local = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), tzinfo=zone)
    return local.astimezone(UTC)


# --------------------------------------------------------------------------- the fake


def _error(status: int, message: str, *, errors: list[str] | None = None) -> FakeResponse:
    return FakeResponse.json(
        {
            "statusCode": status,
            "data": {
                "authorized": status != 401,
                "valid": status != 400,
                "errors": [{"message": {"translation": e, "args": []}} for e in errors or []],
                "successful": False,
            },
            "message": message,
        },
        status,
    )


class ConfluenceFake(ProviderFake):
    """``https://acme.atlassian.net/wiki`` for one account whose time zone is ``zone``."""

    poll_route = "/wiki/rest/api/content/search"

    def __init__(self, now: datetime, *, zone: str = "Europe/Berlin") -> None:
        super().__init__()
        self.data = Dataset(now)
        self.zone = ZoneInfo(zone)
        self.tokens = {(EMAIL, GOOD_TOKEN)}
        self._cursors: dict[str, tuple[str, int]] = {}
        self.server.add_route("GET", "/wiki/rest/api/content/search", self._guard(self._search))
        self.server.add_route("GET", "/wiki/rest/api/user/current", self._guard(self._current_user))

    @property
    def base_url(self) -> str:
        """Where the descriptor's ``baseUrl`` points: the site's ``/wiki``."""
        return self.server.url("/wiki")

    # -- protocol

    def add_activity(self, now: datetime) -> Activity:
        """A new page, a comment on an old page, an edit of a recent page."""
        data = self.data
        fresh_page = data.add_page(now, 3)
        fresh_page.title = "Incident postmortem: webhook backlog"
        pages = sorted(
            (
                c
                for c in data.contents.values()
                if c.type == "page" and c.space == 0 and c is not fresh_page
            ),
            key=lambda c: c.modified,
        )
        comment = data.comment(pages[-10], now, 1)
        edited = data.edit(pages[-1], now, 2, "Added the rollback steps")
        return Activity(
            new_ids=frozenset({fresh_page.id, comment.id}), changed_ids=frozenset({edited.id})
        )

    def ids_changed_since(self, moment: datetime) -> frozenset[str]:
        return frozenset(
            c.id for c in self.data.contents.values() if c.space == 0 and c.modified >= moment
        )

    def rate_limit_fault(self, retry_after: int) -> Fault:
        reset = (datetime.now(UTC) + timedelta(seconds=retry_after)).strftime("%Y-%m-%dT%H:%MZ")
        return Fault.rate_limited(
            retry_after,
            headers={
                "X-RateLimit-Limit": "100",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": reset,
                "RateLimit-Reason": "confluence-quota-per-user-based",
            },
            body={
                "statusCode": 429,
                "message": "Rate limit exceeded. Please retry after some time.",
            },
        )

    # -- plumbing

    def _guard(
        self, handler: Callable[[FakeRequest], FakeResponse]
    ) -> Callable[[FakeRequest], FakeResponse]:
        def guarded(request: FakeRequest) -> FakeResponse:
            scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
            try:
                email, _, token = base64.b64decode(encoded, validate=True).decode().partition(":")
            except ValueError:
                email = token = ""
            if scheme != "Basic" or (email, token) not in self.tokens:
                return _error(401, "Client must be authenticated to access this resource.")
            return handler(request)

        return guarded

    def _current_user(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json(user(0, request.url_for("/wiki")))

    def _search(self, request: FakeRequest) -> FakeResponse:
        base = request.url_for("/wiki")
        text = request.param("cql")
        if not text:
            return _error(400, "CQL query parameter is required", errors=["cql is required"])
        try:
            limit = min(100, max(0, int(request.param("limit") or "25")))
        except ValueError:
            return _error(400, "limit must be an integer")
        try:
            cql = Cql.parse(text, self.zone)
        except CqlError as error:
            return _error(400, f"Could not parse cql : {text}", errors=[str(error)])
        expand = frozenset(
            e.strip() for e in (request.param("expand") or "").split(",") if e.strip()
        )
        offset = 0
        cursor = request.param("cursor")
        if cursor is not None:
            issued = self._cursors.get(cursor)
            if issued is None or issued[0] != text:
                return _error(400, "Invalid cursor")
            offset = issued[1]
        chosen = cql.select(list(self.data.contents.values()))
        window = chosen[offset : offset + limit]
        query = [(k, v) for k, values in request.query.items() if k != "cursor" for v in values]
        links: dict[str, str] = {
            "base": base,
            "context": "/wiki",
            "self": f"{base}/rest/api/content/search?{urlencode(query)}",
        }
        if offset + limit < len(chosen):
            token = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            self._cursors[token] = (text, offset + limit)
            links["next"] = f"/rest/api/content/search?{urlencode([*query, ('cursor', token)])}"
        if offset > 0:
            previous = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            self._cursors[previous] = (text, max(0, offset - limit))
            links["prev"] = f"/rest/api/content/search?{urlencode([*query, ('cursor', previous)])}"
        return FakeResponse.json(
            {
                "results": [c.json(base, expand) for c in window],
                "start": offset,
                "limit": limit,
                "size": len(window),
                "_links": links,
            }
        )


# --------------------------------------------------------------------------- scenario


class ConfluenceScenario(Scenario):
    connector_id = "confluence"
    polling_signal_types = frozenset({"page_created", "page_updated", "page_commented"})
    # Content ids are 98300 + 17n for the n-th object (see Dataset._id); page index 0 is
    # id 98317 (never edited, index % 5 == 0), its comment 98334.
    metadata = (
        # Page index 0: created and last edited by Mia, labelled runbook, in space ENG.
        MetadataExpectation(
            item_id="98317",
            participants=("Mia Krystof",),
            tags=("runbook",),
            related_tickets=("98306",),
        ),
        # Its comment, by Priya: related to the page it is on.
        MetadataExpectation(
            item_id="98334",
            participants=("Priya Raman",),
            related_tickets=("98317",),
        ),
        # Page index 1 (98351): created by Noah, edited by Priya, no label.
        MetadataExpectation(
            item_id="98351",
            participants=("Priya Raman", "Noah Okafor"),
            related_tickets=("98306",),
        ),
    )

    def __init__(self, *, zone: str = "Europe/Berlin") -> None:
        self.zone = zone

    def fake(self, now: datetime) -> ConfluenceFake:
        return ConfluenceFake(now, zone=self.zone)

    def config(self, base_url: str) -> dict[str, str]:
        return {"baseUrl": base_url, "spaceKey": "ENG"}

    def credentials(self) -> dict[str, str]:
        return {"email": EMAIL, "apiToken": GOOD_TOKEN}

    def bad_credentials(self) -> dict[str, str]:
        return {"email": EMAIL, "apiToken": BAD_TOKEN}

    @property
    def webhook_secret(self) -> str:
        raise NotImplementedError("confluence receives no webhooks")


def scenario(connector_id: str) -> Scenario:
    """The scenario of ``confluence`` (see :mod:`ucf.fakes.scenario`)."""
    if connector_id != "confluence":
        raise LookupError(f"ucf.fakes.confluence has no scenario for {connector_id!r}")
    return ConfluenceScenario()
