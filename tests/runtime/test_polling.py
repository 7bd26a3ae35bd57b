"""The polling engine against real local fakes shaped like the APIs it exists for.

Each paginator and delta strategy is exercised against a fake that answers the
way its real API does (the provider pages are linked under Sources in
docs/connectors/<id>.md): GitHub's Link header and inclusive ``since``, Notion's body cursor and ``has_more``, Slack's empty-string cursor,
PagerDuty's ``offset``/``more``, Confluence's relative ``_links.next`` under
``_links.base``, Sentry's ``results="false"``, Trello's action-id ``since``,
Microsoft Graph's deltaLink. Sleeps are injected, so waits cost nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import pytest_asyncio

from ucf.core.descriptor import ConnectorDescriptor
from ucf.core.descriptor_view import SinceIdView, connector_view
from ucf.core.signal import iso_utc
from ucf.core.validation import parse_descriptor
from ucf.fakes import FakeRequest, FakeResponse, FakeServer, Fault
from ucf.runtime.auth import StaticAuth
from ucf.runtime.delta import CheckpointInvalid, ResumePosition, SinceId
from ucf.runtime.http import AuthFailed, HttpSettings, MalformedResponse, create_client
from ucf.runtime.pagination import PageRequest
from ucf.runtime.polling import ConfigError, Page, PollPlan, TokenBucketGate
from ucf.runtime.ssrf import EgressPolicy

ROOT = Path(__file__).resolve().parents[2]
GITHUB = json.loads((ROOT / "src/ucf/catalogue/github-issues.json").read_text())
SETTINGS = HttpSettings(connect_timeout=2, read_timeout=2, max_retries=3, backoff_base=0.01)
NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
NO_AUTH = StaticAuth()


class Sleeps:
    """An injected ``sleep`` that records what the engine would have waited."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest_asyncio.fixture(loop_scope="function")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with create_client(SETTINGS, EgressPolicy(frozenset({"127.0.0.1"}))) as http:
        yield http


async def run(
    descriptor: ConnectorDescriptor,
    client: httpx.AsyncClient,
    *,
    config: dict[str, str],
    checkpoint: str | None = None,
    auth: httpx.Auth = NO_AUTH,
    now: datetime = NOW,
    sleep: Sleeps | None = None,
    **options: Any,
) -> list[Page]:
    plan = PollPlan.compile(descriptor)
    pages = plan.pages(
        client,
        auth,
        config=config,
        checkpoint=checkpoint,
        now=now,
        settings=SETTINGS,
        sleep=sleep or Sleeps(),
        **options,
    )
    return [page async for page in pages]


def ids(pages: list[Page]) -> list[Any]:
    return [item["id"] for page in pages for item in page.items]


def generic(
    polling: dict[str, Any],
    *,
    items_path: str = "$",
    timestamp_path: str = "$.updated_at",
    timestamp_format: str = "auto",
    auth: dict[str, Any] | None = None,
    config_fields: list[dict[str, Any]] | None = None,
    validate: bool = True,
) -> ConnectorDescriptor:
    """A small descriptor around one polling spec, fully validated unless told otherwise."""
    parse = parse_descriptor if validate else ConnectorDescriptor.model_validate
    return parse(
        {
            "id": "fake-api",
            "name": "Fake API",
            "description": "test",
            "category": "Custom",
            "icon": "x",
            "kind": "generic",
            "version": "1.0.0",
            "configFields": config_fields or [],
            "auth": auth or {"method": "none"},
            "ingestion": {"mode": "polling", "rateLimitRpm": 6000, **polling},
            "fieldMapping": {
                "itemsPath": items_path,
                "idPath": "$.id",
                "timestampPath": timestamp_path,
                "timestampFormat": timestamp_format,
                "summaryTemplate": "{{id}}",
                "signalTypeRules": [],
            },
            "healthCheck": {
                "endpoint": "{{baseUrl}}/health",
                "method": "GET",
                "expectStatus": 200,
                "timeoutMs": 1000,
            },
        }
    )


