"""A fake OAuth 2.0 authorization server (RFC 6749 §4.1, PKCE RFC 7636) on a fake's server.

It does what a provider's does for the authorization-code grant, so ucf's
"Connect with …" runs offline in tests and ``ucf sandbox``:

- ``GET {authorize_path}`` shows a consent page (HTML, two buttons) after
  checking ``response_type``, ``client_id`` and that ``redirect_uri`` is one
  the app registered (a mismatch is an error page, never a redirect — as
  providers do, so a code cannot be sent to a stranger);
- ``POST {authorize_path}/decision`` redirects back with ``code`` and the
  ``state`` as given, or ``error=access_denied``;
- the token endpoint exchanges a code once (``invalid_grant`` for a reused,
  unknown or expired code, a redirect URI that differs from the consent's, or
  a PKCE verifier that does not match its challenge), refreshes with rotation,
  and forgets every token on :meth:`AuthorizationServer.revoke_all`.

Response shapes and error codes are the provider's, given by a
:class:`TokenStyle`: RFC 6749's JSON with HTTP 400 errors by default, Slack's
``{"ok": false, "error": …}`` with HTTP 200 for ``oauth.v2.access``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, urlencode

from ucf.fakes.kit import FakeRequest, FakeResponse, FakeServer

CODE_LIFETIME_SECONDS: Final = 600


RFC6749_CODES: Final = {
    "bad_code": "invalid_grant",
    "bad_refresh": "invalid_grant",
    "bad_client": "invalid_client",
    "bad_grant_type": "unsupported_grant_type",
}


def _rfc6749_error(code: str) -> dict[str, Any]:
    return {"error": code}


@dataclass(frozen=True)
class TokenStyle:
    """How a provider's token endpoint answers."""

    success: Callable[[dict[str, Any]], dict[str, Any]] = dict
    """Wraps the RFC 6749 fields (access_token, refresh_token, expires_in, …)."""
    error_status: int = 400
    error: Callable[[str], dict[str, Any]] = _rfc6749_error
    codes: Mapping[str, str] = field(default_factory=lambda: dict(RFC6749_CODES))
    """The provider's error code for each failure (see :data:`RFC6749_CODES`)."""


RFC6749: Final = TokenStyle()


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str | None
    issued: float


