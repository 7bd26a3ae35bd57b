"""Webhook verification and handshakes, against the providers' own documented schemes.

Where a provider publishes a worked example (GitHub, Slack, Standard Webhooks)
the test uses it verbatim, so agreement cannot come from the verifier agreeing
with itself. Other fixtures are signed here with each provider's documented
recipe, written out independently of ``ucf.runtime.webhooks``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ucf.core.descriptor import ConnectorDescriptor
from ucf.core.validation import parse_descriptor
from ucf.runtime import webhooks
from ucf.runtime.webhooks import (
    Admission,
    RejectCode,
    VerificationResult,
    WebhookConfigError,
    check_delivery,
    compile_verifier,
    match_handshake,
    sign_delivery,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/webhooks"
NOW = datetime(2024, 5, 16, 9, 0, tzinfo=UTC)
HOOK_URL = "https://ucf.example.com/api/webhooks/test-trello/proj-1"


@cache
def descriptor(name: str) -> ConnectorDescriptor:
    return parse_descriptor(json.loads((FIXTURES / "descriptors" / f"{name}.json").read_text()))


def payload(name: str) -> bytes:
    return (FIXTURES / "payloads" / name).read_bytes()


def verify(
    name: str,
    body: bytes,
    headers: Mapping[str, str],
    credentials: Mapping[str, str],
    *,
    now: datetime = NOW,
    url: str = HOOK_URL,
    query: Mapping[str, str] | None = None,
) -> VerificationResult:
    return compile_verifier(descriptor(name)).verify(
        body=body, headers=headers, url=url, query=query or {}, credentials=credentials, now=now
    )


def code(result: VerificationResult) -> RejectCode | None:
    return result.reason.code if result.reason is not None else None


def mac(key: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(key, message, algorithm).digest()


def at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


# --------------------------------------------------------------------------- documented examples

GITHUB_DOC_SECRET = "It's a Secret to Everybody"
GITHUB_DOC_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
SLACK_DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_DOC_TIMESTAMP = "1531420618"
SLACK_DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
SW_DOC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_DOC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_DOC_TIMESTAMP = "1614265330"
SW_DOC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_github_documented_example_verifies() -> None:
    """docs.github.com "Testing the webhook payload validation"."""
    body = payload("github-docs-example.txt")
    assert body == b"Hello, World!"
    result = verify(
        "github",
        body,
        {"X-Hub-Signature-256": GITHUB_DOC_SIGNATURE},
        {"webhookSecret": GITHUB_DOC_SECRET},
    )
    assert result.ok, result.reason


def test_github_signature_is_refused_under_another_secret_or_body() -> None:
    headers = {"X-Hub-Signature-256": GITHUB_DOC_SIGNATURE}
    other_secret = verify("github", b"Hello, World!", headers, {"webhookSecret": "It's a secret"})
    other_body = verify("github", b"Hello, World?", headers, {"webhookSecret": GITHUB_DOC_SECRET})
    assert code(other_secret) == code(other_body) == RejectCode.SIGNATURE_MISMATCH


def test_brief_form_descriptor_accepts_githubs_sha256_prefix_and_bare_hex() -> None:
    """auth.webhook_secret cannot name a prefix; GitHub sends one in the header it names."""
    credentials = {"webhookSecret": GITHUB_DOC_SECRET}
    bare = GITHUB_DOC_SIGNATURE.removeprefix("sha256=")
    for value in (GITHUB_DOC_SIGNATURE, bare, bare.upper()):
        result = verify(
            "github-brief", b"Hello, World!", {"X-Hub-Signature-256": value}, credentials
        )
        assert result.ok, (value, result.reason)
    sha1_spelling = verify(
        "github-brief", b"Hello, World!", {"X-Hub-Signature-256": "sha1=" + bare}, credentials
    )
    assert code(sha1_spelling) == RejectCode.BAD_ENCODING


def test_slack_documented_example_verifies_inside_its_window() -> None:
    """api.slack.com/authentication/verifying-requests-from-slack (a slash command, form body)."""
    body = payload("slack-docs-slash-command.txt")
    headers = {
        "X-Slack-Request-Timestamp": SLACK_DOC_TIMESTAMP,
        "X-Slack-Signature": SLACK_DOC_SIGNATURE,
    }
    result = verify(
        "slack", body, headers, {"signingSecret": SLACK_DOC_SECRET}, now=at(1531420618 + 120)
    )
    assert result.ok, result.reason


def test_slack_documented_example_replayed_later_says_how_old_it_is() -> None:
    headers = {
        "X-Slack-Request-Timestamp": SLACK_DOC_TIMESTAMP,
        "X-Slack-Signature": SLACK_DOC_SIGNATURE,
    }
    result = verify(
        "slack",
        payload("slack-docs-slash-command.txt"),
        headers,
        {"signingSecret": SLACK_DOC_SECRET},
        now=at(1531420618 + 412),
    )
    assert result.reason is not None
    assert result.reason.code == RejectCode.TIMESTAMP_OUTSIDE_WINDOW
    assert result.reason.message == "timestamp outside the 300 s window (request is 412 s old)"
    assert result.reason.skew_seconds == pytest.approx(412)


def test_slack_timestamp_is_part_of_what_is_signed() -> None:
    """Moving the timestamp (to slip a replay into the window) breaks the signature."""
    headers = {"X-Slack-Request-Timestamp": "1531420700", "X-Slack-Signature": SLACK_DOC_SIGNATURE}
    result = verify(
        "slack",
        payload("slack-docs-slash-command.txt"),
        headers,
        {"signingSecret": SLACK_DOC_SECRET},
        now=at(1531420700),
    )
    assert code(result) == RejectCode.SIGNATURE_MISMATCH


def sw_headers(signature: str = SW_DOC_SIGNATURE) -> dict[str, str]:
    return {
        "webhook-id": SW_DOC_ID,
        "webhook-timestamp": SW_DOC_TIMESTAMP,
        "webhook-signature": signature,
    }


def test_standard_webhooks_reference_example_verifies_with_and_without_whsec_prefix() -> None:
    """libraries/python/tests/test_webhooks.py::test_sign_function in standard-webhooks."""
    body = payload("standard-webhooks-docs-example.json")
    assert body == b'{"test": 2432232314}'
    for secret in (SW_DOC_SECRET, SW_DOC_SECRET.removeprefix("whsec_")):
        result = verify(
            "standard-webhooks",
            body,
            sw_headers(),
            {"webhookSecret": secret},
            now=at(int(SW_DOC_TIMESTAMP)),
        )
        assert result.ok, (secret, result.reason)


def test_standard_webhooks_accepts_any_v1_entry_and_ignores_other_versions() -> None:
    """Rotation: several space-separated signatures; v1a (ed25519) and v2 are skipped."""
    rotated = " ".join(
        [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
            SW_DOC_SIGNATURE,
        ]
    )
    body = payload("standard-webhooks-docs-example.json")
    credentials = {"webhookSecret": SW_DOC_SECRET}
    now = at(int(SW_DOC_TIMESTAMP))
    assert verify("standard-webhooks", body, sw_headers(rotated), credentials, now=now).ok
    only_asymmetric = sw_headers(
        "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="
    )
    result = verify("standard-webhooks", body, only_asymmetric, credentials, now=now)
    assert code(result) == RejectCode.BAD_ENCODING
    # The reference suite's "invalid signature": one base64 character changed.
    tampered = sw_headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=")
    result = verify("standard-webhooks", body, tampered, credentials, now=now)
    assert code(result) == RejectCode.SIGNATURE_MISMATCH


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (300, None),
        (-300, None),
        (301, "timestamp outside the 300 s window (request is 301 s old)"),
        (-301, "timestamp outside the 300 s window (request is 301 s in the future)"),
    ],
)
def test_standard_webhooks_window_refuses_too_old_and_too_new(
    offset: int, expected: str | None
) -> None:
    result = verify(
        "standard-webhooks",
        payload("standard-webhooks-docs-example.json"),
        sw_headers(),
        {"webhookSecret": SW_DOC_SECRET},
        now=at(int(SW_DOC_TIMESTAMP) + offset),
    )
    assert (result.reason.message if result.reason else None) == expected


def test_standard_webhooks_id_is_signed_and_required() -> None:
    body = payload("standard-webhooks-docs-example.json")
    credentials = {"webhookSecret": SW_DOC_SECRET}
    now = at(int(SW_DOC_TIMESTAMP))
    other_id = {**sw_headers(), "webhook-id": "msg_other"}
    assert (
        code(verify("standard-webhooks", body, other_id, credentials, now=now))
        == RejectCode.SIGNATURE_MISMATCH
    )
    no_id = {k: v for k, v in sw_headers().items() if k != "webhook-id"}
    result = verify("standard-webhooks", body, no_id, credentials, now=now)
    assert result.reason is not None
    assert result.reason.code == RejectCode.MISSING_HEADER
    assert "webhook-id" in result.reason.message


def test_standard_webhooks_unpadded_secret_decodes_like_the_reference() -> None:
    key = bytes(range(25))  # 25 bytes: base64 needs padding
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    body = b'{"type":"contact.created"}'
    signature = base64.b64encode(mac(key, f"{SW_DOC_ID}.{SW_DOC_TIMESTAMP}.".encode() + body))
    result = verify(
        "standard-webhooks",
        body,
        sw_headers("v1," + signature.decode()),
        {"webhookSecret": unpadded},
        now=at(int(SW_DOC_TIMESTAMP)),
    )
    assert result.ok, result.reason


def test_standard_webhooks_secret_that_is_not_base64_is_reported_not_raised() -> None:
    result = verify(
        "standard-webhooks",
        payload("standard-webhooks-docs-example.json"),
        sw_headers(),
        {"webhookSecret": "whsec_not base64!!"},
        now=at(int(SW_DOC_TIMESTAMP)),
    )
    assert code(result) == RejectCode.MISSING_SECRET


# --------------------------------------------------------------------------- providers' recipes


def test_pagerduty_accepts_either_signature_during_secret_rotation() -> None:
    """04-Signatures.md: comma-separated v1=<hex> entries, one per signing secret."""
    body = payload("pagerduty-incident-triggered.json")
    old, new = "old-subscription-secret", "new-subscription-secret"
    header = ",".join("v1=" + mac(s.encode(), body).hex() for s in (old, new))
    for secret in (old, new):
        result = verify(
            "pagerduty", body, {"X-PagerDuty-Signature": header}, {"webhookSecret": secret}
        )
        assert result.ok, result.reason
    third = verify("pagerduty", body, {"X-PagerDuty-Signature": header}, {"webhookSecret": "x"})
    assert third.reason is not None
    assert third.reason.code == RejectCode.SIGNATURE_MISMATCH
    assert third.reason.message.startswith("no signature in header X-PagerDuty-Signature")


def test_pagerduty_ignores_unknown_signature_versions() -> None:
    body = payload("pagerduty-incident-triggered.json")
    good = "v1=" + mac(b"s3cret", body).hex()
    header = f"v2={'ab' * 32}, {good}"
    assert verify(
        "pagerduty", body, {"X-PagerDuty-Signature": header}, {"webhookSecret": "s3cret"}
    ).ok
    only_v2 = verify(
        "pagerduty", body, {"X-PagerDuty-Signature": f"v2={'ab' * 32}"}, {"webhookSecret": "s3cret"}
    )
    assert code(only_v2) == RejectCode.BAD_ENCODING


def linear_signed(body: bytes, secret: str = "lin_wh_secret") -> dict[str, str]:
    return {"Linear-Signature": mac(secret.encode(), body).hex()}


def test_linear_verifies_inside_60_s_of_webhook_timestamp_in_ms() -> None:
    body = payload("linear-issue-update.json")
    sent = json.loads(body)["webhookTimestamp"] / 1000
    credentials = {"webhookSecret": "lin_wh_secret"}
    assert verify("linear", body, linear_signed(body), credentials, now=at(sent + 59.5)).ok
    assert verify("linear", body, linear_signed(body), credentials, now=at(sent - 59.5)).ok
    late = verify("linear", body, linear_signed(body), credentials, now=at(sent + 61))
    assert late.reason is not None
    assert late.reason.message == "timestamp outside the 60 s window (request is 61 s old)"
    early = verify("linear", body, linear_signed(body), credentials, now=at(sent - 90.25))
    assert early.reason is not None
    assert early.reason.message.endswith("(request is 90.2 s in the future)")


def test_linear_delivery_without_webhook_timestamp_is_refused() -> None:
    data = json.loads(payload("linear-issue-update.json"))
    del data["webhookTimestamp"]
    body = json.dumps(data).encode()
    result = verify("linear", body, linear_signed(body), {"webhookSecret": "lin_wh_secret"})
    assert result.reason is not None
    assert result.reason.code == RejectCode.TIMESTAMP_MISSING
    assert "$.webhookTimestamp" in result.reason.message


def test_sentry_verifies_the_raw_body_not_a_reserialisation() -> None:
    """Sentry's docs sign JSON.stringify(parsed body); we verify the bytes actually received."""
    body = payload("sentry-issue-created.json")
    secret = "sentry-client-secret"
    credentials = {"clientSecret": secret}
    raw = {"Sentry-Hook-Signature": mac(secret.encode(), body).hex()}
    assert verify("sentry", body, raw, credentials).ok
    reserialised = json.dumps(json.loads(body)).encode()  # ", " and ": " separators
    assert reserialised != body
    result = verify("sentry", reserialised, raw, credentials)
    assert code(result) == RejectCode.SIGNATURE_MISMATCH


