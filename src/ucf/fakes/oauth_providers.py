"""The providers' authorization servers: a :class:`~ucf.fakes.oauth.TokenStyle` and a
mount function per provider, each with the provider's documented paths, response
shapes, errors and refresh behaviour.

Each ``mount_*`` function puts an :class:`~ucf.fakes.oauth.AuthorizationServer`
on a fake's server (the provider's API fake, so the tokens the consent issues are
the ones its API accepts: pass that fake's token sets). The provider's several
hosts (``login.microsoftonline.com`` and ``graph.microsoft.com``; ``linear.app``
and ``api.linear.app``) share the fake's one origin.

Where a provider's documentation is silent the docstring says so and the fake
follows RFC 6749; nothing here is invented beyond that.
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from ucf.fakes.kit import FakeRequest, FakeResponse, FakeServer
from ucf.fakes.oauth import (
    NO_REFRESH,
    AuthorizationServer,
    Failure,
    RefreshPolicy,
    TokenStyle,
    json_answer,
    json_body,
    json_or_form_body,
    rfc6749_error,
)

__all__ = [
    "ASANA",
    "ATLASSIAN",
    "GITHUB",
    "LINEAR",
    "MICROSOFT",
    "NOTION",
    "mount_asana",
    "mount_atlassian",
    "mount_github",
    "mount_linear",
    "mount_microsoft",
    "mount_notion",
]


# --------------------------------------------------------------------------- Microsoft

MICROSOFT_DOCS: Final = (
    "https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow"
)


def _microsoft_tokens(payload: dict[str, Any]) -> dict[str, Any]:
    """Success (the doc's "Successful response"): token_type Bearer, scope, expires_in,
    ext_expires_in, access_token, refresh_token (only with offline_access)."""
    return {
        "token_type": "Bearer",
        "scope": "Mail.Read User.Read",
        "expires_in": payload.get("expires_in", 3599),
        "ext_expires_in": payload.get("expires_in", 3599),
        **{k: v for k, v in payload.items() if k in ("access_token", "refresh_token")},
    }


def _microsoft_error(failure: Failure) -> dict[str, Any]:
    """The doc's "Error response": error, error_description (starting with the AADSTS
    code and ending with trace, correlation and timestamp), error_codes, timestamp,
    trace_id, correlation_id."""
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    number = int(failure.description.split(":", 1)[0].removeprefix("AADSTS") or 0)
    return {
        "error": failure.code,
        "error_description": (
            f"{failure.description} Trace ID: {trace} Correlation ID: {correlation} "
            f"Timestamp: {stamp}"
        ),
        "error_codes": [number],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
    }


MICROSOFT: Final = TokenStyle(
    success=_microsoft_tokens,
    error=_microsoft_error,
    failures={
        "bad_request": Failure(
            "invalid_request",
            "AADSTS900144: The request body must contain the following parameter: 'grant_type'.",
        ),
        "bad_client": Failure(
            "invalid_client", "AADSTS7000215: Invalid client secret provided.", status=401
        ),
        "bad_code": Failure(
            "invalid_grant",
            "AADSTS70008: The provided authorization code or refresh token has expired due "
            "to inactivity. Send a new interactive authorization request for this user and "
            "resource.",
        ),
        "bad_redirect": Failure(
            "invalid_grant",
            "AADSTS70000: The request was denied because one or more scopes requested are "
            "unauthorized or expired.",
        ),
        "bad_verifier": Failure(
            "invalid_grant",
            "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in "
            "the authorization request.",
        ),
        "bad_refresh": Failure(
            "invalid_grant",
            "AADSTS50173: The provided grant has expired due to it being revoked, a fresh "
            "auth token is needed.",
        ),
        "bad_grant_type": Failure(
            "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type."
        ),
    },
    read=json_or_form_body,
    # A refresh returns a new refresh token; the old one is not revoked by the
    # refresh but should be discarded ("Refresh the access token" section).
    refresh=RefreshPolicy(requires_scope="offline_access", rotates=True, old_survives=True),
    client_auth=frozenset({"body"}),
)
"""Microsoft identity platform v2 (:data:`MICROSOFT_DOCS`). Which AADSTS code answers
a redirect URI that differs at the token endpoint is not documented; the fake uses
AADSTS70000's ``invalid_grant``."""


