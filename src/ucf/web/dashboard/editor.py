"""Custom connectors in the dashboard: create, edit, try, save, delete; edit what is connected.

The connector editor is one page over one descriptor, the JSON text being the
source of truth: a form for the common parts and the raw JSON are two views
of it (the script keeps them in step, so switching loses nothing), problems
come inline from ``POST /api/connectors/validate`` as the user types, "Try it"
calls ``POST /api/connectors/try`` and the webhook tab ``POST
/api/connectors/preview``. Saving is a plain CSRF-checked form post, so the
page still works without its script: the JSON is saved, or the page comes
back with every problem listed.

Built-in connectors stay read-only: their "Customise a copy" opens the editor
on a copy under a new id. Edits of a custom connector raise its ``version``
(when the author did not; the service decides, as for the API) and apply to
connected instances from their next poll; the versions they replace are listed
on the editor's page, each with Restore. Deleting one is refused while a
project uses it.

Editing a connected instance changes its settings and replaces credentials in
place (write-only: an empty field keeps the stored value), with a connection
test before saving; the checkpoint, health and history are kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from functools import cache
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request, Response
from markupsafe import Markup

from ucf.catalogue.starter import copy_descriptor, starter_descriptor
from ucf.core.credential_keys import ACCESS_TOKEN_EXPIRES_AT
from ucf.core.descriptor import (
    AUTH_METHOD_KEY,
    ConnectorDescriptor,
    OAuth2Auth,
    descriptor_json_schema,
)
from ucf.core.validation import SCHEMA_KEY, Problem, loads_noting_repeats, validate_descriptor
from ucf.runtime.auth import CredentialsChanged
from ucf.runtime.health import HealthPolicy, secret_free
from ucf.runtime.redaction import mask
from ucf.service.connectors import Connector
from ucf.service.errors import ConflictError, ValidationFailed
from ucf.service.health import check_connector, outcome_of_check
from ucf.service.poll import rotation_writer
from ucf.stores.models import DescriptorVersion, InstanceRecord
from ucf.stores.secrets.base import UNREADABLE_SECRET
from ucf.web.dashboard.rendering import redirect
from ucf.web.dashboard.routing import (
    DashboardRoute,
    Page,
    PageNotFound,
    Posted,
    checked_form,
    flash,
    keys,
    project_or_404,
    require_session,
)
from ucf.web.dashboard.security import CSRF_HEADER, Session
from ucf.web.dashboard.setup import config_views, credential_views, field_errors, unplaced
from ucf.web.state import web_state

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

Sessioned = Annotated[Session, Depends(require_session)]
Checked = Annotated[Posted, Depends(checked_form)]

MAX_DESCRIPTOR_CHARS: Final = 256 * 1024


# --------------------------------------------------------------------------- the editor


def _text(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def _unique_id(wanted: str, taken: set[str]) -> str:
    if wanted not in taken:
        return wanted
    number = 2
    while f"{wanted}-{number}" in taken:
        number += 1
    return f"{wanted}-{number}"


@cache
def _schema_json() -> Markup:
    """The descriptor's JSON Schema for the page's form and completion, safe inside <script>.

    Embedded rather than fetched, so the form draws without a second request; ``<``
    is escaped so no text in a description can close the script element.
    """
    schema = descriptor_json_schema()
    del schema["properties"][SCHEMA_KEY]  # a file's pointer for other editors: no form field
    text = json.dumps(schema, separators=(",", ":")).replace("<", "\\u003c")
    return Markup(text)  # noqa: S704 - our own schema, and no '<' is left to end the script


def _script_json(data: Any) -> Markup:
    """``data`` as JSON safe inside a ``<script>`` element: no ``<`` is left to end it."""
    return Markup(json.dumps(data).replace("<", "\\u003c"))  # noqa: S704 - no '<' left


def _render_editor(
    page: Page,
    *,
    text: str,
    editing: Connector | None,
    problems: list[Problem],
    status: int = 200,
    native_of: str | None = None,
    versions: Sequence[DescriptorVersion] = (),
    opened_on: str | None = None,
) -> Response:
    """``native_of``: the name of the native connector ``text`` copies (see :func:`new_connector`).
    ``versions``: the descriptors the connector's edits replaced, listed to restore one.
    ``opened_on``: the ``updated_at`` of the version the text was made on (a refused
    save's, as posted; else the stored one's), posted back by Save (:func:`_opened_on`)."""
    if opened_on is None and editing is not None:
        opened_on = editing.updated_at.isoformat()
    action = (
        f"/projects/{page.project}/connectors/{editing.id}/edit"
        if editing is not None
        else f"/projects/{page.project}/connectors/new"
    )
    return page.render(
        "editor.html",
        {
            "text": text,
            "editing": editing,
            "action": action,
            "problems": problems,
            "csrf_header": CSRF_HEADER,
            "schema_json": _schema_json(),
            "native_of": native_of,
            "versions": versions,
            "opened_on": opened_on,
            # A refused save comes back with the user's text, which nothing has stored.
            "unsaved": status != 200,
            "refused_json": _script_json(
                [{"path": p.path, "message": p.message, "hint": p.hint} for p in problems]
            ),
        },
        status=status,
    )


@router.get("/projects/{project}/connectors/new")
async def new_connector(
    request: Request, session: Sessioned, project: str, copy: str = ""
) -> Response:
    """The blank template, or a copy of ``copy`` (any connector, built in or custom).

    A native connector's copy is its descriptor alone: its polls and mapping are code
    in the package that provides its id, and nothing provides the copy's, so the page
    says so before anyone saves a connector that could never poll (as
    ``ucf connectors new --from`` does).
    """
    page = Page(request, session, project_or_404(project), "catalogue")
    taken = {c.id for c in await page.context.connectors.list()}
    native_of = None
    if copy:
        source = await page.context.connectors.get(copy)
        data = copy_descriptor(
            source.descriptor.to_json(), _unique_id(f"{source.id}-custom", taken)
        )
        if source.kind == "native":
            native_of = source.descriptor.name
    else:
        data = starter_descriptor(_unique_id("my-connector", taken), name="My connector")
    return _render_editor(page, text=_text(data), editing=None, problems=[], native_of=native_of)


@router.get("/projects/{project}/connectors/{connector_id}/edit")
async def edit_connector(
    request: Request, session: Sessioned, project: str, connector_id: str
) -> Response:
    page = Page(request, session, project_or_404(project), "catalogue")
    connector = await page.context.connectors.get(connector_id)
    if connector.built_in:  # read-only: offer a copy instead
        return redirect(f"/projects/{page.project}/connectors/new?copy={connector.id}")
    _, versions = await page.context.connectors.versions(connector_id)
    return _render_editor(
        page,
        text=_text(connector.descriptor.to_json()),
        editing=connector,
        problems=[],
        versions=versions,
    )


@router.post("/projects/{project}/connectors/{connector_id}/versions/{version:path}/restore")
async def restore_version(
    request: Request, posted: Checked, project: str, connector_id: str, version: str
) -> Response:
    """Back to an earlier version from the editor's history: a new edit (its version
    raised), so the one it replaces is listed in its turn."""
    project_or_404(project)
    state = web_state(request)
    connector = await state.context.connectors.get(connector_id)
    if connector.built_in:
        raise PageNotFound(f"'{connector_id}' is built in; customise a copy instead")
    edited = await state.context.instances.restore_connector(connector_id, version)
    state.gateway.forget_connector(connector_id)
    saved = edited.connector
    response = redirect(f"/projects/{project}/connectors/{connector_id}/edit")
    return flash(
        response,
        request,
        "ok",
        f"{saved.descriptor.name}: version {version} restored as version "
        f"{saved.descriptor.version}.",
        "Connected instances use it from their next poll.",
    )


def _parsed_text(text: str) -> tuple[Any, list[Problem]]:
    if len(text) > MAX_DESCRIPTOR_CHARS:
        return None, [
            Problem("", f"the descriptor is longer than {MAX_DESCRIPTOR_CHARS} characters")
        ]
    try:
        return loads_noting_repeats(text)  # json keeps the last of a repeated key silently
    except json.JSONDecodeError as error:
        return None, [
            Problem("", f"not JSON: {error.msg} at line {error.lineno} column {error.colno}")
        ]
    except RecursionError:
        return None, [Problem("", "not JSON ucf can read: it is nested too deeply")]
    except ValueError:  # json's only other refusal: an integer of over 4300 digits
        return None, [Problem("", "not JSON ucf can read: a number has too many digits")]


async def _versions(page: Page, editing: Connector | None) -> Sequence[DescriptorVersion]:
    """The history the editor lists for ``editing`` (none for a new connector)."""
    if editing is None:
        return ()
    return (await page.context.connectors.versions(editing.id))[1]


def _opened_on(posted: Posted) -> tuple[str | None, datetime | None]:
    """The version the editor's text was made on, as its page posts it (``saved_at``),
    text and time; None for a page that sent none (or nonsense): saved as before.

    Without it, a Save from a page opened before another edit was saved replaced that
    edit without a word (raised to the next version over it)."""
    text = posted.form.get("saved_at") or None
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None, None
    return text, moment if moment is None or moment.tzinfo is not None else None


async def _save(
    request: Request, posted: Posted, project: str, editing: Connector | None
) -> Response:
    page = Page(request, posted.session, project_or_404(project), "catalogue")
    text = posted.form.get("descriptor")
    opened_text, opened_on = _opened_on(posted)
    data, problems = _parsed_text(text)
    if data is not None:
        problems = [*problems, *validate_descriptor(data)[1]]
    connectors = page.context.connectors
    if problems:
        return _render_editor(
            page,
            text=text,
            editing=editing,
            problems=problems,
            status=422,
            versions=await _versions(page, editing),
            opened_on=opened_text,
        )
    try:
        if editing is None:
            saved = await connectors.register(data)
            verb = "created"
        else:
            # Raises the version if need be (a 409 if another edit was saved meanwhile);
            # the credentials a new sign-in leaves go.
            edited = await page.context.instances.update_connector(
                editing.id, data, if_saved_at=opened_on
            )
            saved = edited.connector
            web_state(request).gateway.forget_connector(editing.id)
            verb = "saved"
    except (ValidationFailed, ConflictError) as error:
        details = [
            Problem(str(d.get("path", "")), str(d.get("message", "")), d.get("hint"))
            for d in (error.details or [])
            if isinstance(d, dict)
        ] or [  # a new connector's conflict is its id; an edit's, another edit that came first
            Problem(
                "id" if isinstance(error, ConflictError) and editing is None else "",
                error.message,
            )
        ]
        return _render_editor(
            page,
            text=text,
            editing=editing,
            problems=details,
            status=error.status,
            versions=await _versions(page, editing),
            opened_on=opened_text,
        )
    response = redirect(f"/projects/{page.project}/connectors?category=Custom")
    if editing is not None:
        unfit = await page.context.instances.unfit_settings(saved)
        if unfit:
            return flash(
                response,
                request,
                "error",
                f"{saved.descriptor.name} {verb} (version {saved.descriptor.version}), but "
                f"{len(unfit)} connected instance(s) no longer fit its settings and fail "
                "from their next poll: edit their settings.",
                _unfit_text(unfit),
            )
    return flash(
        response,
        request,
        "ok",
        f"{saved.descriptor.name} {verb} (version {saved.descriptor.version}).",
        "Connected instances use it from their next poll." if editing is not None else None,
    )


UNFIT_SHOWN: Final = 3
"""Instances named in the flash (a cookie: it must stay small); the rest are counted."""


def _unfit_text(unfit: Sequence[tuple[str, Sequence[str]]]) -> str:
    shown = [f"project {project}: {'; '.join(said)}" for project, said in unfit[:UNFIT_SHOWN]]
    more = len(unfit) - UNFIT_SHOWN
    text = " · ".join(shown) + (f" · and {more} more" if more > 0 else "")
    return text if len(text) <= UNFIT_CHARS else text[: UNFIT_CHARS - 1] + "…"


UNFIT_CHARS: Final = 600


@router.post("/projects/{project}/connectors/new")
async def create_connector(request: Request, posted: Checked, project: str) -> Response:
    return await _save(request, posted, project, None)


@router.post("/projects/{project}/connectors/{connector_id}/edit")
async def update_connector(
    request: Request, posted: Checked, project: str, connector_id: str
) -> Response:
    connector = await web_state(request).context.connectors.get(connector_id)
    if connector.built_in:
        raise PageNotFound(f"'{connector_id}' is built in; customise a copy instead")
    return await _save(request, posted, project, connector)


@router.get("/projects/{project}/connectors/{connector_id}/delete")
async def delete_page(
    request: Request, session: Sessioned, project: str, connector_id: str
) -> Response:
    """Asks first, as Disconnect does: the editor's Delete button, beside Save, deleted
    the author's descriptor at one click, with no way back."""
    page = Page(request, session, project_or_404(project), "catalogue")
    connector = await page.context.connectors.get(connector_id)
    if connector.built_in:
        raise PageNotFound(f"'{connector_id}' is built in; it cannot be deleted")
    # Named before anything is offered: the page offered Delete for a connector still
    # connected somewhere, and the click ended on a 409 page.
    connected = await page.context.connectors.connected_in(connector_id)
    return page.render("delete_connector.html", {"connector": connector, "connected": connected})


