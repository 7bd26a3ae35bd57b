"""What every dashboard route shares: the login check, CSRF-checked forms, flashes, errors as pages.

:class:`DashboardRoute` wraps each route so that its refusals become pages
(not the API's JSON): no session → the login page, a POST without the
session's CSRF token → 403, a use case's error → a page saying what went
wrong with the matching status. Every response gets the security headers.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final, Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.routing import Match

from ucf.service.context import UcfContext
from ucf.service.errors import ServiceError
from ucf.service.sessions import SessionRevocations
from ucf.stores.errors import StoreError
from ucf.web.dashboard.rendering import redirect, render, with_security_headers
from ucf.web.dashboard.security import (
    FLASH_COOKIE,
    SESSION_COOKIE,
    Keys,
    Session,
    keys_for,
    same_secret,
)
from ucf.web.front import route_path
from ucf.web.prefix import app_path, cookie_path, public_path
from ucf.web.state import WebState, web_state

log = logging.getLogger("ucf.web.dashboard")

FALLBACK_PAGE: Final = "/projects/{project}/{rest:path}"
"""The catch-all route: a mistyped address under a project gets a 404 page."""
PROJECT_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_PROJECT: Final = "default"
MAX_FORM_FIELDS: Final = 200
FLASH_SECONDS: Final = 120


class LoginRequired(Exception):
    """No valid session: the browser is sent to the login page."""


class CsrfRejected(Exception):
    """A POST without this session's CSRF token: refused with 403."""


class BadForm(ServiceError):
    status = 400
    code = "bad_form"


class PageNotFound(ServiceError):
    status = 404
    code = "not_found"


def keys(request: Request) -> Keys:
    return keys_for(web_state(request).api_token)


def context_of(request: Request) -> UcfContext:
    return web_state(request).context


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(
    response: Response, request: Request, name: str, value: str, *, max_age: int, path: str = "/"
) -> None:
    """``path``: the app's own; the cookie's is under the prefix ucf is served at."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=cookie_path(request.scope, path),
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def drop_cookie(response: Response, request: Request, name: str, *, path: str = "/") -> None:
    response.delete_cookie(
        name,
        path=cookie_path(request.scope, path),
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


# --------------------------------------------------------------------------- session and forms


def cookie_session(request: Request) -> Session | None:
    """The session the cookie claims, unchecked against logouts: only for how an error
    page looks, never for what a request may do."""
    return keys(request).read_session(
        request.cookies.get(SESSION_COOKIE), context_of(request).clock()
    )


async def current_session(request: Request) -> Session | None:
    """The cookie's session, unless it expired or was revoked at logout."""
    session = cookie_session(request)
    if session is None:
        return None
    context = context_of(request)
    if await SessionRevocations(context.store.leases).revoked(session.id, now=context.clock()):
        return None
    return session


async def require_session(request: Request) -> Session:
    session = await current_session(request)
    if session is None:
        raise LoginRequired
    return session