# --------------------------------------------------------------------------- GitHub


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class GitHubIssues:
    """``GET /repos/{owner}/{repo}/issues``: inclusive ``since``, sort by updated, Link paging."""

    token: str = "ghp_valid_token_0001"
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)

    def put(self, number: int, updated: datetime) -> None:
        self.issues[number] = {
            "id": 1000 + number,
            "number": number,
            "title": f"issue {number}",
            "created_at": iso(updated),
            "updated_at": iso(updated),
        }

    def __call__(self, request: FakeRequest) -> FakeResponse:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return FakeResponse.json({"message": "Bad credentials"}, 401)
        params = {name: values[0] for name, values in request.query.items()}
        rows = sorted(
            self.issues.values(),
            key=lambda issue: (issue["updated_at"], issue["id"]),
            reverse=params.get("direction", "desc") == "desc",
        )
        if "since" in params:
            since = datetime.fromisoformat(params["since"])
            rows = [r for r in rows if datetime.fromisoformat(r["updated_at"]) >= since]
        per_page, page = int(params.get("per_page", "30")), int(params.get("page", "1"))
        chunk = rows[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(rows):
            following = urlencode({**params, "page": str(page + 1)})
            headers["Link"] = f'<{request.url_for(request.path + "?" + following)}>; rel="next"'
        return FakeResponse.json(chunk, headers=headers)


def github_descriptor(*, page_size: int = 2, sorted_ascending: bool = False) -> ConnectorDescriptor:
    data = copy.deepcopy(GITHUB)
    polling = data["ingestion"]["polling"]
    polling["pagination"]["pageSize"] = page_size
    polling["delta"]["sortedAscending"] = sorted_ascending
    return parse_descriptor(data)


@pytest.fixture
def github(server: FakeServer) -> GitHubIssues:
    fake = GitHubIssues()
    fake.put(1, NOW - timedelta(days=10))  # before the initial window
    for number, days in zip(range(2, 8), (6, 5, 4, 3, 2, 1), strict=True):
        fake.put(number, NOW - timedelta(days=days))
    server.add_route("GET", "/repos/{owner}/{repo}/issues", fake)
    return fake


def github_config(server: FakeServer) -> dict[str, str]:
    return {"baseUrl": server.base_url, "owner": "octo", "repo": "hello"}


def github_auth(fake: GitHubIssues) -> httpx.Auth:
    return StaticAuth(headers={"Authorization": f"Bearer {fake.token}"})


async def test_first_poll_takes_the_initial_window_and_reaches_the_last_page(
    server: FakeServer, github: GitHubIssues, client: httpx.AsyncClient
) -> None:
    pages = await run(
        github_descriptor(), client, config=github_config(server), auth=github_auth(github)
    )

    assert [item["number"] for page in pages for item in page.items] == [2, 3, 4, 5, 6, 7]
    assert [page.number for page in pages] == [1, 2, 3]
    assert [page.last for page in pages] == [False, False, True]
    first = server.requests_to("/repos/{owner}/{repo}/issues")[0]
    assert first.param("since") == "2024-05-03T12:00:00Z"  # NOW minus the 7-day lookback
    assert (first.param("per_page"), first.param("direction")) == ("2", "asc")
    assert pages[-1].checkpoint == iso_utc(NOW - timedelta(days=1))


async def test_unsorted_results_hold_the_checkpoint_until_the_last_page(
    server: FakeServer, github: GitHubIssues, client: httpx.AsyncClient
) -> None:
    stored = iso_utc(NOW - timedelta(days=7))
    pages = await run(
        github_descriptor(),
        client,
        config=github_config(server),
        auth=github_auth(github),
        checkpoint=stored,
    )
    assert [page.checkpoint for page in pages] == [stored, stored, iso_utc(NOW - timedelta(days=1))]


async def test_ascending_results_advance_the_checkpoint_after_every_page(
    server: FakeServer, github: GitHubIssues, client: httpx.AsyncClient
) -> None:
    pages = await run(
        github_descriptor(sorted_ascending=True),
        client,
        config=github_config(server),
        auth=github_auth(github),
    )
    assert [page.checkpoint for page in pages] == [
        iso_utc(NOW - timedelta(days=5)),
        iso_utc(NOW - timedelta(days=3)),
        iso_utc(NOW - timedelta(days=1)),
    ]


async def test_second_poll_returns_only_new_and_changed_items_plus_the_overlap(
    server: FakeServer, github: GitHubIssues, client: httpx.AsyncClient
) -> None:
    descriptor, config, auth = github_descriptor(), github_config(server), github_auth(github)
    first = await run(descriptor, client, config=config, auth=auth)
    checkpoint = first[-1].checkpoint

    github.put(3, NOW + timedelta(minutes=10))  # edited
    github.put(8, NOW + timedelta(minutes=20))  # opened
    later = NOW + timedelta(hours=1)
    second = await run(
        descriptor, client, config=config, auth=auth, checkpoint=checkpoint, now=later
    )

    # Issue 7 is the newest of the first poll: the 1-second overlap asks for it again
    # (dedup absorbs it), so a same-second update can never be missed.
    assert [item["number"] for page in second for item in page.items] == [7, 3, 8]
    assert server.requests_to("/repos/{owner}/{repo}/issues")[-2].param("since") == iso(
        NOW - timedelta(days=1, seconds=1)
    )
    assert second[-1].checkpoint == iso_utc(NOW + timedelta(minutes=20))


async def test_a_429_with_retry_after_waits_as_asked_and_the_poll_completes(
    server: FakeServer, github: GitHubIssues, client: httpx.AsyncClient
) -> None:
    server.inject(Fault.rate_limited(retry_after=2), path="/repos/{owner}/{repo}/issues")
    sleeps = Sleeps()
    pages = await run(
        github_descriptor(),
        client,
        config=github_config(server),
        auth=github_auth(github),
        sleep=sleeps,
    )
    assert sleeps.calls == [2.0]
    assert (pages[0].rate_limit_waits, pages[0].rate_limit_wait_seconds) == (1, 2.0)
    assert [item["number"] for page in pages for item in page.items] == [2, 3, 4, 5, 6, 7]


async def test_rejected_credentials_fail_at_once_without_retrying(
    server: FakeServer, github: GitHubIssues, client: httpx.AsyncClient
) -> None:
    sleeps = Sleeps()
    with pytest.raises(AuthFailed, match="HTTP 401"):
        await run(
            github_descriptor(),
            client,
            config=github_config(server),
            auth=StaticAuth(headers={"Authorization": "Bearer ghp_revoked_token_000"}),
            sleep=sleeps,
        )
    assert sleeps.calls == []  # no backoff before giving up (counted, not timed)
    assert len(server.requests) == 1


async def test_max_pages_stores_where_the_listing_stopped_and_the_next_poll_goes_on(
    server: FakeServer, github: GitHubIssues, client: httpx.AsyncClient
) -> None:
    first = await run(
        github_descriptor(),
        client,
        config=github_config(server),
        auth=github_auth(github),
        max_pages=2,
    )
    assert [page.number for page in first] == [1, 2]
    assert (first[-1].last, first[-1].truncated) == (True, True)
    assert first[0].checkpoint is None  # unsorted: nothing is safe before the end
    position = ResumePosition.decode(first[-1].checkpoint or "")
    assert position is not None  # not a plain timestamp: pages 3+ may hold older items
    assert position.checkpoint is None  # the same listing (the initial window) goes on
    assert position.pending == iso_utc(NOW - timedelta(days=3))  # newest of pages 1-2
    assert position.next.url is not None
    assert "page=3" in position.next.url

    rest = await run(
        github_descriptor(),
        client,
        config=github_config(server),
        auth=github_auth(github),
        checkpoint=first[-1].checkpoint,
        max_pages=2,
    )
    assert [item["number"] for page in first + rest for item in page.items] == [2, 3, 4, 5, 6, 7]
    assert server.requests_to("/repos/{owner}/{repo}/issues")[2].param("page") == "3"
    # Complete at page 3: the high-water mark of all three pages, no position left.
    assert [page.checkpoint for page in rest] == [iso_utc(NOW - timedelta(days=1))]


async def test_an_offset_listing_cut_short_resumes_at_its_offset(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    pagerduty(server, cap=2)
    first = await run(
        pagerduty_descriptor(2), client, config={"baseUrl": server.base_url}, max_pages=1
    )
    position = ResumePosition.decode(first[-1].checkpoint or "")
    assert position is not None
    assert position.next.params["offset"] == "2"
    rest = await run(
        pagerduty_descriptor(2),
        client,
        config={"baseUrl": server.base_url},
        checkpoint=first[-1].checkpoint,
    )
    assert [r.param("offset") for r in server.requests_to("/incidents")] == ["0", "2", "4"]
    assert ids(first + rest) == ["P1", "P2", "P3", "P4", "P5"]
    assert rest[-1].checkpoint == "2024-05-05T00:00:00.000Z"


async def test_a_resumed_next_link_never_keeps_a_query_string_credential(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    """The checkpoint is shown on the dashboard: a next link echoing ``key=`` loses it."""

    def listing(request: FakeRequest) -> FakeResponse:
        page = int(request.param("page", "1") or 1)
        rows = [{"id": page, "updated_at": "2024-05-09T10:00:00Z"}]
        nxt = request.url_for("/items") + f"?key={request.param('key')}&page={page + 1}"
        return FakeResponse.json(rows, headers={"Link": f'<{nxt}>; rel="next"'})

    server.add_route("GET", "/items", listing)
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/items",
            "method": "GET",
            "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
            "pagination": {"type": "link_header", "pageSize": 1},
        },
        auth={
            "method": "api_key",
            "config": {
                "delivery": "query",
                "paramName": "key",
                "credentialFields": [
                    {"key": "apiKey", "label": "k", "type": "password", "required": True}
                ],
            },
        },
    )
    pages = await run(
        descriptor,
        client,
        config={"baseUrl": server.base_url},
        auth=StaticAuth(params={"key": "k-secret-value"}),
        max_pages=2,
    )
    checkpoint = pages[-1].checkpoint or ""
    assert "k-secret-value" not in checkpoint
    position = ResumePosition.decode(checkpoint)
    assert position is not None
    assert position.next.url is not None
    assert "page=3" in position.next.url


async def test_a_resume_position_the_api_no_longer_accepts_starts_the_listing_over(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    """A cursor can expire between polls: the listing is read again from its top."""

    def listing(request: FakeRequest) -> FakeResponse:
        cursor = request.param("cursor")
        if cursor == "expired":
            return FakeResponse.json({"error": "invalid_cursor"}, 400)
        page = 2 if cursor == "c2" else 1
        rows = [{"id": f"i{page}", "updated_at": f"2024-05-0{page}T00:00:00Z"}]
        return FakeResponse.json({"items": rows, "next": "c2" if page == 1 else ""})

    server.add_route("GET", "/items", listing)
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/items",
            "method": "GET",
            "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
            "pagination": {
                "type": "cursor",
                "nextPath": "$.next",
                "nextParam": "cursor",
                "pageSize": 1,
            },
        },
        items_path="$.items",
    )
    stale = ResumePosition(
        "2024-04-01T00:00:00.000Z", "2024-05-09T00:00:00.000Z", PageRequest({"cursor": "expired"})
    ).encode()
    pages = await run(descriptor, client, config={"baseUrl": server.base_url}, checkpoint=stale)
    assert [r.param("cursor") for r in server.requests_to("/items")] == ["expired", None, "c2"]
    assert ids(pages) == ["i1", "i2"]
    assert pages[-1].checkpoint == "2024-05-02T00:00:00.000Z"