@router.post("/projects/{project}/connectors/{connector_id}/delete")
async def delete_connector(
    request: Request, posted: Checked, project: str, connector_id: str
) -> Response:
    project_or_404(project)
    context = web_state(request).context
    connector = await context.connectors.get(connector_id)
    await context.connectors.delete(connector_id)  # 403 built in, 409 still connected
    web_state(request).gateway.forget_connector(connector_id)
    response = redirect(f"/projects/{project}/connectors?category=Custom")
    return flash(response, request, "ok", f"{connector.descriptor.name} is deleted.")


# --------------------------------------------------------------------------- a connected instance


@router.get("/projects/{project}/instances/{connector_id}/edit")
async def edit_instance(
    request: Request, session: Sessioned, project: str, connector_id: str
) -> Response:
    page = Page(request, session, project_or_404(project), "instances")
    instance = await page.context.instances.get(page.project, connector_id)
    config = {k: str(v) for k, v in instance.shown_config.items()}
    return _render_instance_editor(
        page,
        instance.connector,
        dict(instance.masked or {}),
        instance.auth_method,
        config,
        {},
        [],
        None,
    )


TESTED_FIELD: Final = "tested"
TESTED_LIFETIME: Final = timedelta(minutes=30)
"""How long credentials typed for a test are carried to the Save that follows it."""


