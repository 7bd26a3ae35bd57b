"""The poll worker: partial batch failures, and one poller per instance across Lambdas."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.aws.conftest import CONNECTOR, PROJECT, Lab
from tests.aws.events import LambdaContext, scheduled_event
from tests.service.delivery_support import Gate
from ucf.aws.container import Container
from ucf.aws.handlers import poll_worker, schedule
from ucf.aws.handlers.poll_worker import (
    FETCH_MARGIN_SECONDS,
    STOP_MARGIN_SECONDS,
    PollWorkerFunction,
)
from ucf.aws.polling import PollRequest
from ucf.fakes.github import GOOD_TOKEN, WEBHOOK_SECRET, GitHubFake
from ucf.fakes.kit import Fault
from ucf.stores import open_store
from ucf.stores.models import InstanceRecord

ISSUES = "/repos/{owner}/{repo}/issues"


def polled_issue_signals(lab: Lab, project: str) -> int:
    return sum(1 for s in lab.signals(project) if "action" not in s["raw"])


async def instance_record(lab: Lab, project: str) -> InstanceRecord:
    """The instance as stored (its status page reads the secret, which is broken here)."""
    async with open_store(lab.environ["UCF_STORE"]) as store:
        record = await store.instances.get(project, CONNECTOR)
    assert record is not None
    return record


def test_one_broken_instance_is_recorded_in_its_health_and_only_junk_is_redelivered(
    lab: Lab, github: GitHubFake
) -> None:
    """A poll that fails inside ucf (here a secret edited by hand) is the instance's
    health, with its backoff, not a message to redeliver: on a FIFO queue a redelivered
    message holds its group, the instance, for the queue's 30-minute visibility timeout,
    while every tick adds another request behind it. A body that is no poll request
    names no instance: that one is redelivered (and dead-lettered)."""
    lab.connect_github(github, "healthy")
    before = lab.credential_secrets()
    lab.connect_github(github, "broken")
    [broken_secret] = lab.credential_secrets() - before
    # Someone edits the secret by hand in the console: ucf can no longer read it.
    lab.secretsmanager.put_secret_value(SecretId=broken_secret, SecretString="hunter2")

    now = datetime.now(UTC)
    tick = schedule.handler(scheduled_event(now), LambdaContext())
    lab.sqs.send_message(
        QueueUrl=lab.queue_url,
        MessageBody="poll everything please",
        MessageGroupId="junk",
        MessageDeduplicationId="junk-1",
    )
    messages = lab.receive()
    by_body = {m["Body"]: m["MessageId"] for m in messages}
    response = poll_worker.handler(lab.sqs_event(messages), LambdaContext())
    lab.settle(messages, response)
    broken = asyncio.run(instance_record(lab, "broken"))
    next_tick = schedule.handler(scheduled_event(now + timedelta(minutes=1)), LambdaContext())

    assert tick["enqueued"] == 2
    assert len(messages) == 3
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    assert failed == {by_body["poll everything please"]}
    assert polled_issue_signals(lab, "healthy") > 100
    assert polled_issue_signals(lab, "broken") == 0
    assert broken.consecutive_failures == 1
    assert "not a ucf credential set" in (broken.last_error or "")
    assert next_tick["due"] == 0, "the failed instance waits out its backoff"
    assert "hunter2" not in str(response) + str(broken)


def test_an_instance_whose_secret_is_unreadable_still_shows_its_health(
    lab: Lab, github: GitHubFake
) -> None:
    """The failure recorded in the health is for the operator to read: the status and
    the project's instance list answered 500 as long as the secret could not be read."""
    lab.connect_github(github, "broken")
    [secret] = lab.credential_secrets()
    lab.secretsmanager.put_secret_value(SecretId=secret, SecretString="hunter2")
    schedule.handler(scheduled_event(datetime.now(UTC)), LambdaContext())
    messages = lab.receive()
    poll_worker.handler(lab.sqs_event(messages), LambdaContext())

    status = lab.call("GET", f"/api/projects/broken/instances/{CONNECTOR}/status")
    listed = lab.call("GET", "/api/projects/broken/instances")

    assert status.status == 200, status.body
    assert "not a ucf credential set" in status.json()["lastError"]
    assert listed.status == 200, listed.body
    [instance] = listed.json()["items"]
    assert instance["credentials"] == {}
    assert b"hunter2" not in status.body + listed.body


