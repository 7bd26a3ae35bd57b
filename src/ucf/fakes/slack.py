"""A faithful fake of Slack's Web API (one channel's history) and Events API.

Sources: Slack's API docs, linked under Sources in docs/connectors/slack.md.

* ``conversations.history`` (GET query or POST form): ``channel`` (required),
  ``oldest``/``latest`` (exclusive unless ``inclusive=true``), ``limit``
  (default 100, at most 999), ``cursor``; newest first;
  ``response_metadata.next_cursor`` is ``""`` on the last page; ``has_more``,
  ``pin_count``.
* Every method answers HTTP 200 with an ``ok`` envelope: a bad token is
  ``{"ok": false, "error": "invalid_auth"}``, none at all ``not_authed``.
  Tokens come as ``Authorization: Bearer xoxb-…`` or a ``token`` parameter.
* Rate limiting is the exception: HTTP 429 with ``Retry-After`` seconds and
  ``{"ok": false, "error": "ratelimited"}``.
* ``oauth.v2.access`` with ``grant_type=refresh_token`` rotates tokens
  (token rotation: 12 h access tokens, a new refresh token each time).
* Events API deliveries: ``event_callback`` envelopes signed with
  ``X-Slack-Signature: v0=hex(HMAC-SHA256(signing secret, "v0:" + ts + ":" + body))``
  and ``X-Slack-Request-Timestamp`` (5-minute window).
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qs

from ucf.fakes.kit import FakeRequest, FakeResponse, Fault
from ucf.fakes.oauth import AuthorizationServer, Failure, TokenStyle
from ucf.fakes.scenario import (
    Activity,
    HandshakeSample,
    MetadataExpectation,
    ProviderFake,
    PushedChange,
    Scenario,
    WebhookDelivery,
    WebhookSample,
    hmac_digest,
)

TEAM_ID: Final = "T0123ABCDEF"
APP_ID: Final = "A0123ABCDEF"
BOT_USER: Final = "U0BOT00001"
CHANNEL: Final = "C0123INCIDENTS"
ACCESS_TOKEN: Final = "xoxe.xoxb-1-FAKEgoodBotTokenForTheUcfCatalogueBattery"  # noqa: S105
BAD_ACCESS_TOKEN: Final = "xoxe.xoxb-1-FAKErevokedBotTokenNobodyAccepts0000"  # noqa: S105
REFRESH_TOKEN: Final = "xoxe-1-FAKErefreshTokenForTheUcfCatalogueBattery"  # noqa: S105
CLIENT_ID: Final = "1234567890.0987654321"
CLIENT_SECRET: Final = "fake0slack0client0secret0000000000"  # noqa: S105
SIGNING_SECRET: Final = "8f742231b10e8888abcd99yyyzzz85a5"  # noqa: S105 - Slack's documented example
USERS: Final[tuple[tuple[str, str], ...]] = (
    ("U01ALICE001", "alice"),
    ("U02BOB00002", "bob"),
    ("U03CAROL003", "carol"),
    ("U04DAVE0004", "dave"),
)
LINES: Final = (
    "Deploy of api v2.14 is rolling out",
    "Seeing elevated 502s on checkout",
    "Rolled back, error rate back to normal",
    "Postmortem doc is up for review",
    "Who owns the billing cron?",
)
IGNORED_SUBTYPES: Final = frozenset(
    {"channel_join", "channel_leave", "channel_topic", "channel_purpose", "channel_name"}
)


def slack_ts(moment: datetime, sequence: int = 0) -> str:
    """A message ts: epoch seconds, a dot, six digits (unique within the channel)."""
    seconds = int(moment.timestamp())
    micros = moment.microsecond // 1000 * 1000 + sequence % 1000
    return f"{seconds}.{micros:06d}"


def ts_moment(ts: str) -> datetime:
    seconds, _, fraction = ts.partition(".")
    return datetime.fromtimestamp(int(seconds), UTC) + timedelta(microseconds=int(fraction or "0"))


def _blocks(text: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "rich_text",
            "block_id": base64.b32encode(text.encode()[:5]).decode().rstrip("=")[:5],
            "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
            ],
        }
    ]


@dataclass
class Message:
    ts: str
    user: int
    text: str
    subtype: str | None = None
    reply_users: list[int] = field(default_factory=list)
    reactions: dict[str, list[int]] = field(default_factory=dict)

    @property
    def moment(self) -> datetime:
        return ts_moment(self.ts)

    def json(self) -> dict[str, Any]:
        user = USERS[self.user % len(USERS)][0]
        item: dict[str, Any] = {"type": "message", "user": user, "text": self.text, "ts": self.ts}
        if self.subtype is not None:
            item["subtype"] = self.subtype
            return item
        item.update(
            {
                "client_msg_id": f"{int(float(self.ts) * 1000):x}-fake-msg",
                "team": TEAM_ID,
                "blocks": _blocks(self.text),
            }
        )
        if self.reply_users:
            item.update(
                {
                    "thread_ts": self.ts,
                    "reply_count": len(self.reply_users),
                    "reply_users_count": len(set(self.reply_users)),
                    "latest_reply": self.ts,
                    "reply_users": [USERS[u % len(USERS)][0] for u in self.reply_users],
                    "is_locked": False,
                    "subscribed": False,
                }
            )
        if self.reactions:
            item["reactions"] = [
                {
                    "name": name,
                    "users": [USERS[u % len(USERS)][0] for u in who],
                    "count": len(who),
                }
                for name, who in self.reactions.items()
            ]
        return item


class Dataset:
    """``#incidents`` around ``now``: 150 messages in the last six days (some joins), three older."""

    def __init__(self, now: datetime, *, count: int = 150) -> None:
        self._sequence = itertools.count(1)
        self.messages: list[Message] = []
        for index in range(3):
            self.post(now - timedelta(days=30 + index), index, LINES[index])
        window = timedelta(days=6)
        for index in range(count):
            moment = now - window + window * index / count
            if index % 25 == 7:
                self.post(
                    moment,
                    index,
                    f"<@{USERS[index % 4][0]}> has joined the channel",
                    "channel_join",
                )
                continue
            text = LINES[index % len(LINES)]
            if index % 5 == 1:
                text = f"<@{USERS[(index + 1) % 4][0]}> {text.lower()}"
            message = self.post(moment, index, text)
            if index % 6 == 0:
                message.reply_users = [(index + 1) % 4, (index + 2) % 4]
            if index % 4 == 0:
                message.reactions = {"eyes": [(index + 3) % 4]}

    def post(self, moment: datetime, user: int, text: str, subtype: str | None = None) -> Message:
        message = Message(slack_ts(moment, next(self._sequence)), user, text, subtype)
        self.messages.append(message)
        return message


