"""OAuth 2.0 consent ("Connect with …"): the authorization-code grant for any connector
whose descriptor has ``auth.method: oauth2`` with a user grant, from the descriptor alone.

An operator registers each OAuth app once (:class:`OAuthClients`): the client
id is a record, the client secret lives in the secret store. A consent then
runs in two requests that may reach different workers (:class:`OAuthFlows`):

1. :meth:`OAuthFlows.start` remembers the flow under the SHA-256 of a random
   ``state`` for ten minutes (project, connector, settings, where to return,
   the dashboard session it belongs to, the redirect URI) — the PKCE
   verifier in the secret store, held there until a while past the flow's
   expiry (:mod:`ucf.service.short_secrets`), as are the credentials an API
   start gives that no consent does (GitHub PRs' webhook secret) — and returns
   the provider's consent URL.
2. :meth:`OAuthFlows.complete` *takes* that record (atomically: a state works
   once), refuses a foreign session, exchanges the code at ``tokenUrl``
   through the SSRF-guarded client and stores the tokens, with the credentials
   the start gave: on the instance (a reconnect keeps its checkpoint and
   history; an API-started flow creates it), or, for the dashboard's setup flow, under a one-time ticket the setup
   page turns into its draft so Test Connection and Confirm work as always
   (the tokens held in the secret store as the verifier is, until redeemed).

Nothing is created when anything fails, and no code, token or state is logged.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, Self
from urllib.parse import urlencode

from ucf.core.credential_keys import ACCESS_TOKEN_EXPIRES_AT, AUTH_METHOD_KEY
from ucf.core.descriptor import ConnectorDescriptor, ConsentLookup, OAuth2Config, consent_config
from ucf.core.jsonpath import MISSING, compile_path
from ucf.runtime.auth import exchange_code, render_url
from ucf.runtime.http import UpstreamError, parse_json, send_with_retries
from ucf.runtime.redaction import SECRETS
from ucf.runtime.ssrf import EgressDenied
from ucf.service.connectors import ConnectorService
from ucf.service.errors import NotFoundError, ServiceError, ValidationFailed
from ucf.service.instances import FieldProblem, check_config, check_credentials
from ucf.service.oauth_clients import OAuthClients as OAuthClients
from ucf.service.oauth_clients import RegisteredClient as RegisteredClient
from ucf.service.oauth_clients import consent_of
from ucf.service.short_secrets import SECRET_MARGIN, consume_secret, keep_secret_until
from ucf.stores.protocols import KeyValueStore, SecretLeaseStore
from ucf.stores.secrets.base import SecretStore

if TYPE_CHECKING:
    from ucf.service.context import UcfContext

__all__ = [
    "CALLBACK_PATH",
    "Connected",
    "FlowPlace",
    "OAuthClients",
    "OAuthFlows",
    "OAuthRefused",
    "RegisteredClient",
    "ReturnTo",
]

CALLBACK_PATH: Final = "/oauth/callback"
FLOW_LIFETIME: Final = timedelta(minutes=10)
TICKET_LIFETIME: Final = timedelta(minutes=10)

ReturnTo = Literal["setup", "instance"]


@dataclass(frozen=True)
class FlowPlace:
    """Where a consent was started: the page its browser goes back to."""

    project_id: str
    connector_id: str
    return_to: ReturnTo


class OAuthRefused(ServiceError):
    """A consent that cannot complete; the message is for the person in the browser.

    ``place``: where the consent was started, once the state proved the browser is the
    one that started it (a denied consent, a refused code): the page offers the way back
    there, to try again, instead of a dead end.
    """

    status = 400
    code = "oauth_refused"

    def __init__(self, message: str, details: Any = None, *, place: FlowPlace | None = None):
        super().__init__(message, details)
        self.place = place


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _looked_up(lookup: ConsentLookup, answer: Any, config: Mapping[str, str]) -> Any:
    """The value ``lookup`` reads from ``answer``: at ``path``, or, with ``wherePath``, at
    ``path`` in the first list element whose ``wherePath`` value is the instance's setting
    (compared without a trailing slash, as URL settings are stored). An empty setting
    takes the first element."""
    if lookup.where_path is None:
        return compile_path(lookup.path).first(answer)
    if not isinstance(answer, list):
        return MISSING
    wanted = (config.get(lookup.equals_config or "") or "").rstrip("/")
    where = compile_path(lookup.where_path)
    for element in answer:
        found = where.first(element)
        if not wanted or (isinstance(found, str) and found.rstrip("/") == wanted):
            return compile_path(lookup.path).first(element)
    return MISSING


def consent_gives(oauth: OAuth2Config) -> frozenset[str]:
    """The credentials a consent itself stores: the registered app's client id and secret
    (borrowed from the app) and the tokens with their expiry."""
    return frozenset(
        {
            oauth.client_id_key,
            oauth.client_secret_key,
            oauth.access_token_key,
            oauth.refresh_token_key,
            ACCESS_TOKEN_EXPIRES_AT,
        }
    )


def check_held_credentials(
    descriptor: ConnectorDescriptor, credentials: Mapping[str, Any], *, reconnect: bool
) -> dict[str, str]:
    """The credentials an API start gives beside its consent, checked as the setup form
    checks them, before anyone is sent to the provider: only the consent's sign-in
    method's own fields that the consent does not give (GitHub PRs' webhook secret).

    What the consent gives is refused by name: a client id or secret typed here would
    never be the registered app's, and tokens are the consent's to issue. On a
    reconnect the instance's stored credentials count, so none is required (the
    callback's update keeps what is not given). ``ValidationFailed`` lists every
    problem at ``credentials.<name>``."""
    oauth = descriptor.consent()
    method = next((m for m in descriptor.auth_methods() if consent_config(m) is not None), None)
    if oauth is None or method is None:
        if not credentials:
            return {}
        problem = FieldProblem("credentials", "this connector offers no consent")
        raise ValidationFailed("the credentials are not valid", [problem.__dict__])
    given = consent_gives(oauth)
    own = {f.key for f in descriptor.credential_fields(method)} - given
    problems: list[FieldProblem] = []
    asked: dict[str, Any] = {}
    for key, value in credentials.items():
        path = f"credentials.{key}"
        if key in given:
            problems.append(
                FieldProblem(
                    path,
                    "is given by the consent (the registered OAuth app's client id and "
                    "secret, the tokens): not accepted here",
                )
            )
        elif key == AUTH_METHOD_KEY:
            problems.append(FieldProblem(path, f"the consent signs in with '{method.method}'"))
        elif key not in own:
            known = ", ".join(sorted(own)) or "none"
            problems.append(
                FieldProblem(path, f"unknown credential for a consent (known: {known})")
            )
        else:
            asked[key] = value
    details: list[Any] = [p.__dict__ for p in problems]
    # Checked as the instance will hold them: with the consent's method and a token (a
    # stand-in, only so the check does not ask for one the consent is about to give).
    standing_in = {oauth.access_token_key: "consent", **descriptor.consent_marker()}
    try:
        checked = check_credentials(
            descriptor, {**asked, **standing_in}, partial=reconnect, provided=given
        )
    except ValidationFailed as failed:
        details += list(failed.details or ())
        checked = {}
    if details:
        raise ValidationFailed("the credentials are not valid", details)
    return {k: v for k, v in checked.items() if k in asked}


# --------------------------------------------------------------------------- the consent


@dataclass(frozen=True, slots=True)
class Connected:
    """Where the browser goes after a completed consent."""

    project_id: str
    connector_id: str
    return_to: ReturnTo
    created: bool = False
    ticket: str | None = None
    """For the setup flow: a one-time ticket for the tokens (see :meth:`OAuthFlows.redeem`)."""
    unfit: tuple[str, ...] = ()
    """Why the instance could not be created with the consent's settings and tokens (its
    connector was edited since the consent started, or it requires a credential no consent
    gives, such as GitHub PRs' webhook secret, that the start did not get because the
    instance it was checked against was deleted meanwhile): the tokens went to the setup
    flow instead, with the credentials the start gave."""
    edited: bool = False
    """With ``unfit``: the connector's version changed since the consent started."""


