"""Failures reported in the body (``responseErrors``), against fakes shaped like Slack and Linear.

Slack's Web API says everything with HTTP 200 and ``{"ok": false, "error": …}``
except throttling (429); Linear's GraphQL says a bad key with HTTP 400 and
``errors[].extensions.code``, and may throttle the same way (Linear's SDK,
``packages/sdk/src/error.ts``). Read by status alone a revoked Slack token is an
empty poll and a healthy check; these tests pin what a user sees instead: an
auth error at once, waits that end in a complete poll, and health that tells
the truth. Sleeps are injected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from ucf.core.descriptor import ConnectorDescriptor, ResponseErrors
from ucf.core.validation import parse_descriptor
from ucf.fakes import FakeRequest, FakeResponse, FakeServer, Fault
from ucf.runtime.auth import build_auth
from ucf.runtime.http import (
    AuthFailed,
    HttpSettings,
    RateLimited,
    UpstreamError,
    UpstreamUnavailable,
    create_client,
)
from ucf.runtime.polling import Page, PollPlan
from ucf.runtime.response_errors import BodyErrorKind, ResponseErrorClassifier
from ucf.runtime.sources import GenericSource, SourceContext, run_health_check
from ucf.runtime.ssrf import EgressPolicy

SETTINGS = HttpSettings(connect_timeout=2, read_timeout=2, max_retries=3, backoff_base=0.01)
NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)

SLACK_TOKEN = "xoxb-1111-2222-GOODgoodGOODgood"
SLACK_BAD_TOKEN = "xoxb-9999-8888-REVOKEDrevokedREV"
LINEAR_KEY = "lin_api_GOODgoodGOODgoodGOODgood0001"
LINEAR_BAD_KEY = "lin_api_WRONGwrongWRONGwrongWRONG0002"


class Sleeps:
    """An injected ``sleep`` that records what the runtime would have waited."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest_asyncio.fixture(loop_scope="function")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with create_client(SETTINGS, EgressPolicy(frozenset({"127.0.0.1"}))) as http:
        yield http


def _descriptor(**parts: Any) -> ConnectorDescriptor:
    return parse_descriptor(
        {
            "name": "Test",
            "description": "test",
            "category": "Custom",
            "icon": "x",
            "kind": "generic",
            "version": "1.0.0",
            **parts,
        }
    )


async def _poll(
    descriptor: ConnectorDescriptor,
    client: httpx.AsyncClient,
    server: FakeServer,
    credentials: dict[str, str],
    sleep: Sleeps | None = None,
    **config: str,
) -> list[Page]:
    auth = build_auth(descriptor.auth, credentials, token_client=client)
    pages = PollPlan.compile(descriptor).pages(
        client,
        auth,
        config={"baseUrl": server.base_url, **config},
        checkpoint=None,
        now=NOW,
        settings=SETTINGS,
        sleep=sleep or Sleeps(),
    )
    return [page async for page in pages]


def _context(
    descriptor: ConnectorDescriptor,
    client: httpx.AsyncClient,
    server: FakeServer,
    credentials: dict[str, str],
    **config: str,
) -> SourceContext:
    auth = build_auth(descriptor.auth, credentials, token_client=client)
    return SourceContext(
        client=client, auth=auth, config={"baseUrl": server.base_url, **config}, settings=SETTINGS
    )


def _ids(pages: list[Page]) -> list[str]:
    return [str(item.get("ts", item.get("id"))) for page in pages for item in page.items]


# --------------------------------------------------------------------------- Slack


SLACK_RESPONSE_ERRORS = {
    "codePath": "$.error",
    "authCodes": ["invalid_auth", "not_authed", "token_revoked", "missing_scope"],
    "rateLimitCodes": ["ratelimited"],
}


def slack_descriptor() -> ConnectorDescriptor:
    return _descriptor(
        id="slack-like",
        auth={
            "method": "api_key",
            "config": {
                "delivery": "bearer",
                "paramName": "Authorization",
                "credentialKey": "token",
                "credentialFields": [
                    {"key": "token", "label": "Bot token", "type": "password", "required": True}
                ],
            },
        },
        configFields=[{"key": "channel", "label": "Channel", "required": True}],
        ingestion={
            "mode": "polling",
            "endpoint": "{{baseUrl}}/conversations.history",
            "method": "GET",
            "query": {"channel": "{{config.channel}}"},
            "delta": {"type": "timestamp_filter", "queryParam": "oldest", "format": "slack_ts"},
            "rateLimitRpm": 6000,
            "pagination": {
                "type": "cursor",
                "nextPath": "$.response_metadata.next_cursor",
                "nextParam": "cursor",
                "pageSize": 2,
                "pageSizeParam": "limit",
            },
        },
        fieldMapping={
            "itemsPath": "$.messages",
            "idPath": "$.ts",
            "timestampPath": "$.ts",
            "timestampFormat": "slack_ts",
            "summaryTemplate": "{{text}}",
            "signalTypeRules": [],
        },
        healthCheck={
            "endpoint": "{{baseUrl}}/auth.test",
            "method": "GET",
            "expectStatus": 200,
            "timeoutMs": 1000,
        },
        responseErrors=SLACK_RESPONSE_ERRORS,
    )


