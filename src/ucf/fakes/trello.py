"""A faithful fake of Trello's REST API (board actions) and its webhooks.

Sources: Trello's developer guides, linked under Sources in docs/connectors/trello.md.

* ``GET /1/boards/{id}/actions`` — newest first; ``since`` and ``before`` take a
  date or an action id; ``limit`` 0–1000 (default 50); ``filter`` a
  comma-separated list of action types (default ``all``). Paging backwards is
  ``before=<oldest id of the page>`` until a page comes back empty.
* Action ids are Mongo ObjectIds: the first 8 hex digits are the creation
  second, so ids of one length sort by time.
* Auth as query parameters ``key`` and ``token``; a bad key is ``401 invalid
  key``, a bad token ``401 invalid token`` (plain text, as Trello answers).
* ``x-rate-limit-api-key-*`` / ``x-rate-limit-api-token-*`` headers; the
  rate-limit fault is ``429 {"error": "API_TOKEN_LIMIT_EXCEEDED", …}`` without
  ``Retry-After`` (none is documented).
* Webhooks: ``POST`` ``{"action", "model", "webhook"}``;
  ``X-Trello-Webhook`` = base64(HMAC-SHA1(app secret, raw body + callback URL)).
  Webhook creation is confirmed by a ``HEAD`` to the callback URL.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ucf.core.timestamps import parse_timestamp
from ucf.fakes.kit import FakeRequest, FakeResponse, Fault, iso_millis
from ucf.fakes.scenario import (
    Activity,
    MetadataExpectation,
    ProviderFake,
    PushedChange,
    Scenario,
    WebhookDelivery,
    WebhookSample,
    hmac_digest,
)

API_KEY: Final = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TOKEN: Final = "ATTAfake0good0token0for0the0ucf0catalogue0battery0000000000000000"  # noqa: S105
BAD_TOKEN: Final = "ATTAfake0revoked0token0nobody0accepts00000000000000000000000000000"  # noqa: S105
APP_SECRET: Final = "fake0trello0app0secret0signing0webhooks0000000000000000000000000"  # noqa: S105
BOARD_ID: Final = "5f0c1e2d3a4b5c6d7e8f9a0b"
BOARD_SHORT: Final = "aBcD1234"
BOARD_NAME: Final = "Product roadmap"
LISTS: Final[tuple[tuple[str, str], ...]] = (
    ("5f0c1e2d3a4b5c6d7e8f9a10", "To Do"),
    ("5f0c1e2d3a4b5c6d7e8f9a11", "Doing"),
    ("5f0c1e2d3a4b5c6d7e8f9a12", "Done"),
)
MEMBERS: Final[tuple[tuple[str, str, str], ...]] = (
    ("5e1a2b3c4d5e6f7081920a01", "Taco", "taco"),
    ("5e1a2b3c4d5e6f7081920a02", "Bobby Tables", "bobbytables"),
    ("5e1a2b3c4d5e6f7081920a03", "Jane Doe", "janedoe"),
)
CARD_NAMES: Final = (
    "Customer interviews",
    "Pricing page copy",
    "Migrate to the new billing API",
    "Fix signup email bounce",
    "Quarterly roadmap review",
)
FILTERABLE: Final = frozenset({"createCard", "updateCard", "commentCard", "moveCardToBoard"})


iso_ms = iso_millis


def member(index: int) -> dict[str, Any]:
    ident, name, username = MEMBERS[index % len(MEMBERS)]
    return {
        "id": ident,
        "activityBlocked": False,
        "avatarHash": f"{index:032x}",
        "avatarUrl": f"https://trello-members.s3.amazonaws.com/{ident}/{index:032x}",
        "fullName": name,
        "idMemberReferrer": None,
        "initials": "".join(part[0] for part in name.split()),
        "nonPublic": {},
        "nonPublicAvailable": True,
        "username": username,
    }


def board_ref() -> dict[str, Any]:
    return {"id": BOARD_ID, "name": BOARD_NAME, "shortLink": BOARD_SHORT}


def list_ref(index: int) -> dict[str, Any]:
    ident, name = LISTS[index % len(LISTS)]
    return {"id": ident, "name": name}


@dataclass
class Card:
    id: str
    id_short: int
    name: str
    list_index: int
    members: list[int] = field(default_factory=list)

    @property
    def short_link(self) -> str:
        return f"c{self.id_short:07d}"

    def ref(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "idShort": self.id_short,
            "shortLink": self.short_link,
        }


@dataclass
class Action:
    id: str
    type: str
    date: datetime
    creator: int
    data: dict[str, Any]

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "idMemberCreator": MEMBERS[self.creator % len(MEMBERS)][0],
            "data": self.data,
            "appCreator": None,
            "type": self.type,
            "date": iso_ms(self.date),
            "limits": None,
            "memberCreator": member(self.creator),
        }


class Dataset:
    """One board's actions around ``now``: 150 in the last six days, three a month old."""

    def __init__(self, now: datetime, *, count: int = 150) -> None:
        self._counter = itertools.count(0x1A2B3C)
        self._card_numbers = itertools.count(1)
        self.cards: list[Card] = []
        self.actions: list[Action] = []
        for index in range(3):
            self._step(now - timedelta(days=30 + 3 - index), index)
        window = timedelta(days=6)
        for index in range(count):
            self._step(now - window + window * index / count, index)

    def object_id(self, moment: datetime) -> str:
        """A Mongo ObjectId: 4 bytes of epoch seconds, then 8 of machine/counter."""
        return f"{int(moment.timestamp()):08x}{5 << 40 | next(self._counter):016x}"[:24]

    def _step(self, moment: datetime, index: int) -> Action:
        moment = moment.replace(microsecond=(moment.microsecond // 1000) * 1000)
        if not self.cards or index % 3 == 0:
            return self.create_card(moment, CARD_NAMES[index % len(CARD_NAMES)], creator=index)
        card = self.cards[index % len(self.cards)]
        if index % 3 == 1:
            return self.move_card(moment, card, (card.list_index + 1) % len(LISTS), creator=index)
        return self.comment(moment, card, f"Update #{index}: waiting on legal.", creator=index)

    def _record(self, moment: datetime, kind: str, creator: int, data: dict[str, Any]) -> Action:
        action = Action(self.object_id(moment), kind, moment, creator % len(MEMBERS), data)
        self.actions.append(action)
        return action

    def create_card(self, moment: datetime, name: str, *, creator: int) -> Action:
        number = next(self._card_numbers)
        card = Card(
            id=self.object_id(moment),
            id_short=number,
            name=f"{name} ({number})",
            list_index=0,
            members=[creator % len(MEMBERS), (creator + 1) % len(MEMBERS)],
        )
        self.cards.append(card)
        data = {"card": card.ref(), "list": list_ref(0), "board": board_ref()}
        return self._record(moment, "createCard", creator, data)

    def move_card(self, moment: datetime, card: Card, to: int, *, creator: int) -> Action:
        before, card.list_index = card.list_index, to
        data = {
            "card": {**card.ref(), "idList": LISTS[to][0]},
            "old": {"idList": LISTS[before][0]},
            "board": board_ref(),
            "listBefore": list_ref(before),
            "listAfter": list_ref(to),
        }
        return self._record(moment, "updateCard", creator, data)

    def rename(self, moment: datetime, card: Card, name: str, *, creator: int) -> Action:
        old, card.name = card.name, name
        data = {
            "card": card.ref(),
            "old": {"name": old},
            "board": board_ref(),
            "list": list_ref(card.list_index),
        }
        return self._record(moment, "updateCard", creator, data)

    def comment(self, moment: datetime, card: Card, text: str, *, creator: int) -> Action:
        data = {
            "text": text,
            "textData": {"emoji": {}},
            "card": card.ref(),
            "board": board_ref(),
            "list": list_ref(card.list_index),
        }
        return self._record(moment, "commentCard", creator, data)


# --------------------------------------------------------------------------- the fake


def _unauthorized(text: str) -> FakeResponse:
    return FakeResponse.text(text, 401)


class TrelloFake(ProviderFake):
    """``api.trello.com/1`` for one board."""

    poll_route = "/1/boards/{board}/actions"

    def __init__(self, now: datetime) -> None:
        super().__init__()
        self.data = Dataset(now)
        self.keys = {API_KEY}
        self.tokens = {TOKEN}
        self.key_remaining = 300
        self.token_remaining = 100
        self.server.add_route("GET", "/1/boards/{board}/actions", self._guard(self._actions))
        self.server.add_route("GET", "/1/boards/{board}", self._guard(self._board))
        self.server.add_route("GET", "/1/members/me", self._guard(self._me))

    # -- protocol

    def add_activity(self, now: datetime) -> Activity:
        """A new card and a comment on it; an existing card moved and one renamed."""
        data = self.data
        step = timedelta(milliseconds=5)
        created = data.create_card(now - 3 * step, "Security review", creator=0)
        card = data.cards[-1]
        commented = data.comment(now - 2 * step, card, "Booked for Thursday.", creator=1)
        moved = data.move_card(now - step, data.cards[2], 2, creator=2)
        renamed = data.rename(now, data.cards[5], "Pricing page copy v2", creator=0)
        return Activity(
            new_ids=frozenset({created.id, commented.id}),
            changed_ids=frozenset({moved.id, renamed.id}),
        )

    def push_change(self, now: datetime) -> PushedChange:
        """A card moved to another list: ``updateCard`` (``{callback}`` is placed by ``sign``)."""
        action = self.data.move_card(now, self.data.cards[1], 2, creator=1)
        sample = WebhookSample.of(action.type, webhook_payload(action, "{callback}"))
        return PushedChange(action.id, sample)

    def ids_changed_since(self, moment: datetime) -> frozenset[str]:
        return frozenset(
            a.id for a in self.data.actions if a.date >= moment and a.type in FILTERABLE
        )

    def rate_limit_fault(self, retry_after: int) -> Fault:
        return Fault.rate_limited(
            None,
            headers={
                "x-rate-limit-api-token-interval-ms": "10000",
                "x-rate-limit-api-token-max": "100",
                "x-rate-limit-api-token-remaining": "0",
            },
            body={"error": "API_TOKEN_LIMIT_EXCEEDED", "message": "Rate limit exceeded"},
        )

    # -- plumbing

    def _rate_headers(self) -> dict[str, str]:
        return {
            "x-rate-limit-api-key-interval-ms": "10000",
            "x-rate-limit-api-key-max": "300",
            "x-rate-limit-api-key-remaining": str(self.key_remaining),
            "x-rate-limit-api-token-interval-ms": "10000",
            "x-rate-limit-api-token-max": "100",
            "x-rate-limit-api-token-remaining": str(self.token_remaining),
        }

    def _guard(
        self, handler: Callable[[FakeRequest], FakeResponse]
    ) -> Callable[[FakeRequest], FakeResponse]:
        def guarded(request: FakeRequest) -> FakeResponse:
            if request.param("key") not in self.keys:
                return _unauthorized("invalid key")
            if request.param("token") not in self.tokens:
                return _unauthorized("invalid token")
            board = request.path_params.get("board")
            if board is not None and board not in (BOARD_ID, BOARD_SHORT):
                return FakeResponse.text("The requested resource was not found.", 404)
            self.key_remaining = max(0, self.key_remaining - 1)
            self.token_remaining = max(0, self.token_remaining - 1)
            return handler(request)

        return guarded

    def _bound(self, text: str | None) -> tuple[str, Any] | FakeResponse | None:
        """A ``since``/``before`` value: an action id or a date (``invalid date`` otherwise)."""
        if text is None or text == "null":
            return None
        if len(text) == 24 and all(c in "0123456789abcdef" for c in text):
            return ("id", text)
        moment = parse_timestamp(text, "iso8601")
        if moment is None:
            return FakeResponse.text("invalid value for since", 400)
        return ("date", moment)

    def _actions(self, request: FakeRequest) -> FakeResponse:
        try:
            limit = int(request.param("limit") or "50")
        except ValueError:
            return FakeResponse.text("invalid value for limit", 400)
        if not 0 <= limit <= 1000:
            return FakeResponse.text("invalid value for limit", 400)
        wanted = request.param("filter") or "all"
        kinds = None if wanted == "all" else set(wanted.split(","))
        since = self._bound(request.param("since"))
        before = self._bound(request.param("before"))
        for bound in (since, before):
            if isinstance(bound, FakeResponse):
                return bound
        actions = [a for a in self.data.actions if kinds is None or a.type in kinds]

        def after_since(action: Action) -> bool:
            if since is None or isinstance(since, FakeResponse):
                return True
            kind, value = since
            return bool(action.id > value if kind == "id" else action.date >= value)

        def before_bound(action: Action) -> bool:
            if before is None or isinstance(before, FakeResponse):
                return True
            kind, value = before
            return bool(action.id < value if kind == "id" else action.date < value)

        chosen = [a for a in actions if after_since(a) and before_bound(a)]
        chosen.sort(key=lambda a: a.id, reverse=True)
        return FakeResponse.json([a.json() for a in chosen[:limit]], headers=self._rate_headers())

    def _board(self, request: FakeRequest) -> FakeResponse:
        board = {
            "id": BOARD_ID,
            "name": BOARD_NAME,
            "desc": "",
            "closed": False,
            "idOrganization": "5d0e1f2a3b4c5d6e7f809102",
            "pinned": False,
            "url": f"https://trello.com/b/{BOARD_SHORT}/product-roadmap",
            "shortUrl": f"https://trello.com/b/{BOARD_SHORT}",
            "prefs": {"permissionLevel": "org", "background": "blue"},
            "labelNames": {"green": "", "yellow": "", "orange": "", "red": "Urgent"},
        }
        fields = request.param("fields")
        if fields and fields != "all":
            board = {k: v for k, v in board.items() if k in fields.split(",") or k == "id"}
        return FakeResponse.json(board, headers=self._rate_headers())

    def _me(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json(member(0), headers=self._rate_headers())


# --------------------------------------------------------------------------- webhooks


def webhook_payload(action: Action, callback_url: str) -> dict[str, Any]:
    """What Trello POSTs: the action, the model the webhook watches, and the webhook."""
    return {
        "action": {**action.json(), "display": {"translationKey": f"action_{action.type}"}},
        "model": {
            "id": BOARD_ID,
            "name": BOARD_NAME,
            "desc": "",
            "closed": False,
            "url": f"https://trello.com/b/{BOARD_SHORT}/product-roadmap",
            "shortUrl": f"https://trello.com/b/{BOARD_SHORT}",
        },
        "webhook": {
            "id": "6a0b1c2d3e4f5a6b7c8d9e0f",
            "description": "ucf",
            "idModel": BOARD_ID,
            "callbackURL": callback_url,
            "active": True,
            "consecutiveFailures": 0,
            "firstConsecutiveFailDate": None,
        },
    }


def sign_delivery(sample: WebhookSample, *, url: str, secret: str = APP_SECRET) -> WebhookDelivery:
    """``X-Trello-Webhook``: base64 HMAC-SHA1 over the body followed by the callback URL."""
    signature = hmac_digest(secret, sample.body + url.encode(), algorithm="sha1", encoding="base64")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Trello",
        **sample.headers,
        "X-Trello-Webhook": signature,
    }
    return WebhookDelivery(sample.name, url, sample.body, headers, sample.expected_types)


class TrelloScenario(Scenario):
    connector_id = "trello"
    polling_signal_types = frozenset(
        {"card_created", "card_moved", "card_commented", "card_updated"}
    )
    webhook_signal_types = frozenset({"card_created", "card_moved", "card_commented"})

    def __init__(self) -> None:
        self._samples = Dataset(datetime.now(UTC), count=6)

    def expected_metadata(self, fake: ProviderFake | None) -> tuple[MetadataExpectation, ...]:
        assert isinstance(fake, TrelloFake), "Trello's expectations name actions of its fake"
        # The window's first two actions: Taco creates a card in To Do; Bobby Tables
        # moves a card from To Do to Doing.
        created, moved = fake.data.actions[3:5]
        return (
            MetadataExpectation(item_id=created.id, participants=("Taco",), tags=("To Do",)),
            MetadataExpectation(item_id=moved.id, participants=("Bobby Tables",), tags=("Doing",)),
        )

    def fake(self, now: datetime) -> TrelloFake:
        return TrelloFake(now)

    def config(self, base_url: str) -> dict[str, str]:
        return {"baseUrl": base_url, "boardId": BOARD_ID}

    def credentials(self) -> dict[str, str]:
        return {"apiKey": API_KEY, "token": TOKEN, "webhookSecret": APP_SECRET}

    def bad_credentials(self) -> dict[str, str]:
        return {"apiKey": API_KEY, "token": BAD_TOKEN, "webhookSecret": APP_SECRET}

    @property
    def webhook_secret(self) -> str:
        return APP_SECRET

    def webhook_samples(self) -> list[WebhookSample]:
        now = datetime.now(UTC)
        data = self._samples
        card = data.cards[0]
        cases = [
            (data.create_card(now, "Launch checklist", creator=1), "card_created"),
            (data.move_card(now, card, 1, creator=2), "card_moved"),
            (data.comment(now, card, "Done on staging.", creator=0), "card_commented"),
        ]
        return [
            WebhookSample.of(
                action.type, webhook_payload(action, "{callback}"), expected_types=(kind,)
            )
            for action, kind in cases
        ]

    def unknown_event_sample(self) -> WebhookSample:
        now = datetime.now(UTC)
        card = self._samples.cards[0]
        action = Action(
            self._samples.object_id(now),
            "addChecklistToCard",
            now,
            0,
            {
                "card": card.ref(),
                "board": board_ref(),
                "checklist": {"id": self._samples.object_id(now), "name": "Checklist"},
            },
        )
        return WebhookSample.of(action.type, webhook_payload(action, "{callback}"))

    def sign(self, sample: WebhookSample, *, url: str, at: datetime) -> WebhookDelivery:
        body = sample.body.replace(b"{callback}", url.encode())
        placed = WebhookSample(sample.name, body, sample.headers, sample.expected_types)
        return sign_delivery(placed, url=url)


def scenario(connector_id: str) -> Scenario:
    """The scenario of ``trello`` (see :mod:`ucf.fakes.scenario`)."""
    if connector_id != "trello":
        raise LookupError(f"ucf.fakes.trello has no scenario for {connector_id!r}")
    return TrelloScenario()
