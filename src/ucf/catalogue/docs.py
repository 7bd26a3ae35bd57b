"""Connector documentation generated from descriptors, so it can never drift from them.

``docs/connectors/<id>.md`` is this module's output for each shipped descriptor;
a test regenerates and compares. Everything a user needs to connect the tool is
in the descriptor already: credentials and where to create them, settings, the
webhook URL and scheme, which source fields make which signal type, and the
provider documentation it follows (``references``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from ucf.core import descriptor as d

WEBHOOK_URL = "https://<your-ucf-host>/api/webhooks/{connector}/<projectId>"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") if text is not None else ""


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _condition(condition: d.Condition) -> str:
    target = (
        f"`{condition.value_path}`"
        if condition.value_path is not None
        else (
            ", ".join(f"`{v}`" for v in condition.value)
            if isinstance(condition.value, list)
            else f"`{condition.value}`"
        )
    )
    operator = condition.operator.replace("_", " ")
    if condition.operator in ("exists", "not_exists"):
        return f"`{condition.when}` {operator}"
    return f"`{condition.when}` {operator} {target}"


def _rule(rule: d.SignalTypeRule | d.PriorityRule) -> str:
    parts = [_condition(rule), *(_condition(c) for c in rule.all)]
    text = " and ".join(parts)
    if isinstance(rule, d.SignalTypeRule) and rule.event_types:
        events = ", ".join(f"`{e}`" for e in rule.event_types)
        text = f"event {events}; {text}" if rule.when != "$" else f"event {events}"
    return text


def _auth_lines(auth: d.AuthDescriptor) -> list[str]:
    if isinstance(auth, d.NoAuth):
        return ["No API credentials."]
    config = auth.config
    lines: list[str] = []
    if isinstance(auth, d.ApiKeyAuth | d.PatAuth):
        key = auth.config.credential_key or (
            config.credential_fields[0].key if config.credential_fields else "?"
        )
        where = {
            "bearer": f"`{auth.config.param_name}: Bearer <{key}>`",
            "header": f"header `{auth.config.param_name}: {auth.config.value_prefix}<{key}>`",
            "query": f"query parameter `{auth.config.param_name}=<{key}>`",
        }[auth.config.delivery]
        lines.append(f"Sent as {where}.")
        for extra in auth.config.additional_credentials:
            lines.append(f"Also `{extra.credential}` as {extra.delivery} `{extra.param_name}`.")
    elif isinstance(auth, d.BasicAuth):
        lines.append("HTTP Basic authentication (`Authorization: Basic base64(user:password)`).")
    elif isinstance(auth, d.OAuth2Auth):
        lines.append(
            f"OAuth 2.0 ({auth.config.grant.replace('_', ' ')} grant) against "
            f"`{auth.config.token_url}`; scopes: {', '.join(auth.config.scopes) or 'none'}."
        )
        if auth.config.rotates_refresh_token:
            lines.append("Refresh tokens rotate: ucf stores each new one before using it.")
    elif isinstance(auth, d.WebhookSecretAuth):
        lines.append(
            f"Deliveries are signed ({auth.config.algorithm}) in `{auth.config.signature_header}`."
        )
    if config.extra_headers:
        headers = ", ".join(f"`{k}: {v}`" for k, v in config.extra_headers.items())
        lines.append(f"Every request also sends {headers}.")
    return lines


def _signature_lines(signature: d.SignatureVerification) -> list[str]:
    lines = [
        f"- Signature: `{signature.header}` = `{signature.prefix}` + {signature.encoding} "
        f"{signature.algorithm.upper()} of `{signature.signed_payload}`, keyed with the "
        f"`{signature.secret_credential}` credential."
    ]
    if signature.separator is not None:
        lines.append(f"- Several signatures may be sent, separated by `{signature.separator!r}`.")
    if signature.timestamp is not None:
        source = signature.timestamp.header or signature.timestamp.body_path
        lines.append(
            f"- Replay window: ±{signature.timestamp.tolerance_seconds} s on `{source}` "
            f"({signature.timestamp.unit})."
        )
    return lines


def _webhook_lines(descriptor: d.ConnectorDescriptor, webhook: d.WebhookSpec) -> list[str]:
    lines = [
        "## Webhooks",
        "",
        f"Register this URL with the tool: `{WEBHOOK_URL.format(connector=descriptor.id)}`",
        "(`ucf` shows the exact URL of each instance in its status).",
        "",
    ]
    source = (
        f"header `{webhook.event_type_header}`"
        if webhook.event_type_header
        else f"`{webhook.event_type_path}`"
    )
    if webhook.action_path:
        source += f" + `.` + `{webhook.action_path}`"
    lines.append(
        f"- Event type from {source}; handled: {', '.join(f'`{e}`' for e in webhook.event_types)}."
    )
    lines.append("- Other event types are acknowledged (202) and ignored.")
    if webhook.delivery_id_header or webhook.delivery_id_path:
        lines.append(
            f"- Redeliveries are deduplicated on `{webhook.delivery_id_header or webhook.delivery_id_path}`."
        )
    if webhook.verification == "signature":
        signature = descriptor.signature_verification()
        if signature is not None:
            lines += _signature_lines(signature)
    elif webhook.verification == "token" and webhook.token is not None:
        token = webhook.token
        where = token.header or token.query_param or token.body_path
        lines.append(
            f"- Verification: `{where}` must equal `{token.value_prefix}<{token.secret_credential}>`."
        )
    else:
        lines.append("- No verification: anyone who knows the URL can post signals.")
    for handshake in webhook.handshakes:
        lines.append(f"- Handshake `{handshake.type}` is answered as the provider documents.")
    lines.append(f"- At most {webhook.rate_limit_per_minute} requests a minute per instance.")
    return [*lines, ""]


def _polling_lines(polling: d.PollingSpec) -> list[str]:
    delta = polling.delta
    lines = [
        "## Polling",
        "",
        f"- `{polling.method} {polling.endpoint}` every {polling.interval_seconds} s, "
        f"at most {polling.rate_limit_rpm} requests a minute.",
        f"- Incremental by `{delta.type}`"
        + (
            f" (`{delta.query_param or '{{checkpoint}}'}`, {delta.format}, "
            f"{delta.overlap_seconds} s overlap)"
            if isinstance(delta, d.TimestampFilterDelta)
            else ""
        )
        + f"; the first poll reaches back {polling.initial_lookback_seconds // 3600} h.",
    ]
    if polling.pagination is not None:
        lines.append(
            f"- Pagination: `{polling.pagination.type}`, {polling.pagination.page_size} per page."
        )
    return [*lines, ""]


def _mapping_lines(title: str, mapping: d.FieldMappingDescriptor) -> list[str]:
    lines = [f"### {title}", ""]
    rows: list[list[object]] = [[f"`{r.then}`", _rule(r)] for r in mapping.signal_type_rules]
    rows.append([f"`{mapping.default_type}`", "no rule matches"])
    lines += _table(["Signal type", "When"], rows)
    lines += [
        "",
        f"- Items: `{mapping.items_path}`; id `{mapping.id_path}`; time `{mapping.timestamp_path}`.",
    ]
    lines.append(f"- Summary: `{mapping.summary_template}`.")
    for label, path in (
        ("Participants", mapping.participants_path),
        ("Tags", mapping.tags_path),
        ("Related tickets", mapping.related_items_path),
    ):
        if path:
            lines.append(f"- {label}: `{path}`.")
    for rule in mapping.priority_mapping or []:
        lines.append(f"- Priority `{rule.then}` when {_rule(rule)}.")
    for skip in mapping.skip:
        lines.append(f"- Items are skipped when {_condition(skip)}.")
    return [*lines, ""]


def _sources_lines(references: list[d.Reference]) -> list[str]:
    if not references:
        return []
    lines = [
        "## Sources",
        "",
        "The provider's own documentation this connector (and ucf's fake of the API) follows;",
        "check it here when the API seems to behave differently.",
        "",
    ]
    lines += [f"- {reference.title}: <{reference.url}>" for reference in references]
    return [*lines, ""]


GENERATED: Final = "<!-- Generated from the descriptor by `ucf connectors docs`; do not edit. -->"
"""The line every generated page holds: a page without it is someone's own."""


