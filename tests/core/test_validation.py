"""One-pass validation: shape and meaning problems reported together, each where it is.

An author fixes a descriptor in a loop; a validator that hides meaning problems
behind shape problems makes that loop three rounds instead of one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from ucf.core.descriptor import ConnectorDescriptor, descriptor_json_schema
from ucf.core.validation import Problem, validate_descriptor

ROOT = Path(__file__).resolve().parents[2]
BRIEF = ROOT / "tests/fixtures/descriptors/brief-github-issues.json"


def brief() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(BRIEF.read_text())
    return data


def problems(data: Any) -> dict[str, Problem]:
    descriptor, found = validate_descriptor(data)
    assert descriptor is None or found == [] or found
    return {p.path: p for p in found}


def test_a_descriptor_with_five_problems_reports_five_in_one_pass() -> None:
    data = brief()
    data["category"] = "Dev"  # shape
    data["healthCheck"]["method"] = "PUT"  # shape
    data["fieldMapping"]["idPath"] = "$.id[["  # JSONPath that does not parse
    data["fieldMapping"]["signalTypeRules"][2]["value"] = "(?<=x)y"  # RE2 refuses lookbehind
    data["ingestion"]["endpoint"] = "{{baseUrl}}/{{nope}}"  # unknown template variable
    found = problems(data)
    assert set(found) == {
        "category",
        "healthCheck.method",
        "fieldMapping.idPath",
        "fieldMapping.signalTypeRules[2].value",
        "ingestion.endpoint",
    }, found
    assert "RE2" in found["fieldMapping.signalTypeRules[2].value"].message


def test_text_with_a_lone_surrogate_is_a_problem_at_its_path_and_the_rest_is_checked() -> None:
    """JSON's ``"\\ud800"`` parses to a lone surrogate, which the store cannot encode: a
    descriptor with one in its description or icon was valid, and registering it a 500."""
    data = brief()
    data["description"] = "Issues \ud800 of a repository"
    data["icon"] = "\udc00"
    data["fieldMapping"]["idPath"] = "$.id[["  # still found
    data["fieldMapping"]["tagsFrom"] = {"\ud83d": "x"}  # a key, too (in a field not known)
    found = problems(data)
    assert set(found) == {
        "description",
        "icon",
        "fieldMapping.idPath",
        "fieldMapping.tagsFrom",
        "fieldMapping.tagsFrom.\ud83d",
    }, found
    assert "lone surrogate" in found["icon"].message
    nested = brief()
    nested["x"] = json.loads("[" * 900 + "]" * 900)  # as deep as JSON reads: no recursion
    assert list(problems(nested)) == ["x"]


def test_header_text_a_request_cannot_carry_is_refused_where_it_is_written() -> None:
    """httpx sends header values as ASCII: anything else failed every poll and health
    check of the connector with a UnicodeEncodeError, long after the descriptor was
    saved. A template's placeholders are ASCII; the text around them must be too."""
    data = brief()
    data["auth"]["config"]["extraHeaders"] = {"X-Note": "café", "X-Fine": "yes"}
    data["auth"]["config"].update(delivery="header", valuePrefix="Token\u00a0")
    data["ingestion"]["headers"] = {"Accept": "application/json", "X-Tag": "{{baseUrl}}\u200b"}
    found = problems(data)
    assert set(found) == {
        "auth.config.extraHeaders.X-Note",
        "auth.config.valuePrefix",
        "ingestion.headers.X-Tag",
    }, found
    assert "printable ASCII" in found["auth.config.extraHeaders.X-Note"].message


def test_a_part_that_does_not_parse_still_has_its_paths_and_regexes_checked() -> None:
    data = brief()
    mapping = data["fieldMapping"]
    mapping["itemPath"] = "$"  # typo: the mapping as a whole does not parse
    mapping["timestampPath"] = "$..[["
    mapping["signalTypeRules"][1]["operator"] = "exists"  # exists takes no value
    mapping["signalTypeRules"][2]["value"] = "(?=x)"
    found = problems(data)
    assert found["fieldMapping.itemPath"].hint == "did you mean 'itemsPath'?"
    assert "does not parse" in found["fieldMapping.timestampPath"].message
    assert "takes no value" in found["fieldMapping.signalTypeRules[1].value"].message
    assert "RE2" in found["fieldMapping.signalTypeRules[2].value"].message