# --------------------------------------------------------------------------- the fake


def _slack_tokens(payload: dict[str, Any]) -> dict[str, Any]:
    """oauth.v2.access as Slack answers it for a bot token with token rotation on."""
    return {
        "ok": True,
        **payload,
        "token_type": "bot",
        "scope": "channels:history,groups:history,reactions:read",
        "bot_user_id": BOT_USER,
        "app_id": APP_ID,
        "team": {"id": TEAM_ID, "name": "Acme"},
        "enterprise": None,
        "is_enterprise_install": False,
        "authed_user": {"id": USERS[0][0]},
    }


def _slack_error(failure: Failure) -> dict[str, Any]:
    return {"ok": False, "error": failure.code}


# Slack's Web API answers failures with HTTP 200 and ok: false
# (https://api.slack.com/methods/oauth.v2.access#errors).
SLACK_TOKENS: Final = TokenStyle(
    success=_slack_tokens,
    error=_slack_error,
    failures={
        "bad_request": Failure("invalid_arguments", status=200),
        "bad_client": Failure("invalid_client_id", status=200),
        "bad_code": Failure("invalid_code", status=200),
        "bad_redirect": Failure("bad_redirect_uri", status=200),
        "bad_verifier": Failure("invalid_code", status=200),
        "bad_refresh": Failure("invalid_refresh_token", status=200),
        "bad_grant_type": Failure("invalid_grant_type", status=200),
    },
)


