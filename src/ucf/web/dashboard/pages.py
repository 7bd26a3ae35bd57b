"""The catalogue (§8.1), the monitoring of connected instances (§8.3) and the signals view.

Routes call the use cases of :mod:`ucf.service` directly; every change is a
CSRF-checked POST answered with a redirect and a one-time message.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request, Response

from ucf.core.descriptor import CONNECTOR_CATEGORIES
from ucf.core.side_by_side import both
from ucf.service.connectors import Connector
from ucf.service.errors import ConflictError
from ucf.service.health import test_connection
from ucf.service.instances import Instance
from ucf.service.poll import poll_instance
from ucf.stores.errors import InvalidCursor
from ucf.stores.models import InstanceRecord, SignalCounts, SignalQuery
from ucf.web.dashboard.rendering import redirect
from ucf.web.dashboard.routing import (
    FALLBACK_PAGE,
    DashboardRoute,
    Page,
    PageNotFound,
    Posted,
    checked_form,
    flash,
    project_or_404,
    require_session,
)
from ucf.web.dashboard.security import Session
from ucf.web.state import web_state

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

Sessioned = Annotated[Session, Depends(require_session)]
Checked = Annotated[Posted, Depends(checked_form)]

HEALTH_LABELS: Final = {
    "healthy": "Healthy",
    "degraded": "Degraded",
    "error": "Error",
    "unknown": "Not checked yet",
}


POLL_FAILURES: Final = {
    "failed": "The poll failed.",
    "stopped": "The poll was stopped by a shutdown; its stored pages are kept.",
    "conflict": "Another worker moved this instance's checkpoint; the poll stopped.",
}

# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class Card:
    connector: Connector
    instance_enabled: bool | None
    """None: not configured in this project."""

    @property
    def connected(self) -> bool:
        return self.instance_enabled is not None


@router.get("/projects/{project}/connectors")
async def catalogue(
    request: Request,
    session: Sessioned,
    project: str,
    q: str = "",
    category: str = "",
) -> Response:
    page = Page(request, session, project_or_404(project), "catalogue")
    context = page.context
    chosen = category if category in CONNECTOR_CATEGORIES else ""
    everything = await context.connectors.list()
    shown = await context.connectors.list(category=chosen or None, query=q.strip() or None)
    records = await context.store.instances.list_by_project(page.project)
    enabled = {r.connector_id: r.enabled for r in records}
    counts: Counter[str] = Counter(c.descriptor.category for c in everything)
    # The Custom filter also lists every connector a user added (see ConnectorService.list).
    counts["Custom"] = sum(
        1 for c in everything if c.descriptor.category == "Custom" or not c.built_in
    )
    return page.render(
        "catalogue.html",
        {
            "cards": [
                Card(c, enabled.get(c.id))
                for c in sorted(shown, key=lambda c: c.descriptor.name.lower())
            ],
            "q": q.strip(),
            "category": chosen,
            "categories": [(name, counts.get(name, 0)) for name in CONNECTOR_CATEGORIES],
            "total": len(everything),
            "connected_count": len(records),
        },
    )


# --------------------------------------------------------------------------- monitoring


@dataclass(frozen=True)
class InstanceView:
    instance: Instance
    counts: SignalCounts
    webhook_url: str | None
    interval_override: timedelta | None = None
    """``UCF_POLL_INTERVAL_OVERRIDE``: every instance polls this often, whatever its
    descriptor says (the sandbox's 5 s were shown as the catalogue's minutes)."""

    @property
    def connector(self) -> Connector:
        return self.instance.connector

    @property
    def record(self) -> InstanceRecord:
        return self.instance.record

    @property
    def polls(self) -> bool:
        return self.connector.polls

    @property
    def interval(self) -> str:
        if self.interval_override is not None:
            return f"{self.interval_override.total_seconds():g} s"
        schedule = self.connector.schedule
        seconds = schedule.interval_seconds if schedule is not None else 0
        if seconds % 3600 == 0:
            return f"{seconds // 3600} h"
        return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"

    @property
    def health(self) -> str:
        return str(self.record.health_state) if self.record.enabled else "disabled"

    @property
    def health_label(self) -> str:
        if not self.record.enabled:
            return "Disabled"
        return HEALTH_LABELS.get(self.record.health_state, str(self.record.health_state))

    @property
    def base(self) -> str:
        return f"/projects/{self.record.project_id}/instances/{self.record.connector_id}"


async def _view(page: Page, instance: Instance) -> InstanceView:
    context = page.context
    record = instance.record
    counts = await context.store.signals.counts(
        record.project_id, record.connector_id, now=context.clock()
    )
    webhook = (
        web_state(page.request).webhook_url(
            page.request, record.connector_id, record.project_id, instance.hook_id
        )
        if instance.connector.receives_webhooks
        else None
    )
    return InstanceView(instance, counts, webhook, context.settings.poll_interval_override)


@router.get("/projects/{project}/instances")
async def instances(request: Request, session: Sessioned, project: str) -> Response:
    page = Page(request, session, project_or_404(project), "instances")
    found = await page.context.instances.list(page.project)
    views = [await _view(page, i) for i in found]
    views.sort(key=lambda v: v.connector.descriptor.name.lower())
    states = Counter(v.health for v in views)
    return page.render("instances.html", {"views": views, "states": states})


def verifying_credential(instance: Instance) -> tuple[str, str] | None:
    """The key and label of the stored credential the gateway verifies deliveries with,
    or None when deliveries need no stored secret: no verification, a native connector
    (its handler decides: SNS's certificate, the secret Asana hands over), or a handshake
    that hands the secret over (Notion). The page named it "the webhook secret you
    stored" for all of them.
    """
    descriptor = instance.connector.descriptor
    webhook = descriptor.webhook
    if webhook is None or any(h.captures_secret for h in webhook.handshakes):
        return None
    check = {"signature": webhook.signature, "token": webhook.token}.get(webhook.verification)
    if check is None:
        return None
    key = check.secret_credential
    labels = {f.key: f.label for f in descriptor.credential_fields()}
    return key, labels.get(key, key)


def missing_webhook_secret(instance: Instance, provided: frozenset[str]) -> str | None:
    """The label of :func:`verifying_credential` when the instance has none: every
    delivery is then refused (401), and only the server log said why."""
    credential = verifying_credential(instance)
    if credential is None:
        return None
    key, label = credential
    return None if key in (instance.masked or {}) or key in provided else label


@router.get("/projects/{project}/instances/{connector_id}")
async def instance(
    request: Request, session: Sessioned, project: str, connector_id: str
) -> Response:
    page = Page(request, session, project_or_404(project), "instances")
    view = await _view(page, await page.context.instances.get(page.project, connector_id))
    descriptor = view.connector.descriptor
    reconnect = descriptor.consent() is not None
    provided = await page.context.instances.provided_credentials(descriptor)
    missing = missing_webhook_secret(view.instance, provided) if view.webhook_url else None
    credential = verifying_credential(view.instance)
    return page.render(
        "instance.html",
        {
            "view": view,
            "reconnect": reconnect,
            "provided": provided,
            "missing_secret": missing,
            "webhook_secret": None if credential is None else _in_sentence(credential[1]),
            "shown_config": view.instance.shown_config,
        },
    )


def _in_sentence(label: str) -> str:
    """A field label inside a sentence: "Signing secret" as "signing secret", "API key"
    as it is."""
    return label[0].lower() + label[1:] if label[1:2].islower() else label


def _back(posted: Posted, project: str, connector_id: str) -> str:
    """Where an action returns to: the page it was started from (the list or the detail)."""
    listing = f"/projects/{project}/instances"
    back = posted.form.get("back")
    return back if back in (listing, f"{listing}/{connector_id}") else f"{listing}/{connector_id}"


@router.post("/projects/{project}/instances/{connector_id}/test")
async def test_instance(
    request: Request, posted: Checked, project: str, connector_id: str
) -> Response:
    project_or_404(project)
    result = await test_connection(web_state(request).context, project, connector_id)
    response = redirect(_back(posted, project, connector_id))
    label = HEALTH_LABELS.get(result.state, result.state)
    if not result.recorded:  # the check did not run; the health shown is unchanged
        return flash(response, request, "info", "Connection test did not run.", result.error)
    if result.ok:
        text = f"Connection test passed: {label.lower()}, {result.latency_ms:.0f} ms."
        return flash(response, request, "ok", text)
    status = f" (HTTP {result.http_status})" if result.http_status else ""
    return flash(
        response,
        request,
        "error",
        f"Connection test failed{status}. Health: {label}.",
        result.error,
    )


@router.post("/projects/{project}/instances/{connector_id}/poll")
async def poll_now(request: Request, posted: Checked, project: str, connector_id: str) -> Response:
    project_or_404(project)
    state = web_state(request)
    context = state.context
    record = await context.instances.record(project, connector_id)
    connector = await context.connectors.get(connector_id)
    response = redirect(_back(posted, project, connector_id))
    if not connector.polls:
        raise ConflictError(f"{connector.descriptor.name} receives webhooks only; nothing to poll")
    if not record.enabled:
        return flash(response, request, "error", "The instance is disabled; enable it to poll.")
    result = await poll_instance(context, project, connector_id, owner=state.worker_id)
    state.metrics.observe_poll(result)
    if result.status == "skipped":
        return flash(response, request, "info", "A poll of this instance is already running.")
    if not result.ok:
        return flash(
            response,
            request,
            "error",
            POLL_FAILURES.get(result.status, "The poll failed."),
            result.error,
        )
    new = f"{result.inserted} new signal{'s' if result.inserted != 1 else ''}"
    pages = f"{result.pages} page{'s' if result.pages != 1 else ''}"
    detail = f"{result.duplicates} already stored" if result.duplicates else None
    return flash(
        response,
        request,
        "ok",
        f"Polled {connector.descriptor.name}: {new} from {pages} in {result.duration_seconds:.1f} s.",
        detail,
    )


@router.post("/projects/{project}/instances/{connector_id}/enabled")
async def set_enabled(
    request: Request, posted: Checked, project: str, connector_id: str
) -> Response:
    project_or_404(project)
    state = web_state(request)
    wanted = posted.form.get("enabled") == "1"
    updated = await state.context.instances.update(project, connector_id, enabled=wanted)
    state.gateway.forget(project, connector_id)
    name = updated.connector.descriptor.name
    response = redirect(_back(posted, project, connector_id))
    if wanted:
        return flash(response, request, "ok", f"{name} is enabled: polls and webhooks resume.")
    return flash(response, request, "info", f"{name} is disabled: no polls, webhooks refused.")


@router.post("/projects/{project}/instances/{connector_id}/webhook-url")
async def new_webhook_url(
    request: Request, posted: Checked, project: str, connector_id: str
) -> Response:
    project_or_404(project)
    state = web_state(request)
    await state.context.instances.new_webhook_url(project, connector_id)
    state.gateway.forget(project, connector_id)
    response = redirect(_back(posted, project, connector_id))
    return flash(
        response,
        request,
        "ok",
        "New webhook URL: give it to the provider; the old one no longer works.",
    )


@router.post("/projects/{project}/instances/{connector_id}/pending-secrets/{pending_id}/confirm")
async def confirm_pending(
    request: Request, posted: Checked, project: str, connector_id: str, pending_id: str
) -> Response:
    """The operator's word that this is the secret the provider knows (for Notion: the token
    its Verify dialog accepted); from now on deliveries are verified with it."""
    project_or_404(project)
    state = web_state(request)
    await state.context.instances.confirm_pending(project, connector_id, pending_id)
    state.gateway.forget(project, connector_id)
    response = redirect(_back(posted, project, connector_id))
    return flash(response, request, "ok", "Confirmed: deliveries are now verified with it.")


@router.post("/projects/{project}/instances/{connector_id}/pending-secrets/{pending_id}/discard")
async def discard_pending(
    request: Request, posted: Checked, project: str, connector_id: str, pending_id: str
) -> Response:
    project_or_404(project)
    await web_state(request).context.instances.discard_pending(project, connector_id, pending_id)
    response = redirect(_back(posted, project, connector_id))
    return flash(response, request, "info", "Discarded.")


@router.get("/projects/{project}/instances/{connector_id}/disconnect")
async def disconnect_page(
    request: Request, session: Sessioned, project: str, connector_id: str
) -> Response:
    page = Page(request, session, project_or_404(project), "instances")
    view = await _view(page, await page.context.instances.get(page.project, connector_id))
    return page.render("disconnect.html", {"view": view})


@router.post("/projects/{project}/instances/{connector_id}/disconnect")
async def disconnect(
    request: Request, posted: Checked, project: str, connector_id: str
) -> Response:
    project_or_404(project)
    state = web_state(request)
    connector = await state.context.connectors.get(connector_id)
    await state.context.instances.delete(project, connector_id)
    state.gateway.forget(project, connector_id)
    response = redirect(f"/projects/{project}/instances")
    return flash(
        response,
        request,
        "ok",
        f"{connector.descriptor.name} is disconnected; its credentials are deleted, "
        "its signals stay.",
    )


# --------------------------------------------------------------------------- signals

WINDOWS: Final[dict[str, tuple[str, timedelta | None]]] = {
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "all": ("Any time", None),
}
PAGE_SIZE: Final = 50


@dataclass(frozen=True)
class SignalRow:
    signal: dict[str, Any]
    connector: Connector | None
    at: datetime | None

    @property
    def metadata(self) -> dict[str, Any]:
        value = self.signal.get("metadata")
        return value if isinstance(value, dict) else {}

    @property
    def priority(self) -> str | None:
        value = self.metadata.get("priority")
        return value if isinstance(value, str) else None

    def listed(self, name: str) -> list[str]:
        value = self.metadata.get(name)
        return [str(v) for v in value] if isinstance(value, list) else []


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.get("/projects/{project}/signals")
async def signals(
    request: Request,
    session: Sessioned,
    project: str,
    source: str = "",
    type: str = "",
    window: str = "all",
    cursor: str = "",
) -> Response:
    page = Page(request, session, project_or_404(project), "signals")
    context = page.context
    window = window if window in WINDOWS else "all"
    span = WINDOWS[window][1]
    filters = SignalQuery(
        source=source.strip() or None,
        type=type.strip() or None,
        since=page.now - span if span is not None else None,
    )
    connectors, found = await both(
        context.connectors.list(),
        _query(page, filters, cursor.strip() or None),
    )
    by_id = {c.id: c for c in connectors}
    rows = [
        SignalRow(
            s.signal, by_id.get(str(s.signal.get("source"))), _parse_time(s.signal.get("timestamp"))
        )
        for s in found.items
    ]
    records = await context.store.instances.list_by_project(page.project)
    sources = sorted({r.connector_id for r in records} | ({source} if source else set()))
    return page.render(
        "signals.html",
        {
            "rows": rows,
            "next_cursor": found.next_cursor,
            "cursor": cursor.strip(),
            "source": source.strip(),
            "type": type.strip(),
            "window": window,
            "windows": [(key, label) for key, (label, _) in WINDOWS.items()],
            "sources": [(s, by_id[s].descriptor.name if s in by_id else s) for s in sources],
            "connected": bool(records),
        },
    )


async def _query(page: Page, filters: SignalQuery, cursor: str | None) -> Any:
    try:
        return await page.context.store.signals.query(
            page.project, filters, limit=PAGE_SIZE, cursor=cursor
        )
    except InvalidCursor:
        raise PageNotFound(
            "That page of signals no longer exists; start from the newest."
        ) from None


# --------------------------------------------------------------------------- anything else

fallback = APIRouter(route_class=DashboardRoute, include_in_schema=False)


@fallback.get(FALLBACK_PAGE)
async def not_a_page(request: Request, session: Sessioned, project: str, rest: str) -> Response:
    """A mistyped dashboard address gets a page, not the API's JSON 404."""
    raise PageNotFound(f"There is no page at {request.url.path}.")