def trello_signature(body: bytes, url: str, secret: str = "trello-app-secret") -> str:
    """Base64 HMAC-SHA1 of body + callbackURL, keyed with the application secret."""
    return base64.b64encode(mac(secret.encode(), body + url.encode(), "sha1")).decode()


def test_trello_signs_body_plus_the_registered_callback_url() -> None:
    body = payload("trello-update-card.json")
    headers = {"X-Trello-Webhook": trello_signature(body, HOOK_URL)}
    credentials = {"appSecret": "trello-app-secret"}
    assert compile_verifier(descriptor("trello")).needs_url
    assert verify("trello", body, headers, credentials, url=HOOK_URL).ok
    other_url = verify("trello", body, headers, credentials, url=HOOK_URL + "/")
    assert code(other_url) == RejectCode.SIGNATURE_MISMATCH


def test_trello_signature_that_is_not_base64_is_bad_encoding() -> None:
    result = verify(
        "trello",
        payload("trello-update-card.json"),
        {"X-Trello-Webhook": "not*base64"},
        {"appSecret": "trello-app-secret"},
    )
    assert result.reason is not None
    assert result.reason.code == RejectCode.BAD_ENCODING
    assert "base64" in result.reason.message


def test_notion_and_asana_signatures_verify() -> None:
    notion_body = payload("notion-page-created.json")
    token = "secret_TEST0nlyNotARealNotionVerificationToken0000"
    notion = {"X-Notion-Signature": "sha256=" + mac(token.encode(), notion_body).hex()}
    assert verify("notion", notion_body, notion, {"verificationToken": token}).ok
    asana_body = payload("asana-events.json")
    asana = {"X-Hook-Signature": mac(b"hook-secret-from-handshake", asana_body).hex()}
    assert verify("asana", asana_body, asana, {"hookSecret": "hook-secret-from-handshake"}).ok