def _ok(body: dict[str, Any], *, status: int = 200) -> FakeResponse:
    return FakeResponse.json(
        {"ok": True, **body}, status, headers={"x-slack-req-id": secrets.token_hex(16)}
    )


def _error(code: str, *, status: int = 200, headers: dict[str, str] | None = None) -> FakeResponse:
    return FakeResponse.json(
        {"ok": False, "error": code},
        status,
        headers={"x-slack-req-id": secrets.token_hex(16), **(headers or {})},
    )


def _encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _decode_cursor(cursor: str) -> str | None:
    try:
        text = base64.b64decode(cursor, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return text.removeprefix("next_ts:") if text.startswith("next_ts:") else None


class SlackFake(ProviderFake):
    """``slack.com/api`` for one workspace with one channel."""

    poll_route = "/conversations.history"

    def __init__(self, now: datetime) -> None:
        super().__init__()
        self.data = Dataset(now)
        # Slack's consent page lives at slack.com/oauth/v2/authorize, its token endpoint
        # at slack.com/api/oauth.v2.access; here both share the fake's one origin.
        self.auth = AuthorizationServer(
            self.server,
            CLIENT_ID,
            CLIENT_SECRET,
            authorize_path="/oauth/v2/authorize",
            token_path="/oauth.v2.access",  # noqa: S106 - a route
            style=SLACK_TOKENS,
            access_tokens={ACCESS_TOKEN},
            refresh_tokens={REFRESH_TOKEN},
            token_prefix="xoxe.xoxb-1-",  # noqa: S106 - a prefix
            expires_in=43200,
        )
        for method in ("GET", "POST"):
            self.server.add_route(method, "/conversations.history", self._method(self._history))
            self.server.add_route(method, "/auth.test", self._method(self._auth_test))

    @property
    def tokens(self) -> set[str]:
        return self.auth.access_tokens

    @property
    def refresh_tokens(self) -> set[str]:
        return self.auth.refresh_tokens

    # -- protocol

    def add_activity(self, now: datetime) -> Activity:
        """Three new messages, one mentioning a teammate. History lists messages by creation,
        so edits and reactions to older messages only reach ucf by webhook."""
        data = self.data
        fresh = [
            data.post(now - timedelta(milliseconds=9), 0, "Pager fired for the payments queue"),
            data.post(now - timedelta(milliseconds=6), 1, f"<@{USERS[2][0]}> can you take a look?"),
            data.post(now - timedelta(milliseconds=3), 2, "On it"),
        ]
        return Activity(new_ids=frozenset(m.ts for m in fresh))

    def push_change(self, now: datetime) -> PushedChange:
        """A new message in the channel: a ``message`` event."""
        message = self.data.post(now, 1, "Rolling back the deploy now")
        event = {
            **message.json(),
            "channel": CHANNEL,
            "event_ts": message.ts,
            "channel_type": "channel",
        }
        payload = event_callback(event, event_time=int(now.timestamp()))
        return PushedChange(message.ts, WebhookSample.of("message", payload))

    def ids_changed_since(self, moment: datetime) -> frozenset[str]:
        return frozenset(
            m.ts
            for m in self.data.messages
            if m.moment >= moment and m.subtype not in IGNORED_SUBTYPES
        )

    def rate_limit_fault(self, retry_after: int) -> Fault:
        return Fault.rate_limited(retry_after, body={"ok": False, "error": "ratelimited"})

    # -- plumbing

    @staticmethod
    def _arguments(request: FakeRequest) -> dict[str, str]:
        """Slack reads arguments from the query string and from a form or JSON body."""
        arguments = {k: v[0] for k, v in request.query.items()}
        content_type = request.headers.get("content-type", "")
        if request.body and "application/x-www-form-urlencoded" in content_type:
            form = parse_qs(request.body.decode(), keep_blank_values=True)
            arguments.update({k: v[0] for k, v in form.items()})
        elif request.body and "application/json" in content_type:
            try:
                payload = request.json()
            except ValueError:
                payload = None
            if isinstance(payload, dict):
                arguments.update({k: str(v) for k, v in payload.items()})
        return arguments

    def _method(
        self, handler: Callable[[dict[str, str]], FakeResponse]
    ) -> Callable[[FakeRequest], FakeResponse]:
        def method(request: FakeRequest) -> FakeResponse:
            arguments = self._arguments(request)
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer":
                token = arguments.get("token", "")
            if not token:
                return _error("not_authed")
            if token not in self.tokens:
                return _error("invalid_auth")
            return handler(arguments)

        return method

    def _history(self, arguments: dict[str, str]) -> FakeResponse:
        if arguments.get("channel") != CHANNEL:
            return _error("channel_not_found")
        try:
            limit = int(arguments.get("limit") or "100")
            oldest = float(arguments.get("oldest") or "0")
            latest = float(arguments["latest"]) if arguments.get("latest") else None
        except ValueError:
            return _error("invalid_arguments")
        limit = max(1, min(limit, 999))
        inclusive = arguments.get("inclusive") in ("true", "1")
        messages = sorted(self.data.messages, key=lambda m: float(m.ts), reverse=True)

        def in_range(message: Message) -> bool:
            value = float(message.ts)
            above = value >= oldest if inclusive else value > oldest
            below = latest is None or (value <= latest if inclusive else value < latest)
            return above and below

        messages = [m for m in messages if in_range(m)]
        cursor = arguments.get("cursor")
        if cursor:
            start = _decode_cursor(cursor)
            if start is None:
                return _error("invalid_cursor")
            messages = [m for m in messages if float(m.ts) <= float(start)]
        page, rest = messages[:limit], messages[limit:]
        return _ok(
            {
                "messages": [m.json() for m in page],
                "has_more": bool(rest),
                "pin_count": 0,
                "channel_actions_ts": None,
                "channel_actions_count": 0,
                "response_metadata": {"next_cursor": _encode_cursor(rest[0].ts) if rest else ""},
            }
        )

    def _auth_test(self, arguments: dict[str, str]) -> FakeResponse:
        return _ok(
            {
                "url": "https://acme.slack.com/",
                "team": "Acme",
                "user": "ucf",
                "team_id": TEAM_ID,
                "user_id": BOT_USER,
                "bot_id": "B0123ABCDEF",
                "is_enterprise_install": False,
            }
        )


# --------------------------------------------------------------------------- webhooks


def event_callback(event: dict[str, Any], *, event_time: int) -> dict[str, Any]:
    """The Events API envelope around one inner event."""
    return {
        "token": "XXYYZZfakeVerificationToken",
        "team_id": TEAM_ID,
        "context_team_id": TEAM_ID,
        "context_enterprise_id": None,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": f"Ev{secrets.token_hex(5).upper()}",
        "event_time": event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": BOT_USER,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{secrets.token_hex(12)}",
    }


def sign_delivery(
    sample: WebhookSample, *, url: str, at: datetime, secret: str = SIGNING_SECRET
) -> WebhookDelivery:
    """Slack's v0 signature over ``v0:<timestamp>:<raw body>``."""
    timestamp = str(int(at.timestamp()))
    signature = hmac_digest(secret, b"v0:" + timestamp.encode() + b":" + sample.body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        **sample.headers,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": f"v0={signature}",
    }
    return WebhookDelivery(sample.name, url, sample.body, headers, sample.expected_types)


class SlackScenario(Scenario):
    connector_id = "slack"
    polling_signal_types = frozenset({"message_received", "mention"})
    webhook_signal_types = frozenset({"message_received", "mention", "reaction"})

    def fake(self, now: datetime) -> SlackFake:
        return SlackFake(now)

    def expected_metadata(self, fake: ProviderFake | None) -> tuple[MetadataExpectation, ...]:
        assert isinstance(fake, SlackFake), "Slack's expectations name messages of its fake"
        # The window's first message (index 0): alice, a thread with bob and carol, 👀 by dave.
        # The second (index 1): bob mentions carol.
        first, second = fake.data.messages[3:5]
        return (
            MetadataExpectation(
                item_id=first.ts,
                participants=(USERS[0][0], USERS[1][0], USERS[2][0]),
                tags=("eyes",),
            ),
            MetadataExpectation(item_id=second.ts, participants=(USERS[1][0],)),
        )

    def config(self, base_url: str) -> dict[str, str]:
        return {"baseUrl": base_url, "channel": CHANNEL}

    def credentials(self) -> dict[str, str]:
        return {
            "clientId": CLIENT_ID,
            "clientSecret": CLIENT_SECRET,
            "accessToken": ACCESS_TOKEN,
            "refreshToken": REFRESH_TOKEN,
            "webhookSecret": SIGNING_SECRET,
        }

    def bad_credentials(self) -> dict[str, str]:
        return {**self.credentials(), "accessToken": BAD_ACCESS_TOKEN}

    @property
    def webhook_secret(self) -> str:
        return SIGNING_SECRET

    def oauth_app(self) -> tuple[str, str] | None:
        return CLIENT_ID, CLIENT_SECRET

    def webhook_samples(self) -> list[WebhookSample]:
        now = datetime.now(UTC)
        ts = slack_ts(now, 1)
        alice, bob, carol = (user for user, _ in USERS[:3])
        message = {
            "type": "message",
            "channel": CHANNEL,
            "user": alice,
            "text": "Seeing elevated 502s on checkout",
            "ts": ts,
            "event_ts": ts,
            "channel_type": "channel",
            "client_msg_id": "5b7c6f1e-0c2d-4e3f-8a9b-1c2d3e4f5a6b",
            "team": TEAM_ID,
            "blocks": _blocks("Seeing elevated 502s on checkout"),
        }
        mention_ts = slack_ts(now, 2)
        mention = {
            "type": "app_mention",
            "user": bob,
            "text": f"<@{BOT_USER}> open an incident for checkout",
            "ts": mention_ts,
            "channel": CHANNEL,
            "event_ts": mention_ts,
            "client_msg_id": "6c8d7a2f-1d3e-4f5a-9b0c-2d3e4f5a6b7c",
            "team": TEAM_ID,
            "blocks": _blocks(f"<@{BOT_USER}> open an incident for checkout"),
        }
        reaction = {
            "type": "reaction_added",
            "user": carol,
            "reaction": "eyes",
            "item_user": alice,
            "item": {"type": "message", "channel": CHANNEL, "ts": ts},
            "event_ts": slack_ts(now, 3),
        }
        seconds = int(now.timestamp())
        return [
            WebhookSample.of(
                "message",
                event_callback(message, event_time=seconds),
                expected_types=("message_received",),
            ),
            WebhookSample.of(
                "app_mention",
                event_callback(mention, event_time=seconds),
                expected_types=("mention",),
            ),
            WebhookSample.of(
                "reaction_added",
                event_callback(reaction, event_time=seconds),
                expected_types=("reaction",),
            ),
        ]

    def unknown_event_sample(self) -> WebhookSample:
        now = datetime.now(UTC)
        event = {
            "type": "app_home_opened",
            "user": USERS[0][0],
            "channel": "D0123DIRECT",
            "tab": "home",
            "event_ts": slack_ts(now),
        }
        return WebhookSample.of(
            "app_home_opened", event_callback(event, event_time=int(now.timestamp()))
        )

    def sign(self, sample: WebhookSample, *, url: str, at: datetime) -> WebhookDelivery:
        return sign_delivery(sample, url=url, at=at)

    def handshake(self, *, url: str, at: datetime) -> HandshakeSample:
        """Slack's ``url_verification`` (signed like every request; answered with the challenge,
        https://docs.slack.dev/reference/events/url_verification)."""
        challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
        sample = WebhookSample.of(
            "url_verification",
            {
                "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
                "challenge": challenge,
                "type": "url_verification",
            },
        )
        return HandshakeSample(
            sign_delivery(sample, url=url, at=at),
            answer_body=json.dumps({"challenge": challenge}).encode(),
        )


def scenario(connector_id: str) -> Scenario:
    """The scenario of ``slack`` (see :mod:`ucf.fakes.scenario`)."""
    if connector_id != "slack":
        raise LookupError(f"ucf.fakes.slack has no scenario for {connector_id!r}")
    return SlackScenario()
