"""The Auth Provider (SPEC §6.1): a descriptor's ``auth`` as an ``httpx.Auth`` flow.

Every scheme is one object that httpx calls for each request it sends (see
``httpx/_auth.py``: ``response = yield request``), so auth composes with the
retry loop, redirects and the SSRF guard instead of wrapping them:

* :class:`StaticAuth` — ``api_key``, ``pat``, ``basic`` and ``none``. They all
  come down to fixed headers and query parameters on every request: PagerDuty's
  ``Authorization: Token token=<key>``, Trello's ``?key=…&token=…``, Datadog's
  ``DD-API-KEY`` *and* ``DD-APPLICATION-KEY``, Confluence's Basic pair.
* :class:`OAuth2Flow` — bearer tokens from a token endpoint: the stored access
  token until shortly before it expires, a refresh (or a client-credentials
  grant) when it is about to, and one refresh-and-retry when the API answers
  401 anyway. Providers that rotate refresh tokens (Slack, Atlassian, Sentry,
  GitHub Apps) invalidate the old one the moment they issue the new one, so the
  new credentials are handed to ``on_rotate`` — which persists them — *before*
  the new token is used for anything. When ``on_rotate`` is also a
  :class:`CredentialKeeper`, a refresh runs in its turn and first takes the
  tokens another run of the same instance stored meanwhile, so two runs never
  refresh with one refresh token.

Invalid credentials end in :class:`~ucf.runtime.http.AuthFailed` with a message
naming the endpoint and the status or the provider's error code and description
(``invalid_grant: Unknown or invalid refresh token.``), never a value we sent;
nothing here retries a rejected credential (the retry loop only retries what may
succeed later). Token endpoints differ: some refuse with HTTP 200 (Slack, GitHub),
GitHub answers a form unless asked for JSON, Notion and Atlassian take a JSON
body (``tokenRequest``), and tokens without a refresh token (GitHub OAuth apps)
are used until the API rejects them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable
from urllib.parse import parse_qsl

import httpx

from ucf.core.credential_keys import ACCESS_TOKEN_EXPIRES_AT as ACCESS_TOKEN_EXPIRES_AT
from ucf.core.descriptor_view import (
    AuthView,
    BasicConfigView,
    CredentialFieldView,
    KeyedConfigView,
    OAuth2ConfigView,
    auth_view,
    oauth2_config_view,
)
from ucf.core.template import compile_template
from ucf.core.template import render_url as render_url_template
from ucf.runtime.completion import to_the_end
from ucf.runtime.http import (
    AuthFailed,
    HttpSettings,
    MalformedResponse,
    RateLimited,
    UpstreamError,
    UpstreamUnavailable,
    describe,
    parse_json,
    send_with_retries,
)
from ucf.runtime.redaction import SECRETS, redact

if TYPE_CHECKING:
    from ucf.core import descriptor as d

__all__ = [
    "ACCESS_TOKEN_EXPIRES_AT",
    "REFRESH_MARGIN",
    "CredentialKeeper",
    "CredentialMissing",
    "CredentialsChanged",
    "OAuth2Flow",
    "StaticAuth",
    "build_auth",
    "exchange_code",
    "token_credentials",
    "token_payload",
    "token_refusal",
]

REFRESH_MARGIN: Final = timedelta(seconds=60)
"""Refresh this long before expiry, so a token never expires between check and use."""

CredentialsChanged = Callable[[dict[str, str]], Awaitable[None]]
"""Persists new tokens (the secret store), merged into what is stored: the access
token, the refresh token and the access token's expiry (absent: none); awaited
before they are used."""


@runtime_checkable
class CredentialKeeper(Protocol):
    """A :data:`CredentialsChanged` that can also say what is stored now, in a turn.

    Several runs of one instance hold its credentials side by side, each with the
    tokens it read when it started: a poll, the upkeep, a webhook fetching a full
    object, often in different processes. When two of them refresh with the same
    refresh token, a provider that rotates refresh tokens has killed it by the
    second, which then fails as "credentials refused". A refresh inside the
    keeper's turn (no other run of the instance changes its credentials
    meanwhile) first reads what is stored: another run's newer token is taken
    instead of refreshing again.
    """

    async def __call__(self, credentials: dict[str, str]) -> None:
        """Persist ``credentials`` (called inside the turn, too)."""
        ...

    def turn(self) -> AbstractAsyncContextManager[Mapping[str, str] | None]:
        """Hold the instance's turn; yields its stored credentials (None: none stored)."""
        ...


