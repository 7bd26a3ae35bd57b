"""The connector descriptor language: these models *are* the language.

The brief's schema (SPEC §4) is valid input exactly as written, camelCase keys
included. Real APIs need more than the brief describes; every extension here is
optional, defaults to the brief's meaning, and names in its description the
catalogue connector that needs it (each connector's ``references`` link the
provider documentation behind it). The JSON Schema published
at ``schema/connector-descriptor.schema.json`` is generated from these models,
so nothing else re-describes the language.

Shape is checked here by pydantic; meaning (paths parse, templates reference
known variables, regexes compile under RE2, pagination fits the request) is
checked in :mod:`ucf.core.validation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ucf.core.credential_keys import ACCESS_TOKEN_EXPIRES_AT as ACCESS_TOKEN_EXPIRES_AT
from ucf.core.credential_keys import AUTH_METHOD_KEY as AUTH_METHOD_KEY
from ucf.core.signal_identity import SIGNAL_TYPE_MAX_CHARS, UNKNOWN_SIGNAL_TYPE, Priority


class DescriptorModel(BaseModel):
    """Base of every descriptor part: camelCase keys, unknown keys rejected.

    Rejecting unknown keys turns a typo (``itemPath`` for ``itemsPath``) into an
    error with a path instead of a connector that silently maps nothing.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        serialize_by_alias=True,
        validate_by_alias=True,
        validate_by_name=True,
    )


ConnectorCategory = Literal[
    "Project Management", "Communication", "Code & DevOps", "Documents", "Custom"
]
CONNECTOR_CATEGORIES: tuple[str, ...] = (
    "Project Management",
    "Communication",
    "Code & DevOps",
    "Documents",
    "Custom",
)

CONNECTOR_ID_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
FIELD_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
DISPLAY_NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+$"
"""A name shown in lists and titles: no control character (a NUL, a line break) and no
bidirectional embedding, override or isolate, which would show it reversed or carry
the text after it along (U+202E before "abc" shows "cba")."""


# --------------------------------------------------------------------------- fields


class CredentialField(DescriptorModel):
    """A secret the user types into the setup form (§4.1)."""

    key: str = Field(pattern=FIELD_KEY_PATTERN)
    label: str
    type: Literal["text", "password", "url"]
    required: bool
    placeholder: str | None = None
    help_text: str | None = Field(default=None, alias="helpText")


class ConfigField(DescriptorModel):
    """A non-secret instance setting shown in the setup form.

    Extension. Templates read it as ``{{config.<key>}}``; ``baseUrl`` is also
    readable as the brief's ``{{baseUrl}}``. Needed by every catalogue connector
    whose URL depends on the customer: GitHub owner/repo, Trello board id,
    Confluence site, Datadog site, Slack channel, Notion database.
    """

    key: str = Field(pattern=FIELD_KEY_PATTERN)
    label: str
    type: Literal["text", "url", "number", "select"] = "text"
    required: bool = True
    default: str | None = None
    placeholder: str | None = None
    help_text: str | None = Field(default=None, alias="helpText")
    options: list[str] | None = Field(
        default=None, description="Allowed values when type is 'select'."
    )


# --------------------------------------------------------------------------- auth


class CredentialPlacement(DescriptorModel):
    """One more credential sent with every request.

    Extension: Trello wants ``key`` *and* ``token`` query parameters; Datadog
    wants ``DD-API-KEY`` *and* ``DD-APPLICATION-KEY`` headers.
    """

    credential: str = Field(description="Key of the credential field whose value is sent.")
    delivery: Literal["header", "query", "bearer"]
    param_name: str = Field(default="Authorization", alias="paramName")
    value_prefix: str = Field(default="", alias="valuePrefix")


class _AuthConfigBase(DescriptorModel):
    credential_fields: list[CredentialField] = Field(alias="credentialFields")
    extra_headers: dict[str, str] = Field(
        default_factory=dict,
        alias="extraHeaders",
        description=(
            "Fixed headers sent with every API request, health checks included. "
            "Extension: Notion requires 'Notion-Version'; PagerDuty an Accept version header."
        ),
    )


class _KeyedAuthConfig(_AuthConfigBase):
    param_name: str = Field(alias="paramName")
    credential_key: str | None = Field(
        default=None,
        alias="credentialKey",
        description="Credential field sent as the key. Default: the first credential field.",
    )
    value_prefix: str = Field(
        default="",
        alias="valuePrefix",
        description=(
            "Text before the key in a header. Extension: PagerDuty sends "
            "'Authorization: Token token=<key>'."
        ),
    )
    additional_credentials: list[CredentialPlacement] = Field(
        default_factory=list, alias="additionalCredentials"
    )


class ApiKeyConfig(_KeyedAuthConfig):
    delivery: Literal["header", "query", "bearer"]


class PatConfig(_KeyedAuthConfig):
    delivery: Literal["header", "bearer"]


class BasicAuthConfig(_AuthConfigBase):
    username_key: str | None = Field(
        default=None,
        alias="usernameKey",
        description="Default: the first credential field (Confluence: the account email).",
    )
    password_key: str | None = Field(
        default=None,
        alias="passwordKey",
        description="Default: the second credential field (Confluence: the API token).",
    )


