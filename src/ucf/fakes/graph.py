"""A faithful fake of Microsoft Graph mail (one mailbox's inbox) and the identity platform.

Sources: Microsoft's documentation, linked under Sources in docs/connectors/outlook.md.

* ``GET /v1.0/{me | users/{id}}/mailFolders('{folder}')/messages/delta``
  (https://learn.microsoft.com/graph/api/message-delta): ``$select``;
  ``$filter`` only ``receivedDateTime ge {iso}``; ``Prefer:
  odata.maxpagesize={n}`` (default 10). Pages carry ``@odata.nextLink``
  (``$skiptoken``), the last one ``@odata.deltaLink`` (``$deltatoken``), both
  opaque. A round lists what changed after the previous round's snapshot;
  deleted messages come back as ``{"@odata.type", "id", "@removed":
  {"reason": "deleted"}}``.
* Expired delta state (https://learn.microsoft.com/graph/delta-query-overview):
  :meth:`GraphFake.expire_tokens` makes every issued token answer ``410 Gone``
  with a ``Location`` of the initial query, or ``400`` with error code
  ``syncStateNotFound``.
* Errors use Graph's envelope ``{"error": {"code", "message", "innerError"}}``
  (https://learn.microsoft.com/graph/errors); a missing or unknown token is
  ``401 InvalidAuthenticationToken``; ``/me`` with an app-only token is ``400``.
* Throttling (https://learn.microsoft.com/graph/throttling): ``429`` with
  ``Retry-After`` seconds and code ``TooManyRequests``.
* ``POST /{tenant}/oauth2/v2.0/token``
  (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow):
  ``refresh_token`` grants return a new refresh token every time;
  ``client_credentials`` grants need ``scope={graph}/.default`` and return none.
  A wrong secret is ``401 invalid_client``, an unknown refresh token ``400 invalid_grant``.
  ``authorization_code`` grants, and the consent page at ``/{tenant}/oauth2/v2.0/authorize``,
  are Microsoft's fake authorization server (``ucf.fakes.oauth_providers.MICROSOFT``).
* Subscriptions (https://learn.microsoft.com/graph/api/resources/subscription):
  ``POST /subscriptions`` (201), ``GET``/``PATCH`` (200) and ``DELETE`` (204)
  on ``/subscriptions/{id}``; mail subscriptions live at most 10,080 minutes.
  ``GET /subscriptions`` (https://learn.microsoft.com/graph/api/subscription-list)
  lists them ``subscriptions_page_size`` at a time with ``@odata.nextLink``,
  ``clientState`` null ("not returned for security purposes").
* Endpoint validation (https://learn.microsoft.com/graph/change-notifications-delivery-webhooks,
  "Notification endpoint validation"): before ``POST /subscriptions`` answers,
  the fake POSTs ``{notificationUrl}?validationToken={token}`` (``Content-Type:
  text/plain; charset=utf-8``), and the same to ``lifecycleNotificationUrl``.
  Unless each answers ``200``, ``text/plain`` and the decoded token within
  10 seconds, no subscription is made: ``400 ValidationError``. Every attempt
  is kept in :attr:`GraphFake.validations`.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from urllib.parse import parse_qs, quote

import httpx

from ucf.fakes.kit import FakeRequest, FakeResponse, Fault
from ucf.fakes.oauth_providers import mount_microsoft
from ucf.fakes.scenario import (
    Activity,
    DeliveryVerification,
    HandshakeSample,
    MetadataExpectation,
    ProviderFake,
    Scenario,
    WebhookDelivery,
    WebhookSample,
)

TENANT: Final = "8a3e2b4c-5d6f-4a1b-9c8d-7e6f5a4b3c2d"
CLIENT_ID: Final = "6731de76-14a6-49ae-97bc-6eba6914391e"
CLIENT_SECRET: Final = "fake~graph~client~secret~0123456789abcdef"  # noqa: S105
ACCESS_TOKEN: Final = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.fake-delegated-access-token"  # noqa: S105
REFRESH_TOKEN: Final = "0.AAAA-fake-graph-refresh-token-for-the-ucf-battery"  # noqa: S105
CLIENT_STATE: Final = "fake-client-state-7f3a9c1e5b2d4f6a8c0e"
MAILBOX: Final = "triage@contoso.example"
USER_ID: Final = "87d349ed-44d7-43e1-9a83-5f2406dee5bd"
PEOPLE: Final = (
    ("Adele Vance", "adelev@contoso.example"),
    ("Megan Bowen", "meganb@contoso.example"),
    ("Lee Gu", "leeg@contoso.example"),
    ("Alex Wilber", "alexw@contoso.example"),
)
SUBJECTS: Final = (
    "Checkout errors after the 2.14 deploy (OPS-412)",
    "Re: invoice for March",
    "Customer escalation: login loop #881",
    "Weekly status",
    "Payments queue backing up",
)
DEFAULT_PAGE_SIZE: Final = 10
MAIL_SUBSCRIPTION_MINUTES: Final = 10080
VALIDATION_TIMEOUT_SECONDS: Final = 10.0
VALIDATION_FAILED: Final = (
    "Subscription validation request failed. Notification endpoint must respond with "
    "200 OK to validation request."
)
VALIDATION_TIMED_OUT: Final = "Subscription validation request timed out."


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def graph_error(code: str, message: str, status: int, **headers: str) -> FakeResponse:
    inner = {"date": iso(datetime.now(UTC)), "request-id": str(uuid.uuid4())}
    body = {"error": {"code": code, "message": message, "innerError": inner}}
    return FakeResponse.json(body, status, headers=headers or None)


# --------------------------------------------------------------------------- mailbox


@dataclass
class Message:
    id: str
    subject: str
    sender: int
    to: list[int]
    cc: list[int]
    received: datetime
    modified: datetime
    seq: int
    importance: str = "normal"
    is_read: bool = False
    categories: list[str] = field(default_factory=list)
    flag: str = "notFlagged"
    preview: str = ""

    def json(self) -> dict[str, Any]:
        def address(index: int) -> dict[str, Any]:
            name, email = PEOPLE[index % len(PEOPLE)]
            return {"emailAddress": {"name": name, "address": email}}

        return {
            "@odata.type": "#microsoft.graph.message",
            "@odata.etag": f'W/"CQAAABYAAAC{self.seq:08d}"',
            "id": self.id,
            "createdDateTime": iso(self.received),
            "lastModifiedDateTime": iso(self.modified),
            "changeKey": f"CQAAABYAAAC{self.seq:08d}",
            "categories": list(self.categories),
            "receivedDateTime": iso(self.received),
            "sentDateTime": iso(self.received - timedelta(seconds=2)),
            "hasAttachments": False,
            "internetMessageId": f"<{self.id[-12:]}@contoso.example>",
            "subject": self.subject,
            "bodyPreview": self.preview,
            "importance": self.importance,
            "parentFolderId": "AQMkADAwATM0MDAAMS1iNTcwLWI2NTItMDACLTAwCgAuAAADinbox",
            "conversationId": f"AAQkAD{self.id[-16:]}",
            "isRead": self.is_read,
            "webLink": f"https://outlook.office365.com/owa/?ItemID={quote(self.id)}",
            "body": {"contentType": "html", "content": f"<html><body>{self.preview}</body></html>"},
            "from": address(self.sender),
            "sender": address(self.sender),
            "toRecipients": [address(i) for i in self.to],
            "ccRecipients": [address(i) for i in self.cc],
            "flag": {"flagStatus": self.flag},
        }


class Mailbox:
    """An inbox with a change sequence: every change (new, read, flagged, deleted) has a number."""

    def __init__(self, now: datetime, *, count: int = 80) -> None:
        self._seq = itertools.count(1)
        self.last_seq = 0
        self._ids = itertools.count(1)
        self.messages: dict[str, Message] = {}
        self.removed: dict[str, int] = {}  # id -> seq of its deletion
        for index in range(3):  # older than a week
            self.receive(now - timedelta(days=20 + index), index)
        window = timedelta(days=6)
        for index in range(count):
            message = self.receive(now - window + window * index / count, index)
            if index % 4 == 1:  # read a while later: an update
                self.change(message, message.received + timedelta(hours=1), is_read=True)

    @property
    def seq(self) -> int:
        """The next change number (each read takes one)."""
        self.last_seq = next(self._seq)
        return self.last_seq

    def receive(self, moment: datetime, index: int) -> Message:
        number = next(self._ids)
        message = Message(
            id=f"AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OABGAAAAAAAiQ8W967B7TKBjgx9rVEURBwAiIsqMbYjsT5e-T7KzowPTAAAAAAEMAAAiIsqMbYjsT5e-T7KzowPTAAAY{number:06d}AAA=",
            subject=SUBJECTS[index % len(SUBJECTS)],
            sender=index % len(PEOPLE),
            to=[(index + 1) % len(PEOPLE)],
            cc=[(index + 2) % len(PEOPLE)] if index % 3 == 0 else [],
            received=moment,
            modified=moment + timedelta(seconds=3),
            seq=self.seq,
            importance="high" if index % 5 == 2 else ("low" if index % 7 == 3 else "normal"),
            categories=["Red category"] if index % 6 == 0 else [],
            flag="flagged" if index % 9 == 4 else "notFlagged",
            preview=f"Hi team, {SUBJECTS[index % len(SUBJECTS)].lower()} - details inside.",
        )
        self.messages[message.id] = message
        return message

    def change(self, message: Message, moment: datetime, **updates: Any) -> None:
        for key, value in updates.items():
            setattr(message, key, value)
        message.modified = moment
        message.seq = self.seq

    def delete(self, message: Message) -> None:
        del self.messages[message.id]
        self.removed[message.id] = self.seq


# --------------------------------------------------------------------------- the fake


@dataclass
class _Round:
    """One delta round's state, kept server-side under an opaque token."""

    since: datetime | None
    select: tuple[str, ...] | None
    base_seq: int  # changes after this belong to the round (0: the initial sync)
    snapshot_seq: int | None = None  # fixed when the round's first page is served
    offset: int = 0


