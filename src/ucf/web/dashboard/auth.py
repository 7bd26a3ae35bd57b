"""Logging in with the admin API token, logging out, and where ``/`` leads.

The login form is protected against cross-site submission by a double-submit
nonce (a SameSite=Strict cookie and the same value in the form), so nobody
can log a browser into their own session either.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, Response

from ucf.service.sessions import SessionRevocations
from ucf.web.dashboard.rendering import redirect, render
from ucf.web.dashboard.routing import (
    DEFAULT_PROJECT,
    DashboardRoute,
    Posted,
    checked_form,
    context_of,
    current_session,
    drop_cookie,
    keys,
    project_or_404,
    read_form,
    require_session,
    set_cookie,
)
from ucf.web.dashboard.security import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_LIFETIME,
    Session,
    new_login_nonce,
    same_secret,
    token_matches,
)
from ucf.web.state import web_state
from ucf.web.throttle import TooManyAttempts

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

LOGIN_NONCE_SECONDS: Final = 3600


def safe_next(target: str | None) -> str:
    """Only a path of this site: never another host (``//evil``, ``/\\evil``, ``https:``)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ch in target for ch in "\r\n\t\\"):
        return "/"
    return target


def _login_page(request: Request, target: str, *, error: str | None, status: int) -> Response:
    nonce = new_login_nonce()
    response = render(
        request,
        "login.html",
        {
            "session": None,
            "csrf": "",
            "project": None,
            "section": None,
            "flash": None,
            "nonce": nonce,
            "next": target,
            "error": error,
        },
        status=status,
    )
    set_cookie(response, request, LOGIN_COOKIE, nonce, max_age=LOGIN_NONCE_SECONDS, path="/login")
    return response


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    target = safe_next(next)
    if await current_session(request) is not None:
        return redirect(target)
    return _login_page(request, target, error=None, status=200)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    target = safe_next(form.get("next"))
    if not same_secret(form.get("nonce"), request.cookies.get(LOGIN_COOKIE, "")):
        return _login_page(
            request,
            target,
            error="The login form expired; paste the token again.",
            status=403,
        )
    state = web_state(request)
    host = request.client.host if request.client is not None else None
    try:
        state.auth_throttle.check(host, "token")
    except TooManyAttempts as refused:
        page = _login_page(request, target, error=refused.message, status=429)
        page.headers["Retry-After"] = str(refused.retry_after_seconds)
        return page
    if not token_matches(form.get("token").strip(), state.api_token):
        state.auth_throttle.failed(host)
        return _login_page(
            request,
            target,
            error="That is not this server's admin API token.",
            status=401,
        )
    state.auth_throttle.succeeded(host)
    value, _ = keys(request).new_session(context_of(request).clock())
    response = redirect(target)
    set_cookie(
        response,
        request,
        SESSION_COOKIE,
        value,
        max_age=int(SESSION_LIFETIME.total_seconds()),
    )
    drop_cookie(response, request, LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, posted: Annotated[Posted, Depends(checked_form)]) -> Response:
    """Revoked in the store, not only dropped here: a copy of the cookie dies too."""
    context = context_of(request)
    session = posted.session
    await SessionRevocations(context.store.leases).revoke(
        session.id, expires=datetime.fromtimestamp(session.expires, UTC), now=context.clock()
    )
    response = redirect("/login")
    drop_cookie(response, request, SESSION_COOKIE)
    return response


@router.get("/")
async def home(session: Annotated[Session, Depends(require_session)]) -> Response:
    return redirect(f"/projects/{DEFAULT_PROJECT}/connectors")


@router.get("/projects")
async def switch_project(
    session: Annotated[Session, Depends(require_session)], project: str = ""
) -> Response:
    """The header's project switcher (a GET form): to that project's catalogue."""
    chosen = project_or_404(project.strip() or DEFAULT_PROJECT)
    return redirect(f"/projects/{chosen}/connectors")