@pytest.mark.parametrize(
    "checkpoint",
    ["resume:", "resume:[]", 'resume:{"checkpoint":1}', 'resume:{"next":{"params":{"a":1}}}'],
)
async def test_a_malformed_resume_checkpoint_is_refused_before_any_request(
    server: FakeServer, client: httpx.AsyncClient, checkpoint: str
) -> None:
    with pytest.raises(CheckpointInvalid, match="resume checkpoint"):
        await run(github_descriptor(), client, config=github_config(server), checkpoint=checkpoint)
    assert server.requests == []


async def test_a_next_link_to_another_host_is_refused(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    elsewhere = f"http://localhost:{server.port}/repos/octo/hello/issues?page=2"
    server.add_route(
        "GET",
        "/repos/{owner}/{repo}/issues",
        lambda _: FakeResponse.json([], headers={"Link": f'<{elsewhere}>; rel="next"'}),
    )
    with pytest.raises(MalformedResponse, match="away from the endpoint's origin"):
        await run(github_descriptor(), client, config=github_config(server))
    assert len(server.requests) == 1


async def test_the_rate_gate_paces_pages_to_the_descriptors_rpm(
    server: FakeServer, github: GitHubIssues, client: httpx.AsyncClient
) -> None:
    clock = [0.0]

    async def sleep(seconds: float) -> None:
        clock[0] += seconds

    gate = TokenBucketGate(6, clock=lambda: clock[0], sleep=sleep)  # 1 request / 10 s, no burst
    pages = await run(
        github_descriptor(),
        client,
        config=github_config(server),
        auth=github_auth(github),
        rate_gate=gate,
    )
    assert [page.gate_wait_seconds for page in pages] == [0.0, 10.0, 10.0]


# --------------------------------------------------------------------------- Notion


async def test_notion_cursor_travels_in_the_post_body_until_has_more_is_false(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    pages_of_results = [[{"id": "a"}, {"id": "b"}], [{"id": "c"}, {"id": "d"}], [{"id": "e"}]]

    def query(request: FakeRequest) -> dict[str, Any]:
        body = request.json()
        index = {None: 0, "cur-1": 1, "cur-2": 2}[body["start_cursor"]]
        more = index < 2
        return {
            "object": "list",
            "results": [
                {**r, "last_edited_time": "2024-05-09T10:00:00.000Z"}
                for r in pages_of_results[index]
            ],
            "next_cursor": f"cur-{index + 1}" if more else None,
            "has_more": more,
        }

    server.add_route("POST", "/v1/databases/{db}/query", query)
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/v1/databases/{{config.databaseId}}/query",
            "method": "POST",
            "body": {
                "filter": {
                    "timestamp": "last_edited_time",
                    "last_edited_time": {"on_or_after": "{{checkpoint}}"},
                },
                "sorts": [{"timestamp": "last_edited_time", "direction": "ascending"}],
                "page_size": "{{pageSize}}",
                "start_cursor": "{{pageToken}}",
            },
            "delta": {"type": "timestamp_filter", "queryParam": None, "format": "iso8601_ms"},
            "pagination": {
                "type": "cursor",
                "nextPath": "$.next_cursor",
                "hasMorePath": "$.has_more",
                "pageSize": 2,
            },
        },
        items_path="$.results",
        timestamp_path="$.last_edited_time",
        auth={
            "method": "pat",
            "config": {
                "delivery": "bearer",
                "paramName": "Authorization",
                "credentialFields": [
                    {"key": "token", "label": "t", "type": "password", "required": True}
                ],
                "extraHeaders": {"Notion-Version": "2022-06-28"},
            },
        },
        config_fields=[{"key": "databaseId", "label": "Database"}],
    )
    pages = await run(
        descriptor,
        client,
        config={"baseUrl": server.base_url, "databaseId": "d9824bdc"},
        checkpoint="2024-05-09T09:00:00.000Z",
        auth=StaticAuth(
            headers={"Authorization": "Bearer ntn_x"}, defaults={"Notion-Version": "2022-06-28"}
        ),
    )
    assert ids(pages) == ["a", "b", "c", "d", "e"]
    bodies = [r.json() for r in server.requests_to("/v1/databases/{db}/query")]
    assert [b["start_cursor"] for b in bodies] == [None, "cur-1", "cur-2"]
    assert bodies[0]["page_size"] == 2  # a typed number, not "2"
    assert bodies[0]["filter"]["last_edited_time"]["on_or_after"] == "2024-05-09T08:59:00.000Z"
    assert server.requests[0].headers["content-type"] == "application/json"


# --------------------------------------------------------------------------- GitLab


async def test_gitlab_next_page_and_total_come_from_response_headers(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    """GitLab offset pagination (https://docs.gitlab.com/api/rest/#other-pagination-headers):
    ``X-Next-Page`` names the next page and is blank on the last; the body is a bare array."""
    issues = [{"id": n, "updated_at": f"2024-05-10T10:0{n}:00Z"} for n in range(1, 6)]

    def listing(request: FakeRequest) -> FakeResponse:
        page = int(request.param("page") or "1")
        per_page = int(request.param("per_page") or "20")
        chunk = issues[(page - 1) * per_page : page * per_page]
        more = page * per_page < len(issues)
        return FakeResponse.json(
            chunk,
            headers={
                "X-Page": str(page),
                "X-Next-Page": str(page + 1) if more else "",
                "X-Total": str(len(issues)),
            },
        )

    server.route("GET", "/projects/group/project/issues")(listing)  # the kit routes decoded paths
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/projects/group%2Fproject/issues",
            "method": "GET",
            "delta": {
                "type": "timestamp_filter",
                "queryParam": "updated_after",
                "format": "iso8601",
            },
            "pagination": {
                "type": "page_number",
                "nextParam": "page",
                "nextHeader": "X-Next-Page",
                "pageSize": 2,
                "pageSizeParam": "per_page",
            },
        }
    )
    pages = await run(descriptor, client, config={"baseUrl": server.base_url})
    assert ids(pages) == [1, 2, 3, 4, 5]
    assert [r.param("page") for r in server.requests] == ["1", "2", "3"]
    assert all("/projects/group%2Fproject/issues?" in r.target for r in server.requests)


