"""A stored descriptor as plain objects, for the paths that only read it.

The descriptor models (:mod:`ucf.core.descriptor`) validate every descriptor
before it is stored: the registry, the API, the CLI and the editor all parse
through them. What is stored is therefore known to be valid, and the paths
that only *run* a descriptor (a webhook delivery on the gateway, a poll) do
not need pydantic to read it back: importing pydantic and building the
descriptor models costs about 95 ms of a Lambda cold start (docs/aws.md,
"What the descriptor models cost"). This module reads the stored JSON
(camelCase aliases) straight into small ``__slots__`` objects with the
models' attribute names, applying the defaults the models apply.

The compiled parts (the mapping engine, the webhook verifier, the handshake
matcher, the poll plan with its delta and paginator, the auth flow, the
health check) run on these views; a caller that holds a model (a preview, the CLI,
a test) converts it with the ``*_view`` functions below. A property test
(``tests/core/test_descriptor_view.py``) holds the view loaded from JSON equal,
attribute by attribute, to the validated model, for every catalogue
descriptor and for generated valid ones.

Plain classes with a hand-written ``__init__``, not dataclasses: a frozen,
slotted dataclass costs about 0.4 ms to build at import on Python 3.11, and
this module is imported by every cold start that reads a descriptor. A view
is read-only by convention (nothing writes to one after the loader).

Pure: no I/O, and nothing here imports pydantic or the models (a model is
only ever *given* to the converters, and read by attribute).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

from ucf.core.credential_keys import AUTH_METHOD_KEY
from ucf.core.signal_identity import UNKNOWN_SIGNAL_TYPE, Priority

if TYPE_CHECKING:
    from ucf.core import descriptor as d
    from ucf.core.timestamps import OutputFormat as TimestampOutputFormat
    from ucf.core.timestamps import TimestampFormat as ItemTimestampFormat


class ViewUnavailable(ValueError):
    """The stored JSON does not have the shape the loader reads; parse it with the models."""


class _View:
    """Equality and ``repr`` by field, for every view (and the mapping cache's key)."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _keys: ClassVar[frozenset[str]] = frozenset()
    """The JSON keys the model takes (its aliases): any other key is refused (see
    :func:`_known`); ``tests/core/test_descriptor_view.py`` holds each set to its model's."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._fields)

    __hash__ = None  # type: ignore[assignment]  # mutable lists inside: not hashable

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"


def _known(data: Mapping[str, Any], keys: frozenset[str]) -> None:
    """Refuse a key the view would not read as the models do.

    The models also take a field by its Python name (``tolerance_seconds`` for
    ``toleranceSeconds``: ``validate_by_name``), and a shipped or installed
    native descriptor is stored as written, not as the models dump it; the view
    reads aliases only, so it would silently apply the default instead (a 300 s
    replay window for a 5 s one). An unknown key is an error to the models
    (``extra="forbid"``) that the view must not ignore either. Either way the
    caller parses the JSON with the models.
    """
    if not keys.issuperset(data):
        odd = sorted(str(key) for key in data if key not in keys)
        raise ViewUnavailable(f"keys the view does not read: {', '.join(odd)}")


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ViewUnavailable(f"expected a list, found {type(value).__name__}")
    return value


def _str_list(value: Any) -> list[str]:
    return [str(item) for item in _list(value)]


# --------------------------------------------------------------------------- mapping


class ConditionView(_View):
    """:class:`~ucf.core.descriptor.Condition`."""

    __slots__ = ("operator", "value", "value_path", "when")
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset({"operator", "value", "valuePath", "when"})

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.when: str = data["when"]
        self.operator: str = data["operator"]
        value = data.get("value")
        self.value: str | list[str] | None = list(value) if isinstance(value, list) else value
        self.value_path: str | None = data.get("valuePath")


class SignalTypeRuleView(ConditionView):
    """:class:`~ucf.core.descriptor.SignalTypeRule`: a condition that names a signal type."""

    __slots__ = ("all", "event_types", "then")
    _fields: ClassVar[tuple[str, ...]] = (*ConditionView._fields, *__slots__)
    _keys: ClassVar[frozenset[str]] = frozenset(
        {"all", "eventTypes", "operator", "then", "value", "valuePath", "when"}
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.then: str = data["then"]
        self.all: list[ConditionView] = [ConditionView(c) for c in _list(data.get("all", []))]
        event_types = data.get("eventTypes")
        self.event_types: list[str] | None = None if event_types is None else _str_list(event_types)


class PriorityRuleView(ConditionView):
    """:class:`~ucf.core.descriptor.PriorityRule`; never filtered by event type."""

    __slots__ = ("all", "then")
    _fields: ClassVar[tuple[str, ...]] = (*ConditionView._fields, *__slots__)
    _keys: ClassVar[frozenset[str]] = frozenset(
        {"all", "operator", "then", "value", "valuePath", "when"}
    )
    event_types: ClassVar[None] = None

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.then: Priority = data["then"]
        self.all: list[ConditionView] = [ConditionView(c) for c in _list(data.get("all", []))]


class FieldMappingView(_View):
    """:class:`~ucf.core.descriptor.FieldMappingDescriptor`."""

    __slots__ = (
        "default_type",
        "id_path",
        "items_path",
        "participants_path",
        "priority_mapping",
        "raw_fields",
        "related_items_path",
        "signal_type_rules",
        "skip",
        "summary_template",
        "tags_path",
        "timestamp_format",
        "timestamp_path",
        "version_path",
        "version_precision",
    )
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset(
        {
            "defaultType",
            "idPath",
            "itemsPath",
            "participantsPath",
            "priorityMapping",
            "rawFields",
            "relatedItemsPath",
            "signalTypeRules",
            "skip",
            "summaryTemplate",
            "tagsPath",
            "timestampFormat",
            "timestampPath",
            "versionPath",
            "versionPrecision",
        }
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.items_path: str = data["itemsPath"]
        self.id_path: str = data["idPath"]
        self.timestamp_path: str = data["timestampPath"]
        self.summary_template: str = data["summaryTemplate"]
        self.signal_type_rules: list[SignalTypeRuleView] = [
            SignalTypeRuleView(rule) for rule in _list(data["signalTypeRules"])
        ]
        priority = data.get("priorityMapping")
        self.priority_mapping: list[PriorityRuleView] | None = (
            None if priority is None else [PriorityRuleView(rule) for rule in _list(priority)]
        )
        self.participants_path: str | None = data.get("participantsPath")
        self.tags_path: str | None = data.get("tagsPath")
        self.related_items_path: str | None = data.get("relatedItemsPath")
        raw = data.get("rawFields")
        self.raw_fields: list[str] | None = None if raw is None else _str_list(raw)
        self.skip: list[ConditionView] = [ConditionView(c) for c in _list(data.get("skip", []))]
        self.default_type: str = data.get("defaultType", UNKNOWN_SIGNAL_TYPE)
        self.version_path: str | None = data.get("versionPath")
        self.version_precision: str = data.get("versionPrecision", "millisecond")
        self.timestamp_format: ItemTimestampFormat = data.get("timestampFormat", "auto")

    def cache_key(self) -> str:
        """What the compiled-mapping cache is keyed on: the mapping's whole content."""
        return repr(self)


# --------------------------------------------------------------------------- webhooks


class SignatureTimestampView(_View):
    """:class:`~ucf.core.descriptor.SignatureTimestamp`."""

    __slots__ = ("body_path", "header", "tolerance_seconds", "unit")
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset({"bodyPath", "header", "toleranceSeconds", "unit"})

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.header: str | None = data.get("header")
        self.body_path: str | None = data.get("bodyPath")
        self.unit: str = data.get("unit", "seconds")
        self.tolerance_seconds: int = data.get("toleranceSeconds", 300)


class SignatureView(_View):
    """:class:`~ucf.core.descriptor.SignatureVerification`."""

    __slots__ = (
        "algorithm",
        "encoding",
        "header",
        "id_header",
        "prefix",
        "secret_credential",
        "secret_encoding",
        "separator",
        "signed_payload",
        "timestamp",
    )
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset(
        {
            "algorithm",
            "encoding",
            "header",
            "idHeader",
            "prefix",
            "secretCredential",
            "secretEncoding",
            "separator",
            "signedPayload",
            "timestamp",
        }
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.header: str = data["header"]
        self.algorithm: str = data.get("algorithm", "hmac-sha256")
        self.encoding: str = data.get("encoding", "hex")
        self.prefix: str = data.get("prefix", "")
        self.signed_payload: str = data.get("signedPayload", "{{body}}")
        self.separator: str | None = data.get("separator")
        timestamp = data.get("timestamp")
        self.timestamp: SignatureTimestampView | None = (
            None if timestamp is None else SignatureTimestampView(timestamp)
        )
        self.id_header: str | None = data.get("idHeader")
        self.secret_credential: str = data.get("secretCredential", "webhookSecret")
        self.secret_encoding: str = data.get("secretEncoding", "utf8")


class TokenView(_View):
    """:class:`~ucf.core.descriptor.TokenVerification`."""

    __slots__ = ("body_path", "header", "query_param", "secret_credential", "value_prefix")
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset(
        {"bodyPath", "header", "queryParam", "secretCredential", "valuePrefix"}
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.header: str | None = data.get("header")
        self.query_param: str | None = data.get("queryParam")
        self.body_path: str | None = data.get("bodyPath")
        self.value_prefix: str = data.get("valuePrefix", "")
        self.secret_credential: str = data.get("secretCredential", "webhookSecret")


class HandshakeView(_View):
    """:class:`~ucf.core.descriptor.Handshake`."""

    __slots__ = (
        "captures_secret",
        "equals",
        "header",
        "query_param",
        "respond_path",
        "signed",
        "type",
        "when_path",
    )
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset(
        {
            "capturesSecret",
            "equals",
            "header",
            "queryParam",
            "respondPath",
            "signed",
            "type",
            "whenPath",
        }
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.type: str = data["type"]
        self.when_path: str | None = data.get("whenPath")
        self.equals: str | None = data.get("equals")
        self.respond_path: str | None = data.get("respondPath")
        self.header: str | None = data.get("header")
        self.query_param: str | None = data.get("queryParam")
        self.signed: bool = data.get("signed", False)
        self.captures_secret: bool = data.get("capturesSecret", False)


class WebhookView(_View):
    """:class:`~ucf.core.descriptor.WebhookSpec` (the ``webhook`` part of ``ingestion``).

    ``rate_limit_set`` is what the model's ``model_fields_set`` says of
    ``rateLimitPerMinute``: the gateway uses the server's setting unless the
    descriptor gives one.
    """

    __slots__ = (
        "action_path",
        "delivery_id_header",
        "delivery_id_path",
        "event_type_header",
        "event_type_path",
        "event_types",
        "field_mapping",
        "handshakes",
        "rate_limit_per_minute",
        "rate_limit_set",
        "signature",
        "token",
        "verification",
    )
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset(
        {
            "actionPath",
            "deliveryIdHeader",
            "deliveryIdPath",
            "eventTypeHeader",
            "eventTypePath",
            "eventTypes",
            "fieldMapping",
            "handshakes",
            "rateLimitPerMinute",
            "signature",
            "token",
            "verification",
        }
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.event_types: list[str] = _str_list(data["eventTypes"])
        self.event_type_path: str | None = data.get("eventTypePath")
        self.verification: str = data["verification"]
        self.event_type_header: str | None = data.get("eventTypeHeader")
        self.action_path: str | None = data.get("actionPath")
        self.delivery_id_header: str | None = data.get("deliveryIdHeader")
        self.delivery_id_path: str | None = data.get("deliveryIdPath")
        signature = data.get("signature")
        self.signature: SignatureView | None = (
            None if signature is None else SignatureView(signature)
        )
        token = data.get("token")
        self.token: TokenView | None = None if token is None else TokenView(token)
        self.handshakes: list[HandshakeView] = [
            HandshakeView(h) for h in _list(data.get("handshakes", []))
        ]
        mapping = data.get("fieldMapping")
        self.field_mapping: FieldMappingView | None = (
            None if mapping is None else FieldMappingView(mapping)
        )
        self.rate_limit_set: bool = "rateLimitPerMinute" in data
        self.rate_limit_per_minute: int = data.get("rateLimitPerMinute", 100)


# --------------------------------------------------------------------------- auth


class CredentialFieldView(_View):
    """:class:`~ucf.core.descriptor.CredentialField`."""

    __slots__ = ("help_text", "key", "label", "placeholder", "required", "type")
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset(
        {"helpText", "key", "label", "placeholder", "required", "type"}
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.key: str = data["key"]
        self.label: str = data["label"]
        self.type: str = data["type"]
        self.required: bool = data["required"]
        self.placeholder: str | None = data.get("placeholder")
        self.help_text: str | None = data.get("helpText")


class CredentialPlacementView(_View):
    """:class:`~ucf.core.descriptor.CredentialPlacement`."""

    __slots__ = ("credential", "delivery", "param_name", "value_prefix")
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset(
        {"credential", "delivery", "paramName", "valuePrefix"}
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.credential: str = data["credential"]
        self.delivery: str = data["delivery"]
        self.param_name: str = data.get("paramName", "Authorization")
        self.value_prefix: str = data.get("valuePrefix", "")


class AuthConfigView(_View):
    """What every method's ``config`` has: its credential fields and fixed headers."""

    __slots__ = ("credential_fields", "extra_headers")
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset({"credentialFields", "extraHeaders"})

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.credential_fields: list[CredentialFieldView] = [
            CredentialFieldView(f) for f in _list(data["credentialFields"])
        ]
        self.extra_headers: dict[str, str] = dict(data.get("extraHeaders", {}))


class KeyedConfigView(AuthConfigView):
    """:class:`~ucf.core.descriptor.ApiKeyConfig` and :class:`~ucf.core.descriptor.PatConfig`."""

    __slots__ = (
        "additional_credentials",
        "credential_key",
        "delivery",
        "param_name",
        "value_prefix",
    )
    _fields: ClassVar[tuple[str, ...]] = (*AuthConfigView._fields, *__slots__)
    _keys: ClassVar[frozenset[str]] = frozenset(
        {
            "additionalCredentials",
            "credentialFields",
            "credentialKey",
            "delivery",
            "extraHeaders",
            "paramName",
            "valuePrefix",
        }
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.param_name: str = data["paramName"]
        self.credential_key: str | None = data.get("credentialKey")
        self.value_prefix: str = data.get("valuePrefix", "")
        self.additional_credentials: list[CredentialPlacementView] = [
            CredentialPlacementView(c) for c in _list(data.get("additionalCredentials", []))
        ]
        self.delivery: str = data["delivery"]


class BasicConfigView(AuthConfigView):
    """:class:`~ucf.core.descriptor.BasicAuthConfig`."""

    __slots__ = ("password_key", "username_key")
    _fields: ClassVar[tuple[str, ...]] = (*AuthConfigView._fields, *__slots__)
    _keys: ClassVar[frozenset[str]] = frozenset(
        {"credentialFields", "extraHeaders", "passwordKey", "usernameKey"}
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.username_key: str | None = data.get("usernameKey")
        self.password_key: str | None = data.get("passwordKey")


class OAuth2ConfigView(AuthConfigView):
    """:class:`~ucf.core.descriptor.OAuth2Config`, less ``afterConsent`` (read only by the
    consent flow, which parses the descriptor with the models)."""

    __slots__ = (
        "access_token_key",
        "authorise_url",
        "authorize_params",
        "client_auth",
        "client_id_key",
        "client_secret_key",
        "grant",
        "pkce",
        "refresh_token_key",
        "rotates_refresh_token",
        "scope_separator",
        "scopes",
        "token_request",
        "token_url",
    )
    _fields: ClassVar[tuple[str, ...]] = (*AuthConfigView._fields, *__slots__)
    _keys: ClassVar[frozenset[str]] = frozenset(
        {
            "accessTokenKey",
            "afterConsent",
            "authoriseUrl",
            "authorizeParams",
            "clientAuth",
            "clientIdKey",
            "clientSecretKey",
            "credentialFields",
            "extraHeaders",
            "grant",
            "pkce",
            "refreshTokenKey",
            "rotatesRefreshToken",
            "scopeSeparator",
            "scopes",
            "tokenRequest",
            "tokenUrl",
        }
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.authorise_url: str = data["authoriseUrl"]
        self.token_url: str = data["tokenUrl"]
        self.scopes: list[str] = _str_list(data["scopes"])
        self.grant: str = data.get("grant", "refresh_token")
        self.rotates_refresh_token: bool = data.get("rotatesRefreshToken", False)
        self.client_auth: str = data.get("clientAuth", "body")
        self.token_request: str = data.get("tokenRequest", "form")
        self.pkce: bool = data.get("pkce", False)
        self.authorize_params: dict[str, str] = dict(data.get("authorizeParams", {}))
        self.scope_separator: str = data.get("scopeSeparator", " ")
        self.client_id_key: str = data.get("clientIdKey", "clientId")
        self.client_secret_key: str = data.get("clientSecretKey", "clientSecret")
        self.refresh_token_key: str = data.get("refreshTokenKey", "refreshToken")
        self.access_token_key: str = data.get("accessTokenKey", "accessToken")


class WebhookSecretConfigView(AuthConfigView):
    """:class:`~ucf.core.descriptor.WebhookSecretConfig`."""

    __slots__ = ("algorithm", "signature_header")
    _fields: ClassVar[tuple[str, ...]] = (*AuthConfigView._fields, *__slots__)
    _keys: ClassVar[frozenset[str]] = frozenset(
        {"algorithm", "credentialFields", "extraHeaders", "signatureHeader"}
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.signature_header: str = data["signatureHeader"]
        self.algorithm: str = data["algorithm"]


_AUTH_CONFIGS: dict[str, type[AuthConfigView]] = {
    "oauth2": OAuth2ConfigView,
    "api_key": KeyedConfigView,
    "pat": KeyedConfigView,
    "basic": BasicConfigView,
    "webhook_secret": WebhookSecretConfigView,
}

OAUTH_CONSENT_GRANT: Final = "refresh_token"
"""Connectors with this grant get their tokens from a user's consent (authorization code)."""


_NO_AUTH_KEYS: Final = frozenset({"method"})
""":class:`~ucf.core.descriptor.NoAuth`'s keys (it has no ``config``)."""


class AuthView(_View):
    """One way to sign in (``auth`` or one of ``authAlternatives``): its ``method`` names the
    kind (``oauth2``, ``api_key``, ``pat``, ``basic``, ``webhook_secret``, ``none``) that
    :class:`~ucf.core.descriptor.AuthDescriptor`'s classes tell apart."""

    __slots__ = ("config", "method")
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset({"config", "method"})

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.method: str = data["method"]
        if self.method == "none":
            _known(data, _NO_AUTH_KEYS)
            self.config: AuthConfigView | None = None
        else:
            _known(data, self._keys)
            config = _AUTH_CONFIGS.get(self.method)
            if config is None:
                raise ViewUnavailable(f"unknown auth method {self.method!r}")
            self.config = config(data["config"])

    def consent(self) -> OAuth2ConfigView | None:
        """This method's OAuth 2.0 settings when its tokens come from a user's consent."""
        config = self.config
        if isinstance(config, OAuth2ConfigView) and config.grant == OAUTH_CONSENT_GRANT:
            return config
        return None


# --------------------------------------------------------------------------- polling


class ConfigFieldView(_View):
    """:class:`~ucf.core.descriptor.ConfigField`: what a poll checks an instance's config by."""

    __slots__ = (
        "default",
        "help_text",
        "key",
        "label",
        "options",
        "placeholder",
        "required",
        "type",
    )
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset(
        {"default", "helpText", "key", "label", "options", "placeholder", "required", "type"}
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.key: str = data["key"]
        self.label: str = data["label"]
        self.type: str = data.get("type", "text")
        self.required: bool = data.get("required", True)
        self.default: str | None = data.get("default")
        self.placeholder: str | None = data.get("placeholder")
        self.help_text: str | None = data.get("helpText")
        options = data.get("options")
        self.options: list[str] | None = None if options is None else _str_list(options)


class TimestampFilterView(_View):
    """:class:`~ucf.core.descriptor.TimestampFilterDelta` (``type`` names the delta kind)."""

    __slots__ = ("format", "overlap_seconds", "query_param", "sorted_ascending", "type")
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset(
        {"format", "overlapSeconds", "queryParam", "sortedAscending", "type"}
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.type: str = data["type"]
        self.query_param: str | None = data["queryParam"]
        self.format: TimestampOutputFormat = data["format"]
        self.overlap_seconds: int = data.get("overlapSeconds", 60)
        self.sorted_ascending: bool = data.get("sortedAscending", False)


class DeltaTokenView(_View):
    """:class:`~ucf.core.descriptor.DeltaTokenDelta`."""

    __slots__ = ("token_is_url", "token_param", "token_path", "type")
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset({"tokenIsUrl", "tokenParam", "tokenPath", "type"})

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.type: str = data["type"]
        self.token_path: str = data["tokenPath"]
        self.token_param: str = data["tokenParam"]
        self.token_is_url: bool = data.get("tokenIsUrl", False)


class CursorView(_View):
    """:class:`~ucf.core.descriptor.CursorDelta`."""

    __slots__ = ("cursor_param", "cursor_path", "type")
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset({"cursorParam", "cursorPath", "type"})

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.type: str = data["type"]
        self.cursor_path: str = data["cursorPath"]
        self.cursor_param: str = data["cursorParam"]


class SinceIdView(_View):
    """:class:`~ucf.core.descriptor.SinceIdDelta`."""

    __slots__ = ("id_param", "id_path", "order", "type")
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset({"idParam", "idPath", "order", "type"})

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.type: str = data["type"]
        self.id_path: str = data["idPath"]
        self.id_param: str = data["idParam"]
        self.order: str = data.get("order", "lexicographic")


DeltaView = TimestampFilterView | DeltaTokenView | CursorView | SinceIdView

_DELTAS: dict[str, type[DeltaView]] = {
    "timestamp_filter": TimestampFilterView,
    "delta_token": DeltaTokenView,
    "cursor": CursorView,
    "since_id": SinceIdView,
}


def _delta(data: Mapping[str, Any]) -> DeltaView:
    kind = _DELTAS.get(data["type"])
    if kind is None:
        raise ViewUnavailable(f"unknown delta type {data['type']!r}")
    return kind(data)


class PaginationView(_View):
    """:class:`~ucf.core.descriptor.PaginationDescriptor`."""

    __slots__ = (
        "base_url_path",
        "has_more_path",
        "max_pages",
        "next_header",
        "next_param",
        "next_path",
        "page_size",
        "page_size_param",
        "total_header",
        "total_path",
        "type",
    )
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset(
        {
            "baseUrlPath",
            "hasMorePath",
            "maxPages",
            "nextHeader",
            "nextParam",
            "nextPath",
            "pageSize",
            "pageSizeParam",
            "totalHeader",
            "totalPath",
            "type",
        }
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.type: str = data["type"]
        self.next_path: str | None = data.get("nextPath")
        self.next_param: str | None = data.get("nextParam")
        self.next_header: str | None = data.get("nextHeader")
        self.total_path: str | None = data.get("totalPath")
        self.total_header: str | None = data.get("totalHeader")
        self.page_size: int = data["pageSize"]
        self.page_size_param: str | None = data.get("pageSizeParam")
        self.has_more_path: str | None = data.get("hasMorePath")
        self.base_url_path: str | None = data.get("baseUrlPath")
        self.max_pages: int = data.get("maxPages", 100)


class PollingView(_View):
    """:class:`~ucf.core.descriptor.PollingSpec` (the ``polling`` part of ``ingestion``)."""

    __slots__ = (
        "body",
        "client_side_since",
        "delta",
        "endpoint",
        "headers",
        "initial_lookback_seconds",
        "interval_seconds",
        "method",
        "omit_null_body_fields",
        "pagination",
        "query",
        "rate_limit_rpm",
        "stop_at_checkpoint",
    )
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset(
        {
            "body",
            "clientSideSince",
            "delta",
            "endpoint",
            "headers",
            "initialLookbackSeconds",
            "intervalSeconds",
            "method",
            "omitNullBodyFields",
            "pagination",
            "query",
            "rateLimitRpm",
            "stopAtCheckpoint",
        }
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.endpoint: str = data["endpoint"]
        self.method: str = data["method"]
        headers = data.get("headers")
        self.headers: dict[str, str] | None = None if headers is None else dict(headers)
        self.body: str | dict[str, Any] | None = data.get("body")
        self.query: dict[str, str] = dict(data.get("query", {}))
        self.delta: DeltaView = _delta(data["delta"])
        self.rate_limit_rpm: int = data["rateLimitRpm"]
        pagination = data.get("pagination")
        self.pagination: PaginationView | None = (
            None if pagination is None else PaginationView(pagination)
        )
        self.interval_seconds: int = data.get("intervalSeconds", 300)
        self.initial_lookback_seconds: int = data.get("initialLookbackSeconds", 7 * 24 * 3600)
        self.client_side_since: bool = data.get("clientSideSince", False)
        self.stop_at_checkpoint: bool = data.get("stopAtCheckpoint", False)
        self.omit_null_body_fields: bool = data.get("omitNullBodyFields", False)


class HealthCheckView(_View):
    """:class:`~ucf.core.descriptor.HealthCheckDescriptor`."""

    __slots__ = ("body", "endpoint", "expect_status", "method", "timeout_ms")
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset(
        {"body", "endpoint", "expectStatus", "method", "timeoutMs"}
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.endpoint: str = data["endpoint"]
        self.method: str = data["method"]
        self.expect_status: int = data["expectStatus"]
        self.timeout_ms: int = data["timeoutMs"]
        self.body: str | dict[str, Any] | None = data.get("body")


class ResponseErrorsView(_View):
    """:class:`~ucf.core.descriptor.ResponseErrors`."""

    __slots__ = ("auth_codes", "code_path", "ignore_codes", "rate_limit_codes")
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset(
        {"authCodes", "codePath", "ignoreCodes", "rateLimitCodes"}
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.code_path: str = data["codePath"]
        self.auth_codes: list[str] = _str_list(data.get("authCodes", []))
        self.rate_limit_codes: list[str] = _str_list(data.get("rateLimitCodes", []))
        self.ignore_codes: list[str] = _str_list(data.get("ignoreCodes", []))


# --------------------------------------------------------------------------- the connector


_BOTH_MODES_KEYS: Final = frozenset({"mode", "polling", "webhook"})
""":class:`~ucf.core.descriptor.PollingAndWebhookDescriptor`'s keys."""


def _implied_signature(auth: AuthView) -> SignatureView | None:
    """The brief's ``webhook_secret`` auth: a hex HMAC over the body, keyed by its first
    credential (as :func:`ucf.core.descriptor.signature_scheme` derives it)."""
    config = auth.config
    if not isinstance(config, WebhookSecretConfigView):
        return None
    fields = config.credential_fields
    return SignatureView(
        {
            "header": config.signature_header,
            "algorithm": config.algorithm,
            "secretCredential": fields[0].key if fields else "webhookSecret",
        }
    )


class ConnectorView(_View):
    """What a webhook delivery and a poll read of a
    :class:`~ucf.core.descriptor.ConnectorDescriptor` (not its catalogue texts, setup form
    or ``afterConsent``: the management paths that need them parse it with the models)."""

    __slots__ = (
        "_signature",
        "auth",
        "auth_alternatives",
        "config_fields",
        "field_mapping",
        "health_check",
        "id",
        "kind",
        "polling",
        "response_errors",
        "version",
        "webhook",
    )
    _fields: ClassVar[tuple[str, ...]] = __slots__
    _keys: ClassVar[frozenset[str]] = frozenset(
        {
            "auth",
            "authAlternatives",
            "category",
            "configFields",
            "description",
            "docsUrl",
            "fieldMapping",
            "healthCheck",
            "icon",
            "id",
            "ingestion",
            "kind",
            "name",
            "references",
            "responseErrors",
            "version",
        }
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        _known(data, self._keys)
        self.id: str = data["id"]
        self.kind: str = data["kind"]
        self.version: str = data["version"]
        self.auth = AuthView(data["auth"])
        self.auth_alternatives: list[AuthView] = [
            AuthView(a) for a in _list(data.get("authAlternatives", []))
        ]
        ingestion = data.get("ingestion")
        webhook: Mapping[str, Any] | None = None
        polling: Mapping[str, Any] | None = None
        if ingestion is not None:
            mode = ingestion["mode"]
            # The one-mode blocks carry ``mode`` beside the spec's own keys; the spec is read
            # without it, so that a ``mode`` inside a polling_and_webhook part is refused.
            if mode == "webhook":
                webhook = {key: value for key, value in ingestion.items() if key != "mode"}
            elif mode == "polling_and_webhook":
                _known(ingestion, _BOTH_MODES_KEYS)
                webhook, polling = ingestion["webhook"], ingestion["polling"]
            elif mode == "polling":
                polling = {key: value for key, value in ingestion.items() if key != "mode"}
            else:
                raise ViewUnavailable(f"unknown ingestion mode {mode!r}")
        self.webhook: WebhookView | None = None if webhook is None else WebhookView(webhook)
        self.polling: PollingView | None = None if polling is None else PollingView(polling)
        self.health_check = HealthCheckView(data["healthCheck"])
        errors = data.get("responseErrors")
        self.response_errors: ResponseErrorsView | None = (
            None if errors is None else ResponseErrorsView(errors)
        )
        self.config_fields: list[ConfigFieldView] = [
            ConfigFieldView(f) for f in _list(data.get("configFields", []))
        ]
        mapping = data.get("fieldMapping")
        self.field_mapping: FieldMappingView | None = (
            None if mapping is None else FieldMappingView(mapping)
        )
        signature = None
        if self.webhook is not None and self.webhook.verification == "signature":
            signature = self.webhook.signature or _implied_signature(self.auth)
        self._signature = signature

    def webhook_mapping(self) -> FieldMappingView | None:
        """The mapping of webhook payloads: the webhook's own, else the connector's."""
        webhook = self.webhook
        if webhook is not None and webhook.field_mapping is not None:
            return webhook.field_mapping
        return self.field_mapping

    def signature_verification(self) -> SignatureView | None:
        """The signature scheme: explicit, or implied by a ``webhook_secret`` auth."""
        return self._signature

    def consent(self) -> OAuth2ConfigView | None:
        """The OAuth 2.0 settings a "Connect with …" consent uses, if this connector offers one
        (``auth`` first, then ``authAlternatives``)."""
        for method in (self.auth, *self.auth_alternatives):
            config = method.consent()
            if config is not None:
                return config
        return None

    def auth_methods(self) -> list[AuthView]:
        """Every way to sign in: ``auth`` first, then ``authAlternatives``."""
        return [self.auth, *self.auth_alternatives]

    def auth_for(self, credentials: Mapping[str, str]) -> AuthView:
        """The method an instance with ``credentials`` signs in with (``authMethod`` names an
        alternative; anything else, ``auth``), as the model's ``auth_for`` chooses."""
        chosen = credentials.get(AUTH_METHOD_KEY)
        if chosen:
            for method in self.auth_alternatives:
                if method.method == chosen:
                    return method
        return self.auth


# --------------------------------------------------------------------------- loaders


def load_connector_view(stored: Mapping[str, Any]) -> ConnectorView:
    """The view of a stored (validated when written) descriptor's JSON.

    Raises :class:`ViewUnavailable` when the JSON lacks what the view reads:
    the caller then parses it with the models, whose error says what is wrong.
    """
    try:
        return ConnectorView(stored)
    except ViewUnavailable:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise ViewUnavailable(f"not a stored descriptor's shape ({error!r})") from None


def _dump(model: Any) -> dict[str, Any]:
    """A model as its JSON (aliases), with only the fields it was given: the stored form."""
    dumped: dict[str, Any] = model.model_dump(by_alias=True, exclude_unset=True)
    return dumped


def connector_view(descriptor: d.ConnectorDescriptor | ConnectorView) -> ConnectorView:
    """The view of a validated descriptor (a write-side caller's, a preview's)."""
    if isinstance(descriptor, ConnectorView):
        return descriptor
    return ConnectorView(_dump(descriptor))


def mapping_view(mapping: d.FieldMappingDescriptor | FieldMappingView) -> FieldMappingView:
    """The view of a validated field mapping."""
    if isinstance(mapping, FieldMappingView):
        return mapping
    return FieldMappingView(_dump(mapping))


def webhook_view(
    spec: d.ConnectorDescriptor | d.WebhookSpec | ConnectorView | WebhookView,
) -> WebhookView | None:
    """The webhook part of a connector (view or model), or a webhook spec as a view."""
    if isinstance(spec, WebhookView):
        return spec
    if isinstance(spec, ConnectorView):
        return spec.webhook
    # A model: pydantic is loaded already (the caller holds one), so its classes may be.
    from ucf.core import descriptor as models

    if isinstance(spec, models.ConnectorDescriptor):
        return connector_view(spec).webhook
    data = _dump(spec)
    data.pop("mode", None)  # a webhook-mode ingestion block: the spec is the rest
    return WebhookView(data)


def auth_view(auth: d.AuthDescriptor | AuthView) -> AuthView:
    """The view of one validated auth method (``auth`` or an alternative)."""
    if isinstance(auth, AuthView):
        return auth
    return AuthView(_dump(auth))


def oauth2_config_view(config: d.OAuth2Config | OAuth2ConfigView) -> OAuth2ConfigView:
    """The view of a validated OAuth 2.0 config (a native connector builds its flow from one)."""
    if isinstance(config, OAuth2ConfigView):
        return config
    return OAuth2ConfigView(_dump(config))
