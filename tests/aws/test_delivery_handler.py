"""The delivery function: the outbox reaches the pipeline within a tick, an outage loses nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.aws.conftest import CONNECTOR, PROJECT, Lab
from tests.aws.events import LambdaContext, scheduled_event
from tests.service.delivery_support import Pipeline
from ucf.aws.config import AwsConfigError
from ucf.aws.handlers import delivery
from ucf.fakes.github import WEBHOOK_SECRET, GitHubFake
from ucf.fakes.kit import FakeServer, Fault


@pytest.fixture
def pipeline(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    with FakeServer() as server:
        sink = Pipeline(server)
        monkeypatch.setenv("UCF_SINK_HTTP", sink.url)
        yield sink


def deliver_webhook(lab: Lab, number: int) -> None:
    body = json.dumps(
        {
            "action": "opened",
            "issue": {
                "id": 9000 + number,
                "number": number,
                "title": f"Issue {number}",
                "updated_at": f"2025-03-01T12:{number:02d}:00Z",
                "labels": [],
            },
        }
    ).encode()
    mac = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    reply = lab.call(
        "POST",
        f"/api/webhooks/{CONNECTOR}/{PROJECT}",
        body=body,
        headers={
            "content-type": "application/json",
            "x-github-event": "issues",
            "x-github-delivery": f"delivery-{number}",
            "x-hub-signature-256": f"sha256={mac}",
        },
        token=False,
    )
    assert reply.status == 200, reply.body


def tick() -> dict[str, object]:
    return delivery.handler(scheduled_event(datetime.now(UTC)), LambdaContext(timeout_seconds=120))


def test_stored_signals_reach_the_pipeline_once_per_tick(
    lab: Lab, github: GitHubFake, pipeline: Pipeline
) -> None:
    lab.connect_github(github)
    deliver_webhook(lab, 1)
    deliver_webhook(lab, 2)

    first = tick()
    second = tick()

    assert first == {"delivered": {"http": 2}, "errors": {}}
    assert second == {"delivered": {"http": 0}, "errors": {}}
    stored = {signal["id"] for signal in lab.signals()}
    assert sorted(pipeline.signal_ids()) == sorted(stored)


def test_a_refused_batch_is_retried_by_a_later_tick_and_nothing_overtakes_it(
    lab: Lab, github: GitHubFake, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UCF_DELIVERY_LEASE_SECONDS", "2")
    lab.connect_github(github)
    deliver_webhook(lab, 1)
    # 401: the sink's configuration is at fault, so the batch waits (a 422 would park it).
    pipeline.server.inject(Fault.status(401), path="/signals")

    refused = tick()
    deliver_webhook(lab, 2)
    held = tick()  # the refused batch is not due yet: nobody may deliver past it
    time.sleep(4.2)  # its sink lease (twice the lease) has run out
    recovered = tick()

    assert refused["delivered"] == {"http": 0}
    assert "401" in str(refused["errors"])
    assert held["delivered"] == {"http": 0}
    assert recovered == {"delivered": {"http": 2}, "errors": {}}
    oldest_first = [signal["id"] for signal in reversed(lab.signals())]
    assert pipeline.signal_ids() == oldest_first


def test_without_a_sink_the_function_does_nothing(lab: Lab) -> None:
    assert tick() == {"delivered": {}}


def test_a_bad_budget_is_refused_by_name(
    lab: Lab, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UCF_DELIVERY_SECONDS", "soon")

    with pytest.raises(AwsConfigError, match="UCF_DELIVERY_SECONDS"):
        tick()