def test_an_instance_whose_secret_is_unreadable_is_repaired_by_storing_its_credentials_again(
    lab: Lab, github: GitHubFake
) -> None:
    """The error says "store the connector's credentials again through ucf", and doing
    so answered 500: the update merged the new credentials into the unreadable ones."""
    lab.connect_github(github, "broken")
    [secret] = lab.credential_secrets()
    lab.secretsmanager.put_secret_value(SecretId=secret, SecretString="hunter2")
    path = f"/api/projects/broken/instances/{CONNECTOR}"

    # Nothing of the old entry can be kept: the credentials given must be complete.
    partial = lab.call("PATCH", path, json_body={"credentials": {"webhookSecret": "s" * 20}})
    assert partial.status == 422, partial.body
    assert b"credentials.token" in partial.body
    repaired = lab.call(
        "PATCH",
        path,
        json_body={"credentials": {"token": GOOD_TOKEN, "webhookSecret": WEBHOOK_SECRET}},
    )

    assert repaired.status == 200, repaired.body
    instance = repaired.json()
    assert set(instance["credentials"]) == {"token", "webhookSecret"}
    assert instance["webhookUrl"]  # a new hook id: the old URL could not be verified
    shown = lab.call("GET", path)
    assert shown.status == 200, shown.body
    assert shown.json()["credentials"] == instance["credentials"]


def test_an_upstream_failure_is_recorded_as_health_not_redelivered(
    lab: Lab, github: GitHubFake
) -> None:
    lab.connect_github(github)
    github.server.inject(Fault.status(401, body={"message": "Bad credentials"}), path=ISSUES)

    schedule.handler(scheduled_event(datetime.now(UTC)), LambdaContext())
    messages = lab.receive()
    response = poll_worker.handler(lab.sqs_event(messages), LambdaContext())
    status = lab.call("GET", f"/api/projects/{PROJECT}/instances/{CONNECTOR}/status").json()

    assert len(messages) == 1
    assert response == {"batchItemFailures": []}
    assert status["consecutiveFailures"] == 1
    assert status["lastError"]


def test_a_request_for_a_disconnected_instance_is_dropped(lab: Lab, github: GitHubFake) -> None:
    lab.connect_github(github)
    schedule.handler(scheduled_event(datetime.now(UTC)), LambdaContext())
    messages = lab.receive()
    deleted = lab.call("DELETE", f"/api/projects/{PROJECT}/instances/{CONNECTOR}")

    response = poll_worker.handler(lab.sqs_event(messages), LambdaContext())

    assert deleted.status == 204
    assert len(messages) == 1
    assert response == {"batchItemFailures": []}
    assert github.server.requests_to(ISSUES) == []


def test_a_request_for_a_connector_that_is_gone_is_dropped_and_leaves_no_lease_held(
    lab: Lab,
) -> None:
    """The worker tries for the lease beside its connector read: with no connector there
    is nothing to poll, and the lease it took is released at once, not left to lapse."""
    import boto3

    body = PollRequest(PROJECT, "no-such-connector").body()
    message = {"MessageId": "m-gone", "Body": body, "ReceiptHandle": "r", "MD5OfBody": "-"}

    response = poll_worker.handler(lab.sqs_event([message]), LambdaContext())

    assert response == {"batchItemFailures": []}
    dynamodb = boto3.client(
        "dynamodb", region_name="us-east-1", endpoint_url=lab.endpoints.dynamodb
    )
    try:
        lease = dynamodb.get_item(
            TableName=lab.table,
            Key={"PK": {"S": f"LEASE#poll:{PROJECT}:no-such-connector"}, "SK": {"S": "LEASE"}},
            ConsistentRead=True,
        )
    finally:
        dynamodb.close()
    assert "Item" not in lease


def test_a_poll_near_lambdas_deadline_stops_after_a_stored_page_and_the_next_tick_goes_on(
    lab: Lab, github: GitHubFake
) -> None:
    lab.connect_github(github)
    now = datetime.now(UTC)
    schedule.handler(scheduled_event(now), LambdaContext())
    messages = lab.receive()
    # Invoked with no more time than the stop margin: stop after the first stored page.
    hurried = poll_worker.handler(
        lab.sqs_event(messages), LambdaContext(timeout_seconds=STOP_MARGIN_SECONDS)
    )
    lab.settle(messages, hurried)
    after_first_page = polled_issue_signals(lab, PROJECT)

    next_tick = schedule.handler(scheduled_event(now + timedelta(minutes=1)), LambdaContext())
    messages = lab.receive()
    finished = poll_worker.handler(lab.sqs_event(messages), LambdaContext())
    numbers = [s["raw"]["number"] for s in lab.signals() if "action" not in s["raw"]]

    assert hurried == finished == {"batchItemFailures": []}
    assert next_tick["due"] == 1, "a stopped poll leaves its instance due"
    assert 0 < after_first_page < len(numbers)
    assert len(numbers) == len(set(numbers)), "the second poll went on from the checkpoint"
    assert len(github.server.requests_to(ISSUES)) == 2  # one first page per poll


