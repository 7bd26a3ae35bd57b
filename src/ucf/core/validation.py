"""Validation of descriptors past their shape: every problem, each with its path.

A descriptor author fixes problems in a loop; listing only the first one makes
that loop long. So shape errors (from pydantic) and meaning errors (paths that
do not parse, templates naming unknown variables, regexes RE2 rejects,
pagination that cannot reach page two) are all collected, each with the JSON
path of the offending value as the author wrote it and, where we can tell, a
hint about the fix.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ucf.core import descriptor as d
from ucf.core.jsonpath import PathSyntaxError, compile_path
from ucf.core.regex import RegexError, compile_regex
from ucf.core.template import TemplateSyntaxError, compile_template


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a descriptor."""

    path: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.path or '(root)'}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class DescriptorInvalid(ValueError):
    """A descriptor with problems; ``problems`` lists all of them."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(
            f"{len(self.problems)} problem(s): " + "; ".join(str(p) for p in self.problems)
        )


def parse_descriptor(data: Any) -> d.ConnectorDescriptor:
    """Parse and fully validate a descriptor, raising :class:`DescriptorInvalid`."""
    descriptor, problems = validate_descriptor(data)
    if descriptor is None or problems:
        raise DescriptorInvalid(problems)
    return descriptor


def validate_descriptor(data: Any) -> tuple[d.ConnectorDescriptor | None, list[Problem]]:
    """Shape first; meaning only once the shape holds (there is nothing to reason about before)."""
    try:
        descriptor = d.ConnectorDescriptor.model_validate(data)
    except ValidationError as error:
        return None, _shape_problems(error, data)
    return descriptor, check_descriptor(descriptor)


# --------------------------------------------------------------------------- shape


@functools.cache
def _all_aliases() -> frozenset[str]:
    """Every key of the descriptor language, for "did you mean" hints."""
    models = [m for m in vars(d).values() if isinstance(m, type) and issubclass(m, BaseModel)]
    return frozenset(
        info.alias or name for model in models for name, info in model.model_fields.items()
    )


_DISCRIMINATORS = ("method", "mode", "type")


def _json_path(loc: Iterable[int | str], data: Any) -> str:
    """Turn a pydantic error location into the path the author sees.

    Pydantic puts union tags (``'pat'``, ``'polling'``) and union member names
    (``'str'``) in locations; they are not keys of the input, so walking the
    input alongside the location drops them.
    """
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and -len(node) <= item < len(node) else None
            continue
        if isinstance(node, Mapping):
            if item in node:
                parts.append(f".{item}" if parts else item)
                node = node[item]
                continue
            if any(node.get(key) == item for key in _DISCRIMINATORS):
                continue
            if item.startswith(("function-", "tagged-union", "union")) or "[" in item:
                continue
            parts.append(f".{item}" if parts else item)
            node = None
            continue
        if node is None and parts:
            # Past the input (a missing field): name the missing key itself.
            parts.append(f".{item}")
    return "".join(parts)


def _shape_problems(error: ValidationError, data: Any) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for issue in error.errors(include_url=False):
        loc = tuple(issue["loc"])
        kind = issue["type"]
        path = _json_path(loc, data)
        message = issue["msg"]
        hint: str | None = None
        if kind == "missing":
            message = "required field is missing"
            hint = f"add '{loc[-1]}'"
        elif kind == "extra_forbidden":
            message = f"unknown field '{loc[-1]}'"
            close = difflib.get_close_matches(str(loc[-1]), sorted(_all_aliases()), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "remove it"
        elif kind == "union_tag_invalid":
            ctx = issue.get("ctx") or {}
            hint = f"use one of {ctx.get('expected_tags', '')}"
        elif kind == "string_pattern_mismatch" and loc and loc[-1] == "id":
            hint = "use lowercase letters, digits and single dashes, e.g. 'github-issues'"
        if (path, message) in seen:
            continue
        seen.add((path, message))
        problems.append(Problem(path, message, hint))
    return problems


# --------------------------------------------------------------------------- meaning

_REQUEST_VARIABLES = frozenset({"baseUrl", "checkpoint", "pageToken", "pageSize"})
_HEALTH_VARIABLES = frozenset({"baseUrl"})
_SIGNED_PAYLOAD_VARIABLES = frozenset({"body", "timestamp", "id", "url"})


class _Checker:
    """Collects problems while walking one parsed descriptor."""

    def __init__(self, descriptor: d.ConnectorDescriptor) -> None:
        self.descriptor = descriptor
        self.problems: list[Problem] = []
        self.config_keys = {f.key for f in descriptor.config_fields}
        self.credential_keys = {f.key for f in _credential_fields(descriptor.auth)}

    def add(self, path: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(path, message, hint))

    # -- primitives

    def path(self, where: str, expression: str | None) -> None:
        if expression is None:
            return
        try:
            compile_path(expression)
        except PathSyntaxError as error:
            self.add(
                where, f"JSONPath does not parse: {error}", "see RFC 9535; e.g. '$.items[*].id'"
            )

    def template(self, where: str, source: str, allowed: frozenset[str]) -> set[str]:
        try:
            template = compile_template(source)
        except TemplateSyntaxError as error:
            self.add(where, f"template does not parse: {error}")
            return set()
        used = set(template.variables)
        for name in sorted(used):
            if name in allowed:
                continue
            if name.startswith("config."):
                key = name.removeprefix("config.")
                if key in self.config_keys or key == "baseUrl":
                    continue
                close = difflib.get_close_matches(key, sorted(self.config_keys), n=1)
                self.add(
                    where,
                    f"template uses '{{{{{name}}}}}' but there is no config field '{key}'",
                    f"did you mean 'config.{close[0]}'?"
                    if close
                    else f"add {{'key': '{key}', ...}} to configFields",
                )
                continue
            self.add(
                where,
                f"template uses unknown variable '{{{{{name}}}}}'",
                "known: " + ", ".join(sorted(allowed | {"config.<configField>"})),
            )
        return used

    def item_template(self, where: str, source: str) -> None:
        try:
            template = compile_template(source)
        except TemplateSyntaxError as error:
            self.add(where, f"template does not parse: {error}")
            return
        for name in sorted(template.variables):
            try:
                compile_path(name)
            except PathSyntaxError as error:
                self.add(where, f"placeholder '{{{{{name}}}}}' is not a valid item path: {error}")

    def credential(self, where: str, key: str | None) -> None:
        if key is not None and key not in self.credential_keys:
            known = ", ".join(sorted(self.credential_keys)) or "none"
            self.add(
                where,
                f"no credential field '{key}' (known: {known})",
                f"add {{'key': '{key}', ...}} to auth.config.credentialFields",
            )

    # -- parts

    def run(self) -> list[Problem]:
        desc = self.descriptor
        self.fields()
        self.auth()
        ingestion = desc.ingestion
        if isinstance(ingestion, d.PollingDescriptor):
            self.polling("ingestion", ingestion)
        elif isinstance(ingestion, d.WebhookDescriptor):
            self.webhook("ingestion", ingestion)
        elif isinstance(ingestion, d.PollingAndWebhookDescriptor):
            self.polling("ingestion.polling", ingestion.polling)
            self.webhook("ingestion.webhook", ingestion.webhook)
        if desc.field_mapping is not None:
            self.mapping("fieldMapping", desc.field_mapping, webhook=desc.webhook is not None)
        self.health_check(desc.health_check)
        if desc.response_errors is not None:
            self.path("responseErrors.codePath", desc.response_errors.code_path)
        return self.problems

    def health_check(self, check: d.HealthCheckDescriptor) -> None:
        self.template("healthCheck.endpoint", check.endpoint, _HEALTH_VARIABLES)
        if check.body is None:
            return
        if check.method != "POST":
            self.add(
                "healthCheck.body", f"a {check.method} request cannot carry a body", "use POST"
            )
        for body_where, text in _body_strings("healthCheck.body", check.body):
            self.template(body_where, text, _HEALTH_VARIABLES)

    def fields(self) -> None:
        for label, keys in (
            ("configFields", [f.key for f in self.descriptor.config_fields]),
            (
                "auth.config.credentialFields",
                [f.key for f in _credential_fields(self.descriptor.auth)],
            ),
        ):
            for index, key in enumerate(keys):
                if keys.index(key) != index:
                    self.add(f"{label}[{index}].key", f"duplicate key '{key}'")
        for index, field in enumerate(self.descriptor.config_fields):
            if field.type == "select" and not field.options:
                self.add(f"configFields[{index}].options", "a select field needs options")

    def auth(self) -> None:
        auth = self.descriptor.auth
        base = "auth.config"
        if isinstance(auth, d.ApiKeyAuth | d.PatAuth):
            config = auth.config
            if not config.credential_fields:
                self.add(f"{base}.credentialFields", "at least one credential field is needed")
            self.credential(f"{base}.credentialKey", config.credential_key)
            for index, extra in enumerate(config.additional_credentials):
                self.credential(
                    f"{base}.additionalCredentials[{index}].credential", extra.credential
                )
        elif isinstance(auth, d.BasicAuth):
            config_b = auth.config
            self.credential(f"{base}.usernameKey", config_b.username_key)
            self.credential(f"{base}.passwordKey", config_b.password_key)
            if config_b.username_key is None and len(config_b.credential_fields) < 2:
                self.add(
                    f"{base}.credentialFields",
                    "basic auth needs two credential fields (username, password)",
                    "or name them with usernameKey/passwordKey",
                )
        elif isinstance(auth, d.OAuth2Auth):
            config_o = auth.config
            needed = [config_o.client_id_key, config_o.client_secret_key]
            if config_o.grant == "refresh_token":
                needed.append(config_o.refresh_token_key)
            for key in needed:
                self.credential(f"{base}.credentialFields", key)

    def polling(self, where: str, spec: d.PollingSpec) -> None:
        used: set[str] = set()
        used |= self.template(f"{where}.endpoint", spec.endpoint, _REQUEST_VARIABLES)
        for name, value in (spec.headers or {}).items():
            used |= self.template(f"{where}.headers.{name}", value, _REQUEST_VARIABLES)
        for name, value in spec.query.items():
            used |= self.template(f"{where}.query.{name}", value, _REQUEST_VARIABLES)
        if spec.body is not None:
            if spec.method == "GET":
                self.add(f"{where}.body", "a GET request cannot carry a body", "use method POST")
            for body_where, text in _body_strings(f"{where}.body", spec.body):
                used |= self.template(body_where, text, _REQUEST_VARIABLES)
        if spec.omit_null_body_fields and spec.body is None:
            self.add(f"{where}.omitNullBodyFields", "there is no body to leave members out of")
        if spec.client_side_since or spec.stop_at_checkpoint:
            used = used | {"checkpoint"}  # the filter runs on our side
        self.delta(f"{where}.delta", spec.delta, used)
        self.pagination(where, spec.pagination, used)

    def delta(self, where: str, delta: d.DeltaStrategy, used: set[str]) -> None:
        if isinstance(delta, d.TimestampFilterDelta):
            if delta.query_param is None and "checkpoint" not in used:
                self.add(
                    f"{where}.queryParam",
                    "no queryParam and no template uses {{checkpoint}}: the poll would never be incremental",
                    "set queryParam, place {{checkpoint}} in the endpoint, query or body, "
                    "or filter on our side with clientSideSince / stopAtCheckpoint",
                )
        elif isinstance(delta, d.DeltaTokenDelta):
            self.path(f"{where}.tokenPath", delta.token_path)
        elif isinstance(delta, d.CursorDelta):
            self.path(f"{where}.cursorPath", delta.cursor_path)
        elif isinstance(delta, d.SinceIdDelta):
            self.path(f"{where}.idPath", delta.id_path)

    def pagination(
        self, where: str, pagination: d.PaginationDescriptor | None, used: set[str]
    ) -> None:
        if pagination is None:
            if "pageToken" in used:
                self.add(
                    where,
                    "templates use {{pageToken}} but there is no pagination",
                    "add 'pagination'",
                )
            return
        base = f"{where}.pagination"
        for field in ("next_path", "total_path", "has_more_path", "base_url_path"):
            alias = d.PaginationDescriptor.model_fields[field].alias or field
            self.path(f"{base}.{alias}", getattr(pagination, field))
        kind = pagination.type
        if kind in ("cursor", "next_url") and pagination.next_path is None:
            self.add(f"{base}.nextPath", f"{kind} pagination needs nextPath")
        if kind == "cursor" and pagination.next_param is None and "pageToken" not in used:
            self.add(
                f"{base}.nextParam",
                "cursor pagination needs nextParam, or {{pageToken}} placed in a template",
            )
        if kind in ("offset", "page_number") and pagination.next_param is None:
            self.add(
                f"{base}.nextParam", f"{kind} pagination needs nextParam (the query parameter)"
            )
        if kind == "link_header" and pagination.next_path is not None:
            self.add(
                f"{base}.nextPath",
                "link_header pagination reads the Link header; nextPath is not used",
                "remove nextPath or use type 'next_url'",
            )

    def webhook(self, where: str, spec: d.WebhookSpec) -> None:
        if spec.event_type_path is None and spec.event_type_header is None:
            self.add(
                f"{where}.eventTypePath",
                "the event type must come from somewhere",
                "set eventTypePath or eventTypeHeader",
            )
        for field in ("event_type_path", "action_path", "delivery_id_path"):
            alias = d.WebhookDescriptor.model_fields[field].alias or field
            self.path(f"{where}.{alias}", getattr(spec, field))
        for index, event_type in enumerate(spec.event_types):
            if not event_type.strip():
                self.add(f"{where}.eventTypes[{index}]", "empty event type")
        if spec.verification == "signature":
            signature = self.descriptor.signature_verification()
            if signature is None:
                self.add(
                    f"{where}.verification",
                    "verification is 'signature' but no signature scheme is configured",
                    "add a 'signature' object, or use auth.method 'webhook_secret'",
                )
            else:
                self.signature(f"{where}.signature", signature)
        elif spec.verification == "token":
            if spec.token is None:
                self.add(f"{where}.token", "verification is 'token' but 'token' is not configured")
            else:
                self.path(f"{where}.token.bodyPath", spec.token.body_path)
                self.credential(f"{where}.token.secretCredential", spec.token.secret_credential)
        for index, handshake in enumerate(spec.handshakes):
            self.handshake(f"{where}.handshakes[{index}]", handshake)
        if spec.field_mapping is not None:
            self.mapping(f"{where}.fieldMapping", spec.field_mapping, webhook=True)

    def signature(self, where: str, signature: d.SignatureVerification) -> None:
        used = self.template(
            f"{where}.signedPayload", signature.signed_payload, _SIGNED_PAYLOAD_VARIABLES
        )
        if "body" not in used:
            self.add(f"{where}.signedPayload", "the signed payload must include {{body}}")
        if "timestamp" in used and signature.timestamp is None:
            self.add(
                f"{where}.timestamp",
                "signedPayload uses {{timestamp}} but no timestamp source is set",
            )
        if "id" in used and signature.id_header is None:
            self.add(f"{where}.idHeader", "signedPayload uses {{id}} but idHeader is not set")
        if signature.timestamp is not None:
            self.path(f"{where}.timestamp.bodyPath", signature.timestamp.body_path)
        if self.descriptor.webhook is not None and self.descriptor.webhook.signature is not None:
            self.credential(f"{where}.secretCredential", signature.secret_credential)

    def handshake(self, where: str, handshake: d.Handshake) -> None:
        self.path(f"{where}.whenPath", handshake.when_path)
        self.path(f"{where}.respondPath", handshake.respond_path)
        required = {
            "challenge": ("whenPath", handshake.when_path, "respondPath", handshake.respond_path),
            "echo_header": ("header", handshake.header, None, None),
            "echo_query": ("queryParam", handshake.query_param, None, None),
            "acknowledge": ("whenPath", handshake.when_path, None, None),
        }.get(handshake.type)
        if required is None:
            return
        first_name, first, second_name, second = required
        if first is None:
            self.add(f"{where}.{first_name}", f"a '{handshake.type}' handshake needs {first_name}")
        if second_name is not None and second is None:
            self.add(
                f"{where}.{second_name}", f"a '{handshake.type}' handshake needs {second_name}"
            )

    def mapping(self, where: str, mapping: d.FieldMappingDescriptor, *, webhook: bool) -> None:
        for field in (
            "items_path",
            "id_path",
            "timestamp_path",
            "participants_path",
            "tags_path",
            "related_items_path",
            "version_path",
        ):
            alias = d.FieldMappingDescriptor.model_fields[field].alias or field
            self.path(f"{where}.{alias}", getattr(mapping, field))
        for index, raw_field in enumerate(mapping.raw_fields or []):
            self.path(f"{where}.rawFields[{index}]", raw_field)
        self.item_template(f"{where}.summaryTemplate", mapping.summary_template)
        for index, rule in enumerate(mapping.signal_type_rules):
            rule_where = f"{where}.signalTypeRules[{index}]"
            self.condition(rule_where, rule)
            for sub_index, condition in enumerate(rule.all):
                self.condition(f"{rule_where}.all[{sub_index}]", condition)
            if rule.event_types is not None and not webhook:
                self.add(
                    f"{rule_where}.eventTypes", "eventTypes only applies to webhook connectors"
                )
            if not rule.then.strip():
                self.add(f"{rule_where}.then", "empty signal type")
        for index, priority_rule in enumerate(mapping.priority_mapping or []):
            rule_where = f"{where}.priorityMapping[{index}]"
            self.condition(rule_where, priority_rule)
            for sub_index, condition in enumerate(priority_rule.all):
                self.condition(f"{rule_where}.all[{sub_index}]", condition)
        for index, skip in enumerate(mapping.skip):
            self.condition(f"{where}.skip[{index}]", skip)

    def condition(self, where: str, condition: d.Condition) -> None:
        self.path(f"{where}.when", condition.when)
        self.path(f"{where}.valuePath", condition.value_path)
        operator = condition.operator
        has_operand = condition.value is not None or condition.value_path is not None
        if operator in ("exists", "not_exists"):
            if has_operand:
                self.add(f"{where}.value", f"'{operator}' takes no value")
            return
        if not has_operand:
            self.add(f"{where}.value", f"'{operator}' needs a value (or valuePath)")
            return
        if operator == "in":
            if not isinstance(condition.value, list):
                self.add(f"{where}.value", "'in' needs a list of values")
            return
        if isinstance(condition.value, list):
            self.add(
                f"{where}.value", f"'{operator}' compares with one value, not a list", "use 'in'"
            )
            return
        if operator == "matches" and condition.value is not None:
            try:
                compile_regex(condition.value)
            except RegexError as error:
                self.add(
                    f"{where}.value",
                    f"regular expression does not compile under RE2: {error}",
                    "RE2 has no backreferences or lookaround",
                )


def check_descriptor(descriptor: d.ConnectorDescriptor) -> list[Problem]:
    """Meaning checks on a descriptor whose shape is already valid."""
    return _Checker(descriptor).run()


def _credential_fields(auth: d.AuthDescriptor) -> list[d.CredentialField]:
    if isinstance(auth, d.NoAuth):
        return []
    return list(auth.config.credential_fields)


def _body_strings(where: str, body: Any) -> Iterator[tuple[str, str]]:
    """Every string of a body template with its path (a JSON body is templated value by value)."""
    if isinstance(body, str):
        yield where, body
    elif isinstance(body, dict):
        for key, value in body.items():
            yield from _body_strings(f"{where}.{key}", value)
    elif isinstance(body, list):
        for index, value in enumerate(body):
            yield from _body_strings(f"{where}[{index}]", value)