# --------------------------------------------------------------------------- reasons


GITHUB_BODY = payload("github-issues-opened.json")


def github_headers(secret: str = "gh-secret", body: bytes = GITHUB_BODY) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + mac(secret.encode(), body).hex()}


def test_header_names_match_in_any_case_and_hex_in_any_case() -> None:
    value = github_headers()["X-Hub-Signature-256"]
    headers = {"x-hub-signature-256": "sha256=" + value.removeprefix("sha256=").upper()}
    assert verify("github", GITHUB_BODY, headers, {"webhookSecret": "gh-secret"}).ok


@pytest.mark.parametrize(
    ("headers", "credentials", "expected", "words"),
    [
        ({}, {"webhookSecret": "gh-secret"}, RejectCode.MISSING_HEADER, "X-Hub-Signature-256"),
        (
            {"X-Hub-Signature-256": "  "},
            {"webhookSecret": "gh-secret"},
            RejectCode.MISSING_HEADER,
            "missing header",
        ),
        (
            {"X-Hub-Signature-256": "sha1=" + "ab" * 20},
            {"webhookSecret": "gh-secret"},
            RejectCode.BAD_ENCODING,
            "starting with 'sha256='",
        ),
        (
            {"X-Hub-Signature-256": "sha256=" + "zz" * 32},
            {"webhookSecret": "gh-secret"},
            RejectCode.BAD_ENCODING,
            "not valid hex",
        ),
        (
            {"X-Hub-Signature-256": "sha256=" + "ab" * 20},
            {"webhookSecret": "gh-secret"},
            RejectCode.BAD_ENCODING,
            "20 bytes long; the HMAC is 32",
        ),
        (
            {"X-Hub-Signature-256": "sha256=00"},
            {"webhookSecret": "gh-secret"},
            RejectCode.BAD_ENCODING,
            "is 1 byte long; the HMAC is 32",
        ),
        (
            {"X-Hub-Signature-256": "sha256=" + "ab" * 32},
            {},
            RejectCode.MISSING_SECRET,
            "webhookSecret",
        ),
        (
            {"X-Hub-Signature-256": "sha256=" + "ab" * 32},
            {"webhookSecret": ""},
            RejectCode.MISSING_SECRET,
            "webhookSecret",
        ),
        (
            {"X-Hub-Signature-256": "sha256=" + "ab" * 32},
            {"webhookSecret": "gh-secret"},
            RejectCode.SIGNATURE_MISMATCH,
            "HMAC-SHA256",
        ),
    ],
)
def test_each_rejection_names_its_reason(
    headers: dict[str, str], credentials: dict[str, str], expected: RejectCode, words: str
) -> None:
    result = verify("github", GITHUB_BODY, headers, credentials)
    assert result.reason is not None
    assert result.reason.code == expected
    assert words in result.reason.message