def test_meaning_checks_needing_a_broken_part_stay_silent_instead_of_guessing() -> None:
    data = brief()
    data["auth"]["method"] = "patt"  # credential fields unknowable as a model...
    data["ingestion"] = {
        "mode": "webhook",
        "eventTypes": ["issues"],
        "eventTypeHeader": "X-GitHub-Event",
        "verification": "token",
        "token": {"header": "X-Token", "secretCredential": "token"},
    }
    data["id"] = "Bad Id"
    found = problems(data)
    # ...but their raw keys are still read: 'token' is a declared credential field.
    assert set(found) == {"auth", "id"}, found
    data["ingestion"]["token"]["secretCredential"] = "hookSecret"
    assert (
        "no credential field 'hookSecret'"
        in problems(data)["ingestion.token.secretCredential"].message
    )


def test_moving_to_polling_and_webhook_says_where_each_field_goes() -> None:
    """Found by a new author moving a GitLab connector from polling to polling_and_webhook."""
    data = brief()
    data["ingestion"].update(
        {
            "mode": "polling_and_webhook",
            "eventTypes": ["Issue Hook"],
            "eventTypeHeader": "X-Gitlab-Event",
            "verification": "token",
            "token": {"header": "X-Gitlab-Token"},
        }
    )
    found = problems(data)
    endpoint = found["ingestion.endpoint"]
    assert (
        endpoint.message
        == "in mode 'polling_and_webhook', 'endpoint' belongs under 'ingestion.polling'"
    )
    assert endpoint.hint == "move it into 'ingestion.polling'"
    assert found["ingestion.eventTypeHeader"].hint == "move it into 'ingestion.webhook'"
    assert found["ingestion.token"].hint == "move it into 'ingestion.webhook'"
    assert "expects two objects: 'polling'" in (found["ingestion.polling"].hint or "")
    assert not any("did you mean" in (p.hint or "") for p in found.values())


def test_a_field_of_another_mode_names_that_mode() -> None:
    data = brief()
    data["ingestion"]["webhook"] = {"eventTypes": ["x"], "verification": "none"}
    found = problems(data)
    assert "mode 'polling' expects the request fields" in found["ingestion.webhook"].message
    assert "only mode 'polling_and_webhook' has 'webhook'" in (
        found["ingestion.webhook"].hint or ""
    )


def test_an_object_without_its_kind_names_the_missing_field_and_the_kinds() -> None:
    data = brief()
    del data["ingestion"]["mode"]
    del data["auth"]["method"]
    found = problems(data)
    mode = found["ingestion.mode"]
    assert (mode.message, mode.hint) == (
        "required field is missing",
        "add 'mode': one of 'polling', 'webhook', 'polling_and_webhook'",
    )
    assert found["auth.method"].message == "required field is missing"
    assert "'api_key'" in (found["auth.method"].hint or "")
    assert not any("discriminator" in p.message for p in found.values())


def test_a_name_that_would_show_reversed_or_cut_is_refused_at_its_path() -> None:
    """A right-to-left override showed "\u202eabc" as "cba" in every list and title."""
    for bad in ("\u202eabc", "a\x00b", "two\nlines", "trailing\n", "\u2067isolated"):
        data = brief()
        data["name"] = bad
        found = problems(data)
        assert list(found) == ["name"], bad
        assert found["name"].message == "holds a control character or a bidirectional override"
        # Checked where a descriptor is registered, not by the model: one stored before
        # the rule still loads.
        assert ConnectorDescriptor.model_validate(data).name == bad
    data = brief()
    data["name"] = "Jira — 日本語 (Ünïcode)"
    assert problems(data) == {}


def test_unknown_field_suggests_a_key_of_its_own_block() -> None:
    data = brief()
    data["ingestion"]["pagination"]["pagesize"] = 10
    assert problems(data)["ingestion.pagination.pagesize"].hint == "did you mean 'pageSize'?"