def test_a_slow_upstream_never_outlasts_the_invocation_nor_takes_its_batch_down(
    lab: Lab, github: GitHubFake
) -> None:
    """A fetch still running when the invocation's time is nearly up is abandoned: Lambda
    would otherwise cut the whole invocation off, every poll of the batch with it, and
    SQS would hold all their messages back for the visibility timeout (30 minutes)."""
    with GitHubFake(datetime.now(UTC)) as slow:
        lab.connect_github(github, "healthy")
        lab.connect_github(slow, "slow")
        slow.server.inject(Fault.slow(40.0), path=ISSUES)
        schedule.handler(scheduled_event(datetime.now(UTC)), LambdaContext())
        messages = lab.receive()
        invocation = LambdaContext(timeout_seconds=FETCH_MARGIN_SECONDS + 2.0)

        response = poll_worker.handler(lab.sqs_event(messages), invocation)
        answered_with = invocation.get_remaining_time_in_millis() / 1000

    status = lab.call("GET", f"/api/projects/slow/instances/{CONNECTOR}/status").json()
    assert len(messages) == 2
    assert answered_with > 0, "Lambda would have cut the invocation off"
    assert response == {"batchItemFailures": []}
    assert polled_issue_signals(lab, "healthy") > 0
    assert status["consecutiveFailures"] == 1
    assert "the time its invocation has left" in status["lastError"]


def test_a_poll_whose_turn_comes_with_no_time_left_is_left_due_not_failed(
    lab: Lab, github: GitHubFake
) -> None:
    lab.connect_github(github)
    now = datetime.now(UTC)
    schedule.handler(scheduled_event(now), LambdaContext())
    messages = lab.receive()

    late = LambdaContext(timeout_seconds=FETCH_MARGIN_SECONDS / 2)
    response = poll_worker.handler(lab.sqs_event(messages), late)
    lab.settle(messages, response)
    status = lab.call("GET", f"/api/projects/{PROJECT}/instances/{CONNECTOR}/status").json()
    next_tick = schedule.handler(scheduled_event(now + timedelta(minutes=1)), LambdaContext())

    assert response == {"batchItemFailures": []}
    assert github.server.requests_to(ISSUES) == []
    assert status["consecutiveFailures"] == 0, "no time to poll is not the upstream's failure"
    assert next_tick["due"] == 1


def wait_for(condition: Any, what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_two_lambdas_given_one_instance_never_poll_it_at_once(lab: Lab, github: GitHubFake) -> None:
    lab.connect_github(github)
    gate = Gate()
    github.server.inject(gate, path=ISSUES)
    schedule.handler(scheduled_event(datetime.now(UTC)), LambdaContext())
    [message] = lab.receive()
    # The same message reaches two execution environments (a standard queue, or a
    # visibility timeout that ran out): each has its own container and worker id.
    first = PollWorkerFunction(Container("poll-worker-a"))
    second = PollWorkerFunction(Container("poll-worker-b"))
    event = lab.sqs_event([message])
    answers: dict[str, dict[str, Any]] = {}
    running = threading.Thread(target=lambda: answers.update(a=first(event, LambdaContext())))
    running.start()
    try:
        wait_for(lambda: len(github.server.requests_to(ISSUES)) == 1, "the first poll to start")
        answers["b"] = second(event, LambdaContext())  # while the first holds the lease
        requests_while_held = len(github.server.requests_to(ISSUES))
    finally:
        gate.opened.set()
        running.join(timeout=60)
        first.container.close()
        second.container.close()

    assert answers["a"] == answers["b"] == {"batchItemFailures": []}
    assert requests_while_held == 1, "the second Lambda polled while the first held the lease"
    assert len(github.server.requests_to(ISSUES)) == 1
    assert polled_issue_signals(lab, PROJECT) > 100
