"""The native path end to end, through the real app, with a connector installed as a package.

"Relay" is a native connector a third party would ship: a dist-info on
``sys.path`` declares its ``ucf.native_sources`` entry point, its module
imports only ``ucf.native``. It polls a real loopback fake without any
``ingestion`` block (its source declares the schedule) and receives signed
webhooks with an ``X-Relay-Hook-Secret`` handshake. Everything the gateway,
the scheduler and the poll use case promise for generic connectors is checked
for it here.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import json
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.web.conftest import Web, open_web, web_settings
from ucf.fakes.kit import FakeRequest, FakeResponse, FakeServer
from ucf.runtime import native
from ucf.runtime.native import ENTRY_POINT_GROUP, NativeRegistry
from ucf.service.scheduler import Scheduler

PROJECT = "proj-native"
TOKEN = "relay-token-4b1d9e2a7c"
SECRET = "relay-hook-secret-0f3e8a"

RELAY_MODULE = textwrap.dedent(
    """
    import hashlib, hmac, json
    from datetime import datetime

    from ucf.native import (
        Handshake, HandshakeResponse, HealthCheckPlan, Malformed, MappingResult, NativeConnector,
        PollSchedule, Refused, Unhandled, UpstreamCalls, Verified, build_signal,
    )

    DESCRIPTOR = {
        "id": "relay",
        "name": "Relay",
        "description": "A native test connector",
        "category": "Custom",
        "icon": "relay",
        "kind": "native",
        "version": "1.0.0",
        "configFields": [{"key": "baseUrl", "label": "API", "type": "url"}],
        "auth": {"method": "pat", "config": {"delivery": "bearer", "paramName": "Authorization",
                 "credentialFields": [
                     {"key": "token", "label": "Token", "type": "password", "required": True},
                     {"key": "webhookSecret", "label": "Secret", "type": "password",
                      "required": False}]}},
        "healthCheck": {"endpoint": "{{baseUrl}}/me", "method": "GET", "expectStatus": 200,
                        "timeoutMs": 2000},
    }


    def signal(item, project_id):
        return build_signal(
            source="relay", project_id=project_id, item_id=item["id"], version=item["updated"],
            timestamp=datetime.fromisoformat(item["updated"]), signal_type="item_changed",
            summary=item["title"], raw=item, tags=item.get("tags", []),
        )


    class RelayWebhooks:
        async def verify(self, request, context):
            handed = request.header("X-Relay-Hook-Secret")
            if handed is not None:
                answer = HandshakeResponse("relay", headers={"X-Relay-Hook-Secret": handed})
                return Handshake(answer, keep={"webhookSecret": handed})
            secret = context.credentials.get("webhookSecret")
            given = request.header("X-Relay-Signature") or ""
            if not secret:
                return Refused("no_secret", "the instance has no webhook secret yet")
            expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected.encode(), given.encode()):
                return Refused("bad_signature", "signature mismatch")
            return Verified()

        async def signals(self, request, context):
            try:
                payload = json.loads(request.body)
            except ValueError:
                raise Malformed("the body is not JSON") from None
            if payload.get("event") != "item.changed":
                return Unhandled(str(payload.get("event")))
            return MappingResult(signals=[signal(payload["item"], context.project_id)])


    class RelaySource:
        schedule = PollSchedule(interval_seconds=120, rate_limit_rpm=600)

        def __init__(self, descriptor):
            self.descriptor = descriptor
            self.webhooks = RelayWebhooks()
            self._health = HealthCheckPlan.compile(descriptor)

        async def fetch_delta(self, context, checkpoint, *, now, max_pages=None):
            calls = UpstreamCalls(context)
            body = await calls.json("GET", context.config["baseUrl"] + "/items",
                                    params={"after": checkpoint or ""})
            items = body["items"]
            newest = max((i["updated"] for i in items), default=checkpoint)
            yield calls.page(1, items, newest, last=True)

        def normalise(self, items, *, project_id, now):
            return MappingResult(signals=[signal(item, project_id) for item in items])

        async def health_check(self, context):
            return await self._health.run(context)


    connector = NativeConnector(DESCRIPTOR, RelaySource)
    """
)

ITEMS: list[dict[str, Any]] = [
    {"id": "r-1", "title": "First", "updated": "2026-01-01T10:00:00+00:00", "tags": ["a"]},
    {
        "id": "r-2",
        "title": "Second ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "updated": "2026-01-01T11:00:00+00:00",
    },
]


def relay_fake() -> FakeServer:
    server = FakeServer()

    def authorised(request: FakeRequest) -> bool:
        return bool(request.headers.get("authorization") == f"Bearer {TOKEN}")

    def me(request: FakeRequest) -> FakeResponse:
        if not authorised(request):
            return FakeResponse.json({"error": "bad token"}, status=401)
        return FakeResponse.json({"id": "me"})

    def items(request: FakeRequest) -> FakeResponse:
        if not authorised(request):
            return FakeResponse.json({"error": "bad token"}, status=401)
        after = request.param("after", "") or ""
        return FakeResponse.json({"items": [i for i in ITEMS if i["updated"] > after]})

    server.add_route("GET", "/me", me)
    server.add_route("GET", "/items", items)
    return server


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    with relay_fake() as server:
        yield server


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NativeRegistry:
    """Relay installed as a real distribution, and the process registry reloaded with it."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "ucf_relay.py").write_text(RELAY_MODULE)
    info = package / "ucf_relay-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ucf-relay\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nrelay = ucf_relay:connector\n")
    monkeypatch.syspath_prepend(str(package))
    registry = NativeRegistry(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    monkeypatch.setattr(native, "_registry", registry)
    return registry


@pytest_asyncio.fixture(loop_scope="function")
async def web(tmp_path: Path, installed: NativeRegistry) -> AsyncIterator[Web]:
    async with open_web(web_settings(tmp_path / "data")) as opened:
        yield opened


async def connect(web: Web, upstream: FakeServer, *, secret: str | None = None) -> None:
    credentials = {"token": TOKEN}
    if secret is not None:
        credentials["webhookSecret"] = secret
    made = await web.client.post(
        f"/api/projects/{PROJECT}/instances",
        json={
            "connectorId": "relay",
            "credentials": credentials,
            "config": {"baseUrl": upstream.base_url},
        },
    )
    assert made.status_code == 201, made.text


def hook(body: dict[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    signature = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Relay-Signature": signature, "Content-Type": "application/json"}


async def stored(web: Web) -> list[dict[str, Any]]:
    page = await web.client.get(f"/api/projects/{PROJECT}/signals", params={"limit": 100})
    items: list[dict[str, Any]] = page.json()["items"]
    return items


PATH = f"/api/webhooks/relay/{PROJECT}"


def test_the_registry_records_the_package_that_provides_a_native_connector(
    installed: NativeRegistry,
) -> None:
    [entry] = [e for e in installed if e.name == "relay"]
    assert (entry.distribution, entry.version, entry.error) == ("ucf-relay", "2.0", None)


async def test_a_native_connector_is_in_the_catalogue_polls_by_its_declaration_and_is_sanitised(
    web: Web, upstream: FakeServer
) -> None:
    catalogue = await web.client.get("/api/connectors")
    assert "relay" in {c["id"] for c in catalogue.json()["items"]}
    await connect(web, upstream)

    status = (await web.client.get(f"/api/projects/{PROJECT}/instances/relay/status")).json()
    assert status["polls"] is True
    assert status["sharedWebhookUrl"].endswith(PATH)
    assert status["webhookUrl"].startswith(status["sharedWebhookUrl"] + "/")  # its own URL

    scheduler = Scheduler(web.state.context)
    due, _ = await scheduler.due()
    assert [(r.project_id, r.connector_id) for r in due] == [(PROJECT, "relay")]

    polled = await web.client.post(f"/api/projects/{PROJECT}/instances/relay/poll")
    assert polled.status_code == 200, polled.text
    assert (polled.json()["status"], polled.json()["inserted"]) == ("ok", 2)
    signals = await stored(web)
    assert sorted(s["summary"] for s in signals)[0] == "First"
    second = next(s for s in signals if s["raw"]["id"] == "r-2")
    assert "ghp_0123456789" not in json.dumps(second)  # through the sanitiser like any signal
    assert second["sanitised"] is True

    again = await web.client.post(f"/api/projects/{PROJECT}/instances/relay/poll")
    assert again.json()["inserted"] == 0  # the checkpoint moved, nothing re-fetched twice

    checked = await web.client.post(f"/api/projects/{PROJECT}/instances/relay/test")
    assert checked.status_code == 200, checked.text
    assert checked.json()["ok"] is True


async def test_the_native_gateway_keeps_every_promise_of_the_generic_one(
    web: Web, upstream: FakeServer
) -> None:
    await connect(web, upstream)
    assert (
        await web.anonymous.post("/api/webhooks/relay/elsewhere", content=b"{}")
    ).status_code == 404

    unsigned = await web.anonymous.post(PATH, content=b'{"event": "item.changed"}')
    assert unsigned.status_code == 401  # no secret yet: nothing is accepted
    assert unsigned.json()["error"]["code"] == "unauthorized"

    shared = await web.anonymous.post(PATH, headers={"X-Relay-Hook-Secret": "attacker"})
    assert shared.status_code == 403  # secret-handing handshakes only at the instance's URL
    instance = f"/api/projects/{PROJECT}/instances/relay"
    own = (await web.client.get(instance)).json()["webhookUrl"].removeprefix("http://ucf.test")
    shake = await web.anonymous.post(own, headers={"X-Relay-Hook-Secret": SECRET})
    assert shake.status_code == 200
    assert shake.headers["X-Relay-Hook-Secret"] == SECRET
    [pending] = (await web.client.get(instance)).json()["pendingSecrets"]
    confirmed = await web.client.post(f"{instance}/pending-secrets/{pending['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    planted = await web.anonymous.post(own, headers={"X-Relay-Hook-Secret": "attacker"})
    assert planted.status_code == 200  # answered, but only pending: the confirmed one stays

    item = {"id": "r-9", "title": "Pushed", "updated": "2026-02-01T09:00:00+00:00"}
    body, headers = hook({"event": "item.changed", "item": item})
    first = await web.anonymous.post(PATH, content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": 1, "inserted": 1, "duplicates": 0}
    redelivered = await web.anonymous.post(PATH, content=body, headers=headers)
    assert redelivered.json() == {"received": 1, "inserted": 0, "duplicates": 1}

    forged_body, forged = hook({"event": "item.changed", "item": item}, secret="attacker")
    assert (await web.anonymous.post(PATH, content=forged_body, headers=forged)).status_code == 401

    ping_body, ping = hook({"event": "ping"})
    ignored = await web.anonymous.post(PATH, content=ping_body, headers=ping)
    assert (ignored.status_code, ignored.json()) == (202, {"received": 0, "ignored": "ping"})

    junk = b"not json"
    signature = hmac.new(SECRET.encode(), junk, hashlib.sha256).hexdigest()
    bad = await web.anonymous.post(PATH, content=junk, headers={"X-Relay-Signature": signature})
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == "the body is not JSON"

    huge = await web.anonymous.post(PATH, content=b"x" * (300 * 1024), headers=headers)
    assert huge.status_code == 413

    assert [s["summary"] for s in await stored(web)] == ["Pushed"]


async def test_unverified_requests_do_not_spend_the_instance_delivery_budget(
    tmp_path: Path, installed: NativeRegistry, upstream: FakeServer
) -> None:
    settings = web_settings(tmp_path / "limited", UCF_WEBHOOK_RPM="3")
    async with open_web(settings) as web:
        await connect(web, upstream, secret=SECRET)
        refused = [
            (
                await web.anonymous.post(PATH, content=b"{}", headers={"X-Relay-Signature": "0"})
            ).status_code
            for _ in range(10)
        ]
        assert refused == [401] * 3 + [429] * 7  # charged to the sender's address
        item = {"id": "r-5", "title": "Still heard", "updated": "2026-03-01T00:00:00+00:00"}
        body, headers = hook({"event": "item.changed", "item": item})
        accepted = await web.anonymous.post(PATH, content=body, headers=headers)
        assert accepted.status_code == 200, accepted.text
        for n in range(3):
            more = {**item, "id": f"r-5{n}"}
            body, headers = hook({"event": "item.changed", "item": more})
            last = await web.anonymous.post(PATH, content=body, headers=headers)
        assert last.status_code == 429
        assert last.headers["Retry-After"]


async def test_a_poll_and_a_webhook_of_one_native_change_are_one_signal(
    web: Web, upstream: FakeServer
) -> None:
    await connect(web, upstream, secret=SECRET)
    body, headers = hook({"event": "item.changed", "item": ITEMS[0]})
    pushed = await web.anonymous.post(PATH, content=body, headers=headers)
    assert pushed.json()["inserted"] == 1
    polled = await web.client.post(f"/api/projects/{PROJECT}/instances/relay/poll")
    assert (polled.json()["inserted"], polled.json()["duplicates"]) == (1, 1)
    assert len(await stored(web)) == 2


async def test_a_blocked_or_broken_native_connector_reports_why_instead_of_polling_silently(
    web: Web, upstream: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    await connect(web, upstream)
    broken = NativeRegistry([], blocked=["relay"])
    monkeypatch.setattr(native, "_registry", broken)
    connector = await web.state.context.connectors.get("relay")
    connector.__dict__.pop("source", None)  # as after a restart without the package
    polled = await web.client.post(f"/api/projects/{PROJECT}/instances/relay/poll")
    assert polled.status_code == 200, polled.text
    assert polled.json()["status"] == "failed"
    assert "no installed package provides it" in polled.json()["error"]
    status = (await web.client.get(f"/api/projects/{PROJECT}/instances/relay/status")).json()
    assert status["healthState"] == "error" or status["consecutiveFailures"] >= 1
