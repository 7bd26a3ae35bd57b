"""A fake OAuth 2.0 authorization server (RFC 6749 §4.1, PKCE RFC 7636) on a fake's server.

It does what a provider's does for the authorization-code grant, so ucf's
"Connect with …" runs offline in tests and ``ucf sandbox``:

- ``GET {authorize_path}`` shows a consent page (HTML, two buttons) after
  checking ``response_type``, ``client_id``, the parameters the provider
  insists on (Atlassian's ``audience``) and that ``redirect_uri`` is one the
  app registered (a mismatch is an error page, never a redirect — as
  providers do, so a code cannot be sent to a stranger);
- ``POST {authorize_path}/decision`` redirects back with ``code`` and the
  ``state`` as given, or ``error=access_denied``;
- the token endpoint exchanges a code once (an error for a reused, unknown or
  expired code, a redirect URI that differs from the consent's, or a PKCE
  verifier that does not match its challenge), refreshes as the provider does
  (:class:`RefreshPolicy`), and the revocation endpoint (or
  :meth:`AuthorizationServer.revoke_all`) forgets a grant's tokens.

Everything provider-specific is a :class:`TokenStyle`: how the token request
is read (form or JSON), how answers are encoded (JSON; GitHub's form unless
``Accept: application/json``), the success payload, each failure's code,
description and status, and the refresh policy. RFC 6749's JSON with HTTP
400 errors is the default; ``ucf.fakes.oauth_providers`` has the providers'.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, urlencode

from ucf.fakes.kit import FakeRequest, FakeResponse, FakeServer

CODE_LIFETIME_SECONDS: Final = 600


# --------------------------------------------------------------------------- the style


@dataclass(frozen=True)
class Failure:
    """One way the token endpoint refuses: the provider's code, words and status."""

    code: str
    description: str = ""
    status: int = 400


SITUATIONS: Final = (
    "bad_request",  # the body is not what the endpoint reads
    "bad_client",  # wrong client id or secret
    "bad_code",  # unknown, reused or expired authorization code
    "bad_redirect",  # redirect_uri differs from the consent's
    "bad_verifier",  # the PKCE verifier does not match the challenge
    "bad_refresh",  # unknown, rotated-out or revoked refresh token
    "bad_grant_type",
)

RFC6749_FAILURES: Final = {
    "bad_request": Failure("invalid_request"),
    "bad_client": Failure("invalid_client", status=401),
    "bad_code": Failure("invalid_grant"),
    "bad_redirect": Failure("invalid_grant"),
    "bad_verifier": Failure("invalid_grant"),
    "bad_refresh": Failure("invalid_grant"),
    "bad_grant_type": Failure("unsupported_grant_type"),
}


def rfc6749_error(failure: Failure) -> dict[str, Any]:
    """RFC 6749 §5.2: ``error`` and, when there is one, ``error_description``."""
    body: dict[str, Any] = {"error": failure.code}
    if failure.description:
        body["error_description"] = failure.description
    return body


def form_body(request: FakeRequest) -> dict[str, str]:
    """``application/x-www-form-urlencoded`` (RFC 6749 §4.1.3)."""
    return {k: v[0] for k, v in parse_qs(request.body.decode()).items()}


def json_body(request: FakeRequest) -> dict[str, str]:
    """A JSON object (Notion's token endpoint); ``ValueError`` otherwise."""
    data = json.loads(request.body or b"null")
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return {str(k): str(v) for k, v in data.items()}


def json_or_form_body(request: FakeRequest) -> dict[str, str]:
    """JSON when the request says so, a form otherwise."""
    if request.headers.get("content-type", "").startswith("application/json"):
        return json_body(request)
    return form_body(request)


def json_answer(request: FakeRequest, payload: Mapping[str, Any], status: int) -> FakeResponse:
    """RFC 6749 §5.1: JSON, never cached."""
    return FakeResponse.json(dict(payload), status, headers={"Cache-Control": "no-store"})


@dataclass(frozen=True)
class RefreshPolicy:
    """What a provider does with refresh tokens."""

    issued: bool = True
    """The code exchange returns a refresh token (GitHub OAuth apps: never)."""
    requires_scope: str | None = None
    """...only when the consent asked for this scope (``offline_access``)."""
    rotates: bool = True
    """A refresh answer carries a new refresh token; when not, the one used stays (Asana)."""
    old_survives: bool = False
    """A rotated-out refresh token keeps working (Microsoft: discard it, but it is not revoked)."""


ROTATING: Final = RefreshPolicy()
NO_REFRESH: Final = RefreshPolicy(issued=False)