def test_rejection_messages_never_contain_the_secret_or_the_expected_mac() -> None:
    secret = "gh-secret-do-not-print"
    expected_hex = mac(secret.encode(), GITHUB_BODY).hex()
    wrong = {"X-Hub-Signature-256": "sha256=" + "00" * 32}
    result = verify("github", GITHUB_BODY, wrong, {"webhookSecret": secret})
    assert result.reason is not None
    assert secret not in str(result.reason)
    assert expected_hex not in str(result.reason)
    assert secret not in repr(result)


def test_slack_timestamp_that_is_not_a_number_is_timestamp_missing() -> None:
    for stamp in ("soon", "1e9", "-5", "١٥٣١٤٢٠٦١٨"):  # the last: Arabic-Indic digits
        headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": SLACK_DOC_SIGNATURE}
        result = verify(
            "slack", b"x", headers, {"signingSecret": SLACK_DOC_SECRET}, now=at(1531420618)
        )
        assert code(result) == RejectCode.TIMESTAMP_MISSING, stamp


def test_token_header_with_prefix_is_compared_in_full() -> None:
    body = payload("datadog-alert.json")
    credentials = {"webhookToken": "dd-shared-token"}
    assert verify("token-header", body, {"Authorization": "Bearer dd-shared-token"}, credentials).ok
    for value in ("Bearer dd-shared-tokem", "dd-shared-token", "Bearer dd-shared-token2"):
        result = verify("token-header", body, {"Authorization": value}, credentials)
        assert code(result) == RejectCode.TOKEN_MISMATCH, value
    absent = verify("token-header", body, {}, credentials)
    assert code(absent) == RejectCode.MISSING_HEADER
    unset = verify("token-header", body, {"Authorization": "Bearer x"}, {})
    assert code(unset) == RejectCode.MISSING_SECRET


