"""What the web tests share: a custom descriptor, its fake upstream, signed deliveries.

"Acme Tickets" is a connector a user would register through the API: it polls
``GET {{baseUrl}}/tickets?since=…`` with an API key header and receives
deliveries signed like Slack's (HMAC-SHA256 of ``{{timestamp}}.{{body}}``,
``v1=<hex>``, a 300 s replay window), deduplicated by ``X-Acme-Delivery``.
Its fake is a real loopback server from the fake kit.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ucf.fakes.kit import FakeRequest, FakeResponse, FakeServer

TOKEN = "ucf_test-admin-token-5e1f9a2b7c4d8e6f"
API_KEY = "acme-api-key-7d3c91f0e2b4"
WEBHOOK_SECRET = "acme-webhook-secret-b8e2f4a6c0d1"
PROJECT = "proj-1"
CONNECTOR = "acme-tickets"
TICKETS = 5

ACME: dict[str, Any] = {
    "id": CONNECTOR,
    "name": "Acme Tickets",
    "description": "Tickets of an Acme helpdesk: polled by update time, pushed by signed webhooks.",
    "category": "Custom",
    "icon": "ticket",
    "kind": "generic",
    "version": "1.0.0",
    "configFields": [{"key": "baseUrl", "label": "API base URL", "type": "url"}],
    "auth": {
        "method": "api_key",
        "config": {
            "delivery": "header",
            "paramName": "X-Acme-Key",
            "credentialFields": [
                {"key": "apiKey", "label": "API key", "type": "password", "required": True},
                {
                    "key": "webhookSecret",
                    "label": "Webhook secret",
                    "type": "password",
                    "required": False,
                },
            ],
        },
    },
    "ingestion": {
        "mode": "polling_and_webhook",
        "polling": {
            "endpoint": "{{baseUrl}}/tickets",
            "method": "GET",
            "delta": {
                "type": "timestamp_filter",
                "queryParam": "since",
                "format": "iso8601",
                "sortedAscending": True,
            },
            "rateLimitRpm": 600,
            "intervalSeconds": 3600,
        },
        "webhook": {
            "eventTypes": ["ticket"],
            "eventTypePath": "$.event",
            "actionPath": "$.action",
            "deliveryIdHeader": "X-Acme-Delivery",
            "verification": "signature",
            "signature": {
                "header": "X-Acme-Signature",
                "prefix": "v1=",
                "signedPayload": "{{timestamp}}.{{body}}",
                "timestamp": {"header": "X-Acme-Timestamp", "toleranceSeconds": 300},
            },
            "fieldMapping": {
                "itemsPath": "$.ticket",
                "idPath": "$.id",
                "timestampPath": "$.updated_at",
                "summaryTemplate": "{{title}}",
                "signalTypeRules": [
                    {
                        "when": "$.id",
                        "operator": "exists",
                        "eventTypes": ["ticket.opened"],
                        "then": "ticket_opened",
                    },
                    {"when": "$.id", "operator": "exists", "then": "ticket_updated"},
                ],
            },
        },
    },
    "fieldMapping": {
        "itemsPath": "$.tickets[*]",
        "idPath": "$.id",
        "timestampPath": "$.updated_at",
        "summaryTemplate": "{{title}}",
        "signalTypeRules": [{"when": "$.id", "operator": "exists", "then": "ticket_updated"}],
    },
    "healthCheck": {
        "endpoint": "{{baseUrl}}/me",
        "method": "GET",
        "expectStatus": 200,
        "timeoutMs": 5000,
    },
}


def acme_fake() -> FakeServer:
    """The Acme API: ``/me`` and ``/tickets``, both refusing a wrong key with 401."""
    server = FakeServer()
    base = datetime.now(UTC) - timedelta(hours=1)
    tickets = [
        {
            "id": f"T-{n}",
            "title": f"Ticket {n}",
            "updated_at": (base + timedelta(minutes=n)).isoformat(),
        }
        for n in range(1, TICKETS + 1)
    ]

    def authorised(request: FakeRequest) -> bool:
        return bool(request.headers.get("x-acme-key") == API_KEY)

    @server.route("GET", "/me")
    def me(request: FakeRequest) -> FakeResponse:
        if not authorised(request):
            return FakeResponse.json({"message": "bad key"}, status=401)
        return FakeResponse.json({"id": "me"})

    @server.route("GET", "/tickets")
    def listing(request: FakeRequest) -> FakeResponse:
        if not authorised(request):
            return FakeResponse.json({"message": "bad key"}, status=401)
        since = request.param("since")
        items = [t for t in tickets if since is None or str(t["updated_at"]) >= since]
        return FakeResponse.json({"tickets": items})

    return server


@dataclass(frozen=True)
class Signed:
    body: bytes
    headers: dict[str, str]


def ticket_event(
    ticket_id: str = "T-100", *, action: str = "opened", title: str = "Printer on fire"
) -> dict[str, Any]:
    return {
        "event": "ticket",
        "action": action,
        "ticket": {
            "id": ticket_id,
            "title": title,
            "updated_at": datetime.now(UTC).isoformat(),
        },
    }


def sign(
    payload: Any,
    *,
    delivery: str = "d-1",
    secret: str = WEBHOOK_SECRET,
    at: float | None = None,
    body: bytes | None = None,
) -> Signed:
    """A delivery signed as Acme signs: ``v1=hex(HMAC(secret, "<ts>.<body>"))``."""
    raw = body if body is not None else json.dumps(payload, separators=(",", ":")).encode()
    stamp = str(int(at if at is not None else time.time()))
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    return Signed(
        raw,
        {
            "Content-Type": "application/json",
            "X-Acme-Signature": f"v1={mac}",
            "X-Acme-Timestamp": stamp,
            "X-Acme-Delivery": delivery,
        },
    )


def webhook_path(connector: str = CONNECTOR, project: str = PROJECT) -> str:
    return f"/api/webhooks/{connector}/{project}"


def instance_body(base_url: str, *, with_secret: bool = True) -> dict[str, Any]:
    credentials = {"apiKey": API_KEY}
    if with_secret:
        credentials["webhookSecret"] = WEBHOOK_SECRET
    return {"connectorId": CONNECTOR, "credentials": credentials, "config": {"baseUrl": base_url}}


def alter_secret(data_dir: Path, ref: str) -> None:
    """Flip one bit of the sealed credential set under ``ref``: it then fails the AES-GCM
    integrity check (a disk error, a hand edit, a row copied from another ref)."""
    with sqlite3.connect(data_dir / "secrets.db") as db:
        (envelope,) = db.execute("SELECT envelope FROM secrets WHERE ref = ?", (ref,)).fetchone()
        altered = bytes(envelope[:-1]) + bytes([envelope[-1] ^ 1])
        db.execute("UPDATE secrets SET envelope = ? WHERE ref = ?", (altered, ref))


def macs_keyed_with(secret: str) -> int:
    """How many live HMACs, never fed, are keyed with ``secret`` (found by what they compute)."""
    gc.collect()
    probe = b"probe"
    wanted = hmac.digest(secret.encode(), probe, "sha256")
    found = 0
    # An instance of a class defined in Python refers to its class, so the referrers of
    # hmac.HMAC are every live HMAC: found in C, where a walk of gc.get_objects() took
    # seconds in a test worker's heap.
    for kept in gc.get_referrers(hmac.HMAC):
        if isinstance(kept, hmac.HMAC) and kept.digest_size == len(wanted):
            copy = kept.copy()
            copy.update(probe)
            found += copy.digest() == wanted
    return found
