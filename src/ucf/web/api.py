"""The management API (SPEC §5.2, §8): connectors, instances, signals. Bearer token, JSON.

Routes map one to one onto use cases of :mod:`ucf.service`; nothing here
decides anything a CLI or a Lambda handler would need to decide again.
Credentials are write-only: instances come back with them masked
(``••••1234`` at most), and errors never echo what was sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from ucf.core.jsonpath import MISSING
from ucf.core.payload import payload_or_missing
from ucf.core.validation import Problem, validate_descriptor
from ucf.service.connectors import Edited, runnable_problem
from ucf.service.errors import ConflictError, NotFoundError, ValidationFailed
from ucf.service.health import test_connection
from ucf.service.instances import Instance
from ucf.service.oauth import CALLBACK_PATH, OAuthFlows
from ucf.service.poll import poll_instance
from ucf.service.preview import item_errors_json, preview_sample, sign_sample, signals_json
from ucf.service.tryout import (
    MAX_TRY_PAGES,
    SampleDelivery,
    try_delivery,
    try_descriptor,
    tryout_json,
)
from ucf.stores.models import DescriptorVersion, SignalQuery, utc
from ucf.web.access import TokenFirstRoute, TokenOrPageRoute
from ucf.web.bodies import repeated_keys
from ucf.web.errors import ErrorBody
from ucf.web.preconditions import if_match
from ucf.web.state import WebState, web_state


async def current_state(request: Request) -> WebState:
    """``web_state`` as a dependency: async, so FastAPI does not hop to a thread for it."""
    return web_state(request)


_bearer = HTTPBearer(auto_error=False, description="The admin API token (UCF_API_TOKEN).")
"""Only to document the scheme in OpenAPI: :class:`TokenFirstRoute` checks the token,
before the body is read."""


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body could not be read (not UTF-8 JSON)"},
    401: {"model": ErrorBody, "description": "Missing or wrong API token"},
    429: {"model": ErrorBody, "description": "Too many wrong tokens from this address"},
    404: {"model": ErrorBody, "description": "Not found"},
    413: {"model": ErrorBody, "description": "Body over the limit (1 MiB)"},
    422: {"model": ErrorBody, "description": "Invalid request; every problem with its path"},
}

DESCRIPTOR_BODY = "x-ucf-descriptor-body"
"""Marks operations whose body is a descriptor: the app's OpenAPI document gives them
the descriptor language's JSON Schema (validated in full by the service, with paths)."""

router = APIRouter(
    prefix="/api",
    dependencies=[Depends(_bearer)],
    responses=_ERRORS,
    route_class=TokenFirstRoute,
)

State = Annotated[WebState, Depends(current_state)]
ConnectorId = Annotated[str, Path(alias="connectorId")]
ProjectId = Annotated[str, Path(alias="projectId")]
SignalId = Annotated[str, Path(alias="signalId")]


# --------------------------------------------------------------------------- bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)


class InstanceCreate(_Body):
    connector_id: str = Field(alias="connectorId", min_length=1, max_length=200)
    credentials: dict[str, Any] = Field(
        default_factory=dict, description="Write-only; returned masked at most."
    )
    config: dict[str, Any] = Field(default_factory=dict)
    enabled: StrictBool = True


class InstancePatch(_Body):
    credentials: dict[str, Any] | None = Field(
        default=None, description="Merged into the stored credentials (rotation)."
    )
    config: dict[str, Any] | None = None
    enabled: StrictBool | None = None


class OAuthClientBody(_Body):
    client_id: str = Field(alias="clientId", min_length=1, max_length=500)
    client_secret: str = Field(
        alias="clientSecret", min_length=1, max_length=2000, description="Write-only."
    )


class OAuthStart(_Body):
    config: dict[str, Any] = Field(
        default_factory=dict, description="The instance's settings (configFields)."
    )
    credentials: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Write-only: credentials the consent does not give (GitHub PRs' webhookSecret), "
            "by name as an instance takes them; not the OAuth app's client id or secret, nor "
            "tokens. Kept encrypted until the callback stores them on the instance."
        ),
    )


# --------------------------------------------------------------------------- connectors


