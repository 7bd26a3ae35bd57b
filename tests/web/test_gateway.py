"""The webhook gateway (SPEC §7) through the real app, in the order it promises."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.conftest import Web, open_web, web_settings
from tests.web.support import (
    ACME,
    API_KEY,
    CONNECTOR,
    PROJECT,
    WEBHOOK_SECRET,
    alter_secret,
    instance_body,
    macs_keyed_with,
    sign,
    ticket_event,
    webhook_path,
)
from ucf.fakes.kit import FakeServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "descriptors"
NOT_HERE = "no webhook endpoint at this URL"


async def deliver(web: Web, body: bytes, headers: dict[str, str], **kw: Any) -> httpx.Response:
    return await web.anonymous.post(kw.pop("path", webhook_path()), content=body, headers=headers)


async def signals(web: Web, project: str = PROJECT) -> list[dict[str, Any]]:
    page = await web.client.get(f"/api/projects/{project}/signals", params={"limit": 500})
    items: list[dict[str, Any]] = page.json()["items"]
    return items


def metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --------------------------------------------------------------------------- 7. the happy path


async def test_a_signed_delivery_is_stored_once_and_a_redelivery_creates_nothing(
    connected: Web,
) -> None:
    signed = sign(ticket_event("T-100"), delivery="d-100")
    first = await deliver(connected, signed.body, signed.headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": 1, "inserted": 1, "duplicates": 0}

    again = await deliver(connected, signed.body, signed.headers)
    assert again.status_code == 200
    assert again.json() == {"received": 1, "inserted": 0, "duplicates": 1}

    stored = await signals(connected)
    assert len(stored) == 1
    signal = stored[0]
    assert signal["source"] == CONNECTOR
    assert signal["type"] == "ticket_opened"
    assert signal["summary"] == "Printer on fire"
    assert signal["projectId"] == PROJECT
    assert signal["sanitised"] is True

    text = (await connected.client.get("/metrics")).text
    assert metric(text, f'ucf_signals_ingested_total{{connector="{CONNECTOR}",via="webhook"}}') == 1
    assert (
        metric(text, f'ucf_signal_duplicates_total{{connector="{CONNECTOR}",via="webhook"}}') == 1
    )


async def test_a_new_delivery_id_for_the_same_ticket_version_is_the_same_signal(
    connected: Web,
) -> None:
    """The signal is the ticket's version, not the delivery: a replay under a fresh id
    (or a second event about the same change) stores nothing new."""
    event = ticket_event("T-7", action="updated")
    first = sign(event, delivery="d-a")
    assert (await deliver(connected, first.body, first.headers)).json()["inserted"] == 1
    second = sign(event, delivery="d-b")
    assert (await deliver(connected, second.body, second.headers)).json()["duplicates"] == 1
    assert [s["type"] for s in await signals(connected)] == ["ticket_updated"]


async def test_a_new_version_of_the_same_ticket_is_a_new_signal(connected: Web) -> None:
    event = ticket_event("T-7", action="updated")
    later = {**event, "ticket": {**event["ticket"], "updated_at": "2099-01-01T00:00:00+00:00"}}
    for payload, delivery in ((event, "d-a"), (later, "d-b")):
        signed = sign(payload, delivery=delivery)
        assert (await deliver(connected, signed.body, signed.headers)).json()["inserted"] == 1
    assert [s["type"] for s in await signals(connected)] == ["ticket_updated"] * 2


async def test_without_a_delivery_id_the_body_hash_deduplicates(connected: Web) -> None:
    signed = sign(ticket_event("T-8"))
    headers = {k: v for k, v in signed.headers.items() if k != "X-Acme-Delivery"}
    assert (await deliver(connected, signed.body, headers)).json()["inserted"] == 1
    assert (await deliver(connected, signed.body, headers)).json()["duplicates"] == 1


async def test_an_item_id_with_a_lone_surrogate_is_stored_once_not_a_server_error(
    connected: Web,
) -> None:
    """JSON's ``"\\ud800"`` parses to a lone surrogate, which strict UTF-8 cannot encode:
    the dedup key raised, so the verified delivery was a 500 the provider redelivers for
    ever (and a polled page holding it failed every poll)."""
    signed = sign(ticket_event("T-\ud800"), delivery="d-s")
    assert b'"T-\\ud800"' in signed.body
    first = await deliver(connected, signed.body, signed.headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": 1, "inserted": 1, "duplicates": 0}
    again = await deliver(connected, signed.body, signed.headers)
    assert again.json() == {"received": 1, "inserted": 0, "duplicates": 1}


# --------------------------------------------------------------------------- 4. verification


async def test_a_tampered_body_is_refused_with_401_and_no_detail(connected: Web) -> None:
    signed = sign(ticket_event("T-9"), delivery="d-9")
    tampered = signed.body.replace(b"Printer on fire", b"Printer is fine")
    response = await deliver(connected, tampered, signed.headers)
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": "unauthorized",
            "message": "the delivery could not be verified",
            "details": None,
        }
    }
    assert "www-authenticate" not in response.headers
    assert await signals(connected) == []
    text = (await connected.client.get("/metrics")).text
    failures = f'ucf_webhook_verification_failures_total{{connector="{CONNECTOR}",'
    assert metric(text, failures + 'reason="signature_mismatch"}') == 1


async def test_a_delivery_replayed_outside_the_window_is_refused(connected: Web) -> None:
    old = sign(ticket_event("T-10"), delivery="d-10", at=time.time() - 301)
    assert (await deliver(connected, old.body, old.headers)).status_code == 401
    future = sign(ticket_event("T-10"), delivery="d-10", at=time.time() + 301)
    assert (await deliver(connected, future.body, future.headers)).status_code == 401
    text = (await connected.client.get("/metrics")).text
    reason = f'ucf_webhook_verification_failures_total{{connector="{CONNECTOR}",reason="timestamp_outside_window"}}'
    assert metric(text, reason) == 2


async def test_missing_signature_or_wrong_secret_is_401(connected: Web) -> None:
    signed = sign(ticket_event())
    unsigned = {k: v for k, v in signed.headers.items() if k != "X-Acme-Signature"}
    assert (await deliver(connected, signed.body, unsigned)).status_code == 401
    forged = sign(ticket_event(), secret="guessed-secret-0000")
    assert (await deliver(connected, forged.body, forged.headers)).status_code == 401


async def test_rotating_the_webhook_secret_takes_effect_on_the_next_delivery(
    connected: Web,
) -> None:
    before = sign(ticket_event("T-11"), delivery="d-11")
    assert (await deliver(connected, before.body, before.headers)).status_code == 200  # cached
    new_secret = "acme-rotated-secret-5555"
    rotated = await connected.client.patch(
        f"/api/projects/{PROJECT}/instances/{CONNECTOR}",
        json={"credentials": {"webhookSecret": new_secret}},
    )
    assert rotated.status_code == 200
    old = sign(ticket_event("T-12"), delivery="d-12")
    assert (await deliver(connected, old.body, old.headers)).status_code == 401
    new = sign(ticket_event("T-12"), delivery="d-12", secret=new_secret)
    assert (await deliver(connected, new.body, new.headers)).status_code == 200


@pytest.mark.usefixtures("young_heap")
async def test_a_rotated_or_deleted_webhook_secret_leaves_no_keyed_mac_in_memory(
    connected: Web,
) -> None:
    """Verification keys an HMAC once per secret and copies it for every delivery. The
    keyed HMACs were kept in a module cache of up to 64 secrets, without a TTL: a secret
    rotated or deleted stayed in memory, keyed state and the secret itself, until 64
    other secrets had come by. They live as long as the gateway keeps the secret."""
    instance = f"/api/projects/{PROJECT}/instances/{CONNECTOR}"
    # Secrets of this test only: other tests' apps may still be alive in this process.
    old_secret, new_secret = (f"acme-{secrets.token_hex(16)}" for _ in range(2))
    stored = await connected.client.patch(
        instance, json={"credentials": {"webhookSecret": old_secret}}
    )
    assert stored.status_code == 200
    before = sign(ticket_event("T-21"), delivery="d-21", secret=old_secret)
    assert (await deliver(connected, before.body, before.headers)).status_code == 200
    assert macs_keyed_with(old_secret) == 1  # kept for the next delivery
    rotated = await connected.client.patch(
        instance, json={"credentials": {"webhookSecret": new_secret}}
    )
    assert rotated.status_code == 200
    new = sign(ticket_event("T-22"), delivery="d-22", secret=new_secret)
    assert (await deliver(connected, new.body, new.headers)).status_code == 200
    assert macs_keyed_with(old_secret) == 0
    assert macs_keyed_with(new_secret) == 1
    deleted = await connected.client.delete(instance)
    assert deleted.status_code == 204
    assert (await deliver(connected, new.body, new.headers)).status_code == 404
    assert macs_keyed_with(new_secret) == 0


async def test_an_instance_without_a_webhook_secret_refuses_every_delivery(
    web: Web, acme: FakeServer
) -> None:
    await web.client.post("/api/connectors", json=ACME)
    await web.client.post(
        f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url, with_secret=False)
    )
    signed = sign(ticket_event())
    assert (await deliver(web, signed.body, signed.headers)).status_code == 401


async def test_an_instance_whose_secret_cannot_be_read_answers_503_until_it_is_stored_again(
    connected: Web, tmp_path: Path
) -> None:
    """A damaged secret (a flipped bit fails AES-GCM's integrity check) is ucf's trouble,
    not the sender's: the delivery cannot be verified, so it is refused with a JSON 503
    the provider retries later (a 500 before), and nothing is stored; once the
    credentials are stored again, a delivery goes through."""
    record = await connected.state.context.instances.record(PROJECT, CONNECTOR)
    assert record.credential_secret_ref is not None
    alter_secret(tmp_path, record.credential_secret_ref)

    signed = sign(ticket_event("T-7"), delivery="d-7")
    refused = await deliver(connected, signed.body, signed.headers)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "webhook_misconfigured"
    assert await signals(connected) == []

    repaired = await connected.client.patch(
        f"/api/projects/{PROJECT}/instances/{CONNECTOR}",
        json={"credentials": {"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET}},
    )
    assert repaired.status_code == 200, repaired.text
    again = await deliver(connected, signed.body, signed.headers)
    assert again.status_code == 200, again.text
    assert len(await signals(connected)) == 1


# --------------------------------------------------------------------------- 1. where to


async def test_unknown_connector_project_or_disabled_instance_is_one_404(connected: Web) -> None:
    signed = sign(ticket_event())
    for path in (
        webhook_path("no-such-connector", PROJECT),
        webhook_path(CONNECTOR, "another-project"),
        webhook_path("github-issues", PROJECT),  # exists, not connected here
    ):
        response = await deliver(connected, signed.body, signed.headers, path=path)
        assert response.status_code == 404, path
        assert response.json()["error"]["message"] == NOT_HERE
    await connected.client.patch(
        f"/api/projects/{PROJECT}/instances/{CONNECTOR}", json={"enabled": False}
    )
    disabled = await deliver(connected, signed.body, signed.headers)
    assert disabled.status_code == 404
    assert disabled.json()["error"]["message"] == NOT_HERE


async def test_the_404_comes_before_the_body_limit(connected: Web) -> None:
    huge = b"x" * (300 * 1024)
    response = await deliver(connected, huge, {}, path=webhook_path("nope", PROJECT))
    assert response.status_code == 404


# --------------------------------------------------------------------------- 2. body limit


async def test_a_body_over_256_kb_is_413_by_its_content_length(connected: Web) -> None:
    body = json.dumps({"pad": "x" * (256 * 1024)}).encode()
    signed = sign(None, body=body)
    response = await deliver(connected, signed.body, signed.headers)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert response.headers["connection"] == "close"
    exactly = b'{"a":"' + b"x" * (256 * 1024 - 8) + b'"}'
    assert len(exactly) == 256 * 1024
    at_limit = sign(None, body=exactly)
    assert (await deliver(connected, at_limit.body, at_limit.headers)).status_code == 400


async def test_an_endless_chunked_body_is_cut_at_the_limit_without_reading_the_rest(
    connected: Web,
) -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"x" * 16384

    response = await connected.anonymous.post(
        webhook_path(), content=endless(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert pulled <= 256 * 1024 // 16384 + 2  # stopped at the first chunk past the limit


# --------------------------------------------------------------------------- 3. rate limit


async def test_the_per_instance_rate_limit_answers_429_with_retry_after(
    tmp_path: Path, acme: FakeServer
) -> None:
    async with open_web(web_settings(tmp_path, UCF_WEBHOOK_RPM="3")) as web:
        await web.client.post("/api/connectors", json=ACME)
        for project in (PROJECT, "second"):
            await web.client.post(
                f"/api/projects/{project}/instances", json=instance_body(acme.base_url)
            )
        statuses = []
        for n in range(4):
            signed = sign(ticket_event(f"T-{n}"), delivery=f"rl-{n}")
            statuses.append((await deliver(web, signed.body, signed.headers)).status_code)
        assert statuses == [200, 200, 200, 429]
        limited = sign(ticket_event("T-x"), delivery="rl-x")
        response = await deliver(web, limited.body, limited.headers)
        assert response.status_code == 429
        assert 1 <= int(response.headers["retry-after"]) <= 20
        assert response.json()["error"]["code"] == "rate_limited"
        # Another project's instance has its own bucket.
        other = sign(ticket_event("T-o"), delivery="rl-o")
        path = webhook_path(CONNECTOR, "second")
        assert (await deliver(web, other.body, other.headers, path=path)).status_code == 200
        text = (await web.client.get("/metrics")).text
        assert metric(text, f'ucf_webhook_rate_limited_total{{connector="{CONNECTOR}"}}') == 2


async def test_concurrent_deliveries_share_one_draw_from_the_bucket_at_a_time(
    tmp_path: Path, acme: FakeServer
) -> None:
    """Deliveries that find the reserve empty while a draw is in flight wait for it: 32 at
    once cost a handful of doubling draws (1, 2, 4, ...), not a store write each."""
    async with open_web(web_settings(tmp_path, UCF_WEBHOOK_RPM="100000")) as web:
        await web.client.post("/api/connectors", json=ACME)
        await web.client.post(
            f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
        )
        gateway = web.state.gateway
        draws: list[int] = []
        draw = gateway._draw

        async def counted(key: str, rpm: int, cost: int) -> Any:
            draws.append(cost)
            return await draw(key, rpm, cost)

        gateway._draw = counted  # type: ignore[method-assign]
        signed = [sign(ticket_event(f"T-{n}"), delivery=f"many-{n}") for n in range(32)]
        answers = await asyncio.gather(*(deliver(web, s.body, s.headers) for s in signed))
        assert [answer.status_code for answer in answers] == [200] * 32
        assert len(draws) <= 6, draws
        assert sum(draws) >= 32


async def test_waiters_of_a_refused_draw_are_refused_too(tmp_path: Path, acme: FakeServer) -> None:
    async with open_web(web_settings(tmp_path, UCF_WEBHOOK_RPM="3")) as web:
        await web.client.post("/api/connectors", json=ACME)
        await web.client.post(
            f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
        )
        signed = [sign(ticket_event(f"T-{n}"), delivery=f"burst-{n}") for n in range(8)]
        answers = await asyncio.gather(*(deliver(web, s.body, s.headers) for s in signed))
        assert sorted(answer.status_code for answer in answers) == [200] * 3 + [429] * 5
        assert all(
            int(answer.headers["retry-after"]) >= 1
            for answer in answers
            if answer.status_code == 429
        )
        text = (await web.client.get("/metrics")).text
        assert metric(text, f'ucf_webhook_rate_limited_total{{connector="{CONNECTOR}"}}') == 5


async def test_unsigned_requests_cannot_spend_a_genuine_senders_deliveries(
    tmp_path: Path, acme: FakeServer
) -> None:
    """Verification comes first; what fails it is charged to its sender's address."""
    async with open_web(web_settings(tmp_path, UCF_WEBHOOK_RPM="3")) as web:
        await web.client.post("/api/connectors", json=ACME)
        await web.client.post(
            f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
        )
        attacker = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web.app, client=("203.0.113.9", 4711)),
            base_url="http://ucf.test",
        )
        async with attacker:
            flood = [
                (await attacker.post(webhook_path(), content=b"{}")).status_code for _ in range(6)
            ]
        assert flood == [401, 401, 401, 429, 429, 429]
        for n in range(3):  # the instance's whole budget is still there
            signed = sign(ticket_event(f"T-{n}"), delivery=f"genuine-{n}")
            assert (await deliver(web, signed.body, signed.headers)).status_code == 200
        # Another address's failures are its own: a mistyped secret still hears 401.
        assert (await deliver(web, b"{}", {})).status_code == 401
        text = (await web.client.get("/metrics")).text
        assert metric(text, 'ucf_webhook_rate_limited_total{connector="unverified"}') == 3
        assert metric(text, f'ucf_webhook_rate_limited_total{{connector="{CONNECTOR}"}}') == 0