def test_msgraph_client_state_must_match_in_every_notification_of_a_batch() -> None:
    body = payload("msgraph-notification.json")
    credentials = {"clientState": "ucf-client-state-7Qx2"}
    assert verify("msgraph", body, {}, credentials).ok
    data = json.loads(body)
    data["value"].append({**data["value"][0], "clientState": "forged"})
    batch = json.dumps(data).encode()
    assert code(verify("msgraph", batch, {}, credentials)) == RejectCode.TOKEN_MISMATCH
    assert code(verify("msgraph", b"not json", {}, credentials)) == RejectCode.MISSING_HEADER
    assert code(verify("msgraph", b'{"value": []}', {}, credentials)) == RejectCode.MISSING_HEADER


def test_unverified_only_when_the_descriptor_says_none() -> None:
    assert verify("unverified", b"{}", {}, {}).ok
    data = json.loads((FIXTURES / "descriptors/github.json").read_text())
    del data["ingestion"]["signature"]
    shape_only = ConnectorDescriptor.model_validate(data)  # skips the meaning checks
    with pytest.raises(WebhookConfigError, match="no 'signature' object"):
        compile_verifier(shape_only)


# --------------------------------------------------------------------------- handshakes


def test_slack_url_verification_is_answered_only_when_signed() -> None:
    body = payload("slack-url-verification.json")
    challenge = json.loads(body)["challenge"]
    spec = descriptor("slack")
    verifier = compile_verifier(spec)
    stamp = str(int(NOW.timestamp()))
    signed = {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0="
        + mac(b"slack-signing", b"v0:" + stamp.encode() + b":" + body).hex(),
    }

    def deliver(headers: dict[str, str]) -> Admission:
        return check_delivery(
            verifier,
            spec,
            method="POST",
            body=body,
            headers=headers,
            url=HOOK_URL,
            query={},
            credentials={"signingSecret": "slack-signing"},
            now=NOW,
        )

    admitted = deliver(signed)
    assert admitted.ok
    assert admitted.handshake is not None
    assert admitted.handshake.status == 200
    assert admitted.handshake.media_type == "application/json"
    assert json.loads(admitted.handshake.body) == {"challenge": challenge}
    forged = deliver({})
    assert not forged.ok
    assert forged.handshake is None
    assert code(forged.result) == RejectCode.MISSING_HEADER


def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bodies the verification module hands to the JSON parser, in order."""
    parsed: list[bytes] = []
    real = webhooks.payload_or_missing  # type: ignore[attr-defined]  # the module's own import

    def counting(body: bytes) -> Any:
        parsed.append(body)
        return real(body)

    monkeypatch.setattr(webhooks, "payload_or_missing", counting)
    return parsed


def test_a_body_reaches_the_json_parser_only_after_its_signature_for_a_connector_without_handshakes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flood of unsigned bodies costs the HMAC alone, not a parse of each (GitHub has no
    handshake to recognise); a verified one is parsed once, when it is mapped."""
    parsed = count_parses(monkeypatch)
    spec = descriptor("github")
    body = b'{"action": "opened", "issue": {"number": 1}}'
    common: dict[str, Any] = {
        "method": "POST",
        "body": body,
        "url": HOOK_URL,
        "query": {},
        "credentials": {"webhookSecret": "github-secret"},
        "now": NOW,
    }
    forged = check_delivery(
        compile_verifier(spec), spec, headers={"X-Hub-Signature-256": "sha256=00"}, **common
    )
    assert not forged.ok
    assert parsed == []
    signature = "sha256=" + mac(b"github-secret", body).hex()
    genuine = check_delivery(
        compile_verifier(spec), spec, headers={"X-Hub-Signature-256": signature}, **common
    )
    assert genuine.ok
    assert parsed == []
    assert genuine.parsed(body) == {"action": "opened", "issue": {"number": 1}}
    assert parsed == [body]


