"""SES mail through the real app: ``POST /api/webhooks/ses/{projectId}`` as SNS posts it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from tests.web.conftest import Web, open_web, web_settings
from ucf.fakes.scenario import WebhookDelivery
from ucf.fakes.sns import TOPIC_ARN, Mail, SesScenario, SnsFake, received_notification
from ucf.native.ses.sns import TEST_ORIGIN_ENV

PROJECT = "mail"
PATH = f"/api/webhooks/ses/{PROJECT}"
NOW = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def sns() -> Iterator[SnsFake]:
    with SnsFake(NOW) as fake:
        yield fake


@pytest_asyncio.fixture(loop_scope="function")
async def web(tmp_path: Path, sns: SnsFake, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Web]:
    monkeypatch.setenv(TEST_ORIGIN_ENV, sns.base_url)  # what tests and ucf sandbox set
    async with open_web(web_settings(tmp_path)) as opened:
        made = await opened.client.post(
            f"/api/projects/{PROJECT}/instances",
            json={"connectorId": "ses", "config": {"topicArn": TOPIC_ARN}, "credentials": {}},
        )
        assert made.status_code == 201, made.text
        # The path AWS is given (issue 12): the shared route, which takes SNS-verified deliveries.
        assert made.json()["sharedWebhookUrl"].endswith(PATH)
        yield opened


async def post(web: Web, delivery: WebhookDelivery) -> tuple[int, dict[str, object]]:
    response = await web.anonymous.post(PATH, content=delivery.body, headers=dict(delivery.headers))
    try:
        body = response.json()
    except ValueError:
        body = {}
    return response.status_code, body if isinstance(body, dict) else {}


def mail(sns: SnsFake, subject: str, message_id: str) -> WebhookDelivery:
    notification = received_notification(Mail(subject=subject), message_id=message_id, at=NOW)
    return sns.delivery(
        sns.notification(json.dumps(notification), at=NOW), f"http://ucf.test{PATH}"
    )


async def test_the_subscription_is_confirmed_then_mail_is_stored_once(
    web: Web, sns: SnsFake
) -> None:
    confirmation = sns.delivery(sns.confirmation(at=NOW), f"http://ucf.test{PATH}")
    status, _ = await post(web, confirmation)
    assert status == 200
    assert len(sns.confirmations) == 1

    delivery = mail(sns, "Printer on fire, see OPS-7", "0000014a-gw-1")
    assert await post(web, delivery) == (200, {"received": 1, "inserted": 1, "duplicates": 0})
    assert await post(web, delivery) == (200, {"received": 1, "inserted": 0, "duplicates": 1})

    page = await web.client.get(f"/api/projects/{PROJECT}/signals")
    (signal,) = page.json()["items"]
    assert signal["source"] == "ses"
    assert signal["type"] == "email_received"
    assert signal["summary"] == "Printer on fire, see OPS-7"
    assert signal["metadata"]["relatedTickets"] == ["OPS-7"]


async def test_tampered_or_foreign_topic_messages_are_401_and_store_nothing(
    web: Web, sns: SnsFake
) -> None:
    tampered = SesScenario().tamper(mail(sns, "Hello", "0000014a-gw-2"))
    assert (await post(web, tampered))[0] == 401
    notification = received_notification(Mail(subject="x"), message_id="0000014a-gw-3", at=NOW)
    other = sns.notification(
        json.dumps(notification), at=NOW, topic_arn="arn:aws:sns:eu-west-1:123456789012:other"
    )
    assert (await post(web, sns.delivery(other, PATH)))[0] == 401
    page = await web.client.get(f"/api/projects/{PROJECT}/signals")
    assert page.json()["items"] == []
    metrics = (await web.client.get("/metrics")).text  # private unless configured public
    assert 'ucf_webhook_verification_failures_total{connector="ses"' in metrics


async def test_an_unsubscribe_confirmation_is_202_and_a_bad_body_is_401(
    web: Web, sns: SnsFake
) -> None:
    unsubscribed = sns.confirmation(at=NOW, kind="UnsubscribeConfirmation")
    assert (await post(web, sns.delivery(unsubscribed, PATH)))[0] == 202
    garbage = WebhookDelivery("garbage", PATH, b"{not json", {"Content-Type": "text/plain"})
    assert (await post(web, garbage))[0] == 401
    # Nested past json's recursion limit (20 KB): read before anything is verified.
    deep = WebhookDelivery("deep", PATH, b"[" * 10_000 + b"]" * 10_000, {})
    assert (await post(web, deep))[0] == 401


async def test_without_the_test_origin_the_fakes_certificate_is_not_trusted(
    tmp_path: Path, sns: SnsFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TEST_ORIGIN_ENV, raising=False)
    async with open_web(web_settings(tmp_path)) as web:
        await web.client.post(
            f"/api/projects/{PROJECT}/instances",
            json={"connectorId": "ses", "config": {"topicArn": TOPIC_ARN}, "credentials": {}},
        )
        sns.server.reset()
        assert (await post(web, mail(sns, "Hello", "0000014a-gw-4")))[0] == 401
        assert sns.server.requests == []  # refused on the host rule, before any fetch
