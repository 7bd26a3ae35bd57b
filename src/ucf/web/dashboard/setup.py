"""The setup flow of SPEC §8.2: credentials → configuration → test connection → confirm.

Every step is a server-rendered form (POST/redirect/GET). Nothing is stored
before Confirm: what the user typed so far is a *draft* sealed into a cookie
(AES-GCM, bound to the session and to this project and connector), so the
credentials never appear in a page, a URL or a log, and a password input is
never filled back in — the page shows ``••••1234`` and "leave empty to keep".

"Test connection" runs the connector's health check with the draft's
credentials and settings through the same SSRF-guarded client, auth and
health rules as a stored instance's check; Confirm creates the instance (the
credentials go to the secret store) and records that check's outcome as its
first health observation.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Request, Response

from ucf.core.descriptor import AUTH_METHOD_KEY, ConfigField, ConnectorDescriptor, CredentialField
from ucf.runtime.auth import ACCESS_TOKEN_EXPIRES_AT
from ucf.runtime.health import HealthPolicy, Outcome, classify, secret_free
from ucf.runtime.redaction import mask
from ucf.service.connectors import Connector
from ucf.service.context import UcfContext
from ucf.service.errors import ConflictError, ValidationFailed
from ucf.service.health import check_connector, outcome_of_check
from ucf.service.instances import check_config, check_credentials
from ucf.stores.errors import NotFound
from ucf.web.dashboard.rendering import redirect
from ucf.web.dashboard.routing import (
    DashboardRoute,
    Page,
    Posted,
    checked_form,
    drop_cookie,
    flash,
    keys,
    project_or_404,
    require_session,
    set_cookie,
)
from ucf.web.dashboard.security import Session
from ucf.web.state import web_state

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

DRAFT_COOKIE: Final = "ucf_setup"
DRAFT_LIFETIME: Final = timedelta(minutes=30)
DRAFT_CHUNK: Final = 3800
"""Characters of the sealed draft per cookie. Browsers drop a cookie over 4096 bytes
without a word (RFC 6265 §6.1 asks for no more): a draft holding a consent's tokens
(Microsoft's access tokens run to kilobytes) or a long key was lost, and the setup
started over. The draft is split over ``ucf_setup``, ``ucf_setup1``, …"""
DRAFT_CHUNKS: Final = 3
"""At most this many: every chunk rides on each setup request, whose headers uvicorn
caps at 16 KiB."""
FRESH_CHECK: Final = timedelta(minutes=10)
"""A draft's check this recent becomes the new instance's first health observation."""

StepName = Literal["credentials", "configuration", "test", "confirm"]
STEP_TITLES: Final[dict[StepName, str]] = {
    "credentials": "Credentials",
    "configuration": "Configuration",
    "test": "Test connection",
    "confirm": "Confirm",
}


# --------------------------------------------------------------------------- the form fields


@dataclass(frozen=True)
class FieldView:
    """One input of a generated form, as the template draws it."""

    name: str
    key: str
    label: str
    input: str
    required: bool
    placeholder: str | None = None
    help: str | None = None
    options: tuple[str, ...] = ()
    value: str = ""
    saved: str | None = None
    """A credential already in the draft, masked: the input may stay empty to keep it."""
    saved_note: str = "Saved"
    """What ``saved`` is: "Saved", or a value tested but not saved yet (the instance editor)."""
    error: str | None = None

    @property
    def id(self) -> str:
        return "f-" + self.name.replace(".", "-")


_CREDENTIAL_INPUTS: Final = {"password": "password", "url": "url", "text": "text"}
_CONFIG_INPUTS: Final = {"url": "url", "number": "number", "select": "select", "text": "text"}


def credential_views(
    fields: list[CredentialField], saved: dict[str, str], errors: dict[str, str]
) -> list[FieldView]:
    """Never a value: a saved credential is shown masked and need not be typed again."""
    return [
        FieldView(
            name=f"credentials.{f.key}",
            key=f.key,
            label=f.label,
            input=_CREDENTIAL_INPUTS[f.type],
            required=f.required and f.key not in saved,
            placeholder=f.placeholder,
            help=f.help_text,
            saved=mask(saved[f.key]) if f.key in saved else None,
            error=errors.get(f"credentials.{f.key}"),
        )
        for f in fields
    ]


def config_views(
    fields: list[ConfigField], values: dict[str, str], errors: dict[str, str]
) -> list[FieldView]:
    return [
        FieldView(
            name=f"config.{f.key}",
            key=f.key,
            label=f.label,
            input=_CONFIG_INPUTS[f.type],
            required=f.required,
            placeholder=f.placeholder,
            help=f.help_text,
            options=tuple(f.options or ()),
            value=values.get(f.key, f.default or ""),
            error=errors.get(f"config.{f.key}"),
        )
        for f in fields
    ]


def field_errors(failed: ValidationFailed) -> tuple[dict[str, str], list[str]]:
    """Problems by form field name, and those that belong to no field."""
    by_field: dict[str, str] = {}
    other: list[str] = []
    for problem in failed.details or []:
        path, message = str(problem.get("path", "")), str(problem.get("message", "invalid"))
        if path.startswith(("credentials.", "config.")) and path not in by_field:
            by_field[path] = message
        else:
            other.append(f"{path}: {message}" if path else message)
    return by_field, other


def unplaced(errors: Mapping[str, str], views: Iterable[FieldView]) -> list[str]:
    """The problems in ``errors`` at a field the form does not draw, as "path: message".

    A page drawn before the connector was edited (a setting since removed) posts a
    field the descriptor no longer has: its problem was kept for a field that is not
    on the page any more, so the page answered 422 and showed nothing at all.
    """
    drawn = {view.name for view in views}
    return [f"{path}: {message}" for path, message in errors.items() if path not in drawn]


# --------------------------------------------------------------------------- the draft


@dataclass
class CheckView:
    ok: bool
    state: str
    outcome: str
    latency_ms: float
    http_status: int | None
    error: str | None
    at: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: Any) -> CheckView | None:
        try:
            return cls(**data) if isinstance(data, dict) else None
        except TypeError:
            return None

    def checked_at(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)


@dataclass
class Draft:
    credentials: dict[str, str] = field(default_factory=dict)
    config: dict[str, str] | None = None
    """None until the configuration step has been passed."""
    check: CheckView | None = None

    def to_json(self, expires: float) -> dict[str, Any]:
        return {
            "cred": self.credentials,
            "cfg": self.config,
            "check": self.check.to_json() if self.check else None,
            "exp": expires,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Draft | None:
        credentials, config = data.get("cred"), data.get("cfg")
        if not isinstance(credentials, dict) or not (config is None or isinstance(config, dict)):
            return None
        return cls(
            {str(k): str(v) for k, v in credentials.items()},
            {str(k): str(v) for k, v in config.items()} if config is not None else None,
            CheckView.from_json(data.get("check")),
        )


def setup_path(project: str, connector_id: str) -> str:
    return f"/projects/{project}/connectors/{connector_id}/connect"


def to_step(project: str, connector_id: str, step: str) -> Response:
    return redirect(f"{setup_path(project, connector_id)}?step={step}")


def _seal_context(session: Session, project: str, connector_id: str) -> str:
    return f"{session.csrf}|{project}|{connector_id}"


class DraftTooLong(ValidationFailed):
    """Typed values a setup page cannot carry between its steps."""

    status = 413
    code = "too_long"


def _chunk_name(index: int) -> str:
    return DRAFT_COOKIE if index == 0 else f"{DRAFT_COOKIE}{index}"


def load_draft(request: Request, session: Session, project: str, connector_id: str) -> Draft:
    parts: list[str] = []
    for index in range(DRAFT_CHUNKS):
        part = request.cookies.get(_chunk_name(index))
        if not part:
            break
        parts.append(part)
    raw = "".join(parts)
    if not raw:
        return Draft()
    data = keys(request).drafts.open(raw, _seal_context(session, project, connector_id))
    if data is None or not isinstance(data.get("exp"), int | float) or data["exp"] < time.time():
        return Draft()
    return Draft.from_json(data) or Draft()


def save_draft(
    response: Response,
    request: Request,
    session: Session,
    project: str,
    connector_id: str,
    draft: Draft,
) -> Response:
    lifetime = int(DRAFT_LIFETIME.total_seconds())
    sealed = keys(request).drafts.seal(
        draft.to_json(time.time() + lifetime), _seal_context(session, project, connector_id)
    )
    chunks = [sealed[i : i + DRAFT_CHUNK] for i in range(0, len(sealed), DRAFT_CHUNK)]
    if len(chunks) > DRAFT_CHUNKS:
        raise DraftTooLong(
            f"The values typed are too long for the setup page to keep between its steps "
            f"({len(sealed) // 1024} KiB sealed, at most {DRAFT_CHUNK * DRAFT_CHUNKS // 1024} "
            f"KiB). Connect through the API instead: POST /api/projects/{project}/instances "
            "takes credentials of any length."
        )
    path = setup_path(project, connector_id)
    for index, chunk in enumerate(chunks):
        set_cookie(response, request, _chunk_name(index), chunk, max_age=lifetime, path=path)
    for index in range(len(chunks), DRAFT_CHUNKS):  # a longer draft's tail, now stale
        if _chunk_name(index) in request.cookies:
            drop_cookie(response, request, _chunk_name(index), path=path)
    return response


def drop_draft(response: Response, request: Request, project: str, connector_id: str) -> None:
    path = setup_path(project, connector_id)
    drop_cookie(response, request, DRAFT_COOKIE, path=path)
    for index in range(1, DRAFT_CHUNKS):
        if _chunk_name(index) in request.cookies:
            drop_cookie(response, request, _chunk_name(index), path=path)


# --------------------------------------------------------------------------- the check


async def check_unsaved(
    context: UcfContext,
    connector: Connector,
    credentials: dict[str, str],
    config: dict[str, str],
    *,
    policy: HealthPolicy | None = None,
) -> tuple[CheckView, dict[str, str]]:
    """The health check of settings not stored yet, and the credentials afterwards.

    An OAuth2 check may rotate the refresh token (the old one is then dead), so
    the rotated credential fields come back to be kept in the draft.
    """
    policy = policy or HealthPolicy()
    descriptor = connector.descriptor
    # The operator's registered OAuth app lends its client id and secret to the check,
    # as it does to a stored instance; they never enter the draft.
    app = await context.instances.oauth_clients.credentials(descriptor, now=context.clock())
    kept = {f.key for f in descriptor.credential_fields()} - set(app)
    if descriptor.consent() is not None:
        kept.add(ACCESS_TOKEN_EXPIRES_AT)
    current = dict(credentials)

    async def keep_rotated(values: dict[str, str]) -> None:
        current.update({k: v for k, v in values.items() if k in kept and v})

    result, forced = await check_connector(
        context,
        connector,
        credentials={**app, **credentials},
        config=config,
        on_rotate=keep_rotated,
        typed=True,
    )
    outcome = forced or outcome_of_check(result, policy)
    state = {Outcome.OK: "healthy", Outcome.SLOW: "degraded", Outcome.THROTTLED: "degraded"}.get(
        outcome, "error"
    )
    error_text = (
        None
        if result.ok
        else secret_free(result.error or outcome.value, tuple(credentials.values()))
    )
    view = CheckView(
        ok=result.ok,
        state=state,
        outcome=outcome.value,
        latency_ms=round(result.latency_ms, 1),
        http_status=result.status,
        error=error_text,
        at=context.clock().timestamp(),
    )
    return view, current


# --------------------------------------------------------------------------- the steps


@dataclass(frozen=True)
class Consent:
    """ "Connect with <Name>": the connector's tokens come from an OAuth consent, and the
    operator registered its app, so the user types none of the fields it fills in."""

    managed: frozenset[str]
    """Credential fields the app and the consent supply (client id/secret, tokens)."""
    connected: bool
    """The draft already holds the consent's tokens."""
    alternative: bool = False
    """The consent is one of ``authAlternatives``: the form of ``auth`` is offered beside it."""


def consent_of(
    descriptor: ConnectorDescriptor, provided: frozenset[str], draft: Draft
) -> Consent | None:
    config = descriptor.consent()
    if config is None or not provided:
        return None
    managed = frozenset(
        {
            config.client_id_key,
            config.client_secret_key,
            config.access_token_key,
            config.refresh_token_key,
        }
    )
    return Consent(
        managed,
        bool(draft.credentials.get(config.access_token_key)),
        alternative=bool(descriptor.consent_marker()),
    )


@dataclass(frozen=True)
class Flow:
    """The steps this connector needs: no credentials step without credential fields, etc."""

    descriptor: ConnectorDescriptor
    steps: tuple[StepName, ...]
    provided: frozenset[str] = frozenset()
    """Credential fields the operator's registered OAuth app supplies."""

    @classmethod
    def of(cls, descriptor: ConnectorDescriptor, provided: frozenset[str] = frozenset()) -> Flow:
        """The steps, in order. With a consent ("Connect with …") the settings come first:
        the provider's consent and token URLs may depend on them (Microsoft's tenant,
        a test server's address), and the consent must use the ones the user chose."""
        steps: list[StepName] = []
        if descriptor.credential_fields():
            steps.append("credentials")
        if descriptor.setup_config_fields():
            if provided and descriptor.consent() is not None:
                steps.insert(0, "configuration")
            else:
                steps.append("configuration")
        steps += ["test", "confirm"]
        return cls(descriptor, tuple(steps), provided)

    def credentials_done(self, draft: Draft) -> bool:
        try:
            check_credentials(self.descriptor, draft.credentials, provided=self.provided)
        except ValidationFailed:
            return False
        return True

    def configuration_done(self, draft: Draft) -> bool:
        return draft.config is not None or "configuration" not in self.steps

    def missing(self, draft: Draft) -> StepName | None:
        """The first step whose input is still missing (testing is recommended, not required)."""
        done = {"credentials": self.credentials_done, "configuration": self.configuration_done}
        for step in self.steps:
            check = done.get(step)
            if check is not None and not check(draft):
                return step
        return None

    def first_open(self, draft: Draft) -> StepName:
        return self.missing(draft) or "test"

    def allowed(self, step: StepName, draft: Draft) -> StepName:
        """``step``, or the earliest step still to do before it."""
        order = self.steps
        missing = self.missing(draft)
        if step not in order:
            return self.first_open(draft)
        if missing is not None and order.index(missing) < order.index(step):
            return missing
        return step

    def after(self, step: StepName) -> StepName:
        return self.steps[min(self.steps.index(step) + 1, len(self.steps) - 1)]

    def before(self, step: StepName) -> StepName | None:
        index = self.steps.index(step)
        return self.steps[index - 1] if index > 0 else None


def _step(value: str | None) -> StepName | None:
    return value if value in STEP_TITLES else None


Sessioned = Annotated[Session, Depends(require_session)]
Checked = Annotated[Posted, Depends(checked_form)]


async def _posted_step(
    request: Request, posted: Checked, project: str, connector_id: str
) -> tuple[Page, Connector, Flow, Draft] | Response:
    """What every POST of the setup flow starts from, or where to send the user instead
    (the project already has this connector)."""
    page = Page(request, posted.session, project_or_404(project), "catalogue")
    connector, elsewhere = await _connector_and_existing(page, connector_id)
    if elsewhere is not None:
        return elsewhere
    provided = await page.context.instances.provided_credentials(connector.descriptor)
    return (
        page,
        connector,
        Flow.of(connector.descriptor, provided),
        load_draft(request, posted.session, project, connector_id),
    )


async def _connector_and_existing(
    page: Page, connector_id: str
) -> tuple[Connector, Response | None]:
    """The connector, and a redirect when the project already has an instance of it."""
    connector = await page.context.connectors.get(connector_id)
    existing = await page.context.store.instances.get(page.project, connector_id)
    if existing is None:
        return connector, None
    response = redirect(f"/projects/{page.project}/instances/{connector_id}")
    flash(
        response,
        page.request,
        "info",
        f"{connector.descriptor.name} is already connected to this project.",
    )
    return connector, response


@router.get("/projects/{project}/connectors/{connector_id}/connect")
async def setup_page(
    request: Request,
    session: Sessioned,
    project: str,
    connector_id: str,
    step: str | None = None,
) -> Response:
    page = Page(request, session, project_or_404(project), "catalogue")
    connector, elsewhere = await _connector_and_existing(page, connector_id)
    if elsewhere is not None:
        return elsewhere
    provided = await page.context.instances.provided_credentials(connector.descriptor)
    flow = Flow.of(connector.descriptor, provided)
    draft = load_draft(request, session, project, connector_id)
    fresh = not draft.credentials and draft.config is None
    # A new setup starts at its first step, even when nothing there is required
    # (Asana's and Jira's credentials are alternatives: none is required on its own).
    wanted = _step(step) or (flow.steps[0] if fresh else flow.first_open(draft))
    shown = flow.allowed(wanted, draft)
    if shown != wanted and step is not None:
        return to_step(project, connector_id, shown)
    return _render_step(page, connector, flow, draft, shown, {}, [])


def _render_step(
    page: Page,
    connector: Connector,
    flow: Flow,
    draft: Draft,
    step: StepName,
    errors: dict[str, str],
    other_errors: list[str],
    *,
    status: int = 200,
    typed_config: dict[str, str] | None = None,
) -> Response:
    descriptor = connector.descriptor
    back = flow.before(step)
    consent = consent_of(descriptor, flow.provided, draft)
    # The fields of the method the draft signs in with: after a consent that is an
    # alternative, its own (a webhook secret); before, those of ``auth``.
    method = descriptor.auth_for(draft.credentials)
    typed_fields = [
        f
        for f in descriptor.credential_fields(method)
        if consent is None or f.key not in consent.managed
    ]
    credential_fields = credential_views(typed_fields, draft.credentials, errors)
    config_fields = config_views(
        descriptor.setup_config_fields(),
        typed_config if typed_config is not None else (draft.config or {}),
        errors,
    )
    return page.render(
        "connect.html",
        {
            "connector": connector,
            "descriptor": descriptor,
            "steps": [(name, STEP_TITLES[name]) for name in flow.steps],
            "step": step,
            "step_title": STEP_TITLES[step],
            "base": setup_path(page.project, connector.id),
            "back": back,
            "credential_fields": credential_fields,
            "consent": consent,
            "consent_possible": descriptor.consent() is not None,
            "consent_alternative": bool(descriptor.consent_marker()),
            "config_fields": config_fields,
            "masked": {key: mask(value) for key, value in draft.credentials.items()},
            "config": draft.config or {},
            "check": draft.check,
            "other_errors": [
                *other_errors,
                *unplaced(errors, [*credential_fields, *config_fields]),
            ],
        },
        status=status,
    )


@router.post("/projects/{project}/connectors/{connector_id}/connect/credentials")
async def save_credentials(
    request: Request, posted: Checked, project: str, connector_id: str
) -> Response:
    step = await _posted_step(request, posted, project, connector_id)
    if isinstance(step, Response):
        return step
    page, connector, flow, draft = step
    typed = {k: v for k, v in posted.form.fields("credentials").items() if v.strip()}
    draft.credentials = {**draft.credentials, **typed}
    draft.check = None  # other credentials: the last check says nothing about them
    try:
        draft.credentials = check_credentials(
            connector.descriptor, draft.credentials, provided=flow.provided
        )
    except ValidationFailed as failed:
        errors, other = field_errors(failed)
        # Kept as typed (unknown names dropped), so valid fields need not be typed again.
        declared = {f.key for f in connector.descriptor.credential_fields()} | {AUTH_METHOD_KEY}
        draft.credentials = {k: v for k, v in draft.credentials.items() if k in declared}
        response = _render_step(
            page, connector, flow, draft, "credentials", errors, other, status=422
        )
        return save_draft(response, request, posted.session, project, connector_id, draft)
    response = to_step(project, connector_id, flow.after("credentials"))
    return save_draft(response, request, posted.session, project, connector_id, draft)


@router.post("/projects/{project}/connectors/{connector_id}/connect/configuration")
async def save_configuration(
    request: Request, posted: Checked, project: str, connector_id: str
) -> Response:
    step = await _posted_step(request, posted, project, connector_id)
    if isinstance(step, Response):
        return step
    page, connector, flow, draft = step
    typed = posted.form.fields("config")
    try:
        config = check_config(connector.descriptor, typed)
    except ValidationFailed as failed:
        errors, other = field_errors(failed)
        return _render_step(
            page,
            connector,
            flow,
            draft,
            "configuration",
            errors,
            other,
            status=422,
            typed_config=typed,
        )
    if config != draft.config:
        draft.check = None
    draft.config = config
    response = to_step(project, connector_id, flow.after("configuration"))
    return save_draft(response, request, posted.session, project, connector_id, draft)


@router.post("/projects/{project}/connectors/{connector_id}/connect/test")
async def test_draft(
    request: Request, posted: Checked, project: str, connector_id: str
) -> Response:
    step = await _posted_step(request, posted, project, connector_id)
    if isinstance(step, Response):
        return step
    page, connector, flow, draft = step
    if flow.allowed("test", draft) != "test":
        return to_step(project, connector_id, flow.first_open(draft))
    check, credentials = await check_unsaved(
        page.context, connector, draft.credentials, draft.config or {}
    )
    draft.check = check
    draft.credentials = credentials
    response = to_step(project, connector_id, "test")
    return save_draft(response, request, posted.session, project, connector_id, draft)


@router.post("/projects/{project}/connectors/{connector_id}/connect/confirm")
async def confirm(request: Request, posted: Checked, project: str, connector_id: str) -> Response:
    step = await _posted_step(request, posted, project, connector_id)
    if isinstance(step, Response):
        return step
    page, connector, flow, draft = step
    if flow.allowed("confirm", draft) != "confirm":
        return to_step(project, connector_id, flow.first_open(draft))
    context = page.context
    try:
        await context.instances.create(
            project,
            connector_id,
            credentials=draft.credentials,
            config=draft.config or {},
            enabled=True,
        )
    except ConflictError:
        return (await _connector_and_existing(page, connector_id))[1] or redirect(
            f"/projects/{project}/instances/{connector_id}"
        )
    web_state(request).gateway.forget(project, connector_id)
    await _record_check(context, project, connector_id, draft.check)
    response = redirect(f"/projects/{project}/instances/{connector_id}")
    drop_draft(response, request, project, connector_id)
    name = connector.descriptor.name
    return flash(response, request, "ok", f"{name} is connected to project {project}.")


async def _record_check(
    context: UcfContext, project: str, connector_id: str, check: CheckView | None
) -> None:
    """The setup's check, when recent, is the new instance's first health observation."""
    if check is None or context.clock() - check.checked_at() > FRESH_CHECK:
        return
    observation = classify(
        Outcome(check.outcome),
        at=check.checked_at(),
        policy=HealthPolicy(),
        latency_ms=check.latency_ms,
        error=check.error,
    )
    try:
        await context.store.instances.record_health(project, connector_id, observation)
    except NotFound:  # disconnected meanwhile
        return


@router.post("/projects/{project}/connectors/{connector_id}/connect/cancel")
async def cancel(request: Request, posted: Checked, project: str, connector_id: str) -> Response:
    project_or_404(project)
    response = redirect(f"/projects/{project}/connectors")
    drop_draft(response, request, project, connector_id)
    return response