def test_next_header_is_checked_against_the_pagination_type() -> None:
    from ucf.core.validation import validate_descriptor

    data = generic(
        {
            "endpoint": "{{baseUrl}}/x",
            "method": "GET",
            "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
            "pagination": {
                "type": "cursor",
                "nextHeader": "X-Next",
                "nextParam": "c",
                "pageSize": 5,
            },
        }
    ).to_json()
    assert validate_descriptor(data)[1] == []
    data["ingestion"]["pagination"]["type"] = "link_header"
    data["ingestion"]["pagination"]["nextPath"] = "$.next"
    paths = {p.path for p in validate_descriptor(data)[1]}
    assert "ingestion.pagination.nextHeader" in paths


# --------------------------------------------------------------------------- Slack


async def test_slack_cursor_ends_on_an_empty_string(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    cursors = {None: ("", "c1"), "c1": ("", "c2"), "c2": ("", "")}

    def history(request: FakeRequest) -> dict[str, Any]:
        cursor = request.param("cursor")
        position = [None, "c1", "c2"].index(cursor)
        return {
            "ok": True,
            "messages": [{"ts": f"1715335200.00000{position}", "text": "hi"}],
            "has_more": True,  # Slack's flag is not trusted here: the cursor decides
            "pin_count": 0,
            "response_metadata": {"next_cursor": cursors[cursor][1]},
        }

    server.add_route("GET", "/api/conversations.history", history)
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/api/conversations.history",
            "method": "GET",
            "query": {"channel": "{{config.channel}}"},
            "delta": {
                "type": "timestamp_filter",
                "queryParam": "oldest",
                "format": "slack_ts",
                "overlapSeconds": 0,
            },
            "pagination": {
                "type": "cursor",
                "nextPath": "$.response_metadata.next_cursor",
                "nextParam": "cursor",
                "pageSize": 1,
                "pageSizeParam": "limit",
            },
        },
        items_path="$.messages",
        timestamp_path="$.ts",
        timestamp_format="slack_ts",
        config_fields=[{"key": "channel", "label": "Channel"}],
    )
    pages = await run(
        descriptor,
        client,
        config={"baseUrl": server.base_url, "channel": "C024BE91L"},
        checkpoint="2024-05-10T10:00:00.000Z",
    )
    sent = server.requests_to("/api/conversations.history")
    assert [r.param("cursor") for r in sent] == [None, "c1", "c2"]
    assert sent[0].query == {
        "channel": ["C024BE91L"],
        "limit": ["1"],
        "oldest": ["1715335200.000000"],
    }
    assert len(pages) == 3
    assert pages[-1].checkpoint == "2024-05-10T10:00:00.000Z"  # ts …002 is sub-ms, floor keeps it


# --------------------------------------------------------------------------- PagerDuty


def pagerduty(server: FakeServer, *, cap: int) -> None:
    incidents = [
        {
            "id": f"P{n}",
            "updated_at": f"2024-05-0{n}T00:00:00Z",
            "created_at": "2024-05-01T00:00:00Z",
        }
        for n in range(1, 6)
    ]

    def handler(request: FakeRequest) -> dict[str, Any]:
        offset = int(request.param("offset", "0") or 0)
        limit = min(int(request.param("limit", "25") or 25), cap)  # the API may cap the size
        chunk = incidents[offset : offset + limit]
        return {
            "incidents": chunk,
            "limit": limit,
            "offset": offset,
            "more": offset + limit < len(incidents),
            "total": None,
        }

    server.add_route("GET", "/incidents", handler)


def pagerduty_descriptor(page_size: int) -> ConnectorDescriptor:
    return generic(
        {
            "endpoint": "{{baseUrl}}/incidents",
            "method": "GET",
            "query": {"sort_by": "created_at:asc"},
            "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
            "pagination": {
                "type": "offset",
                "nextParam": "offset",
                "pageSizeParam": "limit",
                "hasMorePath": "$.more",
                "totalPath": "$.total",
                "pageSize": page_size,
            },
        },
        items_path="$.incidents",
    )


async def test_pagerduty_offsets_advance_by_items_received_until_more_is_false(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    pagerduty(server, cap=2)
    pages = await run(pagerduty_descriptor(3), client, config={"baseUrl": server.base_url})
    # We asked for 3, the API gave 2 per page and said "more": the flag wins over page size.
    assert [r.param("offset") for r in server.requests_to("/incidents")] == ["0", "2", "4"]
    assert ids(pages) == ["P1", "P2", "P3", "P4", "P5"]


# --------------------------------------------------------------------------- Confluence


async def test_confluence_relative_next_link_is_joined_under_links_base(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    def search(request: FakeRequest) -> dict[str, Any]:
        cursor = request.param("cursor")
        links: dict[str, str] = {"base": request.url_for("/wiki"), "context": "/wiki"}
        if cursor is None:
            links["next"] = "/rest/api/content/search?cql=type%3Dpage&limit=1&cursor=raNDoM"
            results = [{"id": "101", "version": {"when": "2024-05-09T10:00:00.000Z"}}]
        else:
            results = [{"id": "102", "version": {"when": "2024-05-09T11:00:00.000Z"}}]
        return {"results": results, "start": 0, "limit": 1, "size": 1, "_links": links}

    server.add_route("GET", "/wiki/rest/api/content/search", search)
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/wiki/rest/api/content/search",
            "method": "GET",
            "query": {"cql": 'space={{config.space}} and lastmodified>="{{checkpoint}}"'},
            "delta": {"type": "timestamp_filter", "queryParam": None, "format": "cql_datetime"},
            "pagination": {
                "type": "next_url",
                "nextPath": "$._links.next",
                "baseUrlPath": "$._links.base",
                "pageSize": 1,
                "pageSizeParam": "limit",
            },
        },
        items_path="$.results",
        timestamp_path="$.version.when",
        config_fields=[{"key": "space", "label": "Space"}],
    )
    pages = await run(
        descriptor,
        client,
        config={"baseUrl": server.base_url, "space": "ENG"},
        checkpoint="2024-05-09T09:30:00.000Z",
    )
    sent = server.requests_to("/wiki/rest/api/content/search")
    assert sent[0].param("cql") == 'space=ENG and lastmodified>="2024/05/09 09:29"'
    assert sent[1].param("cursor") == "raNDoM"  # /wiki kept: base + relative link
    assert ids(pages) == ["101", "102"]