def test_a_connector_with_handshakes_parses_once_for_the_handshake_and_the_mapping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed = count_parses(monkeypatch)
    spec = descriptor("slack")
    body = payload("slack-event-message.json")
    stamp = str(int(NOW.timestamp()))
    signature = "v0=" + mac(b"slack-signing", b"v0:" + stamp.encode() + b":" + body).hex()
    admitted = check_delivery(
        compile_verifier(spec),
        spec,
        method="POST",
        body=body,
        headers={"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature},
        url=HOOK_URL,
        query={},
        credentials={"signingSecret": "slack-signing"},
        now=NOW,
    )
    assert admitted.ok
    assert admitted.handshake is None
    assert admitted.parsed(body) == json.loads(body)
    assert parsed == [body]


def test_an_ordinary_slack_event_is_not_a_handshake() -> None:
    event = json.loads(payload("slack-event-message.json"))
    not_handshakes: list[Any] = [event, None, [], "url_verification", {"type": "url_verification"}]
    for body in not_handshakes:
        assert (
            match_handshake(descriptor("slack"), method="POST", headers={}, query={}, payload=body)
            is None
        )


def test_trello_head_is_answered_without_a_signature_but_its_posts_are_verified() -> None:
    spec = descriptor("trello")
    verifier = compile_verifier(spec)
    common: dict[str, Any] = {
        "body": b"",
        "headers": {},
        "url": HOOK_URL,
        "query": {},
        "credentials": {},
        "now": NOW,
    }
    head = check_delivery(verifier, spec, method="HEAD", **common)
    assert head.ok
    assert head.handshake is not None
    assert (head.handshake.kind, head.handshake.status, head.handshake.body) == (
        "head_ok",
        200,
        b"",
    )
    post = check_delivery(verifier, spec, method="POST", **common)
    assert not post.ok
    github = descriptor("github")
    not_trello = check_delivery(compile_verifier(github), github, method="HEAD", **common)
    assert not not_trello.ok


def test_asana_handshake_echoes_the_secret_which_then_verifies_deliveries() -> None:
    spec = descriptor("asana")
    hook_secret = "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81"
    response = match_handshake(
        spec, method="POST", headers={"x-hook-secret": hook_secret}, query={}, payload=None
    )
    assert response is not None
    assert response.status == 200
    assert response.headers == {"X-Hook-Secret": hook_secret}
    assert not response.signed
    assert response.captured_secret == hook_secret
    assert hook_secret not in repr(response)
    body = payload("asana-events.json")
    signed = {"X-Hook-Signature": mac(response.captured_secret.encode(), body).hex()}
    assert verify("asana", body, signed, {"hookSecret": response.captured_secret}).ok


def test_msgraph_validation_token_is_echoed_as_plain_text() -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 1f4e"
    response = match_handshake(
        descriptor("msgraph"),
        method="POST",
        headers={"Content-Type": "text/plain"},
        query={"validationToken": token},
        payload=None,
    )
    assert response is not None
    assert (response.status, response.body) == (200, token.encode())
    assert response.media_type == "text/plain; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.captured_secret is None


def test_notion_verification_is_acknowledged_and_its_token_kept_for_signatures() -> None:
    verification = json.loads(payload("notion-verification.json"))
    response = match_handshake(
        descriptor("notion"), method="POST", headers={}, query={}, payload=verification
    )
    assert response is not None
    assert (response.kind, response.status, response.signed) == ("acknowledge", 200, False)
    assert response.captured_secret == verification["verification_token"]
    event = json.loads(payload("notion-page-created.json"))
    assert (
        match_handshake(descriptor("notion"), method="POST", headers={}, query={}, payload=event)
        is None
    )


# --------------------------------------------------------------------------- properties


@dataclass(frozen=True)
class Scheme:
    """One provider's documented signing recipe, independent of the verifier."""

    descriptor: str
    secret_key: str
    tolerance: int | None
    sign: Callable[[str, bytes, int, Callable[[bytes], bytes]], tuple[bytes, dict[str, str]]]


def _github(
    secret: str, body: bytes, ts: int, tamper: Callable[[bytes], bytes]
) -> tuple[bytes, dict[str, str]]:
    return body, {"X-Hub-Signature-256": "sha256=" + tamper(mac(secret.encode(), body)).hex()}


def _slack(
    secret: str, body: bytes, ts: int, tamper: Callable[[bytes], bytes]
) -> tuple[bytes, dict[str, str]]:
    base = b"v0:" + str(ts).encode() + b":" + body
    return body, {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": "v0=" + tamper(mac(secret.encode(), base)).hex(),
    }


def _linear(
    secret: str, body: bytes, ts: int, tamper: Callable[[bytes], bytes]
) -> tuple[bytes, dict[str, str]]:
    document = {"data": body.decode("latin-1"), "webhookTimestamp": ts * 1000 + 7}
    raw = json.dumps(document).encode()
    return raw, {"Linear-Signature": tamper(mac(secret.encode(), raw)).hex()}


def _pagerduty(
    secret: str, body: bytes, ts: int, tamper: Callable[[bytes], bytes]
) -> tuple[bytes, dict[str, str]]:
    other = "v1=" + mac(b"rotated-away", body).hex()
    return body, {"X-PagerDuty-Signature": f"{other},v1={tamper(mac(secret.encode(), body)).hex()}"}


def _trello(
    secret: str, body: bytes, ts: int, tamper: Callable[[bytes], bytes]
) -> tuple[bytes, dict[str, str]]:
    digest = tamper(mac(secret.encode(), body + HOOK_URL.encode(), "sha1"))
    return body, {"X-Trello-Webhook": base64.b64encode(digest).decode()}


def _standard(
    secret: str, body: bytes, ts: int, tamper: Callable[[bytes], bytes]
) -> tuple[bytes, dict[str, str]]:
    key = hashlib.sha256(secret.encode()).digest()  # any 32 random bytes stand for the key
    signed = b"msg_2KWPBgLlAfxdpx2AI54pPJ85f4W." + str(ts).encode() + b"." + body
    return body, {
        "webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1a,AAAA v1," + base64.b64encode(tamper(mac(key, signed))).decode(),
    }


def _standard_secret(secret: str) -> str:
    return "whsec_" + base64.b64encode(hashlib.sha256(secret.encode()).digest()).decode()


SCHEMES = {
    "github": Scheme("github", "webhookSecret", None, _github),
    "slack": Scheme("slack", "signingSecret", 300, _slack),
    "linear": Scheme("linear", "webhookSecret", 60, _linear),
    "pagerduty": Scheme("pagerduty", "webhookSecret", None, _pagerduty),
    "trello": Scheme("trello", "appSecret", None, _trello),
    "standard-webhooks": Scheme("standard-webhooks", "webhookSecret", 300, _standard),
}


def _credentials(scheme: Scheme, secret: str) -> dict[str, str]:
    value = _standard_secret(secret) if scheme.descriptor == "standard-webhooks" else secret
    return {scheme.secret_key: value}


def _identity(digest: bytes) -> bytes:
    return digest


secrets = st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s)
bodies = st.binary(min_size=1, max_size=512)
timestamps = st.integers(min_value=1_000_000_000, max_value=4_000_000_000)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(SCHEMES))
@PROPERTY
@given(secret=secrets, body=bodies, ts=timestamps, skew=st.floats(-1.0, 1.0))
def test_a_correctly_signed_request_verifies(
    name: str, secret: str, body: bytes, ts: int, skew: float
) -> None:
    scheme = SCHEMES[name]
    sent, headers = scheme.sign(secret, body, ts, _identity)
    now = at(ts + skew * 0.99 * (scheme.tolerance or 10**6))
    result = verify(name, sent, headers, _credentials(scheme, secret), now=now)
    assert result.ok, result.reason