class ConsentLookup(DescriptorModel):
    """A setting read from the provider right after a consent, with the new access token."""

    endpoint: str = Field(description="GET this URL (``{{config.x}}`` allowed) with the token.")
    path: str = Field(
        description=(
            "JSONPath of the value in the JSON answer, e.g. ``$[0].id``; with ``wherePath``, "
            "in the chosen element of the answer's list, e.g. ``$.id``."
        )
    )
    config_field: str = Field(
        alias="configField", description="The setting (a configFields key) the value fills."
    )
    where_path: str | None = Field(
        default=None,
        alias="wherePath",
        description=(
            "The answer is a list: read ``path`` in its first element whose value at this "
            "JSONPath equals the ``equalsConfig`` setting. Extension: Atlassian lists every "
            "site the account can reach; the instance's is the one whose url is its siteUrl."
        ),
    )
    equals_config: str | None = Field(
        default=None,
        alias="equalsConfig",
        description="With ``wherePath``: the setting (a configFields key) to match.",
    )


class OAuth2Config(_AuthConfigBase):
    authorise_url: str = Field(alias="authoriseUrl")
    token_url: str = Field(alias="tokenUrl")
    scopes: list[str]
    grant: Literal["refresh_token", "client_credentials"] = Field(
        default="refresh_token",
        description=(
            "How the runtime obtains access tokens. Extension: 'client_credentials' for "
            "app tokens (PagerDuty private apps); 'refresh_token' for user grants (Slack, "
            "Notion, Confluence 3LO)."
        ),
    )
    rotates_refresh_token: bool = Field(
        default=False,
        alias="rotatesRefreshToken",
        description=(
            "Each refresh returns a new refresh token that must be stored. Extension: "
            "Slack token rotation, Atlassian 3LO, Sentry public integrations, GitHub Apps."
        ),
    )
    client_auth: Literal["body", "basic"] = Field(
        default="body",
        alias="clientAuth",
        description="Where client id/secret go on the token request. Extension: Notion uses basic.",
    )
    token_request: Literal["form", "json"] = Field(
        default="form",
        alias="tokenRequest",
        description=(
            "How the token request's body is encoded (RFC 6749: a form). Extension: Notion's "
            "/v1/oauth/token and Atlassian 3LO's auth.atlassian.com/oauth/token document a "
            "JSON body."
        ),
    )
    pkce: bool = Field(
        default=False,
        description=(
            "The provider accepts PKCE (RFC 7636, S256) on the authorization-code grant, so the "
            "consent flow sends a code challenge and the exchange its verifier. Extension: "
            "Microsoft identity platform, Linear, Asana."
        ),
    )
    authorize_params: dict[str, str] = Field(
        default_factory=dict,
        alias="authorizeParams",
        description=(
            "Extra query parameters of the consent URL. Extension: Atlassian 3LO needs "
            "audience=api.atlassian.com and prompt=consent; Google-style providers "
            "access_type=offline."
        ),
    )
    scope_separator: str = Field(
        default=" ",
        alias="scopeSeparator",
        description=(
            "How scopes are joined in the consent URL (RFC 6749: a space). Extension: Slack's "
            "oauth/v2/authorize takes a comma-separated list."
        ),
    )
    after_consent: list[ConsentLookup] = Field(
        default_factory=list,
        alias="afterConsent",
        description=(
            "Settings read from the provider once the consent succeeded. Extension: Atlassian "
            "3LO finds the site's cloudId at "
            "https://api.atlassian.com/oauth/token/accessible-resources ($[0].id)."
        ),
    )
    client_id_key: str = Field(default="clientId", alias="clientIdKey")
    client_secret_key: str = Field(default="clientSecret", alias="clientSecretKey")
    refresh_token_key: str = Field(default="refreshToken", alias="refreshTokenKey")
    access_token_key: str = Field(default="accessToken", alias="accessTokenKey")


OAUTH_CONSENT_GRANT: Final = "refresh_token"
"""Connectors with this grant get their tokens from a user's consent (authorization code)."""


def consent_config(auth: object) -> OAuth2Config | None:
    """The OAuth 2.0 settings of a connector whose tokens come from a user's consent."""
    if isinstance(auth, OAuth2Auth) and auth.config.grant == OAUTH_CONSENT_GRANT:
        return auth.config
    return None


class WebhookSecretConfig(_AuthConfigBase):
    signature_header: str = Field(alias="signatureHeader")
    algorithm: Literal["hmac-sha256", "hmac-sha1"]


class OAuth2Auth(DescriptorModel):
    method: Literal["oauth2"]
    config: OAuth2Config


class ApiKeyAuth(DescriptorModel):
    method: Literal["api_key"]
    config: ApiKeyConfig


class PatAuth(DescriptorModel):
    method: Literal["pat"]
    config: PatConfig


class BasicAuth(DescriptorModel):
    method: Literal["basic"]
    config: BasicAuthConfig


class WebhookSecretAuth(DescriptorModel):
    method: Literal["webhook_secret"]
    config: WebhookSecretConfig


