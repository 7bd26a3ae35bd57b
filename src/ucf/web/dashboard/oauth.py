"""The dashboard's side of OAuth consent: the operators' OAuth apps page, "Connect with …"
in the setup flow, "Reconnect" on an instance, and the public callback.

The consent itself is :class:`ucf.service.oauth.OAuthFlows`. Two browser
details shape this module:

- The flow is bound to the browser that started it by a ``SameSite=Lax``
  cookie scoped to the callback path (the session cookie is ``Strict`` and is
  not sent on the provider's redirect back); the callback refuses a state
  whose binding does not match.
- Pages move on with a ``<meta http-equiv="refresh">`` page instead of a
  redirect: the dashboard's CSP (``form-action 'self'``) forbids a form
  submission from ending at the provider, and a navigation started by our own
  page brings the ``Strict`` session cookie back to the setup flow.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, Response

from ucf.service.errors import ValidationFailed
from ucf.service.oauth import CALLBACK_PATH, FlowPlace, OAuthFlows, OAuthRefused, ReturnTo
from ucf.web.dashboard.rendering import redirect, render
from ucf.web.dashboard.routing import (
    DashboardRoute,
    Page,
    Posted,
    checked_form,
    drop_cookie,
    error_page,
    flash,
    is_https,
    project_or_404,
    require_session,
)
from ucf.web.dashboard.security import Session
from ucf.web.dashboard.setup import Flow, load_draft, save_draft, setup_path, to_step
from ucf.web.prefix import cookie_path, public_path
from ucf.web.state import web_state

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

Sessioned = Annotated[Session, Depends(require_session)]
Checked = Annotated[Posted, Depends(checked_form)]

FORM_LABELS: Final = {"clientId": "the client id", "clientSecret": "the client secret"}
BINDING_COOKIE: Final = "ucf_oauth"
BINDING_SECONDS: Final = 600


def _redirect_uri(request: Request) -> str:
    return web_state(request).public_base(request) + CALLBACK_PATH


def _onward(request: Request, title: str, message: str, target: str, link: str) -> Response:
    return render(
        request,
        "onward.html",
        {
            "session": None,
            "csrf": "",
            "project": None,
            "section": None,
            "flash": None,
            "title": title,
            "message": message,
            # The provider's consent page as it is; a page of ours under the prefix.
            "target": public_path(request.scope, target),
            "link": link,
        },
    )


async def _start(
    request: Request,
    project: str,
    connector_id: str,
    config: dict[str, str],
    return_to: ReturnTo,
) -> Response:
    """A consent bound to this browser, then on to the provider's page."""
    context = web_state(request).context
    connector = await context.connectors.get(connector_id)
    binding = secrets.token_urlsafe(32)
    url = await OAuthFlows.of(context).start(
        project,
        connector_id,
        config=config,
        redirect_uri=_redirect_uri(request),
        now=context.clock(),
        session=binding,
        return_to=return_to,
    )
    name = connector.descriptor.name
    response = _onward(
        request,
        f"Opening {name}…",
        f"Sign in to {name} and allow access; you come back here afterwards.",
        url,
        f"Continue to {name}",
    )
    response.set_cookie(
        BINDING_COOKIE,
        binding,
        max_age=BINDING_SECONDS,
        path=cookie_path(request.scope, CALLBACK_PATH),
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )
    return response


# --------------------------------------------------------------------------- setup flow


@router.post("/projects/{project}/connectors/{connector_id}/connect/oauth")
async def connect_with(
    request: Request, posted: Checked, project: str, connector_id: str
) -> Response:
    project_or_404(project)
    draft = load_draft(request, posted.session, project, connector_id)
    context = web_state(request).context
    connector = await context.connectors.get(connector_id)
    # The settings come first in a consent's setup flow: the consent uses those.
    config = draft.config or {
        f.key: f.default for f in connector.descriptor.setup_config_fields() if f.default
    }
    return await _start(request, project, connector_id, dict(config), "setup")


@router.get("/projects/{project}/connectors/{connector_id}/connect/oauth-return")
async def consent_returned(
    request: Request, session: Sessioned, project: str, connector_id: str, ticket: str = ""
) -> Response:
    """The tokens of a completed consent, moved from their one-time ticket into the draft."""
    project_or_404(project)
    context = web_state(request).context
    tokens, found = await OAuthFlows.of(context).redeem(
        ticket, project_id=project, connector_id=connector_id, now=context.clock()
    )
    connector = await context.connectors.get(connector_id)
    provided = await context.instances.provided_credentials(connector.descriptor)
    flow = Flow.of(connector.descriptor, provided)
    draft = load_draft(request, session, project, connector_id)
    draft.credentials = {**draft.credentials, **tokens}
    if found:  # settings read from the provider after the consent (Atlassian's cloudId)
        draft.config = {**(draft.config or {}), **found}
    draft.check = None  # new tokens: the last check says nothing about them
    response = to_step(project, connector_id, flow.after("credentials"))
    flash(response, request, "ok", f"Connected with {connector.descriptor.name}.")
    return save_draft(response, request, session, project, connector_id, draft)


# --------------------------------------------------------------------------- reconnect