def _tested_context(session: Session, record: InstanceRecord) -> str:
    """This session's, and this instance's: one connected again under the same id (after
    a Disconnect) is another, and a page left open for the old one carries nothing to it."""
    made = record.created_at.isoformat()
    return f"{session.csrf}|instance-edit|{record.project_id}|{record.connector_id}|{made}"


def _tested(request: Request, posted: Posted, record: InstanceRecord) -> dict[str, str]:
    """Credentials typed before an earlier Test connection of this form, carried sealed.

    A password input is never filled back in, so after a test the typed key was gone
    from the form: Save then kept the old credential, though the page had just said
    the new one works (a rotated key was never stored).
    """
    raw = posted.form.get(TESTED_FIELD)
    if not raw:
        return {}
    data = keys(request).drafts.open(raw, _tested_context(posted.session, record))
    if data is None or not isinstance(data.get("exp"), int | float) or data["exp"] < time.time():
        return {}
    carried = data.get("cred")
    return {str(k): str(v) for k, v in carried.items()} if isinstance(carried, dict) else {}


def _seal_tested(
    request: Request, session: Session, record: InstanceRecord, typed: dict[str, str]
) -> str | None:
    """``typed``, sealed for the page's hidden field (AES-GCM: never readable in the page,
    bound to this session, project and instance); None when nothing was typed."""
    if not typed:
        return None
    return keys(request).drafts.seal(
        {"cred": typed, "exp": time.time() + TESTED_LIFETIME.total_seconds()},
        _tested_context(session, record),
    )