class NoAuth(DescriptorModel):
    method: Literal["none"]


AuthDescriptor = Annotated[
    OAuth2Auth | ApiKeyAuth | PatAuth | BasicAuth | WebhookSecretAuth | NoAuth,
    Field(discriminator="method"),
]


# --------------------------------------------------------------------------- polling

TimestampOutputFormat = Literal[
    "iso8601",
    "unix",
    "unix_ms",
    "iso8601_ms",
    "slack_ts",
    "date",
    "cql_datetime",
    "jql_datetime",
]


class TimestampFilterDelta(DescriptorModel):
    """Ask the API for items updated since the last seen timestamp.

    GitHub ``since``, PagerDuty ``since``, Slack ``oldest``, Datadog ``filter[from]``.
    """

    type: Literal["timestamp_filter"]
    query_param: str | None = Field(
        alias="queryParam",
        description=(
            "Query parameter carrying the checkpoint. Extension: null when the endpoint, "
            "query or body template places {{checkpoint}} itself (Linear GraphQL variables, "
            "Confluence CQL)."
        ),
    )
    format: TimestampOutputFormat = Field(
        description=(
            "How the checkpoint is written. Extensions beyond the brief's three: "
            "iso8601_ms (Notion), slack_ts (Slack 'oldest'), cql_datetime (Confluence), "
            "jql_datetime (Jira), date."
        )
    )
    overlap_seconds: int = Field(
        default=60,
        ge=0,
        alias="overlapSeconds",
        description=(
            "Re-ask for this much before the checkpoint, so same-second or minute-precision "
            "updates (Notion, Confluence, GitHub) are never missed; dedup absorbs repeats."
        ),
    )
    sorted_ascending: bool = Field(
        default=False,
        alias="sortedAscending",
        description=(
            "Results come oldest-first by the item timestamp (GitHub direction=asc, Linear "
            "orderBy updatedAt…), so the checkpoint may advance after every page; otherwise "
            "it advances only after the last page, or a crash mid-poll could skip older items "
            "on later pages."
        ),
    )


class DeltaTokenDelta(DescriptorModel):
    """The API returns an opaque token for "changes since now" (MS Graph deltaLink)."""

    type: Literal["delta_token"]
    token_path: str = Field(alias="tokenPath")
    token_param: str = Field(alias="tokenParam")
    token_is_url: bool = Field(
        default=False,
        alias="tokenIsUrl",
        description="The token is a URL to call next time (MS Graph '@odata.deltaLink').",
    )


class CursorDelta(DescriptorModel):
    """The API returns a durable cursor to resume from (Asana events ``sync``)."""

    type: Literal["cursor"]
    cursor_path: str = Field(alias="cursorPath")
    cursor_param: str = Field(alias="cursorParam")


class SinceIdDelta(DescriptorModel):
    """Ask for items newer than the highest id seen (Trello actions ``since``)."""

    type: Literal["since_id"]
    id_path: str = Field(alias="idPath")
    id_param: str = Field(alias="idParam")
    order: Literal["numeric", "lexicographic"] = Field(
        default="lexicographic",
        description="How ids compare. Trello action ids are hex Mongo ids: lexicographic.",
    )


DeltaStrategy = Annotated[
    TimestampFilterDelta | DeltaTokenDelta | CursorDelta | SinceIdDelta,
    Field(discriminator="type"),
]


class PaginationDescriptor(DescriptorModel):
    """How to reach the next page of one poll.

    The brief's ``offset``, ``cursor`` and ``link_header``, plus (extensions)
    ``next_url`` — the next page is a URL in the body (Confluence ``_links.next``,
    MS Graph ``@odata.nextLink``) — and ``page_number`` (Datadog monitors ``page``).
    """

    type: Literal["offset", "cursor", "link_header", "next_url", "page_number"]
    next_path: str | None = Field(
        default=None,
        alias="nextPath",
        description=(
            "Path to the next cursor (cursor) or next URL (next_url) in the body; see "
            "nextHeader for APIs that send it in a header."
        ),
    )
    next_param: str | None = Field(
        default=None,
        alias="nextParam",
        description=(
            "Query parameter for the cursor / offset / page number. For cursors sent in a "
            "POST body (Notion 'start_cursor', Linear 'after') leave it null and place "
            "{{pageToken}} in the body template."
        ),
    )
    next_header: str | None = Field(
        default=None,
        alias="nextHeader",
        description=(
            "Read what nextPath would from this response header instead: the next cursor "
            "(cursor), next URL (next_url) or next page number (page_number); absent or "
            "empty on the last page. Extension: GitLab's offset pagination sends "
            "'X-Next-Page'."
        ),
    )
    total_path: str | None = Field(default=None, alias="totalPath")
    total_header: str | None = Field(
        default=None,
        alias="totalHeader",
        description=(
            "Read the total item count from this response header instead of totalPath. "
            "Extension: GitLab 'X-Total'."
        ),
    )
    page_size: int = Field(alias="pageSize", ge=1, le=10_000)
    page_size_param: str | None = Field(
        default=None,
        alias="pageSizeParam",
        description="Query parameter for the page size (GitHub per_page, PagerDuty limit).",
    )
    has_more_path: str | None = Field(
        default=None,
        alias="hasMorePath",
        description="Boolean 'more pages' flag (Notion has_more, PagerDuty more, Linear hasNextPage).",
    )
    base_url_path: str | None = Field(
        default=None,
        alias="baseUrlPath",
        description="Prefix for a relative next URL (Confluence '_links.base').",
    )
    max_pages: int = Field(
        default=100, ge=1, le=100_000, alias="maxPages", description="Guard per poll."
    )