@router.post("/projects/{project}/instances/{connector_id}/reconnect")
async def reconnect(request: Request, posted: Checked, project: str, connector_id: str) -> Response:
    """The same consent for an existing instance: new tokens, same checkpoint and history."""
    project_or_404(project)
    context = web_state(request).context
    record = await context.instances.record(project, connector_id)
    config = {key: str(value) for key, value in record.config.items()}
    return await _start(request, project, connector_id, config, "instance")


# --------------------------------------------------------------------------- operators' apps


@router.get("/projects/{project}/oauth-apps")
async def oauth_apps(request: Request, session: Sessioned, project: str) -> Response:
    page = Page(request, session, project_or_404(project), "catalogue")
    context = page.context
    apps = []
    for connector in await context.connectors.list():
        if connector.descriptor.consent() is None:
            continue
        client = await context.instances.oauth_clients.get(connector.id, now=context.clock())
        apps.append(
            {
                "id": connector.id,
                "name": connector.descriptor.name,
                "icon": connector.descriptor.icon,
                "docs_url": connector.descriptor.docs_url,
                "client_id": client.client_id if client else None,
            }
        )
    return page.render("oauth_apps.html", {"apps": apps, "redirect_uri": _redirect_uri(request)})


@router.get("/oauth-apps")
async def oauth_apps_default(session: Sessioned) -> Response:
    return redirect("/projects/default/oauth-apps")


@router.post("/projects/{project}/oauth-apps/{connector_id}")
async def register_app(
    request: Request, posted: Checked, project: str, connector_id: str
) -> Response:
    project_or_404(project)
    context = web_state(request).context
    connector = await context.connectors.get(connector_id)
    response = redirect(f"/projects/{project}/oauth-apps")
    try:
        await context.instances.oauth_clients.register(
            connector,
            client_id=posted.form.get("clientId"),
            client_secret=posted.form.get("clientSecret"),
            now=context.clock(),
        )
    except ValidationFailed as failed:
        said = "; ".join(
            f"{FORM_LABELS.get(str(d.get('path')), d.get('path'))} {d.get('message')}"
            for d in failed.details or []
            if isinstance(d, dict)
        )  # which field and why: the message alone named neither
        text = f"{connector.descriptor.name}: {failed.message}" + (f" ({said})" if said else "")
        return flash(response, request, "error", text)
    return flash(response, request, "ok", f"{connector.descriptor.name}'s OAuth app is registered.")


# --------------------------------------------------------------------------- the callback


async def _way_back(request: Request, place: FlowPlace | None) -> tuple[str, str]:
    """The page a refused consent started from, to try again (a denied consent, a code the
    provider would not exchange): the setup flow, or the instance being reconnected. It
    was the dashboard's home, and the user had to find the connector again."""
    if place is None:
        return ("/", "Back to the dashboard")
    instance = f"/projects/{place.project_id}/instances/{place.connector_id}"
    if place.return_to == "instance":
        existing = await web_state(request).context.store.instances.get(
            place.project_id, place.connector_id
        )
        if existing is not None:
            return (instance, "Back to the instance")
    return (setup_path(place.project_id, place.connector_id), "Back to the setup")


callback = APIRouter(route_class=DashboardRoute, include_in_schema=False)


@callback.get(CALLBACK_PATH)
async def oauth_callback(
    request: Request,
    state: str | None = None,
    code: str | None = None,
    error: str | None = None,
) -> Response:
    """Where the provider sends the browser back. Public: the state is the credential."""
    context = web_state(request).context
    try:
        done = await OAuthFlows.of(context).complete(
            state=state,
            code=code,
            error=error,
            session=request.cookies.get(BINDING_COOKIE),
            now=context.clock(),
        )
    except OAuthRefused as refused:
        back = await _way_back(request, refused.place)
        response = error_page(
            request, 400, "The connection did not complete", refused.message, back=back
        )
        drop_cookie(response, request, BINDING_COOKIE, path=CALLBACK_PATH)
        return response
    connector = await context.connectors.get(done.connector_id)
    name = connector.descriptor.name
    if done.ticket is not None:
        target = (
            f"{setup_path(done.project_id, done.connector_id)}/oauth-return?ticket={done.ticket}"
        )
        said = "Back to the setup…"
        if done.unfit:  # more than the consent gives (or an edit since): the setup asks
            needs = (
                f"{name} was edited since this connection started and now needs more"
                if done.edited
                else f"{name} needs more than the consent gives"
            )
            said = (
                f"{needs} ({'; '.join(done.unfit)}). The consent's tokens are kept: the "
                "setup asks for the rest."
            )
        response = _onward(request, f"Connected with {name}", said, target, "Continue the setup")
    else:
        target = f"/projects/{done.project_id}/instances/{done.connector_id}"
        if done.created:
            title, message = f"{name} connected", f"{name} is connected to {done.project_id}."
        else:
            title = f"{name} reconnected"
            message = f"{name} has new tokens; its checkpoint and history are kept."
        response = _onward(request, title, message, target, "Open the instance")
    response.headers["Referrer-Policy"] = "no-referrer"
    response.delete_cookie(
        BINDING_COOKIE,
        path=cookie_path(request.scope, CALLBACK_PATH),
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )
    return response