async def test_a_descriptor_rate_limit_overrides_the_server_default(
    tmp_path: Path, acme: FakeServer
) -> None:
    strict = copy.deepcopy(ACME)
    strict["ingestion"]["webhook"]["rateLimitPerMinute"] = 1
    async with open_web(web_settings(tmp_path)) as web:
        await web.client.post("/api/connectors", json=strict)
        await web.client.post(
            f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
        )
        first, second = sign(ticket_event("a"), delivery="a"), sign(ticket_event("b"), delivery="b")
        assert (await deliver(web, first.body, first.headers)).status_code == 200
        assert (await deliver(web, second.body, second.headers)).status_code == 429


async def test_a_connector_update_applies_to_the_next_delivery(
    tmp_path: Path, acme: FakeServer
) -> None:
    """The gateway remembers found targets for a second; an update made here drops them."""
    async with open_web(web_settings(tmp_path)) as web:
        await web.client.post("/api/connectors", json=ACME)
        await web.client.post(
            f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
        )
        before = sign(ticket_event("a"), delivery="a")
        assert (await deliver(web, before.body, before.headers)).status_code == 200
        changed = copy.deepcopy(ACME)
        changed["version"] = "1.0.1"
        changed["ingestion"]["webhook"]["fieldMapping"]["summaryTemplate"] = "Ticket {{title}}"
        updated = await web.client.put(f"/api/connectors/{CONNECTOR}", json=changed)
        assert updated.status_code == 200, updated.text
        after = sign(ticket_event("b"), delivery="b")
        assert (await deliver(web, after.body, after.headers)).status_code == 200
        summaries = sorted(s["summary"] for s in await signals(web))
        assert len(summaries) == 2
        assert not summaries[0].startswith("Ticket ")
        assert summaries[1].startswith("Ticket ")