@contextlib.asynccontextmanager
async def _no_turn() -> AsyncIterator[Mapping[str, str] | None]:
    """Without a keeper there is nothing stored to compare with: refresh as asked."""
    yield None


# OAuth error codes are a fixed vocabulary (RFC 6749 §5.2, Slack's ``error``):
# safe to show. Anything else from a token endpoint is not echoed.
_ERROR_CODE: Final = re.compile(r"[a-z][a-z0-9_.]{0,63}")


class CredentialMissing(AuthFailed):
    """A credential the descriptor needs was not provided (names the key, not a value)."""


class CredentialUnusable(AuthFailed):
    """A credential that cannot be sent where the descriptor sends it (names the key,
    never the value): a header value must be printable ASCII without a space at
    either end, and a token copied from a web page often brings a no-break or
    zero-width space, or a line break, along. httpx refused such a value with a
    ``UnicodeEncodeError`` (a poll that failed "inside ucf" on every run) and h11
    with a protocol error retried as if the network had failed."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- static


class StaticAuth(httpx.Auth):
    """The same headers and query parameters on every request.

    ``defaults`` are the descriptor's ``extraHeaders`` (Notion-Version,
    PagerDuty's Accept version header); ``headers`` and ``params`` carry the
    credentials. All of them replace what the request had: the client's own
    ``Accept: */*`` must not shadow a version header an API insists on.
    """

    def __init__(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        defaults: Mapping[str, str] | None = None,
    ) -> None:
        self._headers = dict(headers or {})
        self._params = dict(params or {})
        self._defaults = dict(defaults or {})

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        _apply_defaults(request, self._defaults)
        request.headers.update(self._headers)
        if self._params:
            request.url = request.url.copy_merge_params(self._params)
        yield request


def _apply_defaults(request: httpx.Request, defaults: Mapping[str, str]) -> None:
    request.headers.update(defaults)


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class _Credentials:
    """Looks credentials up by key, with errors that say which key is missing."""

    def __init__(self, values: Mapping[str, str], fields: list[CredentialFieldView]) -> None:
        self.values = values
        self._required = {f.key: f.required for f in fields}

    def get(self, key: str) -> str:
        value = self.values.get(key)
        if value:
            SECRETS.add(value)
            return value
        if self._required.get(key, True):
            raise CredentialMissing(f"credential '{key}' is not set")
        return ""

    def first_key(self, fields: list[CredentialFieldView], index: int, what: str) -> str:
        if len(fields) <= index:
            raise CredentialMissing(f"the descriptor names no credential field for the {what}")
        return fields[index].key


def _header_value(key: str, value: str) -> str:
    """``value`` if a header can carry it, else :class:`CredentialUnusable` naming ``key``."""
    if value.isascii() and value.isprintable() and value == value.strip():
        return value
    raise CredentialUnusable(
        f"credential '{key}' holds a character an HTTP header cannot carry (outside "
        "printable ASCII, or a space at either end): was a space, line break or invisible "
        "character pasted with it?"
    )


def _place(
    delivery: str,
    key: str,
    name: str,
    prefix: str,
    value: str,
    headers: dict[str, str],
    params: dict[str, str],
) -> None:
    if delivery != "query":
        value = _header_value(key, value)
    if delivery == "bearer":
        headers[name or "Authorization"] = f"Bearer {value}"
    elif delivery == "header":
        headers[name] = prefix + value
    else:
        params[name] = prefix + value


def _keyed(config: KeyedConfigView, credentials: _Credentials) -> StaticAuth:
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    key = config.credential_key or credentials.first_key(config.credential_fields, 0, "key")
    _place(
        config.delivery,
        key,
        config.param_name,
        config.value_prefix,
        credentials.get(key),
        headers,
        params,
    )
    for extra in config.additional_credentials:
        _place(
            extra.delivery,
            extra.credential,
            extra.param_name,
            extra.value_prefix,
            credentials.get(extra.credential),
            headers,
            params,
        )
    return StaticAuth(headers=headers, params=params, defaults=config.extra_headers)


def _basic_auth(config: BasicConfigView, credentials: _Credentials) -> StaticAuth:
    fields = config.credential_fields
    user_key = config.username_key or credentials.first_key(fields, 0, "username")
    password_key = config.password_key or credentials.first_key(fields, 1, "password")
    header = _basic(credentials.get(user_key), credentials.get(password_key))
    return StaticAuth(headers={"Authorization": header}, defaults=config.extra_headers)


# --------------------------------------------------------------------------- oauth2


class OAuth2Flow(httpx.Auth):
    """Bearer tokens from an OAuth2 token endpoint, refreshed before expiry and on 401.

    One instance serves one connector instance; concurrent requests share one
    refresh (a lock, and a check that the rejected token is still the current
    one). Token requests go through ``token_client`` — the SSRF-guarded client —
    and its bounded retries; a grant the endpoint refuses is :class:`AuthFailed`.
    """

    def __init__(
        self,
        config: OAuth2ConfigView | d.OAuth2Config,
        credentials: Mapping[str, str],
        *,
        token_url: str,
        token_client: httpx.AsyncClient,
        on_rotate: CredentialsChanged | None,
        now: Callable[[], datetime],
        settings: HttpSettings,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._config = oauth2_config_view(config)  # a native connector's model, converted
        self._credentials = dict(credentials)
        self._lookup = _Credentials(self._credentials, self._config.credential_fields)
        self._token_url = token_url
        self._client = token_client
        self._on_rotate = on_rotate
        self._turn = on_rotate.turn if isinstance(on_rotate, CredentialKeeper) else _no_turn
        self._now = now
        self._settings = settings
        self._sleep = sleep
        self._lock = asyncio.Lock()
        for value in self._credentials.values():
            SECRETS.add(value)

    @property
    def credentials(self) -> dict[str, str]:
        """The current credentials (a copy), including any refreshed token."""
        return dict(self._credentials)

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("OAuth2 auth refreshes tokens asynchronously; use an AsyncClient")
        yield request  # pragma: no cover - makes this a generator

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()  # the request may be sent twice: keep its body
        _apply_defaults(request, self._config.extra_headers)
        token, fresh = await self._usable_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401 or fresh:
            return  # a 401 on a token we just obtained is final: the retry loop reports it
        # Give the connection back first (httpx reads this body right after anyway): the
        # refresh needs one from the same pool, and may wait for another run's turn.
        await response.aread()
        token = await self._replace(rejected=token)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    # -- tokens

    async def _usable_token(self) -> tuple[str, bool]:
        """The stored token while it is valid; otherwise a new one (and True)."""
        async with self._lock:
            token = self._credentials.get(self._config.access_token_key)
            if token and (not self._expiring() or not self.can_refresh()):
                return token, False  # without a refresh token, the API decides (401: reconnect)
            return await self._fetch(), True

    async def _replace(self, *, rejected: str) -> str:
        async with self._lock:
            current = self._credentials.get(self._config.access_token_key)
            if current and current != rejected:
                return current  # another request already refreshed it
            return await self._fetch(rejected=rejected)

    def _expiring(self) -> bool:
        text = self._credentials.get(ACCESS_TOKEN_EXPIRES_AT)
        if not text:
            return False  # unknown lifetime: use it until the API says 401
        try:
            expires = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return True
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        return self._now() >= expires - REFRESH_MARGIN

    def can_refresh(self) -> bool:
        """Whether a new access token can be had without the user: a client-credentials
        grant, or a stored refresh token (GitHub OAuth apps and other non-expiring tokens
        come without one: the token is used until the API rejects it)."""
        config = self._config
        return config.grant != "refresh_token" or bool(
            self._credentials.get(config.refresh_token_key)
        )

    def _token_request(self) -> httpx.Request:
        config = self._config
        form: dict[str, str] = {"grant_type": config.grant}
        if config.grant == "refresh_token":
            form["refresh_token"] = self._lookup.get(config.refresh_token_key)
        elif config.scopes:
            form["scope"] = " ".join(config.scopes)
        client_id = self._lookup.get(config.client_id_key)
        client_secret = self._lookup.get(config.client_secret_key)
        return _token_post(self._client, config, self._token_url, form, client_id, client_secret)

    async def _fetch(self, *, rejected: str | None = None) -> str:
        """A new access token: another run's, when it stored one since this flow read
        its credentials (never the one the API just ``rejected``); otherwise the grant's."""
        async with self._turn() as stored:
            if stored is not None and self._adopt(stored, rejected=rejected):
                return self._credentials[self._config.access_token_key]
            return await self._grant()

    def _adopt(self, stored: Mapping[str, str], *, rejected: str | None) -> bool:
        """Take the tokens stored since this flow read its own; True when the access
        token among them can be used as it is."""
        config = self._config
        keys = self._token_keys()
        if all(stored.get(key) == self._credentials.get(key) for key in keys):
            return False  # nobody refreshed since: these are the newest, and they are spent
        for key in keys:
            value = stored.get(key)
            if value is None:
                self._credentials.pop(key, None)
            else:
                self._credentials[key] = value
                SECRETS.add(value)
        token = self._credentials.get(config.access_token_key)
        return bool(token) and token != rejected and not self._expiring()

    def _token_keys(self) -> tuple[str, str, str]:
        """The credentials a token response changes: all this flow ever persists or adopts."""
        config = self._config
        return (config.access_token_key, config.refresh_token_key, ACCESS_TOKEN_EXPIRES_AT)

    async def _grant(self) -> str:
        """Run the grant, persist what changed, then return the new access token."""
        config = self._config
        if not self.can_refresh():
            raise AuthFailed(
                "the access token was rejected and the provider issued no refresh token "
                "(its tokens do not expire until revoked): reconnect the account",
                status=401,
            )
        request = self._token_request()
        where = describe(request)
        response = await _send_token_request(
            self._client, request, where, settings=self._settings, sleep=self._sleep
        )
        payload = _answer(response, where, f"the {config.grant} grant")
        updated = dict(self._credentials)
        for key, value in token_credentials(config, payload, where, self._now()).items():
            if value is None:
                updated.pop(key, None)
            else:
                updated[key] = value
        access_token = updated[config.access_token_key]
        cancelled = False
        if self._on_rotate is not None:
            # Persist first: after a rotation the old refresh token is already dead.
            # Run to its end: a deadline that cancels this request must not cancel the
            # write (the only live refresh token would be lost), and once it is saved
            # this flow must hold it too, or the request's retry presents the dead one.
            # The tokens only: the rest is what this run read when it started (with the
            # registered OAuth app's client id and secret filled in), and written back it
            # would pin the app's secret on the instance and undo an operator's change.
            tokens = {key: updated[key] for key in self._token_keys() if key in updated}
            _, cancelled = await to_the_end(self._on_rotate(tokens))
        self._credentials.clear()
        self._credentials.update(updated)
        if cancelled:
            raise asyncio.CancelledError
        return access_token


def token_credentials(
    config: OAuth2ConfigView | d.OAuth2Config, payload: Any, where: str, now: datetime
) -> dict[str, str | None]:
    """What a token response (RFC 6749 §5.1) changes in an instance's credentials.

    The access token always; its expiry time when ``expires_in`` is given
    (None otherwise, meaning "remove": the old expiry must not outlive the old
    token); the refresh token when one is returned (it rotates). An ``error`` code in place of a token is :class:`AuthFailed`
    (Slack answers HTTP 200 ``{"ok": false, "error": "invalid_code"}``).
    """
    if not isinstance(payload, dict):
        raise MalformedResponse(f"{where}: token response is not a JSON object")
    access_token = payload.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        refusal = token_refusal(payload)
        if refusal is not None:
            raise AuthFailed(f"{where}: the token endpoint refused the grant ({refusal})")
        raise MalformedResponse(f"{where}: token response has no access_token")
    SECRETS.add(access_token)
    changes: dict[str, str | None] = {
        config.access_token_key: access_token,
        ACCESS_TOKEN_EXPIRES_AT: None,
    }
    lifetime = payload.get("expires_in")
    if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) and lifetime > 0:
        expires = now + timedelta(seconds=float(lifetime))
        changes[ACCESS_TOKEN_EXPIRES_AT] = expires.astimezone(UTC).isoformat()
    refresh_token = payload.get("refresh_token")
    if isinstance(refresh_token, str) and refresh_token:
        SECRETS.add(refresh_token)
        changes[config.refresh_token_key] = refresh_token
    return changes


async def exchange_code(
    config: OAuth2ConfigView | d.OAuth2Config,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str | None,
    client_id: str,
    client_secret: str,
    token_url: str,
    client: httpx.AsyncClient,
    settings: HttpSettings,
    now: datetime,
) -> dict[str, str]:
    """The authorization-code grant (RFC 6749 §4.1.3, PKCE RFC 7636 §4.5): the
    credentials a consent produced, through the SSRF-guarded client and its
    bounded retries. A refused code is :class:`AuthFailed` with the provider's
    error code (``invalid_grant``), never the code itself."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if code_verifier is not None:
        form["code_verifier"] = code_verifier
    request = _token_post(client, config, token_url, form, client_id, client_secret)
    where = describe(request)
    response = await _send_token_request(client, request, where, settings=settings)
    payload = _answer(response, where, "the authorization code")
    changes = token_credentials(config, payload, where, now)
    return {key: value for key, value in changes.items() if value is not None}


_TOKEN_REFUSALS: Final = (400, 401, 403)
"""Statuses a token endpoint refuses a grant with (RFC 6749 §5.2: 400, 401 for the
client; Atlassian answers 403): read for the provider's reason, never retried."""


async def _send_token_request(
    client: httpx.AsyncClient,
    request: httpx.Request,
    where: str,
    *,
    settings: HttpSettings,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> httpx.Response:
    """Through the bounded retries (5xx and 429 are retried and raised as such); a
    refusal comes back to be read, any other 4xx is :class:`AuthFailed`."""
    try:
        return await send_with_retries(
            client, request, settings=settings, sleep=sleep, accept=_TOKEN_REFUSALS
        )
    except (RateLimited, UpstreamUnavailable):
        raise
    except UpstreamError as error:
        if error.status is not None and 400 <= error.status < 500:
            raise AuthFailed(
                f"{where}: the token endpoint answered HTTP {error.status}",
                status=error.status,
            ) from None
        raise


def _token_post(
    client: httpx.AsyncClient,
    config: OAuth2ConfigView | d.OAuth2Config,
    token_url: str,
    form: dict[str, str],
    client_id: str,
    client_secret: str,
) -> httpx.Request:
    """A token request: client authentication and body encoding as the descriptor says,
    and ``Accept: application/json`` (GitHub answers a form without it)."""
    headers = {"Accept": "application/json"}
    if config.client_auth == "basic":
        headers["Authorization"] = _basic(client_id, client_secret)
    else:
        form = {**form, "client_id": client_id, "client_secret": client_secret}
    if config.token_request == "json":  # noqa: S105 - an encoding, not a secret
        return client.build_request("POST", token_url, json=form, headers=headers)
    return client.build_request("POST", token_url, data=form, headers=headers)


def _answer(response: httpx.Response, where: str, what: str) -> Any:
    """The token endpoint's payload; a refusal (4xx) as :class:`AuthFailed` with the
    provider's error code and description, never a value we sent."""
    if response.status_code < 400:
        return token_payload(response, where)
    try:
        refusal = token_refusal(token_payload(response, where))
    except MalformedResponse:
        refusal = None
    raise AuthFailed(
        f"{where}: the token endpoint refused {what} "
        f"({refusal or f'HTTP {response.status_code}'}); reconnect the account or check the "
        "client credentials",
        status=response.status_code,
    )


def token_payload(response: httpx.Response, where: str) -> Any:
    """A token endpoint's answer: JSON (RFC 6749 §5.1), or a form from an endpoint that
    answers one whatever ``Accept`` says (GitHub's default encoding)."""
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(response.text, keep_blank_values=True, strict_parsing=True))
        except ValueError:
            raise MalformedResponse(f"{where}: token response is not a valid form") from None
    return parse_json(response)


_DESCRIPTION_MAX: Final = 200


def token_refusal(payload: Any) -> str | None:
    """``invalid_grant: AADSTS50173: The provided grant has expired…``: the error code
    and the provider's description, or None when the payload is not a refusal.

    RFC 6749 §5.2 ``error``/``error_description`` (also Slack's ``ok: false`` and
    GitHub's HTTP-200 errors); Notion's error object ``{"object": "error", "code",
    "message"}``. Microsoft's trace and correlation ids are cut off; the text is
    redacted and capped."""
    if not isinstance(payload, dict):
        return None
    code = payload.get("error")
    if not isinstance(code, str) and payload.get("object") == "error":
        code = payload.get("code")
    if not isinstance(code, str) or not _ERROR_CODE.fullmatch(code):
        return None
    description = payload.get("error_description") or payload.get("message")
    if not isinstance(description, str) or not description.strip():
        return code
    words = " ".join(description.split()).split(" Trace ID:")[0]
    if len(words) > _DESCRIPTION_MAX:
        words = words[: _DESCRIPTION_MAX - 1] + "…"
    return f"{code}: {redact(words)}"


# --------------------------------------------------------------------------- factory


def render_url(template: str, config: Mapping[str, str]) -> str:
    """A URL template with ``{{baseUrl}}`` verbatim and ``{{config.x}}`` URL-encoded.

    A variable that starts the template is a URL prefix and is also kept
    verbatim (Slack's ``{{signInUrl}}/…`` consent page, a test server's origin):
    :func:`ucf.core.template.render_url`, as polls and health checks render theirs.
    """

    def resolve(name: str) -> Any:
        return config.get(name.removeprefix("config."))

    return render_url_template(compile_template(template), resolve)


def build_auth(
    auth: d.AuthDescriptor | AuthView,
    credentials: Mapping[str, str],
    *,
    token_client: httpx.AsyncClient,
    on_rotate: CredentialsChanged | None = None,
    now: Callable[[], datetime] = _utc_now,
    config: Mapping[str, str] | None = None,
    settings: HttpSettings | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> httpx.Auth:
    """The ``httpx.Auth`` for a descriptor's auth and an instance's credentials.

    Static schemes check their credentials here, so a missing one fails before
    any request (:class:`CredentialMissing`). ``on_rotate`` receives the tokens
    (access token, refresh token, expiry; an absent expiry means none) whenever a
    token response changed them — always when the refresh token rotated — and is
    awaited before the new token is used.
    ``config`` fills ``{{baseUrl}}``/``{{config.x}}`` in a templated ``tokenUrl``.

    ``auth`` is read as its view (:mod:`ucf.core.descriptor_view`): a poll's,
    loaded from the stored descriptor without the models, or a model's converted.
    """
    method = auth_view(auth)
    oauth = method.config
    if oauth is None:  # none
        return StaticAuth()
    if method.method == "webhook_secret":  # the secret signs deliveries, not API calls
        return StaticAuth(defaults=oauth.extra_headers)
    lookup = _Credentials(credentials, oauth.credential_fields)
    if isinstance(oauth, KeyedConfigView):  # api_key, pat
        return _keyed(oauth, lookup)
    if isinstance(oauth, BasicConfigView):
        return _basic_auth(oauth, lookup)
    assert isinstance(oauth, OAuth2ConfigView), method.method
    return OAuth2Flow(
        oauth,
        credentials,
        token_url=render_url(oauth.token_url, config or {}),
        token_client=token_client,
        on_rotate=on_rotate,
        now=now,
        settings=settings or HttpSettings(),
        sleep=sleep,
    )
