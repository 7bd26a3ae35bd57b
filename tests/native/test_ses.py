"""The ``ses`` connector: SNS message security and SES mail as signals, against real parts.

The SNS side runs against :class:`ucf.fakes.sns.SnsFake`, a real loopback server
that signs messages with its own key and serves its certificate; AWS's own
published messages (from aws-php-sns-message-validator's tests) prove the
verifier accepts what real SNS signs, with the production host rule. Large mail
is read from S3 on moto's standalone server, through boto3.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.stores.moto_server import AWS_ENV_TO_CLEAR, DUMMY_AWS_ENV, running_moto_server
from ucf.catalogue import builtin_descriptors
from ucf.core.validation import parse_descriptor
from ucf.fakes.kit import FakeRequest, FakeResponse, FakeServer
from ucf.fakes.sns import TOPIC_ARN, Mail, SnsFake, received_notification
from ucf.native import Handshake, Malformed, MappingResult, Refused, Unhandled, Verified
from ucf.native.ses import s3 as s3_module
from ucf.native.ses.mail import read_mail
from ucf.native.ses.notification import related_tickets
from ucf.native.ses.s3 import S3MailStore
from ucf.native.ses.sns import (
    AwsSnsEndpoints,
    LoopbackTestEndpoints,
    PinnedCertificate,
    SnsMessage,
    SnsRejected,
    SnsVerifier,
    endpoints_from_environment,
)
from ucf.native.ses.source import SesSource
from ucf.native.ses.webhooks import SesWebhooks
from ucf.runtime.connection import connect
from ucf.runtime.http import HttpSettings, create_client
from ucf.runtime.native import WebhookContext, WebhookRequest
from ucf.runtime.sources import SourceContext
from ucf.runtime.ssrf import EgressPolicy

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sns"
AWS_VECTORS = json.loads((FIXTURES / "aws-validator-vectors.json").read_text())["messages"]
AWS_CERT = (FIXTURES / "aws-signing-cert-2021.pem").read_bytes()
NOW = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
PROJECT = "mail"
SETTINGS = HttpSettings(connect_timeout=2, read_timeout=2, max_retries=0)
DESCRIPTOR = parse_descriptor(next(d for d in builtin_descriptors() if d["id"] == "ses"))


@pytest.fixture(scope="module")
def sns() -> Iterator[SnsFake]:
    with SnsFake(NOW) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh(sns: SnsFake) -> None:
    sns.server.reset()
    sns.confirmations.clear()


@pytest_asyncio.fixture(loop_scope="function")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with create_client(SETTINGS, EgressPolicy(frozenset({"127.0.0.1"}))) as http:
        yield http


def context(client: httpx.AsyncClient, *, topic: str = TOPIC_ARN, **config: str) -> WebhookContext:
    settings = {"topicArn": topic, **config}

    async def upstream() -> SourceContext:
        return connect(SesSource(DESCRIPTOR), credentials={}, config=settings, client=client)

    return WebhookContext(
        project_id=PROJECT,
        connector_id="ses",
        credentials={},
        config=settings,
        now=NOW,
        upstream=upstream,
    )


def handler(sns: SnsFake) -> SesWebhooks:
    return SesWebhooks.for_endpoints(LoopbackTestEndpoints(sns.base_url))


def request(message: dict[str, Any], **headers: str) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        body=json.dumps(message).encode(),
        headers={"x-amz-sns-message-type": message.get("Type", ""), **headers},
    )


def mail_message(sns: SnsFake, mail: Mail | None = None, **options: Any) -> dict[str, str]:
    version = options.pop("version", "1")
    notification = received_notification(
        mail or Mail(subject="Export fails for ACME-142"),
        message_id=options.pop("message_id", "0000014a-mail-0001"),
        at=NOW,
        **options,
    )
    return sns.notification(json.dumps(notification), at=NOW, version=version)


async def deliver(
    sns: SnsFake, client: httpx.AsyncClient, message: dict[str, Any], **config: str
) -> tuple[Any, MappingResult | Unhandled | None]:
    hook, ctx, req = handler(sns), context(client, **config), request(message)
    verdict = await hook.verify(req, ctx)
    if not isinstance(verdict, Verified):
        return verdict, None
    return verdict, await hook.signals(req, ctx)


def only_signal(result: Any) -> Any:
    assert isinstance(result, MappingResult), result
    assert not result.errors, result.errors
    (mapped,) = result.signals
    return mapped


# --------------------------------------------------------------------------- AWS's own messages


@pytest.mark.parametrize(
    "vector",
    AWS_VECTORS,
    ids=[f"v{v['SignatureVersion']}-subject-{'Subject' in v}" for v in AWS_VECTORS],
)
async def test_messages_signed_by_real_sns_verify_under_the_production_host_rule(
    vector: dict[str, str], client: httpx.AsyncClient
) -> None:
    verifier = SnsVerifier(AwsSnsEndpoints(), PinnedCertificate(AWS_CERT))
    message = SnsMessage.parse(json.dumps(vector).encode())
    await verifier.verify(message, topic_arn=vector["TopicArn"], context=context(client))


@pytest.mark.parametrize(
    ("field", "value"),
    [("Message", "Hello world!"), ("Timestamp", "2022-07-28T21:23:58.318Z"), ("Subject", "Hi")],
)
async def test_a_real_message_with_any_signed_field_changed_is_refused(
    field: str, value: str, client: httpx.AsyncClient
) -> None:
    vector = {**AWS_VECTORS[0], field: value}
    verifier = SnsVerifier(AwsSnsEndpoints(), PinnedCertificate(AWS_CERT))
    with pytest.raises(SnsRejected) as refused:
        await verifier.verify(
            SnsMessage.parse(json.dumps(vector).encode()),
            topic_arn=vector["TopicArn"],
            context=context(client),
        )
    assert refused.value.code == "signature_mismatch"


async def test_lambda_style_names_and_a_null_subject_are_read_as_the_validators_read_them(
    client: httpx.AsyncClient,
) -> None:
    vector = dict(AWS_VECTORS[0])
    vector["SigningCertUrl"] = vector.pop("SigningCertURL")
    vector["Subject"] = None
    verifier = SnsVerifier(AwsSnsEndpoints(), PinnedCertificate(AWS_CERT))
    await verifier.verify(
        SnsMessage.parse(json.dumps(vector).encode()),
        topic_arn=vector["TopicArn"],
        context=context(client),
    )


# --------------------------------------------------------------------------- where certificates come from


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-2.amazonaws.com/SimpleNotificationService-1.pem",
        "https://evil.example/SimpleNotificationService-1.pem",
        "https://sns.us-east-2.amazonaws.com.evil.example/SimpleNotificationService-1.pem",
        "https://s3.amazonaws.com/sns.us-east-2.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-east-2.amazonaws.com:8443/SimpleNotificationService-1.pem",
        "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-1.pem?x=1",
        "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-1.txt",
        "https://sns.us.amazonaws.com/SimpleNotificationService-1.pem",
        "not a url",
    ],
)
def test_certificate_urls_off_an_sns_https_host_are_refused(url: str) -> None:
    assert AwsSnsEndpoints().certificate_url_problem(url) is not None


@pytest.mark.parametrize(
    "host",
    [
        "sns.us-east-1.amazonaws.com",
        "sns.us-gov-west-1.amazonaws.com",
        "sns.cn-north-1.amazonaws.com.cn",
    ],
)
def test_regional_govcloud_and_china_sns_hosts_are_accepted(host: str) -> None:
    rule = AwsSnsEndpoints()
    assert rule.certificate_url_problem(f"https://{host}/SimpleNotificationService-abc.pem") is None
    assert rule.subscribe_url_problem(f"https://{host}/?Action=ConfirmSubscription&Token=t") is None


async def test_a_certificate_url_on_a_foreign_host_is_refused_before_any_fetch(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    with SnsFake(NOW) as other:  # a second "SNS" on another port: not the trusted origin
        message = other.notification("{}", at=NOW)
        verdict, _ = await deliver(sns, client, message)
        assert isinstance(verdict, Refused)
        assert verdict.code == "certificate_url"
        assert other.server.requests == []


def test_the_test_origin_setting_trusts_only_loopback() -> None:
    assert isinstance(
        endpoints_from_environment({"UCF_SNS_TEST_ORIGIN": "http://127.0.0.1:9"}),
        LoopbackTestEndpoints,
    )
    assert isinstance(
        endpoints_from_environment({"UCF_SNS_TEST_ORIGIN": "https://attacker.example"}),
        AwsSnsEndpoints,
    )
    assert isinstance(endpoints_from_environment({}), AwsSnsEndpoints)


async def test_the_certificate_is_fetched_once_and_then_cached(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    hook = handler(sns)
    for number in range(3):
        message = mail_message(sns, message_id=f"cache-{number}")
        assert isinstance(await hook.verify(request(message), context(client)), Verified)
    assert len(sns.server.requests_to("/SimpleNotificationService-{id}.pem")) == 1


# --------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("version", ["1", "2"])
async def test_signature_versions_1_and_2_verify(
    version: str, sns: SnsFake, client: httpx.AsyncClient
) -> None:
    verdict, result = await deliver(sns, client, mail_message(sns, version=version))
    assert isinstance(verdict, Verified)
    assert only_signal(result).signal.type == "email_received"


async def test_an_unknown_signature_version_is_refused(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    message = {**mail_message(sns), "SignatureVersion": "3"}
    verdict, _ = await deliver(sns, client, message)
    assert isinstance(verdict, Refused)
    assert verdict.code == "signature_version"


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("Message", lambda v: v.replace("ACME-142", "ACME-143")),
        ("Signature", lambda v: ("A" if v[0] != "A" else "B") + v[1:]),
        ("Subject", lambda v: v + "!"),
        ("MessageId", lambda v: v[:-1] + ("0" if v[-1] != "0" else "1")),
    ],
)
async def test_a_tampered_message_is_refused(
    field: str, change: Any, sns: SnsFake, client: httpx.AsyncClient
) -> None:
    message = mail_message(sns)
    message[field] = change(message[field])
    verdict, _ = await deliver(sns, client, message)
    assert isinstance(verdict, Refused)
    assert verdict.code == "signature_mismatch"


async def test_a_validly_signed_message_of_another_topic_is_refused_without_fetching(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    other = "arn:aws:sns:eu-west-1:123456789012:somebody-elses-topic"
    message = sns.notification("{}", at=NOW, topic_arn=other)
    verdict, _ = await deliver(sns, client, message)
    assert isinstance(verdict, Refused)
    assert verdict.code == "wrong_topic"
    assert sns.server.requests == []


async def test_a_message_type_header_that_contradicts_the_body_is_refused(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    message = mail_message(sns)
    verdict = await handler(sns).verify(
        request(message, **{"x-amz-sns-message-type": "SubscriptionConfirmation"}),
        context(client),
    )
    assert isinstance(verdict, Refused)
    assert verdict.code == "type_mismatch"


_TOO_DEEP = b"[" * 10_000 + b"]" * 10_000
"""Nested past json's recursion limit: its parser raises RecursionError, not ValueError."""


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"Type": "Notification"}', _TOO_DEEP])
async def test_bodies_that_are_not_sns_messages_are_refused(
    body: bytes, sns: SnsFake, client: httpx.AsyncClient
) -> None:
    verdict = await handler(sns).verify(
        WebhookRequest(method="POST", body=body, headers={}), context(client)
    )
    assert isinstance(verdict, Refused)
    assert verdict.code == "malformed"


