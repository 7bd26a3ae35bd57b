"""What identifies a webhook delivery when its payload carries no item version."""

from __future__ import annotations

import hashlib
from typing import Any

from ucf.core.descriptor import WebhookSpec
from ucf.core.webhook import FoldedHeaders, fallback_version, header

BODY = b'{"action":"opened"}'
BODY_HASH = hashlib.sha256(BODY).hexdigest()


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
