"""``ucf webhooks verify`` run as a user runs it: the real console script, real files."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UCF = str(Path(sys.executable).parent / "ucf")
FIXTURES = ROOT / "tests/fixtures/webhooks"
DESCRIPTORS = FIXTURES / "descriptors"
PAYLOADS = FIXTURES / "payloads"

GITHUB_DOC_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
SLACK_DOC = [
    "--header",
    "X-Slack-Request-Timestamp: 1531420618",
    "--header",
    "X-Slack-Signature: v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
    "--body-file",
    str(PAYLOADS / "slack-docs-slash-command.txt"),
    "--secret",
    "8f742231b10e8888abcd99yyyzzz85a5",
    "--descriptor",
    str(DESCRIPTORS / "slack.json"),
]


def ucf(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [UCF, "webhooks", "verify", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def github(*args: str) -> subprocess.CompletedProcess[str]:
    return ucf(
        "--descriptor",
        str(DESCRIPTORS / "github.json"),
        "--body-file",
        str(PAYLOADS / "github-docs-example.txt"),
        *args,
    )


def test_githubs_documented_delivery_is_valid() -> None:
    result = github(
        "--secret",
        "It's a Secret to Everybody",
        "--header",
        f"X-Hub-Signature-256: {GITHUB_DOC_SIGNATURE}",
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "valid\n", "")


def test_secret_can_come_from_the_environment_instead_of_the_command_line() -> None:
    result = ucf(
        "--descriptor",
        str(DESCRIPTORS / "github.json"),
        "--body-file",
        str(PAYLOADS / "github-docs-example.txt"),
        "--header",
        f"X-Hub-Signature-256: {GITHUB_DOC_SIGNATURE}",
        env={"UCF_WEBHOOK_SECRET": "It's a Secret to Everybody"},
    )
    assert (result.returncode, result.stdout) == (0, "valid\n")


def test_a_wrong_secret_says_the_signature_does_not_match_and_exits_1() -> None:
    result = github(
        "--secret", "not it", "--header", f"X-Hub-Signature-256: {GITHUB_DOC_SIGNATURE}"
    )
    assert result.returncode == 1
    assert result.stdout.startswith(
        "invalid: the signature in header X-Hub-Signature-256 does not match"
    )
    assert "not it" not in result.stdout + result.stderr


def test_a_missing_signature_header_is_named() -> None:
    result = github("--secret", "s", "--header", "X-GitHub-Event: issues")
    assert (result.returncode, result.stdout) == (
        1,
        "invalid: missing header X-Hub-Signature-256\n",
    )


def test_a_signature_that_is_not_hex_is_bad_encoding() -> None:
    result = github("--secret", "s", "--header", "X-Hub-Signature-256: sha256=not-hex")
    assert result.returncode == 1
    assert "is not valid hex (expected sha256=<hex>)" in result.stdout


def test_slacks_documented_request_is_valid_at_the_time_it_was_sent() -> None:
    result = ucf(*SLACK_DOC, "--at", "1531420618")
    assert (result.returncode, result.stdout) == (0, "valid\n")


def test_a_replayed_slack_request_says_how_far_outside_the_window_it_is() -> None:
    result = ucf(*SLACK_DOC, "--at", str(1531420618 + 412))
    assert result.returncode == 1
    assert result.stdout == "invalid: timestamp outside the 300 s window (request is 412 s old)\n"
    today = ucf(*SLACK_DOC)
    assert today.returncode == 1
    assert "hint: to check a recorded delivery, pass --at" in today.stderr


def test_trello_needs_the_registered_url_and_verifies_with_it(tmp_path: Path) -> None:
    body = (PAYLOADS / "trello-update-card.json").read_bytes()
    url = "https://hooks.example.com/trello?board=1"
    signature = base64.b64encode(
        hmac.new(b"app-secret", body + url.encode(), hashlib.sha1).digest()
    ).decode()
    common = [
        "--descriptor",
        str(DESCRIPTORS / "trello.json"),
        "--body-file",
        str(PAYLOADS / "trello-update-card.json"),
        "--secret",
        "app-secret",
        "--header",
        f"X-Trello-Webhook: {signature}",
    ]
    without_url = ucf(*common)
    assert without_url.returncode == 2
    assert "pass --url" in without_url.stderr
    assert ucf(*common, "--url", url).stdout == "valid\n"
    assert ucf(*common, "--url", url + "&x=1").returncode == 1


def test_token_in_a_query_parameter_can_be_given_with_query(tmp_path: Path) -> None:
    descriptor = tmp_path / "query-token.json"
    text = (DESCRIPTORS / "token-header.json").read_text()
    descriptor.write_text(
        text.replace('"header": "Authorization"', '"queryParam": "token"').replace(
            '"valuePrefix": "Bearer ",', ""
        )
    )
    common = ["--descriptor", str(descriptor), "--body-file", str(PAYLOADS / "datadog-alert.json")]
    assert ucf(*common, "--secret", "t0k", "--query", "token=t0k").stdout == "valid\n"
    wrong = ucf(*common, "--secret", "t0k", "--query", "token=nope")
    assert wrong.returncode == 1
    assert wrong.stdout.startswith("invalid: the token in query parameter token does not match")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--secret", "s", "--header", "no colon here"], "--header must look like 'Name: value'"),
        (["--header", f"X-Hub-Signature-256: {GITHUB_DOC_SIGNATURE}"], "pass --secret"),
        (["--secret", "s", "--at", "nan"], "--at must be a Unix time"),
        (["--secret", "s", "--query", "novalue"], "--query must look like 'name=value'"),
    ],
)
def test_usage_errors_exit_2_with_one_line_and_no_traceback(args: list[str], message: str) -> None:
    result = github(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_files_and_broken_descriptors_exit_2(tmp_path: Path) -> None:
    missing_body = ucf(
        "--descriptor",
        str(DESCRIPTORS / "github.json"),
        "--body-file",
        str(tmp_path / "nope"),
        "--secret",
        "s",
    )
    assert missing_body.returncode == 2
    assert missing_body.stderr.startswith("error: cannot read body file")
    broken = tmp_path / "broken.json"
    broken.write_text('{"id": "Not An Id"}')
    invalid = ucf(
        "--descriptor", str(broken), "--body-file", str(PAYLOADS / "github-docs-example.txt")
    )
    assert invalid.returncode == 2
    assert "problem(s)" in invalid.stderr
    polling_only = ucf(
        "--descriptor",
        str(ROOT / "tests/fixtures/descriptors/brief-github-issues.json"),
        "--body-file",
        str(PAYLOADS / "github-docs-example.txt"),
    )
    assert polling_only.returncode == 2
    assert "receives no webhooks" in polling_only.stderr
    assert "Traceback" not in missing_body.stderr + invalid.stderr + polling_only.stderr


# --------------------------------------------------------------------------- ses (SNS messages)

SNS_FIXTURES = ROOT / "tests/fixtures/sns"
AWS_SNS_CERT = SNS_FIXTURES / "aws-signing-cert-2021.pem"


def sns_vector(tmp_path: Path, index: int = 3, **changes: str) -> tuple[Path, str]:
    """One of AWS's published SNS messages (v2 with Subject by default), maybe changed."""
    import json

    vectors = json.loads((SNS_FIXTURES / "aws-validator-vectors.json").read_text())["messages"]
    message = {**vectors[index], **changes}
    path = tmp_path / "sns.json"
    path.write_text(json.dumps(message))
    return path, message["TopicArn"]