@router.get("/connectors", tags=["connectors"], summary="The connector catalogue")
async def list_connectors(
    state: State,
    category: Annotated[str | None, Query()] = None,
    q: Annotated[str | None, Query(description="Search in name, id and description")] = None,
) -> dict[str, Any]:
    connectors = await state.context.connectors.list(category=category, query=q)
    return {"items": [connector.to_json() for connector in connectors]}


@router.post(
    "/connectors",
    status_code=201,
    tags=["connectors"],
    summary="Register a custom descriptor",
    responses={409: {"model": ErrorBody, "description": "A connector with this id exists"}},
    openapi_extra={DESCRIPTOR_BODY: True},
)
async def register_connector(
    state: State, request: Request, descriptor: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    await _refuse_duplicate_keys(request)
    return (await state.context.connectors.register(descriptor)).to_json()


async def _refuse_duplicate_keys(request: Request) -> None:
    """422 for a body that gives a key twice in one object: the parsed body kept the last
    silently, and validation (which sees only that) would have stored it."""
    repeated = await repeated_keys(request)
    if repeated:
        raise ValidationFailed.from_problems("the request body is not a valid descriptor", repeated)


_PRECONDITION: Final[dict[int | str, dict[str, Any]]] = {
    412: {
        "model": ErrorBody,
        "description": (
            "If-Match names none of the stored version's ETags: another edit was saved "
            "since (details: its version and etag)"
        ),
    }
}
_IF_MATCH = (
    "Write only if the connector is still at this version: the ETag its GET answered "
    "(RFC 9110 §13.1.1; a list, or * for any). Without it, the write is made as always."
)
IfMatch = Annotated[str | None, Header(alias="If-Match", description=_IF_MATCH)]
"""Documents ``If-Match`` in OpenAPI; :func:`if_match` reads every line of it."""


@router.get(
    "/connectors/{connectorId}",
    tags=["connectors"],
    summary="One connector; its ETag names the stored version (for If-Match on writes)",
)
async def get_connector(
    state: State, response: Response, connector_id: ConnectorId
) -> dict[str, Any]:
    connector = await state.context.connectors.get(connector_id)
    response.headers["ETag"] = connector.etag
    return connector.to_json()


@router.put(
    "/connectors/{connectorId}",
    tags=["connectors"],
    summary="Replace a descriptor (its version raised if the edit did not; the old one kept)",
    responses={
        409: {"model": ErrorBody, "description": "Changed meanwhile: try again"},
        **_PRECONDITION,
    },
    openapi_extra={DESCRIPTOR_BODY: True},
)
async def update_connector(
    state: State,
    request: Request,
    response: Response,
    connector_id: ConnectorId,
    descriptor: Annotated[dict[str, Any], Body()],
    _if_match: IfMatch = None,
) -> dict[str, Any]:
    await _refuse_duplicate_keys(request)
    edited = await state.context.instances.update_connector(
        connector_id, descriptor, if_match=if_match(request)
    )
    return await _edited(state, response, edited)


async def _edited(state: WebState, response: Response, edited: Edited) -> dict[str, Any]:
    """A replaced descriptor's answer: the connector as stored (its ETag, for the next
    write's If-Match), whether its version was raised for the caller, and the instances
    the edit no longer fits."""
    updated = edited.connector
    response.headers["ETag"] = updated.etag
    state.gateway.forget_connector(updated.id)
    # As the editor's Save says: the instances the edit no longer fits fail from their
    # next poll, and an API caller had no way to know which to fix.
    unfit = await state.context.instances.unfit_settings(updated)
    return {
        **updated.to_json(),
        "versionRaised": edited.version_raised,
        "unfitInstances": [{"projectId": p, "problems": list(said)} for p, said in unfit],
    }


def _version_json(version: DescriptorVersion) -> dict[str, Any]:
    return {
        "version": version.version,
        "savedAt": version.saved_at.isoformat(),
        "replacedAt": version.replaced_at.isoformat(),
    }


@router.get(
    "/connectors/{connectorId}/versions",
    tags=["connectors"],
    summary="The descriptors edits replaced, newest first, after the current one",
)
async def connector_versions(state: State, connector_id: ConnectorId) -> dict[str, Any]:
    connector, versions = await state.context.connectors.versions(connector_id)
    return {
        "current": {
            "version": connector.descriptor.version,
            "savedAt": connector.updated_at.isoformat(),
        },
        "items": [_version_json(v) for v in versions],
    }


@router.get(
    "/connectors/{connectorId}/versions/{version:path}",
    tags=["connectors"],
    summary="One earlier version of a descriptor",
)
async def connector_version(
    state: State, connector_id: ConnectorId, version: Annotated[str, Path()]
) -> dict[str, Any]:
    # ``{version:path}``: a version is any string, and one holding ``/`` (``2024/05``,
    # sent ``%2F`` but decoded before routing) matched no route: never readable here.
    found = await state.context.connectors.version(connector_id, version)
    return {**_version_json(found), "descriptor": found.descriptor}


@router.post(
    "/connectors/{connectorId}/versions/{version:path}/restore",
    tags=["connectors"],
    summary="Go back to an earlier version (stored as a new edit, its version raised)",
    responses={
        409: {"model": ErrorBody, "description": "Changed meanwhile: try again"},
        **_PRECONDITION,
    },
)
async def restore_connector_version(
    state: State,
    request: Request,
    response: Response,
    connector_id: ConnectorId,
    version: Annotated[str, Path()],
    _if_match: IfMatch = None,
) -> dict[str, Any]:
    restored = await state.context.instances.restore_connector(
        connector_id, version, if_match=if_match(request)
    )
    return await _edited(state, response, restored)


@router.delete(
    "/connectors/{connectorId}",
    status_code=204,
    tags=["connectors"],
    summary="Delete a custom descriptor",
    responses={
        403: {"model": ErrorBody, "description": "Built-in connectors cannot be deleted"},
        409: {"model": ErrorBody, "description": "Still connected in a project"},
        **_PRECONDITION,
    },
)
async def delete_connector(
    state: State, request: Request, connector_id: ConnectorId, _if_match: IfMatch = None
) -> Response:
    await state.context.connectors.delete(connector_id, if_match=if_match(request))
    state.gateway.forget_connector(connector_id)
    return Response(status_code=204)


# --------------------------------------------------------------------------- authoring

authoring = APIRouter(
    prefix="/api",
    dependencies=[Depends(_bearer)],
    responses=_ERRORS,
    route_class=TokenOrPageRoute,
)
"""The connector editor's routes: also open to the dashboard's session (see above)."""


PREVIEW_SWITCHES: Final = (
    'set "The sample is" to "a poll response" (mode "poll")',
    'set "The sample is" to "a webhook delivery" (mode "webhook")',
)
"""How the editor's user (and an API client: ``mode``) picks each mode, in its notes and
hints: the editor's own control, as ``ucf map`` names its ``--poll`` and ``--webhook``."""


class PreviewRequest(_Body):
    descriptor: dict[str, Any] = Field(description="The descriptor being written (not stored).")
    sample: Any = Field(
        default=None, description="A saved poll response, or a webhook delivery's JSON body."
    )
    mode: Literal["poll", "webhook", "auto"] = Field(
        default="auto",
        description=(
            "What the sample is. 'auto': a webhook delivery for a webhook-only connector or "
            "when headers are given, a poll response otherwise."
        ),
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="The delivery's headers (event type, delivery id)."
    )
    project: str = Field(default="preview", min_length=1, max_length=200)
    body: str | None = Field(
        default=None,
        description=(
            "The delivery's raw body, byte for byte: a signature is checked over these "
            "bytes, and the sample is read from them."
        ),
    )
    secret: str | None = Field(
        default=None,
        description="The webhook signing secret or token: check the delivery as the gateway would.",
    )
    sign: bool = Field(
        default=False,
        description=(
            "Sign 'body' with 'secret' as the descriptor says (the gateway's own code) and "
            "preview it with those headers added; they are returned as 'signedHeaders'."
        ),
    )


class DeliveryBody(_Body):
    body: str = Field(description="The delivery's body as the provider sends it (JSON).")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Its headers (event type, delivery id), if any."
    )
    event_type: str | None = Field(
        default=None,
        alias="eventType",
        max_length=200,
        description="Sent in the descriptor's event-type header when 'headers' lack it.",
    )