class _PollingSpec(DescriptorModel):
    endpoint: str
    method: Literal["GET", "POST"]
    headers: dict[str, str] | None = None
    body: str | dict[str, Any] | None = Field(
        default=None,
        description=(
            "Request body template. A JSON object (extension) or a string that parses as "
            "JSON is rendered value by value (a value that is exactly one placeholder keeps "
            "its type, so GraphQL variables can be null); other strings are text templates "
            "with JSON-escaped values. Linear, Notion, Datadog search need it."
        ),
    )
    query: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Query parameters, each value a template, URL-encoded on the way out. Extension: "
            "safer than building query strings inside 'endpoint'."
        ),
    )
    delta: DeltaStrategy
    rate_limit_rpm: int = Field(alias="rateLimitRpm", ge=1)
    pagination: PaginationDescriptor | None = None
    interval_seconds: int = Field(
        default=300,
        ge=10,
        alias="intervalSeconds",
        description="How often the scheduler polls. Extension.",
    )
    initial_lookback_seconds: int = Field(
        default=7 * 24 * 3600,
        ge=0,
        alias="initialLookbackSeconds",
        description="How far back the first poll reaches when there is no checkpoint. Extension.",
    )
    client_side_since: bool = Field(
        default=False,
        alias="clientSideSince",
        description=(
            "Drop items whose timestamp is older than the checkpoint after fetching. Extension: "
            "for APIs without a server-side filter (Trello cards, Datadog monitors, Sentry)."
        ),
    )
    stop_at_checkpoint: bool = Field(
        default=False,
        alias="stopAtCheckpoint",
        description=(
            "Results are newest-first: stop paging once a page reaches items older than the "
            "checkpoint. Extension: Notion search, GitHub pulls, Sentry issues."
        ),
    )
    omit_null_body_fields: bool = Field(
        default=False,
        alias="omitNullBodyFields",
        description=(
            "Leave out top-level body members that render to null instead of sending them. "
            "Extension: Notion rejects the first page's 'start_cursor: null' (\"should be a "
            'string or `undefined`"); its SDK omits it the same way.'
        ),
    )


class PollingDescriptor(_PollingSpec):
    mode: Literal["polling"]


PollingSpec = _PollingSpec


class SignatureTimestamp(DescriptorModel):
    """Where a signed request says when it was sent (against replay)."""

    header: str | None = Field(default=None, description="Slack X-Slack-Request-Timestamp.")
    body_path: str | None = Field(
        default=None, alias="bodyPath", description="Linear 'webhookTimestamp'."
    )
    unit: Literal["seconds", "ms"] = "seconds"
    tolerance_seconds: int = Field(default=300, ge=1, alias="toleranceSeconds")

    @model_validator(mode="after")
    def _one_source(self) -> SignatureTimestamp:
        if (self.header is None) == (self.body_path is None):
            raise ValueError("give exactly one of 'header' or 'bodyPath'")
        return self


class SignatureVerification(DescriptorModel):
    """How a provider signs its deliveries. Extension: separate from API auth.

    GitHub PRs polls with a PAT yet signs webhooks with a webhook secret; each
    provider differs in algorithm, encoding, prefix and signed bytes (each catalogue
    connector's ``references`` link its provider's signing documentation).
    """

    header: str
    algorithm: Literal["hmac-sha256", "hmac-sha1"] = "hmac-sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = Field(
        default="", description="'sha256=' GitHub, 'v0=' Slack, 'v1=' PagerDuty, 'v1,' Standard."
    )
    signed_payload: str = Field(
        default="{{body}}",
        alias="signedPayload",
        description=(
            "What is signed. Variables: body, timestamp, id, url. Slack 'v0:{{timestamp}}:{{body}}'; "
            "Standard Webhooks '{{id}}.{{timestamp}}.{{body}}'; Trello '{{body}}{{url}}'."
        ),
    )
    separator: str | None = Field(
        default=None,
        description=(
            "Several signatures in one header, for secret rotation: ',' PagerDuty, ' ' Standard "
            "Webhooks. Any one matching is enough."
        ),
    )
    timestamp: SignatureTimestamp | None = None
    id_header: str | None = Field(
        default=None, alias="idHeader", description="Header giving {{id}} (Standard 'webhook-id')."
    )
    secret_credential: str = Field(
        default="webhookSecret",
        alias="secretCredential",
        description="Credential field holding the signing secret.",
    )
    secret_encoding: Literal["utf8", "base64", "whsec"] = Field(
        default="utf8",
        alias="secretEncoding",
        description="'whsec': Standard Webhooks base64 secret with a 'whsec_' prefix.",
    )