# --------------------------------------------------------------------------- 6. payloads


async def test_signed_but_malformed_or_non_object_payloads_are_400(connected: Web) -> None:
    for body in (b"{not json", b"[1, 2, 3]", b'"text"', b""):
        signed = sign(None, body=body)
        response = await deliver(connected, signed.body, signed.headers)
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "bad_request"


async def test_a_payload_without_an_event_type_or_unmappable_is_400(connected: Web) -> None:
    no_type = sign({"ticket": {"id": "T-1", "title": "x"}})
    assert (await deliver(connected, no_type.body, no_type.headers)).status_code == 400
    no_id = sign({"event": "ticket", "action": "opened", "ticket": {"title": "no id"}})
    response = await deliver(connected, no_id.body, no_id.headers)
    assert response.status_code == 400
    assert "no id" in response.json()["error"]["message"]


async def test_event_types_the_connector_does_not_handle_are_202_and_stored_nowhere(
    connected: Web,
) -> None:
    signed = sign({"event": "invoice", "action": "paid", "invoice": {"id": "I-1"}})
    response = await deliver(connected, signed.body, signed.headers)
    assert response.status_code == 202
    assert response.json() == {"received": 0, "ignored": "invoice.paid"}
    assert await signals(connected) == []
    text = (await connected.client.get("/metrics")).text
    assert metric(text, f'ucf_webhook_ignored_events_total{{connector="{CONNECTOR}"}}') == 1


