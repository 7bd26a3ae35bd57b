"""Sources: generic ones from descriptors, native ones from installed entry points."""

from __future__ import annotations

import importlib.metadata
import socket
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
from ucf.runtime.native import NativeRegistry
from ucf.runtime.polling import NotPollable
from ucf.runtime.sources import (
    ENTRY_POINT_GROUP,
    GenericSource,
    NativeSourceMissing,
    SourceContext,
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
    assert "credentials rejected (HTTP 401: bad key)" in result.error
    assert "key-0123456789" not in result.error


async def test_a_failed_check_shows_the_path_as_sent_and_the_providers_own_message(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    """GitLab's ``projects/group%2Fproject``: a decoded path reads as a different URL."""
    path = "/projects/group%2Fproject"
    server.inject(Fault.respond(FakeResponse.json({"message": "404 Project Not Found"}, 404)))
    desc = descriptor(
        healthCheck={
            "endpoint": "{{baseUrl}}" + path,
            "method": "GET",
            "expectStatus": 200,
            "timeoutMs": 300,
        }
    )
    result = await GenericSource(desc).health_check(context(client, server, desc))
    assert result.error == (
        f"GET 127.0.0.1:{server.port}{path}: expected HTTP 200, got HTTP 404: 404 Project Not Found"
    )


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


async def test_a_check_that_cannot_connect_says_why_as_a_poll_does(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    """Not ``connection failed (ConnectError)``: the system's reason, as ``ucf poll`` gives it."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    desc = descriptor()
    ctx = context(client, server, desc)
    ctx = SourceContext(
        client=client, auth=ctx.auth, config={"baseUrl": f"http://127.0.0.1:{port}"}
    )
    result = await GenericSource(desc).health_check(ctx)
    assert (result.ok, result.failure) == (False, "unavailable")
    assert result.error == f"GET 127.0.0.1:{port}/ping: could not connect (Connection refused)"


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


async def test_a_site_url_setting_that_starts_the_urls_is_the_site_not_an_encoded_segment(
    server: FakeServer, client: httpx.AsyncClient
) -> None:
    """``{{config.siteUrl}}/api/me``: the setting is the site's address, as ``baseUrl`` is.

    Percent-encoded like a path segment it became ``http%3A%2F%2F…/api/me``, which
    is no URL: every poll and health check of such a descriptor failed, though it
    validated, until its setting was renamed ``baseUrl``. Later values stay encoded.
    """
    desc = descriptor(
        configFields=[{"key": "siteUrl", "label": "Site", "type": "url", "required": True},
                      {"key": "team", "label": "Team"}],
        ingestion={
            "mode": "polling", "endpoint": "{{config.siteUrl}}/events", "method": "GET",
            "query": {"team": "{{config.team}}"}, "rateLimitRpm": 600,
            "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
        },
        healthCheck={"endpoint": "{{config.siteUrl}}/ping/{{config.team}}", "method": "GET",
                     "expectStatus": 200, "timeoutMs": 300},
    )  # fmt: skip
    server.add_route("GET", "/ping/a/b", lambda _: {"ok": True})  # the fake reads it decoded
    ctx = SourceContext(
        client=client,
        auth=context(client, server, desc).auth,
        config={"siteUrl": server.base_url, "team": "a/b"},
        settings=SETTINGS,
    )
    source = source_for(desc)

    health = await source.health_check(ctx)
    pages = [p async for p in source.fetch_delta(ctx, None, now=NOW)]

    assert (health.ok, health.error) == (True, None)
    [check] = server.requests_to("/ping/a/b")
    assert check.target == "/ping/a%2Fb", "a later value is still one encoded segment"
    assert [item["id"] for page in pages for item in page.items] == ["e1"]


# --------------------------------------------------------------------------- native


NATIVE_MODULE = textwrap.dedent(
    """
    from ucf.native import NativeConnector, Page, PollSchedule, build_signal, MappingResult

    DESCRIPTOR = {
        "id": "demo",
        "name": "Demo",
        "description": "native",
        "category": "Custom",
        "icon": "demo",
        "kind": "native",
        "version": "1.0.0",
        "auth": {"method": "none"},
        "healthCheck": {
            "endpoint": "{{baseUrl}}/ping", "method": "GET", "expectStatus": 200, "timeoutMs": 1000
        },
    }


    class DemoSource:
        schedule = PollSchedule(interval_seconds=60, rate_limit_rpm=30)
        webhooks = None

        def __init__(self, descriptor):
            self.descriptor = descriptor

        async def fetch_delta(self, context, checkpoint, *, now, max_pages=None):
            yield Page(number=1, items=[{"id": "native-1"}], checkpoint="n1", last=True)

        def normalise(self, items, *, project_id, now):
            return MappingResult(signals=[
                build_signal(
                    source="demo", project_id=project_id, item_id=item["id"], version="1",
                    timestamp=now, signal_type="demo_seen", summary=item["id"], raw=item,
                )
                for item in items
            ])

        async def health_check(self, context):
            raise NotImplementedError


    class Incomplete:
        def __init__(self, descriptor):
            self.descriptor = descriptor


    connector = NativeConnector(DESCRIPTOR, DemoSource)
    incomplete = NativeConnector(DESCRIPTOR, Incomplete)
    not_a_connector = DemoSource
    """
)


def native_descriptor(connector_id: str = "demo") -> ConnectorDescriptor:
    return parse_descriptor(
        {
            "id": connector_id,
            "name": "Demo",
            "description": "native",
            "category": "Custom",
            "icon": "demo",
            "kind": "native",
            "version": "1.0.0",
            "auth": {"method": "none"},
            "healthCheck": {
                "endpoint": "{{baseUrl}}/ping",
                "method": "GET",
                "expectStatus": 200,
                "timeoutMs": 1000,
            },
        }
    )


def install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry_points: str
) -> list[importlib.metadata.EntryPoint]:
    """A real installed distribution (a dist-info on sys.path) declaring entry points."""
    (tmp_path / "ucf_native_demo.py").write_text(NATIVE_MODULE)
    info = tmp_path / "ucf_native_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ucf-native-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return [
        ep
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        if ep.dist is not None and ep.dist.metadata["Name"] == "ucf-native-demo"
    ]


async def test_a_native_source_is_found_by_its_entry_point_with_its_package_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: httpx.AsyncClient
) -> None:
    registry = NativeRegistry(install(tmp_path, monkeypatch, "demo = ucf_native_demo:connector"))
    [entry] = list(registry)
    assert (entry.distribution, entry.version, entry.error) == ("ucf-native-demo", "0.1", None)
    assert [d["id"] for d in registry.descriptors()] == ["demo"]
    desc = native_descriptor()
    source = registry.source(desc)
    assert source.descriptor is desc
    assert source.schedule.interval_seconds == 60
    ctx = SourceContext(client=client, auth=StaticAuth(), config={})
    pages = [p async for p in source.fetch_delta(ctx, None, now=NOW)]
    assert [page.items for page in pages] == [[{"id": "native-1"}]]
    result = source.normalise(pages[0].items, project_id="p", now=NOW)
    assert [m.wire["type"] for m in result.signals] == ["demo_seen"]


def test_a_native_connector_without_its_package_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = NativeRegistry(install(tmp_path, monkeypatch, "outlook = ucf_native_demo:connector"))
    with pytest.raises(NativeSourceMissing) as caught:
        registry.source(native_descriptor("jira"))
    message = str(caught.value)
    assert "no installed package provides it" in message
    assert "'ucf.native_sources'" in message
    assert "installed: outlook" in message


@pytest.mark.parametrize(
    ("entry_point", "reason"),
    [
        ("demo = ucf_native_missing_module:connector", "failed to import: ModuleNotFoundError"),
        ("demo = ucf_native_demo:not_a_connector", "not a ucf.native.NativeConnector"),
        ("other = ucf_native_demo:connector", None),
        ("demo = ucf_native_demo:incomplete", "no callable fetch_delta()"),
    ],
)
def test_a_broken_native_entry_point_is_reported_not_raised_raw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry_point: str, reason: str | None
) -> None:
    registry = NativeRegistry(install(tmp_path, monkeypatch, entry_point))
    name = entry_point.split(" ", 1)[0]
    desc = native_descriptor(name)
    with pytest.raises(NativeSourceMissing) as caught:
        registry.source(desc)
    expected = reason or "its descriptor's id is 'demo', not 'other'"
    assert expected in str(caught.value)
    # A package that fails to load shows nothing in the catalogue; one that loads but
    # breaks the interface is listed, so its instances can report why they fail.
    listed = [d["id"] for d in registry.descriptors()]
    assert listed == (["demo"] if "incomplete" in entry_point else [])


def test_a_blocked_native_connector_is_not_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry_points = install(tmp_path, monkeypatch, "demo = ucf_native_demo:connector")
    registry = NativeRegistry(entry_points, blocked=["demo"])
    with pytest.raises(NativeSourceMissing, match="blocked by UCF_NATIVE_BLOCK"):
        registry.source(native_descriptor())
