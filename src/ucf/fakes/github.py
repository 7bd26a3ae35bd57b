"""A faithful fake of the GitHub REST API (issues and pull requests) and its webhooks.

What it reproduces (GitHub's REST and webhook docs; the links are under Sources in
docs/connectors/github-issues.md):

* ``GET /repos/{owner}/{repo}/issues`` — ``state``, ``since`` (inclusive),
  ``sort`` (created|updated|comments), ``direction``, ``per_page`` (≤ 100,
  default 30), ``page``. Pull requests come back too, with a ``pull_request``
  key and their *issue* id, as on the real endpoint.
* ``GET /repos/{owner}/{repo}/pulls`` — ``state``, ``sort``
  (created|updated|popularity|long-running), ``direction``; **no** ``since``.
* Pagination by ``Link`` header (``prev``/``next``/``first``/``last``), with
  links in GitHub's own ``/repositories/{id}/…`` form, absent when one page
  holds everything.
* ``Authorization: Bearer <token>`` or ``token <token>``; a bad token is
  ``401 {"message": "Bad credentials", …}``; a missing ``User-Agent`` is 403.
* ``x-ratelimit-*`` headers on every answer; the rate-limit fault is GitHub's
  primary limit: ``403`` with ``x-ratelimit-remaining: 0`` and a reset epoch.
* Webhook deliveries as GitHub sends them: ``X-GitHub-Event``,
  ``X-GitHub-Delivery``, ``X-Hub-Signature-256: sha256=<hex>`` (and the legacy
  SHA-1 header), envelopes ``{action, issue|pull_request|review, repository, sender}``.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from urllib.parse import urlencode

from ucf.core.timestamps import parse_timestamp
from ucf.fakes.kit import FakeRequest, FakeResponse, Fault, iso_seconds
from ucf.fakes.oauth_providers import mount_github
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

OWNER: Final = "octo-org"
REPO: Final = "hello-world"
REPO_ID: Final = 1296269
API: Final = "https://api.github.com"
WEB: Final = "https://github.com"
DOCS: Final = "https://docs.github.com/rest"

GOOD_TOKEN: Final = "github_pat_11FAKE0good0token0for0the0ucf0battery"  # noqa: S105 - a fake's
BAD_TOKEN: Final = "github_pat_11FAKE0revoked0token0nobody0accepts"  # noqa: S105 - a fake's
WEBHOOK_SECRET: Final = "It's a Secret to Everybody"  # noqa: S105 - GitHub's documented example
OAUTH_CLIENT_ID: Final = "Ov23liFAKEoauthApp01"
OAUTH_CLIENT_SECRET: Final = "fake0github0oauth0app0client0secret0000001"  # noqa: S105 - a fake's

PEOPLE: Final = ("octocat", "hubot", "monalisa", "defunkt", "mojombo", "pjhyett")
LABELS: Final = (
    ("bug", "d73a4a", "Something isn't working"),
    ("enhancement", "a2eeef", "New feature or request"),
    ("documentation", "0075ca", "Improvements or additions to documentation"),
    ("P0", "b60205", "Drop everything"),
    ("P1", "d93f0b", "High priority"),
    ("P2", "fbca04", "Medium priority"),
    ("P3", "0e8a16", "Low priority"),
    ("good first issue", "7057ff", "Good for newcomers"),
)
TOPICS: Final = (
    "Crash when the config file is empty",
    "Document the retry settings",
    "Dark mode for the dashboard",
    "Webhook deliveries time out under load",
    "Typo in the README",
    "Support Python 3.13",
    "Flaky test in the scheduler",
    "Export signals as CSV",
)


iso = iso_seconds  # GitHub's REST timestamps


def user(login: str) -> dict[str, Any]:
    number = 1000 + PEOPLE.index(login) if login in PEOPLE else 999
    return {
        "login": login,
        "id": number,
        "node_id": f"MDQ6VXNlcj{number}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{number}?v=4",
        "gravatar_id": "",
        "url": f"{API}/users/{login}",
        "html_url": f"{WEB}/{login}",
        "followers_url": f"{API}/users/{login}/followers",
        "following_url": f"{API}/users/{login}/following{{/other_user}}",
        "gists_url": f"{API}/users/{login}/gists{{/gist_id}}",
        "starred_url": f"{API}/users/{login}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{API}/users/{login}/subscriptions",
        "organizations_url": f"{API}/users/{login}/orgs",
        "repos_url": f"{API}/users/{login}/repos",
        "events_url": f"{API}/users/{login}/events{{/privacy}}",
        "received_events_url": f"{API}/users/{login}/received_events",
        "type": "User",
        "user_view_type": "public",
        "site_admin": False,
    }


def label(name: str) -> dict[str, Any]:
    index, (_, color, description) = next(
        (i, entry) for i, entry in enumerate(LABELS) if entry[0] == name
    )
    return {
        "id": 208045946 + index,
        "node_id": f"MDU6TGFiZWwyMDgwNDU5{index}",
        "url": f"{API}/repos/{OWNER}/{REPO}/labels/{name.replace(' ', '%20')}",
        "name": name,
        "color": color,
        "default": index < 3,
        "description": description,
    }


def repository() -> dict[str, Any]:
    base = f"{API}/repos/{OWNER}/{REPO}"
    return {
        "id": REPO_ID,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
        "name": REPO,
        "full_name": f"{OWNER}/{REPO}",
        "private": False,
        "owner": {**user("octocat"), "login": OWNER, "type": "Organization"},
        "html_url": f"{WEB}/{OWNER}/{REPO}",
        "description": "The repository every fake issue lives in",
        "fork": False,
        "url": base,
        "issues_url": f"{base}/issues{{/number}}",
        "pulls_url": f"{base}/pulls{{/number}}",
        "labels_url": f"{base}/labels{{/name}}",
        "created_at": "2011-01-26T19:01:12Z",
        "updated_at": "2024-05-01T10:00:00Z",
        "pushed_at": "2024-05-01T10:00:00Z",
        "git_url": f"git://github.com/{OWNER}/{REPO}.git",
        "ssh_url": f"git@github.com:{OWNER}/{REPO}.git",
        "clone_url": f"{WEB}/{OWNER}/{REPO}.git",
        "homepage": None,
        "size": 108,
        "stargazers_count": 80,
        "watchers_count": 80,
        "language": "Python",
        "has_issues": True,
        "has_projects": True,
        "has_wiki": True,
        "forks_count": 9,
        "archived": False,
        "disabled": False,
        "open_issues_count": 0,
        "license": None,
        "topics": [],
        "visibility": "public",
        "default_branch": "main",
    }


# --------------------------------------------------------------------------- dataset


@dataclass
class Issue:
    """One issue (or pull request: ``pr_id`` set) of the fake repository."""

    number: int
    id: int
    title: str
    author: str
    created: datetime
    updated: datetime
    labels: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    state: Literal["open", "closed"] = "open"
    closed: datetime | None = None
    comments: int = 0
    body: str | None = None
    pr_id: int | None = None
    merged: datetime | None = None
    reviewers: list[str] = field(default_factory=list)
    draft: bool = False

    @property
    def is_pull(self) -> bool:
        return self.pr_id is not None

    def issue_json(self) -> dict[str, Any]:
        """The object of ``GET /repos/{o}/{r}/issues`` (and of ``issues`` webhooks)."""
        base = f"{API}/repos/{OWNER}/{REPO}/issues/{self.number}"
        web = f"{WEB}/{OWNER}/{REPO}/{'pull' if self.is_pull else 'issues'}/{self.number}"
        item: dict[str, Any] = {
            "url": base,
            "repository_url": f"{API}/repos/{OWNER}/{REPO}",
            "labels_url": f"{base}/labels{{/name}}",
            "comments_url": f"{base}/comments",
            "events_url": f"{base}/events",
            "html_url": web,
            "id": self.id,
            "node_id": f"I_kwDOABII5c{self.id}",
            "number": self.number,
            "title": self.title,
            "user": user(self.author),
            "labels": [label(name) for name in self.labels],
            "state": self.state,
            "locked": False,
            "assignee": user(self.assignees[0]) if self.assignees else None,
            "assignees": [user(login) for login in self.assignees],
            "milestone": None,
            "comments": self.comments,
            "created_at": iso(self.created),
            "updated_at": iso(self.updated),
            "closed_at": iso(self.closed) if self.closed else None,
            "author_association": "MEMBER",
            "type": None,
            "active_lock_reason": None,
            "sub_issues_summary": {"total": 0, "completed": 0, "percent_completed": 0},
            "body": self.body,
            "closed_by": user(self.author) if self.closed else None,
            "reactions": {
                "url": f"{base}/reactions",
                "total_count": 0,
                "+1": 0,
                "-1": 0,
                "laugh": 0,
                "hooray": 0,
                "confused": 0,
                "heart": 0,
                "rocket": 0,
                "eyes": 0,
            },
            "timeline_url": f"{base}/timeline",
            "performed_via_github_app": None,
            "state_reason": "completed" if self.closed and not self.is_pull else None,
        }
        if self.is_pull:
            item["draft"] = self.draft
            item["pull_request"] = {
                "url": f"{API}/repos/{OWNER}/{REPO}/pulls/{self.number}",
                "html_url": web,
                "diff_url": f"{web}.diff",
                "patch_url": f"{web}.patch",
                "merged_at": iso(self.merged) if self.merged else None,
            }
        return item

    def pull_json(self) -> dict[str, Any]:
        """The object of ``GET /repos/{o}/{r}/pulls`` (and of ``pull_request`` webhooks)."""
        assert self.pr_id is not None
        base = f"{API}/repos/{OWNER}/{REPO}"
        web = f"{WEB}/{OWNER}/{REPO}/pull/{self.number}"
        sha = f"{self.pr_id:040x}"[-40:]
        branch = f"fix/{self.number}-{self.title.lower().split()[0]}"
        repo = repository()
        return {
            "url": f"{base}/pulls/{self.number}",
            "id": self.pr_id,
            "node_id": f"PR_kwDOABII5c{self.pr_id}",
            "html_url": web,
            "diff_url": f"{web}.diff",
            "patch_url": f"{web}.patch",
            "issue_url": f"{base}/issues/{self.number}",
            "number": self.number,
            "state": self.state,
            "locked": False,
            "title": self.title,
            "user": user(self.author),
            "body": self.body,
            "created_at": iso(self.created),
            "updated_at": iso(self.updated),
            "closed_at": iso(self.closed) if self.closed else None,
            "merged_at": iso(self.merged) if self.merged else None,
            "merge_commit_sha": sha if self.merged else None,
            "assignee": user(self.assignees[0]) if self.assignees else None,
            "assignees": [user(login) for login in self.assignees],
            "requested_reviewers": [user(login) for login in self.reviewers],
            "requested_teams": [],
            "labels": [label(name) for name in self.labels],
            "milestone": None,
            "draft": self.draft,
            "commits_url": f"{base}/pulls/{self.number}/commits",
            "review_comments_url": f"{base}/pulls/{self.number}/comments",
            "review_comment_url": f"{base}/pulls/comments{{/number}}",
            "comments_url": f"{base}/issues/{self.number}/comments",
            "statuses_url": f"{base}/statuses/{sha}",
            "head": {
                "label": f"{OWNER}:{branch}",
                "ref": branch,
                "sha": sha,
                "user": user(self.author),
                "repo": repo,
            },
            "base": {
                "label": f"{OWNER}:main",
                "ref": "main",
                "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
                "user": repo["owner"],
                "repo": repo,
            },
            "_links": {
                "self": {"href": f"{base}/pulls/{self.number}"},
                "html": {"href": web},
                "issue": {"href": f"{base}/issues/{self.number}"},
                "comments": {"href": f"{base}/issues/{self.number}/comments"},
                "review_comments": {"href": f"{base}/pulls/{self.number}/comments"},
                "review_comment": {"href": f"{base}/pulls/comments{{/number}}"},
                "commits": {"href": f"{base}/pulls/{self.number}/commits"},
                "statuses": {"href": f"{base}/statuses/{sha}"},
            },
            "author_association": "MEMBER",
            "auto_merge": None,
            "active_lock_reason": None,
        }


class Dataset:
    """The fake repository's issues and pull requests, laid out around ``now``.

    ~150 items changed in the last six days (two pages at ``per_page=100``,
    both for issues and for pulls), a few untouched for a month (outside a
    seven-day initial window); every tenth item is a pull request.
    """

    def __init__(self, now: datetime, *, count: int = 150, pulls: int = 130) -> None:
        self._numbers = itertools.count(1)
        self._issue_ids = itertools.count(1_000_001)
        self._pr_ids = itertools.count(5_000_001)
        self.items: dict[int, Issue] = {}
        window = timedelta(days=6)
        for index in range(count):
            updated = now - window + window * index / count
            self._add(now, updated, pull=False, index=index)
        for index in range(pulls):
            updated = now - window + window * index / pulls + timedelta(seconds=7)
            self._add(now, updated, pull=True, index=index)
        for index in range(3):
            stale = now - timedelta(days=30 + index)
            self._add(now, stale, pull=bool(index % 2), index=index)

    def _add(self, now: datetime, updated: datetime, *, pull: bool, index: int) -> Issue:
        number = next(self._numbers)
        created = updated - timedelta(hours=index % 5) if index % 3 else updated
        labels = [LABELS[index % 3][0]]
        if index % 4 == 0:
            labels.append(f"P{index % 16 // 4}")
        item = Issue(
            number=number,
            id=next(self._issue_ids),
            title=f"{TOPICS[index % len(TOPICS)]} ({number})",
            author=PEOPLE[index % len(PEOPLE)],
            created=created.replace(microsecond=0),
            updated=updated.replace(microsecond=0),
            labels=labels,
            assignees=[PEOPLE[(index + 1) % len(PEOPLE)]] if index % 2 else [],
            comments=index % 4,
            body=f"Seen on main. Steps to reproduce are in #{max(1, number - 1)}.",
        )
        if pull:
            item.pr_id = next(self._pr_ids)
            item.reviewers = [PEOPLE[(index + 2) % len(PEOPLE)]]
            item.draft = index % 7 == 0
            if index % 5 == 4:
                item.state, item.closed, item.merged = "closed", item.updated, item.updated
        self.items[number] = item
        return item

    def open_issue(self, now: datetime, *, pull: bool, title: str) -> Issue:
        item = self._add(now, now, pull=pull, index=len(self.items))
        item.created = item.updated = now.replace(microsecond=0)
        item.title = title
        return item

    def touch(self, number: int, now: datetime, change: Callable[[Issue], None]) -> Issue:
        item = self.items[number]
        change(item)
        item.updated = now.replace(microsecond=0)
        return item


# --------------------------------------------------------------------------- the fake


def _link_header(request: FakeRequest, page: int, last: int) -> str | None:
    """GitHub's Link header, pointing at the ``/repositories/{id}/…`` form of the URL."""
    if last <= 1:
        return None
    query = {k: v[0] for k, v in request.query.items() if k != "page"}
    listing = request.path.rsplit("/", 1)[-1]
    base = request.url_for(f"/repositories/{REPO_ID}/{listing}")

    def at(number: int) -> str:
        return f"{base}?{urlencode({**query, 'page': str(number)})}"

    links: list[str] = []
    if page > 1:
        links.append(f'<{at(page - 1)}>; rel="prev"')
    if page < last:
        links.append(f'<{at(page + 1)}>; rel="next"')
        links.append(f'<{at(last)}>; rel="last"')
    if page > 1:
        links.append(f'<{at(1)}>; rel="first"')
    return ", ".join(links)