def _render_instance_editor(
    page: Page,
    connector: Connector,
    masked: dict[str, str],
    method: str,
    config: dict[str, str],
    errors: dict[str, str],
    other: list[str],
    check: dict[str, Any] | None,
    *,
    status: int = 200,
    tested: dict[str, str] | None = None,
    sealed: str | None = None,
) -> Response:
    """``method``: how the instance signs in; only that method's fields are offered.
    ``tested``: credentials typed for a test, not saved yet (``sealed`` carries them)."""
    descriptor = connector.descriptor
    fields = descriptor.credential_fields(descriptor.auth_for({AUTH_METHOD_KEY: method}))
    credentials = credential_views(fields, {}, errors)
    tested = tested or {}
    credentials = [  # a stored or tested one is shown masked; its input may stay empty
        replace(view, saved=mask(tested[view.key]), saved_note="Not saved yet", required=False)
        if view.key in tested
        else replace(view, saved=masked[view.key], required=False)
        if view.key in masked
        else view
        for view in credentials
    ]
    config_fields = config_views(descriptor.setup_config_fields(), config, errors)
    return page.render(
        "instance_edit.html",
        {
            "descriptor": descriptor,
            "credential_fields": credentials,
            "config_fields": config_fields,
            "other_errors": [*other, *unplaced(errors, [*credentials, *config_fields])],
            "check": check,
            "tested_field": TESTED_FIELD,
            "tested": sealed,
        },
        status=status,
    )


