"""A slow-drip upstream cannot hold a request past its deadline.

Per-read timeouts alone do not stop a server that sends a few bytes every
fraction of a second: each read arrives in time, the answer never ends. These
tests drip real bytes from a real loopback server, well inside the read
timeout, and check that the attempt deadline ends the request — with retries
counted, in the health check too — and that an OAuth rotation caught by the
deadline is still saved. ``asyncio.wait_for`` only guards against a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import TypeAdapter

from ucf.core import descriptor as d
from ucf.core.validation import parse_descriptor
from ucf.fakes import FakeResponse, FakeServer, Fault
from ucf.runtime.auth import build_auth
from ucf.runtime.http import (
    AttemptTimedOut,
    HttpSettings,
    RetryStats,
    create_client,
    send_with_retries,
)
from ucf.runtime.sources import GenericSource, SourceContext
from ucf.runtime.ssrf import EgressPolicy

# Reads time out after 1 s; the server drips every 0.05 s, so only a total deadline helps.
SETTINGS = HttpSettings(read_timeout=1.0, attempt_timeout=0.5, max_retries=2, backoff_base=0.01)
LONG_BODY = b'{"items": [' + b'{"id": 1},' * 2000 + b'{"id": 2}]}'
DRIP = Fault.drip(0.05, chunk=16)


@pytest.fixture
def upstream() -> Iterator[FakeServer]:
    with FakeServer() as server:
        server.add_route(["GET", "POST"], "/items", lambda _: FakeResponse(body=LONG_BODY))
        yield server


@pytest_asyncio.fixture(loop_scope="function")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with create_client(SETTINGS, EgressPolicy(frozenset({"127.0.0.1"}))) as http:
        yield http


async def test_slow_drip_answer_ends_at_the_attempt_deadline_and_is_retried(
    upstream: FakeServer, client: httpx.AsyncClient
) -> None:
    upstream.inject(DRIP, path="/items", times=10)
    stats = RetryStats()

    with pytest.raises(AttemptTimedOut, match=r"no complete answer within 0\.5 s") as caught:
        await asyncio.wait_for(
            send_with_retries(
                client,
                client.build_request("GET", upstream.url("/items")),
                settings=SETTINGS,
                on_wait=stats,
            ),
            timeout=20,
        )

    assert caught.value.retryable
    assert [w.reason for w in stats.waits] == ["timeout", "timeout"]
    assert len(upstream.requests_to("/items")) == 3


async def test_a_drip_that_stops_in_time_is_an_ordinary_answer(
    upstream: FakeServer, client: httpx.AsyncClient
) -> None:
    upstream.inject(Fault.drip(0.01, chunk=4096), path="/items")
    settings = HttpSettings(read_timeout=1.0, attempt_timeout=60, max_retries=0)

    response = await send_with_retries(
        client, client.build_request("GET", upstream.url("/items")), settings=settings
    )

    assert response.content == LONG_BODY


def _descriptor() -> d.ConnectorDescriptor:
    return parse_descriptor(
        {
            "id": "drip-api",
            "name": "Drip API",
            "description": "test",
            "category": "Custom",
            "icon": "x",
            "kind": "generic",
            "version": "1.0.0",
            "auth": {"method": "none"},
            "ingestion": {
                "mode": "polling",
                "endpoint": "{{baseUrl}}/items",
                "method": "GET",
                "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
                "rateLimitRpm": 600,
            },
            "fieldMapping": {
                "itemsPath": "$.items",
                "idPath": "$.id",
                "timestampPath": "$.at",
                "summaryTemplate": "{{id}}",
                "signalTypeRules": [],
            },
            "healthCheck": {
                "endpoint": "{{baseUrl}}/items",
                "method": "GET",
                "expectStatus": 200,
                "timeoutMs": 400,
            },
        }
    )


async def test_health_check_timeout_bounds_the_whole_answer_not_each_read(
    upstream: FakeServer, client: httpx.AsyncClient
) -> None:
    upstream.inject(DRIP, path="/items")
    descriptor = _descriptor()
    context = SourceContext(
        client=client,
        auth=build_auth(descriptor.auth, {}, token_client=client),
        config={"baseUrl": upstream.base_url},
        settings=SETTINGS,
    )

    result = await asyncio.wait_for(GenericSource(descriptor).health_check(context), timeout=20)

    assert not result.ok
    assert result.failure == "unavailable"
    assert result.error is not None
    assert "no answer within 400 ms" in result.error


async def test_rotated_refresh_token_is_saved_even_when_the_deadline_cuts_the_request(
    upstream: FakeServer, client: httpx.AsyncClient
) -> None:
    upstream.add_route(
        "POST",
        "/oauth/token",
        lambda _: FakeResponse.json(
            {"access_token": "access-2", "refresh_token": "refresh-2", "expires_in": 3600}
        ),
    )
    saved: list[dict[str, str]] = []
    request: asyncio.Task[httpx.Response] | None = None

    async def slow_save(values: dict[str, str]) -> None:
        """The secret store is slow today: done only once the deadline has cut the request
        (its cancellation stays pending while the request waits for this save)."""
        assert request is not None
        while not request.cancelling() and not request.done():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        saved.append(values)

    oauth: Any = TypeAdapter(d.AuthDescriptor).validate_python(
        {
            "method": "oauth2",
            "config": {
                "grant": "refresh_token",
                "authoriseUrl": upstream.url("/oauth/authorize"),
                "tokenUrl": upstream.url("/oauth/token"),
                "scopes": [],
                "credentialFields": [
                    {"key": k, "label": k, "type": "password", "required": True}
                    for k in ("clientId", "clientSecret", "refreshToken")
                ],
            },
        }
    )
    flow = build_auth(
        oauth,
        {"clientId": "cid", "clientSecret": "cs", "refreshToken": "refresh-1"},
        token_client=client,
        on_rotate=slow_save,
        settings=SETTINGS,
    )
    # Long enough for the token request on a busy machine: the deadline must land in
    # the save, not before it.
    settings = HttpSettings(read_timeout=1.0, attempt_timeout=1.0, max_retries=0)

    request = asyncio.create_task(
        send_with_retries(
            client,
            client.build_request("GET", upstream.url("/items")),
            settings=settings,
            auth=flow,
        )
    )
    with pytest.raises(AttemptTimedOut):
        await asyncio.wait_for(request, timeout=30)

    assert [values["refreshToken"] for values in saved] == ["refresh-2"]  # before it gave up
