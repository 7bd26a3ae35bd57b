"""Connector instances: a connector configured for one project (SPEC §5.1, §8.2).

Credentials go to the secret store and the instance keeps only a reference;
nothing here ever returns a credential — views show them masked at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ucf.core.credential_keys import ACCESS_TOKEN_EXPIRES_AT, AUTH_METHOD_KEY
from ucf.core.payload import encodes_as_utf8
from ucf.core.records import datarecord
from ucf.core.side_by_side import both
from ucf.core.sign_in import sign_in_method
from ucf.runtime.completion import to_the_end
from ucf.runtime.redaction import MASK, mask
from ucf.service.connectors import Connector, ConnectorService, Edited
from ucf.service.errors import ConflictError, NotFoundError, ValidationFailed
from ucf.service.instance_secrets import InstanceSecrets, PendingSecret, new_hook_id
from ucf.service.oauth_clients import OAuthClients
from ucf.service.secret_turns import SecretTurns
from ucf.service.settings import DEFAULT_WEBHOOK_SECRET_RETENTION
from ucf.stores.errors import AlreadyExists, NotFound
from ucf.stores.models import InstanceChanges, InstanceRecord
from ucf.stores.protocols import Store
from ucf.stores.secrets.base import (
    UNREADABLE_SECRET,
    SecretFormatError,
    SecretIntegrityError,
    SecretNotFound,
    SecretStore,
)

if TYPE_CHECKING:
    from ucf.core.descriptor import ConnectorDescriptor

log = logging.getLogger("ucf.instances")


NOT_UNICODE = (
    "holds a lone surrogate (an escape such as \\ud800 without its pair), which is not text"
)


def _is_base_url(text: str) -> bool:
    """An absolute http(s) URL with a host and nothing a URL cannot hold, as a poll needs.
    A prefix check let ``http://``, ``http:// x`` and a NUL in a path through, refused
    only at the first poll."""
    from ucf.runtime.polling import is_http_url  # only when a URL is saved: not a cold start's

    return text.startswith(("https://", "http://")) and is_http_url(text)


@datarecord(slots=False)
class FieldProblem:
    path: str
    message: str
    hint: str | None = None


def check_config(
    descriptor: ConnectorDescriptor,
    config: Mapping[str, Any],
    *,
    partial: bool = False,
    provided: Collection[str] = (),
) -> dict[str, str]:
    """Config values as strings with defaults applied; every problem listed at once.
    ``provided`` names settings filled elsewhere (read from the provider after a
    consent): not required here."""
    fields = {f.key: f for f in descriptor.setup_config_fields()}
    problems: list[FieldProblem] = []
    result: dict[str, str] = {}
    for key, value in config.items():
        field = fields.get(key)
        if field is None:
            known = ", ".join(sorted(fields)) or "none"
            problems.append(FieldProblem(f"config.{key}", f"unknown setting (known: {known})"))
            continue
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            problems.append(FieldProblem(f"config.{key}", "must be a string"))
            continue
        if isinstance(value, str) and not encodes_as_utf8(value):
            problems.append(FieldProblem(f"config.{key}", NOT_UNICODE))
            continue
        text = str(value).strip()
        if field.type == "url" and text and not _is_base_url(text):
            problems.append(FieldProblem(f"config.{key}", "must be an http(s) URL"))
        elif field.type == "url" and "@" in urlsplit(text).netloc:
            # Settings are kept and shown in plain text (pages, API answers): a password in
            # one was shown back to everyone who opened the instance.
            problems.append(
                FieldProblem(
                    f"config.{key}",
                    "must not hold a user name or password (user:password@host)",
                    "give them as credentials, which are stored encrypted and never shown",
                )
            )
        if field.type == "select" and field.options and text not in field.options:
            problems.append(FieldProblem(f"config.{key}", f"must be one of {field.options}"))
        if field.type == "number" and text and not _finite_number(text):
            problems.append(
                FieldProblem(f"config.{key}", "must be a number", "digits, e.g. 30 or 2.5")
            )
        result[key] = text.rstrip("/") if field.type == "url" else text
    if not partial:
        for key, field in fields.items():
            if key not in result and field.default is not None:
                result[key] = field.default
            if field.required and not result.get(key) and key not in provided:
                if f"config.{key}" in {p.path for p in problems}:
                    continue  # given but refused: one problem is enough ("must be a string")
                problems.append(
                    FieldProblem(f"config.{key}", f"'{field.label}' is required", field.help_text)
                )
    if problems:
        raise ValidationFailed("the configuration is not valid", [p.__dict__ for p in problems])
    return result


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _finite_number(text: str) -> bool:
    """A number as a person writes one: ``float()`` also takes ``nan``, ``inf``, ``1e999``
    (infinite) and ``1_000``, which a request or a page would then be given."""
    return _NUMBER.fullmatch(text) is not None and math.isfinite(float(text))


WEBHOOK_SECRET_RETENTION = DEFAULT_WEBHOOK_SECRET_RETENTION
"""How long an instance keeps a webhook secret only earlier versions of its connector
verified with, once the version that stopped verifying with it was saved
(:meth:`InstanceService.retire_webhook_secrets`), unless ``UCF_WEBHOOK_SECRET_RETENTION_DAYS``
says otherwise (:attr:`ucf.service.settings.Settings.webhook_secret_retention`)."""

UNFIT_READS = 8
"""Instances whose secrets :meth:`InstanceService.unfit_settings` reads at once."""


def check_credentials(
    descriptor: ConnectorDescriptor,
    credentials: Mapping[str, Any],
    *,
    partial: bool = False,
    provided: Collection[str] = (),
) -> dict[str, str]:
    """The credentials a user gave, checked against the descriptor's fields.

    ``provided`` names fields supplied elsewhere (the operator's registered
    OAuth app brings client id and secret): required, but not from the user.
    An OAuth consent also stores its access token's expiry time, a key of the
    runtime's own, and the access token itself even where the descriptor asks
    a user for no such field (Outlook's asks only for a refresh token). With
    ``authAlternatives``, ``authMethod`` names the method the instance signs in
    with, and only that method's fields are required; without it, the one
    method the credentials complete is chosen and stored (see
    :meth:`~ucf.core.descriptor.ConnectorDescriptor.method_given`).
    """
    fields = {f.key: f for f in descriptor.credential_fields()}
    consent = descriptor.consent()
    runtime_keys = {ACCESS_TOKEN_EXPIRES_AT, consent.access_token_key} if consent else set()
    methods = [method.method for method in descriptor.auth_methods()]
    problems: list[FieldProblem] = []
    result: dict[str, str] = {}
    for key, value in credentials.items():
        if key == AUTH_METHOD_KEY and len(methods) > 1:
            if value in methods:
                result[key] = value
            else:
                problems.append(
                    FieldProblem(
                        f"credentials.{key}",
                        f"unknown sign-in method {value!r} (known: {', '.join(methods)})",
                    )
                )
        elif key in runtime_keys and isinstance(value, str):
            if value:  # as for declared fields: empty is absent
                result[key] = value
        elif key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            problems.append(
                FieldProblem(f"credentials.{key}", f"unknown credential (known: {known})")
            )
        elif not isinstance(value, str):
            problems.append(FieldProblem(f"credentials.{key}", "must be a string"))
        elif not encodes_as_utf8(value):
            problems.append(FieldProblem(f"credentials.{key}", NOT_UNICODE))
        elif value.strip():  # empty, or only spaces (as a setting is), is absent
            # Trimmed as a setting is: a space or line break pasted with a key is never
            # part of it, and no header could carry it (every poll failed on it).
            result[key] = value.strip()
    if not partial and len(methods) > 1 and AUTH_METHOD_KEY not in result:
        # The method the runtime signs these credentials in with (one reading for both).
        given = sign_in_method(descriptor, result, provided)
        if given is not descriptor.auth:
            result[AUTH_METHOD_KEY] = given.method  # stored, so it never changes by itself
    if not partial:
        before = len(problems)
        refused = {p.path for p in problems}  # given but refused: not "required" as well
        for field in descriptor.credential_fields(descriptor.auth_for(result)):
            key = field.key
            if (
                field.required
                and key not in result
                and key not in provided
                and f"credentials.{key}" not in refused
            ):
                problems.append(FieldProblem(f"credentials.{key}", f"'{field.label}' is required"))
        if len(problems) == before and _consent_without_tokens(descriptor, result):
            problems.append(
                FieldProblem(
                    "credentials",
                    f"no OAuth token to sign in with: connect with {descriptor.name} first "
                    "(the dashboard's 'Connect with', or POST …/oauth/start), or give its tokens",
                )
            )
    if problems:
        raise ValidationFailed("the credentials are not valid", [p.__dict__ for p in problems])
    return result


def _consent_without_tokens(
    descriptor: ConnectorDescriptor, credentials: Mapping[str, str]
) -> bool:
    """``credentials`` sign in with the consent offered beside ``auth`` (an alternative)
    and hold neither of its tokens.

    The operator's registered OAuth app supplies the client id and secret, so an OAuth
    alternative whose tokens are optional fields (Notion's, GitHub's) was complete with
    nothing typed: the setup went on past "Connect with …" without a consent, its test
    said the token "was rejected … reconnect the account", and Connect stored an
    instance that could never sign in. A consent that is ``auth`` itself keeps its own
    rules (Outlook without a refresh token signs in as the app, for one mailbox).
    """
    oauth = descriptor.consent()
    consent_method = descriptor.consent_marker().get(AUTH_METHOD_KEY)
    if oauth is None or consent_method is None:
        return False
    if descriptor.auth_for(credentials).method != consent_method:
        return False
    return not (credentials.get(oauth.access_token_key) or credentials.get(oauth.refresh_token_key))


def _stored_sign_in(
    descriptor: ConnectorDescriptor, credentials: Mapping[str, str]
) -> dict[str, str]:
    """The stored ``credentials`` a sign-in uses, as :func:`check_credentials` takes them:
    without what the runtime keeps beside them (the access token's expiry) or a field the
    connector no longer declares (its descriptor was edited since)."""
    consent = descriptor.consent()
    known = {f.key for f in descriptor.credential_fields()}
    known |= {consent.access_token_key} if consent else set()
    known |= {AUTH_METHOD_KEY} if len(descriptor.auth_methods()) > 1 else set()
    return {k: v for k, v in credentials.items() if k in known}


def _method_kept(
    descriptor: ConnectorDescriptor,
    before: Connector | None,
    credentials: Mapping[str, str],
    provided: Collection[str] = (),
) -> dict[str, str]:
    """``{"authMethod": …}`` when ``credentials`` signed in with a method of ``before``
    that ``descriptor`` (its connector as edited) still offers, but would read as another:
    empty when nothing needs recording.

    An instance that signs in with ``auth`` stores no ``authMethod`` (nor one made while
    its connector had one method). An edit that made another method ``auth`` and the
    instance's an alternative (an API key offered first, OAuth beside it) switched it to
    a method it had no credential for, without a word: every poll failed, and a PATCH of
    its client secret deleted its tokens as the other method's. Recorded, the method
    never changes by itself, as :func:`check_credentials` promises for a new instance.

    The method it signed in with is read as the runtime read it
    (:func:`~ucf.core.sign_in.sign_in_method`, ``provided``: what the operator's registered
    app brings): an instance stored without ``authMethod`` whose ``auth`` it cannot
    complete signs in with the alternative its credentials do. Read as ``auth``, an edit that made that alternative ``auth`` pinned
    the instance to the old ``auth`` (a stale key it also held, complete under the new
    version) and the pruning deleted the OAuth tokens it had been polling with.
    """
    if before is None:
        return {}
    then = sign_in_method(before.descriptor, credentials, provided).method
    if descriptor.auth_for(credentials).method == then:
        return {}
    if any(method.method == then for method in descriptor.auth_alternatives):
        return {AUTH_METHOD_KEY: then}
    return {}  # its method is gone: it cannot sign in, and keeps every credential


def _still_verifying(
    descriptor: ConnectorDescriptor,
    credentials: Mapping[str, str],
    earlier: Sequence[ConnectorDescriptor],
) -> frozenset[str]:
    """The secrets ``earlier`` versions verified deliveries with, while ``credentials``
    lack the one ``descriptor`` verifies with (or it takes no webhook, for now): kept, as
    a sign-in's key is while the sign-in is incomplete.

    A webhook secret is no sign-in's: a rotated key completed the sign-in of an instance
    whose connector an edit had given a renamed secret (a slip) or no webhook, and the
    secret went with the keys only earlier versions declared; the edit undone, every
    delivery was refused, and only the provider's dashboard still had the secret."""
    current = descriptor.webhook_secret_keys()
    if current and all(credentials.get(key) for key in current):
        return frozenset()
    return frozenset().union(*(before.webhook_secret_keys() for before in earlier))


def sign_in_problems(
    descriptor: ConnectorDescriptor, credentials: Mapping[str, str], provided: Collection[str]
) -> tuple[dict[str, Any], ...]:
    """What keeps an instance's stored ``credentials`` from signing in, in the words
    creating it with them would refuse them (``path``, ``message``); empty when they can.

    An instance can be left so by an edit of its connector (a credential now required,
    another sign-in method) or from before a check existed (an OAuth sign-in without a
    token): its settings can still change, and every answer and its page say it cannot
    sign in, instead of only its failing polls."""
    try:
        check_credentials(descriptor, _stored_sign_in(descriptor, credentials), provided=provided)
    except ValidationFailed as failed:
        return tuple(failed.details)
    return ()


def _made_worse(
    descriptor: ConnectorDescriptor,
    given: Mapping[str, str],
    failed: ValidationFailed,
    stored: Mapping[str, str],
    provided: Collection[str],
) -> list[dict[str, Any]]:
    """The problems to refuse ``given`` for (``failed`` is their check), or none when
    each was already a problem of the ``stored`` credentials' sign-in, also once the
    fields they lacked count as there.

    "No OAuth token" is said only of credentials that lack no field, so a switch to a
    consent without tokens on an instance lacking a field both methods share (a webhook
    secret an edit made required) showed only the known missing field, and was taken:
    giving that field then was refused for the token the switch had left out."""
    said = list(failed.details or ())
    before = sign_in_problems(descriptor, stored, provided)
    prefix = "credentials."
    lacking = [
        str(p["path"]).removeprefix(prefix)
        for p in before
        if str(p.get("path", "")).startswith(prefix)
    ]
    unmasked_before = sign_in_problems(descriptor, stored, [*provided, *lacking])
    known = {(p.get("path"), p.get("message")) for p in (*before, *unmasked_before)}
    try:
        check_credentials(descriptor, given, provided=[*provided, *lacking])
    except ValidationFailed as unmasked:
        said += [p for p in unmasked.details or () if p not in said]
    if not before or any((p.get("path"), p.get("message")) not in known for p in said):
        return said
    return []


def _check_both(
    descriptor: ConnectorDescriptor,
    config: Mapping[str, Any],
    credentials: Mapping[str, Any],
    provided: Collection[str] = (),
) -> tuple[dict[str, str], dict[str, str]]:
    """Both forms checked, so the user sees every problem of the setup at once; the
    message names the form(s) at fault, as the consent's start does (a lone missing
    credential was refused as "the settings are not valid")."""
    refused: list[ValidationFailed] = []
    clean_config: dict[str, str] = {}
    clean_credentials: dict[str, str] = {}
    try:
        clean_config = check_config(descriptor, config)
    except ValidationFailed as failed:
        refused.append(failed)
    try:
        clean_credentials = check_credentials(descriptor, credentials, provided=provided)
    except ValidationFailed as failed:
        refused.append(failed)
    ValidationFailed.raise_any(refused)
    return clean_config, clean_credentials


@datarecord(slots=False)
class Instance:
    record: InstanceRecord
    connector: Connector
    credential_keys: tuple[str, ...] = ()
    masked: Mapping[str, str] | None = None
    hook_id: str | None = field(default=None, repr=False)
    """The last segment of the instance's own webhook URL; None for one made before."""
    pending: tuple[PendingSecret, ...] = ()
    """Secrets unsigned handshakes handed over, waiting for an operator (values inside:
    only the dashboard's instance page shows them, to be pasted into the provider)."""
    differing: frozenset[str] = frozenset()
    """Ids of pending secrets that differ from the credential already confirmed: flagged."""
    auth_method: str = ""
    """How it signs in: the descriptor's ``auth`` method, or the alternative it chose."""
    sign_in_problems: tuple[dict[str, Any], ...] = ()
    """Why its stored credentials cannot sign in (:func:`sign_in_problems`); empty if they can."""

    def pending_json(self) -> list[dict[str, Any]]:
        return [p.to_json(differs=p.id in self.differing) for p in self.pending]

    @property
    def shown_config(self) -> dict[str, Any]:
        """The settings as pages and answers show them. A URL setting holding a user name
        or password (``https://ana:pw@host``) is refused since it would be shown back, but
        one stored before that is still there: shown with ``••••`` for its user part."""
        config = dict(self.record.config)
        if not any(isinstance(v, str) and "@" in v for v in config.values()):
            return config  # the usual case, without reading the descriptor's fields
        urls = {f.key for f in self.connector.descriptor.setup_config_fields() if f.type == "url"}
        for key in urls & config.keys():
            value = config[key]
            if isinstance(value, str) and "@" in (parts := urlsplit(value)).netloc:
                host = parts.netloc.rsplit("@", 1)[1]
                config[key] = urlunsplit(parts._replace(netloc=f"{MASK}@{host}"))
        return config

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "projectId": r.project_id,
            "connectorId": r.connector_id,
            "enabled": r.enabled,
            "config": self.shown_config,
            "credentials": dict(self.masked or {}),
            "authMethod": self.auth_method,
            "canSignIn": not self.sign_in_problems,
            "signInProblems": [dict(p) for p in self.sign_in_problems],
            "healthState": r.health_state,
            "healthy": r.healthy,
            "lastHealthCheck": _iso(r.last_health_check),
            "consecutiveFailures": r.consecutive_failures,
            "lastError": r.last_error,
            "lastSyncAt": _iso(r.last_sync_at),
            "lastLatencyMs": r.last_latency_ms,
            "lastDeliveryAt": _iso(r.last_delivery_at),
            "deliveryFailures": r.delivery_failures,
            "createdAt": _iso(r.created_at),
            "updatedAt": _iso(r.updated_at),
            "pendingSecrets": self.pending_json(),
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


class InstanceService:
    def __init__(
        self,
        store: Store,
        secrets: SecretStore,
        connectors: ConnectorService,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._connectors = connectors
        self._clock = clock
        self._turns = SecretTurns(store.leases, clock)
        self.oauth_clients = OAuthClients(store.records, secrets)
        self._watchers: list[weakref.WeakMethod[Callable[[str, str], None]]] = []

    def on_change(self, forget: Callable[[str, str], None]) -> None:
        """Call ``forget(project_id, connector_id)`` whenever this service changes or deletes
        an instance: what a cache holds of it (a webhook gateway's secrets, with the HMACs
        keyed with them) is stale from then on.

        Told here, in the use case, rather than by each caller: a delete made by any
        code of the process (a web route, a dashboard form, a script holding a context)
        dropped them only where the caller remembered to, and not at all when the
        request was cancelled once the delete had begun (it is finished regardless).
        Held weakly, so a cache is never kept alive by the service it watches.
        """
        self._watchers.append(weakref.WeakMethod(forget))

    def _changed(self, project_id: str, connector_id: str) -> None:
        alive = []
        for watcher in self._watchers:
            forget = watcher()
            if forget is not None:
                forget(project_id, connector_id)
                alive.append(watcher)
        self._watchers = alive

    async def _view(self, record: InstanceRecord, connector: Connector | None = None) -> Instance:
        connector = connector or await self._connectors.get(record.connector_id)
        try:
            stored = await self.secrets(record)
        except UNREADABLE_SECRET as error:
            # Shown without credentials rather than not at all: its health says why its
            # polls fail, and the project's other instances stay listed (an altered
            # ciphertext made the whole list a 500, as an edited one did).
            log.warning("instance %s/%s: %s", record.project_id, record.connector_id, error)
            stored = InstanceSecrets()
        credentials = dict(stored.credentials)
        descriptor = connector.descriptor
        method, problems = await self._sign_in(descriptor, credentials)
        credentials.pop(AUTH_METHOD_KEY, None)  # not a secret: shown as authMethod
        return Instance(
            record,
            connector,
            tuple(sorted(credentials)),
            {key: mask(value) for key, value in credentials.items()},
            hook_id=stored.hook_id,
            pending=stored.pending,
            differing=frozenset(
                p.id
                for p in stored.pending
                if credentials.get(p.credential) and credentials[p.credential] != p.value
            ),
            auth_method=method,
            sign_in_problems=problems,
        )

    async def _sign_in(
        self, descriptor: ConnectorDescriptor, credentials: Mapping[str, str]
    ) -> tuple[str, tuple[dict[str, Any], ...]]:
        """The method the instance's polls sign in with, and :meth:`_sign_in_problems`, read
        alike (:func:`~ucf.core.sign_in.sign_in_method`): one stored without authMethod
        (from before it was stored) is read by what its credentials complete, as the
        runtime reads them, with what the operator's registered app brings. That app is
        read only where it can change the answer, not for every instance shown."""
        stored = _stored_sign_in(descriptor, credentials)
        method = sign_in_method(descriptor, stored)
        problems = sign_in_problems(descriptor, credentials, ())
        if descriptor.consent() is not None and (problems or method is not descriptor.auth):
            provided = await self.provided_credentials(descriptor)
            problems = sign_in_problems(descriptor, credentials, provided)
            method = sign_in_method(descriptor, stored, provided)
        return method.method, problems

    async def _sign_in_problems(
        self, descriptor: ConnectorDescriptor, credentials: Mapping[str, str]
    ) -> tuple[dict[str, Any], ...]:
        """:func:`sign_in_problems`, with what the operator's registered app brings."""
        problems = sign_in_problems(descriptor, credentials, ())
        if problems and descriptor.consent() is not None:
            # The operator's registered app may bring what is missing (client id and
            # secret): read only then, not for every instance shown.
            provided = await self.provided_credentials(descriptor)
            problems = sign_in_problems(descriptor, credentials, provided)
        return problems

    async def _completes(
        self, descriptor: ConnectorDescriptor, credentials: Mapping[str, str]
    ) -> bool:
        """Whether ``credentials`` hold every required field of the method they name (what
        the operator's registered app brings counting as there): an instance without
        ``authMethod`` whose OAuth tokens were taken for ``auth``'s credentials (stored
        before the method was) never signed in with ``auth``, and is not pinned to it."""
        method = descriptor.auth_for(credentials)
        required = {f.key for f in descriptor.credential_fields(method) if f.required}
        missing = required - credentials.keys()
        if missing and descriptor.consent() is not None:
            missing -= await self.provided_credentials(descriptor)
        return not missing

    async def secrets(self, record: InstanceRecord) -> InstanceSecrets:
        """Credentials, hook id and pending secrets in one read, for the gateway."""
        if record.credential_secret_ref is None:
            return InstanceSecrets()
        try:
            return InstanceSecrets.decode(await self._secrets.get(record.credential_secret_ref))
        except SecretNotFound:
            return InstanceSecrets()

    async def credentials(
        self, record: InstanceRecord, connector: Connector | None = None
    ) -> dict[str, str]:
        """The decrypted credentials, for the runtime only (never for a response).

        For a connector with an OAuth consent, the operator's registered app fills
        in the client id and secret the instance does not have itself, so a
        rotated client secret applies to every instance at once. ``connector``,
        when the caller has just read it, saves reading it again.
        """
        return dict((await self.runtime_secrets(record, connector)).credentials)

    async def runtime_secrets(
        self, record: InstanceRecord, connector: Connector | None = None
    ) -> InstanceSecrets:
        """:meth:`secrets` with the credentials the runtime uses (the registered OAuth
        app's filled in): what the gateway verifies with, in one read of the instance.

        ``connector`` is the instance's, when the caller holds it (the gateway's
        target, the poll it runs): otherwise it is read first. The instance's
        secret and the registered app are then read side by side, neither
        depending on the other: on AWS a GetSecretValue and a DynamoDB GetItem,
        one round trip instead of two on every first delivery and poll of a
        connector with a consent flow (``bench/coldstart.py``).
        """
        if connector is None:
            connector = await self._connectors.get(record.connector_id)
        consent = connector.view.consent()
        if consent is None:
            return await self.secrets(record)
        stored, app = await both(
            self.secrets(record),
            self.oauth_clients.credentials(connector.view, now=self._clock()),
        )
        credentials = {**app, **stored.credentials}
        own_client = stored.credentials.get(consent.client_id_key)
        if app and own_client in (None, app[consent.client_id_key]):
            # The instance uses the registered app: a client secret it holds is a copy an
            # earlier refresh saved (they store tokens only now), and the operator may
            # have rotated the app's secret since. The app's current one wins.
            credentials.update(app)
        return InstanceSecrets(credentials, stored.hook_id, stored.pending)

    async def provided_credentials(self, descriptor: ConnectorDescriptor) -> frozenset[str]:
        """Credential fields the operator's registered OAuth app supplies for ``descriptor``."""
        app = await self.oauth_clients.credentials(descriptor, now=self._clock())
        return frozenset(app)

    async def record(self, project_id: str, connector_id: str) -> InstanceRecord:
        record = await self._store.instances.get(project_id, connector_id)
        if record is None:
            raise NotFoundError(f"project '{project_id}' has no '{connector_id}' instance")
        return record

    async def get(self, project_id: str, connector_id: str) -> Instance:
        return await self._view(await self.record(project_id, connector_id))

    async def list(self, project_id: str) -> list[Instance]:
        return [
            await self._view(r) for r in await self._store.instances.list_by_project(project_id)
        ]

    async def unfit_settings(self, connector: Connector) -> Sequence[tuple[str, Sequence[str]]]:
        """Each project whose instance of ``connector`` has settings its descriptor no
        longer takes (one removed or renamed, a new required one) or credentials it can no
        longer sign in with, with what is wrong.

        Said where a descriptor edit is saved: its instances fail from their next poll
        ("unknown config field(s) team"), and the editor said only that they would use
        the edit, so nobody knew which instances to open and fix.
        """
        descriptor = connector.descriptor
        # Each instance's secret is a read of its own (Secrets Manager on AWS): side by
        # side, a few at a time, so a save with many instances does not wait for them in
        # a row (the API function stops at 30 s).
        gate = asyncio.Semaphore(UNFIT_READS)

        async def problems_of(record: InstanceRecord) -> list[Mapping[str, Any]]:
            problems: list[Mapping[str, Any]] = []
            try:
                check_config(descriptor, {k: str(v) for k, v in record.config.items()})
            except ValidationFailed as failed:
                problems += failed.details or []
            # A credential the edit made required (or a sign-in method it removed) fails
            # the next poll as surely as a setting does: it was not said.
            try:
                async with gate:
                    stored = await self.secrets(record)
            except UNREADABLE_SECRET:
                return problems  # its health and page say why; nothing the edit changed
            return problems + list(await self._sign_in_problems(descriptor, stored.credentials))

        records = await self._store.instances.list_by_connector(connector.id)
        found = await asyncio.gather(*(problems_of(record) for record in records))
        return [
            (record.project_id, [f"{d.get('path')}: {d.get('message')}" for d in problems])
            for record, problems in zip(records, found, strict=True)
            if problems
        ]

    async def update_connector(
        self,
        connector_id: str,
        data: Any,
        *,
        if_saved_at: datetime | None = None,
        if_match: Collection[str] | None = None,
    ) -> Edited:
        """:meth:`ConnectorService.edit` (``if_saved_at``, ``if_match`` as there), then the credentials
        its instances no longer use are deleted (:meth:`drop_unused_credentials`): an edit
        to another sign-in method left the old one's stored, encrypted, for good. A
        refused edit changes nothing, credentials included."""
        before = await self._connectors.find(connector_id)  # None: edit says why
        edited = await self._connectors.edit(
            connector_id, data, if_saved_at=if_saved_at, if_match=if_match
        )
        return await self._pruned(edited, before)

    async def restore_connector(
        self, connector_id: str, version: str, *, if_match: Collection[str] | None = None
    ) -> Edited:
        """:meth:`ConnectorService.restore` (an edit back to an earlier version), then the
        credentials its instances no longer use are deleted, as after any edit."""
        before = await self._connectors.find(connector_id)
        restored = await self._connectors.restore(connector_id, version, if_match=if_match)
        return await self._pruned(restored, before)

    async def _pruned(self, edited: Edited, before: Connector | None) -> Edited:
        if edited.changed:
            await self.drop_unused_credentials(edited.connector, before)
        return edited

    async def drop_unused_credentials(
        self, connector: Connector, before: Connector | None = None
    ) -> int:
        """Delete from each instance of ``connector`` the credentials of a sign-in method it
        does not use (:meth:`ConnectorDescriptor.unused_credentials`), ``before`` being the
        connector as it was before an edit; how many instances lost some.

        Only from an instance that can still sign in: one the edit left unable to (a
        credential renamed, its method gone) keeps every credential, so going back to
        the version before (a restore, or the edit undone) finds it working again; its
        old credentials go once new ones complete its sign-in (:meth:`update`). Deleted
        there, a slip in an edit cost every instance its key, for good. Nor what the
        instance used before the edit and a sign-in check cannot vouch for (an optional
        token, the webhook secret): see ``used_before`` below.

        Each instance's secret is changed in its turn, read again there, so a token a poll
        rotates meanwhile is kept; one that cannot be read is left as it is.
        """
        descriptor = connector.descriptor
        was = (before.descriptor,) if before is not None else ()

        # What the instance used before the edit stays too: the keys of the method it
        # signed in with then, and the secret its deliveries were verified with. The
        # sign-in check below cannot see that an edit left one of them unused by a slip
        # (a webhook secret or an optional token renamed, the webhook taken out a while):
        # deleted here, a restore found every delivery refused, or Outlook reading as
        # the app for want of the user's refresh token, which only a new consent gives.
        # They go, as other keys only an earlier version declared, once new credentials
        # complete the instance's sign-in (:meth:`update`).
        # Both read the method as the runtime does (an instance stored without authMethod
        # signs in with the one its credentials complete), with the registered app's keys.
        # (Read once per edit; no read where neither version has a consent.)
        provided: frozenset[str] = frozenset()
        for version in (descriptor, *was):
            provided |= await self.provided_credentials(version)

        def used_before(credentials: Mapping[str, str]) -> frozenset[str]:
            if before is None:
                return frozenset()
            then = before.descriptor
            method = sign_in_method(then, credentials, provided)
            return then.credential_keys(method) | then.webhook_secret_keys()

        gate = asyncio.Semaphore(UNFIT_READS)

        async def prune(record: InstanceRecord) -> bool:
            if record.credential_secret_ref is None:
                return False
            async with gate:
                try:
                    async with self._changing_secrets(record) as current:
                        kept = _method_kept(descriptor, before, current.credentials, provided)
                        if kept and not await self._completes(
                            descriptor, {**current.credentials, **kept}
                        ):
                            kept = {}  # it never signed in so: the edit may let it
                        stamped = current.with_credentials(kept)
                        credentials = stamped.credentials
                        unused = descriptor.unused_credentials(credentials, *was) - used_before(
                            current.credentials
                        )
                        if unused and await self._sign_in_problems(
                            descriptor, stamped.without_credentials(unused).credentials
                        ):
                            unused = frozenset()
                        if not unused and not kept:
                            return False
                        await self._write(
                            record,
                            stamped.without_credentials(unused),
                            keep_previous=not unused,
                        )
                except (*UNREADABLE_SECRET, SecretNotFound):
                    return False  # its page and health say why; nothing to prune from
            if kept:
                log.info(
                    "%s/%s: signs in with %s, now one of its connector's alternatives",
                    record.project_id,
                    record.connector_id,
                    kept[AUTH_METHOD_KEY],
                )
            if unused:
                log.info(
                    "%s/%s: deleted %d credential(s) its sign-in no longer uses",
                    record.project_id,
                    record.connector_id,
                    len(unused),
                )
            self._changed(record.project_id, record.connector_id)
            return bool(unused)

        records = await self._store.instances.list_by_connector(connector.id)
        return sum(await asyncio.gather(*(prune(record) for record in records)))

    async def retire_webhook_secrets(
        self, now: datetime, *, after: timedelta = WEBHOOK_SECRET_RETENTION
    ) -> int:
        """Delete the webhook secrets that only earlier versions of a connector verified
        deliveries with, from its instances, once its current version has stood ``after``
        (30 days unless ``UCF_WEBHOOK_SECRET_RETENTION_DAYS`` says otherwise) without them;
        how many instances lost one.

        An edit never deletes such a secret, nor does a PATCH while the connector verifies
        with no other (:func:`_still_verifying`): the webhook renamed by a slip or taken
        out a while, a restore must find every delivery verified. Without this, a
        connector edited to do without its webhook for good kept every instance's old
        secret, encrypted but stored, until the instance was deleted. A key the current
        version still names (a credential field of any method, its webhook's secret) is
        never one of them: the instance may use it. A restore of a version with the
        webhook after the retention needs the secret given again, as its page then says
        where the field is required.
        """
        retired = 0
        for connector in await self._connectors.list():
            if now - connector.updated_at < after:
                continue  # the edit is recent: undoing it must find the secrets there
            earlier = await self._connectors.earlier_descriptors(connector.id)
            if not earlier:
                continue
            current = connector.descriptor
            named = current.webhook_secret_keys() | {AUTH_METHOD_KEY}
            for method in current.auth_methods():
                named |= current.credential_keys(method)
            keys = frozenset().union(*(e.webhook_secret_keys() for e in earlier)) - named
            if keys:
                retired += await self._retire(connector, keys)
        return retired

    async def _retire(self, connector: Connector, keys: frozenset[str]) -> int:
        async def retire(record: InstanceRecord) -> bool:
            if record.credential_secret_ref is None:
                return False
            try:
                async with self._changing_secrets(record) as current:
                    held = keys & current.credentials.keys()
                    if not held:
                        return False
                    kept = current.without_credentials(held)
                    await self._write(record, kept, keep_previous=False)
            except (*UNREADABLE_SECRET, SecretNotFound):
                return False
            log.info(
                "%s/%s: deleted the webhook secret(s) %s its connector stopped verifying with",
                record.project_id,
                record.connector_id,
                ", ".join(sorted(held)),
            )
            self._changed(record.project_id, record.connector_id)
            return True

        records = await self._store.instances.list_by_connector(connector.id)
        return sum([await retire(record) for record in records])

    async def create(
        self,
        project_id: str,
        connector_id: str,
        *,
        credentials: Mapping[str, Any],
        config: Mapping[str, Any],
        enabled: bool = True,
    ) -> Instance:
        connector = await self._connectors.get(connector_id)
        descriptor = connector.descriptor
        provided = await self.provided_credentials(descriptor)
        clean_config, clean_credentials = _check_both(descriptor, config, credentials, provided)
        if await self._store.instances.get(project_id, connector_id) is not None:
            raise ConflictError(f"project '{project_id}' already has a '{connector_id}' instance")
        stored = InstanceSecrets(clean_credentials, new_hook_id())
        ref = await self._secrets.put(None, stored.encode())
        try:
            # To its end even if the request is cancelled meanwhile: the secret may be
            # deleted only when the instance was not created, and only the store knows.
            record, cancelled = await to_the_end(
                self._store.instances.create(
                    project_id,
                    connector_id,
                    config=clean_config,
                    now=self._clock(),
                    credential_secret_ref=ref,
                    enabled=enabled,
                )
            )
        except AlreadyExists:
            await self._secrets.delete(ref)
            raise ConflictError(
                f"project '{project_id}' already has a '{connector_id}' instance"
            ) from None
        except BaseException:
            await self._secrets.delete(ref)
            raise
        if cancelled:
            raise asyncio.CancelledError  # created, with its secret
        return await self._view(record, connector)

    async def update(
        self,
        project_id: str,
        connector_id: str,
        *,
        credentials: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
    ) -> Instance:
        """Partial update: given credentials are merged (rotation), given settings replaced.

        Stored settings the connector no longer declares (its descriptor was edited
        since: a setting removed or renamed) are dropped when settings are saved:
        kept, they refused every save as "unknown setting", and the form has no field
        to clear them, so the instance could not be repaired short of reconnecting.
        A setting given here is still checked against the form.
        """
        record = await self.record(project_id, connector_id)
        connector = await self._connectors.get(connector_id)
        descriptor = connector.descriptor
        changes: dict[str, Any] = {}
        if config is not None:
            declared = {field.key for field in descriptor.setup_config_fields()}
            kept = {k: v for k, v in record.config.items() if k in declared}
            merged = {**kept, **check_config(descriptor, config, partial=True)}
            changes["config"] = check_config(descriptor, merged)
        if credentials is not None:
            fresh = check_credentials(descriptor, credentials, partial=True)

            async def replacement() -> InstanceSecrets:
                # The entry is no credential set (edited by hand) or altered: nothing in
                # it can be kept, so the credentials given replace it, complete on their
                # own, under a new hook id (the old URL could not be verified anyway).
                # Otherwise the repair its error asks for ("store the credentials again")
                # was a 500.
                provided = await self.provided_credentials(descriptor)
                whole = check_credentials(descriptor, credentials, provided=provided)
                return InstanceSecrets(whole, new_hook_id())

            async with self._changing_secrets(record, unreadable=replacement) as current:
                rotated = current.with_credentials(fresh)
                # Credentials given may not leave the sign-in worse than it was: a PATCH
                # naming the OAuth alternative alone (no token) switched a working
                # instance to a sign-in that could never work. One that already cannot
                # sign in (an edit of its connector made a field required) still takes
                # a rotated key or the tokens of a new consent, refused only for what
                # they break themselves; its answer says what is still missing
                # (canSignIn). Refused whole, a reconnect's tokens were lost after the
                # user had consented. Settings alone change whatever the credentials.
                provided = await self.provided_credentials(descriptor)
                given = _stored_sign_in(descriptor, rotated.credentials)
                earlier: Sequence[ConnectorDescriptor] = ()
                signs_in = False
                try:
                    checked = check_credentials(descriptor, given, provided=provided)
                except ValidationFailed as failed:
                    was = current.credentials
                    if worse := _made_worse(descriptor, given, failed, was, provided):
                        raise ValidationFailed(failed.message, worse) from None
                else:  # it signs in now: what only earlier versions used goes too
                    signs_in = True
                    earlier = await self._connectors.earlier_descriptors(connector_id)
                    # The method the check found the credentials complete (an instance
                    # that stored none: made while its method was the connector's only
                    # one, or ``auth`` before an edit made it an alternative) is stored,
                    # as a create stores it: read as ``auth`` below, the pruning took
                    # its OAuth tokens for another method's and deleted them.
                    inferred = checked.get(AUTH_METHOD_KEY)
                    if inferred and AUTH_METHOD_KEY not in rotated.credentials:
                        rotated = rotated.with_credentials({AUTH_METHOD_KEY: inferred})
                # A switch to another sign-in method leaves the old one's credentials (a
                # key, an OAuth app's secret and tokens) unused: they go with this write,
                # never before it is accepted. What was given now is kept whatever it is.
                unused = descriptor.unused_credentials(rotated.credentials, *earlier) - fresh.keys()
                unused -= _still_verifying(descriptor, rotated.credentials, earlier)
                if not signs_in and AUTH_METHOD_KEY not in rotated.credentials:
                    # No method named and none complete: ``auth``, which unused_credentials
                    # reads then, is a guess. An instance stored without authMethod (made
                    # while OAuth was its connector's one method) lacking its refresh token
                    # lost its client id and access token to a PATCH of its client secret,
                    # before the refresh token given next could complete the sign-in.
                    unused = frozenset()
                rotated = rotated.without_credentials(unused)
                changes["credential_secret_ref"] = await self._write(
                    record, rotated, keep_previous=not unused
                )
        if enabled is not None:
            changes["enabled"] = enabled
        try:
            updated = await self._store.instances.update(
                project_id, connector_id, InstanceChanges(**changes), now=self._clock()
            )
        except NotFound:
            raise NotFoundError(
                f"project '{project_id}' has no '{connector_id}' instance"
            ) from None
        self._changed(project_id, connector_id)
        return await self._view(updated, connector)

    @contextlib.asynccontextmanager
    async def _changing_secrets(
        self,
        record: InstanceRecord,
        *,
        unreadable: Callable[[], Awaitable[InstanceSecrets]] | None = None,
    ) -> AsyncIterator[InstanceSecrets]:
        """The instance's secret entry, read in its turn: a change made from it is written
        before any other change of the same entry reads it (a poll saving a rotated
        token, the upkeep a subscription's clientState, a handshake a pending secret).

        ``unreadable`` gives what stands for an entry that is no credential set (an
        operator replacing it) or was altered (its integrity check fails, and its error
        says "store the credentials again"); without it, that error is raised. One sealed
        under another master key is not replaced: the right key still reads it.
        """
        ref = record.credential_secret_ref
        if ref is None:
            yield InstanceSecrets()  # nothing stored to lose: the write makes a new entry
            return
        async with self._turns.turn(ref):
            try:
                current = await self.secrets(record)
            except (SecretFormatError, SecretIntegrityError):
                if unreadable is None:
                    raise
                current = await unreadable()
            yield current

    async def _write(
        self, record: InstanceRecord, stored: InstanceSecrets, *, keep_previous: bool = True
    ) -> str:
        """Replace the instance's secret entry (made now, with a hook id, if it had none);
        without ``keep_previous``, no earlier version of it stays in the secret store."""
        if record.credential_secret_ref is None:
            stored = stored if stored.hook_id else stored.with_hook_id(new_hook_id())
            return await self._secrets.put(None, stored.encode())
        await self._secrets.rotate(
            record.credential_secret_ref, stored.encode(), keep_previous=keep_previous
        )
        return record.credential_secret_ref

    async def _rewrite(self, record: InstanceRecord, stored: InstanceSecrets) -> Instance:
        """Write the secrets and touch the record, so every gateway re-reads them at once
        (they cache secrets by the record's ``updatedAt``)."""
        ref = await self._write(record, stored)
        try:
            updated = await self._store.instances.update(
                record.project_id,
                record.connector_id,
                InstanceChanges(credential_secret_ref=ref),
                now=self._clock(),
            )
        except NotFound:
            raise NotFoundError(
                f"project '{record.project_id}' has no '{record.connector_id}' instance"
            ) from None
        return await self._view(updated)

    async def new_webhook_url(self, project_id: str, connector_id: str) -> Instance:
        """A fresh hook id: the old per-instance URL stops working at once (leaked, or an
        instance from before hook ids existed)."""
        record = await self.record(project_id, connector_id)
        async with self._changing_secrets(record) as current:
            return await self._rewrite(record, current.with_hook_id(new_hook_id()))

    async def hold_pending(
        self, record: InstanceRecord, credential: str, value: str, *, client: str | None
    ) -> bool:
        """Keep a secret an unsigned handshake handed over, pending; never a credential.

        True when it was new. One that differs from a confirmed credential is logged
        as a warning: either the provider's subscription was re-created, or a stranger
        who knows the URL is trying to plant a secret.
        """
        received = PendingSecret(credential, value, self._clock(), client)
        if (await self.secrets(record)).holding(received) is None:
            # Nothing to change, so no turn: anyone who knows the URL can repeat a
            # handshake, and must not hold up the instance's credential changes.
            return False
        async with self._changing_secrets(record) as current:  # read again, in the turn
            held = current.holding(received)
            if held is None:
                return False
            await self._write(record, held)  # no record change: verification is untouched
        confirmed = current.credentials.get(credential)
        log.log(
            logging.WARNING if confirmed else logging.INFO,
            "a handshake to %s/%s handed over a %s%s; it is pending until confirmed on the "
            "instance page (from %s)",
            record.connector_id,
            record.project_id,
            credential,
            " that differs from the confirmed one" if confirmed else "",
            client or "an unknown address",
        )
        return True

    async def confirm_pending(
        self, project_id: str, connector_id: str, pending_id: str
    ) -> Instance:
        """An operator's choice: the pending secret becomes the credential (replacing one
        confirmed before, knowingly), the other candidates for it are dropped."""
        record = await self.record(project_id, connector_id)
        async with self._changing_secrets(record) as current:
            confirmed = current.confirming(pending_id)
            if confirmed is None:
                raise NotFoundError("that pending secret is no longer there")
            return await self._rewrite(record, confirmed)

    async def discard_pending(
        self, project_id: str, connector_id: str, pending_id: str
    ) -> Instance:
        record = await self.record(project_id, connector_id)
        async with self._changing_secrets(record) as current:
            kept = current.discarding(pending_id)
            if kept is None:
                raise NotFoundError("that pending secret is no longer there")
            ref = await self._write(record, kept)
        assert ref == record.credential_secret_ref
        return await self._view(record)

    async def delete(self, project_id: str, connector_id: str) -> None:
        """Disconnect: the instance, its credentials and its checkpoints go; signals stay."""
        record = await self.record(project_id, connector_id)
        # One step, to its end even if the request is cancelled meanwhile: an instance
        # gone but its checkpoint left would make a later reconnect resume from it.
        _, cancelled = await to_the_end(self._forget(record))
        if cancelled:
            raise asyncio.CancelledError

    async def _forget(self, record: InstanceRecord) -> None:
        project_id, connector_id = record.project_id, record.connector_id
        try:
            await self._store.instances.delete(project_id, connector_id)
        except NotFound:
            raise NotFoundError(
                f"project '{project_id}' has no '{connector_id}' instance"
            ) from None
        self._changed(project_id, connector_id)  # gone: no cache keeps its secrets
        await self._store.checkpoints.delete(project_id, connector_id)
        if record.credential_secret_ref is not None:
            await self._secrets.delete(record.credential_secret_ref)
