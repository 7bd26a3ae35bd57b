"""What identifies a webhook delivery when its payload carries no item version."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

import ucf.core.webhook as webhook_module
from ucf.core.descriptor import WebhookSpec
from ucf.core.mapping import CompiledMapping
from ucf.core.webhook import FoldedHeaders, fallback_version, folded_of, header, map_delivery

BODY = b'{"action":"opened"}'
BODY_HASH = hashlib.sha256(BODY).hexdigest()
NOW = datetime(2025, 3, 2, tzinfo=UTC)


def webhook(**fields: Any) -> WebhookSpec:
    base: dict[str, Any] = {"eventTypes": ["x"], "eventTypePath": "$.type"}
    base.update(fields)
    return WebhookSpec.model_validate({**base, "verification": base.get("verification", "none")})


def test_an_unsigned_delivery_id_header_never_identifies_a_delivery() -> None:
    """GitHub signs the body, not X-GitHub-Delivery: a replay under a fresh id is the same."""
    github = webhook(
        verification="signature",
        deliveryIdHeader="X-GitHub-Delivery",
        signature={"header": "X-Hub-Signature-256", "prefix": "sha256="},
    )
    first = fallback_version(github, {}, {"X-GitHub-Delivery": "d-1"}, BODY)
    replay = fallback_version(github, {}, {"X-GitHub-Delivery": "d-2"}, BODY)
    assert first == replay == BODY_HASH


def test_a_delivery_id_in_the_signed_body_identifies_the_delivery() -> None:
    slack = webhook(deliveryIdPath="$.event_id")
    assert fallback_version(slack, {"event_id": "Ev1"}, {}, BODY) == "Ev1"
    assert fallback_version(slack, {}, {}, BODY) == BODY_HASH


def test_a_header_id_counts_where_the_signature_covers_it_or_a_window_bounds_replays() -> None:
    standard = webhook(
        verification="signature",
        deliveryIdHeader="webhook-id",
        signature={"header": "webhook-signature", "idHeader": "webhook-id"},
    )
    assert fallback_version(standard, {}, {"Webhook-Id": "msg_1"}, BODY) == "msg_1"
    linear = webhook(
        verification="signature",
        deliveryIdHeader="Linear-Delivery",
        signature={
            "header": "Linear-Signature",
            "timestamp": {"bodyPath": "$.webhookTimestamp", "unit": "ms"},
        },
    )
    assert fallback_version(linear, {}, {"Linear-Delivery": "L-1"}, BODY) == "L-1"
    assert fallback_version(linear, {}, {}, BODY) == BODY_HASH


def test_folded_headers_answer_every_lookup_as_a_plain_mapping_does() -> None:
    sent = {"X-GitHub-Event": "issues", "content-type": "application/json"}
    folded = FoldedHeaders({name.lower(): value for name, value in sent.items()})
    for name in ("X-GitHub-Event", "x-github-event", "CONTENT-TYPE", "X-Missing"):
        assert header(folded, name) == header(sent, name)
        assert folded.get(name) == header(sent, name)
        assert (name in folded) == (header(sent, name) is not None)
    assert folded["X-GITHUB-EVENT"] == "issues"
    assert dict(folded.items()) == {"x-github-event": "issues", "content-type": "application/json"}


def test_a_servers_own_folded_headers_are_read_folded_and_anything_else_is_folded_here() -> None:
    class ServerHeaders(FoldedHeaders):
        __slots__ = ()

    server = ServerHeaders({"x-github-event": "issues"})
    assert folded_of(server) is server.folded
    assert folded_of(FoldedHeaders({})) == {}
    assert header(server, "X-GitHub-Event") == "issues"

    class NotFolded(dict[str, str]):
        folded: ClassVar[dict[str, str]] = {"x-github-event": "forged"}  # not a FoldedHeaders

    plain = NotFolded({"X-GitHub-Event": "push"})
    assert folded_of(plain) is None
    assert folded_of({"x-github-event": "push"}) is None
    assert header(plain, "x-github-event") == "push"


def _github_issues() -> WebhookSpec:
    return webhook(
        eventTypes=["issues"],
        eventTypePath=None,
        eventTypeHeader="X-GitHub-Event",
        verification="signature",
        deliveryIdHeader="X-GitHub-Delivery",
        signature={"header": "X-Hub-Signature-256", "prefix": "sha256="},
        fieldMapping={
            "itemsPath": "$",
            "idPath": "$.issue.id",
            "timestampPath": "$.issue.updated_at",
            "summaryTemplate": "{{issue.title}}",
            "signalTypeRules": [{"when": "$.issue.id", "operator": "exists", "then": "x"}],
        },
    )


def test_the_body_is_hashed_only_for_an_item_without_a_version_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fallback version (here the body's SHA-256) is worked out when an item needs it,
    once per delivery, and never for a delivery whose items carry their update time."""
    spec = _github_issues()
    mapping = CompiledMapping(spec.field_mapping) if spec.field_mapping else None
    assert mapping is not None
    calls: list[bytes] = []

    def counted(*args: Any) -> str:
        calls.append(args[3])
        return fallback_version(*args)

    monkeypatch.setattr(webhook_module, "fallback_version", counted)
    headers = {"x-github-event": "issues", "x-github-delivery": "d-1"}
    dated = {"issue": {"id": 1, "title": "t", "updated_at": "2025-03-01T00:00:00Z"}}
    mapped = map_delivery(
        spec, mapping, dated, headers=headers, body=BODY, connector_id="c", project_id="p", now=NOW
    )
    assert [s.version for s in mapped.result.signals] == ["2025-03-01T00:00:00.000Z"]
    assert calls == []

    undated = {"issue": {"id": 1, "title": "t"}}
    mapped = map_delivery(
        spec,
        mapping,
        undated,
        headers=headers,
        body=BODY,
        connector_id="c",
        project_id="p",
        now=NOW,
    )
    assert [s.version for s in mapped.result.signals] == [BODY_HASH]
    assert calls == [BODY]