def test_event_type_header_alone_is_enough() -> None:
    data = brief()
    polling = data["ingestion"]
    del polling["mode"]
    data["ingestion"] = {
        "mode": "polling_and_webhook",
        "polling": polling,
        "webhook": {
            "eventTypes": ["Issue Hook"],
            "eventTypeHeader": "X-Gitlab-Event",
            "actionPath": "$.object_attributes.action",
            "verification": "none",
        },
    }
    assert problems(data) == {}
    del data["ingestion"]["webhook"]["eventTypeHeader"]
    assert "eventTypePath or eventTypeHeader" in (
        problems(data)["ingestion.webhook.eventTypePath"].hint or ""
    )


def test_a_value_of_the_wrong_type_is_one_problem_at_its_own_path() -> None:
    """A condition's ``value`` is a string or a list of strings: an object there was two
    contradicting problems, one at ``value.str``, a path the descriptor does not have."""
    for wrong in ({"a": 1}, 5, [1, {"a": 2}]):
        data = brief()
        data["fieldMapping"]["signalTypeRules"][0]["value"] = wrong
        _, found = validate_descriptor(data)
        assert [(p.path, p.message) for p in found] == [
            (
                "fieldMapping.signalTypeRules[0].value",
                "Input should be a string or a list of strings",
            )
        ], wrong


def test_a_missing_part_or_a_non_object_is_named_in_the_authors_words_at_its_path() -> None:
    """A generic connector without ``fieldMapping`` was one problem at the root, "Value
    error, a generic connector needs fieldMapping"; a ``null`` health check said "a valid
    dictionary or instance of HealthCheckDescriptor", a class no author writes."""
    data = brief()
    del data["fieldMapping"]
    data["healthCheck"] = None
    data["ingestion"]["pagination"] = "link"
    _, found = validate_descriptor(data)
    assert [(p.path, p.message) for p in found] == [
        ("ingestion.pagination", "Input should be an object"),
        ("healthCheck", "Input should be an object"),
        ("fieldMapping", "required field is missing"),
    ]
    timestamp = brief()
    timestamp["ingestion"] = {
        "mode": "webhook",
        "eventTypes": ["issues"],
        "eventTypeHeader": "X-Event",
        "verification": "signature",
        "signature": {"header": "X-Sig", "timestamp": {"toleranceSeconds": 60}},
    }
    assert [(p.path, p.message) for p in validate_descriptor(timestamp)[1]] == [
        ("ingestion.signature.timestamp", "give exactly one of 'header' or 'bodyPath'")
    ]


def test_a_header_or_query_parameter_without_a_usable_name_is_refused() -> None:
    """An empty or spaced header name validated, then failed every request as
    "connection failed (LocalProtocolError)" after retries; an empty query parameter
    name sent the key as '?=…'."""
    data = brief()
    data["auth"]["config"].update(
        delivery="header",
        paramName="X Api Key",
        additionalCredentials=[{"credential": "token", "delivery": "query", "paramName": ""}],
        extraHeaders={"Notion Version": "2022-06-28"},
    )
    data["ingestion"]["headers"] = {"": "x"}
    found = problems(data)
    assert {path: p.message for path, p in found.items()} == {
        "auth.config.paramName": "'X Api Key' is not a header name",
        "auth.config.additionalCredentials[0].paramName": "the query parameter needs a name",
        "auth.config.extraHeaders": "'Notion Version' is not a header name",
        "ingestion.headers": "'' is not a header name",
    }


def _oauth(*, authorise_url: str, token_url: str) -> dict[str, Any]:
    """An oauth2 ``auth`` asking for its client and refresh token, with these two URLs."""
    return {
        "method": "oauth2",
        "config": {
            "credentialFields": [
                {"key": key, "label": key, "type": "password", "required": True}
                for key in ("clientId", "clientSecret", "refreshToken")
            ],
            "authoriseUrl": authorise_url,
            "tokenUrl": token_url,
            "scopes": [],
        },
    }