async def test_head_is_405_for_a_connector_without_a_head_handshake(connected: Web) -> None:
    unsigned = await connected.anonymous.head(webhook_path())
    assert unsigned.status_code == 401  # no handshake matches, so it must verify first
    signed = sign(None, body=b"")
    verified = await connected.anonymous.head(webhook_path(), headers=signed.headers)
    assert verified.status_code == 405
    assert (await signals(connected)) == []


# --------------------------------------------------------------------------- 5. handshakes


async def register_fixture(web: Web, name: str, credentials: dict[str, str], **changes: Any) -> str:
    descriptor = json.loads((FIXTURES / f"{name}.json").read_text())
    for key, value in changes.items():
        descriptor[key] = value
    registered = await web.client.post("/api/connectors", json=descriptor)
    assert registered.status_code == 201, registered.text
    connector_id: str = descriptor["id"]
    made = await web.client.post(
        f"/api/projects/{PROJECT}/instances",
        json={"connectorId": connector_id, "credentials": credentials},
    )
    assert made.status_code == 201, made.text
    return connector_id


def slack_sign(body: bytes, secret: str, at: float | None = None) -> dict[str, str]:
    stamp = str(int(at if at is not None else time.time()))
    mac = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={mac}"}


async def test_slack_url_verification_is_answered_only_when_signed(web: Web) -> None:
    secret = "slack-signing-secret-1234"
    connector = await register_fixture(web, "slack", {"signingSecret": secret})
    body = json.dumps({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV"}).encode()
    path = webhook_path(connector, PROJECT)
    unsigned = await web.anonymous.post(path, content=body)
    assert unsigned.status_code == 401
    signed = await web.anonymous.post(path, content=body, headers=slack_sign(body, secret))
    assert signed.status_code == 200
    assert signed.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV"}

    event = json.dumps(
        {
            "type": "event_callback",
            "event_id": "Ev1",
            "event": {"type": "message"},
            "id": "m-1",
            "timestamp": int(time.time()),
        }
    ).encode()
    stored = await web.anonymous.post(path, content=event, headers=slack_sign(event, secret))
    assert stored.json()["inserted"] == 1


async def test_trello_head_is_answered_unsigned_and_its_posts_sign_the_callback_url(
    web: Web,
) -> None:
    secret = "trello-app-secret-abcdef"
    connector = await register_fixture(web, "trello", {"appSecret": secret})
    path = webhook_path(connector, PROJECT)
    head = await web.anonymous.head(path)
    assert head.status_code == 200

    body = json.dumps(
        {
            "action": {"id": "A1", "type": "updateCard", "date": "2024-05-01T10:00:00.000Z"},
            "model": {"id": "B1"},
            "id": "A1",
            "timestamp": "2024-05-01T10:00:00.000Z",
        }
    ).encode()
    url = f"http://ucf.test{path}"
    mac = base64.b64encode(hmac.new(secret.encode(), body + url.encode(), "sha1").digest())
    ok = await web.anonymous.post(path, content=body, headers={"X-Trello-Webhook": mac.decode()})
    assert ok.status_code == 200, ok.text
    elsewhere = base64.b64encode(
        hmac.new(secret.encode(), body + b"https://elsewhere/x", "sha1").digest()
    )
    refused = await web.anonymous.post(
        path, content=body, headers={"X-Trello-Webhook": elsewhere.decode()}
    )
    assert refused.status_code == 401


async def test_a_trello_delivery_reaches_a_project_whose_id_holds_a_slash(web: Web) -> None:
    """``team/x`` is ``team%2Fx`` in its hook URL: the decoded path had a segment too
    many (404). The path as sent tells the two apart; Trello signs that URL."""
    from ucf.service.webhooks import webhook_path as shown_path

    secret = "trello-app-secret-abcdef"
    descriptor = json.loads((FIXTURES / "trello.json").read_text())
    assert (await web.client.post("/api/connectors", json=descriptor)).status_code == 201
    instance = await web.state.context.instances.create(
        "team/x", descriptor["id"], credentials={"appSecret": secret}, config={}
    )
    body = json.dumps(
        {
            "action": {"id": "A2", "type": "updateCard", "date": "2024-05-01T10:00:00.000Z"},
            "model": {"id": "B1"},
            "id": "A2",
            "timestamp": "2024-05-01T10:00:00.000Z",
        }
    ).encode()
    for path in (
        shown_path(descriptor["id"], "team/x"),
        shown_path(descriptor["id"], "team/x", instance.hook_id),
    ):
        assert "/team%2Fx" in path
        url = f"http://ucf.test{path}"
        mac = base64.b64encode(hmac.new(secret.encode(), body + url.encode(), "sha1").digest())
        answer = await web.anonymous.post(
            path, content=body, headers={"X-Trello-Webhook": mac.decode()}
        )
        assert answer.status_code == 200, answer.text


async def test_an_escaped_slash_outside_a_project_id_is_a_404_not_a_500(connected: Web) -> None:
    """The path as sent names no endpoint, while its decoded form matches a gateway route:
    the front left it to the app, whose documented routes never run (500, a traceback in
    the log for anyone's request). The front answers it: 404, before reading the body."""
    signed = sign(ticket_event("T-7"), delivery="d-7")
    for path in (
        f"/api%2Fwebhooks/{CONNECTOR}/{PROJECT}",
        f"/api/webhooks%2f{CONNECTOR}/{PROJECT}",
        f"/api/webhooks/{CONNECTOR}%2F{PROJECT}",
        f"/api/webhooks/{CONNECTOR}%2F{PROJECT}%2Fhook",
    ):
        answer = await deliver(connected, signed.body, signed.headers, path=path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["error"]["message"] == NOT_HERE
    assert await signals(connected) == []


async def instance_of(web: Web, connector: str) -> dict[str, Any]:
    found: dict[str, Any] = (
        await web.client.get(f"/api/projects/{PROJECT}/instances/{connector}")
    ).json()
    return found


async def connect_capturing(web: Web, fixture: str) -> tuple[str, str]:
    """A connector whose secret comes from an unsigned handshake, connected without it:
    its id and the instance's own webhook path."""
    descriptor = json.loads((FIXTURES / f"{fixture}.json").read_text())
    descriptor["auth"]["config"]["credentialFields"][0]["required"] = False
    await web.client.post("/api/connectors", json=descriptor)
    made = await web.client.post(
        f"/api/projects/{PROJECT}/instances",
        json={"connectorId": descriptor["id"], "credentials": {}},
    )
    own = made.json()["webhookUrl"].removeprefix("http://ucf.test")
    assert own.startswith(webhook_path(descriptor["id"], PROJECT) + "/")
    return descriptor["id"], own


async def test_asana_handshake_secret_waits_for_confirmation_and_is_never_replaced(
    web: Web,
) -> None:
    connector, own = await connect_capturing(web, "asana")
    shared = await web.anonymous.post(
        webhook_path(connector, PROJECT), headers={"X-Hook-Secret": "planted-secret-000000"}
    )
    assert shared.status_code == 403  # the guessable URL hears no secret-handing handshake
    assert shared.json()["error"]["code"] == "hook_url_required"

    secret = "asana-hook-secret-77c1d2e3"
    shake = await web.anonymous.post(own, headers={"X-Hook-Secret": secret})
    assert shake.status_code == 200
    assert shake.headers["x-hook-secret"] == secret
    instance = await instance_of(web, connector)
    assert instance["credentials"] == {}  # pending, not a credential
    [pending] = instance["pendingSecrets"]
    assert pending["credential"] == "hookSecret"
    assert pending["masked"] == "••••" + secret[-4:]
    assert pending["differsFromConfirmed"] is False
    assert secret not in json.dumps(instance)

    body = json.dumps({"events": [{"action": "changed"}], "id": "E1", "timestamp": 1}).encode()
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    early = await web.anonymous.post(own, content=body, headers={"X-Hook-Signature": mac})
    assert early.status_code == 401  # nothing verifies before the operator confirms

    confirm = f"/api/projects/{PROJECT}/instances/{connector}/pending-secrets/{pending['id']}"
    assert (await web.client.post(confirm + "/confirm")).status_code == 200
    after = await instance_of(web, connector)
    assert after["credentials"] == {"hookSecret": "••••" + secret[-4:]}
    assert after["pendingSecrets"] == []
    delivered = await web.anonymous.post(own, content=body, headers={"X-Hook-Signature": mac})
    assert delivered.status_code == 200, delivered.text

    stranger = await web.anonymous.post(own, headers={"X-Hook-Secret": "stranger-secret-000000"})
    assert stranger.status_code == 200  # answered, as Asana expects, but not kept
    flagged = await instance_of(web, connector)
    assert flagged["credentials"] == {"hookSecret": "••••" + secret[-4:]}
    assert [p["differsFromConfirmed"] for p in flagged["pendingSecrets"]] == [True]
    again = await web.anonymous.post(own, content=body, headers={"X-Hook-Signature": mac})
    assert again.status_code == 200


async def test_msgraph_validation_token_is_echoed_as_plain_text(web: Web) -> None:
    connector = await register_fixture(web, "msgraph", {"clientState": "graph-client-state-42"})
    response = await web.anonymous.post(
        webhook_path(connector, PROJECT), params={"validationToken": "Validation: Token <42>"}
    )
    assert response.status_code == 200
    assert response.text == "Validation: Token <42>"
    assert response.headers["content-type"].startswith("text/plain")


async def test_a_planted_notion_token_cannot_sign_forged_events(web: Web) -> None:
    """The review's attack: send Notion's verification POST first, then sign with it."""
    connector, own = await connect_capturing(web, "notion")
    planted = "secret_planted_by_a_stranger_0123456789"
    forged = json.dumps({"id": "evt-1", "type": "page.created", "entity": {"id": "p1"}}).encode()
    signature = "sha256=" + hmac.new(planted.encode(), forged, hashlib.sha256).hexdigest()

    shared = await web.anonymous.post(
        webhook_path(connector, PROJECT), json={"verification_token": planted}
    )
    assert shared.status_code == 403
    at_own = await web.anonymous.post(own, json={"verification_token": planted})
    assert at_own.status_code == 200  # even knowing the URL, it only becomes pending
    assert planted not in at_own.text
    for path in (own, webhook_path(connector, PROJECT)):
        refused = await web.anonymous.post(
            path, content=forged, headers={"X-Notion-Signature": signature}
        )
        assert refused.status_code == 401
    assert await signals(web) == []

    genuine = "secret_notion_verification_token_0123456789abcdef"
    assert (await web.anonymous.post(own, json={"verification_token": genuine})).status_code == 200
    instance = await instance_of(web, connector)
    assert instance["credentials"] == {}
    assert [p["masked"] for p in instance["pendingSecrets"]] == [
        "••••" + planted[-4:],
        "••••" + genuine[-4:],
    ]
    chosen = instance["pendingSecrets"][1]["id"]
    base = f"/api/projects/{PROJECT}/instances/{connector}/pending-secrets/{chosen}"
    assert (await web.client.post(base + "/confirm")).status_code == 200
    assert (await instance_of(web, connector))["credentials"] == {
        "verificationToken": "••••" + genuine[-4:]
    }
    still = await web.anonymous.post(own, content=forged, headers={"X-Notion-Signature": signature})
    assert still.status_code == 401
    real = "sha256=" + hmac.new(genuine.encode(), forged, hashlib.sha256).hexdigest()
    accepted = await web.anonymous.post(own, content=forged, headers={"X-Notion-Signature": real})
    assert accepted.status_code == 200, accepted.text


async def test_a_wrong_hook_id_is_not_an_endpoint(connected: Web) -> None:
    own = (await instance_of(connected, CONNECTOR))["webhookUrl"].removeprefix("http://ucf.test")
    signed = sign(ticket_event("T-hook"), delivery="hook-1")
    assert (await deliver(connected, signed.body, signed.headers, path=own)).status_code == 200
    for wrong in (
        own[:-1] + ("A" if own[-1] != "A" else "B"),
        own + "x",
        own.rsplit("/", 1)[0] + "/é",
    ):
        response = await deliver(connected, signed.body, signed.headers, path=wrong)
        assert response.status_code == 404, wrong
        assert response.json()["error"]["message"] == NOT_HERE
    renewed = await connected.client.post(
        f"/api/projects/{PROJECT}/instances/{CONNECTOR}/webhook-url"
    )
    fresh = renewed.json()["webhookUrl"].removeprefix("http://ucf.test")
    assert fresh != own
    assert (await deliver(connected, signed.body, signed.headers, path=own)).status_code == 404
    assert (await deliver(connected, signed.body, signed.headers, path=fresh)).status_code == 200


async def test_a_body_trickling_in_too_slowly_is_cut_off_with_408(
    connected: Web, monkeypatch: Any
) -> None:
    import asyncio

    import ucf.web.front

    monkeypatch.setattr(ucf.web.front, "BODY_TIMEOUT_SECONDS", 0.2)

    async def slow() -> AsyncIterator[bytes]:
        yield b'{"event": "ticket",'
        await asyncio.sleep(2)
        yield b"}"

    response = await connected.anonymous.post(webhook_path(), content=slow())
    assert response.status_code == 408
    assert response.json()["error"]["code"] == "request_timeout"