@dataclass(frozen=True)
class Form:
    """An ``application/x-www-form-urlencoded`` body: the last value of each name wins."""

    values: Mapping[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def fields(self, prefix: str) -> dict[str, str]:
        """``prefix.key`` fields as ``{key: value}``."""
        return {
            name[len(prefix) + 1 :]: value
            for name, value in self.values.items()
            if name.startswith(prefix + ".")
        }


async def read_form(request: Request) -> Form:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadForm("this page only accepts form submissions")
    try:
        pairs = parse_qsl(
            (await request.body()).decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise BadForm("the form could not be read") from None
    return Form(dict(pairs))


@dataclass(frozen=True)
class Posted:
    """A CSRF-checked form of a logged-in user."""

    session: Session
    form: Form


async def checked_form(
    request: Request, session: Annotated[Session, Depends(require_session)]
) -> Posted:
    try:
        form = await read_form(request)
    except BadForm:
        raise CsrfRejected from None  # no form, so no token either
    if not same_secret(form.get("csrf"), session.csrf):
        raise CsrfRejected
    return Posted(session, form)


# --------------------------------------------------------------------------- flashes

FlashKind = Literal["ok", "error", "info"]


@dataclass(frozen=True)
class Flash:
    kind: FlashKind
    text: str
    detail: str | None = None


def flash(
    response: Response, request: Request, kind: FlashKind, text: str, detail: str | None = None
) -> Response:
    """A one-time message for the page the browser is redirected to."""
    value = keys(request).flashes.sign(
        {"kind": kind, "text": text, "detail": detail, "exp": int(time.time()) + FLASH_SECONDS}
    )
    set_cookie(response, request, FLASH_COOKIE, value, max_age=FLASH_SECONDS)
    return response


def _pending_flash(request: Request) -> Flash | None:
    raw = request.cookies.get(FLASH_COOKIE)
    data = keys(request).flashes.unsign(raw) if raw else None
    if data is None or not isinstance(data.get("exp"), int) or data["exp"] < time.time():
        return None
    kind, message, detail = data.get("kind"), data.get("text"), data.get("detail")
    if kind not in ("ok", "error", "info") or not isinstance(message, str):
        return None
    return Flash(kind, message, detail if isinstance(detail, str) else None)


# --------------------------------------------------------------------------- pages


def project_or_404(project_id: str) -> str:
    if not PROJECT_ID.fullmatch(project_id):
        raise PageNotFound(f"'{project_id}' is not a project id")
    return project_id


@dataclass
class Page:
    """What the layout needs on every page of a logged-in user."""

    request: Request
    session: Session
    project: str
    section: str
    now: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.now = context_of(self.request).clock()

    @property
    def state(self) -> WebState:
        return web_state(self.request)

    @property
    def context(self) -> UcfContext:
        return self.state.context

    def render(self, template: str, values: Mapping[str, Any], *, status: int = 200) -> Response:
        pending = _pending_flash(self.request)
        response = render(
            self.request,
            template,
            {
                "session": self.session,
                "csrf": self.session.csrf,
                "project": self.project,
                "section": self.section,
                "now": self.now,
                "flash": pending,
                **values,
            },
            status=status,
        )
        if self.request.cookies.get(FLASH_COOKIE) is not None:
            drop_cookie(response, self.request, FLASH_COOKIE)
        return response


def error_page(
    request: Request,
    status: int,
    title: str,
    message: str,
    *,
    back: tuple[str, str] = ("/", "Back to the dashboard"),
) -> Response:
    """``back``: the way on, as (path, label); the dashboard's home unless the page knows
    where the user came from."""
    session = cookie_session(request)
    return render(
        request,
        "error.html",
        {
            "session": session,
            "csrf": session.csrf if session else "",
            "project": None,
            "section": None,
            "flash": None,
            "status": status,
            "title": title,
            "message": message,
            "back_path": back[0],
            "back_label": back[1],
        },
        status=status,
    )


def login_location(request: Request) -> str:
    """Back to the page after logging in. A form sent after the session ended starts over
    on the page it was sent from (its ``Referer``, when this site's): the user landed on
    the default project's catalogue, and had to find the project and the connector
    whose setup they were in again."""
    if request.method != "GET":
        sent_from = urlsplit(request.headers.get("referer", ""))
        public_url = web_state(request).public_url
        # Behind a proxy that sends its own Host (nginx's default), the browser's pages are
        # at the public URL's host: both are this site.
        ours = {request.url.netloc, urlsplit(public_url).netloc if public_url else ""} - {""}
        # The Referer is the browser's address, under the prefix; the routes have none.
        sent_path = app_path(request.scope, sent_from.path)
        if sent_from.netloc not in ours or sent_path is None or not sent_path.startswith("/"):
            return "/login"
        path, query = sent_path, sent_from.query
        while not _is_page(path):
            # A page drawn in answer to a form (a setup step refused at 422) has the form's
            # POST-only address: returning there was a 404. The page above it is the one.
            if path.rstrip("/") == "":
                return "/login"
            path, query = path.rstrip("/").rsplit("/", 1)[0] or "/", ""
        target = path + (f"?{query}" if query else "")
        return "/login?next=" + quote(target, safe="/")
    target = route_path(request.scope)  # the app's path: the login's redirect adds the prefix
    if request.url.query:
        target += "?" + request.url.query
    return "/login?next=" + quote(target, safe="/")


def _is_page(path: str) -> bool:
    """``path`` (the app's, as sent, percent-encoded) answers a GET with a dashboard page of its own:
    neither a POST-only form address nor the catch-all's 404."""
    scope = {"type": "http", "method": "GET", "path": unquote(path)}
    return any(route.matches(scope)[0] is Match.FULL for route in _PAGES.values())


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


_PAGES: Final[dict[str, APIRoute]] = {}
"""Every dashboard route a GET reaches, but the catch-all, by path: where a login may
return. (Each app made includes the router again: one entry a path, not one an app.)"""


class DashboardRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if self.methods and "GET" in self.methods and path != FALLBACK_PAGE:
            _PAGES[path] = self

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired:
                response = redirect(login_location(request))
            except CsrfRejected:
                response = error_page(
                    request,
                    403,
                    "This form has expired",
                    "The form was not sent from this session's page. Reload the page and try again.",
                )
            except ServiceError as error:
                message = (
                    error.message
                    if error.status < 500
                    else "The server cannot handle this right now; try again shortly."
                )
                response = error_page(request, error.status, _title(error.status), message)
            except RequestValidationError:
                response = error_page(
                    request, 400, "Bad request", "The address or form was not understood."
                )
            except StoreError as error:
                log.error("dashboard: store error answering %s: %s", request.url.path, error)
                response = error_page(
                    request,
                    503,
                    "The store is not answering",
                    "ucf could not read or write its store; try again shortly.",
                )
            return with_security_headers(under_prefix(request, response))

        return guarded


def under_prefix(request: Request, response: Response) -> Response:
    """``response`` with its redirect moved under the prefix ucf is served at.

    Routes redirect to the app's own paths (``/projects/…``, ``/login?next=…``); the
    browser must be sent to them under the prefix, or it leaves ucf. Done here, where
    every dashboard answer passes, so that no redirect can forget it.
    """
    location = response.headers.get("location")
    if location is not None:
        response.headers["location"] = public_path(request.scope, location)
    return response


def _title(status: int) -> str:
    return {
        400: "Bad request",
        403: "Not allowed",
        404: "Not found",
        409: "Not possible right now",
        413: "Too long",
        422: "Not valid",
    }.get(status, "Something went wrong")