def _pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)  # 86 characters of RFC 7636's unreserved set
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


class OAuthFlows:
    """Starts and completes consents (see the module doc)."""

    def __init__(
        self,
        *,
        connectors: ConnectorService,
        clients: OAuthClients,
        records: KeyValueStore,
        secrets: SecretStore,
        leases: SecretLeaseStore,
        instances: Any,
        http: Any,
        http_settings: Any,
    ) -> None:
        self._connectors = connectors
        self._clients = clients
        self._records = records
        self._secrets = secrets
        self._leases = leases
        self._instances = instances
        self._http = http
        self._http_settings = http_settings

    @classmethod
    def of(cls, context: UcfContext) -> Self:
        return cls(
            connectors=context.connectors,
            clients=context.instances.oauth_clients,
            records=context.store.records,
            secrets=context.secrets,
            leases=context.store.secret_leases,
            instances=context.instances,
            http=context.http,
            http_settings=context.settings.http,
        )

    async def start(
        self,
        project_id: str,
        connector_id: str,
        *,
        config: Mapping[str, Any],
        redirect_uri: str,
        now: datetime,
        session: str | None = None,
        return_to: ReturnTo = "instance",
        check_settings: bool = False,
        credentials: Mapping[str, Any] | None = None,
    ) -> str:
        """The provider's consent URL for a new flow (``session``: the dashboard session it
        is bound to; None for a flow started through the API). ``check_settings``: ``config``
        is as a client sent it, to be checked (see :meth:`_checked_settings`).
        ``credentials``: ones no consent gives, as a client sent them (checked by
        :func:`check_held_credentials`); kept in the secret store until the callback
        stores them on the instance, or the upkeep deletes them with an abandoned flow."""
        connector = await self._connectors.get(connector_id)
        oauth = consent_of(connector)
        client = await self._clients.get(connector_id, now=now)
        if client is None:
            raise OAuthRefused(
                f"no OAuth app is registered for '{connector_id}': an operator registers its "
                f"client id and secret first (PUT /api/connectors/{connector_id}/oauth-client)"
            )
        held: dict[str, str] = {}
        if check_settings or credentials:
            config, held = await self._checked_start(
                connector, project_id, config, credentials or {}, check_settings=check_settings
            )
        state = secrets.token_urlsafe(32)
        flow: dict[str, Any] = {
            "project": project_id,
            "connector": connector_id,
            "config": dict(config),
            "redirectUri": redirect_uri,
            "returnTo": return_to,
            "session": _digest(session) if session is not None else None,
            "descriptorVersion": connector.descriptor.version,
        }
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            **oauth.authorize_params,
        }
        if oauth.scopes:  # none: the app's own setting (Asana's full or granular permissions)
            params["scope"] = oauth.scope_separator.join(oauth.scopes)
        if oauth.pkce:
            verifier, challenge = _pkce_pair()
            flow["verifierRef"] = await keep_secret_until(
                self._secrets,
                self._leases,
                {"codeVerifier": verifier},
                until=now + FLOW_LIFETIME + SECRET_MARGIN,
            )
            params["code_challenge"] = challenge
            params["code_challenge_method"] = "S256"
        if held:
            for value in held.values():
                SECRETS.add(value)  # never in a log line, whatever quotes it
            flow["credentialsRef"] = await keep_secret_until(
                self._secrets, self._leases, held, until=now + FLOW_LIFETIME + SECRET_MARGIN
            )
        await self._records.put(
            f"oauth-state:{_digest(state)}", flow, expires_at=now + FLOW_LIFETIME
        )
        base = render_url(oauth.authorise_url, config)
        separator = "&" if "?" in base else "?"
        return f"{base}{separator}{urlencode(params)}"

    async def _checked_start(
        self,
        connector: Any,
        project_id: str,
        config: Mapping[str, Any],
        credentials: Mapping[str, Any],
        *,
        check_settings: bool,
    ) -> tuple[Mapping[str, Any], dict[str, str]]:
        """The settings (when ``check_settings``) and the credentials a consent starts
        with, checked together so one 422 lists every problem of both (see
        :meth:`_checked_settings` and :func:`check_held_credentials`)."""
        try:
            record = await self._instances.record(project_id, connector.id)
        except NotFoundError:
            record = None
        refused: list[ValidationFailed] = []
        if check_settings:
            try:
                config = self._checked_settings(connector, record, config)
            except ValidationFailed as failed:
                refused.append(failed)
        held: dict[str, str] = {}
        try:
            held = check_held_credentials(
                connector.descriptor, credentials, reconnect=record is not None
            )
        except ValidationFailed as failed:
            refused.append(failed)
        ValidationFailed.raise_any(refused)
        return config, held

    @staticmethod
    def _checked_settings(connector: Any, record: Any, config: Mapping[str, Any]) -> dict[str, str]:
        """The settings a consent starts with, checked and with defaults applied before the
        user is sent to the provider: unchecked, a value of the wrong type or an omitted URL
        that has a default made a broken consent URL (``['x']/login/…``, ``/login/…``), a
        lone surrogate a 500, and a missing required setting failed only after the user had
        consented. A reconnect (``record``: the instance) starts from the instance's
        settings; settings the provider fills after the consent (``afterConsent``) are not
        required yet."""
        stored = {str(k): str(v) for k, v in record.config.items()} if record else {}
        descriptor = connector.descriptor
        consent = descriptor.consent()
        later = [lookup.config_field for lookup in consent.after_consent] if consent else []
        return check_config(descriptor, {**stored, **config}, provided=later)

    async def complete(
        self,
        *,
        state: str | None,
        code: str | None,
        error: str | None,
        session: str | None,
        now: datetime,
    ) -> Connected:
        """Exchange the code and store the tokens; :class:`OAuthRefused` with a plain
        reason otherwise (and nothing stored)."""
        if not state:
            raise OAuthRefused("the provider's answer has no state: start the connection again")
        flow = await self._records.take(f"oauth-state:{_digest(state)}", now=now)
        if flow is None:
            raise OAuthRefused(
                "this consent link was already used or has expired: start the connection again"
            )
        verifier, held = await self._held(flow)
        bound = flow.get("session")
        if bound is not None and (session is None or _digest(session) != bound):
            raise OAuthRefused(
                "this consent was started in another browser session: start it again from here"
            )
        project_id, connector_id = str(flow["project"]), str(flow["connector"])
        return_to: ReturnTo = "setup" if flow.get("returnTo") == "setup" else "instance"
        try:
            return await self._finish(flow, verifier, held, code=code, error=error, now=now)
        except OAuthRefused as refused:
            refused.place = refused.place or FlowPlace(project_id, connector_id, return_to)
            raise

    async def _finish(
        self,
        flow: Mapping[str, Any],
        verifier: str | None,
        held: Mapping[str, str],
        *,
        code: str | None,
        error: str | None,
        now: datetime,
    ) -> Connected:
        """:meth:`complete` once the state is known to be this browser's; ``held``: the
        credentials the start gave beside the consent."""
        if error:
            shown = error if len(error) <= 64 and error.replace("_", "").isalnum() else "error"
            raise OAuthRefused(f"the provider did not grant access ({shown}); nothing was stored")
        if not code:
            raise OAuthRefused("the provider's answer has no authorization code")
        project_id, connector_id = str(flow["project"]), str(flow["connector"])
        connector = await self._connectors.get(connector_id)
        oauth = consent_of(connector)
        config = {str(k): str(v) for k, v in dict(flow.get("config") or {}).items()}
        app = await self._clients.credentials(connector.descriptor, now=now)
        if not app:
            raise OAuthRefused(f"the OAuth app of '{connector_id}' is no longer registered")
        try:
            tokens = await exchange_code(
                oauth,
                code=code,
                redirect_uri=str(flow["redirectUri"]),
                code_verifier=verifier,
                client_id=app[oauth.client_id_key],
                client_secret=app[oauth.client_secret_key],
                token_url=render_url(oauth.token_url, config),
                client=self._http,
                settings=self._http_settings,
                now=now,
            )
        except (UpstreamError, EgressDenied) as failure:
            raise OAuthRefused(
                f"the provider's token endpoint did not exchange the code: {failure}"
            ) from None
        found = await self._lookups(oauth, tokens, config)
        tokens |= connector.descriptor.consent_marker()  # sign in with the consent from now on
        # The credentials the start gave go with the tokens (the tokens win: the start
        # refused the consent's own keys, but the connector may have been edited since).
        # One the connector no longer declares is dropped, as a removed setting is.
        declared_credentials = {f.key for f in connector.descriptor.credential_fields()}
        tokens = {
            **{k: v for k, v in held.items() if k in declared_credentials},
            **tokens,
        }
        if flow.get("returnTo") == "setup":
            return await self._ticket(project_id, connector_id, tokens, found, now)
        # Settings an edit made since the start no longer declares are dropped, as saving
        # an instance drops them: they no longer mean anything, and the create refused them.
        declared = {f.key for f in connector.descriptor.setup_config_fields()}
        config = {k: v for k, v in config.items() if k in declared}
        edited = flow.get("descriptorVersion") != connector.descriptor.version
        return await self._store_on_instance(
            project_id, connector_id, tokens, config, found, now, edited=edited
        )

    async def _lookups(
        self, oauth: OAuth2Config, tokens: Mapping[str, str], config: Mapping[str, str]
    ) -> dict[str, str]:
        """Settings the descriptor reads from the provider with the new token (Atlassian's
        cloudId from accessible-resources); a failure ends the flow, nothing stored."""
        found: dict[str, str] = {}
        token = tokens.get(oauth.access_token_key, "")
        for lookup in oauth.after_consent:
            url = render_url(lookup.endpoint, config)
            request = self._http.build_request(
                "GET",
                url,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
            try:
                response = await send_with_retries(
                    self._http, request, settings=self._http_settings
                )
                value = _looked_up(lookup, parse_json(response), config)
            except (UpstreamError, EgressDenied, ValueError) as failure:
                raise OAuthRefused(
                    f"connected, but reading {lookup.config_field} from the provider failed: "
                    f"{failure}; nothing was stored"
                ) from None
            if value is MISSING or value is None or isinstance(value, dict | list):
                wanted = (
                    f" for the {lookup.equals_config} {config.get(lookup.equals_config or '')!r}"
                    if lookup.where_path and config.get(lookup.equals_config or "")
                    else ""
                )
                raise OAuthRefused(
                    f"connected, but the provider's answer has no {lookup.config_field} at "
                    f"{lookup.path}{wanted} (does the account have access to that site?); "
                    "nothing was stored"
                )
            found[lookup.config_field] = str(value)
        return found

    async def _held(self, flow: Mapping[str, Any]) -> tuple[str | None, dict[str, str]]:
        """The flow's PKCE verifier (None: it has none) and the credentials its start gave
        beside the consent, each deleted from the secret store (both, before either is
        refused: the flow's record is taken, nothing else would delete them now).

        Gone already, one was deleted as abandoned by an upkeep whose clock ran past the
        flow's time: refused here, as the flow itself would have been, rather than
        exchanging the code without the verifier for the provider to refuse, or creating
        the instance without the credentials its script gave."""
        gone = False
        verifier: str | None = None
        held: dict[str, str] = {}
        for key in ("verifierRef", "credentialsRef"):
            ref = flow.get(key)
            if not isinstance(ref, str):
                continue
            stored = await consume_secret(self._secrets, self._leases, ref)
            if stored is None:
                gone = True
            elif key == "verifierRef":
                verifier = stored.get("codeVerifier")
            else:
                held = stored
                for value in held.values():
                    SECRETS.add(value)
        if gone:
            raise OAuthRefused(
                "this consent link was already used or has expired: start the connection again"
            )
        return verifier, held

    async def _ticket(
        self,
        project_id: str,
        connector_id: str,
        tokens: dict[str, str],
        found: dict[str, str],
        now: datetime,
    ) -> Connected:
        ticket = secrets.token_urlsafe(32)
        ref = await keep_secret_until(
            self._secrets, self._leases, tokens, until=now + TICKET_LIFETIME + SECRET_MARGIN
        )
        await self._records.put(
            f"oauth-ticket:{_digest(ticket)}",
            {"project": project_id, "connector": connector_id, "tokensRef": ref, "found": found},
            expires_at=now + TICKET_LIFETIME,
        )
        return Connected(project_id, connector_id, "setup", ticket=ticket)

    async def redeem(
        self, ticket: str, *, project_id: str, connector_id: str, now: datetime
    ) -> tuple[dict[str, str], dict[str, str]]:
        """A setup flow's tokens and the settings read after the consent, once; the
        secret-store copy of the tokens is deleted (and no longer held)."""
        record = await self._records.take(f"oauth-ticket:{_digest(ticket)}", now=now)
        if record is None or (record.get("project"), record.get("connector")) != (
            project_id,
            connector_id,
        ):
            raise OAuthRefused("this connection result was already used or has expired")
        tokens = await consume_secret(self._secrets, self._leases, str(record["tokensRef"]))
        if tokens is None:
            raise OAuthRefused("this connection result is gone: connect again")
        found = {str(k): str(v) for k, v in dict(record.get("found") or {}).items()}
        return tokens, found

    async def _store_on_instance(
        self,
        project_id: str,
        connector_id: str,
        tokens: dict[str, str],
        config: dict[str, str],
        found: dict[str, str],
        now: datetime,
        *,
        edited: bool,
    ) -> Connected:
        """A reconnect replaces the tokens in place (checkpoint and history stay); a flow
        started through the API creates the instance with its settings. Settings read
        after the consent (``afterConsent``) are stored either way. ``edited``: the
        connector's version changed since the start (said when the instance cannot be
        created, rather than blaming an edit for a credential no consent gives)."""
        try:
            await self._instances.record(project_id, connector_id)
        except NotFoundError:
            settings = {**config, **found}
            try:
                await self._instances.create(
                    project_id, connector_id, credentials=tokens, config=settings
                )
            except ValidationFailed as unfit:
                # The connector was edited between the start and this callback (a setting
                # or credential it now requires), or it requires a credential no consent
                # gives (GitHub PRs' webhook secret) that the start did not ask for (a
                # reconnect's, counting the instance's own, and the instance went since):
                # the settings no longer fit, but the consent's tokens still sign in.
                # Refused here, they were lost with the spent code; the setup flow takes
                # them, with the settings, and asks for what is missing.
                connected = await self._ticket(project_id, connector_id, tokens, settings, now)
                said = tuple(
                    f"{d.get('path')}: {d.get('message')}"
                    for d in unfit.details or []
                    if isinstance(d, dict)
                )
                return Connected(
                    project_id,
                    connector_id,
                    "setup",
                    ticket=connected.ticket,
                    unfit=said,
                    edited=edited,
                )
            return Connected(project_id, connector_id, "instance", created=True)
        await self._instances.update(
            project_id, connector_id, credentials=tokens, config=found or None
        )
        return Connected(project_id, connector_id, "instance")