class TryRequest(_Body):
    descriptor: dict[str, Any] = Field(description="The descriptor being written (not stored).")
    delivery: DeliveryBody | None = Field(
        default=None,
        description=(
            "A webhook connector's try: a sample delivery mapped as the gateway maps it "
            "(no signature needed, nothing stored); no request is sent."
        ),
    )
    credentials: dict[str, Any] = Field(
        default_factory=dict, description="For this request only: never stored or echoed."
    )
    config: dict[str, Any] = Field(default_factory=dict)
    max_pages: int = Field(default=1, ge=1, le=MAX_TRY_PAGES, alias="maxPages")


def _replaced(headers: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    """``headers`` with ``new`` laid over them, names compared case-insensitively."""
    names = {name.lower() for name in new}
    return {**{k: v for k, v in headers.items() if k.lower() not in names}, **new}


def _problems_json(problems: Sequence[Problem], prefix: str = "") -> list[dict[str, Any]]:
    return [
        {
            "path": f"{prefix}.{p.path}" if prefix and p.path else prefix or p.path,
            "message": p.message,
            "hint": p.hint,
        }
        for p in problems
    ]


@authoring.post(
    "/connectors/validate",
    tags=["authoring"],
    summary="Every problem of a descriptor, shape and meaning, in one pass (nothing stored)",
    openapi_extra={DESCRIPTOR_BODY: True},
)
async def validate_connector(
    request: Request, descriptor: Annotated[Any, Body()]
) -> dict[str, Any]:
    # Any JSON: what is no object is a problem of the descriptor at its root, as ucf
    # connectors validate says for such a file, not a refusal of the request.
    parsed, problems = validate_descriptor(descriptor)
    # A key given twice: the parsed body kept the last; its parse noted the others.
    problems = [*await repeated_keys(request), *problems]
    if parsed is not None:
        cannot_run = runnable_problem(parsed)
        if cannot_run is not None:  # saving would refuse it: say so while it is typed
            problems = [*problems, cannot_run]
    return {"valid": parsed is not None and not problems, "problems": _problems_json(problems)}


@authoring.post(
    "/connectors/preview",
    tags=["authoring"],
    summary="Map a sample poll response or webhook delivery offline (no network, nothing stored)",
)
async def preview_connector(state: State, request: Request, body: PreviewRequest) -> dict[str, Any]:
    parsed, problems = validate_descriptor(body.descriptor)
    # Keys the descriptor gives twice, as its validation says them (an API caller's raw
    # JSON; the editor sends what the browser parsed, which has none left).
    problems = [*await repeated_keys(request, "descriptor"), *problems]
    if parsed is None or problems:
        return {
            "signals": [],
            "itemErrors": [],
            "problems": _problems_json(problems, "descriptor"),
            "notes": [],
        }
    if body.body is not None:
        try:
            raw = body.body.encode()
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" in the request's JSON)
            raw, sample = b"", MISSING
            problem = Problem(
                "body",
                "the body holds a lone surrogate, which no delivery's bytes can carry",
                "paste the body exactly as the provider sent it",
            )
        else:
            sample = payload_or_missing(raw)
            problem = Problem("body", "the body is not JSON")
        if sample is MISSING:
            return {
                "signals": [],
                "itemErrors": [],
                "problems": _problems_json([problem]),
                "notes": [],
            }
    else:
        raw = json.dumps(body.sample, separators=(",", ":")).encode()
        sample = body.sample
    signed: dict[str, str] = {}
    if body.sign:
        signing = sign_sample(parsed, raw, body.secret, state.context.clock())
        if isinstance(signing, Problem):
            return {
                "signals": [],
                "itemErrors": [],
                "problems": _problems_json([signing]),
                "notes": [],
            }
        signed = signing
    preview = await preview_sample(
        parsed,
        sample,
        body=raw,
        headers=_replaced(body.headers, signed),
        mode=body.mode,
        project_id=body.project,
        now=state.context.clock(),
        switches=PREVIEW_SWITCHES,
        secret=body.secret,
    )
    return {
        "mode": preview.mode,
        "eventType": preview.event_type,
        "verification": preview.verification,
        "handshake": preview.handshake,
        "signals": signals_json(preview, state.context.sanitiser),
        "itemErrors": item_errors_json(preview.result),
        "skipped": preview.result.skipped,
        "problems": _problems_json(preview.problems),
        "notes": preview.notes,
        "signedHeaders": signed,
    }


@authoring.post(
    "/connectors/try",
    tags=["authoring"],
    summary=(
        "One live poll page of a descriptor: request (masked), response, signals; or, with "
        "'delivery', what a webhook delivery maps to; nothing stored"
    ),
)
async def try_connector(state: State, request: Request, body: TryRequest) -> dict[str, Any]:
    repeated = await repeated_keys(request, "descriptor")  # as in a preview
    if body.delivery is not None:
        sample = SampleDelivery(body.delivery.body, body.delivery.headers, body.delivery.event_type)
        delivered = await try_delivery(
            state.context, body.descriptor, sample, text_problems=repeated
        )
        return tryout_json(delivered, state.context)
    tried = await try_descriptor(
        state.context,
        body.descriptor,
        credentials=body.credentials,
        config=body.config,
        max_pages=body.max_pages,
        text_problems=repeated,
    )
    return tryout_json(tried, state.context)


# --------------------------------------------------------------------------- instances


def _webhook_urls(
    state: WebState, request: Request, connector_id: str, project_id: str, hook_id: str | None
) -> dict[str, str | None]:
    """``webhookUrl``: the one to give the provider — the instance's own, unguessable URL
    (the shared one for an instance made before hook ids; ``POST …/webhook-url`` makes
    one). ``sharedWebhookUrl``: connector and project only, for signed deliveries."""
    return {
        "webhookUrl": state.webhook_url(request, connector_id, project_id, hook_id),
        "sharedWebhookUrl": state.webhook_url(request, connector_id, project_id),
    }


def _instance(state: WebState, request: Request, instance: Instance) -> dict[str, Any]:
    body = instance.to_json()
    record = instance.record
    if instance.connector.receives_webhooks:
        body.update(
            _webhook_urls(state, request, record.connector_id, record.project_id, instance.hook_id)
        )
    else:
        body.update({"webhookUrl": None, "sharedWebhookUrl": None})
    return body


@router.get("/projects/{projectId}/instances", tags=["instances"])
async def list_instances(state: State, request: Request, project_id: ProjectId) -> dict[str, Any]:
    instances = await state.context.instances.list(project_id)
    return {"items": [_instance(state, request, i) for i in instances]}


@router.post(
    "/projects/{projectId}/instances",
    status_code=201,
    tags=["instances"],
    summary="Connect a connector to a project",
    responses={409: {"model": ErrorBody, "description": "Already connected in this project"}},
)
async def create_instance(
    state: State, request: Request, project_id: ProjectId, body: InstanceCreate
) -> dict[str, Any]:
    instance = await state.context.instances.create(
        project_id,
        body.connector_id,
        credentials=body.credentials,
        config=body.config,
        enabled=body.enabled,
    )
    state.gateway.forget(project_id, body.connector_id)
    return _instance(state, request, instance)


@router.get("/projects/{projectId}/instances/{connectorId}", tags=["instances"])
async def get_instance(
    state: State, request: Request, project_id: ProjectId, connector_id: ConnectorId
) -> dict[str, Any]:
    return _instance(state, request, await state.context.instances.get(project_id, connector_id))


@router.patch(
    "/projects/{projectId}/instances/{connectorId}",
    tags=["instances"],
    summary="Rotate credentials, change settings, enable or disable",
)
async def update_instance(
    state: State,
    request: Request,
    project_id: ProjectId,
    connector_id: ConnectorId,
    body: InstancePatch,
) -> dict[str, Any]:
    instance = await state.context.instances.update(
        project_id,
        connector_id,
        credentials=body.credentials,
        config=body.config,
        enabled=body.enabled,
    )
    state.gateway.forget(project_id, connector_id)
    return _instance(state, request, instance)


@router.delete(
    "/projects/{projectId}/instances/{connectorId}",
    status_code=204,
    tags=["instances"],
    summary="Disconnect: the instance and its credentials go, its signals stay",
)
async def delete_instance(
    state: State, project_id: ProjectId, connector_id: ConnectorId
) -> Response:
    await state.context.instances.delete(project_id, connector_id)
    state.gateway.forget(project_id, connector_id)
    return Response(status_code=204)


@router.post(
    "/projects/{projectId}/instances/{connectorId}/webhook-url",
    tags=["instances"],
    summary="A new unguessable webhook URL for the instance; the old one stops at once",
)
async def new_webhook_url(
    state: State, request: Request, project_id: ProjectId, connector_id: ConnectorId
) -> dict[str, Any]:
    instance = await state.context.instances.new_webhook_url(project_id, connector_id)
    state.gateway.forget(project_id, connector_id)
    return _instance(state, request, instance)


PendingId = Annotated[str, Path(alias="pendingId", max_length=64)]


@router.post(
    "/projects/{projectId}/instances/{connectorId}/pending-secrets/{pendingId}/confirm",
    tags=["instances"],
    summary="Confirm a secret a handshake handed over: it becomes the credential",
)
async def confirm_pending_secret(
    state: State,
    request: Request,
    project_id: ProjectId,
    connector_id: ConnectorId,
    pending_id: PendingId,
) -> dict[str, Any]:
    instance = await state.context.instances.confirm_pending(project_id, connector_id, pending_id)
    state.gateway.forget(project_id, connector_id)
    return _instance(state, request, instance)


@router.delete(
    "/projects/{projectId}/instances/{connectorId}/pending-secrets/{pendingId}",
    tags=["instances"],
    summary="Discard a secret a handshake handed over",
)
async def discard_pending_secret(
    state: State,
    request: Request,
    project_id: ProjectId,
    connector_id: ConnectorId,
    pending_id: PendingId,
) -> dict[str, Any]:
    instance = await state.context.instances.discard_pending(project_id, connector_id, pending_id)
    return _instance(state, request, instance)


@router.post(
    "/projects/{projectId}/instances/{connectorId}/test",
    tags=["instances"],
    summary="Test connection: run the health check with the stored credentials",
)
async def test_instance(
    state: State, project_id: ProjectId, connector_id: ConnectorId
) -> dict[str, Any]:
    return (await test_connection(state.context, project_id, connector_id)).to_json()


@router.post(
    "/projects/{projectId}/instances/{connectorId}/poll",
    tags=["instances"],
    summary="Poll now",
    responses={409: {"model": ErrorBody, "description": "Disabled, or already polling"}},
)
async def poll_now(
    state: State, project_id: ProjectId, connector_id: ConnectorId
) -> dict[str, Any]:
    record = await state.context.instances.record(project_id, connector_id)
    connector = await state.context.connectors.get(connector_id)
    if not connector.polls:
        raise ConflictError(f"'{connector_id}' receives webhooks only; there is nothing to poll")
    if not record.enabled:
        raise ConflictError("the instance is disabled; enable it to poll")
    result = await poll_instance(state.context, project_id, connector_id, owner=state.worker_id)
    state.metrics.observe_poll(result)
    if result.status == "skipped":
        raise ConflictError("a poll of this instance is already running; try again shortly")
    return result.to_json()


@router.get(
    "/projects/{projectId}/instances/{connectorId}/status",
    tags=["instances"],
    summary="Health, last sync, latency, failures, signal counts, webhook URL",
)
async def instance_status(
    state: State, request: Request, project_id: ProjectId, connector_id: ConnectorId
) -> dict[str, Any]:
    context = state.context
    record = await context.instances.record(project_id, connector_id)
    connector = await context.connectors.get(connector_id)
    counts = await context.store.signals.counts(project_id, connector_id, now=context.clock())
    webhooks: dict[str, str | None] = {"webhookUrl": None, "sharedWebhookUrl": None}
    pending: list[dict[str, Any]] = []
    if connector.receives_webhooks:
        instance = await context.instances.get(project_id, connector_id)
        webhooks = _webhook_urls(state, request, connector_id, project_id, instance.hook_id)
        pending = instance.pending_json()
    return {
        "projectId": project_id,
        "connectorId": connector_id,
        "enabled": record.enabled,
        "healthState": record.health_state,
        "healthy": record.healthy,
        "lastHealthCheck": _iso(record.last_health_check),
        "lastSyncAt": _iso(record.last_sync_at),
        "lastDeliveryAt": _iso(record.last_delivery_at),
        "deliveryFailures": record.delivery_failures,
        "lastLatencyMs": record.last_latency_ms,
        "consecutiveFailures": record.consecutive_failures,
        "lastError": record.last_error,
        "signals": {"last24h": counts.last_24h, "last7d": counts.last_7d},
        **webhooks,
        "pendingSecrets": pending,
        "polls": connector.polls,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# --------------------------------------------------------------------------- signals


@router.get(
    "/projects/{projectId}/signals",
    tags=["signals"],
    summary="A project's signals, newest first, with cursor pagination",
    responses={400: {"model": ErrorBody, "description": "A cursor this server did not issue"}},
)
async def list_signals(
    state: State,
    project_id: ProjectId,
    source: Annotated[str | None, Query(description="Connector id")] = None,
    type: Annotated[str | None, Query(description="Signal type")] = None,
    since: Annotated[datetime | None, Query(description="Inclusive, ISO 8601")] = None,
    until: Annotated[datetime | None, Query(description="Exclusive, ISO 8601")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> dict[str, Any]:
    filters = SignalQuery(
        source=source,
        type=type,
        since=_in_utc("since", since),
        until=_in_utc("until", until),
    )
    page = await state.context.store.signals.query(
        project_id, filters, limit=limit, cursor=cursor or None
    )
    return {"items": [stored.signal for stored in page.items], "nextCursor": page.next_cursor}


def _in_utc(name: str, moment: datetime | None) -> datetime | None:
    """A query time in UTC; one whose offset takes it past year 9999 or before year 1
    (``9999-12-31T23:59:59-23:59``) is a 422 at its parameter, where it was a 500."""
    if moment is None:
        return None
    try:
        return utc(moment)
    except OverflowError:
        raise ValidationFailed(
            "the request is not valid",
            [{"path": f"query.{name}", "message": "is outside the years 1-9999 in UTC"}],
        ) from None


@router.get("/projects/{projectId}/signals/{signalId}", tags=["signals"])
async def get_signal(state: State, project_id: ProjectId, signal_id: SignalId) -> JSONResponse:
    stored = await state.context.store.signals.get(project_id, signal_id)
    if stored is None:
        raise NotFoundError(f"project '{project_id}' has no signal '{signal_id}'")
    return JSONResponse(stored.signal)


# --------------------------------------------------------------------------- OAuth consent


@router.put(
    "/connectors/{connectorId}/oauth-client",
    status_code=204,
    tags=["oauth"],
    summary="Register the connector's OAuth app (client id and write-only secret)",
)
async def put_oauth_client(
    state: State, connector_id: ConnectorId, body: OAuthClientBody
) -> Response:
    context = state.context
    connector = await context.connectors.get(connector_id)
    await context.instances.oauth_clients.register(
        connector, client_id=body.client_id, client_secret=body.client_secret, now=context.clock()
    )
    return Response(status_code=204)


@router.get(
    "/connectors/{connectorId}/oauth-client",
    tags=["oauth"],
    summary="The registered OAuth app and the redirect URI to enter at the provider",
)
async def get_oauth_client(
    state: State, request: Request, connector_id: ConnectorId
) -> dict[str, Any]:
    context = state.context
    await context.connectors.get(connector_id)
    client = await context.instances.oauth_clients.get(connector_id, now=context.clock())
    return {
        "clientId": client.client_id if client is not None else None,
        "redirectUri": state.public_base(request) + CALLBACK_PATH,
        "configured": client is not None,
    }


@router.post(
    "/projects/{projectId}/instances/{connectorId}/oauth/start",
    tags=["oauth"],
    summary=(
        "Start a consent, with the credentials it does not give: the provider's authorization "
        "URL to open in a browser"
    ),
)
async def start_oauth(
    state: State,
    request: Request,
    project_id: ProjectId,
    connector_id: ConnectorId,
    body: OAuthStart,
) -> dict[str, Any]:
    context = state.context
    url = await OAuthFlows.of(context).start(
        project_id,
        connector_id,
        config=body.config,
        redirect_uri=state.public_base(request) + CALLBACK_PATH,
        now=context.clock(),
        check_settings=True,
        credentials=body.credentials,
    )
    return {"authorizeUrl": url}
