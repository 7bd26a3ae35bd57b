"""The descriptor language: the brief's schema as written, extensions, the published schema."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ucf.core.descriptor import (
    ConnectorDescriptor,
    PollingDescriptor,
    SignatureVerification,
    descriptor_json_schema,
)
from ucf.core.signal_identity import SIGNAL_TYPE_MAX_CHARS
from ucf.core.validation import DescriptorInvalid, parse_descriptor, validate_descriptor

ROOT = Path(__file__).resolve().parents[2]
BRIEF = ROOT / "tests/fixtures/descriptors/brief-github-issues.json"


def brief() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(BRIEF.read_text())
    return data


def problems_of(data: Any) -> list[tuple[str, str]]:
    _, problems = validate_descriptor(data)
    return [(p.path, p.message) for p in problems]


def test_the_briefs_schema_as_written_is_valid_input() -> None:
    descriptor = parse_descriptor(brief())
    assert isinstance(descriptor.ingestion, PollingDescriptor)
    assert descriptor.polling is descriptor.ingestion
    assert descriptor.ingestion.rate_limit_rpm == 60
    assert descriptor.field_mapping is not None
    assert descriptor.field_mapping.default_type == "unknown"


def test_descriptor_round_trips_through_its_json_form() -> None:
    descriptor = parse_descriptor(brief())
    assert (
        ConnectorDescriptor.model_validate(json.loads(json.dumps(descriptor.to_json())))
        == descriptor
    )


def test_committed_json_schema_is_in_sync_with_the_models() -> None:
    committed = json.loads((ROOT / "schema/connector-descriptor.schema.json").read_text())
    assert committed == descriptor_json_schema(), "run `make schema` to regenerate"


def test_json_schema_accepts_the_brief_and_names_the_discriminators() -> None:
    schema = descriptor_json_schema()
    text = json.dumps(schema)
    assert '"propertyName": "method"' in text
    assert '"propertyName": "mode"' in text
    assert set(schema["required"]) >= {"id", "name", "auth", "healthCheck", "version", "kind"}


def test_every_shape_problem_is_listed_with_its_path() -> None:
    data = brief()
    data["id"] = "GitHub Issues"
    data["category"] = "Dev"
    data["auth"]["config"]["paramNme"] = "x"
    del data["fieldMapping"]["idPath"]
    data["ingestion"]["pagination"]["type"] = "pages"
    found = problems_of(data)
    paths = {path for path, _ in found}
    assert {
        "id",
        "category",
        "auth.config.paramNme",
        "fieldMapping.idPath",
        "ingestion.pagination.type",
    } <= paths, found


def test_unknown_field_gets_a_did_you_mean_hint() -> None:
    data = brief()
    data["fieldMapping"]["itemPath"] = "$"
    _, problems = validate_descriptor(data)
    hints = {p.path: p.hint for p in problems}
    assert hints["fieldMapping.itemPath"] == "did you mean 'itemsPath'?"


def test_unknown_auth_method_names_the_choices() -> None:
    data = brief()
    data["auth"] = {"method": "magic"}
    _, problems = validate_descriptor(data)
    assert problems[0].path == "auth"
    assert "oauth2" in (problems[0].hint or "") + problems[0].message


def test_meaning_problems_are_all_listed_with_paths() -> None:
    data = brief()
    mapping = data["fieldMapping"]
    mapping["idPath"] = "$.id[["
    mapping["signalTypeRules"][2]["value"] = "(?<=x)y"  # lookbehind: RE2 refuses
    mapping["signalTypeRules"][0]["value"] = "x"  # exists takes no value
    mapping["priorityMapping"][0]["value"] = "P0"  # 'in' needs a list
    data["ingestion"]["endpoint"] = "{{baseUrl}}/repos/{{config.owner}}/{{nope}}"
    data["ingestion"]["pagination"] = {"type": "cursor", "pageSize": 10}
    data["healthCheck"]["endpoint"] = "{{checkpoint}}"
    found = problems_of(data)
    paths = [path for path, _ in found]
    for expected in (
        "fieldMapping.idPath",
        "fieldMapping.signalTypeRules[2].value",
        "fieldMapping.signalTypeRules[0].value",
        "fieldMapping.priorityMapping[0].value",
        "ingestion.endpoint",
        "ingestion.pagination.nextPath",
        "ingestion.pagination.nextParam",
        "healthCheck.endpoint",
    ):
        assert expected in paths, (expected, found)
    endpoint_messages = [m for p, m in found if p == "ingestion.endpoint"]
    assert any("config field 'owner'" in m for m in endpoint_messages)
    assert any("'{{nope}}'" in m for m in endpoint_messages)


def test_config_fields_make_config_variables_known() -> None:
    data = brief()
    data["configFields"] = [
        {"key": "owner", "label": "Owner"},
        {"key": "repo", "label": "Repository"},
    ]
    data["ingestion"]["endpoint"] = "{{baseUrl}}/repos/{{config.owner}}/{{config.repo}}/issues"
    assert problems_of(data) == []


def test_timestamp_filter_without_query_param_must_place_the_checkpoint() -> None:
    data = brief()
    data["ingestion"]["delta"]["queryParam"] = None
    data["ingestion"]["endpoint"] = "{{baseUrl}}/issues"
    assert ("ingestion.delta.queryParam") in [p for p, _ in problems_of(data)]
    data["ingestion"]["query"] = {"since": "{{checkpoint}}"}
    assert problems_of(data) == []
    del data["ingestion"]["query"]
    data["ingestion"]["clientSideSince"] = True  # an API without a server-side filter
    assert problems_of(data) == []


def test_get_with_body_and_page_token_without_pagination_are_refused() -> None:
    data = brief()
    data["ingestion"]["body"] = {"after": "{{pageToken}}"}
    del data["ingestion"]["pagination"]
    paths = [p for p, _ in problems_of(data)]
    assert "ingestion.body" in paths
    assert "ingestion" in paths


def _webhook_descriptor() -> dict[str, Any]:
    data = brief()
    data["ingestion"] = {
        "mode": "webhook",
        "eventTypes": ["issues"],
        "eventTypePath": None,
        "eventTypeHeader": "X-GitHub-Event",
        "verification": "signature",
    }
    return data


def test_signature_verification_needs_a_scheme() -> None:
    data = _webhook_descriptor()
    assert "ingestion.verification" in [p for p, _ in problems_of(data)]


def test_signature_scheme_needs_its_secret_among_the_credential_fields() -> None:
    data = _webhook_descriptor()
    data["ingestion"]["signature"] = {"header": "X-Hub-Signature-256", "prefix": "sha256="}
    found = problems_of(data)
    assert [p for p, _ in found] == ["ingestion.signature.secretCredential"]
    data["auth"]["config"]["credentialFields"].append(
        {"key": "webhookSecret", "label": "Webhook secret", "type": "password", "required": True}
    )
    assert problems_of(data) == []


def test_webhook_secret_auth_alone_implies_the_briefs_signature_scheme() -> None:
    data = _webhook_descriptor()
    data["auth"] = {
        "method": "webhook_secret",
        "config": {
            "signatureHeader": "X-Signature",
            "algorithm": "hmac-sha1",
            "credentialFields": [
                {"key": "secret", "label": "Secret", "type": "password", "required": True}
            ],
        },
    }
    descriptor = parse_descriptor(data)
    assert descriptor.signature_verification() == SignatureVerification(
        header="X-Signature", algorithm="hmac-sha1", secret_credential="secret"
    )


def test_signed_payload_variables_need_their_sources() -> None:
    data = _webhook_descriptor()
    data["auth"]["config"]["credentialFields"].append(
        {"key": "webhookSecret", "label": "Webhook secret", "type": "password", "required": True}
    )
    data["ingestion"]["signature"] = {
        "header": "X-Slack-Signature",
        "prefix": "v0=",
        "signedPayload": "v0:{{timestamp}}:{{id}}",
    }
    paths = [p for p, _ in problems_of(data)]
    assert "ingestion.signature.signedPayload" in paths  # no {{body}}
    assert "ingestion.signature.timestamp" in paths
    assert "ingestion.signature.idHeader" in paths


def test_generic_connector_needs_ingestion_and_mapping_but_native_does_not() -> None:
    data = brief()
    del data["ingestion"]
    assert problems_of(data)
    data["kind"] = "native"
    del data["fieldMapping"]
    assert problems_of(data) == []


@pytest.mark.parametrize("bad", [None, 42, "text", [], {"id": "x"}])
def test_non_descriptors_give_problems_not_exceptions(bad: Any) -> None:
    descriptor, problems = validate_descriptor(bad)
    assert descriptor is None
    assert problems


def test_parse_descriptor_raises_with_every_problem() -> None:
    data = copy.deepcopy(brief())
    data["name"] = ""
    data["version"] = 3
    with pytest.raises(DescriptorInvalid) as caught:
        parse_descriptor(data)
    assert {p.path for p in caught.value.problems} == {"name", "version"}


def test_misspelt_config_variable_suggests_the_declared_field() -> None:
    data = brief()
    data["configFields"] = [{"key": "workspace", "label": "Workspace"}]
    data["ingestion"]["endpoint"] = "{{baseUrl}}/w/{{config.workspce}}/issues"
    _, problems = validate_descriptor(data)
    assert [(p.path, p.hint) for p in problems] == [
        ("ingestion.endpoint", "did you mean 'config.workspace'?")
    ]


def test_regex_errors_read_as_text_and_nothing_is_logged_by_re2(
    capfd: pytest.CaptureFixture[str],
) -> None:
    data = brief()
    data["fieldMapping"]["signalTypeRules"][2]["value"] = "(?=lookahead)"
    _, problems = validate_descriptor(data)
    assert [p.message for p in problems] == [
        "regular expression does not compile under RE2: invalid perl operator: (?="
    ]
    assert capfd.readouterr().err == ""


def test_a_repetition_re2_reads_as_text_is_named_with_its_fix() -> None:
    """``a{,2}`` is up to two a's to Python's ``re`` but the text "a{,2}" to RE2: a
    pattern tried in Python validated and then never matched, saying nothing."""
    data = brief()
    data["fieldMapping"]["signalTypeRules"][2]["value"] = "^v{,2}$"
    _, problems = validate_descriptor(data)
    assert [(p.message, p.hint) for p in problems] == [
        (
            "RE2 reads '{,2}' as the text \"{,2}\", not as up to 2 repetitions",
            "write '{0,2}' (or '\\{,2}' for the text)",
        )
    ]
    data["fieldMapping"]["signalTypeRules"][2]["value"] = "^v{0,2}$|\\{,2}"
    assert validate_descriptor(data)[1] == []


def test_a_signal_type_longer_than_signals_keep_is_refused_with_its_path() -> None:
    """Every signal carries its type whole: a type of hundreds of KB (a custom descriptor)
    made signals no store keeps (DynamoDB: 400 KB an item), refused at every poll."""
    data = brief()
    data["fieldMapping"]["defaultType"] = "x" * (SIGNAL_TYPE_MAX_CHARS + 1)
    data["fieldMapping"]["signalTypeRules"][0]["then"] = "y" * 300_000
    paths = {path for path, _ in problems_of(data)}
    assert {"fieldMapping.defaultType", "fieldMapping.signalTypeRules[0].then"} <= paths

    data = brief()
    data["fieldMapping"]["defaultType"] = "x" * SIGNAL_TYPE_MAX_CHARS
    assert problems_of(data) == []