def mount_microsoft(
    server: FakeServer,
    client_id: str,
    client_secret: str,
    *,
    token_route: bool = True,
    refresh_tokens: set[str] | None = None,
) -> AuthorizationServer:
    """``/{tenant}/oauth2/v2.0/authorize`` and ``…/token`` (tenant in the path: ``common``,
    ``organizations``, a tenant id or domain). ``token_route`` False: the host fake (Graph,
    which also issues app-only tokens) routes the token endpoint to :meth:`token`."""
    return AuthorizationServer(
        server,
        client_id,
        client_secret,
        authorize_path="/{tenant}/oauth2/v2.0/authorize",
        token_path="/{tenant}/oauth2/v2.0/token" if token_route else None,
        style=MICROSOFT,
        refresh_tokens=refresh_tokens if refresh_tokens is not None else set(),
        token_prefix="eyJ0eXAiOiJKV1QifQ.fake-consent-",  # noqa: S106 - a prefix
        refresh_prefix="0.AAAA-fake-consent-",
        expires_in=3599,
    )


# --------------------------------------------------------------------------- Atlassian

ATLASSIAN_DOCS: Final = "https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/"
ATLASSIAN_REFRESH_DOCS: Final = (
    "https://developer.atlassian.com/cloud/oauth/getting-started/refresh-tokens"
)


def _atlassian_tokens(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        **payload,
        "token_type": "Bearer",
        "scope": "read:jira-work read:jira-user offline_access",
    }


ATLASSIAN: Final = TokenStyle(
    success=_atlassian_tokens,
    failures={
        "bad_request": Failure("invalid_request", "Missing or invalid parameters"),
        "bad_client": Failure("access_denied", "Unauthorized", status=403),
        "bad_code": Failure("invalid_grant", "Invalid authorization code", status=403),
        "bad_redirect": Failure("invalid_grant", "Invalid authorization code", status=403),
        "bad_verifier": Failure("invalid_grant", "Invalid authorization code", status=403),
        "bad_refresh": Failure("invalid_grant", "Unknown or invalid refresh token.", status=403),
        "bad_grant_type": Failure("unsupported_grant_type", "Unsupported grant type"),
    },
    read=json_or_form_body,
    refresh=RefreshPolicy(requires_scope="offline_access", rotates=True),
    client_auth=frozenset({"body"}),
)
"""Atlassian OAuth 2.0 (3LO) (:data:`ATLASSIAN_DOCS`, :data:`ATLASSIAN_REFRESH_DOCS`):
``POST https://auth.atlassian.com/oauth/token`` with a JSON body (the docs show JSON
only; the fake reads a form too), rotating refresh tokens (only with
``offline_access``), ``invalid_grant`` "Unknown or invalid refresh token." with HTTP
403. The docs do not show the answer to a bad authorization code or client; the fake
answers 403 ``invalid_grant`` / ``access_denied`` like the refresh error. Atlassian
documents no revocation endpoint for 3LO apps (the user removes the app at
id.atlassian.com): use :meth:`AuthorizationServer.revoke_all`."""


def mount_atlassian(
    server: FakeServer,
    client_id: str,
    client_secret: str,
    *,
    sites: Sequence[Mapping[str, Any]],
    access_tokens: set[str] | None = None,
    refresh_tokens: set[str] | None = None,
) -> AuthorizationServer:
    """``auth.atlassian.com/authorize`` (``audience=api.atlassian.com`` and
    ``prompt=consent`` required), ``/oauth/token``, and
    ``api.atlassian.com/oauth/token/accessible-resources``: the ``sites`` (a list the
    caller may change: ``id``, ``url``, ``name``, ``scopes``, ``avatarUrl``)."""
    auth = AuthorizationServer(
        server,
        client_id,
        client_secret,
        authorize_path="/authorize",
        token_path="/oauth/token",  # noqa: S106 - a route
        required_params={"audience": "api.atlassian.com", "prompt": "consent"},
        style=ATLASSIAN,
        access_tokens=access_tokens if access_tokens is not None else set(),
        refresh_tokens=refresh_tokens if refresh_tokens is not None else set(),
        token_prefix="eyJraWQiOiJmYWtlIn0.3lo-",  # noqa: S106 - a prefix
    )

    def resources(request: FakeRequest) -> FakeResponse:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if token not in auth.access_tokens:
            return FakeResponse.json({"code": 401, "message": "Unauthorized"}, 401)
        return FakeResponse.json([dict(site) for site in sites])

    server.add_route("GET", "/oauth/token/accessible-resources", resources)
    return auth


# --------------------------------------------------------------------------- Notion