@pytest.mark.parametrize(
    "payload",
    [
        {"issue": {"id": 1, "title": "t", "updated_at": "2025-03-01T00:00:00Z"}},
        {"issue": {"id": 2, "title": "t", "pull_request": {}}},
        {"issue": {"title": "no id"}},
        {"issue": {"id": 3, "title": "t", "updated_at": "not a time"}},
    ],
    ids=["mapped", "skipped", "no-id", "bad-time"],
)
def test_a_one_item_delivery_maps_as_map_items_maps_it(payload: dict[str, Any]) -> None:
    """map_delivery writes map_items' loop out for a payload of one item (most deliveries):
    its signal, skip count and item error are map_items' own."""
    base = _github_issues().model_dump(by_alias=True, exclude_none=True)
    base["fieldMapping"]["skip"] = [{"when": "$.issue.pull_request", "operator": "exists"}]
    spec = WebhookSpec.model_validate(base)
    assert spec.field_mapping is not None
    mapping = CompiledMapping(spec.field_mapping)
    headers = {"x-github-event": "issues", "x-github-delivery": "d-1"}
    mapped = map_delivery(
        spec,
        mapping,
        payload,
        headers=headers,
        body=BODY,
        connector_id="c",
        project_id="p",
        now=NOW,
    )
    expected = mapping.map_items(
        mapping.extract_items(payload),
        "c",
        "p",
        event_type="issues",
        fallback_version=lambda: fallback_version(spec, payload, headers, BODY),
        now=NOW,
    )
    assert (mapped.event_type, mapped.handled) == ("issues", True)
    assert mapped.result == expected
    assert len(mapped.result.signals) + len(mapped.result.errors) + mapped.result.skipped == 1