# --------------------------------------------------------------------------- Sentry


async def test_sentry_link_header_stops_when_next_says_results_false(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    def issues(request: FakeRequest) -> FakeResponse:
        offset = int((request.param("cursor") or "0:0:0").split(":")[1])
        more = offset < 200
        base = request.url_for("/api/0/organizations/acme/issues/?")
        link = (
            f'<{base}&cursor=0:{max(offset - 100, 0)}:1>; rel="previous"; results="{str(offset > 0).lower()}"; '
            f'cursor="0:{max(offset - 100, 0)}:1", '
            f'<{base}&cursor=0:{offset + 100}:0>; rel="next"; results="{str(more).lower()}"; '
            f'cursor="0:{offset + 100}:0"'
        )
        body = [{"id": str(offset + 1), "lastSeen": "2024-05-09T10:00:00Z"}]
        return FakeResponse.json(body, headers={"Link": link})

    server.add_route("GET", "/api/0/organizations/acme/issues/", issues)
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/api/0/organizations/acme/issues/",
            "method": "GET",
            "query": {"query": "", "sort": "date"},
            "delta": {"type": "timestamp_filter", "queryParam": "start", "format": "iso8601"},
            "pagination": {"type": "link_header", "pageSize": 100},
        },
        timestamp_path="$.lastSeen",
    )
    pages = await run(descriptor, client, config={"baseUrl": server.base_url})
    sent = server.requests_to("/api/0/organizations/acme/issues/")
    assert [r.param("cursor") for r in sent] == [None, "0:100:0", "0:200:0"]
    assert ids(pages) == ["1", "101", "201"]


# --------------------------------------------------------------------------- Trello


TRELLO_ACTIONS = [
    {"id": "5f1b2c3d4e5f60718293a4b9", "type": "updateCard", "date": "2024-05-09T10:03:00.000Z"},
    {"id": "5f1b2c3d4e5f60718293a4b7", "type": "commentCard", "date": "2024-05-09T10:02:00.000Z"},
    {"id": "5f1b2c3d4e5f60718293a4b5", "type": "createCard", "date": "2024-05-09T10:01:00.000Z"},
]


def trello_descriptor() -> ConnectorDescriptor:
    return generic(
        {
            "endpoint": "{{baseUrl}}/1/boards/{{config.boardId}}/actions",
            "method": "GET",
            "query": {"limit": "1000", "filter": "createCard,updateCard,commentCard"},
            "delta": {"type": "since_id", "idPath": "$.id", "idParam": "since"},
        },
        timestamp_path="$.date",
        config_fields=[{"key": "boardId", "label": "Board"}],
    )


async def test_trello_since_id_asks_for_actions_after_the_highest_id_seen(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    actions = list(TRELLO_ACTIONS)

    def handler(request: FakeRequest) -> list[dict[str, Any]]:
        since = request.param("since")
        return [a for a in actions if since is None or a["id"] > since]  # newest first

    server.add_route("GET", "/1/boards/{board}/actions", handler)
    config = {"baseUrl": server.base_url, "boardId": "5f1b0000"}
    trello_auth = StaticAuth(params={"key": "trello-key-1234", "token": "trello-token-5678"})
    first = await run(trello_descriptor(), client, config=config, auth=trello_auth)
    assert first[-1].checkpoint == "5f1b2c3d4e5f60718293a4b9"
    assert "trello-token-5678" not in first[-1].request_url  # logged URLs are redacted

    actions.insert(
        0,
        {
            "id": "5f1b2c3d4e5f60718293a4c1",
            "type": "updateCard",
            "date": "2024-05-09T11:00:00.000Z",
        },
    )
    second = await run(
        trello_descriptor(),
        client,
        config=config,
        auth=trello_auth,
        checkpoint=first[-1].checkpoint,
    )
    assert server.requests[-1].param("since") == "5f1b2c3d4e5f60718293a4b9"
    assert ids(second) == ["5f1b2c3d4e5f60718293a4c1"]
    assert second[-1].checkpoint == "5f1b2c3d4e5f60718293a4c1"


def test_numeric_since_ids_compare_as_numbers_not_text() -> None:
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/events",
            "method": "GET",
            "delta": {
                "type": "since_id",
                "idPath": "$.id",
                "idParam": "since_id",
                "order": "numeric",
            },
        }
    )
    polling = connector_view(descriptor).polling  # what a poll runs on
    assert polling is not None
    assert isinstance(polling.delta, SinceIdView)
    delta = SinceId(polling.delta, "9")
    delta.update_state(None, [{"id": 10}, {"id": 100}, {"id": 99}])
    assert delta.checkpoint(complete=True) == "100"
    assert delta.checkpoint(complete=False) == "9"
    request = PageRequest()
    delta.init_request(request)
    assert request.defaults == {"since_id": "9"}


# --------------------------------------------------------------------------- Microsoft Graph


async def test_graph_delta_link_is_stored_only_from_the_last_page_and_called_next_time(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    def delta(request: FakeRequest) -> dict[str, Any]:
        base = request.url_for("/v1.0/me/mailFolders/inbox/messages/delta")
        token = request.param("$deltatoken")
        if token == "round-1":
            return {
                "value": [{"id": "m3", "receivedDateTime": "2024-05-10T09:00:00Z"}],
                "@odata.deltaLink": f"{base}?$deltatoken=round-2",
            }
        if request.param("$skiptoken") is None:
            return {
                "value": [{"id": "m1", "receivedDateTime": "2024-05-09T09:00:00Z"}],
                "@odata.nextLink": f"{base}?$skiptoken=s1",
            }
        return {
            "value": [{"id": "m2", "receivedDateTime": "2024-05-09T10:00:00Z"}],
            "@odata.deltaLink": f"{base}?$deltatoken=round-1",
        }

    server.add_route("GET", "/v1.0/me/mailFolders/inbox/messages/delta", delta)
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/v1.0/me/mailFolders/inbox/messages/delta",
            "method": "GET",
            "headers": {"Prefer": "odata.maxpagesize=1"},
            "delta": {
                "type": "delta_token",
                "tokenPath": "$['@odata.deltaLink']",
                "tokenParam": "$deltatoken",
                "tokenIsUrl": True,
            },
            "pagination": {"type": "next_url", "nextPath": "$['@odata.nextLink']", "pageSize": 1},
        },
        items_path="$.value",
        timestamp_path="$.receivedDateTime",
    )
    config = {"baseUrl": server.base_url}
    first = await run(descriptor, client, config=config)
    assert ids(first) == ["m1", "m2"]
    delta_link = server.url("/v1.0/me/mailFolders/inbox/messages/delta?$deltatoken=round-1")
    assert [page.checkpoint for page in first] == [None, delta_link]

    second = await run(descriptor, client, config=config, checkpoint=first[-1].checkpoint)
    assert (
        server.requests[-1].target
        == "/v1.0/me/mailFolders/inbox/messages/delta?$deltatoken=round-1"
    )
    assert server.requests[-1].headers["prefer"] == "odata.maxpagesize=1"
    assert ids(second) == ["m3"]
    assert second[-1].checkpoint == server.url(
        "/v1.0/me/mailFolders/inbox/messages/delta?$deltatoken=round-2"
    )


