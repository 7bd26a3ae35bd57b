"""The AWS deployment end to end: API → webhook → schedule → SQS → poll worker → signals.

Every function is invoked as Lambda invokes it, against DynamoDB (dynalite),
Secrets Manager and SQS (moto's server) and a GitHub fake on loopback.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.aws.conftest import CONNECTOR, PROJECT, Lab
from tests.aws.events import LambdaContext, scheduled_event
from ucf.aws.handlers import poll_worker, schedule
from ucf.aws.polling import PollRequest
from ucf.catalogue import builtin_descriptors
from ucf.core.descriptor import ConnectorDescriptor
from ucf.fakes.github import GitHubFake, GitHubIssuesScenario, sign_delivery

GITHUB = ConnectorDescriptor.model_validate(
    next(d for d in builtin_descriptors() if d["id"] == CONNECTOR)
)


def tick(minutes: int = 0) -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=minutes)


def test_webhook_and_scheduled_poll_become_signals_readable_through_the_api(
    lab: Lab, github: GitHubFake
) -> None:
    lab.connect_github(github)

    # A webhook, as GitHub sends it, base64-encoded by API Gateway.
    sample = GitHubIssuesScenario().webhook_samples()[0]
    delivery = sign_delivery(sample, url=f"https://example.invalid/api/webhooks/{CONNECTOR}")
    received = lab.call(
        "POST",
        f"/api/webhooks/{CONNECTOR}/{PROJECT}",
        body=delivery.body,
        headers=dict(delivery.headers),
        token=False,
        base64_body=True,
    )
    assert received.status == 200, received.body

    # The schedule enqueues the instance once per tick, however often the tick is delivered.
    event = scheduled_event(tick())
    first = schedule.handler(event, LambdaContext(function_name="ucf-schedule"))
    again = schedule.handler(event, LambdaContext(function_name="ucf-schedule"))
    messages = lab.receive()

    assert first == {"due": 1, "enqueued": 1, "nextDueAt": None}
    assert again["due"] == 1
    [message] = messages
    request = PollRequest(PROJECT, CONNECTOR)
    assert json.loads(message["Body"]) == {"projectId": PROJECT, "connectorId": CONNECTOR}
    assert message["Attributes"]["MessageGroupId"] == request.group_id
    assert message["Attributes"]["MessageDeduplicationId"] == request.deduplication_id(
        event["time"]
    )

    # The worker polls the fake across its pages; the message is done with.
    response = poll_worker.handler(lab.sqs_event(messages), LambdaContext())
    lab.settle(messages, response)

    assert response == {"batchItemFailures": []}
    assert lab.receive() == []
    assert GITHUB.polling is not None
    window = timedelta(seconds=GITHUB.polling.initial_lookback_seconds)
    expected = github.ids_changed_since(datetime.now(UTC) - window)
    signals = lab.signals()
    expected_numbers = {i.number for i in github.data.items.values() if str(i.id) in expected}
    polled = [s["raw"]["number"] for s in signals if "action" not in s["raw"]]
    hooked = [s for s in signals if "action" in s["raw"]]
    assert len(expected_numbers) > 100, "the fake should serve several pages"
    assert sorted(polled) == sorted(expected_numbers)
    assert len(hooked) == 1
    assert hooked[0]["type"] == "issue_created"

    status = lab.call("GET", f"/api/projects/{PROJECT}/instances/{CONNECTOR}/status").json()
    assert status["lastSyncAt"] is not None
    assert status["consecutiveFailures"] == 0

    # Polled a moment ago: the next tick finds nothing due, and enqueues nothing.
    later = schedule.handler(scheduled_event(tick(1)), LambdaContext())
    assert later["due"] == 0
    assert later["nextDueAt"] is not None
    assert lab.receive() == []