def test_oauth_urls_are_http_urls_or_templates_of_settings() -> None:
    """They were never checked: the form's switch to oauth2 left them empty, which
    validated, and the consent or token request then went nowhere."""
    data = brief()
    data["auth"] = _oauth(authorise_url="", token_url="{{config.authUrl}}/token")
    assert {path: p.message for path, p in problems(data).items()} == {
        "auth.config.authoriseUrl": "'' is not an http(s) URL",
        "auth.config.tokenUrl": "template uses '{{config.authUrl}}' but there is no config "
        "field 'authUrl'",
    }
    data["auth"]["config"].update(authoriseUrl="{{baseUrl}}/authorize", tokenUrl="https://t/t")
    assert problems(data) == {}


def test_an_oauth_url_is_checked_as_the_setup_form_and_the_token_request_read_it() -> None:
    """A literal URL with no host ("https://") validated, one with its scheme in capitals
    ("HTTPS://…", the same URL) was refused, and ``{{baseUrl}}`` validated even where no
    request used it, so the setup form never asked for it and the token request went
    to "/token"."""
    data = brief()
    data["auth"] = _oauth(authorise_url="HTTPS://auth.example.com/authorize", token_url="https://")
    assert {path: p.message for path, p in problems(data).items()} == {
        "auth.config.tokenUrl": "'https://' is not an http(s) URL",
    }
    data["auth"]["config"]["tokenUrl"] = "{{baseUrl}}/token"
    assert problems(data) == {}  # the brief's requests use {{baseUrl}}: the form asks for it
    data["configFields"] = [{"key": "site", "label": "Site", "type": "url", "required": True}]
    for name in ("ingestion", "healthCheck"):
        data[name]["endpoint"] = data[name]["endpoint"].replace("{{baseUrl}}", "{{config.site}}")
    assert {path: p.message for path, p in problems(data).items()} == {
        "auth.config.tokenUrl": "template uses '{{baseUrl}}' but no request uses baseUrl, so "
        "the setup form never asks for it",
    }


def test_a_file_pointing_its_editor_at_the_published_schema_is_valid() -> None:
    """The guide says to point your editor at the schema; the usual way, a "$schema" key
    in the file, was an unknown field, and the published schema refused it too."""
    data = {"$schema": "../schema/connector-descriptor.schema.json", **brief()}
    descriptor, found = validate_descriptor(data)
    assert found == []
    assert descriptor is not None
    assert "$schema" not in descriptor.to_json()  # an editor's pointer, not stored
    assert list(Draft202012Validator(descriptor_json_schema()).iter_errors(data)) == []
    assert [p.path for p in validate_descriptor({**data, "$schema": 5})[1]] == ["$schema"]


def test_duplicate_keys_are_named_at_their_paths_inside_lists_too() -> None:
    from ucf.core.validation import duplicate_keys

    text = '{"configFields": [{"key": "a"}, {"key": "b", "key": "c", "key": "d"}], "id": 1}'
    [problem] = duplicate_keys(text)
    assert problem.path == "configFields[1].key"
    assert "given 3 times" in problem.message
    assert duplicate_keys('{"id": 1, "name": {"id": 2}}') == []
    assert duplicate_keys("{not json") == []  # its own problem says where it breaks


def test_one_parse_gives_the_value_json_gives_and_the_repeats_of_dropped_values_too() -> None:
    """The API reads a body once (FastAPI's parse) and learns its repeated keys from it:
    the value must be exactly ``json.loads``'s (the last value, at the first key's
    place), and a repeat inside a value a later key dropped is named as well."""
    from ucf.core.validation import duplicate_keys, loads_noting_repeats

    text = '{"a": {"x": 1, "x": 2}, "b": [{"k": 1}], "a": {"y": 3}, "c": {"z": 1}}'
    value, problems = loads_noting_repeats(text)
    assert value == json.loads(text)
    assert list(value) == ["a", "b", "c"]
    assert [p.path for p in problems] == ["a", "a.x"]
    assert problems == duplicate_keys(text)
    assert loads_noting_repeats(b'{"id": 1}') == ({"id": 1}, [])
    with pytest.raises(json.JSONDecodeError):
        loads_noting_repeats("{not json")
