"""Sources: generic ones from descriptors, native ones from installed entry points."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from ucf.core.descriptor import ConnectorDescriptor
from ucf.core.validation import parse_descriptor
from ucf.fakes import FakeResponse, FakeServer, Fault
from ucf.runtime.auth import StaticAuth, build_auth
from ucf.runtime.http import HttpSettings, create_client
from ucf.runtime.polling import NotPollable
from ucf.runtime.sources import (
    ENTRY_POINT_GROUP,
    GenericSource,
    NativeSourceMissing,
    SourceContext,
    load_native_source,
    source_for,
)
from ucf.runtime.ssrf import EgressPolicy

SETTINGS = HttpSettings(connect_timeout=2, read_timeout=2, max_retries=1)
NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)


def descriptor(**overrides: Any) -> ConnectorDescriptor:
    data: dict[str, Any] = {
        "id": "status-api",
        "name": "Status API",
        "description": "test",
        "category": "Custom",
        "icon": "x",
        "kind": "generic",
        "version": "1.0.0",
        "auth": {
            "method": "api_key",
            "config": {
                "delivery": "header",
                "paramName": "X-Api-Key",
                "credentialFields": [
                    {"key": "apiKey", "label": "Key", "type": "password", "required": True}
                ],
                "extraHeaders": {"X-Api-Version": "2"},
            },
        },
        "ingestion": {
            "mode": "polling",
            "endpoint": "{{baseUrl}}/events",
            "method": "GET",
            "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
            "rateLimitRpm": 600,
        },
        "fieldMapping": {
            "itemsPath": "$.events",
            "idPath": "$.id",
            "timestampPath": "$.at",
            "summaryTemplate": "{{id}}",
            "signalTypeRules": [],
        },
        "healthCheck": {
            "endpoint": "{{baseUrl}}/ping",
            "method": "GET",
            "expectStatus": 200,
            "timeoutMs": 300,
        },
    }
    data.update(overrides)
    return parse_descriptor(data)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        fake.add_route("GET", "/ping", lambda _: {"ok": True})
        fake.add_route(
            "GET", "/events", lambda _: {"events": [{"id": "e1", "at": "2024-05-10T11:00:00Z"}]}
        )
        yield fake


@pytest_asyncio.fixture(loop_scope="function")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with create_client(SETTINGS, EgressPolicy(frozenset({"127.0.0.1"}))) as http:
        yield http


def context(
    client: httpx.AsyncClient, server: FakeServer, desc: ConnectorDescriptor, **config: str
) -> SourceContext:
    auth = build_auth(desc.auth, {"apiKey": "key-0123456789"}, token_client=client)
    return SourceContext(
        client=client,
        auth=auth,
        config={"baseUrl": server.base_url, **config},
        settings=SETTINGS,
    )


# --------------------------------------------------------------------------- generic


async def test_generic_source_streams_the_descriptors_poll(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    desc = descriptor()
    source = source_for(desc)
    assert isinstance(source, GenericSource)
    pages = [p async for p in source.fetch_delta(context(client, server, desc), None, now=NOW)]
    assert [item["id"] for page in pages for item in page.items] == ["e1"]
    assert pages[-1].checkpoint == "2024-05-10T11:00:00.000Z"


async def test_a_webhook_only_connector_says_there_is_nothing_to_poll(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    desc = descriptor(
        ingestion={
            "mode": "webhook",
            "eventTypes": ["ping"],
            "eventTypePath": "$.type",
            "verification": "none",
        }
    )
    with pytest.raises(NotPollable, match="webhooks only"):
        GenericSource(desc).fetch_delta(context(client, server, desc), None, now=NOW)


async def test_health_check_reports_status_and_latency_with_auth_applied(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    desc = descriptor()
    result = await GenericSource(desc).health_check(context(client, server, desc))
    assert (result.ok, result.status, result.error) == (True, 200, None)
    assert 0 < result.latency_ms < 1000
    seen = server.requests_to("/ping")[0]
    assert (seen.headers["x-api-key"], seen.headers["x-api-version"]) == ("key-0123456789", "2")


async def test_health_check_with_head_sends_head(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    desc = descriptor(
        healthCheck={
            "endpoint": "{{baseUrl}}/ping",
            "method": "HEAD",
            "expectStatus": 200,
            "timeoutMs": 300,
        }
    )
    result = await GenericSource(desc).health_check(context(client, server, desc))
    assert result.ok
    assert server.requests[0].method == "HEAD"


async def test_health_check_with_rejected_credentials_is_unhealthy_without_the_key(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    server.inject(Fault.respond(FakeResponse.json({"message": "bad key"}, 401)), path="/ping")
    desc = descriptor()
    result = await GenericSource(desc).health_check(context(client, server, desc))
    assert (result.ok, result.status) == (False, 401)
    assert result.error is not None
    assert "expected HTTP 200, got 401" in result.error
    assert "key-0123456789" not in result.error


async def test_health_check_gives_up_at_its_own_timeout(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    server.inject(Fault.slow(2.0), path="/ping")
    desc = descriptor()
    result = await GenericSource(desc).health_check(context(client, server, desc))
    assert (result.ok, result.status) == (False, None)
    assert result.error is not None
    assert "no answer within 300 ms" in result.error
    assert 250 <= result.latency_ms < 1500


async def test_health_check_obeys_the_ssrf_guard(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    desc = descriptor()
    ctx = context(client, server, desc)
    ctx = SourceContext(client=client, auth=ctx.auth, config={"baseUrl": "http://10.1.2.3:8080"})
    result = await GenericSource(desc).health_check(ctx)
    assert (result.ok, result.status) == (False, None)
    assert result.error is not None
    assert "10.1.2.3" in result.error
    assert server.requests == []


async def test_health_check_with_missing_config_is_unhealthy_not_an_exception(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    desc = descriptor(configFields=[{"key": "site", "label": "Site"}])
    result = await GenericSource(desc).health_check(context(client, server, desc))
    assert not result.ok
    assert result.error == "config field(s) site need a value"


# --------------------------------------------------------------------------- native


NATIVE_MODULE = textwrap.dedent(
    """
    from ucf.runtime.polling import Page


    class DemoSource:
        def __init__(self, descriptor):
            self.descriptor = descriptor

        async def fetch_delta(self, context, checkpoint, *, now, max_pages=None):
            yield Page(
                number=1, items=[{"id": "native-1"}], checkpoint="n1", request_url="native:",
                status=200, last=True, elapsed_seconds=0.0, gate_wait_seconds=0.0,
                rate_limit_waits=0, rate_limit_wait_seconds=0.0,
            )

        async def health_check(self, context):
            raise NotImplementedError
    """
)


def native_descriptor(connector_id: str = "jira") -> ConnectorDescriptor:
    return parse_descriptor(
        {
            "id": connector_id,
            "name": "Jira",
            "description": "native",
            "category": "Project Management",
            "icon": "jira",
            "kind": "native",
            "version": "1.0.0",
            "auth": {"method": "none"},
            "healthCheck": {
                "endpoint": "{{baseUrl}}/rest/api/3/myself",
                "method": "GET",
                "expectStatus": 200,
                "timeoutMs": 1000,
            },
        }
    )


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry_points: str) -> None:
    """A real installed distribution (a dist-info on sys.path) declaring entry points."""
    (tmp_path / "ucf_native_demo.py").write_text(NATIVE_MODULE)
    info = tmp_path / "ucf_native_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ucf-native-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


async def test_a_native_source_is_found_by_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: httpx.AsyncClient
) -> None:
    install(tmp_path, monkeypatch, "jira = ucf_native_demo:DemoSource")
    desc = native_descriptor()
    source = source_for(desc)
    assert source.descriptor is desc
    ctx = SourceContext(client=client, auth=StaticAuth(), config={})
    pages = [p async for p in source.fetch_delta(ctx, None, now=NOW)]
    assert [page.items for page in pages] == [[{"id": "native-1"}]]


def test_a_native_connector_without_its_package_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path, monkeypatch, "outlook = ucf_native_demo:DemoSource")
    with pytest.raises(NativeSourceMissing) as caught:
        load_native_source(native_descriptor("jira"))
    message = str(caught.value)
    assert "no installed package provides it" in message
    assert "'ucf.native_sources'" in message
    assert "installed: outlook" in message


def test_a_broken_native_entry_point_is_reported_not_raised_raw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path, monkeypatch, "jira = ucf_native_missing_module:JiraSource")
    with pytest.raises(NativeSourceMissing, match="failed to load: ModuleNotFoundError"):
        load_native_source(native_descriptor())