async def test_a_page_without_its_items_path_member_is_an_empty_page(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    """What docs/writing-a-connector.md promises of an ``itemsPath`` that matches nothing:
    the page is empty, not malformed (many APIs leave an empty list out: Gmail's message
    list has no ``messages`` when nothing matches), so the poll ends ``ok`` with no items; a timestamp
    checkpoint holds where it was. (An error body that says so is ``responseErrors``'
    job; a native source that knows its page's shape refuses it instead.)"""
    server.add_route(
        "GET", "/api/conversations.history", lambda request: {"ok": True, "has_more": False}
    )
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/api/conversations.history",
            "method": "GET",
            "delta": {"type": "timestamp_filter", "queryParam": "oldest", "format": "slack_ts"},
            "pagination": {
                "type": "cursor",
                "nextPath": "$.response_metadata.next_cursor",
                "nextParam": "cursor",
                "hasMorePath": "$.has_more",
                "pageSize": 100,
            },
        },
        items_path="$.messages",
        timestamp_path="$.ts",
        timestamp_format="slack_ts",
    )
    stored = "2024-05-10T10:00:00.000Z"
    pages = await run(descriptor, client, config={"baseUrl": server.base_url}, checkpoint=stored)
    assert [(page.items, page.last, page.checkpoint) for page in pages] == [([], True, stored)]


# --------------------------------------------------------------------------- newest-first listings


async def test_newest_first_listing_stops_at_the_checkpoint_and_drops_older_items(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    pulls = [{"id": n, "updated_at": iso(NOW - timedelta(hours=n))} for n in range(1, 9)]

    def handler(request: FakeRequest) -> FakeResponse:
        page = int(request.param("page", "1") or 1)
        chunk = pulls[(page - 1) * 3 : page * 3]
        headers = {}
        if page * 3 < len(pulls):
            headers["Link"] = (
                f'<{request.url_for(f"/repos/o/r/pulls?page={page + 1}")}>; rel="next"'
            )
        return FakeResponse.json(chunk, headers=headers)

    server.add_route("GET", "/repos/o/r/pulls", handler)
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/repos/o/r/pulls",
            "method": "GET",
            "query": {"sort": "updated", "direction": "desc"},
            "delta": {
                "type": "timestamp_filter",
                "queryParam": "since",
                "format": "iso8601",
                "overlapSeconds": 0,
            },
            "clientSideSince": True,
            "stopAtCheckpoint": True,
            "pagination": {"type": "link_header", "pageSize": 3},
        }
    )
    stored = iso_utc(NOW - timedelta(hours=4, minutes=30))
    pages = await run(descriptor, client, config={"baseUrl": server.base_url}, checkpoint=stored)
    assert ids(pages) == [1, 2, 3, 4]  # page 2 reached the checkpoint: no page 3
    assert [page.dropped for page in pages] == [0, 2]
    assert len(server.requests) == 2
    assert pages[-1].checkpoint == iso_utc(NOW - timedelta(hours=1))


# --------------------------------------------------------------------------- page numbers, cursors


async def test_page_numbers_start_where_the_endpoint_says_and_a_short_page_ends(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    monitors = [{"id": n, "modified": "2024-05-09T10:00:00Z"} for n in range(5)]
    server.add_route(
        "GET",
        "/api/v1/monitor",
        lambda r: monitors[int(r.param("page") or 0) * 2 : int(r.param("page") or 0) * 2 + 2],
    )
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/api/v1/monitor",
            "method": "GET",
            "query": {"page": "0"},  # Datadog counts pages from 0
            "delta": {
                "type": "timestamp_filter",
                "queryParam": None,
                "format": "iso8601",
                "overlapSeconds": 0,
            },
            "clientSideSince": True,
            "pagination": {
                "type": "page_number",
                "nextParam": "page",
                "pageSize": 2,
                "pageSizeParam": "page_size",
            },
        },
        timestamp_path="$.modified",
        # Validation wants a queryParam or {{checkpoint}}; a client-side-only filter has
        # neither, so this descriptor is built past the meaning checks.
        validate=False,
    )
    pages = await run(descriptor, client, config={"baseUrl": server.base_url})
    assert [r.param("page") for r in server.requests] == ["0", "1", "2"]
    assert ids(pages) == [0, 1, 2, 3, 4]


async def test_a_cursor_delta_advances_with_every_page(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    def events(request: FakeRequest) -> dict[str, Any]:
        sync = request.param("sync") or "s0"
        n = int(sync[1:])
        return {
            "data": [{"id": f"e{n + 1}", "created_at": "2024-05-09T10:00:00Z"}],
            "sync": f"s{n + 1}",
            "has_more": n < 2,
        }

    server.add_route("GET", "/api/1.0/events", events)
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/api/1.0/events",
            "method": "GET",
            "query": {"resource": "1201"},
            "delta": {"type": "cursor", "cursorPath": "$.sync", "cursorParam": "sync"},
            "pagination": {
                "type": "cursor",
                "nextPath": "$.sync",
                "nextParam": "sync",
                "hasMorePath": "$.has_more",
                "pageSize": 1,
            },
        },
        items_path="$.data",
        timestamp_path="$.created_at",
    )
    pages = await run(descriptor, client, config={"baseUrl": server.base_url}, checkpoint="s0")
    assert [page.checkpoint for page in pages] == ["s1", "s2", "s3"]
    assert [r.param("sync") for r in server.requests] == ["s0", "s1", "s2"]


# --------------------------------------------------------------------------- templates and config


async def test_config_values_are_url_encoded_in_the_endpoint_and_json_escaped_in_text_bodies(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    server.add_route("POST", "/graphql/{team:path}", lambda _: {"data": {"issues": {"nodes": []}}})
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/graphql/{{config.team}}",
            "method": "POST",
            "body": '{"query": "issues(filter: {team: \\"{{config.team}}\\", updatedAt: {gt: \\"{{checkpoint}}\\"}})", "first": {{pageSize}}, "after": "{{pageToken}}"}',
            "delta": {"type": "timestamp_filter", "queryParam": None, "format": "iso8601_ms"},
            "pagination": {
                "type": "cursor",
                "nextPath": "$.data.issues.pageInfo.endCursor",
                "pageSize": 50,
            },
        },
        items_path="$.data.issues.nodes",
        config_fields=[{"key": "team", "label": "Team"}],
    )
    evil = 'a/../b?x=1&y"}'
    await run(
        descriptor,
        client,
        config={"baseUrl": server.base_url, "team": evil},
        checkpoint="2024-05-01T00:00:00.000Z",
    )
    sent = server.requests[0]
    assert sent.target == "/graphql/a%2F..%2Fb%3Fx%3D1%26y%22%7D"
    body = sent.json()
    assert body["first"] == 50
    # The value's quote stayed inside the JSON string: the body still parses, keys intact.
    assert sorted(body) == ["after", "first", "query"]
    assert body["query"] == (
        'issues(filter: {team: "a/../b?x=1&y"}", updatedAt: {gt: "2024-04-30T23:59:00.000Z"}})'
    )