@pytest.mark.parametrize("name", sorted(SCHEMES))
@PROPERTY
@given(secret=secrets, body=bodies, ts=timestamps, data=st.data())
def test_flipping_any_byte_of_the_body_fails(
    name: str, secret: str, body: bytes, ts: int, data: st.DataObject
) -> None:
    scheme = SCHEMES[name]
    sent, headers = scheme.sign(secret, body, ts, _identity)
    index = data.draw(st.integers(0, len(sent) - 1), label="index")
    flip = data.draw(st.integers(1, 255), label="xor")
    tampered = bytearray(sent)
    tampered[index] ^= flip
    result = verify(name, bytes(tampered), headers, _credentials(scheme, secret), now=at(ts))
    assert not result.ok


@pytest.mark.parametrize("name", sorted(SCHEMES))
@PROPERTY
@given(secret=secrets, body=bodies, ts=timestamps, data=st.data())
def test_flipping_any_byte_of_the_signature_fails(
    name: str, secret: str, body: bytes, ts: int, data: st.DataObject
) -> None:
    scheme = SCHEMES[name]
    size = 20 if name == "trello" else 32
    index = data.draw(st.integers(0, size - 1), label="index")
    flip = data.draw(st.integers(1, 255), label="xor")

    def tamper(digest: bytes) -> bytes:
        changed = bytearray(digest)
        changed[index] ^= flip
        return bytes(changed)

    sent, headers = scheme.sign(secret, body, ts, tamper)
    result = verify(name, sent, headers, _credentials(scheme, secret), now=at(ts))
    assert code(result) == RejectCode.SIGNATURE_MISMATCH


