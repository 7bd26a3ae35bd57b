"""The HTTP client and its retry loop against a real fake upstream.

The example fake is a paginated ``/items`` endpoint with GitHub-style Link
headers. Sleeps are injected and recorded, so a test that "waits 30 s" takes
milliseconds and asserts exactly what the client would have waited.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
import pytest_asyncio

from ucf import __version__
from ucf.core.descriptor import ResponseErrors
from ucf.fakes import FakeRequest, FakeResponse, FakeServer, Fault, endless
from ucf.runtime.http import (
    AuthFailed,
    HttpSettings,
    MalformedResponse,
    RateLimited,
    ResponseTooLarge,
    RetryStats,
    UpstreamError,
    UpstreamUnavailable,
    create_client,
    parse_json,
    read_json,
    reset_seconds,
    retry_after_seconds,
    send_with_retries,
    upstream_wait,
)
from ucf.runtime.response_errors import ResponseErrorCheck, ResponseErrorClassifier
from ucf.runtime.ssrf import EgressDenied, EgressPolicy

ITEMS = [{"id": n, "title": f"item {n}"} for n in range(1, 8)]
NOW = 1_700_000_040.0  # minute-aligned, for the ISO reset form


def _items_page(request: FakeRequest) -> FakeResponse:
    page = int(request.param("page", "1") or 1)
    per_page = int(request.param("per_page", "3") or 3)
    chunk = ITEMS[(page - 1) * per_page : page * per_page]
    headers = {}
    if page * per_page < len(ITEMS):
        next_url = request.url_for(f"/items?page={page + 1}&per_page={per_page}")
        headers["Link"] = f'<{next_url}>; rel="next"'
    return FakeResponse.json(chunk, headers=headers)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    server = FakeServer()
    server.add_route("GET", "/items", _items_page)
    server.add_route("GET", "/endless", lambda _: FakeResponse(body=endless()))
    server.add_route("GET", "/big", lambda _: FakeResponse(body=b"x" * 4096))
    server.add_route(
        "GET",
        "/bomb",
        lambda _: FakeResponse(
            headers={"Content-Encoding": "gzip"}, body=gzip.compress(b"\0" * (2 << 20))
        ),
    )
    server.add_route(
        "GET",
        "/garbled",
        lambda _: FakeResponse(headers={"Content-Encoding": "gzip"}, body=b"not gzip at all"),
    )
    with server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(upstream: FakeServer) -> None:
    upstream.reset()


SETTINGS = HttpSettings(read_timeout=0.3, connect_timeout=1.0, max_response_bytes=1 << 20)
LOCAL = EgressPolicy(frozenset({"localhost"}))


@pytest_asyncio.fixture(loop_scope="function")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """Per test, on the test's own loop (its pooled connections belong to that loop)."""
    async with create_client(SETTINGS, LOCAL) as http:
        yield http


def local(server: FakeServer, path: str) -> str:
    """The fake addressed as ``localhost`` — the allow-listed name."""
    return f"http://localhost:{server.port}{path}"