@dataclass
class Subscription:
    id: str
    resource: str
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: datetime


@dataclass(frozen=True)
class Validation:
    """One validation request the fake sent, and how the endpoint answered."""

    url: str
    token: str
    status: int | None
    """None: no answer (refused, timed out)."""
    passed: bool


ExpiryAnswer = Literal["gone", "sync_state_not_found"]


class GraphFake(ProviderFake):
    """``graph.microsoft.com/v1.0`` for one mailbox, and ``login.microsoftonline.com``."""

    poll_route = "/v1.0/me/mailFolders('{folder}')/messages/delta"

    def __init__(self, now: datetime, *, messages: int = 80, page_max: int = 1000) -> None:
        """``messages``: how many the inbox received in the last six days. ``page_max``: the
        most a delta page holds whatever ``odata.maxpagesize`` asks (a preference: Graph
        pages server-side and may send fewer, https://learn.microsoft.com/graph/paging)."""
        super().__init__()
        self.now = now
        self.mailbox = Mailbox(now, count=messages)
        self.access_tokens: dict[str, Literal["delegated", "app"]] = {ACCESS_TOKEN: "delegated"}
        self.refresh_tokens = {REFRESH_TOKEN}
        self.used_refresh_tokens: list[str] = []
        self.subscriptions: dict[str, Subscription] = {}
        self.validations: list[Validation] = []
        self.validation_timeout = VALIDATION_TIMEOUT_SECONDS
        self.subscriptions_page_size = 100
        self._rounds: dict[str, _Round] = {}
        self._generation = 0
        self.page_max = page_max
        self._expired: ExpiryAnswer | None = None
        server = self.server
        for who in ("me", "users/{user}"):
            base = f"/v1.0/{who}"
            server.add_route("GET", f"{base}/mailFolders('{{folder}}')/messages/delta", self._delta)
            server.add_route("GET", f"{base}/mailFolders('{{folder}}')", self._folder)
            server.add_route("GET", f"{base}/messages/{{message}}", self._message)
        server.add_route("POST", "/v1.0/subscriptions", self._subscribe)
        server.add_route("GET", "/v1.0/subscriptions", self._list_subscriptions)
        server.add_route(
            ("GET", "PATCH", "DELETE"), "/v1.0/subscriptions/{sid}", self._subscription
        )
        server.add_route("POST", "/{tenant}/oauth2/v2.0/token", self._token)
        # The consent ("Connect with Outlook"): Microsoft's authorize page and the code
        # exchange; refresh tokens it issues live in the same set as the pasted one.
        self.auth = mount_microsoft(
            server, CLIENT_ID, CLIENT_SECRET, token_route=False, refresh_tokens=self.refresh_tokens
        )

    # -- protocol

    def add_activity(self, now: datetime) -> Activity:
        """Two new messages, one older message read and categorised, one deleted."""
        data = self.mailbox
        fresh = [data.receive(now - timedelta(seconds=30), 2), data.receive(now, 3)]
        ordered = sorted(data.messages.values(), key=lambda m: m.received)
        changed = ordered[-10]
        data.change(changed, now, is_read=True, categories=["Blue category"])
        data.delete(ordered[-12])
        return Activity(new_ids=frozenset(m.id for m in fresh), changed_ids=frozenset({changed.id}))

    def ids_changed_since(self, moment: datetime) -> frozenset[str]:
        """The ids a first poll sees: messages *received* since ``moment`` (the delta filter)."""
        return frozenset(m.id for m in self.mailbox.messages.values() if m.received >= moment)

    def rate_limit_fault(self, retry_after: int) -> Fault:
        return Fault.respond(
            graph_error(
                "TooManyRequests",
                "Application is over its MailboxConcurrency limit.",
                429,
                **{"Retry-After": str(retry_after)},
            ),
            "rate_limited",
        )

    def revoke_sign_in_sessions(self) -> None:
        """Graph's ``POST /me/revokeSignInSessions`` (or an admin removing the app's
        consent) once the access tokens' hour has passed: every refresh token and every
        delegated access token stops working; app-only tokens stay."""
        self.auth.revoke_all()  # clears the shared refresh-token set too
        for token, kind in list(self.access_tokens.items()):
            if kind == "delegated":
                del self.access_tokens[token]

    def expire_tokens(self, answer: ExpiryAnswer = "gone") -> None:
        """Forget every delta and skip token issued so far, as Graph's token cache does."""
        self._rounds.clear()
        self._expired = answer
        self._generation += 1

    # -- auth

    def _caller(self, request: FakeRequest) -> Literal["delegated", "app"] | FakeResponse:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip()
        kind = self.access_tokens.get(token)
        if kind is None and token in self.auth.access_tokens:
            kind = "delegated"  # issued by the consent's code exchange
        if not header.startswith("Bearer ") or kind is None:
            return graph_error(
                "InvalidAuthenticationToken", "Access token is empty or invalid.", 401
            )
        if request.path.startswith("/v1.0/me/") and kind == "app":
            return graph_error(
                "BadRequest", "/me request is only valid with delegated authentication flow.", 400
            )
        return kind

    def _token(self, request: FakeRequest) -> FakeResponse:
        form = {k: v[0] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()}
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return _oauth_error(
                "invalid_client", "AADSTS7000215: Invalid client secret provided.", 401
            )
        grant = form.get("grant_type")
        if grant == "authorization_code":
            return self.auth.token(request)
        access = "eyJ0eXAiOiJKV1QifQ.fake-" + secrets.token_urlsafe(24)
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599}
        if grant == "refresh_token":
            token = form.get("refresh_token", "")
            if token not in self.refresh_tokens:
                return _oauth_error(
                    "invalid_grant", "AADSTS70000: The refresh token is invalid.", 400
                )
            self.used_refresh_tokens.append(token)
            fresh = "0.AAAA-fake-rotated-" + secrets.token_urlsafe(24)
            self.refresh_tokens.add(fresh)
            self.access_tokens[access] = "delegated"
            body.update(
                {"access_token": access, "refresh_token": fresh, "scope": "Mail.Read User.Read"}
            )
            return FakeResponse.json(body)
        if grant == "client_credentials":
            scope = form.get("scope", "")
            if not scope.endswith("/.default"):
                return _oauth_error(
                    "invalid_scope",
                    "AADSTS1002012: The provided value for scope is not valid. Client "
                    "credential flows must have a scope value with /.default suffixed.",
                    400,
                )
            self.access_tokens[access] = "app"
            body["access_token"] = access
            return FakeResponse.json(body)
        return _oauth_error("unsupported_grant_type", "AADSTS70003: unsupported grant.", 400)

    # -- mail

    def _selected(self, message: Message, select: tuple[str, ...] | None) -> dict[str, Any]:
        full = message.json()
        if select is None:
            return full
        keep = {"@odata.type", "@odata.etag", "id", *select}
        return {key: value for key, value in full.items() if key in keep}

    def _delta(self, request: FakeRequest) -> FakeResponse:
        caller = self._caller(request)
        if isinstance(caller, FakeResponse):
            return caller
        if request.path_params.get("folder", "").lower() != "inbox":
            return graph_error("ErrorInvalidIdMalformed", "Id is malformed.", 400)
        skip, delta = request.param("$skiptoken"), request.param("$deltatoken")
        token = skip or delta
        if token is None:
            initial = self._initial_round(request)
            if isinstance(initial, FakeResponse):
                return initial
            return self._page(request, initial)
        state = self._rounds.get(token)
        if state is None:
            return self._expired_answer(request)
        if delta is not None:  # a new round from the deltaLink: a fresh cursor
            state = _Round(state.since, state.select, state.base_seq)
        return self._page(request, state)

    def _initial_round(self, request: FakeRequest) -> _Round | FakeResponse:
        select = request.param("$select")
        since: datetime | None = None
        text = request.param("$filter")
        if text is not None:
            field_name, _, rest = text.partition(" ge ")
            since = _parse(rest.strip()) if field_name.strip() == "receivedDateTime" else None
            if since is None:
                return graph_error(
                    "ErrorInvalidUrlQueryFilter",
                    "The query filter contains one or more invalid nodes.",
                    400,
                )
        fields = tuple(s.strip() for s in select.split(",")) if select else None
        return _Round(since, fields, base_seq=0)

    def _page(self, request: FakeRequest, state: _Round) -> FakeResponse:
        data = self.mailbox
        if state.snapshot_seq is None:
            state.snapshot_seq = data.last_seq
        low, high = state.base_seq, state.snapshot_seq
        items: list[dict[str, Any]] = [
            self._selected(m, state.select)
            for m in sorted(data.messages.values(), key=lambda m: (m.seq, m.id))
            if low < m.seq <= high and (state.since is None or m.received >= state.since)
        ]
        if low > 0:  # deletions are only news to a client that saw the message
            items += [
                {
                    "@odata.type": "#microsoft.graph.message",
                    "id": mid,
                    "@removed": {"reason": "deleted"},
                }
                for mid, seq in sorted(data.removed.items(), key=lambda kv: kv[1])
                if low < seq <= high
            ]
        size = min(_page_size(request), self.page_max)
        page = items[state.offset : state.offset + size]
        path = request.path
        body: dict[str, Any] = {
            "@odata.context": f"{request.url_for('/v1.0/$metadata')}#Collection(message)",
            "value": page,
        }
        if state.offset + size < len(items):
            following = _Round(
                state.since, state.select, state.base_seq, state.snapshot_seq, state.offset + size
            )
            token = self._issue(following)
            body["@odata.nextLink"] = request.url_for(f"{quote(path)}?$skiptoken={token}")
        else:
            token = self._issue(_Round(state.since, state.select, base_seq=high))
            body["@odata.deltaLink"] = request.url_for(f"{quote(path)}?$deltatoken={token}")
        return FakeResponse.json(body)

    def _issue(self, state: _Round) -> str:
        """An opaque token for ``state``: the same state gets the same token (so two clients
        that read the same pages hold the same links, as a crash test compares), and tokens
        issued after :meth:`expire_tokens` never equal forgotten ones."""
        key = repr((self._generation, state)).encode()
        token = base64.urlsafe_b64encode(hashlib.sha256(key).digest()[:18]).decode()
        self._rounds[token] = state
        return token

    def _expired_answer(self, request: FakeRequest) -> FakeResponse:
        if self._expired == "sync_state_not_found":
            return graph_error("syncStateNotFound", "The sync state generation is not found.", 400)
        location = request.url_for(f"{quote(request.path)}?$deltatoken=")
        return graph_error("resyncRequired", "Resync required.", 410, Location=location)

    def _folder(self, request: FakeRequest) -> FakeResponse:
        caller = self._caller(request)
        if isinstance(caller, FakeResponse):
            return caller
        if request.path_params.get("folder", "").lower() != "inbox":
            return graph_error(
                "ErrorItemNotFound", "The specified object was not found in the store.", 404
            )
        unread = sum(1 for m in self.mailbox.messages.values() if not m.is_read)
        return FakeResponse.json(
            {
                "@odata.context": request.url_for(
                    "/v1.0/$metadata#users('me')/mailFolders/$entity"
                ),
                "id": "AQMkADAwATM0MDAAMS1iNTcwLWI2NTItMDACLTAwCgAuAAADinbox",
                "displayName": "Inbox",
                "totalItemCount": len(self.mailbox.messages),
                "unreadItemCount": unread,
            }
        )

    def _message(self, request: FakeRequest) -> FakeResponse:
        caller = self._caller(request)
        if isinstance(caller, FakeResponse):
            return caller
        message = self.mailbox.messages.get(request.path_params["message"])
        if message is None:
            return graph_error(
                "ErrorItemNotFound", "The specified object was not found in the store.", 404
            )
        select = request.param("$select")
        fields = tuple(s.strip() for s in select.split(",")) if select else None
        return FakeResponse.json(self._selected(message, fields))

    # -- subscriptions

    async def _subscribe(self, request: FakeRequest) -> FakeResponse:
        caller = self._caller(request)
        if isinstance(caller, FakeResponse):
            return caller
        try:
            body = request.json()
        except ValueError:
            return graph_error("BadRequest", "Unable to read JSON request payload.", 400)
        expires = _parse(str(body.get("expirationDateTime", "")))
        problem = _subscription_problem(body, expires, self.now)
        if problem is not None:
            return graph_error("ExtensionError", problem, 400)
        assert expires is not None
        for url in (body["notificationUrl"], body.get("lifecycleNotificationUrl")):
            if isinstance(url, str) and url:
                refusal = await self._validate(url)
                if refusal is not None:
                    return graph_error("ValidationError", refusal, 400)
        sid = str(uuid.uuid4())
        subscription = Subscription(
            id=sid,
            resource=str(body["resource"]),
            change_type=str(body["changeType"]),
            notification_url=str(body["notificationUrl"]),
            lifecycle_url=body.get("lifecycleNotificationUrl"),
            client_state=body.get("clientState"),
            expires=expires,
        )
        self.subscriptions[sid] = subscription
        return FakeResponse.json(_subscription_json(request, subscription), 201)

    def _list_subscriptions(self, request: FakeRequest) -> FakeResponse:
        caller = self._caller(request)
        if isinstance(caller, FakeResponse):
            return caller
        start = int(request.param("$skiptoken") or "0")
        end = start + self.subscriptions_page_size
        listed = list(self.subscriptions.values())
        page: dict[str, Any] = {
            "@odata.context": request.url_for("/v1.0/$metadata#subscriptions"),
            "value": [_listed_json(request, s) for s in listed[start:end]],
        }
        if end < len(listed):
            page["@odata.nextLink"] = request.url_for(f"/v1.0/subscriptions?$skiptoken={end}")
        return FakeResponse.json(page)

    async def _validate(self, url: str) -> str | None:
        """Graph's reachability check of a notification URL; None when it passed."""
        token = (
            "Validation: Testing client application reachability for subscription "
            f"Request-Id: {uuid.uuid4()}"
        )
        target = f"{url}{'&' if '?' in url else '?'}validationToken={quote(token, safe='')}"
        status: int | None = None
        passed = False
        refusal: str | None = VALIDATION_FAILED
        try:
            async with httpx.AsyncClient(timeout=self.validation_timeout) as client:
                response = await client.post(
                    target, headers={"Content-Type": "text/plain; charset=utf-8"}
                )
            status = response.status_code
            media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            passed = status == 200 and media_type == "text/plain" and response.text == token
            refusal = None if passed else VALIDATION_FAILED
        except httpx.TimeoutException:
            refusal = VALIDATION_TIMED_OUT
        except httpx.HTTPError:
            refusal = VALIDATION_FAILED
        self.validations.append(Validation(url, token, status, passed))
        return refusal

    def _subscription(self, request: FakeRequest) -> FakeResponse:
        caller = self._caller(request)
        if isinstance(caller, FakeResponse):
            return caller
        subscription = self.subscriptions.get(request.path_params["sid"])
        if subscription is None:
            return graph_error("ResourceNotFound", "The object was not found.", 404)
        if request.method == "DELETE":
            del self.subscriptions[subscription.id]
            return FakeResponse(status=204)
        if request.method == "PATCH":
            try:
                expires = _parse(str(request.json().get("expirationDateTime", "")))
            except ValueError:
                expires = None
            problem = _expiry_problem(expires, self.now)
            if problem is not None:
                return graph_error("ExtensionError", problem, 400)
            assert expires is not None
            subscription.expires = expires
        return FakeResponse.json(_subscription_json(request, subscription))

    def notification(
        self, message_id: str, change_type: str = "created", *, client_state: str | None = None
    ) -> dict[str, Any]:
        """One change notification for a message, as Graph posts it (without resource data)."""
        subscription = next(iter(self.subscriptions.values()), None)
        return change_notification(
            message_id,
            change_type,
            client_state=client_state
            if client_state is not None
            else (subscription.client_state if subscription else CLIENT_STATE) or "",
            subscription_id=subscription.id if subscription else str(uuid.uuid4()),
            expires=subscription.expires if subscription else self.now + timedelta(days=2),
        )