class SlackLike:
    """``conversations.history`` and ``auth.test``: HTTP 200 with an ``ok`` envelope."""

    channel = "C0123456789"

    def __init__(self) -> None:
        base = NOW - timedelta(minutes=30)
        self.messages = [
            {"type": "message", "ts": f"{(base + timedelta(minutes=n)).timestamp():.6f}"}
            for n in range(5)
        ]
        self.server = FakeServer()
        self.server.add_route("GET", "/conversations.history", self._history)
        self.server.add_route(["GET", "POST"], "/auth.test", self._auth_test)

    def _refusal(self, request: FakeRequest) -> FakeResponse | None:
        header = request.headers.get("authorization", "")
        if not header:
            return FakeResponse.json({"ok": False, "error": "not_authed"})
        if header != f"Bearer {SLACK_TOKEN}":
            return FakeResponse.json({"ok": False, "error": "invalid_auth"})
        return None

    def _history(self, request: FakeRequest) -> FakeResponse:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if request.param("channel") != self.channel:
            return FakeResponse.json({"ok": False, "error": "channel_not_found"})
        start = int(request.param("cursor") or 0)
        limit = int(request.param("limit") or 100)
        newest_first = sorted(self.messages, key=lambda m: m["ts"], reverse=True)
        chunk = newest_first[start : start + limit]
        more = start + limit < len(newest_first)
        return FakeResponse.json(
            {
                "ok": True,
                "messages": chunk,
                "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""},
            }
        )

    def _auth_test(self, request: FakeRequest) -> FakeResponse:
        return self._refusal(request) or FakeResponse.json(
            {"ok": True, "team": "Fake", "user": "ucf", "team_id": "T1", "user_id": "U1"}
        )

    def __enter__(self) -> SlackLike:
        self.server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.stop()


@pytest.fixture
def slack() -> Iterator[SlackLike]:
    with SlackLike() as fake:
        yield fake


async def test_slack_revoked_token_answered_with_200_ok_false_stops_the_poll_at_once(
    slack: SlackLike, client: httpx.AsyncClient
) -> None:
    sleeps = Sleeps()
    with pytest.raises(AuthFailed) as caught:
        await _poll(
            slack_descriptor(),
            client,
            slack.server,
            {"token": SLACK_BAD_TOKEN},
            sleeps,
            channel=slack.channel,
        )
    message = str(caught.value)
    assert "credentials rejected (invalid_auth, HTTP 200)" in message
    assert SLACK_BAD_TOKEN not in message
    assert caught.value.status == 200
    assert not caught.value.retryable
    assert len(slack.server.requests) == 1, "a rejected token must not be retried"
    assert sleeps.calls == []


async def test_slack_good_token_still_polls_every_page(
    slack: SlackLike, client: httpx.AsyncClient
) -> None:
    pages = await _poll(
        slack_descriptor(), client, slack.server, {"token": SLACK_TOKEN}, channel=slack.channel
    )
    assert len(pages) == 3
    assert sorted(_ids(pages)) == sorted(m["ts"] for m in slack.messages)


async def test_slack_unknown_channel_fails_the_poll_naming_the_code_without_retrying(
    slack: SlackLike, client: httpx.AsyncClient
) -> None:
    with pytest.raises(UpstreamError) as caught:
        await _poll(
            slack_descriptor(), client, slack.server, {"token": SLACK_TOKEN}, channel="C_GONE"
        )
    assert not isinstance(caught.value, AuthFailed | RateLimited)
    assert "channel_not_found" in str(caught.value)
    assert len(slack.server.requests) == 1