class GitHubFake(ProviderFake):
    """``api.github.com`` for one repository, answering as documented."""

    poll_route = "/repos/{owner}/{repo}/issues"

    def __init__(self, now: datetime, *, view: Literal["issues", "pulls"] = "issues") -> None:
        super().__init__()
        self.view = view
        self.poll_route = f"/repos/{{owner}}/{{repo}}/{view}"
        self.data = Dataset(now)
        self.tokens = {GOOD_TOKEN}
        self.remaining = 5000
        # github.com/login/oauth/{authorize,access_token} and the REST API's
        # DELETE /applications/{client_id}/grant: an OAuth app's consent.
        self.auth = mount_github(
            self.server, OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, access_tokens=self.tokens
        )
        for prefix in ("/repos/{owner}/{repo}", f"/repositories/{REPO_ID}"):
            self.server.add_route("GET", f"{prefix}/issues", self._guard(self._issues))
            self.server.add_route("GET", f"{prefix}/pulls", self._guard(self._pulls))
        self.server.add_route("GET", "/rate_limit", self._guard(self._rate_limit, counts=False))
        self.server.add_route("GET", "/repos/{owner}/{repo}", self._guard(self._repo))

    # -- protocol

    def add_activity(self, now: datetime) -> Activity:
        """Two new issues and a new pull request; an issue relabelled, one closed, a PR merged."""
        data = self.data
        fresh = [
            data.open_issue(now, pull=False, title="Signals stop after a token rotation"),
            data.open_issue(now, pull=False, title="Dashboard shows stale health"),
            data.open_issue(now, pull=True, title="Fix the token rotation race"),
        ]
        issues = [i for i in data.items.values() if not i.is_pull and i.state == "open"]
        pulls = [i for i in data.items.values() if i.is_pull and i.state == "open"]

        def relabel(item: Issue) -> None:
            item.labels = ["bug", "P0"]

        def close(item: Issue) -> None:
            item.state, item.closed = "closed", now.replace(microsecond=0)

        def merge(item: Issue) -> None:
            item.state = "closed"
            item.closed = item.merged = now.replace(microsecond=0)

        changed = [
            data.touch(issues[3].number, now, relabel),
            data.touch(issues[10].number, now, close),
            data.touch(pulls[2].number, now, merge),
        ]
        return Activity(
            new_ids=frozenset(self._ids(fresh)), changed_ids=frozenset(self._ids(changed))
        )

    def push_change(self, now: datetime) -> PushedChange:
        """An open issue (or pull request) labelled P1: ``issues.labeled`` / ``pull_request.labeled``."""
        pull = self.view == "pulls"
        candidates = [
            i for i in self.data.items.values() if i.is_pull == pull and i.state == "open"
        ]

        def add_label(item: Issue) -> None:
            item.labels = [*item.labels, "P1"]

        item = self.data.touch(candidates[0].number, now, add_label)
        if pull:
            sample = envelope(
                "pull_request",
                "labeled",
                number=item.number,
                pull_request=item.pull_json(),
                label=label("P1"),
            )
        else:
            sample = envelope("issues", "labeled", issue=item.issue_json(), label=label("P1"))
        return PushedChange(self._ids([item])[0], sample)

    def _ids(self, items: list[Issue]) -> list[str]:
        if self.view == "pulls":
            return [str(i.pr_id) for i in items if i.pr_id is not None]
        return [str(i.id) for i in items if not i.is_pull]

    def ids_changed_since(self, moment: datetime) -> frozenset[str]:
        return frozenset(self._ids([i for i in self.data.items.values() if i.updated >= moment]))

    def rate_limit_fault(self, retry_after: int) -> Fault:
        reset = int(time.time()) + retry_after
        return Fault.rate_limited(
            None,
            status=403,
            headers={
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-used": "5000",
                "x-ratelimit-reset": str(reset),
                "x-ratelimit-resource": "core",
            },
            body={
                "message": "API rate limit exceeded for user ID 1000.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            },
        )

    # -- plumbing

    def _rate_headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-used": str(5000 - self.remaining),
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-resource": "core",
            "x-github-api-version-selected": "2022-11-28",
            "x-github-media-type": "github.v3; format=json",
        }

    def _guard(
        self, handler: Callable[[FakeRequest], FakeResponse], *, counts: bool = True
    ) -> Callable[[FakeRequest], FakeResponse]:
        """Auth, User-Agent and API-version checks every REST route shares."""

        def guarded(request: FakeRequest) -> FakeResponse:
            if not request.headers.get("user-agent"):
                return FakeResponse.text(
                    "Request forbidden by administrative rules. Please make sure your request "
                    "has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required).",
                    403,
                )
            version = request.headers.get("x-github-api-version", "2022-11-28")
            if version not in ("2022-11-28", "2026-03-10"):
                return FakeResponse.json(
                    {
                        "message": f"Invalid API version '{version}'",
                        "documentation_url": f"{DOCS}/overview/api-versions",
                        "status": "400",
                    },
                    400,
                )
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() not in ("bearer", "token") or token not in self.tokens:
                return FakeResponse.json(
                    {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"},
                    401,
                    self._rate_headers(),
                )
            owner, repo = request.path_params.get("owner"), request.path_params.get("repo")
            if owner is not None and (owner, repo) != (OWNER, REPO):
                return FakeResponse.json(
                    {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, 404
                )
            if counts:
                self.remaining = max(0, self.remaining - 1)
            return handler(request)

        return guarded

    def _page(
        self, request: FakeRequest, rows: list[dict[str, Any]]
    ) -> FakeResponse | tuple[list[dict[str, Any]], dict[str, str]]:
        try:
            per_page = min(100, max(1, int(request.param("per_page") or "30")))
            page = max(1, int(request.param("page") or "1"))
        except ValueError:
            return FakeResponse.json(
                {"message": "Invalid request.", "documentation_url": DOCS, "status": "422"}, 422
            )
        last = max(1, -(-len(rows) // per_page))
        headers = self._rate_headers()
        link = _link_header(request, page, last)
        if link is not None:
            headers["Link"] = link
        return rows[(page - 1) * per_page : page * per_page], headers

    def _issues(self, request: FakeRequest) -> FakeResponse:
        items = list(self.data.items.values())
        state = request.param("state", "open")
        if state != "all":
            items = [i for i in items if i.state == state]
        since_text = request.param("since")
        if since_text is not None:
            since = parse_timestamp(since_text, "iso8601")
            if since is None:
                return FakeResponse.json(
                    {
                        "message": "Validation Failed",
                        "errors": [{"resource": "Issue", "field": "since", "code": "invalid"}],
                        "documentation_url": f"{DOCS}/issues/issues#list-repository-issues",
                        "status": "422",
                    },
                    422,
                )
            items = [i for i in items if i.updated >= since]
        sort = request.param("sort", "created")
        key: Callable[[Issue], Any] = {
            "created": lambda i: (i.created, i.number),
            "updated": lambda i: (i.updated, i.number),
            "comments": lambda i: (i.comments, i.number),
        }.get(sort or "created", lambda i: (i.created, i.number))
        items.sort(key=key, reverse=request.param("direction", "desc") != "asc")
        paged = self._page(request, [i.issue_json() for i in items])
        if isinstance(paged, FakeResponse):
            return paged
        rows, headers = paged
        return FakeResponse.json(rows, headers=headers)

    def _pulls(self, request: FakeRequest) -> FakeResponse:
        items = [i for i in self.data.items.values() if i.is_pull]
        state = request.param("state", "open")
        if state != "all":
            items = [i for i in items if i.state == state]
        sort = request.param("sort", "created")
        key: Callable[[Issue], Any] = {
            "created": lambda i: (i.created, i.number),
            "updated": lambda i: (i.updated, i.number),
            "popularity": lambda i: (i.comments, i.number),
            "long-running": lambda i: (i.created, i.number),
        }.get(sort or "created", lambda i: (i.created, i.number))
        default_direction = "desc" if sort in ("created", "updated", "popularity") else "asc"
        items.sort(key=key, reverse=request.param("direction", default_direction) != "asc")
        paged = self._page(request, [i.pull_json() for i in items])
        if isinstance(paged, FakeResponse):
            return paged
        rows, headers = paged
        return FakeResponse.json(rows, headers=headers)

    def _rate_limit(self, request: FakeRequest) -> FakeResponse:
        core = {
            "limit": 5000,
            "used": 5000 - self.remaining,
            "remaining": self.remaining,
            "reset": int(time.time()) + 3600,
        }
        body = {"resources": {"core": core}, "rate": core}
        return FakeResponse.json(body, headers=self._rate_headers())

    def _repo(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json(repository(), headers=self._rate_headers())


# --------------------------------------------------------------------------- webhooks


def sign_delivery(
    sample: WebhookSample, *, url: str, secret: str = WEBHOOK_SECRET
) -> WebhookDelivery:
    """GitHub's headers and signatures over the raw body (no timestamp: no replay window)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/a8d9b36",
        "X-GitHub-Hook-ID": "292430182",
        "X-GitHub-Hook-Installation-Target-ID": str(REPO_ID),
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        **sample.headers,
        "X-Hub-Signature": "sha1=" + hmac_digest(secret, sample.body, algorithm="sha1"),
        "X-Hub-Signature-256": "sha256=" + hmac_digest(secret, sample.body),
    }
    return WebhookDelivery(sample.name, url, sample.body, headers, sample.expected_types)


def envelope(event: str, action: str | None, **objects: Any) -> WebhookSample:
    payload: dict[str, Any] = {} if action is None else {"action": action}
    payload.update(objects)
    payload.setdefault("repository", repository())
    payload.setdefault("sender", user("octocat"))
    name = event if action is None else f"{event}.{action}"
    return WebhookSample.of(
        name, payload, headers={"X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4())}
    )


def comment(issue: Issue, author: str, text: str, at: datetime) -> dict[str, Any]:
    number = 1_500_000 + issue.number
    base = f"{API}/repos/{OWNER}/{REPO}/issues"
    return {
        "url": f"{base}/comments/{number}",
        "html_url": f"{WEB}/{OWNER}/{REPO}/issues/{issue.number}#issuecomment-{number}",
        "issue_url": f"{base}/{issue.number}",
        "id": number,
        "node_id": f"IC_kwDOABII5c{number}",
        "user": user(author),
        "created_at": iso(at),
        "updated_at": iso(at),
        "author_association": "MEMBER",
        "body": text,
        "reactions": {"url": f"{base}/comments/{number}/reactions", "total_count": 0},
        "performed_via_github_app": None,
    }


def review(pull: Issue, author: str, state: str, at: datetime) -> dict[str, Any]:
    number = 80_000_000 + pull.number
    web = f"{WEB}/{OWNER}/{REPO}/pull/{pull.number}"
    return {
        "id": number,
        "node_id": f"PRR_kwDOABII5c{number}",
        "user": user(author),
        "body": "Looks good, one nit inline.",
        "commit_id": f"{pull.pr_id or 0:040x}"[-40:],
        "submitted_at": iso(at),
        "state": state,
        "html_url": f"{web}#pullrequestreview-{number}",
        "pull_request_url": f"{API}/repos/{OWNER}/{REPO}/pulls/{pull.number}",
        "author_association": "MEMBER",
        "_links": {
            "html": {"href": f"{web}#pullrequestreview-{number}"},
            "pull_request": {"href": f"{API}/repos/{OWNER}/{REPO}/pulls/{pull.number}"},
        },
    }


# --------------------------------------------------------------------------- scenarios


class _GitHubScenario(Scenario):
    view: Literal["issues", "pulls"]

    def __init__(self, now: datetime | None = None) -> None:
        # Webhook samples are built from a dataset of their own, laid out at import time.
        self._samples_data = Dataset(now or datetime.now(UTC), count=12, pulls=12)

    def fake(self, now: datetime) -> GitHubFake:
        return GitHubFake(now, view=self.view)

    def config(self, base_url: str) -> dict[str, str]:
        return {"baseUrl": base_url, "owner": OWNER, "repo": REPO}

    def credentials(self) -> dict[str, str]:
        return {"token": GOOD_TOKEN, "webhookSecret": WEBHOOK_SECRET}

    def bad_credentials(self) -> dict[str, str]:
        return {"token": BAD_TOKEN, "webhookSecret": WEBHOOK_SECRET}

    def oauth_app(self) -> tuple[str, str] | None:
        return OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET

    @property
    def webhook_secret(self) -> str:
        return WEBHOOK_SECRET

    def unknown_event_sample(self) -> WebhookSample:
        starred = envelope("star", "created", starred_at=iso(datetime.now(UTC)))
        return WebhookSample(starred.name, starred.body, starred.headers, ())

    def sign(self, sample: WebhookSample, *, url: str, at: datetime) -> WebhookDelivery:
        return sign_delivery(sample, url=url)

    def _items(self, *, pull: bool) -> list[Issue]:
        return [i for i in self._samples_data.items.values() if i.is_pull == pull]


class GitHubIssuesScenario(_GitHubScenario):
    connector_id = "github-issues"
    view = "issues"
    polling_signal_types = frozenset({"issue_created", "issue_updated"})
    webhook_signal_types = frozenset({"issue_created", "issue_updated", "issue_commented"})

    # Dataset issue #1: labels bug + P0, nobody assigned; #2: enhancement, assigned monalisa.
    metadata = (
        MetadataExpectation(item_id="1000001", priority="critical", tags=("bug", "P0")),
        MetadataExpectation(item_id="1000002", participants=("monalisa",), tags=("enhancement",)),
    )

    def webhook_samples(self) -> list[WebhookSample]:
        now = datetime.now(UTC)
        first, second, third = self._items(pull=False)[:3]
        opened = replace(first, created=now, updated=now, comments=0)
        samples = [
            envelope("issues", "opened", issue=opened.issue_json()),
            envelope(
                "issues",
                "edited",
                issue=second.issue_json(),
                changes={"title": {"from": "Old title"}},
            ),
            envelope("issues", "labeled", issue=third.issue_json(), label=label("P1")),
            envelope(
                "issue_comment",
                "created",
                issue=second.issue_json(),
                comment=comment(second, "hubot", "I can reproduce this on 1.4.", now),
            ),
        ]
        expected = {
            "issues.opened": ("issue_created",),
            "issues.edited": ("issue_updated",),
            "issues.labeled": ("issue_updated",),
            "issue_comment.created": ("issue_commented",),
        }
        return [WebhookSample(s.name, s.body, s.headers, expected[s.name]) for s in samples]


class GitHubPullsScenario(_GitHubScenario):
    connector_id = "github-prs"
    view = "pulls"
    polling_signal_types = frozenset({"pr_opened", "pr_merged", "pr_updated"})
    webhook_signal_types = frozenset(
        {"pr_opened", "pr_merged", "pr_closed", "pr_reviewed", "pr_updated"}
    )
    # First pull request: labels bug + P0, review requested from monalisa; second:
    # enhancement, assigned monalisa, review requested from defunkt.
    metadata = (
        MetadataExpectation(
            item_id="5000001", priority="critical", participants=("monalisa",), tags=("bug", "P0")
        ),
        MetadataExpectation(
            item_id="5000002", participants=("monalisa", "defunkt"), tags=("enhancement",)
        ),
    )

    def webhook_samples(self) -> list[WebhookSample]:
        now = datetime.now(UTC)
        first, second, third, fourth = self._items(pull=True)[:4]
        opened = replace(first, created=now, updated=now)
        merged = replace(second, state="closed", closed=now, merged=now, updated=now)
        closed = replace(third, state="closed", closed=now, updated=now)

        def pull(item: Issue, *, merged: bool = False) -> dict[str, Any]:
            return {
                **item.pull_json(),
                "merged": merged,
                "mergeable": None if merged else True,
                "rebaseable": None if merged else True,
                "mergeable_state": "unknown" if merged else "clean",
                "merged_by": user("octocat") if merged else None,
                "comments": item.comments,
                "review_comments": 1,
                "maintainer_can_modify": False,
                "commits": 3,
                "additions": 42,
                "deletions": 7,
                "changed_files": 2,
            }

        cases = [
            (
                envelope("pull_request", "opened", number=first.number, pull_request=pull(opened)),
                "pr_opened",
            ),
            (
                envelope(
                    "pull_request",
                    "closed",
                    number=second.number,
                    pull_request=pull(merged, merged=True),
                ),
                "pr_merged",
            ),
            (
                envelope("pull_request", "closed", number=third.number, pull_request=pull(closed)),
                "pr_closed",
            ),
            (
                envelope(
                    "pull_request_review",
                    "submitted",
                    review=review(fourth, "hubot", "approved", now),
                    pull_request=pull(fourth),
                ),
                "pr_reviewed",
            ),
            (
                envelope(
                    "pull_request",
                    "review_requested",
                    number=fourth.number,
                    pull_request=pull(fourth),
                    requested_reviewer=user("hubot"),
                ),
                "pr_updated",
            ),
        ]
        return [WebhookSample(s.name, s.body, s.headers, (kind,)) for s, kind in cases]


def scenario(connector_id: str) -> Scenario:
    """The scenario of ``github-issues`` or ``github-prs`` (see :mod:`ucf.fakes.scenario`)."""
    scenarios: dict[str, Callable[[], Scenario]] = {
        "github-issues": GitHubIssuesScenario,
        "github-prs": GitHubPullsScenario,
    }
    try:
        return scenarios[connector_id]()
    except KeyError:
        raise LookupError(f"ucf.fakes.github has no scenario for {connector_id!r}") from None