@dataclass(frozen=True)
class TokenStyle:
    """How a provider's token endpoint reads requests and answers."""

    success: Callable[[dict[str, Any]], dict[str, Any]] = dict
    """Wraps the RFC 6749 fields (access_token, refresh_token, expires_in, …)."""
    error: Callable[[Failure], dict[str, Any]] = rfc6749_error
    failures: Mapping[str, Failure] = field(default_factory=lambda: dict(RFC6749_FAILURES))
    """The provider's answer for each of :data:`SITUATIONS`."""
    read: Callable[[FakeRequest], dict[str, str]] = form_body
    answer: Callable[[FakeRequest, Mapping[str, Any], int], FakeResponse] = json_answer
    refresh: RefreshPolicy = ROTATING
    client_auth: frozenset[str] = frozenset({"basic", "body"})
    """Where the endpoint accepts the client's id and secret (RFC 6749 §2.3.1)."""
    default_grant: str | None = None
    """The grant of a request that names none (GitHub's access_token takes no grant_type)."""


RFC6749: Final = TokenStyle()


# --------------------------------------------------------------------------- the server


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str | None
    scope: str
    issued: float


@dataclass
class AuthorizationServer:
    """Mounted on ``server`` at ``authorize_path``, ``token_path`` and ``revoke_path``.

    ``token_path`` None: the host fake routes token requests itself and hands
    the grants it does not serve to :meth:`token` (Microsoft's endpoint also
    issues app-only tokens, which the Graph fake keeps).
    """

    server: FakeServer
    client_id: str
    client_secret: str
    redirect_uris: set[str] = field(default_factory=set)
    """Redirect URIs the app registered; empty: any (a test sets them)."""
    authorize_path: str = "/oauth/authorize"
    token_path: str | None = "/oauth/token"  # noqa: S105 - a route
    revoke_path: str | None = None
    revoke_method: str = "POST"
    revoke_fields: tuple[str, ...] = ("token",)
    """Body fields the revocation endpoint reads a token from (else the bearer token)."""
    revoke_status: int = 200
    revoke_unknown_status: int | None = None
    """The answer to a token it does not know; None: the success status (RFC 7009 §2.2)."""
    required_params: Mapping[str, str] = field(default_factory=dict)
    """Consent parameters the provider insists on (Atlassian: audience)."""
    mismatch_redirect: Mapping[str, str] | None = None
    """None: a redirect URI the app did not register gets an error page (most providers).
    Otherwise the browser goes to the app's registered one with these parameters and the
    ``state`` (GitHub's ``error=redirect_uri_mismatch``)."""
    style: TokenStyle = RFC6749
    access_tokens: set[str] = field(default_factory=set, repr=False)
    refresh_tokens: set[str] = field(default_factory=set, repr=False)
    token_prefix: str = "fake-access-"  # noqa: S105 - a prefix of fake tokens
    refresh_prefix: str = "fake-refresh-"
    expires_in: int | None = 3600
    _codes: dict[str, _Grant] = field(default_factory=dict, repr=False)
    _grant_of: dict[str, str] = field(default_factory=dict, repr=False)
    exchanged: int = 0
    refreshed: int = 0

    def __post_init__(self) -> None:
        self.server.add_route("GET", self.authorize_path, self._consent_page)
        self.server.add_route("POST", self.authorize_path + "/decision", self._decision)
        if self.token_path is not None:
            self.server.add_route("POST", self.token_path, self.token)
        if self.revoke_path is not None:
            self.server.add_route(self.revoke_method, self.revoke_path, self._revoke)

    # -- what tests do

    def revoke_all(self) -> None:
        """The user removed the app: every access and refresh token stops working."""
        self.access_tokens.clear()
        self.refresh_tokens.clear()
        self._grant_of.clear()

    def revoke(self, token: str) -> bool:
        """Forget the grant ``token`` belongs to (its access and refresh tokens)."""
        grant = self._grant_of.get(token)
        if grant is None:
            return False
        for other in [t for t, g in self._grant_of.items() if g == grant]:
            self.access_tokens.discard(other)
            self.refresh_tokens.discard(other)
            del self._grant_of[other]
        return True

    # -- consent

    def _redirect_allowed(self, uri: str) -> bool:
        return not self.redirect_uris or uri in self.redirect_uris

    def _consent_page(self, request: FakeRequest) -> FakeResponse:
        params = {name: values[0] for name, values in request.query.items()}
        if params.get("client_id") != self.client_id:
            return _page("Unknown app", "<p>This app does not exist.</p>", status=400)
        redirect_uri = params.get("redirect_uri", "")
        if not self._redirect_allowed(redirect_uri) and self.mismatch_redirect is not None:
            registered = sorted(self.redirect_uris)[0]
            return _redirect(registered, **self.mismatch_redirect, state=params.get("state"))
        if not self._redirect_allowed(redirect_uri):
            return _page(
                "redirect_uri did not match",
                "<p>The redirect URI is not one this app registered.</p>",
                status=400,
            )
        missing = [k for k, v in self.required_params.items() if params.get(k) != v]
        if missing:
            return _page(
                "Something went wrong",
                f"<p>Missing or wrong parameter: {html.escape(', '.join(missing))}.</p>",
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
            f'<form method="post" action="{html.escape(request.path)}/decision">{hidden}'
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
            self.client_id,
            redirect_uri,
            form.get("code_challenge"),
            form.get("scope", ""),
            time.monotonic(),
        )
        return _redirect(redirect_uri, code=code, state=state)

    # -- tokens

    def token(self, request: FakeRequest) -> FakeResponse:
        """The token endpoint (RFC 6749 §3.2)."""
        try:
            form = self.style.read(request)
        except (ValueError, UnicodeDecodeError):
            return self._error(request, "bad_request")
        client_id, client_secret = _client(request, form, self.style.client_auth)
        if (client_id, client_secret) != (self.client_id, self.client_secret):
            return self._error(request, "bad_client")
        grant = form.get("grant_type") or self.style.default_grant
        if grant == "authorization_code":
            return self._exchange(request, form)
        if grant == "refresh_token":
            return self._refresh(request, form)
        return self._error(request, "bad_grant_type")

    def _exchange(self, request: FakeRequest, form: dict[str, str]) -> FakeResponse:
        issued = self._codes.pop(form.get("code", ""), None)  # a code works once
        if issued is None or time.monotonic() - issued.issued > CODE_LIFETIME_SECONDS:
            return self._error(request, "bad_code")
        if form.get("redirect_uri") != issued.redirect_uri:
            return self._error(request, "bad_redirect")
        if issued.challenge is not None:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != issued.challenge:
                return self._error(request, "bad_verifier")
        self.exchanged += 1
        policy = self.style.refresh
        with_refresh = policy.issued and (
            policy.requires_scope is None
            or policy.requires_scope in issued.scope.replace(",", " ").split()
        )
        return self._tokens(request, secrets.token_hex(8), new_refresh=with_refresh)

    def _refresh(self, request: FakeRequest, form: dict[str, str]) -> FakeResponse:
        token = form.get("refresh_token", "")
        if token not in self.refresh_tokens:
            return self._error(request, "bad_refresh")
        policy = self.style.refresh
        if policy.rotates and not policy.old_survives:
            self.refresh_tokens.discard(token)  # rotation: the old one is dead
        self.refreshed += 1
        grant = self._grant_of.get(token) or secrets.token_hex(8)
        return self._tokens(request, grant, new_refresh=policy.rotates)

    def _tokens(self, request: FakeRequest, grant: str, *, new_refresh: bool) -> FakeResponse:
        access = f"{self.token_prefix}{secrets.token_hex(16)}"
        self.access_tokens.add(access)
        self._grant_of[access] = grant
        payload: dict[str, Any] = {"access_token": access, "token_type": "bearer"}
        if self.expires_in is not None:
            payload["expires_in"] = self.expires_in
        if new_refresh:
            refresh = f"{self.refresh_prefix}{secrets.token_hex(16)}"
            self.refresh_tokens.add(refresh)
            self._grant_of[refresh] = grant
            payload["refresh_token"] = refresh
        return self.style.answer(request, self.style.success(payload), 200)

    def _error(self, request: FakeRequest, situation: str) -> FakeResponse:
        failure = self.style.failures[situation]
        return self.style.answer(request, self.style.error(failure), failure.status)

    # -- revocation

    def _revoke(self, request: FakeRequest) -> FakeResponse:
        """RFC 7009-style: the token in the body (or the bearer token) and its grant go."""
        try:
            form = json_or_form_body(request)
        except (ValueError, UnicodeDecodeError):
            form = {}
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        given = [form[name] for name in self.revoke_fields if form.get(name)]
        token = given[0] if given else (value if scheme.lower() == "bearer" else "")
        status = self.revoke_status
        if not self.revoke(token) and self.revoke_unknown_status is not None:
            status = self.revoke_unknown_status
        if status == 204:
            return FakeResponse(status=204)
        return FakeResponse.json({}, status)


def _client(
    request: FakeRequest, form: dict[str, str], accepted: frozenset[str]
) -> tuple[str | None, str | None]:
    """Client authentication: HTTP Basic (RFC 6749 §2.3.1) or the body, as accepted."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic" and "basic" in accepted:
        try:
            decoded = base64.b64decode(value).decode()
        except ValueError:
            return None, None
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    if "body" in accepted:
        return form.get("client_id"), form.get("client_secret")
    return None, None


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