def render_connector_doc(descriptor: d.ConnectorDescriptor, *, guide: str = "") -> str:
    """The Markdown page of one connector.

    A native connector's descriptor says who it is and what it needs (credentials,
    settings, health check); how it polls, what it receives and which signals it
    makes live in its code, so its package's ``guide`` follows the generated part.
    """
    mode = descriptor.ingestion.mode if descriptor.ingestion is not None else "native"
    lines = [
        f"# {descriptor.name} (`{descriptor.id}`)",
        "",
        GENERATED,
        "",
        descriptor.description,
        "",
        f"- Category: {descriptor.category}; kind: {descriptor.kind}; version {descriptor.version}",
        f"- Auth: {' or '.join(f'`{m.method}`' for m in descriptor.auth_methods())}; "
        f"ingestion: `{mode}`",
        "",
    ]
    lines += ["## Credentials", ""]
    if descriptor.docs_url:
        lines += [f"Create them at <{descriptor.docs_url}>.", ""]
    if descriptor.kind == "native":
        lines.append("Used by the connector's own code, as its guide below says.")
    else:
        lines += _auth_lines(descriptor.auth)
        for method in descriptor.auth_alternatives:
            lines += ["", f"Or `{method.method}`:", *_auth_lines(method)]
    if descriptor.consent() is not None:
        lines += [
            "",
            f'Once an operator registers the OAuth app, the setup flow offers "Connect with '
            f'{descriptor.name}" (see the OAuth guide); the consent fills the token fields.',
        ]
    fields = descriptor.credential_fields()
    if fields and descriptor.auth_alternatives:
        # "Required" means something per method: say it per method.
        lines.append("")
        lines += _table(
            ["Key", "Label", "Required for", "Help"],
            [
                [
                    f"`{f.key}`",
                    f.label,
                    ", ".join(
                        f"`{m.method}`"
                        for m in descriptor.auth_methods()
                        if any(
                            own.key == f.key and own.required
                            for own in descriptor.credential_fields(m)
                        )
                    )
                    or "none",
                    f.help_text,
                ]
                for f in fields
            ],
        )
    elif fields:
        lines.append("")
        lines += _table(
            ["Key", "Label", "Required", "Help"],
            [[f"`{f.key}`", f.label, "yes" if f.required else "no", f.help_text] for f in fields],
        )
    lines.append("")
    settings = descriptor.setup_config_fields()
    if settings:
        lines += ["## Settings", ""]
        lines += _table(
            ["Key", "Label", "Required", "Default", "Help"],
            [
                [f"`{f.key}`", f.label, "yes" if f.required else "no", f.default, f.help_text]
                for f in settings
            ],
        )
        lines.append("")
    if descriptor.polling is not None:
        lines += _polling_lines(descriptor.polling)
    if descriptor.webhook is not None:
        lines += _webhook_lines(descriptor, descriptor.webhook)
    if descriptor.kind != "native":
        lines += ["## Signals", ""]
    if descriptor.field_mapping is not None:
        lines += _mapping_lines(
            "From polling" if descriptor.polling else "Mapping", descriptor.field_mapping
        )
    webhook_mapping = descriptor.webhook_mapping()
    if webhook_mapping is not None and webhook_mapping is not descriptor.field_mapping:
        lines += _mapping_lines("From webhooks", webhook_mapping)
    if descriptor.kind == "native":
        lines += ["## Health check", "", "The connector's own check (see the guide below).", ""]
    else:
        lines += [
            "## Health check",
            "",
            f"`{descriptor.health_check.method} {descriptor.health_check.endpoint}` expects "
            f"{descriptor.health_check.expect_status} within "
            f"{descriptor.health_check.timeout_ms} ms.",
            "",
        ]
    if guide.strip():
        lines += [
            "<!-- The rest is the connector package's guide (NativeConnector.guide). -->",
            "",
            guide.strip(),
            "",
        ]
    lines += _sources_lines(descriptor.references)
    return "\n".join(lines)