async def test_missing_config_is_refused_before_any_request(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    with pytest.raises(ConfigError, match="owner, repo need a value"):
        await run(github_descriptor(), client, config={"baseUrl": server.base_url})
    with pytest.raises(ConfigError, match="unknown config field"):
        await run(github_descriptor(), client, config={**github_config(server), "ownr": "x"})
    # A setting renamed since (ownr for owner): both halves of the repair at once.
    renamed = {"baseUrl": server.base_url, "ownr": "x", "repo": "r"}
    with pytest.raises(ConfigError) as caught:
        await run(github_descriptor(), client, config=renamed)
    assert str(caught.value) == (
        "unknown config field(s) ownr (known: baseUrl, owner, repo, signInUrl);"
        " config field(s) owner need a value"
    )
    with pytest.raises(ConfigError, match="not an absolute http"):
        await run(
            github_descriptor(), client, config={**github_config(server), "baseUrl": "file:///etc"}
        )
    assert server.requests == []


@pytest.mark.parametrize(
    ("team", "why"),
    [
        ("Zürich", "printable ASCII"),
        ("a\u200bb", "printable ASCII"),
        ("a\r\nX-Evil: 1", "line break"),
    ],
)
async def test_a_header_value_a_header_cannot_carry_is_refused_before_any_request(
    server: FakeServer, client: httpx.AsyncClient, team: str, why: str
) -> None:
    """httpx cannot encode a non-ASCII header value (UnicodeEncodeError: a poll that
    failed 'inside ucf'); a config error names the header instead."""
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/items",
            "method": "GET",
            "headers": {"X-Team": "{{config.team}}"},
            "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
        },
        config_fields=[{"key": "team", "label": "Team"}],
    )
    with pytest.raises(ConfigError, match=f"header X-Team .*{why}"):
        await run(descriptor, client, config={"baseUrl": server.base_url, "team": team})
    assert server.requests == []


@pytest.mark.parametrize("checkpoint", ["yesterday", "0001-01-01T00:00:00Z"])
async def test_an_unreadable_checkpoint_is_refused_before_any_request(
    server: FakeServer, client: httpx.AsyncClient, checkpoint: str
) -> None:
    """The first year's first second is a timestamp, but the overlap before it is not one
    datetime can hold: that was an OverflowError, a crash inside ucf (``ucf poll --checkpoint``)."""
    with pytest.raises(CheckpointInvalid, match="not a timestamp"):
        await run(github_descriptor(), client, config=github_config(server), checkpoint=checkpoint)
    assert server.requests == []


# --------------------------------------------------------------------------- hostile upstreams


def next_url_descriptor(*, sorted_ascending: bool = False) -> ConnectorDescriptor:
    """A Microsoft Graph-shaped listing: ``@odata.nextLink`` in the body, a timestamp filter."""
    return generic(
        {
            "endpoint": "{{baseUrl}}/items",
            "method": "GET",
            "delta": {
                "type": "timestamp_filter",
                "queryParam": "since",
                "format": "iso8601",
                "sortedAscending": sorted_ascending,
            },
            "pagination": {"type": "next_url", "nextPath": "$.next", "pageSize": 1},
        },
        items_path="$.value",
    )


async def collect(
    descriptor: ConnectorDescriptor,
    client: httpx.AsyncClient,
    server: FakeServer,
    *,
    checkpoint: str | None = None,
) -> tuple[list[Page], BaseException | None]:
    """The pages a poll yields before it fails, and what it failed with."""
    plan = PollPlan.compile(descriptor)
    pages: list[Page] = []
    try:
        async for page in plan.pages(
            client,
            NO_AUTH,
            config={"baseUrl": server.base_url},
            checkpoint=checkpoint,
            now=NOW,
            settings=SETTINGS,
            sleep=Sleeps(),
        ):
            pages.append(page)
    except Exception as error:  # the test asserts on its type
        return pages, error
    return pages, None


@pytest.mark.parametrize("cycle", [1, 2], ids=["next-is-itself", "a-b-a"])
async def test_a_next_link_back_to_a_page_already_read_fails_the_poll_clearly(
    server: FakeServer, client: httpx.AsyncClient, cycle: int
) -> None:
    """Without the loop check the same page(s) were read until maxPages (100), and the
    truncated listing stored a resume position into the loop: every later poll
    walked the same cycle again and the checkpoint never moved."""

    answered = iter(range(1000))

    def listing(request: FakeRequest) -> dict[str, Any]:
        page = int(request.param("p") or "0")
        following = (page + 1) % cycle
        item = f"i{page}-{next(answered)}"  # a listing that changes meanwhile: pages differ
        return {
            "value": [{"id": item, "updated_at": "2024-05-10T10:00:00Z"}],
            "next": request.url_for(f"/items?p={following}"),
        }

    server.add_route("GET", "/items", listing)
    pages, error = await collect(next_url_descriptor(), client, server)
    assert isinstance(error, MalformedResponse)
    assert "pagination loops" in str(error)
    assert str(error).endswith("; stopped there")  # Try and ucf poll store nothing
    assert len(server.requests) == cycle + 1  # each page once, then the link back
    assert [page.number for page in pages] == list(range(1, cycle + 2))
    assert not any(page.last for page in pages)  # no page claimed the listing complete


async def test_a_cursor_cycling_between_two_values_fails_the_poll_clearly(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    """The cursor paginator only ends on a cursor equal to the *previous* one; A, B, A…
    went on to maxPages."""

    def listing(request: FakeRequest) -> dict[str, Any]:
        cursor = request.param("cursor") or ""
        return {
            "value": [{"id": f"c{cursor}", "updated_at": "2024-05-10T10:00:00Z"}],
            "next_cursor": "B" if cursor == "A" else "A",
        }

    server.add_route("GET", "/items", listing)
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/items",
            "method": "GET",
            "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
            "pagination": {
                "type": "cursor",
                "nextPath": "$.next_cursor",
                "nextParam": "cursor",
                "pageSize": 1,
            },
        },
        items_path="$.value",
    )
    pages, error = await collect(descriptor, client, server)
    assert isinstance(error, MalformedResponse), error
    assert [r.param("cursor") for r in server.requests] == [None, "A", "B"]
    assert len(pages) == 3


@pytest.mark.parametrize(
    "link",
    ["/items?p=\u0000", "//[::1/items"],
    ids=["control-character", "bad-ipv6-host"],
)
async def test_a_next_link_no_parser_reads_is_a_malformed_response(
    server: FakeServer, client: httpx.AsyncClient, link: str
) -> None:
    """httpx.InvalidURL and urljoin's ValueError escaped the engine as a crash inside ucf
    (neither is an UpstreamError, so the poll use case did not turn them into health)."""
    server.add_route(
        "GET",
        "/items",
        lambda _: {"value": [{"id": 1, "updated_at": "2024-05-10T10:00:00Z"}], "next": link},
    )
    pages, error = await collect(next_url_descriptor(), client, server)
    assert isinstance(error, MalformedResponse), error
    assert "is not a URL" in str(error)
    assert pages == []  # the page naming the bad link is not claimed complete