# --------------------------------------------------------------------------- subscriptions


async def test_a_valid_subscription_confirmation_is_confirmed_then_answered_200(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    message = sns.confirmation(at=NOW, version="2")
    verdict = await handler(sns).verify(request(message), context(client))
    assert isinstance(verdict, Handshake)
    assert verdict.response.status == 200
    assert [c.token for c in sns.confirmations] == [message["Token"]]


async def test_a_tampered_subscription_confirmation_is_never_confirmed(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    message = sns.confirmation(at=NOW)
    message["SubscribeURL"] += "&extra=1"
    verdict = await handler(sns).verify(request(message), context(client))
    assert isinstance(verdict, Refused)
    assert sns.confirmations == []
    assert sns.server.requests_to("/") == []


async def test_a_signed_confirmation_whose_subscribe_url_is_elsewhere_is_not_followed(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    with SnsFake(NOW) as elsewhere:
        message = sns.confirmation(
            at=NOW, subscribe_url=elsewhere.server.url("/?Action=ConfirmSubscription&Token=x")
        )
        verdict = await handler(sns).verify(request(message), context(client))
        assert isinstance(verdict, Refused)
        assert verdict.code == "subscribe_url"
        assert elsewhere.server.requests == []


async def test_a_confirmation_for_another_topic_is_not_confirmed(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    message = sns.confirmation(at=NOW)
    verdict = await handler(sns).verify(
        request(message), context(client, topic="arn:aws:sns:eu-west-1:123456789012:other")
    )
    assert isinstance(verdict, Refused)
    assert sns.confirmations == []


async def test_an_unsubscribe_confirmation_is_verified_and_acknowledged_without_a_signal(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    message = sns.confirmation(at=NOW, kind="UnsubscribeConfirmation")
    verdict, result = await deliver(sns, client, message)
    assert isinstance(verdict, Verified)
    assert result == Unhandled("UnsubscribeConfirmation")
    assert sns.confirmations == []  # ucf never re-subscribes by itself


async def test_notifications_that_are_not_received_mail_are_acknowledged_and_ignored(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    message = sns.notification(
        json.dumps({"notificationType": "AMAZON_SES_SETUP_NOTIFICATION"}), at=NOW
    )
    _, result = await deliver(sns, client, message)
    assert result == Unhandled("AMAZON_SES_SETUP_NOTIFICATION")


async def test_a_signed_message_nested_too_deeply_is_malformed_not_a_crash(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    message = sns.notification(_TOO_DEEP.decode(), at=NOW)  # signed, so verified
    with pytest.raises(Malformed, match="not JSON"):
        await deliver(sns, client, message)


# --------------------------------------------------------------------------- the mail


@pytest.mark.parametrize("encoding", ["BASE64", "UTF8", None])
async def test_content_is_read_in_either_encoding(
    encoding: str | None, sns: SnsFake, client: httpx.AsyncClient
) -> None:
    mail = Mail(subject="Grüße: Export fails", text="Der Export schlägt fehl.\n")
    _, result = await deliver(sns, client, mail_message(sns, mail, encoding=encoding))
    signal = only_signal(result).signal
    assert signal.summary == "Grüße: Export fails"
    assert signal.raw["text"] == "Der Export schlägt fehl."
    assert signal.raw["content"] == "included"
    assert signal.raw["bodyFormat"] == "text"


async def test_the_text_part_is_preferred_over_html(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    mail = Mail(subject="Both", text="plain words", html="<p>html words</p>")
    _, result = await deliver(sns, client, mail_message(sns, mail))
    assert only_signal(result).signal.raw["text"] == "plain words"


async def test_html_only_mail_becomes_readable_text(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    mail = Mail(
        subject="Digest",
        text=None,
        html="<html><head><style>p{color:red}</style></head><body><h1>Digest</h1>"
        "<p>Five things <b>this&nbsp;week</b>.</p><script>alert(1)</script></body></html>",
    )
    _, result = await deliver(sns, client, mail_message(sns, mail))
    raw = only_signal(result).signal.raw
    assert raw["bodyFormat"] == "html"
    assert "Five things this week." in raw["text"]
    assert "Digest" in raw["text"]
    for markup in ("<", "color:red", "alert"):
        assert markup not in raw["text"]


def test_an_html_body_that_decodes_into_a_lone_surrogate_is_still_read() -> None:
    """Anyone can send this: UTF-7's ``+2AA-`` decodes to a lone surrogate, which made the
    HTML-to-text step raise and the whole mail be refused as unmappable."""
    mime = (
        b"From: a@example.com\r\nTo: support@example.com\r\nSubject: x\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-7\r\n\r\n"
        b"<p>Export fails +2AA- here</p>\r\n"
    )
    body = read_mail(mime)
    assert body.text == "Export fails \ufffd here"


async def test_attachments_are_listed_by_name_and_size_but_never_stored(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    payload = b"%PDF-1.7 secret contract " * 100
    mail = Mail(
        subject="Contract",
        attachments=(("contract.pdf", "application/pdf", payload), ("a.csv", "text/csv", b"a,b\n")),
    )
    _, result = await deliver(sns, client, mail_message(sns, mail))
    signal = only_signal(result).signal
    assert signal.raw["attachments"] == [
        {"filename": "contract.pdf", "contentType": "application/pdf", "size": len(payload)},
        {"filename": "a.csv", "contentType": "text/csv", "size": 4},
    ]
    assert "attachments" in signal.metadata.tags
    dumped = json.dumps(signal.raw)
    assert "secret contract" not in dumped
    assert base64.b64encode(payload[:30]).decode()[:20] not in dumped


async def test_spam_and_virus_fail_verdicts_are_tags_and_the_mail_is_kept(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    verdicts = {"spam": "FAIL", "virus": "FAIL", "spf": "FAIL", "dkim": "GRAY", "dmarc": "FAIL"}
    _, result = await deliver(sns, client, mail_message(sns, verdicts=verdicts))
    signal = only_signal(result).signal
    assert signal.metadata.tags == ["spam", "virus", "spf-fail", "dmarc-fail"]
    assert signal.raw["verdicts"] == {
        "spam": "FAIL",
        "virus": "FAIL",
        "spf": "FAIL",
        "dkim": "GRAY",
        "dmarc": "FAIL",
    }
    assert signal.raw["dmarcPolicy"] == "reject"


async def test_participants_tickets_and_priority_come_from_the_headers(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    mail = Mail(
        subject="Re: ACME-142 and #77 still broken",
        sender="Jane Doe <Jane@Customer.example>",
        to=("support@acme.example",),
        cc=("Ops <ops@acme.example>",),
        headers={"X-Priority": "1 (Highest)"},
    )
    _, result = await deliver(sns, client, mail_message(sns, mail))
    metadata = only_signal(result).signal.metadata
    assert metadata.participants == [
        "jane@customer.example",
        "support@acme.example",
        "ops@acme.example",
    ]
    assert metadata.related_tickets == ["ACME-142", "#77"]
    assert metadata.priority == "high"


@pytest.mark.parametrize(
    ("headers", "priority"),
    [
        ({"Importance": "low"}, "low"),
        ({"Importance": "High"}, "high"),
        ({"X-Priority": "5"}, "low"),
        ({}, None),
    ],
)
async def test_importance_headers_map_to_priority(
    headers: dict[str, str], priority: str | None, sns: SnsFake, client: httpx.AsyncClient
) -> None:
    _, result = await deliver(sns, client, mail_message(sns, Mail(subject="x", headers=headers)))
    signal = only_signal(result).signal
    assert (signal.metadata.priority if signal.metadata else None) == priority


def test_ticket_references_in_subjects() -> None:
    assert related_tickets("[ACME-1] Fwd: #12 and OPS-99; not ab-12, x#3 or ISO-8601-ish") == [
        "ACME-1",
        "OPS-99",
        "ISO-8601",
        "#12",
    ]


async def test_an_sns_redelivery_of_the_same_mail_is_the_same_signal(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    notification = json.dumps(
        received_notification(Mail(subject="Once"), message_id="0000014a-same", at=NOW)
    )
    first = sns.notification(notification, at=NOW)
    again = sns.notification(notification, at=NOW, message_id=first["MessageId"])
    other_envelope = sns.notification(notification, at=NOW)  # SNS may also re-publish
    keys = set()
    for message in (first, again, other_envelope):
        _, result = await deliver(sns, client, message)
        keys.add(only_signal(result).dedup_key)
    assert len(keys) == 1


# --------------------------------------------------------------------------- large mail (S3)


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    with running_moto_server() as url:
        yield url


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_s3: str) -> str:
    for name in AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    for name, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3)
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="inbound-mail")
    return moto_s3


def stored_mail() -> tuple[Mail, bytes]:
    mail = Mail(
        subject="Big logs attached", attachments=(("big.log", "text/plain", b"x" * 300_000),)
    )
    return mail, mail.mime(NOW).as_bytes()


async def test_large_mail_without_a_bucket_is_a_signal_that_says_its_body_is_in_s3(
    sns: SnsFake, client: httpx.AsyncClient
) -> None:
    mail, _ = stored_mail()
    message = mail_message(sns, mail, stored_in=("inbound-mail", "big-1"), message_id="big-1")
    _, result = await deliver(sns, client, message)
    signal = only_signal(result).signal
    assert signal.summary == "Big logs attached"
    assert signal.raw["content"] == "not_included"
    assert "s3Bucket" in signal.raw["contentNote"]
    assert "content-missing" in signal.metadata.tags


async def test_large_mail_is_read_from_the_configured_bucket(
    sns: SnsFake, client: httpx.AsyncClient, aws_env: str
) -> None:
    import boto3

    mail, raw = stored_mail()
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket="inbound-mail", Key="mail/big-2", Body=raw
    )
    message = mail_message(sns, mail, stored_in=("inbound-mail", "mail/big-2"), message_id="big-2")
    _, result = await deliver(sns, client, message, s3Bucket="inbound-mail")
    signal = only_signal(result).signal
    assert signal.raw["content"] == "fetched_from_s3"
    assert signal.raw["text"].startswith("Hello,")
    assert signal.raw["attachments"][0] == {
        "filename": "big.log",
        "contentType": "text/plain",
        "size": 300_000,
    }


async def test_large_mails_share_one_s3_client_per_set_of_credentials(
    sns: SnsFake, client: httpx.AsyncClient, aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A boto3 session and client for each large mail cost tens of ms of CPU a delivery;
    the client is made once for the instance's credentials (and AWS environment)."""
    import boto3

    made: list[object] = []
    new_client = S3MailStore._new_client

    def counted(self: S3MailStore, explicit: Mapping[str, Any]) -> Any:
        made.append(dict(explicit))
        return new_client(self, explicit)

    monkeypatch.setattr(S3MailStore, "_new_client", counted)
    monkeypatch.setattr(s3_module, "_clients", OrderedDict())
    mail, raw = stored_mail()
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket="inbound-mail", Key="mail/shared", Body=raw
    )
    for n in range(3):
        message = mail_message(
            sns, mail, stored_in=("inbound-mail", "mail/shared"), message_id=f"shared-{n}"
        )
        _, result = await deliver(sns, client, message, s3Bucket="inbound-mail")
        assert only_signal(result).signal.raw["content"] == "fetched_from_s3"
    assert made == [{}]

    keys = {"accessKeyId": "AKIAOTHERKEY", "secretAccessKey": "other-secret"}
    store = S3MailStore("inbound-mail", region="us-east-1", credentials=keys)
    assert await asyncio.to_thread(store.check) is None
    assert made == [
        {},
        {"aws_access_key_id": "AKIAOTHERKEY", "aws_secret_access_key": "other-secret"},
    ]


def _s3_accepting(accepted: list[str]) -> FakeServer:
    """An S3 endpoint that serves ``inbound-mail/mail/k`` to the access key ``accepted``
    holds, and answers any other key as S3 answers a deactivated one."""

    def get_object(request: FakeRequest) -> FakeResponse:
        if f"Credential={accepted[0]}/" in request.headers.get("authorization", ""):
            return FakeResponse(status=200, body=b"Subject: hi\r\n\r\nbody")
        return FakeResponse(
            status=403,
            headers={"Content-Type": "application/xml"},
            body=b"<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id "
            b"you provided does not exist in our records.</Message></Error>",
        )

    server = FakeServer()
    server.add_route("GET", "/inbound-mail/mail/k", get_object)
    return server


async def test_a_kept_s3_client_follows_credentials_rotated_in_the_shared_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without an access key of its own the instance reads with the standard chain, whose
    shared credentials file a long-running ucf serve sees rotated (a daily key, a login
    tool's temporary ones). A client made per mail read the new key; the kept one signed
    with the old key until the process restarted: once S3 refuses a key it does not
    know, a new client is made for the same read."""
    for name in (*AWS_ENV_TO_CLEAR, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    shared = tmp_path / "credentials"
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(s3_module, "_clients", OrderedDict())
    action = {"bucketName": "inbound-mail", "objectKey": "mail/k"}
    accepted = ["AKIAFIRSTKEY"]

    def rotate(key: str) -> None:
        shared.write_text(f"[default]\naws_access_key_id = {key}\naws_secret_access_key = s\n")
        accepted[0] = key  # the old key is deactivated

    rotate("AKIAFIRSTKEY")
    with _s3_accepting(accepted) as s3:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.base_url)
        first = S3MailStore("inbound-mail", region="us-east-1", credentials={})
        assert (await first.fetch(action, None)).body is not None
        rotate("AKIASECONDKEY")
        second = S3MailStore("inbound-mail", region="us-east-1", credentials={})
        fetched = await second.fetch(action, None)
        again = await second.fetch(action, None)
    assert (fetched.note, again.note) == (None, None)
    assert fetched.body is not None
    assert len(s3_module._clients) == 1  # the stale client was replaced, not kept beside


async def test_a_missing_object_or_another_bucket_still_gives_the_signal_with_the_reason(
    sns: SnsFake, client: httpx.AsyncClient, aws_env: str
) -> None:
    mail, _ = stored_mail()
    missing = mail_message(sns, mail, stored_in=("inbound-mail", "gone"), message_id="big-3")
    _, result = await deliver(sns, client, missing, s3Bucket="inbound-mail")
    assert "NoSuchKey" in only_signal(result).signal.raw["contentNote"]
    elsewhere = mail_message(sns, mail, stored_in=("other-bucket", "k"), message_id="big-4")
    _, result = await deliver(sns, client, elsewhere, s3Bucket="inbound-mail")
    assert "not the configured s3Bucket" in only_signal(result).signal.raw["contentNote"]


# --------------------------------------------------------------------------- source


async def test_the_source_is_push_only_and_its_health_checks_the_topic_and_bucket(
    client: httpx.AsyncClient, aws_env: str
) -> None:
    source = SesSource(DESCRIPTOR)
    assert source.schedule is None
    assert source.webhooks is not None

    async def health(**config: str) -> Any:
        ctx = connect(source, credentials={}, config=config, client=client)
        return await source.health_check(ctx)

    assert (await health(topicArn=TOPIC_ARN)).ok
    bad = await health(topicArn="inbound-mail")
    assert not bad.ok
    assert "not an SNS topic ARN" in (bad.error or "")
    assert (await health(topicArn=TOPIC_ARN, s3Bucket="inbound-mail")).ok
    gone = await health(topicArn=TOPIC_ARN, s3Bucket="no-such-bucket")
    assert not gone.ok
    assert "no-such-bucket" in (gone.error or "")


async def test_credentials_never_travel_to_sns(sns: SnsFake, client: httpx.AsyncClient) -> None:
    source = SesSource(DESCRIPTOR)
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    credentials = {"accessKeyId": "AKIAIOSFODNN7EXAMPLE", "secretAccessKey": secret}

    async def upstream() -> SourceContext:
        return connect(
            source, credentials=credentials, config={"topicArn": TOPIC_ARN}, client=client
        )

    ctx = WebhookContext(PROJECT, "ses", credentials, {"topicArn": TOPIC_ARN}, NOW, upstream)
    message = sns.confirmation(at=NOW)
    assert isinstance(await handler(sns).verify(request(message), ctx), Handshake)
    for seen in sns.server.requests:
        assert "authorization" not in seen.headers
        assert secret not in str(seen.headers)


def test_a_mail_timestamp_outside_datetimes_range_in_utc_is_not_a_crash() -> None:
    """``0001-01-01T00:00:00+01:00`` parsed, then raised OverflowError once turned into UTC
    for the signal: ``ucf map --poll`` of saved notifications failed inside ucf."""
    notification = received_notification(
        Mail(subject="Odd clock"), message_id="0000014a-mail-0009", at=NOW
    )
    notification["mail"]["timestamp"] = "0001-01-01T00:00:00+01:00"
    notification["receipt"]["timestamp"] = "9999-12-31T23:59:59-01:00"
    result = SesSource(DESCRIPTOR).normalise([notification], project_id=PROJECT, now=NOW)
    assert len(result.signals) + len(result.errors) == 1