@router.post("/projects/{project}/instances/{connector_id}/edit")
async def save_instance(
    request: Request, posted: Checked, project: str, connector_id: str
) -> Response:
    """``action=test`` checks the typed settings without saving; ``action=save`` saves them."""
    page = Page(request, posted.session, project_or_404(project), "instances")
    state = web_state(request)
    context = state.context
    instance = await context.instances.get(page.project, connector_id)
    typed_credentials = {  # trimmed as saving them trims them (check_credentials)
        k: v.strip() for k, v in posted.form.fields("credentials").items() if v.strip()
    }
    typed_config = posted.form.fields("config")
    # What an earlier test of this form passed with, then what is typed now (which wins).
    carried = _tested(request, posted, instance.record)
    typed_credentials = {**carried, **typed_credentials}
    if posted.form.get("action") == "test":
        try:
            stored = await context.instances.credentials(instance.record)
        except UNREADABLE_SECRET:  # shown as unset (the form asks for them): test the typed
            stored = {}
        credentials = {**stored, **typed_credentials}
        # Checking the stored credentials may refresh them, and a provider that rotates
        # refresh tokens kills the stored one then: keep the new one, as a poll does.
        # A typed refresh token's rotation is kept with the typed credentials instead,
        # which Save stores (the typed one is dead once rotated).
        refresh_key = _refresh_token_key(instance.connector.descriptor, credentials)
        on_rotate: CredentialsChanged | None
        rotated: dict[str, str] = {}
        if refresh_key is not None and refresh_key in typed_credentials:
            declared = {f.key for f in instance.connector.descriptor.credential_fields()}
            declared.add(ACCESS_TOKEN_EXPIRES_AT)

            async def keep_typed(values: dict[str, str]) -> None:
                rotated.update({k: v for k, v in values.items() if k in declared and v})
                typed_credentials.update(rotated)

            on_rotate = keep_typed
        else:
            on_rotate = rotation_writer(context, instance.record.credential_secret_ref)
        result, forced = await check_connector(
            context,
            instance.connector,
            credentials=credentials,
            config={**{k: str(v) for k, v in instance.record.config.items()}, **typed_config},
            on_rotate=on_rotate,
            typed=True,
        )
        outcome = forced or outcome_of_check(result, HealthPolicy())
        secrets = (*credentials.values(), *rotated.values())  # a rotation's are secret too
        check: dict[str, Any] = {
            "ok": result.ok,
            "status": result.status,
            "latency_ms": round(result.latency_ms),
            "outcome": outcome.value,
            "error": None if result.ok else secret_free(result.error or outcome.value, secrets),
        }
        # Only credentials a test passed with are carried: those of a failed test went on
        # to the Save after it, which stored a key the page had just called rejected in
        # place of the working one. A rotation is carried whatever the verdict (the token
        # it replaced is dead), and so is what an earlier test passed with.
        keep = typed_credentials if result.ok else {**carried, **rotated}
        check["dropped"] = sorted(k for k, v in typed_credentials.items() if keep.get(k) != v)
        return _render_instance_editor(
            page,
            instance.connector,
            dict(instance.masked or {}),
            instance.auth_method,
            typed_config,
            {},
            [],
            check,
            tested=keep,
            sealed=_seal_tested(request, posted.session, instance.record, keep),
        )
    try:
        await context.instances.update(
            page.project,
            connector_id,
            credentials=typed_credentials or None,
            config=typed_config,
        )
    except ValidationFailed as failed:
        errors, other = field_errors(failed)
        # The typed credentials that are fine are kept for the next Save; one refused is
        # typed again.
        kept = {k: v for k, v in typed_credentials.items() if f"credentials.{k}" not in errors}
        return _render_instance_editor(
            page,
            instance.connector,
            dict(instance.masked or {}),
            instance.auth_method,
            typed_config,
            errors,
            other,
            None,
            status=422,
            tested=kept,
            sealed=_seal_tested(request, posted.session, instance.record, kept),
        )
    state.gateway.forget(page.project, connector_id)
    response = redirect(f"/projects/{page.project}/instances/{connector_id}")
    changed = "settings and credentials" if typed_credentials else "settings"
    return flash(
        response,
        request,
        "ok",
        f"{instance.connector.descriptor.name}: {changed} saved.",
        "The checkpoint and history are kept; the next poll uses them.",
    )


def _refresh_token_key(
    descriptor: ConnectorDescriptor, credentials: Mapping[str, str]
) -> str | None:
    """The credential an OAuth refresh of these credentials presents; None without OAuth."""
    auth = descriptor.auth_for(credentials)
    return auth.config.refresh_token_key if isinstance(auth, OAuth2Auth) else None