NOTION_DOCS: Final = "https://developers.notion.com/docs/authorization"
NOTION_TOKEN_DOCS: Final = "https://developers.notion.com/reference/create-a-token"  # noqa: S105
NOTION_WORKSPACE_ID: Final = "b2b1c5f3-3ad6-4c3e-9a7e-1f0a2d6c9e11"
NOTION_BOT_ID: Final = "7c2b8e0e-55a5-4e3b-9a34-0f7e6d1b2c3d"


def notion_tokens(workspace: Mapping[str, str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The create-a-token response for ``workspace`` (``id``, ``name``, ``bot_id``); no
    ``expires_in`` (the reference does not list one)."""

    def success(payload: dict[str, Any]) -> dict[str, Any]:
        refresh = payload.get("refresh_token")
        return {
            "access_token": payload["access_token"],
            "token_type": "bearer",
            **({"refresh_token": refresh} if refresh else {}),
            "bot_id": workspace["bot_id"],
            "workspace_name": workspace["name"],
            "workspace_icon": "https://www.notion.so/images/page-cover/webb1.jpg",
            "workspace_id": workspace["id"],
            "owner": {
                "type": "user",
                "user": {
                    "object": "user",
                    "id": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
                    "name": "Ada Lovelace",
                    "avatar_url": None,
                    "type": "person",
                    "person": {"email": "ada@acme.example"},
                },
            },
            "duplicated_template_id": None,
            "request_id": str(uuid.uuid4()),
        }

    return success


def _notion_error(failure: Failure) -> dict[str, Any]:
    """Notion's error object (https://developers.notion.com/reference/status-codes)."""
    return {
        "object": "error",
        "status": failure.status,
        "code": failure.code,
        "message": failure.description,
        "request_id": str(uuid.uuid4()),
    }


NOTION: Final = TokenStyle(
    success=notion_tokens({"id": NOTION_WORKSPACE_ID, "name": "Acme Ops", "bot_id": NOTION_BOT_ID}),
    error=_notion_error,
    failures={
        "bad_request": Failure("invalid_request", "body failed validation."),
        "bad_client": Failure("invalid_client", "Invalid client.", status=401),
        "bad_code": Failure("invalid_grant", "Invalid code."),
        "bad_redirect": Failure("invalid_grant", "Invalid redirect_uri."),
        "bad_verifier": Failure("invalid_grant", "Invalid code."),
        "bad_refresh": Failure("invalid_grant", "Invalid refresh token."),
        "bad_grant_type": Failure("invalid_request", "Unsupported grant_type."),
    },
    read=json_body,
    refresh=RefreshPolicy(rotates=True),
    client_auth=frozenset({"basic"}),
)
"""Notion public integrations (:data:`NOTION_DOCS`, :data:`NOTION_TOKEN_DOCS`, and
https://developers.notion.com/reference/refresh-a-token): HTTP Basic client auth, a JSON
body, and — unlike a few years ago — a ``refresh_token`` in the answer; a refresh
"generates a new access token and new refresh token" (rotation). The reference lists no
``expires_in``, so ucf cannot know when the access token expires and refreshes on a 401.
Errors are Notion's error object (``object: error``, ``status``, ``code``, ``message``);
the exact ``message`` texts of the OAuth errors are not documented. Revocation is
``POST /v1/oauth/revoke`` (Basic, ``{"token"}``)."""


def mount_notion(
    server: FakeServer,
    client_id: str,
    client_secret: str,
    *,
    access_tokens: set[str] | None = None,
    workspace: Mapping[str, str] | None = None,
) -> AuthorizationServer:
    """``api.notion.com/v1/oauth/authorize`` (``owner=user``), ``/v1/oauth/token``,
    ``/v1/oauth/revoke``; ``workspace`` (``id``, ``name``, ``bot_id``) is what the
    token response names."""
    style = NOTION if workspace is None else replace(NOTION, success=notion_tokens(workspace))
    return AuthorizationServer(
        server,
        client_id,
        client_secret,
        authorize_path="/v1/oauth/authorize",
        token_path="/v1/oauth/token",  # noqa: S106 - a route
        revoke_path="/v1/oauth/revoke",
        required_params={"owner": "user"},
        style=style,
        access_tokens=access_tokens if access_tokens is not None else set(),
        token_prefix="ntn_fake_oauth_",  # noqa: S106 - a prefix
        refresh_prefix="nrt_fake_oauth_",
        expires_in=None,
    )


# --------------------------------------------------------------------------- Linear

LINEAR_DOCS: Final = "https://linear.app/developers/oauth-2-0-authentication"


def _linear_tokens(payload: dict[str, Any]) -> dict[str, Any]:
    """``scope`` space-separated (apps created before December 2023 get a list)."""
    return {**payload, "token_type": "Bearer", "scope": "read"}


LINEAR: Final = TokenStyle(
    success=_linear_tokens,
    refresh=RefreshPolicy(rotates=True),
)
"""Linear (:data:`LINEAR_DOCS`): consent at ``linear.app/oauth/authorize`` (comma-separated
scopes, PKCE), ``POST https://api.linear.app/oauth/token`` with a form and the client in the
body or HTTP Basic; since April 1, 2026 every app gets 24-hour access tokens (``expires_in``
86399) with a refresh token, and a refresh returns "a new valid access token and a new
refresh token" (the docs do not say whether the old refresh token keeps working: the fake
retires it). Revocation: ``POST /oauth/revoke`` with the access token as bearer or an
``access_token`` / ``refresh_token`` form field; 200, or 400 for a token it cannot revoke.
The docs show errors as ``{"error", "error_description"}`` without listing the codes; the
fake uses RFC 6749's with HTTP 400 (401 for the client)."""


def mount_linear(
    server: FakeServer,
    client_id: str,
    client_secret: str,
    *,
    access_tokens: set[str] | None = None,
) -> AuthorizationServer:
    return AuthorizationServer(
        server,
        client_id,
        client_secret,
        authorize_path="/oauth/authorize",
        token_path="/oauth/token",  # noqa: S106 - a route
        revoke_path="/oauth/revoke",
        revoke_fields=("access_token", "refresh_token"),
        revoke_unknown_status=400,
        style=LINEAR,
        access_tokens=access_tokens if access_tokens is not None else set(),
        token_prefix="lin_oauth_fake",  # noqa: S106 - a prefix
        refresh_prefix="lin_refresh_fake",
        expires_in=86399,
    )


# --------------------------------------------------------------------------- Asana

ASANA_DOCS: Final = "https://developers.asana.com/docs/oauth"


def asana_style(user: Mapping[str, Any]) -> TokenStyle:
    """Asana's answers for ``user`` (``{"id", "gid", "name", "email"}``, the doc's
    ``data``), on the exchange and on each refresh."""

    def success(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "token_type": "bearer", "data": dict(user)}

    return TokenStyle(
        success=success,
        failures={
            "bad_request": Failure("invalid_request", "The request is missing a parameter."),
            "bad_client": Failure(
                "invalid_client", "The client could not be authenticated.", status=401
            ),
            "bad_code": Failure("invalid_grant", "The code is invalid or has expired."),
            "bad_redirect": Failure("invalid_grant", "The redirect_uri does not match."),
            "bad_verifier": Failure("invalid_grant", "The code_verifier does not match."),
            "bad_refresh": Failure("invalid_grant", "The refresh token is invalid or revoked."),
            "bad_grant_type": Failure("unsupported_grant_type", "Unsupported grant_type."),
        },
        refresh=RefreshPolicy(rotates=False),
    )


ASANA: Final = asana_style({"id": 1, "gid": "1", "name": "Example", "email": "a@example.com"})
"""Asana (:data:`ASANA_DOCS`): ``app.asana.com/-/oauth_authorize`` (PKCE S256),
``/-/oauth_token`` with a form; the answer carries ``data`` {id, gid, name, email}; a
refresh answers the same without a new ``refresh_token`` (the refresh token stays);
access tokens last an hour. The docs name the RFC 6749 error codes but show no bodies;
the fake answers ``{"error", "error_description"}``. Revocation: ``POST /-/oauth_revoke``
with the client and the refresh token."""


def mount_asana(
    server: FakeServer,
    client_id: str,
    client_secret: str,
    *,
    user: Mapping[str, Any],
    access_tokens: set[str] | None = None,
    refresh_tokens: set[str] | None = None,
    token_route: bool = True,
) -> AuthorizationServer:
    """``token_route`` False: the Asana API fake routes ``/-/oauth_token`` itself."""
    return AuthorizationServer(
        server,
        client_id,
        client_secret,
        authorize_path="/-/oauth_authorize",
        token_path="/-/oauth_token" if token_route else None,
        revoke_path="/-/oauth_revoke",
        style=asana_style(user),
        access_tokens=access_tokens if access_tokens is not None else set(),
        refresh_tokens=refresh_tokens if refresh_tokens is not None else set(),
        token_prefix=f"2/{user['gid']}/{client_id}:fakeconsent",
        refresh_prefix=f"2/{user['gid']}/{client_id}:fakerefresh",
        expires_in=3600,
    )


# --------------------------------------------------------------------------- GitHub

GITHUB_DOCS: Final = (
    "https://docs.github.com/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps"
)
GITHUB_ERRORS_DOCS: Final = (
    "https://docs.github.com/apps/oauth-apps/maintaining-oauth-apps/"
    "troubleshooting-oauth-app-access-token-request-errors"
)


def _github_answer(request: FakeRequest, payload: Mapping[str, Any], status: int) -> FakeResponse:
    """JSON with ``Accept: application/json``, a form otherwise (the doc's "By default,
    the response takes the following form")."""
    if "application/json" in request.headers.get("accept", ""):
        return json_answer(request, payload, status)
    body = urllib.parse.urlencode({k: str(v) for k, v in payload.items()})
    return FakeResponse(
        status=status,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        body=body.encode(),
    )


def _github_tokens(payload: dict[str, Any]) -> dict[str, Any]:
    return {"access_token": payload["access_token"], "scope": "repo", "token_type": "bearer"}


def _github_error(failure: Failure) -> dict[str, Any]:
    anchor = failure.code.replace("_", "-")
    return {
        **rfc6749_error(failure),
        "error_uri": f"{GITHUB_ERRORS_DOCS.removeprefix('https://docs.github.com')}#{anchor}",
    }


GITHUB: Final = TokenStyle(
    success=_github_tokens,
    error=_github_error,
    failures={
        "bad_request": Failure(
            "bad_verification_code", "The code passed is incorrect or expired.", 200
        ),
        "bad_client": Failure(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
            200,
        ),
        "bad_code": Failure(
            "bad_verification_code", "The code passed is incorrect or expired.", 200
        ),
        "bad_redirect": Failure(
            "redirect_uri_mismatch",
            "The redirect_uri MUST match the registered callback URL for this application.",
            200,
        ),
        "bad_verifier": Failure(
            "bad_verification_code", "The code passed is incorrect or expired.", 200
        ),
        "bad_refresh": Failure(
            "bad_refresh_token", "The refresh token passed is incorrect or expired.", 200
        ),
        "bad_grant_type": Failure(
            "unsupported_grant_type", "The grant type is not supported.", 200
        ),
    },
    answer=_github_answer,
    refresh=NO_REFRESH,
    client_auth=frozenset({"body"}),
    default_grant="authorization_code",  # the documented parameters have no grant_type
)
"""GitHub OAuth apps (:data:`GITHUB_DOCS`, :data:`GITHUB_ERRORS_DOCS`): consent at
``github.com/login/oauth/authorize``, ``POST github.com/login/oauth/access_token``
answering a form unless ``Accept: application/json``, errors with HTTP 200
(``bad_verification_code``, ``incorrect_client_credentials``, ``redirect_uri_mismatch``).
OAuth app tokens do not expire and come without a refresh token (expiring user tokens
with ``refresh_token`` are a GitHub App option). The docs do not say which error a PKCE
verifier mismatch gives (the fake says ``bad_verification_code``) nor what a malformed
request gets. A redirect URI the app did not register sends the browser to the registered
callback with ``error=redirect_uri_mismatch``
(https://docs.github.com/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-authorization-request-errors). Revocation: ``DELETE /applications/{client_id}/grant`` with
``{"access_token"}`` (the REST API's "Delete an app authorization"; 204)."""


def mount_github(
    server: FakeServer,
    client_id: str,
    client_secret: str,
    *,
    access_tokens: set[str] | None = None,
) -> AuthorizationServer:
    return AuthorizationServer(
        server,
        client_id,
        client_secret,
        authorize_path="/login/oauth/authorize",
        token_path="/login/oauth/access_token",  # noqa: S106 - a route
        revoke_path=f"/applications/{client_id}/grant",
        revoke_method="DELETE",
        revoke_fields=("access_token",),
        revoke_status=204,
        mismatch_redirect={
            "error": "redirect_uri_mismatch",
            "error_description": (
                "The redirect_uri MUST match the registered callback URL for this application."
            ),
            "error_uri": "/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/"
            "#redirect-uri-mismatch",
        },
        style=GITHUB,
        access_tokens=access_tokens if access_tokens is not None else set(),
        token_prefix="gho_fake",  # noqa: S106 - a prefix
        expires_in=None,
    )