@dataclass
class AuthorizationServer:
    """Mounted on ``server`` at ``authorize_path`` and ``token_path``."""

    server: FakeServer
    client_id: str
    client_secret: str
    redirect_uris: set[str] = field(default_factory=set)
    """Redirect URIs the app registered; empty: any (a test sets them)."""
    authorize_path: str = "/oauth/authorize"
    token_path: str = "/oauth/token"  # noqa: S105 - a route
    style: TokenStyle = RFC6749
    access_tokens: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)
    token_prefix: str = "fake-access-"  # noqa: S105 - a prefix of fake tokens
    expires_in: int = 3600
    _codes: dict[str, _Grant] = field(default_factory=dict)
    exchanged: int = 0

    def __post_init__(self) -> None:
        self.server.add_route("GET", self.authorize_path, self._consent_page)
        self.server.add_route("POST", self.authorize_path + "/decision", self._decision)
        self.server.add_route("POST", self.token_path, self._token)

    # -- what tests do

    def revoke_all(self) -> None:
        """The user removed the app: every access and refresh token stops working."""
        self.access_tokens.clear()
        self.refresh_tokens.clear()

    # -- consent

    def _redirect_allowed(self, uri: str) -> bool:
        return not self.redirect_uris or uri in self.redirect_uris

    def _consent_page(self, request: FakeRequest) -> FakeResponse:
        params = {name: values[0] for name, values in request.query.items()}
        if params.get("client_id") != self.client_id:
            return _page("Unknown app", "<p>This app does not exist.</p>", status=400)
        redirect_uri = params.get("redirect_uri", "")
        if not self._redirect_allowed(redirect_uri):
            return _page(
                "redirect_uri did not match",
                "<p>The redirect URI is not one this app registered.</p>",
                status=400,
            )
        if params.get("response_type") != "code":
            return _redirect(
                redirect_uri, error="unsupported_response_type", state=params.get("state")
            )
        method = params.get("code_challenge_method")
        if params.get("code_challenge") and method != "S256":
            return _redirect(redirect_uri, error="invalid_request", state=params.get("state"))
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
        )
        scopes = html.escape(params.get("scope", ""))
        body = (
            f"<p>ucf is asking to access your workspace ({scopes}).</p>"
            f'<form method="post" action="{self.authorize_path}/decision">{hidden}'
            '<button type="submit" name="decision" value="allow" id="allow">Allow</button> '
            '<button type="submit" name="decision" value="deny" id="deny">Cancel</button></form>'
        )
        return _page("Allow access?", body)

    def _decision(self, request: FakeRequest) -> FakeResponse:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        redirect_uri = form.get("redirect_uri", "")
        if form.get("client_id") != self.client_id or not self._redirect_allowed(redirect_uri):
            return _page("Bad request", "<p>Start again.</p>", status=400)
        state = form.get("state")
        if form.get("decision") != "allow":
            return _redirect(redirect_uri, error="access_denied", state=state)
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Grant(
            self.client_id, redirect_uri, form.get("code_challenge"), time.monotonic()
        )
        return _redirect(redirect_uri, code=code, state=state)

    # -- tokens

    def _token(self, request: FakeRequest) -> FakeResponse:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        client_id, client_secret = _client(request, form)
        if (client_id, client_secret) != (self.client_id, self.client_secret):
            return self._error("bad_client", status=401)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            return self._exchange(form)
        if grant == "refresh_token":
            return self._refresh(form)
        return self._error("bad_grant_type")

    def _exchange(self, form: dict[str, str]) -> FakeResponse:
        issued = self._codes.pop(form.get("code", ""), None)  # a code works once
        if issued is None or time.monotonic() - issued.issued > CODE_LIFETIME_SECONDS:
            return self._error("bad_code")
        if form.get("redirect_uri") != issued.redirect_uri:
            return self._error("bad_code")
        if issued.challenge is not None:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != issued.challenge:
                return self._error("bad_code")
        self.exchanged += 1
        return self._tokens()

    def _refresh(self, form: dict[str, str]) -> FakeResponse:
        token = form.get("refresh_token", "")
        if token not in self.refresh_tokens:
            return self._error("bad_refresh")
        self.refresh_tokens.discard(token)  # rotation: the old one is dead
        return self._tokens()

    def _tokens(self) -> FakeResponse:
        access = f"{self.token_prefix}{secrets.token_hex(16)}"
        refresh = f"fake-refresh-{secrets.token_hex(16)}"
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        payload = {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "refresh_token": refresh,
        }
        return FakeResponse.json(self.style.success(payload), headers={"Cache-Control": "no-store"})

    def _error(self, situation: str, *, status: int | None = None) -> FakeResponse:
        style = self.style
        chosen = style.error_status if style.error_status == 200 else (status or style.error_status)
        return FakeResponse.json(style.error(style.codes[situation]), status=chosen)


def _client(request: FakeRequest, form: dict[str, str]) -> tuple[str | None, str | None]:
    """Client authentication: HTTP Basic (RFC 6749 §2.3.1) or the body."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value).decode()
        except ValueError:
            return None, None
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    return form.get("client_id"), form.get("client_secret")


def _redirect(uri: str, **params: str | None) -> FakeResponse:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    separator = "&" if "?" in uri else "?"
    return FakeResponse(status=302, headers={"Location": f"{uri}{separator}{query}"})


def _page(title: str, body: str, *, status: int = 200) -> FakeResponse:
    document = (
        f"<!doctype html><html><head><title>{html.escape(title)}</title>"
        '<link rel="icon" href="data:,"></head>'
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return FakeResponse(
        status=status,
        headers={"Content-Type": "text/html; charset=utf-8"},
        body=document.encode(),
    )