async def test_slack_429_ratelimited_waits_retry_after_then_completes(
    slack: SlackLike, client: httpx.AsyncClient
) -> None:
    slack.server.inject(
        Fault.rate_limited(7, body={"ok": False, "error": "ratelimited"}),
        path="/conversations.history",
        times=1,
    )
    sleeps = Sleeps()
    pages = await _poll(
        slack_descriptor(),
        client,
        slack.server,
        {"token": SLACK_TOKEN},
        sleeps,
        channel=slack.channel,
    )
    assert sleeps.calls == [7.0]
    assert sorted(_ids(pages)) == sorted(m["ts"] for m in slack.messages)
    assert sum(page.rate_limit_waits for page in pages) == 1


async def test_slack_auth_test_health_is_unhealthy_on_200_ok_false_and_says_why(
    slack: SlackLike, client: httpx.AsyncClient
) -> None:
    descriptor = slack_descriptor()
    source = GenericSource(descriptor)
    good = await source.health_check(
        _context(descriptor, client, slack.server, {"token": SLACK_TOKEN}, channel=slack.channel)
    )
    bad = await source.health_check(
        _context(
            descriptor, client, slack.server, {"token": SLACK_BAD_TOKEN}, channel=slack.channel
        )
    )
    assert (good.ok, good.status, good.error, good.failure) == (True, 200, None, None)
    assert (bad.ok, bad.status, bad.failure) == (False, 200, "rejected")
    assert bad.error is not None
    assert "credentials rejected (invalid_auth, HTTP 200)" in bad.error
    assert SLACK_BAD_TOKEN not in bad.error


# --------------------------------------------------------------------------- Linear


LINEAR_HEALTH_QUERY = "{ viewer { id } }"


def linear_descriptor(
    *, ignore_codes: list[str] | None = None, health_body: Any = None
) -> ConnectorDescriptor:
    return _descriptor(
        id="linear-like",
        auth={
            "method": "api_key",
            "config": {
                "delivery": "header",
                "paramName": "Authorization",
                "credentialKey": "apiKey",
                "credentialFields": [
                    {"key": "apiKey", "label": "Key", "type": "password", "required": True}
                ],
            },
        },
        ingestion={
            "mode": "polling",
            "endpoint": "{{baseUrl}}/graphql",
            "method": "POST",
            "body": {
                "query": "query Issues($since: DateTimeOrDuration!, $after: String) { … }",
                "variables": {"since": "{{checkpoint}}", "after": "{{pageToken}}"},
            },
            "delta": {"type": "timestamp_filter", "queryParam": None, "format": "iso8601_ms"},
            "rateLimitRpm": 6000,
            "pagination": {
                "type": "cursor",
                "nextPath": "$.data.issues.pageInfo.endCursor",
                "hasMorePath": "$.data.issues.pageInfo.hasNextPage",
                "pageSize": 2,
            },
        },
        fieldMapping={
            "itemsPath": "$.data.issues.nodes",
            "idPath": "$.id",
            "timestampPath": "$.updatedAt",
            "summaryTemplate": "{{title}}",
            "signalTypeRules": [],
        },
        healthCheck={
            "endpoint": "{{baseUrl}}/graphql",
            "method": "POST",
            "body": health_body if health_body is not None else {"query": LINEAR_HEALTH_QUERY},
            "expectStatus": 200,
            "timeoutMs": 1000,
        },
        responseErrors={
            "codePath": "$.errors[*].extensions.code",
            "authCodes": ["AUTHENTICATION_ERROR", "FORBIDDEN"],
            "rateLimitCodes": ["RATELIMITED"],
            "ignoreCodes": ignore_codes or [],
        },
    )


def _graphql_error(code: str, message: str, **extensions: Any) -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code, "userError": True, **extensions}}


class LinearLike:
    """``POST /graphql``: 400 with ``AUTHENTICATION_ERROR`` for a wrong key, Relay paging."""

    def __init__(self) -> None:
        self.issues = [
            {
                "id": f"issue-{n}",
                "title": f"Issue {n}",
                "updatedAt": (NOW - timedelta(minutes=30 - n)).isoformat(timespec="milliseconds"),
            }
            for n in range(3)
        ]
        self.partial_error: dict[str, Any] | None = None
        self.server = FakeServer()
        self.server.add_route("POST", "/graphql", self._graphql)

    def _graphql(self, request: FakeRequest) -> FakeResponse:
        if request.headers.get("authorization") != LINEAR_KEY:
            error = _graphql_error(
                "AUTHENTICATION_ERROR",
                "Authentication required, not authenticated",
                type="authentication error",
            )
            return FakeResponse.json({"errors": [error]}, 400)
        try:
            query = request.json()["query"]
        except (ValueError, KeyError, TypeError):
            return FakeResponse.json({"errors": [{"message": "Must provide query string."}]}, 400)
        if "viewer" in query:
            return FakeResponse.json({"data": {"viewer": {"id": "user-1"}}})
        start = int(request.json()["variables"].get("after") or 0)
        chunk = self.issues[start : start + 2]
        more = start + 2 < len(self.issues)
        body: dict[str, Any] = {
            "data": {
                "issues": {
                    "nodes": chunk,
                    "pageInfo": {"hasNextPage": more, "endCursor": str(start + 2)},
                }
            }
        }
        if self.partial_error is not None:
            body["errors"] = [self.partial_error]
        return FakeResponse.json(body)

    def rate_limit_fault(self, retry_after: int) -> Fault:
        error = _graphql_error("RATELIMITED", "Rate limit exceeded", type="ratelimited")
        return Fault.rate_limited(
            retry_after,
            status=400,
            headers={"X-RateLimit-Requests-Remaining": "0"},
            body={"errors": [error]},
        )

    def __enter__(self) -> LinearLike:
        self.server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.stop()


