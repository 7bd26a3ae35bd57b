"""Who may call what: the admin token on the management API, and the operator-only routes.

- **Token first.** :class:`TokenFirstRoute` checks ``Authorization: Bearer``
  before FastAPI reads or parses a body, so a stranger's 1 MiB of JSON is
  neither parsed nor answered with a validation error that tells them about
  the route: they get a 401 and nothing else.
- **Throttled.** Every wrong token counts against the client's address
  (:class:`~ucf.web.throttle.FailedAuthThrottle`); a request without any token
  is refused without counting (nobody guessed anything).
- **The editor's routes** (``/api/connectors/validate``, ``/preview``,
  ``/try``): the admin token, or the dashboard page's own script — a session
  and that session's CSRF token in ``X-CSRF-Token``, which only a script of the
  same origin that read the page can send (the session cookie is
  ``SameSite=Strict``). Checked before the body is read, like the token.
- **One parse.** Both route classes hand the route a
  :class:`~ucf.web.bodies.NotingRequest`, whose JSON parse also notes the keys
  a body gives twice (a descriptor's problem).
- **Operator routes** (``/metrics``, ``/docs``, ``/openapi.json`` when they are
  private): the admin token, or a dashboard session, so a logged-in operator can
  open ``/docs`` in the browser and Prometheus can scrape with a bearer token.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from ucf.service.errors import ServiceError
from ucf.web.bodies import NotingRequest
from ucf.web.dashboard.routing import current_session
from ucf.web.dashboard.security import CSRF_HEADER, same_secret, token_matches
from ucf.web.state import web_state

__all__ = [
    "TokenFirstRoute",
    "TokenOrPageRoute",
    "Unauthorized",
    "check_api_token",
    "introspection_access",
    "require_operator",
]


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


def _client(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip()


def check_api_token(request: Request) -> None:
    """The constant-time check of the dashboard's login, behind the same throttle."""
    state = web_state(request)
    host = _client(request)
    state.auth_throttle.check(host, "API token")
    given = _bearer(request)
    if not given or not token_matches(given, state.api_token):
        if given:
            state.auth_throttle.failed(host)
        raise Unauthorized("a valid API token is required (Authorization: Bearer <token>)")
    state.auth_throttle.succeeded(host)


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class TokenFirstRoute(APIRoute):
    """An API route whose token is checked before anything reads the request body."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            check_api_token(request)
            return await handler(NotingRequest(request.scope, request.receive))

        return checked


class TokenOrPageRoute(APIRoute):
    """An API route the dashboard's own pages may call too: the admin token, or a
    session with its CSRF token in a header; checked before the body is read."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            await check_token_or_page(request)
            return await handler(NotingRequest(request.scope, request.receive))

        return checked


async def check_token_or_page(request: Request) -> None:
    if _bearer(request) is None:
        session = await current_session(request)
        shown = request.headers.get(CSRF_HEADER, "")
        if session is not None and shown and same_secret(shown, session.csrf):
            return
    check_api_token(request)


async def require_operator(request: Request) -> None:
    """A dashboard session, else the admin token (401 otherwise)."""
    if _bearer(request) is None and await current_session(request) is not None:
        return
    check_api_token(request)


async def introspection_access(request: Request) -> None:
    """``/metrics``, ``/docs``, ``/openapi.json``: open when the server says so
    (``UCF_PUBLIC_INTROSPECTION``; by default only when bound to loopback), else the
    operator's."""
    if web_state(request).public_introspection:
        return
    await require_operator(request)