def ses(body: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return ucf("--descriptor", "ses", "--body-file", str(body), *args)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_a_real_sns_message_is_valid_offline_with_its_signing_certificate(
    tmp_path: Path, index: int
) -> None:
    body, topic = sns_vector(tmp_path, index)
    result = ses(body, "--config", f"topicArn={topic}", "--signing-cert", str(AWS_SNS_CERT))
    assert (result.returncode, result.stdout) == (0, "valid\n"), result.stderr


def test_a_changed_sns_message_is_invalid_and_says_the_signature_does_not_verify(
    tmp_path: Path,
) -> None:
    body, topic = sns_vector(tmp_path, Message="Hello world, changed")
    result = ses(body, "--config", f"topicArn={topic}", "--signing-cert", str(AWS_SNS_CERT))
    assert result.returncode == 1
    assert result.stdout.startswith("invalid: the signature does not verify (SignatureVersion 2)")


def test_an_sns_message_for_another_topic_or_from_a_foreign_host_is_explained(
    tmp_path: Path,
) -> None:
    body, _ = sns_vector(tmp_path)
    result = ses(
        body,
        "--config",
        "topicArn=arn:aws:sns:us-east-2:295079676684:mine",
        "--signing-cert",
        str(AWS_SNS_CERT),
    )
    assert result.returncode == 1
    assert "is not the configured topic" in result.stdout
    body, topic = sns_vector(tmp_path, SigningCertURL="https://attacker.example/cert.pem")
    result = ses(body, "--config", f"topicArn={topic}", "--signing-cert", str(AWS_SNS_CERT))
    assert result.returncode == 1
    assert "'attacker.example' is not an SNS host" in result.stdout


def test_ses_verify_asks_for_the_topic_and_rejects_a_bad_certificate_file(tmp_path: Path) -> None:
    body, topic = sns_vector(tmp_path)
    result = ses(body, "--signing-cert", str(AWS_SNS_CERT))
    assert result.returncode == 2
    assert "--config topicArn=" in result.stderr
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    result = ses(body, "--config", f"topicArn={topic}", "--signing-cert", str(not_pem))
    assert result.returncode == 2
    assert "not a PEM certificate" in result.stderr


def test_signing_cert_is_refused_for_a_generic_descriptor() -> None:
    result = github("--secret", "x", "--signing-cert", str(AWS_SNS_CERT))
    assert result.returncode == 2
    assert "native connectors only" in result.stderr