async def test_a_link_header_no_parser_reads_is_a_malformed_response(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    server.add_route(
        "GET",
        "/repos/{owner}/{repo}/issues",
        lambda _: FakeResponse.json([], headers={"Link": '<http://[oops/x>; rel="next"'}),
    )
    with pytest.raises(MalformedResponse, match="is not a URL"):
        await run(github_descriptor(), client, config=github_config(server))


@pytest.mark.parametrize("total", ["\u00b2", "9" * 5000], ids=["superscript", "5000-digits"])
async def test_a_total_no_integer_reads_is_ignored_not_a_crash(
    server: FakeServer, client: httpx.AsyncClient, total: str
) -> None:
    """``"²".isdigit()`` is True and ``int("²")`` a ValueError; so is ``int`` of 5,000
    digits. A total the API garbles is ignored: the page size decides, as with none."""
    incidents = [{"id": f"P{n}", "updated_at": "2024-05-10T10:00:00Z"} for n in range(3)]

    def handler(request: FakeRequest) -> dict[str, Any]:
        offset = int(request.param("offset") or "0")
        return {"incidents": incidents[offset : offset + 2], "total": total}

    server.add_route("GET", "/incidents", handler)
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/incidents",
            "method": "GET",
            "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
            "pagination": {
                "type": "offset",
                "nextParam": "offset",
                "pageSizeParam": "limit",
                "totalPath": "$.total",
                "pageSize": 2,
            },
        },
        items_path="$.incidents",
    )
    pages = await run(descriptor, client, config={"baseUrl": server.base_url})
    assert ids(pages) == ["P0", "P1", "P2"]
    assert [r.param("offset") for r in server.requests] == ["0", "2"]


async def test_a_resume_offset_no_integer_reads_is_not_a_crash(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    """A resume checkpoint (stored, or given to ``ucf poll --checkpoint``) with the offset
    ``--3`` passed ``lstrip("-").isdigit()`` and crashed in ``int``; it is now sent as
    is, and the listing starts over from its top when the API refuses it."""

    def strict(request: FakeRequest) -> FakeResponse:
        offset = request.param("offset") or "0"
        if not offset.isdigit():
            return FakeResponse.json({"error": {"message": "Invalid offset"}}, 400)
        return FakeResponse.json({"incidents": [], "more": False, "total": None})

    server.add_route("GET", "/incidents", strict)
    position = ResumePosition(None, None, PageRequest(params={"offset": "--3"})).encode()
    pages = await run(
        pagerduty_descriptor(2), client, config={"baseUrl": server.base_url}, checkpoint=position
    )
    assert [r.param("offset") for r in server.requests] == ["--3", "0"]
    assert pages[-1].last


def _newest_first_actions() -> ConnectorDescriptor:
    """``GET /actions``: a newest-first since-id listing in cursor pages of two."""
    return generic(
        {
            "endpoint": "{{baseUrl}}/actions",
            "method": "GET",
            "delta": {"type": "since_id", "idParam": "since", "idPath": "$.id", "order": "numeric"},
            "pagination": {
                "type": "cursor",
                "nextPath": "$.next",
                "nextParam": "cursor",
                "pageSize": 2,
            },
        },
        items_path="$.data",
    )


async def test_a_stuck_cursor_is_an_error_not_the_end_of_a_newest_first_listing(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    """A cursor equal to the previous one used to end the listing as complete: a
    newest-first since-id listing then stored the highest id of page 1 while older new
    items sat on pages it never read, and the next poll asked past them for good."""

    def actions(request: FakeRequest) -> dict[str, Any]:
        cursor = request.param("cursor")
        page = [{"id": "30"}, {"id": "29"}] if cursor is None else [{"id": "28"}, {"id": "27"}]
        return {"data": page, "next": "stuck"}  # the API never moves past page 2

    server.add_route("GET", "/actions", actions)
    pages, error = await collect(_newest_first_actions(), client, server, checkpoint="10")
    assert isinstance(error, MalformedResponse), error
    assert [page.checkpoint for page in pages] == ["10", "10"]  # never past unread pages


async def test_an_api_that_ignores_the_offset_fails_the_poll_instead_of_reading_page_one_forever(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    """Every request differs (offset 0, 2, 4, …) so no request repeats, but the answer
    does: the poll read page 1 until maxPages, stored a resume position, and every later
    poll did the same again, never completing."""
    page = [{"id": "P1", "updated_at": "2024-05-10T10:00:00Z"}, {"id": "P2"}]
    server.add_route("GET", "/incidents", lambda _: {"incidents": page, "more": True})
    pages, error = await collect(pagerduty_descriptor(2), client, server)
    assert isinstance(error, MalformedResponse), error
    assert "does the API ignore the 'offset' parameter?" in str(error)
    # Said of Try it and ucf poll too, which store nothing (it said the pages were stored).
    assert str(error).endswith("; stopped there")
    assert [r.param("offset") for r in server.requests] == ["0", "2"]
    assert len(pages) == 1


async def test_a_next_page_header_naming_the_same_page_is_an_error_not_the_end(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    """``X-Next-Page`` equal to the page just read ended the listing as complete, which
    for an unsorted timestamp filter stored the newest time seen past unread pages."""
    issues = [{"id": 2, "updated_at": "2024-05-10T10:02:00Z"}]
    server.route("GET", "/issues")(
        lambda request: FakeResponse.json(
            issues, headers={"X-Next-Page": request.param("page") or "1"}
        )
    )
    descriptor = generic(
        {
            "endpoint": "{{baseUrl}}/issues",
            "method": "GET",
            "delta": {
                "type": "timestamp_filter",
                "queryParam": "updated_after",
                "format": "iso8601",
            },
            "pagination": {
                "type": "page_number",
                "nextParam": "page",
                "nextHeader": "X-Next-Page",
                "pageSize": 1,
                "pageSizeParam": "per_page",
            },
        }
    )
    stored = "2024-05-10T09:00:00.000Z"
    pages, error = await collect(descriptor, client, server, checkpoint=stored)
    assert isinstance(error, MalformedResponse), error
    assert [page.checkpoint for page in pages] == [stored]
    assert [r.param("page") for r in server.requests] == ["1"]


async def test_an_empty_page_handing_back_its_cursor_is_the_end_not_a_loop(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    """Some APIs say "caught up" by answering the cursor they were asked with and no
    items: that ends the listing (a repeated cursor with items is a loop, above)."""

    def actions(request: FakeRequest) -> dict[str, Any]:
        if request.param("cursor") is None:
            return {"data": [{"id": "30"}, {"id": "29"}], "next": "c1"}
        return {"data": [], "next": "c1"}  # caught up: the same place, nothing new

    server.add_route("GET", "/actions", actions)
    pages, error = await collect(_newest_first_actions(), client, server, checkpoint="10")
    assert error is None
    assert [len(page.items) for page in pages] == [2, 0]
    assert pages[-1].checkpoint == "30"
