"""Jira Cloud webhooks: verification and the events ucf turns into signals.

Jira admin webhooks (Jira settings → System → WebHooks, or
``POST /rest/webhooks/1.0/webhook``) post JSON with ``webhookEvent`` naming the
event (https://developer.atlassian.com/cloud/jira/platform/webhooks/):

* ``jira:issue_created`` → ``issue_created``;
* ``jira:issue_updated`` → ``issue_status_changed`` when the delivery's
  ``changelog`` changes ``status``, ``issue_commented`` when
  ``issue_event_type_name`` is ``issue_commented``/``issue_comment_edited``
  (Jira sends that *and* ``comment_created`` for one comment: both map to the
  same signal), else ``issue_updated``; a delivery that carries a ``comment``
  *and* a ``changelog`` (a transition made with a comment) is both signals,
  the change and the comment, as the poll names them;
* ``comment_created`` / ``comment_updated`` → ``issue_commented``;
* ``jira:issue_deleted`` → ``issue_deleted``.

Anything else (``worklog_*``, ``sprint_*``, ``project_*``…) is answered 202
and stored nowhere. The signal identity is the one the poll uses (see
:mod:`ucf.native.jira.signals`), so a change seen by both is one signal;
``X-Atlassian-Webhook-Identifier`` (the same on every retry of a delivery)
names the delivery in logs.

**Verification.** A webhook registered *with a secret* carries
``X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` (the
"Secure admin webhooks" section of the page above). With ``webhookSecret`` set,
every delivery must carry a valid signature, compared in constant time.

Webhooks an OAuth 2.0 (3LO) app registers (``POST /rest/api/3/webhook``) carry
no ``X-Hub-Signature``; Jira sends them with ``Authorization: Bearer <JWT>``
instead ("Webhooks authentication for OAuth 2.0 apps" on the page above),
signed with the app's client secret. An instance without ``webhookSecret``
that signs in with OAuth checks that token: HS256 only, the signature with the
client secret (constant time, by joserfc), and ``exp``/``nbf`` when present
(30 s of clock skew allowed). Atlassian does not document the other claims,
and the token does not cover the body, so it proves the sender, not the
payload: a secret registered with the webhook remains the stronger choice.

Anything else is refused — unless the instance's ``unsignedWebhooks`` setting
is ``accept``, which a user chooses for webhooks registered without a secret,
and then relies on the URL staying private (with ``accept``, an app's token is
not checked either, so a change of key on Atlassian's side cannot stop
deliveries a user has chosen to take).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ucf.native import (
    Malformed,
    MappedSignal,
    MappingResult,
    Refused,
    Unhandled,
    Verdict,
    Verified,
    WebhookContext,
    WebhookRequest,
    loads_strict,
)
from ucf.native.jira.adf import plain_text
from ucf.native.jira.signals import (
    CREATED,
    comment_version,
    issue_signal,
    jira_time,
    version_of,
)

__all__ = [
    "EVENTS",
    "SIGNATURE_HEADER",
    "JiraWebhooks",
    "expected_signature",
    "verify_app_token",
]

SIGNATURE_HEADER: Final = "X-Hub-Signature"
DELIVERY_HEADER: Final = "X-Atlassian-Webhook-Identifier"
SECRET_KEY: Final = "webhookSecret"  # noqa: S105 - a credential's name
CLIENT_SECRET_KEY: Final = "clientSecret"  # noqa: S105 - a credential's name
ACCEPT_UNSIGNED: Final = "accept"
APP_TOKEN_ALGORITHM: Final = "HS256"  # noqa: S105 - a JWS algorithm
CLOCK_SKEW: Final = timedelta(seconds=30)

EVENTS: Final = frozenset(
    {
        "jira:issue_created",
        "jira:issue_updated",
        "jira:issue_deleted",
        "comment_created",
        "comment_updated",
    }
)
"""The ``webhookEvent`` values that become signals."""

_COMMENT_EVENT_TYPES: Final = frozenset({"issue_commented", "issue_comment_edited"})
_HEX: Final = frozenset("0123456789abcdef")


def expected_signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>`` as Jira writes it for ``body`` signed with ``secret``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_app_token(token: str, client_secret: str, now: datetime) -> Verdict:
    """The bearer JWT of a webhook an OAuth 2.0 app registered (see the module's docstring)."""
    # Imported here: only OAuth apps' deliveries need it, and it costs ~100 ms cold.
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import OctKey

    try:
        claims = jwt.decode(
            token, OctKey.import_key(client_secret), algorithms=[APP_TOKEN_ALGORITHM]
        ).claims
    except (JoseError, ValueError, TypeError):
        # TypeError: joserfc checks a "crit" header before the signature and trips over
        # one that is not a list of names (``"crit": 5``): anyone's token, never a 500.
        return Refused("signature_mismatch", "the bearer token is not signed by the OAuth app")
    instant = now.timestamp()
    expires, not_before = claims.get("exp"), claims.get("nbf")
    for name, value in (("exp", expires), ("nbf", not_before)):
        if value is not None and not _numeric_date(value):
            return Refused("bad_encoding", f"the bearer token's {name} is not a number")
    # Compared as they are, not summed with the skew: an int beyond any float (JSON has
    # no limit) cannot be added to one, but compares exactly.
    skew = CLOCK_SKEW.total_seconds()
    if expires is not None and instant - skew > expires:
        return Refused("expired", "the bearer token has expired")
    if not_before is not None and instant + skew < not_before:
        return Refused("not_yet_valid", "the bearer token is not valid yet")
    return Verified()


def _numeric_date(value: object) -> bool:
    """A JWT NumericDate (RFC 7519 section 2): a number, not a bool, not NaN or infinite
    (which Python's JSON parser reads)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _bearer_token(request: WebhookRequest) -> str | None:
    scheme, _, token = (request.header("Authorization") or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class JiraWebhooks:
    """The push side of the Jira connector (a :class:`ucf.native.WebhookHandler`)."""

    async def verify(self, request: WebhookRequest, context: WebhookContext) -> Verdict:
        secret = context.credentials.get(SECRET_KEY)
        if not secret:
            if context.config.get("unsignedWebhooks") == ACCEPT_UNSIGNED:
                return Verified()
            token = _bearer_token(request)
            client_secret = context.credentials.get(CLIENT_SECRET_KEY)
            if token is not None and client_secret:
                return verify_app_token(token, client_secret, context.now)
            return Refused(
                "missing_secret",
                "the Jira instance has no webhookSecret; set the secret the webhook was "
                "registered with, or choose to accept unsigned webhooks",
            )
        header = request.header(SIGNATURE_HEADER)
        if not header:
            return Refused("missing_header", f"no {SIGNATURE_HEADER} header")
        method, _, digest = header.strip().partition("=")
        digest = digest.lower()
        if method.lower() != "sha256" or len(digest) != 64 or not set(digest) <= _HEX:
            return Refused("bad_encoding", f"{SIGNATURE_HEADER} is not sha256=<64 hex digits>")
        expected = expected_signature(secret, request.body)[len("sha256=") :]
        if not hmac.compare_digest(expected.encode("ascii"), digest.encode("ascii")):
            return Refused("signature_mismatch", "the signature does not match the body")
        return Verified()

    async def signals(
        self, request: WebhookRequest, context: WebhookContext
    ) -> MappingResult | Unhandled:
        try:
            payload = loads_strict(request.body)
        except ValueError:  # not standard JSON, or nested too deep to read
            raise Malformed("the body is not JSON") from None
        if not isinstance(payload, dict):
            raise Malformed("the body must be a JSON object")
        event = payload.get("webhookEvent")
        if not isinstance(event, str) or not event:
            raise Malformed("the delivery names no event (expected 'webhookEvent')")
        if event not in EVENTS:
            return Unhandled(event)
        issue = payload.get("issue")
        if not isinstance(issue, dict) or issue.get("id") is None:
            raise Malformed(f"a {event} delivery without an 'issue' with an id")
        return MappingResult(signals=_signals(event, payload, issue, context.project_id))


def _fields(issue: Mapping[str, Any]) -> Mapping[str, Any]:
    fields = issue.get("fields")
    return fields if isinstance(fields, dict) else {}


def _raw(payload: dict[str, Any], text: str) -> dict[str, Any]:
    return {**payload, "plainText": text}


def _signals(
    event: str, payload: dict[str, Any], issue: dict[str, Any], project_id: str
) -> list[MappedSignal]:
    """The delivery's signal; two for a ``jira:issue_updated`` that changed fields and
    carries a comment (a transition screen's comment field): the change and the
    comment. One of them alone was signalled, and the poll chose the comment or the
    transition by which of them Jira wrote a millisecond later, so the comment (or, on
    a poll-only instance, the transition) was lost or not by that order."""
    comment = payload.get("comment")
    if (
        event == "jira:issue_updated"
        and isinstance(comment, dict)
        and _changes_anything(payload.get("changelog"))
    ):
        change = {key: value for key, value in payload.items() if key != "comment"}
        return [
            _comment_signal(event, payload, issue, comment, project_id),
            _signal(event, change, issue, project_id),
        ]
    return [_signal(event, payload, issue, project_id)]


def _comment_signal(
    event: str,
    payload: dict[str, Any],
    issue: dict[str, Any],
    comment: dict[str, Any],
    project_id: str,
) -> MappedSignal:
    found = comment_version(comment)
    if found is None:
        raise Malformed(f"a {event} delivery whose comment has no id or time")
    version, when = found
    return issue_signal(
        issue,
        project_id=project_id,
        signal_type="issue_commented",
        version=version,
        timestamp=when,
        raw=_raw(payload, plain_text(comment.get("body"))),
        comment=comment,
    )


def _changes_anything(changelog: Any) -> bool:
    items = changelog.get("items") if isinstance(changelog, dict) else None
    return isinstance(items, list) and any(isinstance(item, dict) for item in items)


def _signal(
    event: str, payload: dict[str, Any], issue: dict[str, Any], project_id: str
) -> MappedSignal:
    fields = _fields(issue)
    comment = payload.get("comment")
    if event == "jira:issue_deleted":
        when = _delivered_at(payload) or jira_time(fields.get("updated"))
        if when is None:
            raise Malformed("a jira:issue_deleted delivery without a time")
        return issue_signal(
            issue,
            project_id=project_id,
            signal_type="issue_deleted",
            version="deleted",
            timestamp=when,
            raw=_raw(payload, plain_text(fields.get("description"))),
        )
    commented = event.startswith("comment_") or (
        event == "jira:issue_updated"
        and payload.get("issue_event_type_name") in _COMMENT_EVENT_TYPES
    )
    if commented and isinstance(comment, dict):
        return _comment_signal(event, payload, issue, comment, project_id)
    if event.startswith("comment_"):
        raise Malformed(f"a {event} delivery without a 'comment' object")
    updated = jira_time(fields.get("updated"))
    if updated is None:
        raise Malformed(f"a {event} delivery whose issue has no fields.updated")
    if event == "jira:issue_created":
        return issue_signal(
            issue,
            project_id=project_id,
            signal_type="issue_created",
            version=CREATED,
            timestamp=jira_time(fields.get("created")) or updated,
            raw=_raw(payload, plain_text(fields.get("description"))),
        )
    if _changes_status(payload.get("changelog")):
        signal_type = "issue_status_changed"
    else:
        signal_type = "issue_updated"
    return issue_signal(
        issue,
        project_id=project_id,
        signal_type=signal_type,
        version=version_of(updated),
        timestamp=updated,
        raw=_raw(payload, plain_text(fields.get("description"))),
    )


def _changes_status(changelog: Any) -> bool:
    items = changelog.get("items") if isinstance(changelog, dict) else None
    if not isinstance(items, list):
        return False
    return any(
        isinstance(item, dict) and (item.get("fieldId") or item.get("field")) == "status"
        for item in items
    )


def _delivered_at(payload: Mapping[str, Any]) -> datetime | None:
    """The delivery's ``timestamp`` (epoch milliseconds) as a UTC datetime."""
    stamp = payload.get("timestamp")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool) and stamp > 0:
        return datetime.fromtimestamp(stamp / 1000, UTC)
    return None
