"""The public API of native connectors: everything a connector package imports from ucf.

A native connector is a Python package with one entry point in the
``ucf.native_sources`` group that names a :class:`NativeConnector`: its
``kind: "native"`` descriptor plus a factory of its :class:`Source`. See
``docs/writing-a-native-connector.md``; ``ucf.native.jira`` and
``ucf.native.asana`` are complete examples shipped with ucf.

A source

- declares what it does: ``schedule`` (a :class:`PollSchedule`, or None for a
  push-only tool) and ``webhooks`` (a :class:`WebhookHandler`, or None);
- fetches pages with :meth:`Source.fetch_delta`, sending through
  :class:`UpstreamCalls` to get the engine's retries, rate gate, size cap,
  SSRF guard and statistics; each :class:`Page` carries a checkpoint that is
  safe to store once the page's signals are stored;
- turns items into signals with :meth:`Source.normalise`, using
  :func:`build_signal` so its identities follow the same rules as the
  descriptor mapper's (connector + project + item id + item version);
- answers :meth:`Source.health_check` with a :class:`HealthResult`
  (:class:`HealthCheckPlan` runs the descriptor's ``healthCheck``);
- may define ``auth(credentials, *, config, token_client, on_rotate, now,
  settings)`` for auth a descriptor cannot express; :class:`OAuth2Flow` (with an
  :class:`OAuth2Config` built in code) is the engine's OAuth 2.0 refresh flow,
  which persists rotated refresh tokens through ``on_rotate`` before use;
  :func:`build_auth` builds the descriptor's own scheme (Asana: a personal
  access token, or OAuth with refresh when the OAuth credentials are present).
- may define ``async maintain(context: MaintenanceContext) -> str`` for upkeep
  between polls (Outlook creates and renews its Graph subscription); the
  scheduler calls it soon after set-up, then every few minutes.

Signals then take the path every signal takes: sanitiser, dedup ingest,
outbox, checkpoint compare-and-set.
"""

from __future__ import annotations

from ucf.core.descriptor import ConnectorDescriptor, OAuth2Config
from ucf.core.mapping import ItemError, MappedSignal, MappingResult, build_signal
from ucf.core.payload import loads_strict
from ucf.core.sanitiser import html_to_text
from ucf.core.signal import Priority
from ucf.core.timestamps import parse_timestamp
from ucf.runtime.auth import (
    CredentialMissing,
    CredentialsChanged,
    OAuth2Flow,
    StaticAuth,
    build_auth,
)
from ucf.runtime.delta import CheckpointInvalid
from ucf.runtime.http import (
    AuthFailed,
    HttpSettings,
    MalformedResponse,
    RateLimited,
    UpstreamError,
    UpstreamUnavailable,
    parse_json,
)
from ucf.runtime.native import (
    Handshake,
    MaintenanceContext,
    Malformed,
    NativeConnector,
    PollSchedule,
    Refused,
    Unhandled,
    UpstreamCalls,
    Verdict,
    Verified,
    WebhookContext,
    WebhookHandler,
    WebhookRequest,
    page_items,
)
from ucf.runtime.polling import ConfigError, Page, resolve_config
from ucf.runtime.sources import HealthCheckPlan, HealthResult, Source, SourceContext
from ucf.runtime.webhooks import HandshakeResponse

__all__ = [
    "AuthFailed",
    "CheckpointInvalid",
    "ConfigError",
    "ConnectorDescriptor",
    "CredentialMissing",
    "CredentialsChanged",
    "Handshake",
    "HandshakeResponse",
    "HealthCheckPlan",
    "HealthResult",
    "HttpSettings",
    "ItemError",
    "MaintenanceContext",
    "Malformed",
    "MalformedResponse",
    "MappedSignal",
    "MappingResult",
    "NativeConnector",
    "OAuth2Config",
    "OAuth2Flow",
    "Page",
    "PollSchedule",
    "Priority",
    "RateLimited",
    "Refused",
    "Source",
    "SourceContext",
    "StaticAuth",
    "Unhandled",
    "UpstreamCalls",
    "UpstreamError",
    "UpstreamUnavailable",
    "Verdict",
    "Verified",
    "WebhookContext",
    "WebhookHandler",
    "WebhookRequest",
    "build_auth",
    "build_signal",
    "html_to_text",
    "loads_strict",
    "page_items",
    "parse_json",
    "parse_timestamp",
    "resolve_config",
]