ALL_DESCRIPTORS = sorted(p.stem for p in (FIXTURES / "descriptors").glob("*.json"))
HEADER_NAMES = [
    "X-Hub-Signature-256",
    "X-Slack-Signature",
    "X-Slack-Request-Timestamp",
    "Linear-Signature",
    "X-PagerDuty-Signature",
    "X-Trello-Webhook",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "Authorization",
    "X-Hook-Secret",
    "Sentry-Hook-Signature",
    "X-Notion-Signature",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.mark.parametrize("name", ALL_DESCRIPTORS)
@PROPERTY
@given(
    headers=st.dictionaries(
        st.sampled_from(HEADER_NAMES) | st.text(max_size=12), st.text(max_size=80), max_size=8
    ),
    body=st.binary(max_size=256) | json_values.map(lambda v: json.dumps(v).encode()),
    query=st.dictionaries(
        st.sampled_from(["validationToken", "token"]) | st.text(max_size=8),
        st.text(max_size=20),
        max_size=3,
    ),
    credential=st.text(max_size=40),
    method=st.sampled_from(["POST", "HEAD", "GET", "post", "PUT"]),
    parsed=json_values,
    now=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
def test_garbage_requests_are_refused_or_answered_never_raised(
    name: str,
    headers: dict[str, str],
    body: bytes,
    query: dict[str, str],
    credential: str,
    method: str,
    parsed: Any,
    now: datetime,
) -> None:
    spec = descriptor(name)
    verifier = compile_verifier(spec)
    credentials = dict.fromkeys(
        (
            "webhookSecret",
            "signingSecret",
            "appSecret",
            "clientSecret",
            "verificationToken",
            "hookSecret",
            "webhookToken",
            "clientState",
        ),
        credential,
    )
    result = verifier.verify(
        body=body, headers=headers, url=HOOK_URL, query=query, credentials=credentials, now=now
    )
    assert isinstance(result, VerificationResult)
    assert result.ok == (result.reason is None)
    match_handshake(spec, method=method, headers=headers, query=query, payload=parsed)
    check_delivery(
        verifier,
        spec,
        method=method,
        body=body,
        headers=headers,
        url=HOOK_URL,
        query=query,
        credentials=credentials,
        now=now,
    )


def test_a_far_future_timestamp_is_refused_not_overflowed() -> None:
    headers = {"X-Slack-Request-Timestamp": "9" * 20, "X-Slack-Signature": SLACK_DOC_SIGNATURE}
    result = verify("slack", b"x", headers, {"signingSecret": "s"}, now=NOW + timedelta(days=1))
    assert code(result) == RejectCode.TIMESTAMP_OUTSIDE_WINDOW


# --------------------------------------------------------------------------- signing for previews


@pytest.mark.parametrize("name", sorted(SCHEMES))
@PROPERTY
@given(secret=secrets, body=bodies, ts=timestamps)
def test_a_delivery_signed_for_a_preview_verifies_as_the_gateway_checks_it(
    name: str, secret: str, body: bytes, ts: int
) -> None:
    scheme = SCHEMES[name]
    sent, _ = scheme.sign(secret, body, ts, _identity)  # Linear's timestamp is in the body
    credentials = _credentials(scheme, secret)
    verifier = compile_verifier(descriptor(name))
    headers = sign_delivery(verifier, body=sent, credentials=credentials, now=at(ts))
    assert verify(name, sent, headers, credentials, now=at(ts), url="").ok


@given(secret=secrets, body=bodies, ts=timestamps)
@PROPERTY
def test_signing_for_a_preview_agrees_with_the_providers_own_recipe(
    secret: str, body: bytes, ts: int
) -> None:
    """Not the verifier agreeing with itself: GitHub's and Slack's recipes written out above."""
    for name in ("github", "slack"):
        scheme = SCHEMES[name]
        _, expected = scheme.sign(secret, body, ts, _identity)
        verifier = compile_verifier(descriptor(name))
        signed = sign_delivery(
            verifier, body=body, credentials=_credentials(scheme, secret), now=at(ts + 0.5)
        )
        assert signed == expected


def test_signing_a_token_scheme_adds_the_header_with_its_prefix_or_says_why_not() -> None:
    credentials = {"webhookToken": "dd-shared-token"}
    verifier = compile_verifier(descriptor("token-header"))
    headers = sign_delivery(verifier, body=b"{}", credentials=credentials, now=NOW)
    assert headers == {"Authorization": "Bearer dd-shared-token"}
    with pytest.raises(WebhookConfigError, match="put it there yourself"):
        sign_delivery(
            compile_verifier(descriptor("msgraph")),
            body=b"{}",
            credentials={"clientState": "x"},
            now=NOW,
        )
    with pytest.raises(WebhookConfigError, match="nothing to sign"):
        sign_delivery(
            compile_verifier(descriptor("unverified")), body=b"{}", credentials={}, now=NOW
        )
    with pytest.raises(WebhookConfigError, match="no 'webhookSecret' credential"):
        sign_delivery(compile_verifier(descriptor("github")), body=b"{}", credentials={}, now=NOW)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@example(secret=b"k" * 64, body=b"{}", stamp=b"1", digest="sha256")  # the block, exactly
@example(secret=b"k" * 65, body=b"{}", stamp=b"1", digest="sha256")  # past it: hashed first
@example(secret=bytes(range(150)), body=b"", stamp=b"", digest="sha1")
@given(
    secret=st.binary(min_size=1, max_size=150),  # past the 64-byte block: hashed first
    body=st.binary(max_size=300),
    stamp=st.binary(max_size=20),
    digest=st.sampled_from(["sha256", "sha1"]),
)
def test_the_mac_keyed_once_per_secret_is_the_hmac_of_the_payload(
    secret: bytes, body: bytes, stamp: bytes, digest: str
) -> None:
    """The signed payload's MAC comes from copies of an HMAC keyed once per secret, kept
    with the credentials: the very MAC ``hmac.digest`` computes, keys past the hash's
    block included, for the body alone and for a template, the first time and every
    time after (the copies are fed, never the kept HMAC); with plain credentials, which
    keep nothing, too."""
    values = {"body": body, "timestamp": stamp}
    kept = webhooks.SigningCredentials({"secret": "s"})
    for credentials in (None, {"secret": "s"}, kept, kept):
        assert webhooks._SignedPayload("{{body}}").mac(
            secret, digest, values, credentials
        ) == hmac.digest(secret, body, digest)
        assert webhooks._SignedPayload("v0:{{timestamp}}:{{body}}").mac(
            secret, digest, values, credentials
        ) == hmac.digest(secret, b"v0:" + stamp + b":" + body, digest)
    assert list(kept.keyed) == [(secret, digest)]
