"""The Jira connector's webhooks through the real app: every gateway promise, in order.

404 → 413 → verification (401) → 429 → 400 / 202 → 200 only once stored, and a
redelivery (or the poll of the same change) stores nothing new.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.web.conftest import Web, open_web, web_settings
from ucf.fakes import jira as fake_jira
from ucf.fakes.jira import JiraFake, JiraScenario
from ucf.fakes.scenario import WebhookDelivery, WebhookSample

PROJECT = "ops"
PATH = f"/api/webhooks/jira/{PROJECT}"
URL = f"https://ucf.example.com{PATH}"


@pytest.fixture
def jira() -> Iterator[JiraFake]:
    with JiraFake(datetime.now(UTC)) as fake:
        yield fake


async def _connect(web: Web, jira: JiraFake, **config: str) -> None:
    scenario = JiraScenario()
    made = await web.client.post(
        f"/api/projects/{PROJECT}/instances",
        json={
            "connectorId": "jira",
            "config": {**scenario.config(jira.base_url), **config},
            "credentials": scenario.credentials(),
        },
    )
    assert made.status_code == 201, made.text


@pytest_asyncio.fixture(loop_scope="function")
async def connected(tmp_path: Path, jira: JiraFake) -> AsyncIterator[Web]:
    async with open_web(web_settings(tmp_path)) as web:
        await _connect(web, jira)
        yield web


async def post(web: Web, delivery: WebhookDelivery, path: str = PATH) -> httpx.Response:
    headers = {k: v for k, v in delivery.headers.items() if k.lower() != "content-length"}
    return await web.anonymous.post(path, content=delivery.body, headers=headers)


def samples() -> dict[str, WebhookSample]:
    return {s.name: s for s in JiraScenario().webhook_samples()}


def signed(sample: WebhookSample) -> WebhookDelivery:
    return fake_jira.sign_delivery(sample, url=URL)


def raw(body: bytes, **headers: str) -> WebhookDelivery:
    return fake_jira.sign_delivery(WebhookSample("raw", body, headers), url=URL)


async def stored(web: Web) -> list[dict[str, Any]]:
    page = await web.client.get(f"/api/projects/{PROJECT}/signals", params={"limit": 500})
    items: list[dict[str, Any]] = page.json()["items"]
    return items


async def test_every_jira_event_is_stored_once_and_a_retry_stores_nothing(connected: Web) -> None:
    for name, sample in samples().items():
        first = await post(connected, signed(sample))
        assert first.status_code == 200, (name, first.text)
        assert first.json()["inserted"] == 1, name
        retry = signed(sample)
        retry = WebhookDelivery(
            retry.name, retry.url, retry.body, {**retry.headers, "X-Atlassian-Webhook-Retry": "1"}
        )
        again = await post(connected, retry)
        assert again.status_code == 200, name
        assert again.json() == {"received": 1, "inserted": 0, "duplicates": 1}, name
    types = sorted(s["type"] for s in await stored(connected))
    assert types == sorted(
        [
            "issue_created",
            "issue_status_changed",
            "issue_updated",
            "issue_commented",
            "issue_commented",
            "issue_deleted",
        ]
    )


async def test_a_change_polled_first_and_then_pushed_is_one_signal(
    connected: Web, jira: JiraFake
) -> None:
    issue = next(i for i in jira.data.issues.values() if i.project == "OPS")
    history = jira.data.transition(issue, "Done", datetime.now(UTC) - timedelta(seconds=5))
    polled = await connected.client.post(f"/api/projects/{PROJECT}/instances/jira/poll")
    assert polled.status_code == 200, polled.text
    assert polled.json()["status"] == "ok"
    before = len(await stored(connected))
    pushed = fake_jira.delivery(
        "status",
        "jira:issue_updated",
        datetime.now(UTC),
        issue_event_type_name="issue_generic",
        user=fake_jira.user(1),
        issue=issue.webhook_issue(),
        changelog={"id": str(history.id), "items": history.items},
    )
    response = await post(connected, signed(pushed))
    assert response.status_code == 200, response.text
    assert response.json()["duplicates"] == 1
    assert len(await stored(connected)) == before


async def test_unknown_project_or_disabled_instance_is_404(connected: Web) -> None:
    sample = next(iter(samples().values()))
    assert (await post(connected, signed(sample), "/api/webhooks/jira/nobody")).status_code == 404
    await connected.client.patch(f"/api/projects/{PROJECT}/instances/jira", json={"enabled": False})
    assert (await post(connected, signed(sample))).status_code == 404


async def test_a_body_over_the_limit_is_413(connected: Web) -> None:
    body = json.dumps({"webhookEvent": "jira:issue_updated", "pad": "x" * (256 * 1024)}).encode()
    assert (await post(connected, raw(body))).status_code == 413


async def test_tampered_unsigned_or_wrongly_signed_deliveries_are_401_without_detail(
    connected: Web,
) -> None:
    sample = samples()["jira:issue_created"]
    tampered = signed(sample).tampered()
    unsigned = fake_jira.sign_delivery(sample, url=URL, secret=None)
    other = fake_jira.sign_delivery(sample, url=URL, secret="not the secret")
    for delivery in (tampered, unsigned, other):
        response = await post(connected, delivery)
        assert response.status_code == 401
        assert fake_jira.WEBHOOK_SECRET not in response.text
        assert "signature" not in response.text.lower()
    assert await stored(connected) == []


async def test_unsigned_deliveries_are_taken_only_when_the_user_chose_to(
    tmp_path: Path, jira: JiraFake
) -> None:
    sample = samples()["jira:issue_created"]
    unsigned = fake_jira.sign_delivery(sample, url=URL, secret=None)
    async with open_web(web_settings(tmp_path)) as web:
        scenario = JiraScenario()
        credentials = {k: v for k, v in scenario.credentials().items() if k != "webhookSecret"}
        for choice, expected in (("refuse", 401), ("accept", 200)):
            await web.client.delete(f"/api/projects/{PROJECT}/instances/jira")
            made = await web.client.post(
                f"/api/projects/{PROJECT}/instances",
                json={
                    "connectorId": "jira",
                    "config": {**scenario.config(jira.base_url), "unsignedWebhooks": choice},
                    "credentials": credentials,
                },
            )
            assert made.status_code == 201, made.text
            assert (await post(web, unsigned)).status_code == expected, choice


async def test_an_oauth_apps_webhook_is_taken_only_with_a_token_signed_by_its_client_secret(
    tmp_path: Path, jira: JiraFake
) -> None:
    """Webhooks an OAuth 2.0 app registers carry a bearer JWT instead of a signature."""
    sample = samples()["jira:issue_created"]
    now = int(time.time())
    unsigned = fake_jira.sign_delivery(sample, url=URL, secret=None)
    refused = {
        "another app's": fake_jira.app_delivery(sample, url=URL, client_secret="x" * 32),
        "expired": fake_jira.app_delivery(
            sample, url=URL, claims={"iat": now - 600, "exp": now - 300}
        ),
        "not yet valid": fake_jira.app_delivery(sample, url=URL, claims={"nbf": now + 300}),
        "exp not a number": fake_jira.app_delivery(sample, url=URL, claims={"exp": "soon"}),
        "no token": unsigned,
        "not a JWT": _with_bearer(unsigned, "not-a-token"),
        "alg none": _with_bearer(unsigned, _unsigned_token({"exp": now + 60})),
        # joserfc reads a "crit" header before the signature and raised TypeError on
        # one that is not a list of names: a stranger's token was a 500.
        **{
            f"crit {crit!r}": _with_bearer(
                unsigned, _unsigned_token({}, header={"alg": "HS256", "crit": crit})
            )
            for crit in (5, None, [5], [["exp"]])
        },
        "nbf beyond a float": fake_jira.app_delivery(sample, url=URL, claims={"nbf": 10**400}),
        "exp NaN": _with_bearer(unsigned, _signed_token(b'{"exp": NaN}')),
        "another alg": _with_bearer(
            unsigned,
            fake_jira.hs256_token(fake_jira.CLIENT_SECRET, {"exp": now + 60}, algorithm="HS512"),
        ),
    }
    async with open_web(web_settings(tmp_path)) as web:
        made = await web.client.post(
            f"/api/projects/{PROJECT}/instances",
            json={
                "connectorId": "jira",
                "config": {**JiraScenario().config(jira.base_url), "cloudId": "fake-cloud"},
                "credentials": {
                    "clientId": fake_jira.CLIENT_ID,
                    "clientSecret": fake_jira.CLIENT_SECRET,
                    "accessToken": "an access token",
                    "refreshToken": "a refresh token",
                },
            },
        )
        assert made.status_code == 201, made.text
        for why, delivery in refused.items():
            response = await post(web, delivery)
            assert response.status_code == 401, why
            assert fake_jira.CLIENT_SECRET not in response.text
        assert await stored(web) == []
        assert (await post(web, fake_jira.app_delivery(sample, url=URL))).status_code == 200
        assert len(await stored(web)) == 1
        # An exp no float can hold (JSON numbers have no limit) is a time far ahead: the
        # same delivery again, taken (a duplicate), where adding the skew to it was a 500.
        far = fake_jira.app_delivery(sample, url=URL, claims={"exp": 10**400})
        assert (await post(web, far)).status_code == 200
        assert len(await stored(web)) == 1


def _with_bearer(delivery: WebhookDelivery, token: str) -> WebhookDelivery:
    headers = {**delivery.headers, "Authorization": f"Bearer {token}"}
    return WebhookDelivery(
        delivery.name, delivery.url, delivery.body, headers, delivery.expected_types
    )


def _unsigned_token(claims: dict[str, Any], *, header: dict[str, Any] | None = None) -> str:
    def part(data: dict[str, Any]) -> str:
        return _b64(json.dumps(data).encode())

    return f"{part(header or {'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _signed_token(payload: bytes) -> str:
    """A token signed with the app's client secret over a payload ``json.dumps`` would not
    write (``NaN``, which Python's ``json.loads`` reads)."""
    signed = f"{_b64(json.dumps({'alg': 'HS256'}).encode())}.{_b64(payload)}"
    key = fake_jira.CLIENT_SECRET.encode()
    return f"{signed}.{_b64(hmac.new(key, signed.encode(), hashlib.sha256).digest())}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_the_per_instance_rate_limit_answers_429(tmp_path: Path, jira: JiraFake) -> None:
    async with open_web(web_settings(tmp_path, UCF_WEBHOOK_RPM="2")) as web:
        await _connect(web, jira)
        statuses = [(await post(web, signed(sample))).status_code for sample in samples().values()][
            :3
        ]
        assert statuses == [200, 200, 429]
        # A forged delivery is refused before it can spend the genuine sender's budget.
        forged = signed(samples()["jira:issue_created"]).tampered()
        assert (await post(web, forged)).status_code == 401


async def test_deliveries_the_store_failed_leave_the_senders_allowance_whole(
    tmp_path: Path, jira: JiraFake
) -> None:
    """A delivery charged to the instance's budget, then answered 503 because the signal
    write failed (a full disk), gives its token back: Jira's retries are admitted, not
    refused 429 for the rest of the minute."""
    async with open_web(web_settings(tmp_path, UCF_WEBHOOK_RPM="2")) as web:
        await _connect(web, jira)
        database = web.state.context.settings.data_dir / "ucf.db"
        with contextlib.closing(sqlite3.connect(database)) as conn:
            conn.execute(
                "CREATE TRIGGER test_full BEFORE INSERT ON signals "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
        first, second, third = [signed(sample) for sample in samples().values()][:3]
        failed = [(await post(web, d)).status_code for d in (first, second)]
        with contextlib.closing(sqlite3.connect(database)) as conn:
            conn.execute("DROP TRIGGER test_full")
        retried = [(await post(web, d)).status_code for d in (first, second, third)]
    assert failed == [503, 503]
    assert retried == [200, 200, 429]


async def test_signed_but_unreadable_deliveries_are_400(connected: Web) -> None:
    for body in (b"not json", b"[1]", b"{}", b'{"webhookEvent": "jira:issue_updated"}'):
        response = await post(connected, raw(body))
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "bad_request"


async def test_events_the_connector_does_not_turn_into_signals_are_202(connected: Web) -> None:
    sample = JiraScenario().unknown_event_sample()
    response = await post(connected, signed(sample))
    assert response.status_code == 202
    assert await stored(connected) == []