class Sleeps:
    """An injected ``sleep`` that records what the client would have waited."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


async def send(
    client: httpx.AsyncClient,
    url: str,
    sleeps: Sleeps | None = None,
    settings: HttpSettings = SETTINGS,
    stats: RetryStats | None = None,
    response_errors: ResponseErrorCheck | None = None,
) -> httpx.Response:
    return await send_with_retries(
        client,
        client.build_request("GET", url),
        settings=settings,
        sleep=sleeps or Sleeps(),
        on_wait=stats,
        clock=lambda: NOW,
        jitter=lambda: 1.0,
        response_errors=response_errors,
    )


async def test_a_read_response_is_freed_when_dropped_without_the_collector(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    """A poll drops each page's response after parsing it: its body must go with it at
    once, not when the cycle collector next runs (bench/poll.py's peak RSS)."""
    gc.collect()
    gc.disable()
    try:
        response = await send(client, local(upstream, "/big"))
        assert response.content == b"x" * 4096
        gone = weakref.ref(response)
        del response
        assert gone() is None
    finally:
        gc.enable()


# --------------------------------------------------------------------------- happy path


async def test_following_link_headers_collects_every_item(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    url: str | None = local(upstream, "/items?per_page=3")
    seen: list[dict[str, object]] = []
    while url:
        response = await send(client, url)
        seen += parse_json(response)
        url = response.links.get("next", {}).get("url")
    assert seen == ITEMS
    assert len(upstream.requests_to("/items")) == 3


async def test_requests_identify_ucf_in_user_agent(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    await send(client, local(upstream, "/items"))
    assert (
        upstream.requests[0].headers["user-agent"] == f"ucf/{__version__} (+https://github.com/ucf)"
    )


async def test_a_cookie_one_upstream_sets_is_never_sent_on_a_later_request(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    """The process's one client serves every tenant: a session cookie from one instance's
    upstream must not ride along on another instance's request to the same host."""
    upstream.add_route(
        "GET",
        "/login-cookie",
        lambda request: FakeResponse.json(
            {}, headers={"Set-Cookie": "session=tenant-a-secret; Path=/"}
        ),
    )
    await send(client, local(upstream, "/login-cookie"))
    await send(client, local(upstream, "/items"))
    assert "cookie" not in upstream.requests_to("/items")[-1].headers
    assert not client.cookies


# --------------------------------------------------------------------------- retries


async def test_429_waits_what_retry_after_asks_then_succeeds(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.rate_limited(retry_after=7), path="/items")
    sleeps, stats = Sleeps(), RetryStats()
    response = await send(client, local(upstream, "/items"), sleeps, stats=stats)
    assert response.status_code == 200
    assert sleeps.calls == [7.0]
    assert stats.rate_limit_waits == 1
    assert stats.rate_limit_seconds == 7.0
    assert stats.waits[0].asked_by_upstream


async def test_503_then_success_retries_with_backoff(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.status(503), path="/items", times=2)
    sleeps, stats = Sleeps(), RetryStats()
    response = await send(client, local(upstream, "/items"), sleeps, stats=stats)
    assert response.status_code == 200
    # full jitter pinned at its maximum: base 0.5 s doubling per attempt
    assert sleeps.calls == [0.5, 1.0]
    assert [w.reason for w in stats.waits] == ["unavailable", "unavailable"]
    assert stats.rate_limit_waits == 0


async def test_notion_529_overload_is_retried(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.status(529, headers={"Retry-After": "3"}), path="/items")
    sleeps = Sleeps()
    assert (await send(client, local(upstream, "/items"), sleeps)).status_code == 200
    assert sleeps.calls == [3.0]


@pytest.mark.serial  # asserts a time bound: `make test` runs it alone
async def test_slow_response_past_read_timeout_is_retried(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.slow(30.0), path="/items")
    stats = RetryStats()
    started = time.monotonic()
    response = await send(client, local(upstream, "/items"), stats=stats)
    assert response.status_code == 200
    assert [w.reason for w in stats.waits] == ["timeout"]
    # Gave up at the 0.3 s read timeout: waiting for the answer would take 30 s (a wide
    # margin, so a busy machine cannot make this fail).
    assert time.monotonic() - started < 15


async def test_dropped_connection_is_retried(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.disconnect(), path="/items")
    stats = RetryStats()
    assert (await send(client, local(upstream, "/items"), stats=stats)).status_code == 200
    assert [w.reason for w in stats.waits] == ["connection"]


async def test_truncated_body_is_an_error_not_partial_data(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.truncated(), path="/items", times=10)
    with pytest.raises(UpstreamUnavailable, match="closed mid-response"):
        await send(client, local(upstream, "/items"))
    assert len(upstream.requests_to("/items")) == SETTINGS.max_retries + 1


async def test_truncated_once_then_whole_body_succeeds(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.truncated(), path="/items")
    response = await send(client, local(upstream, "/items"))
    assert parse_json(response) == ITEMS[:3]


async def test_persistent_503_gives_up_after_max_retries(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.status(503), path="/items", times=100)
    sleeps = Sleeps()
    with pytest.raises(UpstreamUnavailable) as caught:
        await send(client, local(upstream, "/items"), sleeps)
    assert caught.value.status == 503
    assert caught.value.retryable
    assert len(sleeps.calls) == SETTINGS.max_retries
    assert len(upstream.requests_to("/items")) == SETTINGS.max_retries + 1


async def test_backoff_never_waits_longer_than_the_total_budget(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.status(500), path="/items", times=100)
    settings = HttpSettings(
        read_timeout=0.3, max_retries=10, max_total_retry_wait=5.0, backoff_base=1.0
    )
    sleeps = Sleeps()
    with pytest.raises(UpstreamUnavailable):
        await send(client, local(upstream, "/items"), sleeps, settings=settings)
    assert sum(sleeps.calls) == pytest.approx(5.0)
    assert sleeps.calls == [1.0, 2.0, 2.0]


async def test_retry_after_beyond_budget_fails_fast_with_retry_after(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.rate_limited(retry_after=3600), path="/items", times=5)
    sleeps = Sleeps()
    with pytest.raises(RateLimited) as caught:
        await send(client, local(upstream, "/items"), sleeps)
    assert caught.value.retry_after == 3600.0
    assert sleeps.calls == []
    assert len(upstream.requests_to("/items")) == 1


async def test_rate_limit_that_outlasts_retries_reports_when_to_come_back(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.rate_limited(retry_after=1), path="/items", times=100)
    with pytest.raises(RateLimited) as caught:
        await send(client, local(upstream, "/items"))
    assert caught.value.retry_after == 1.0
    assert caught.value.status == 429


async def test_github_primary_limit_403_waits_until_reset(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    reset = int(NOW) + 42
    upstream.inject(
        Fault.rate_limited(
            retry_after=None,
            status=403,
            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
            body={"message": "API rate limit exceeded for user ID 1."},
        ),
        path="/items",
    )
    sleeps = Sleeps()
    assert (await send(client, local(upstream, "/items"), sleeps)).status_code == 200
    assert sleeps.calls == [42.0]


async def test_github_secondary_limit_without_headers_waits_a_minute(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(
        Fault.rate_limited(
            retry_after=None,
            status=403,
            body={"message": "You have exceeded a secondary rate limit."},
        ),
        path="/items",
    )
    sleeps = Sleeps()
    assert (await send(client, local(upstream, "/items"), sleeps)).status_code == 200
    assert sleeps.calls == [60.0]


async def test_linear_ratelimited_graphql_400_is_a_rate_limit(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(
        Fault.rate_limited(
            retry_after=None,
            status=400,
            headers={
                "X-RateLimit-Requests-Remaining": "0",
                "X-RateLimit-Requests-Reset": str(int((NOW + 5) * 1000)),
                "X-RateLimit-Complexity-Remaining": "90000",
                "X-RateLimit-Complexity-Reset": str(int((NOW + 3000) * 1000)),
            },
            body={
                "errors": [
                    {
                        "message": "Rate limit exceeded",
                        "extensions": {"code": "RATELIMITED", "type": "ratelimited"},
                    }
                ]
            },
        ),
        path="/items",
    )
    # Linear's descriptor says where its codes are (responseErrors); HTTP knows no provider.
    linear = ResponseErrorClassifier(
        ResponseErrors.model_validate(
            {"codePath": "$.errors[*].extensions.code", "rateLimitCodes": ["RATELIMITED"]}
        )
    )
    sleeps = Sleeps()
    response = await send(client, local(upstream, "/items"), sleeps, response_errors=linear)
    assert response.status_code == 200
    assert sleeps.calls == [5.0]  # the exhausted requests budget, not the complexity one


async def test_expired_token_is_an_auth_failure_and_not_retried(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.expired_token(), path="/items", times=10)
    with pytest.raises(AuthFailed) as caught:
        await send(client, local(upstream, "/items"))
    assert caught.value.status == 401
    assert not caught.value.retryable
    assert len(upstream.requests_to("/items")) == 1


async def test_plain_403_is_an_auth_failure(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.status(403, body={"message": "Resource not accessible"}), path="/items")
    with pytest.raises(AuthFailed):
        await send(client, local(upstream, "/items"))


async def test_404_is_an_error_without_retries(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    with pytest.raises(UpstreamError) as caught:
        await send(client, local(upstream, "/missing"))
    assert caught.value.status == 404
    assert not caught.value.retryable
    assert len(upstream.requests) == 1


async def test_error_messages_never_carry_query_or_headers(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.expired_token(), path="/items")
    request = client.build_request(
        "GET",
        local(upstream, "/items?key=trellokey0123456789&token=trellotoken0123456789"),
        headers={"Authorization": "Bearer sekrit-bearer-value-0123"},
    )
    with pytest.raises(AuthFailed) as caught:
        await send_with_retries(client, request, settings=SETTINGS, sleep=Sleeps())
    message = str(caught.value)
    assert "/items" in message
    for secret in ("trellokey0123456789", "trellotoken0123456789", "sekrit-bearer-value"):
        assert secret not in message


async def test_request_factory_is_rebuilt_for_each_attempt(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.status(502), path="/items")
    built: list[int] = []

    def factory() -> httpx.Request:
        built.append(len(built) + 1)
        return client.build_request(
            "GET", local(upstream, "/items"), headers={"X-Attempt": str(len(built))}
        )

    await send_with_retries(client, factory, settings=SETTINGS, sleep=Sleeps())
    assert [r.headers["x-attempt"] for r in upstream.requests_to("/items")] == ["1", "2"]


# --------------------------------------------------------------------------- bodies


async def test_malformed_json_raises_malformed_response_without_the_body(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.malformed_json(b'{"items": [{"secret": "s3cr3t-body'), path="/items")
    response = await send(client, local(upstream, "/items"))
    with pytest.raises(MalformedResponse) as caught:
        parse_json(response)
    assert "not valid JSON" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)


async def test_json_nested_too_deeply_raises_malformed_response(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    """json's parser recurses per level: an upstream's page nested past Python's recursion
    limit is a malformed answer (the poll fails, says why), not a RecursionError that
    escapes the poll as ucf's own crash."""
    deep = b"[" * 150_000 + b"]" * 150_000  # past OFF_LOOP_BYTES: read_json's thread too
    upstream.inject(Fault.malformed_json(deep), path="/items")
    response = await send(client, local(upstream, "/items"))
    with pytest.raises(MalformedResponse, match="nested too deeply"):
        parse_json(response)
    with pytest.raises(MalformedResponse, match="nested too deeply"):
        await read_json(response)  # parsed on a worker thread: the same answer


async def test_body_that_is_not_its_declared_encoding_is_malformed(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    with pytest.raises(MalformedResponse, match="Content-Encoding"):
        await send(client, local(upstream, "/garbled"))


async def test_declared_oversized_body_is_refused_before_reading(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    settings = HttpSettings(max_response_bytes=1024)
    async with create_client(settings, LOCAL) as small:
        with pytest.raises(ResponseTooLarge, match="exceeds 1024 bytes"):
            await send(small, local(upstream, "/big"), settings=settings)
    assert len(upstream.requests_to("/big")) == 1  # not retried


async def test_endless_stream_stops_at_the_size_cap(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    with pytest.raises(ResponseTooLarge):
        await asyncio.wait_for(send(client, local(upstream, "/endless")), timeout=10)


async def test_compressed_body_cannot_inflate_past_the_cap(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    # 2 MiB of zeros is ~2 KiB gzipped: only the decoded count can catch it.
    with pytest.raises(ResponseTooLarge):
        await send(client, local(upstream, "/bomb"))


async def test_plain_client_get_is_size_capped_too(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    with pytest.raises(ResponseTooLarge):
        await asyncio.wait_for(client.get(local(upstream, "/endless")), timeout=10)


# --------------------------------------------------------------------------- egress


async def test_redirect_to_metadata_service_is_refused(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.redirect("http://169.254.169.254/latest/meta-data/"), path="/items")
    with pytest.raises(EgressDenied, match="metadata"):
        await send(client, local(upstream, "/items"))


async def test_redirect_to_private_address_is_refused(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.redirect("http://10.0.0.1/admin"), path="/items")
    with pytest.raises(EgressDenied, match="private"):
        await send(client, local(upstream, "/items"))


async def test_redirect_from_allowed_name_to_unlisted_loopback_ip_is_refused(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.redirect(upstream.url("/items")), path="/items")
    with pytest.raises(EgressDenied, match="loopback"):
        await send(client, local(upstream, "/items"))


async def test_redirect_to_allow_listed_host_is_followed(upstream: FakeServer) -> None:
    policy = EgressPolicy(frozenset({"localhost", "127.0.0.1"}))
    upstream.inject(Fault.redirect(upstream.url("/items?page=2")), path="/items")
    async with create_client(SETTINGS, policy) as client:
        response = await send(client, local(upstream, "/items"))
    assert parse_json(response) == ITEMS[3:6]
    hops = upstream.requests_to("/items")
    assert [r.headers["host"].split(":")[0] for r in hops] == ["localhost", "127.0.0.1"]


async def test_redirect_loop_ends_with_an_error(
    client: httpx.AsyncClient, upstream: FakeServer
) -> None:
    upstream.inject(Fault.redirect(local(upstream, "/items")), path="/items", times=50)
    with pytest.raises(UpstreamError, match="redirects"):
        await send(client, local(upstream, "/items"))
    assert len(upstream.requests_to("/items")) == SETTINGS.max_redirects + 1


# --------------------------------------------------------------------------- wait hints


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"Retry-After": "12"}, 12.0, id="retry-after-seconds"),
        pytest.param(
            {"Retry-After": format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True)},
            90.0,
            id="retry-after-http-date",
        ),
        pytest.param(
            {"Retry-After": "5", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(NOW + 99)},
            5.0,
            id="retry-after-wins-over-reset",
        ),
        pytest.param(
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 30)},
            30.0,
            id="github-epoch-seconds",
        ),
        pytest.param(
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "17"}, 17.0, id="datadog-delta"
        ),
        pytest.param(
            {
                "X-RateLimit-Reset": datetime.fromtimestamp(NOW + 600, UTC).strftime(
                    "%Y-%m-%dT%H:%MZ"
                )
            },
            600.0,
            id="atlassian-iso",
        ),
        pytest.param({"ratelimit-remaining": "0", "ratelimit-reset": "8"}, 8.0, id="pagerduty"),
        pytest.param(
            {"X-RateLimit-Requests-Reset": str(int((NOW + 2.5) * 1000))}, 2.5, id="linear-ms"
        ),
        pytest.param(
            {"X-Sentry-Rate-Limit-Remaining": "0", "X-Sentry-Rate-Limit-Reset": str(int(NOW) + 4)},
            4.0,
            id="sentry-epoch",
        ),
        pytest.param(
            {"x-ratelimit-remaining": "12", "x-ratelimit-reset": str(int(NOW) + 30)},
            None,
            id="budget-left-means-not-this-limit",
        ),
        pytest.param({"x-ratelimit-reset": str(int(NOW) - 30)}, 0.0, id="reset-in-the-past"),
        pytest.param({"Retry-After": "soon"}, None, id="unparseable"),
        pytest.param({}, None, id="no-hint"),
    ],
)
def test_upstream_wait_reads_each_providers_convention(
    headers: dict[str, str], expected: float | None
) -> None:
    assert upstream_wait(httpx.Headers(headers), NOW) == expected


def test_reset_and_retry_after_parsers_reject_garbage() -> None:
    assert reset_seconds("not a time", NOW) is None
    assert reset_seconds("2024-01-01T10:00", NOW) is None  # no zone: ambiguous
    assert retry_after_seconds("nan", NOW) is None
    assert retry_after_seconds("-5", NOW) == 0.0


async def test_unreachable_host_gives_up_with_a_one_line_reason() -> None:
    with FakeServer() as gone:
        port = gone.port
    async with create_client(SETTINGS, EgressPolicy(frozenset({"127.0.0.1"}))) as client:
        stats = RetryStats()
        with pytest.raises(UpstreamUnavailable, match="could not connect") as caught:
            await send(client, f"http://127.0.0.1:{port}/items", stats=stats)
    assert "\n" not in str(caught.value)
    assert [w.reason for w in stats.waits] == ["connection"] * SETTINGS.max_retries