def change_notification(
    message_id: str,
    change_type: str,
    *,
    client_state: str,
    subscription_id: str,
    expires: datetime,
) -> dict[str, Any]:
    """A basic change notification for one message
    (https://learn.microsoft.com/graph/api/resources/changenotification)."""
    return {
        "subscriptionId": subscription_id,
        "subscriptionExpirationDateTime": expires.astimezone(UTC).isoformat(),
        "changeType": change_type,
        "resource": f"Users/{USER_ID}/Messages/{message_id}",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": f"Users/{USER_ID}/Messages/{message_id}",
            "@odata.etag": 'W/"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf"',
            "id": message_id,
        },
        "clientState": client_state,
        "tenantId": TENANT,
    }


def lifecycle_notification(
    event: str, *, client_state: str, subscription_id: str, expires: datetime
) -> dict[str, Any]:
    """A lifecycle notification (https://learn.microsoft.com/graph/change-notifications-lifecycle-events)."""
    return {
        "subscriptionId": subscription_id,
        "subscriptionExpirationDateTime": expires.astimezone(UTC).isoformat(),
        "tenantId": TENANT,
        "clientState": client_state,
        "lifecycleEvent": event,
    }


def _page_size(request: FakeRequest) -> int:
    for part in request.headers.get("prefer", "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
            return max(1, min(1000, int(value.strip())))
    return DEFAULT_PAGE_SIZE


def _oauth_error(code: str, description: str, status: int) -> FakeResponse:
    return FakeResponse.json(
        {
            "error": code,
            "error_description": description,
            "error_codes": [int(description[5:12]) if description[5:12].isdigit() else 0],
            "timestamp": iso(datetime.now(UTC)),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        },
        status,
    )


def _expiry_problem(expires: datetime | None, now: datetime) -> str | None:
    if expires is None:
        return "expirationDateTime is missing or not a date."
    if expires <= now:
        return "Subscription expiration can only be in the future."
    if expires > now + timedelta(minutes=MAIL_SUBSCRIPTION_MINUTES):
        return (
            "Subscription expiration exceeds the maximum allowed "
            f"{MAIL_SUBSCRIPTION_MINUTES} minutes for this resource."
        )
    return None


def _subscription_problem(body: Any, expires: datetime | None, now: datetime) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a subscription."
    for key in ("changeType", "notificationUrl", "resource"):
        if not isinstance(body.get(key), str) or not body[key]:
            return f"{key} is required."
    state = body.get("clientState")
    if state is not None and (not isinstance(state, str) or len(state) > 128):
        return "clientState is longer than 128 characters."
    if not str(body["notificationUrl"]).startswith("https://") and not str(
        body["notificationUrl"]
    ).startswith("http://127.0.0.1"):
        return "Subscription notificationUrl must be https."
    return _expiry_problem(expires, now)


def _subscription_json(request: FakeRequest, subscription: Subscription) -> dict[str, Any]:
    return {
        "@odata.context": request.url_for("/v1.0/$metadata#subscriptions/$entity"),
        "id": subscription.id,
        "resource": subscription.resource,
        "applicationId": CLIENT_ID,
        "changeType": subscription.change_type,
        "clientState": subscription.client_state,
        "notificationUrl": subscription.notification_url,
        "lifecycleNotificationUrl": subscription.lifecycle_url,
        "expirationDateTime": subscription.expires.astimezone(UTC).isoformat(),
        "creatorId": USER_ID,
        "latestSupportedTlsVersion": "v1_2",
    }


def _listed_json(request: FakeRequest, subscription: Subscription) -> dict[str, Any]:
    """A subscription as ``GET /subscriptions`` lists it: no context, no ``clientState``."""
    listed = _subscription_json(request, subscription)
    del listed["@odata.context"]
    return {**listed, "clientState": None}


# --------------------------------------------------------------------------- the scenario


class OutlookScenario(Scenario):
    connector_id = "outlook"
    polling_signal_types = frozenset({"email_received", "email_updated"})
    webhook_signal_types = frozenset({"email_received"})
    # clientState is a shared value the body carries, not a signature over it.
    webhook_verification = DeliveryVerification("clientState", signs_body=False)

    def fake(self, now: datetime) -> GraphFake:
        return GraphFake(now)

    def expected_metadata(self, fake: ProviderFake | None) -> tuple[MetadataExpectation, ...]:
        assert isinstance(fake, GraphFake), "Outlook's expectations name messages of its fake"
        ordered = sorted(fake.mailbox.messages.values(), key=lambda m: m.received)
        first = ordered[3]  # the window's first message (index 0): OPS-412, cc, a category
        urgent = ordered[5]  # index 2: high importance, #881
        return (
            MetadataExpectation(
                item_id=first.id,
                participants=(PEOPLE[0][1], PEOPLE[1][1], PEOPLE[2][1]),
                tags=("Red category",),
                related_tickets=("OPS-412",),
            ),
            MetadataExpectation(
                item_id=urgent.id,
                priority="high",
                participants=(PEOPLE[2][1], PEOPLE[3][1]),
                related_tickets=("#881",),
            ),
        )

    def config(self, base_url: str) -> dict[str, str]:
        return {"baseUrl": f"{base_url}/v1.0", "authorityUrl": base_url, "tenant": TENANT}

    def credentials(self) -> dict[str, str]:
        """What a user enters (the setup form's fields, nothing the runtime keeps for itself):
        the first request fetches an access token from the fake's token endpoint."""
        return {
            "clientId": CLIENT_ID,
            "clientSecret": CLIENT_SECRET,
            "refreshToken": REFRESH_TOKEN,
            "clientState": CLIENT_STATE,
        }

    def bad_credentials(self) -> dict[str, str]:
        return {**self.credentials(), "clientSecret": "wrong-secret"}

    def oauth_app(self) -> tuple[str, str] | None:
        return CLIENT_ID, CLIENT_SECRET

    @property
    def webhook_secret(self) -> str:
        return CLIENT_STATE

    def _sample_ids(self) -> tuple[str, str]:
        mailbox = Mailbox(datetime.now(UTC))
        ordered = sorted(mailbox.messages.values(), key=lambda m: m.received)
        return ordered[-1].id, ordered[-2].id

    def webhook_samples(self) -> list[WebhookSample]:
        newest, _ = self._sample_ids()
        body = {
            "value": [
                change_notification(
                    newest,
                    "created",
                    client_state=CLIENT_STATE,
                    subscription_id="7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
                    expires=datetime.now(UTC) + timedelta(days=2),
                )
            ]
        }
        return [WebhookSample.of("created", body, expected_types=("email_received",))]

    def unknown_event_sample(self) -> WebhookSample:
        newest, _ = self._sample_ids()
        body = {
            "value": [
                change_notification(
                    newest,
                    "deleted",
                    client_state=CLIENT_STATE,
                    subscription_id="7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
                    expires=datetime.now(UTC) + timedelta(days=2),
                )
            ]
        }
        return WebhookSample.of("deleted", body)

    def sign(self, sample: WebhookSample, *, url: str, at: datetime) -> WebhookDelivery:
        """Graph signs nothing: the body carries the subscription's ``clientState``
        (https://learn.microsoft.com/graph/change-notifications-delivery-webhooks)."""
        return WebhookDelivery(
            sample.name,
            url,
            sample.body,
            {"Content-Type": "application/json; charset=utf-8", **sample.headers},
            sample.expected_types,
        )

    def handshake(self, *, url: str, at: datetime) -> HandshakeSample:
        """The validation request Graph sends when a subscription is created: the token in
        the query, answered with 200, ``text/plain`` and the decoded token."""
        token = (
            "Validation: Testing client application reachability for subscription "  # noqa: S105
            "Request-Id: 6d8cb9a4-2a3f-4d2b-9a4f-3c1e5f7a9b0d"
        )
        delivery = WebhookDelivery(
            "validation",
            f"{url}?validationToken={quote(token)}",
            b"",
            {"Content-Type": "text/plain; charset=utf-8"},
        )
        return HandshakeSample(delivery, answer_body=None, keeps={})


def scenario(connector_id: str) -> Scenario:
    if connector_id != "outlook":
        raise LookupError(f"ucf.fakes.graph has no scenario for {connector_id!r}")
    return OutlookScenario()


__all__ = [
    "ACCESS_TOKEN",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "CLIENT_STATE",
    "MAILBOX",
    "REFRESH_TOKEN",
    "TENANT",
    "GraphFake",
    "Mailbox",
    "Message",
    "OutlookScenario",
    "change_notification",
    "lifecycle_notification",
    "scenario",
]