@pytest.fixture
def linear() -> Iterator[LinearLike]:
    with LinearLike() as fake:
        yield fake


async def test_linear_wrong_key_answered_with_400_is_an_auth_failure_not_retried(
    linear: LinearLike, client: httpx.AsyncClient
) -> None:
    sleeps = Sleeps()
    with pytest.raises(AuthFailed) as caught:
        await _poll(linear_descriptor(), client, linear.server, {"apiKey": LINEAR_BAD_KEY}, sleeps)
    message = str(caught.value)
    assert "credentials rejected (AUTHENTICATION_ERROR, HTTP 400)" in message
    assert LINEAR_BAD_KEY not in message
    assert len(linear.server.requests) == 1
    assert sleeps.calls == []


async def test_linear_ratelimited_400_is_retried_after_the_wait_and_the_poll_completes(
    linear: LinearLike, client: httpx.AsyncClient
) -> None:
    linear.server.inject(linear.rate_limit_fault(retry_after=4), path="/graphql", times=2)
    sleeps = Sleeps()
    pages = await _poll(linear_descriptor(), client, linear.server, {"apiKey": LINEAR_KEY}, sleeps)
    assert sleeps.calls == [4.0, 4.0]
    assert _ids(pages) == [issue["id"] for issue in linear.issues]
    assert pages[0].rate_limit_waits == 2


async def test_linear_rate_limit_that_never_lifts_ends_as_rate_limited(
    linear: LinearLike, client: httpx.AsyncClient
) -> None:
    linear.server.inject(linear.rate_limit_fault(retry_after=1), path="/graphql", times=10)
    with pytest.raises(RateLimited) as caught:
        await _poll(linear_descriptor(), client, linear.server, {"apiKey": LINEAR_KEY})
    assert "RATELIMITED" in str(caught.value)
    assert len(linear.server.requests) == SETTINGS.max_retries + 1


async def test_linear_partial_error_with_an_ignored_code_still_delivers_the_page(
    linear: LinearLike, client: httpx.AsyncClient
) -> None:
    linear.partial_error = _graphql_error("ENTITY_NOT_FOUND", "Cycle not found")
    descriptor = linear_descriptor(ignore_codes=["ENTITY_NOT_FOUND"])
    pages = await _poll(descriptor, client, linear.server, {"apiKey": LINEAR_KEY})
    assert _ids(pages) == [issue["id"] for issue in linear.issues]


async def test_linear_partial_error_with_an_unlisted_code_fails_the_poll_naming_it(
    linear: LinearLike, client: httpx.AsyncClient
) -> None:
    linear.partial_error = _graphql_error("ENTITY_NOT_FOUND", "Cycle not found")
    with pytest.raises(UpstreamError) as caught:
        await _poll(linear_descriptor(), client, linear.server, {"apiKey": LINEAR_KEY})
    assert not isinstance(caught.value, AuthFailed | RateLimited)
    assert "upstream error (ENTITY_NOT_FOUND, HTTP 200)" in str(caught.value)
    assert len(linear.server.requests) == 1


async def test_a_server_error_stays_retryable_whatever_code_its_body_carries(
    linear: LinearLike, client: httpx.AsyncClient
) -> None:
    linear.server.inject(
        Fault.status(503, body={"errors": [_graphql_error("INTERNAL_SERVER_ERROR", "boom")]}),
        path="/graphql",
        times=1,
    )
    sleeps = Sleeps()
    pages = await _poll(linear_descriptor(), client, linear.server, {"apiKey": LINEAR_KEY}, sleeps)
    assert len(sleeps.calls) == 1
    assert _ids(pages) == [issue["id"] for issue in linear.issues]