class TokenVerification(DescriptorModel):
    """A shared token compared in constant time (Datadog custom header, MS Graph clientState)."""

    header: str | None = None
    query_param: str | None = Field(default=None, alias="queryParam")
    body_path: str | None = Field(default=None, alias="bodyPath")
    value_prefix: str = Field(default="", alias="valuePrefix")
    secret_credential: str = Field(default="webhookSecret", alias="secretCredential")

    @model_validator(mode="after")
    def _one_source(self) -> TokenVerification:
        given = [x for x in (self.header, self.query_param, self.body_path) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'header', 'queryParam' or 'bodyPath'")
        return self


class Handshake(DescriptorModel):
    """A provider's set-up request, answered as its documentation says.

    - ``challenge``: Slack ``url_verification`` — reply with the value at ``respondPath``.
    - ``head_ok``: Trello sends HEAD when a webhook is created; reply 200.
    - ``echo_header``: Asana ``X-Hook-Secret`` — echo the header back.
    - ``echo_query``: MS Graph ``validationToken`` — reply with it as text/plain.
    - ``acknowledge``: Notion's first ``verification_token`` POST — reply 200.
    """

    type: Literal["challenge", "head_ok", "echo_header", "echo_query", "acknowledge"]
    when_path: str | None = Field(
        default=None, alias="whenPath", description="Payload path that identifies the handshake."
    )
    equals: str | None = Field(default=None, description="Value the path must equal.")
    respond_path: str | None = Field(default=None, alias="respondPath")
    header: str | None = None
    query_param: str | None = Field(default=None, alias="queryParam")
    signed: bool = Field(
        default=False, description="The handshake request itself is signed (Slack)."
    )
    captures_secret: bool = Field(
        default=False,
        alias="capturesSecret",
        description=(
            "The handshake hands over the signing secret of later deliveries: Asana's "
            "X-Hook-Secret header (echo_header), Notion's verification_token (acknowledge, the "
            "value at whenPath). The gateway keeps it as the signature's secret credential."
        ),
    )


class _WebhookSpec(DescriptorModel):
    event_types: list[str] = Field(alias="eventTypes")
    event_type_path: str | None = Field(
        default=None,
        alias="eventTypePath",
        description=(
            "Path to the event type in the payload. May be left out (or null) when "
            "eventTypeHeader is set."
        ),
    )
    verification: Literal["signature", "token", "none"]
    event_type_header: str | None = Field(
        default=None,
        alias="eventTypeHeader",
        description="Extension: GitHub sends the event type in 'X-GitHub-Event'.",
    )
    action_path: str | None = Field(
        default=None,
        alias="actionPath",
        description=(
            "Extension: the event type becomes '<type>.<action>' (GitHub 'issues' + 'opened' → "
            "'issues.opened'); eventTypes may list either form."
        ),
    )
    delivery_id_header: str | None = Field(
        default=None,
        alias="deliveryIdHeader",
        description="Dedup key of a delivery: X-GitHub-Delivery, Linear-Delivery, X-Webhook-Id.",
    )
    delivery_id_path: str | None = Field(
        default=None, alias="deliveryIdPath", description="Slack 'event_id' in the body."
    )
    signature: SignatureVerification | None = None
    token: TokenVerification | None = None
    handshakes: list[Handshake] = Field(default_factory=list)
    field_mapping: FieldMappingDescriptor | None = Field(
        default=None,
        alias="fieldMapping",
        description=(
            "Mapping for webhook payloads when they differ from poll responses "
            "(GitHub: poll items are issues, deliveries wrap them in {action, issue})."
        ),
    )
    rate_limit_per_minute: int = Field(default=100, ge=1, alias="rateLimitPerMinute")


class WebhookDescriptor(_WebhookSpec):
    mode: Literal["webhook"]


WebhookSpec = _WebhookSpec


class PollingAndWebhookDescriptor(DescriptorModel):
    mode: Literal["polling_and_webhook"]
    polling: _PollingSpec
    webhook: _WebhookSpec


IngestionDescriptor = Annotated[
    PollingDescriptor | WebhookDescriptor | PollingAndWebhookDescriptor,
    Field(discriminator="mode"),
]


# --------------------------------------------------------------------------- mapping


class Condition(DescriptorModel):
    """One test on an item. Extension: rules may require several (``all``)."""

    when: str = Field(description="JSONPath to the value tested.")
    operator: Literal["equals", "not_equals", "contains", "exists", "not_exists", "matches", "in"]
    value: str | list[str] | None = None
    value_path: str | None = Field(
        default=None,
        alias="valuePath",
        description=(
            "Compare against another field of the item instead of a constant. Extension: "
            "GitHub issue_created is 'created_at equals updated_at'."
        ),
    )


class SignalTypeRule(Condition):
    """The first rule whose conditions all hold names the signal type."""

    # Its bound is a check of a descriptor being written (ucf.core.validation), not of the
    # model: one stored before the bound existed must still load.
    then: str = Field(json_schema_extra={"maxLength": SIGNAL_TYPE_MAX_CHARS})
    all: list[Condition] = Field(
        default_factory=list, description="Further conditions that must also hold."
    )
    event_types: list[str] | None = Field(
        default=None,
        alias="eventTypes",
        description="Webhooks only: the delivery's event type must be one of these.",
    )


class PriorityRule(Condition):
    then: Priority
    all: list[Condition] = Field(default_factory=list)


class FieldMappingDescriptor(DescriptorModel):
    items_path: str = Field(alias="itemsPath")
    id_path: str = Field(alias="idPath")
    timestamp_path: str = Field(alias="timestampPath")
    summary_template: str = Field(alias="summaryTemplate")
    signal_type_rules: list[SignalTypeRule] = Field(alias="signalTypeRules")
    priority_mapping: list[PriorityRule] | None = Field(default=None, alias="priorityMapping")
    participants_path: str | None = Field(default=None, alias="participantsPath")
    tags_path: str | None = Field(default=None, alias="tagsPath")
    related_items_path: str | None = Field(default=None, alias="relatedItemsPath")
    raw_fields: list[str] | None = Field(default=None, alias="rawFields")
    skip: list[Condition] = Field(
        default_factory=list,
        description=(
            "Items for which any of these conditions holds are not signals (neither mapped nor "
            "errors). Extension: GitHub's issues endpoint also lists pull requests, which "
            "github-issues leaves to github-prs ('$.pull_request' exists)."
        ),
    )
    default_type: str = Field(
        default=UNKNOWN_SIGNAL_TYPE,
        alias="defaultType",
        description="Signal type when no rule matches.",
        json_schema_extra={"maxLength": SIGNAL_TYPE_MAX_CHARS},  # checked as ``then``'s
    )
    version_path: str | None = Field(
        default=None,
        alias="versionPath",
        description=(
            "What tells two versions of an item apart; default: the item's timestamp. Polls "
            "and webhooks of a connector key a signal by connector + item id + this version, "
            "so both channels must read the same value for the same change (ISO date-times "
            "in it are compared as instants at versionPrecision, not as text). Extension: "
            "Datadog (one event per monitor transition: '$.attributes.attributes.evt.id' "
            "polled, '$.id' ($ID) pushed), Sentry (issues have no update time: "
            "\"$['lastSeen','status','substatus','assignedTo']\")."
        ),
    )
    version_precision: Literal["millisecond", "second", "minute"] = Field(
        default="millisecond",
        alias="versionPrecision",
        description=(
            "The unit in which times in the version are compared. Extension: Notion pages' "
            "last_edited_time is rounded to the minute while its webhook events carry the "
            "event's millisecond time ('minute'); PagerDuty's log entry created_at and webhook "
            "occurred_at stamp the same action with different sub-second parts, and Sentry lists "
            "lastSeen in seconds but pushes it in microseconds ('second')."
        ),
    )
    timestamp_format: Literal["auto", "iso8601", "unix", "unix_ms", "slack_ts"] = Field(
        default="auto",
        alias="timestampFormat",
        description="How item timestamps are written. 'auto' reads ISO 8601, seconds and ms.",
    )


class HealthCheckDescriptor(DescriptorModel):
    endpoint: str
    method: Literal["GET", "HEAD", "POST"] = Field(
        description="Extension: POST, for GraphQL APIs that take no GET (Linear '{ viewer { id } }')."
    )
    expect_status: int = Field(alias="expectStatus", ge=100, le=599)
    timeout_ms: int = Field(alias="timeoutMs", ge=1, le=120_000)
    body: str | dict[str, Any] | None = Field(
        default=None,
        description=(
            "JSON body of a POST health check, a template like the polling body. Extension: "
            "Linear's GraphQL endpoint only answers POSTed queries."
        ),
    )


class ResponseErrors(DescriptorModel):
    """Failures an API reports in the body, whatever the HTTP status. Extension.

    Slack's Web API answers HTTP 200 ``{"ok": false, "error": "invalid_auth"}``;
    Linear's GraphQL answers ``{"errors": [{"extensions": {"code":
    "AUTHENTICATION_ERROR"}}]}`` (HTTP 400, or 200 for partial errors). Without
    this a bad token reads as an empty poll and a healthy health check.
    """

    code_path: str = Field(
        alias="codePath",
        description="Where the error code is: Slack '$.error', Linear '$.errors[*].extensions.code'.",
    )
    auth_codes: list[str] = Field(
        default_factory=list,
        alias="authCodes",
        description="Codes meaning the credentials are wrong or revoked: an auth failure, not retried.",
    )
    rate_limit_codes: list[str] = Field(
        default_factory=list,
        alias="rateLimitCodes",
        description="Codes meaning 'slow down': retried like HTTP 429 (Retry-After honoured).",
    )
    ignore_codes: list[str] = Field(
        default_factory=list,
        alias="ignoreCodes",
        description="Codes that are not failures (any other code fails the request).",
    )


class Reference(DescriptorModel):
    """One page of the provider's own documentation that the descriptor follows.

    Extension. A descriptor encodes facts about someone else's API (pagination,
    rate-limit headers, signature schemes); linking where each was read lets a
    user check it against the provider when the API changes, and puts the links
    on the generated connector page.
    """

    title: str = Field(min_length=1, description="What the page documents, e.g. 'Rate limits'.")
    url: str = Field(pattern=r"^https://\S+$", description="The provider's page (https).")


class GenericNeeds(ValueError):
    """A generic connector without ``ingestion`` or ``fieldMapping``: ``missing`` names them,
    so validation reports each at its own path (this one is raised for the whole model)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"a generic connector needs {' and '.join(missing)}")
        self.missing = missing


class ConnectorDescriptor(DescriptorModel):
    """A connector: everything the runtime needs to ingest one tool."""

    id: str = Field(pattern=CONNECTOR_ID_PATTERN, max_length=64)
    # The pattern is for editors (the published schema) and registration (the validator's
    # meaning checks): a stored descriptor from before the rule still loads.
    name: str = Field(min_length=1, json_schema_extra={"pattern": DISPLAY_NAME_PATTERN})
    description: str
    category: ConnectorCategory
    icon: str
    kind: Literal["native", "generic"]
    auth: AuthDescriptor
    auth_alternatives: list[AuthDescriptor] = Field(
        default_factory=list,
        alias="authAlternatives",
        description=(
            "Other ways to sign in that the setup flow offers beside 'auth', each with its own "
            "method (no two alike). An instance uses 'auth' unless its credentials name another "
            "method under the key 'authMethod', which a consent stores. Extension: Asana, "
            "Linear, Notion and GitHub take a personal token or an OAuth 2.0 consent; Jira and "
            "Confluence an API token or Atlassian's OAuth 2.0 (3LO)."
        ),
    )
    ingestion: IngestionDescriptor | None = Field(
        default=None, description="Required for generic connectors."
    )
    field_mapping: FieldMappingDescriptor | None = Field(
        default=None, alias="fieldMapping", description="Required for generic connectors."
    )
    health_check: HealthCheckDescriptor = Field(alias="healthCheck")
    version: str
    config_fields: list[ConfigField] = Field(default_factory=list, alias="configFields")
    response_errors: ResponseErrors | None = Field(
        default=None,
        alias="responseErrors",
        description=(
            "How the API reports failures in a response body; applies to polls and health "
            "checks. Extension: Slack, Linear."
        ),
    )
    docs_url: str | None = Field(
        default=None, alias="docsUrl", description="Where users create the credential."
    )
    references: list[Reference] = Field(
        default_factory=list,
        description=(
            "The provider documentation this descriptor follows, listed under 'Sources' on "
            "the generated connector page. Extension: every catalogue connector."
        ),
    )

    @model_validator(mode="after")
    def _generic_needs_ingestion_and_mapping(self) -> ConnectorDescriptor:
        if self.kind == "generic":
            missing = [
                name
                for name, value in (
                    ("ingestion", self.ingestion),
                    ("fieldMapping", self.field_mapping),
                )
                if value is None
            ]
            if missing:
                raise GenericNeeds(missing)
        return self

    # ------------------------------------------------------------------ views

    @property
    def polling(self) -> _PollingSpec | None:
        ingestion = self.ingestion
        if isinstance(ingestion, PollingDescriptor):
            return ingestion
        if isinstance(ingestion, PollingAndWebhookDescriptor):
            return ingestion.polling
        return None

    @property
    def webhook(self) -> _WebhookSpec | None:
        ingestion = self.ingestion
        if isinstance(ingestion, WebhookDescriptor):
            return ingestion
        if isinstance(ingestion, PollingAndWebhookDescriptor):
            return ingestion.webhook
        return None

    def webhook_mapping(self) -> FieldMappingDescriptor | None:
        webhook = self.webhook
        if webhook is not None and webhook.field_mapping is not None:
            return webhook.field_mapping
        return self.field_mapping

    def signature_verification(self) -> SignatureVerification | None:
        """The webhook signature scheme, derived from ``auth.webhook_secret`` when not explicit.

        Keeps the brief's meaning: a ``webhook_secret`` auth names the header and
        algorithm of a hex HMAC over the raw body, keyed by its first credential.
        """
        return signature_scheme(self.webhook, self.auth)

    def setup_config_fields(self) -> list[ConfigField]:
        """The settings form: ``configFields``, plus the brief's implicit ``baseUrl``.

        A brief-style descriptor writes ``{{baseUrl}}`` without declaring it; the
        setup form must still ask for it.
        """
        fields = list(self.config_fields)
        if not any(f.key == "baseUrl" for f in fields) and "baseUrl" in self._request_variables():
            fields.insert(0, ConfigField(key="baseUrl", label="Base URL", type="url"))
        return fields

    def auth_methods(self) -> list[AuthDescriptor]:
        """Every way to sign in: ``auth`` first, then ``authAlternatives``."""
        return [self.auth, *self.auth_alternatives]

    def auth_for(self, credentials: Mapping[str, str]) -> AuthDescriptor:
        """The method an instance with ``credentials`` signs in with (see ``authAlternatives``).

        An unknown method name falls back to ``auth``; validation refuses one
        before it is stored, so only a descriptor edit that removed a method
        gets here, and ``auth`` then reports the missing credentials.
        """
        chosen = credentials.get(AUTH_METHOD_KEY)
        if chosen:
            for method in self.auth_alternatives:
                if method.method == chosen:
                    return method
        return self.auth

    def consent(self) -> OAuth2Config | None:
        """The OAuth 2.0 settings a "Connect with …" consent uses, if this connector offers one."""
        for method in self.auth_methods():
            config = consent_config(method)
            if config is not None:
                return config
        return None

    def consent_marker(self) -> dict[str, str]:
        """What a consent adds to the tokens it stores so the instance signs in with it:
        the method's name, when the consent is an alternative (``auth`` needs none)."""
        if consent_config(self.auth) is not None:
            return {}
        for method in self.auth_alternatives:
            if consent_config(method) is not None:
                return {AUTH_METHOD_KEY: method.method}
        return {}

    def credential_fields(self, method: AuthDescriptor | None = None) -> list[CredentialField]:
        """The credential fields of ``method``, or of every method (first declaration wins:
        two methods may share a field such as a webhook secret)."""
        methods = self.auth_methods() if method is None else [method]
        fields: dict[str, CredentialField] = {}
        for auth in methods:
            if isinstance(auth, NoAuth):
                continue
            for field in auth.config.credential_fields:
                fields.setdefault(field.key, field)
        return list(fields.values())

    def credential_keys(self, method: AuthDescriptor) -> frozenset[str]:
        """Every key a credential set that signs in with ``method`` may hold: its fields,
        and for OAuth 2.0 the tokens and expiry time the runtime stores beside them."""
        keys = {field.key for field in self.credential_fields(method)}
        if isinstance(method, OAuth2Auth):
            config = method.config
            keys |= {config.access_token_key, config.refresh_token_key, ACCESS_TOKEN_EXPIRES_AT}
        return frozenset(keys)

    def webhook_secret_keys(self) -> frozenset[str]:
        """The credentials this connector's deliveries are verified with (its signing
        secret, its shared token): no sign-in needs them, so a sign-in check cannot say
        whether they are still in use."""
        webhook = self.webhook
        keys: set[str] = set()
        for verification in (
            self.signature_verification(),
            webhook.token if webhook is not None else None,
        ):
            if verification is not None:
                keys.add(verification.secret_credential)
        return frozenset(keys)

    def unused_credentials(
        self, credentials: Mapping[str, str], *before: ConnectorDescriptor
    ) -> frozenset[str]:
        """The keys of ``credentials`` that belong to a way of signing in the instance no
        longer uses: another method of this connector (the instance switched), or one of
        the connector as it was ``before`` an edit, or in any earlier version (its method
        changed or went).

        Only keys some method declares (or would store) are ever named: a key no
        method knows may be a native connector's own (a subscription's clientState),
        and the ones the instance signs in with, its webhook's secret and its
        ``authMethod`` are always kept.
        """
        active = self.auth_for(credentials)
        kept = set(self.credential_keys(active)) | {AUTH_METHOD_KEY} | self.webhook_secret_keys()
        known: set[str] = set()
        for descriptor in (self, *before):
            for method in descriptor.auth_methods():
                known |= descriptor.credential_keys(method)
        return frozenset(key for key in credentials if key in known and key not in kept)

    def _request_variables(self) -> set[str]:
        from ucf.core.template import compile_template

        sources = [self.health_check.endpoint]
        polling = self.polling
        if polling is not None:
            sources += [
                polling.endpoint,
                *polling.query.values(),
                *(polling.headers or {}).values(),
            ]
        names: set[str] = set()
        for source in sources:
            try:
                names |= compile_template(source).variables
            except ValueError:
                continue
        return names

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def signature_scheme(
    webhook: _WebhookSpec | None, auth: AuthDescriptor | None
) -> SignatureVerification | None:
    """The signature scheme of ``webhook``: explicit, or implied by a ``webhook_secret`` auth.

    A function of the two parts (not only a method of the whole descriptor) so
    that validation can reason about a webhook block whose siblings do not parse.
    """
    if webhook is None or webhook.verification != "signature":
        return None
    if webhook.signature is not None:
        return webhook.signature
    if isinstance(auth, WebhookSecretAuth):
        config = auth.config
        secret = config.credential_fields[0].key if config.credential_fields else "webhookSecret"
        return SignatureVerification(
            header=config.signature_header,
            algorithm=config.algorithm,
            secret_credential=secret,
        )
    return None


_WebhookSpec.model_rebuild()
WebhookDescriptor.model_rebuild()
PollingAndWebhookDescriptor.model_rebuild()
ConnectorDescriptor.model_rebuild()


def descriptor_json_schema() -> dict[str, Any]:
    """The published JSON Schema of the descriptor language."""
    schema = ConnectorDescriptor.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://ucf.dev/schema/connector-descriptor.schema.json"
    schema["title"] = "ucf connector descriptor"
    # Declared so that an editor checking a file that points at this schema accepts the
    # pointer itself (validation takes and drops it: ucf.core.validation.SCHEMA_KEY).
    schema["properties"] = {
        "$schema": {
            "description": "The schema an editor checks this file against; ucf ignores it.",
            "type": "string",
        },
        **schema["properties"],
    }
    return schema