async def test_linear_post_health_check_sends_its_graphql_body_as_json(
    linear: LinearLike, client: httpx.AsyncClient
) -> None:
    descriptor = linear_descriptor()
    result = await run_health_check(
        descriptor, _context(descriptor, client, linear.server, {"apiKey": LINEAR_KEY})
    )
    assert (result.ok, result.status, result.error) == (True, 200, None)
    sent = linear.server.requests_to("/graphql")
    assert len(sent) == 1
    assert sent[0].method == "POST"
    assert sent[0].headers["content-type"] == "application/json"
    assert sent[0].json() == {"query": LINEAR_HEALTH_QUERY}


async def test_linear_health_check_body_templates_are_rendered_and_json_escaped(
    linear: LinearLike, client: httpx.AsyncClient
) -> None:
    body = {"query": LINEAR_HEALTH_QUERY, "variables": {"endpoint": "{{baseUrl}}/graphql"}}
    descriptor = linear_descriptor(health_body=body)
    await run_health_check(
        descriptor, _context(descriptor, client, linear.server, {"apiKey": LINEAR_KEY})
    )
    sent = linear.server.requests_to("/graphql")[0].json()
    assert sent["variables"] == {"endpoint": f"{linear.server.base_url}/graphql"}


async def test_linear_health_check_with_a_wrong_key_is_unhealthy_and_secret_free(
    linear: LinearLike, client: httpx.AsyncClient
) -> None:
    descriptor = linear_descriptor()
    result = await run_health_check(
        descriptor, _context(descriptor, client, linear.server, {"apiKey": LINEAR_BAD_KEY})
    )
    assert (result.ok, result.status, result.failure) == (False, 400, "rejected")
    assert result.error is not None
    assert "credentials rejected (AUTHENTICATION_ERROR, HTTP 400)" in result.error
    assert LINEAR_BAD_KEY not in result.error


# --------------------------------------------------------------------------- the classifier


def _classifier(**spec: Any) -> ResponseErrorClassifier:
    return ResponseErrorClassifier(ResponseErrors.model_validate(spec))


def test_a_credential_code_outranks_a_rate_limit_and_other_codes_in_one_body() -> None:
    classify = _classifier(
        codePath="$.errors[*].extensions.code",
        authCodes=["FORBIDDEN"],
        rateLimitCodes=["RATELIMITED"],
    ).classify
    body = {
        "errors": [
            {"extensions": {"code": "INVALID_INPUT"}},
            {"extensions": {"code": "RATELIMITED"}},
            {"extensions": {"code": "FORBIDDEN"}},
        ]
    }
    verdict = classify(body)
    assert verdict is not None
    assert (verdict.kind, verdict.codes) == (BodyErrorKind.AUTH, ("FORBIDDEN",))
    verdict = classify({"errors": body["errors"][:2]})
    assert verdict is not None
    assert verdict.kind is BodyErrorKind.RATE_LIMITED


def test_bodies_without_codes_report_nothing() -> None:
    classify = _classifier(codePath="$.error", authCodes=["invalid_auth"]).classify
    assert classify({"ok": True, "messages": []}) is None
    assert classify({"ok": False, "error": None}) is None
    assert classify([1, 2, 3]) is None
    assert classify("not an object") is None


def test_upstream_codes_in_messages_are_shortened_and_credential_shapes_masked() -> None:
    classify = _classifier(codePath="$.error").classify
    leaked = classify({"error": f"bad token {SLACK_BAD_TOKEN}"})
    assert leaked is not None
    assert SLACK_BAD_TOKEN not in leaked.summary
    long = classify({"error": "x" * 500})
    assert long is not None
    assert len(long.summary) <= 64


async def test_ignored_codes_do_not_turn_an_http_error_into_success(
    linear: LinearLike, client: httpx.AsyncClient
) -> None:
    """``ignoreCodes`` keeps a 2xx with harmless errors a success; a 4xx stays an error."""
    linear.server.inject(
        Fault.status(400, body={"errors": [_graphql_error("ENTITY_NOT_FOUND", "gone")]}),
        path="/graphql",
    )
    descriptor = linear_descriptor(ignore_codes=["ENTITY_NOT_FOUND"])
    with pytest.raises(UpstreamError) as caught:
        await _poll(descriptor, client, linear.server, {"apiKey": LINEAR_KEY})
    assert not isinstance(caught.value, UpstreamUnavailable)
    assert caught.value.status == 400
