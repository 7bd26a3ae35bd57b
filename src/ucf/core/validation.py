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
import json
import re
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import BaseModel, TypeAdapter, ValidationError

from ucf.core import descriptor as d
from ucf.core.jsonpath import PathSyntaxError, compile_path
from ucf.core.payload import encodes_as_utf8
from ucf.core.regex import RegexError, compile_regex
from ucf.core.signal_identity import SIGNAL_TYPE_MAX_CHARS
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


SCHEMA_KEY: Final = "$schema"
"""A descriptor file's pointer to the published schema, for the author's editor: taken
and dropped (the stored descriptor is the models' dump). It was an unknown field, so
the usual way to "point your editor at it" made the file invalid."""


def validate_descriptor(data: Any) -> tuple[d.ConnectorDescriptor | None, list[Problem]]:
    """Shape and meaning in one pass, so a descriptor with five problems reports five.

    When the whole does not parse, each part that parses on its own (auth,
    ingestion or its polling and webhook blocks, field mapping, health check)
    still gets its meaning checks, and the parts that do not parse get the
    checks that need no model: their JSONPaths, RE2 regexes and templates,
    found by key in the raw JSON.

    Text that is not Unicode (a lone surrogate, from JSON's ``"\\ud800"``) is a
    problem at its path; the rest is checked with it replaced, so every other
    problem is listed too.
    """
    if isinstance(data, Mapping) and isinstance(data.get(SCHEMA_KEY), str):
        data = {key: value for key, value in data.items() if key != SCHEMA_KEY}
    unicode_problems = _not_unicode(data)
    if unicode_problems:
        replaced = _replaced(data)
        others = validate_descriptor(replaced)[1] if replaced is not None else []
        return None, unicode_problems + others
    try:
        descriptor = d.ConnectorDescriptor.model_validate(data)
    except ValidationError as error:
        problems = _shape_problems(error, data)
        seen = {(p.path, p.message) for p in problems}
        for problem in [*_generic_needs(data), *_Checker(_salvage(data)).run()]:
            if (problem.path, problem.message) not in seen:
                seen.add((problem.path, problem.message))
                problems.append(problem)
        return None, problems + _display_name(data)
    return descriptor, check_descriptor(descriptor) + _display_name(data)


def duplicate_keys(text: str | bytes) -> list[Problem]:
    """Each key given twice or more in one object of ``text``, at its path.

    JSON parsers (Python's, the browser's, FastAPI's) keep the last of a repeated key
    and say nothing: an author who wrote ``itemsPath`` twice, or pasted a second
    ``auth`` below the first, had the earlier one dropped and never knew which one
    ucf read. Read from the text, since the parsed object no longer has them.
    Text that is not JSON gives none here: its own problem says where it breaks.
    """
    try:
        return loads_noting_repeats(text)[1]
    except (ValueError, RecursionError):
        return []


def loads_noting_repeats(text: str | bytes) -> tuple[Any, list[Problem]]:
    """``json.loads(text)``, and :func:`duplicate_keys`'s problems, from one parse.

    The value is what ``json.loads`` gives (a repeated key keeps its first place and
    its last value); it raises as ``json.loads`` does. A caller that needs both (the
    API reading a descriptor in a request body) parsed the text twice: the second
    parse, into lists of pairs walked in Python, cost more than the first. Here each
    object is a ``dict`` built in C, and only an object whose ``dict`` came out
    shorter than its pairs is remembered; the tree is walked for paths only when
    some key was repeated, which is rare.
    """
    repeated: dict[int, tuple[dict[str, Any], list[tuple[str, Any]]]] = {}

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        made = dict(pairs)
        if len(made) != len(pairs):
            repeated[id(made)] = (made, pairs)  # the dict kept alive: its id stays its own
        return made

    value = json.loads(text, object_pairs_hook=pairs_hook)
    if not repeated:
        return value, []
    problems: list[Problem] = []
    _walk_repeats(value, "", {key: pairs for key, (_, pairs) in repeated.items()}, problems)
    return value, list(dict.fromkeys(problems))  # a repeated object repeats its own repeats


def _walk_repeats(
    node: Any, path: str, repeated: Mapping[int, list[tuple[str, Any]]], problems: list[Problem]
) -> None:
    """The problems of ``node`` and below: an object with repeats is walked through all
    its pairs, so the repeats inside a value that was dropped are named too."""
    if isinstance(node, dict):
        pairs = repeated.get(id(node))
        if pairs is None:
            for key, value in node.items():
                if isinstance(value, dict | list):
                    _walk_repeats(value, f"{path}.{key}" if path else key, repeated, problems)
            return
        counts: dict[str, int] = {}
        for key, _ in pairs:
            counts[key] = counts.get(key, 0) + 1
        for key, count in counts.items():
            if count > 1:
                problems.append(
                    Problem(
                        f"{path}.{key}" if path else key,
                        f"key '{key}' is given {count} times in this object; JSON keeps "
                        "only the last, and the others are dropped without a word",
                        "keep one of them (ucf reads the last)",
                    )
                )
        for key, value in pairs:
            if isinstance(value, dict | list):
                _walk_repeats(value, f"{path}.{key}" if path else key, repeated, problems)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if isinstance(value, dict | list):
                _walk_repeats(value, f"{path}[{index}]", repeated, problems)


_LITERAL_REPEAT: Final = re.compile(r"(?<!\\)\{,(\d+)\}")
"""``{,n}`` not escaped: a repetition to Python's ``re``, literal text to RE2."""
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""RFC 9110's ``token``: what a header field's name may be."""


def _generic_needs(data: Any) -> list[Problem]:
    """``ingestion`` and ``fieldMapping`` missing from a generic connector, read from the
    raw JSON: the model says so only once everything else parses, so with other problems
    these two were found only in a second round."""
    if not isinstance(data, Mapping) or data.get("kind") != "generic":
        return []
    return [
        Problem(name, "required field is missing", _GENERIC_NEEDS)
        for name in ("ingestion", "fieldMapping")
        if data.get(name) is None
    ]


_DISPLAY_NAME = re.compile(d.DISPLAY_NAME_PATTERN)


def _display_name(data: Any) -> list[Problem]:
    """A name that would show reversed or cut (``d.DISPLAY_NAME_PATTERN``). Checked here,
    where a descriptor is registered, not by the model: one stored before the rule loads."""
    name = data.get("name") if isinstance(data, Mapping) else None
    if not isinstance(name, str) or not name or _DISPLAY_NAME.fullmatch(name):
        return []
    return [
        Problem(
            "name",
            "holds a control character or a bidirectional override",
            "take it out: it hides or reverses the name where the name is shown",
        )
    ]


_NOT_UNICODE = "holds a lone surrogate (an escape such as \\ud800 without its pair)"


def _not_unicode(data: Any) -> list[Problem]:
    """A problem at the path of each text (key or value) strict UTF-8 cannot encode: the
    store, a log line or a request would raise on it later (registering one was a 500).
    A loop, not recursion: a descriptor may be nested as deep as JSON allows."""
    problems: list[Problem] = []
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if not encodes_as_utf8(value):
                problems.append(Problem(path, _NOT_UNICODE))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                where = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and not encodes_as_utf8(key):
                    problems.append(Problem(where, _NOT_UNICODE))
                stack.append((item, where))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
    return sorted(problems, key=lambda p: p.path)


def _replaced(data: Any) -> Any:
    """``data`` with every lone surrogate replaced, to check the rest; None if it is not JSON."""
    try:
        text = json.dumps(data, ensure_ascii=False).encode("utf-8", "replace").decode()
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None


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


_UNION_MEMBERS: Final = {
    "str": "a string",
    "list[str]": "a list of strings",
    "dict[str,any]": "an object",
}
"""What pydantic names the members of the descriptor's plain unions (``Condition.value``:
``str | list[str]``; a request ``body``: ``str | dict``) in an error location."""


_NOT_AN_OBJECT: Final = frozenset({"model_type", "model_attributes_type", "dict_type"})
"""Pydantic's kinds for "not an object": their messages named our model classes ("a valid
dictionary or instance of HealthCheckDescriptor"), which no descriptor author writes."""
_GENERIC_NEEDS: Final = (
    "a generic connector needs it (only a native connector's code brings its own)"
)


def _union_member(loc: tuple[int | str, ...], data: Any) -> int | None:
    """The index in ``loc`` of a plain union's member name, walking ``data`` beside it
    (a key the input really has is a key, not a member); None when there is none."""
    node = data
    for index, item in enumerate(loc):
        if isinstance(item, int):
            node = node[item] if isinstance(node, list) and -len(node) <= item < len(node) else None
        elif isinstance(node, Mapping) and item in node:
            node = node[item]
        elif item in _UNION_MEMBERS:
            return index
        elif not (isinstance(node, Mapping) and any(node.get(k) == item for k in _DISCRIMINATORS)):
            node = None
    return None


def _union_members(issues: list[Any], data: Any) -> dict[tuple[int | str, ...], list[str]]:
    """The member names that failed, per plain union location. Each member of a union
    fails on its own (``value: 5`` is neither a string nor a list): listed one by one,
    they said "should be a valid string" and "should be a valid list" at once, one of
    them at a path the input does not have (``value.str`` for an object)."""
    unions: dict[tuple[int | str, ...], list[str]] = {}
    for issue in issues:
        loc = tuple(issue["loc"])
        at = _union_member(loc, data)
        if at is not None:
            members = unions.setdefault(loc[:at], [])
            if loc[at] not in members:
                members.append(str(loc[at]))
    return unions


def _shape_problems(error: ValidationError, data: Any) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    issues = error.errors(include_url=False)
    unions = _union_members(issues, data)
    for issue in issues:
        loc = tuple(issue["loc"])
        kind = issue["type"]
        at = _union_member(loc, data)
        if at is not None:  # one problem for the whole union, where its first member failed
            loc = loc[:at]
        path = _json_path(loc, data)
        message = issue["msg"]
        hint: str | None = None
        needs = (issue.get("ctx") or {}).get("error")
        if isinstance(needs, d.GenericNeeds):
            for name in needs.missing:  # at its own path, not the root's
                problems.append(Problem(name, "required field is missing", _GENERIC_NEEDS))
            continue
        if at is not None:
            message = "Input should be " + " or ".join(_UNION_MEMBERS[m] for m in unions[loc])
        elif kind in _NOT_AN_OBJECT:
            message = "Input should be an object"
        elif kind == "value_error":
            message = message.removeprefix("Value error, ")
        elif kind == "missing":
            message = "required field is missing"
            hint = _missing_hint(loc, data)
        elif kind == "extra_forbidden":
            message, hint = _unknown_field(loc, path, data)
        elif kind == "union_tag_invalid":
            ctx = issue.get("ctx") or {}
            hint = f"use one of {ctx.get('expected_tags', '')}"
        elif kind == "union_tag_not_found":  # pydantic: "Unable to extract tag using ..."
            path, message, hint = _missing_tag(loc, path, issue.get("ctx") or {})
        elif kind == "string_pattern_mismatch" and loc and loc[-1] == "id":
            hint = "use lowercase letters, digits and single dashes, e.g. 'github-issues'"
        if (path, message) in seen:
            continue
        seen.add((path, message))
        problems.append(Problem(path, message, hint))
    return problems


def _missing_tag(
    loc: tuple[int | str, ...], path: str, ctx: Mapping[str, Any]
) -> tuple[str, str, str]:
    """A union object without the field that says which kind it is (``ingestion`` without
    ``mode``), reported as that field missing, with the kinds it may name."""
    field = str(ctx.get("discriminator", "")).strip("'")
    members, _ = _models_at(loc)
    tags = [tag[1] for m in members if (tag := _tag_of(m)) is not None and tag[0] == field]
    kinds = ", ".join(f"'{tag}'" for tag in dict.fromkeys(tags))
    return (
        f"{path}.{field}" if path else field,
        "required field is missing",
        f"add '{field}': one of {kinds}" if kinds else f"add '{field}'",
    )


_MODE_EXPECTS = {
    "polling": (
        "mode 'polling' expects the request fields (endpoint, method, delta, rateLimitRpm, "
        "pagination) directly under 'ingestion'"
    ),
    "webhook": (
        "mode 'webhook' expects the webhook fields (eventTypes, eventTypePath or "
        "eventTypeHeader, verification) directly under 'ingestion'"
    ),
    "polling_and_webhook": (
        "mode 'polling_and_webhook' expects two objects: 'polling' (endpoint, method, delta, "
        "rateLimitRpm, pagination) and 'webhook' (eventTypes, eventTypePath or "
        "eventTypeHeader, verification)"
    ),
}


def _missing_hint(loc: tuple[int | str, ...], data: Any) -> str:
    mode = _mode_of(loc[:-1], data)
    if mode is not None and loc[-1] in ("polling", "webhook"):
        return _MODE_EXPECTS[mode]
    return f"add '{loc[-1]}'"


def _mode_of(loc: tuple[int | str, ...], data: Any) -> str | None:
    """The ingestion mode when ``loc`` points into an ingestion block, else None."""
    keys = [item for item in loc if isinstance(item, str)]
    if not keys or keys[0] != "ingestion" or not isinstance(data, Mapping):
        return None
    ingestion = data.get("ingestion")
    mode = ingestion.get("mode") if isinstance(ingestion, Mapping) else None
    return mode if isinstance(mode, str) and mode in _MODE_EXPECTS else None


def _unknown_field(loc: tuple[int | str, ...], path: str, data: Any) -> tuple[str, str]:
    """Say where an unknown key belongs, not only that it is unknown.

    An author who moves a descriptor from ``polling`` to ``polling_and_webhook``
    leaves the request fields directly under ``ingestion``; "did you mean
    'endpoint'?" about ``endpoint`` helps nobody. So: a key that a child object
    of this block accepts is "move it into <child>"; a key that another variant
    of the same union accepts names that variant; otherwise a near miss among
    this block's own keys.
    """
    key = str(loc[-1])
    parent_path = path.rsplit(".", 1)[0] if "." in path else ""
    parents, variants = _models_at(loc[:-1])
    mode = _mode_of(loc[:-1], data) if parent_path == "ingestion" else None
    for parent in parents:
        for child_alias, children in _child_models(parent):
            if any(key in _aliases(child) for child in children):
                where = f"{parent_path}.{child_alias}" if parent_path else child_alias
                message = f"'{key}' does not go directly under '{parent_path or '(root)'}'"
                if mode is not None:
                    message = f"in mode '{mode}', '{key}' belongs under '{where}'"
                return message, f"move it into '{where}'"
    for variant in variants:
        tag = _tag_of(variant)
        if key in _aliases(variant) and tag is not None:
            message = f"unknown field '{key}'"
            if mode is not None:
                message = f"{message}: {_MODE_EXPECTS[mode]}"
            return message, f"only {tag[0]} '{tag[1]}' has '{key}'; switch to it, or remove '{key}'"
    own = sorted({alias for parent in parents for alias in _aliases(parent)})
    pool = own or sorted(_all_aliases())
    close = [c for c in difflib.get_close_matches(key, pool, n=2) if c != key]
    return f"unknown field '{key}'", f"did you mean '{close[0]}'?" if close else "remove it"


def _aliases(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The descriptor models an annotation can hold (through Optional, unions, lists)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def _child_models(model: type[BaseModel]) -> Iterator[tuple[str, list[type[BaseModel]]]]:
    for name, info in model.model_fields.items():
        children = _models_in(info.annotation)
        if children:
            yield info.alias or name, children


def _tag_of(model: type[BaseModel]) -> tuple[str, str] | None:
    """The (discriminator, value) of a union member: a field typed as a one-value Literal."""
    for key in _DISCRIMINATORS:
        info = model.model_fields.get(key)
        if info is None or typing.get_origin(info.annotation) is not typing.Literal:
            continue
        values = typing.get_args(info.annotation)
        if len(values) == 1:
            return key, str(values[0])
    return None


def _models_at(
    loc: tuple[int | str, ...],
) -> tuple[list[type[BaseModel]], list[type[BaseModel]]]:
    """The model(s) a pydantic location points into, and the other variants of its union."""
    current: list[type[BaseModel]] = [d.ConnectorDescriptor]
    variants: list[type[BaseModel]] = []
    for item in loc:
        if isinstance(item, int) or not current:
            continue
        if len(current) > 1:
            tagged = [m for m in current if (_tag_of(m) or ("", ""))[1] == item]
            if tagged:
                variants = [m for m in current if m not in tagged]
                current = tagged
                continue
        following: list[type[BaseModel]] = []
        for model in current:
            for name, info in model.model_fields.items():
                if item in (name, info.alias):
                    following += _models_in(info.annotation)
        current, variants = following, []
    return current, variants


# --------------------------------------------------------------------------- meaning

_REQUEST_VARIABLES = frozenset({"baseUrl", "checkpoint", "pageToken", "pageSize"})
_HEALTH_VARIABLES = frozenset({"baseUrl"})
_SIGNED_PAYLOAD_VARIABLES = frozenset({"body", "timestamp", "id", "url"})


@dataclass(frozen=True, slots=True)
class _Parts:
    """The parts of a descriptor that meaning checks read, each None when it did not parse.

    ``config_keys`` / ``credential_keys`` are None when they cannot be known
    (their list is not even a list), which silences the checks that need them
    rather than reporting every use as unknown.
    """

    config_fields: list[d.ConfigField] | None
    config_keys: frozenset[str] | None
    credential_keys: frozenset[str] | None
    auth: d.AuthDescriptor | None
    alternatives: tuple[tuple[str, d.AuthDescriptor], ...] = ()
    """``authAlternatives`` that parse, with their paths."""
    polling: tuple[tuple[str, d.PollingSpec], ...] = ()
    webhooks: tuple[tuple[str, d.WebhookSpec], ...] = ()
    has_webhook: bool = False
    field_mapping: d.FieldMappingDescriptor | None = None
    health_check: d.HealthCheckDescriptor | None = None
    response_errors: d.ResponseErrors | None = None
    unparsed: tuple[tuple[str, Any], ...] = ()
    """Raw parts that did not parse, with their paths: scanned for paths, regexes, templates."""
    asks_base_url: bool | None = None
    """Whether the setup form asks for ``baseUrl`` (declared, or implied by a request that
    uses it); None when parts did not parse, so it cannot be known."""

    @classmethod
    def of(cls, descriptor: d.ConnectorDescriptor) -> _Parts:
        ingestion = descriptor.ingestion
        polling: tuple[tuple[str, d.PollingSpec], ...] = ()
        webhooks: tuple[tuple[str, d.WebhookSpec], ...] = ()
        if isinstance(ingestion, d.PollingDescriptor):
            polling = (("ingestion", ingestion),)
        elif isinstance(ingestion, d.WebhookDescriptor):
            webhooks = (("ingestion", ingestion),)
        elif isinstance(ingestion, d.PollingAndWebhookDescriptor):
            polling = (("ingestion.polling", ingestion.polling),)
            webhooks = (("ingestion.webhook", ingestion.webhook),)
        return cls(
            config_fields=list(descriptor.config_fields),
            config_keys=frozenset(f.key for f in descriptor.config_fields),
            credential_keys=frozenset(f.key for f in descriptor.credential_fields()),
            auth=descriptor.auth,
            alternatives=tuple(
                (f"authAlternatives[{index}]", method)
                for index, method in enumerate(descriptor.auth_alternatives)
            ),
            polling=polling,
            webhooks=webhooks,
            has_webhook=descriptor.webhook is not None,
            field_mapping=descriptor.field_mapping,
            health_check=descriptor.health_check,
            response_errors=descriptor.response_errors,
            asks_base_url=any(f.key == "baseUrl" for f in descriptor.setup_config_fields()),
        )


_M = typing.TypeVar("_M", bound=BaseModel)
_AUTH: TypeAdapter[d.AuthDescriptor] = TypeAdapter(d.AuthDescriptor)
_CONFIG_FIELDS: TypeAdapter[list[d.ConfigField]] = TypeAdapter(list[d.ConfigField])
_INGESTION_MODELS: dict[str, type[BaseModel]] = {
    "polling": d.PollingDescriptor,
    "webhook": d.WebhookDescriptor,
}


def _parsed(model: type[_M], data: Any) -> _M | None:
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _raw_keys(items: Any) -> frozenset[str] | None:
    """The ``key`` of every field object in a raw list, or None when it is no list."""
    if not isinstance(items, list):
        return None
    return frozenset(
        item["key"]
        for item in items
        if isinstance(item, Mapping) and isinstance(item.get("key"), str)
    )


def _salvage(data: Any) -> _Parts:
    """The parts of a descriptor that parse on their own, and the raw rest."""
    if not isinstance(data, Mapping):
        return _Parts(config_fields=None, config_keys=None, credential_keys=None, auth=None)
    unparsed: list[tuple[str, Any]] = []

    config_fields: list[d.ConfigField] | None
    try:
        config_fields = _CONFIG_FIELDS.validate_python(data.get("configFields", []))
    except ValidationError:
        config_fields = None
    config_keys = _raw_keys(data.get("configFields", []))

    raw_auth = data.get("auth")
    auth: d.AuthDescriptor | None
    try:
        auth = _AUTH.validate_python(raw_auth)
    except ValidationError:
        auth = None
    if auth is not None:
        credential_keys: frozenset[str] | None = frozenset(f.key for f in _credential_fields(auth))
    elif isinstance(raw_auth, Mapping) and raw_auth.get("method") == "none":
        credential_keys = frozenset()
    else:
        config = raw_auth.get("config") if isinstance(raw_auth, Mapping) else None
        credential_keys = _raw_keys(
            config.get("credentialFields") if isinstance(config, Mapping) else None
        )

    alternatives: list[tuple[str, d.AuthDescriptor]] = []
    raw_alternatives = data.get("authAlternatives", [])
    for index, raw_method in enumerate(
        raw_alternatives if isinstance(raw_alternatives, list) else []
    ):
        where = f"authAlternatives[{index}]"
        try:
            method = _AUTH.validate_python(raw_method)
        except ValidationError:
            unparsed.append((where, raw_method))
            continue
        alternatives.append((where, method))
        if credential_keys is not None:
            credential_keys |= {f.key for f in _credential_fields(method)}

    polling: list[tuple[str, d.PollingSpec]] = []
    webhooks: list[tuple[str, d.WebhookSpec]] = []
    raw_ingestion = data.get("ingestion")
    mode = raw_ingestion.get("mode") if isinstance(raw_ingestion, Mapping) else None
    if isinstance(raw_ingestion, Mapping) and mode == "polling_and_webhook":
        blocks: list[tuple[str, type[BaseModel], Any]] = [
            ("ingestion.polling", d.PollingSpec, raw_ingestion.get("polling")),
            ("ingestion.webhook", d.WebhookSpec, raw_ingestion.get("webhook")),
        ]
        stray = {k: v for k, v in raw_ingestion.items() if k not in ("mode", "polling", "webhook")}
        if stray:
            unparsed.append(("ingestion", stray))
    elif isinstance(raw_ingestion, Mapping) and isinstance(mode, str) and mode in _INGESTION_MODELS:
        blocks = [("ingestion", _INGESTION_MODELS[mode], raw_ingestion)]
    else:
        blocks = []
        if raw_ingestion is not None:
            unparsed.append(("ingestion", raw_ingestion))
    for where, model, raw in blocks:
        spec = _parsed(model, raw)
        if isinstance(spec, d.PollingSpec):
            polling.append((where, spec))
        elif isinstance(spec, d.WebhookSpec):
            webhooks.append((where, spec))
        elif raw is not None:
            unparsed.append((where, raw))

    def part(key: str, model: type[_M]) -> _M | None:
        raw = data.get(key)
        parsed = None if raw is None else _parsed(model, raw)
        if raw is not None and parsed is None:
            unparsed.append((key, raw))
        return parsed

    return _Parts(
        config_fields=config_fields,
        config_keys=config_keys,
        credential_keys=credential_keys,
        auth=auth,
        alternatives=tuple(alternatives),
        polling=tuple(polling),
        webhooks=tuple(webhooks),
        has_webhook=mode in ("webhook", "polling_and_webhook"),
        field_mapping=part("fieldMapping", d.FieldMappingDescriptor),
        health_check=part("healthCheck", d.HealthCheckDescriptor),
        response_errors=part("responseErrors", d.ResponseErrors),
        unparsed=tuple(unparsed),
    )


_PATH_KEYS = frozenset(
    {
        "itemsPath", "idPath", "timestampPath", "participantsPath", "tagsPath",
        "relatedItemsPath", "versionPath", "eventTypePath", "actionPath", "deliveryIdPath",
        "nextPath", "totalPath", "hasMorePath", "baseUrlPath", "tokenPath", "cursorPath",
        "bodyPath", "whenPath", "respondPath", "codePath", "wherePath",
    }
)  # fmt: skip
_CONDITION_KEYS = ("when", "operator", "value", "valuePath")


class _Checker:
    """Collects problems while walking the parts of one descriptor."""

    def __init__(self, parts: _Parts) -> None:
        self.parts = parts
        self.problems: list[Problem] = []
        self.config_keys = parts.config_keys
        self.credential_keys = parts.credential_keys

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
                if self.config_keys is None or key in self.config_keys or key == "baseUrl":
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

    def credential(
        self,
        where: str,
        key: str | None,
        *,
        keys: frozenset[str] | None = None,
        fields_at: str = "auth.config",
    ) -> None:
        """``key`` names a credential field (of ``keys``: one auth method's, at ``fields_at``;
        default: any method's)."""
        known_keys = keys if keys is not None else self.credential_keys
        if key is not None and known_keys is not None and key not in known_keys:
            known = ", ".join(sorted(known_keys)) or "none"
            self.add(
                where,
                f"no credential field '{key}' (known: {known})",
                f"add {{'key': '{key}', ...}} to {fields_at}.credentialFields",
            )

    # -- parts

    def run(self) -> list[Problem]:
        parts = self.parts
        self.fields()
        if parts.auth is not None:
            self.auth(parts.auth)
        self.alternatives()
        for where, polling in parts.polling:
            self.polling(where, polling)
        for where, webhook in parts.webhooks:
            self.webhook(where, webhook)
        if parts.field_mapping is not None:
            self.mapping("fieldMapping", parts.field_mapping, webhook=parts.has_webhook)
        if parts.health_check is not None:
            self.health_check(parts.health_check)
        if parts.response_errors is not None:
            self.path("responseErrors.codePath", parts.response_errors.code_path)
        for where, raw in parts.unparsed:
            self.raw(where, raw)
        return self.problems

    def raw(self, where: str, node: Any) -> None:
        """Checks that need no model, on a part that did not parse: paths, regexes, templates."""
        if isinstance(node, list):
            for index, item in enumerate(node):
                self.raw(f"{where}[{index}]", item)
            return
        if not isinstance(node, Mapping):
            return
        handled: set[str] = set()
        if isinstance(node.get("when"), str) and isinstance(node.get("operator"), str):
            condition = _parsed(d.Condition, {k: node[k] for k in _CONDITION_KEYS if k in node})
            if condition is not None:
                self.condition(where, condition)
                handled = {"when", "valuePath"}
        for key, value in node.items():
            at = f"{where}.{key}" if where else str(key)
            if key in handled:
                continue
            if key in _PATH_KEYS and isinstance(value, str):
                self.path(at, value)
            elif key == "rawFields" and isinstance(value, list):
                for index, raw_field in enumerate(value):
                    if isinstance(raw_field, str):
                        self.path(f"{at}[{index}]", raw_field)
            elif key == "summaryTemplate" and isinstance(value, str):
                self.item_template(at, value)
            elif key == "endpoint" and isinstance(value, str):
                allowed = _HEALTH_VARIABLES if where == "healthCheck" else _REQUEST_VARIABLES
                self.template(at, value, allowed)
            else:
                self.raw(at, value)

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
        config_fields = self.parts.config_fields or []
        auth = self.parts.auth
        methods = [("auth", auth)] if auth is not None else []
        for label, keys in (
            ("configFields", [f.key for f in config_fields]),
            *(
                (f"{where}.config.credentialFields", [f.key for f in _credential_fields(method)])
                for where, method in [*methods, *self.parts.alternatives]
            ),
        ):
            for index, key in enumerate(keys):
                if keys.index(key) != index:
                    self.add(f"{label}[{index}].key", f"duplicate key '{key}'")
        for index, field in enumerate(config_fields):
            if field.type == "select" and not field.options:
                self.add(f"configFields[{index}].options", "a select field needs options")

    def alternatives(self) -> None:
        """Each alternative checked like ``auth``; no two methods alike, since an instance
        names the one it uses by its method."""
        seen = {self.parts.auth.method} if self.parts.auth is not None else set()
        for where, method in self.parts.alternatives:
            if isinstance(method, d.NoAuth | d.WebhookSecretAuth):
                self.add(
                    f"{where}.method",
                    f"'{method.method}' is no way to sign in to the API",
                    "an alternative is one of oauth2, api_key, pat or basic",
                )
                continue
            if method.method in seen:
                self.add(
                    f"{where}.method",
                    f"a second '{method.method}' method: an instance could not say which it uses",
                    "merge them, or drop one",
                )
            seen.add(method.method)
            self.auth(method, base=f"{where}.config")

    def header_text(self, where: str, text: str) -> None:
        """A header value, or the text of a template of one (its placeholders are ASCII):
        httpx sends header values as ASCII, and refused anything else at every request."""
        if not (text.isascii() and text.isprintable()):
            self.add(
                where,
                "a header value must be printable ASCII (no accented letter, line break, "
                "tab or invisible character)",
            )

    def literal_repeat(self, where: str, pattern: str) -> None:
        """``{,n}``: Python's ``re`` reads it as 0 to n repetitions, RE2 as the literal
        text "{,n}", so a pattern tried in Python never matched here, and said nothing."""
        found = _LITERAL_REPEAT.search(pattern)
        if found is not None:
            n = found.group(1)
            self.add(
                where,
                f"RE2 reads '{{,{n}}}' as the text \"{{,{n}}}\", not as up to {n} repetitions",
                f"write '{{0,{n}}}' (or '\\{{,{n}}}' for the text)",
            )

    def header_name(self, where: str, name: str) -> None:
        """A header's name is an HTTP token (RFC 9110 §5.1): an empty one, or one with a
        space, passed validation and then failed every request as "connection failed
        (LocalProtocolError)", retried first as if the network were at fault."""
        if not _HEADER_NAME.fullmatch(name):
            self.add(
                where,
                f"{name!r} is not a header name",
                "letters, digits and !#$%&'*+-.^_`|~ only, no space, e.g. 'X-Api-Key'",
            )

    def oauth_url(self, where: str, source: str) -> None:
        """An OAuth URL: an http(s) URL, or a template of one whose variables are settings
        (``{{config.authUrl}}``, or ``{{signInUrl}}`` for the setting of that name). Left
        unchecked, an empty one validated and the consent or token request went nowhere
        ("scheme '' is not http(s)"), and an unknown setting rendered empty."""
        try:
            template = compile_template(source)
        except TemplateSyntaxError as error:
            self.add(where, f"template does not parse: {error}")
            return
        if not template.variables and not _is_http_url(source):
            self.add(where, f"{source!r} is not an http(s) URL", "e.g. 'https://example.com/token'")
        for name in sorted(template.variables):
            key = name.removeprefix("config.")
            if key == "baseUrl" and self.parts.asks_base_url is False:
                # Implied only by a request that uses it: with none, the setup form never
                # asks for it, an instance cannot be given it, and the URL rendered
                # without its site ("/oauth/token").
                self.add(
                    where,
                    f"template uses '{{{{{name}}}}}' but no request uses baseUrl, so the "
                    "setup form never asks for it",
                    "add {'key': 'baseUrl', 'type': 'url', ...} to configFields",
                )
            elif self.config_keys is not None and key not in self.config_keys | {"baseUrl"}:
                self.add(
                    where,
                    f"template uses '{{{{{name}}}}}' but there is no config field '{key}'",
                    f"add {{'key': '{key}', ...}} to configFields",
                )

    def placement(self, where: str, delivery: str, name: str) -> None:
        """Where a credential goes: a header's name, or a query parameter's (not empty)."""
        if delivery == "header":
            self.header_name(where, name)
        elif delivery == "query" and not name:
            self.add(where, "the query parameter needs a name", "e.g. 'api_key'")

    def auth(self, auth: d.AuthDescriptor, *, base: str = "auth.config") -> None:
        own = frozenset(f.key for f in _credential_fields(auth))
        if not isinstance(auth, d.NoAuth):
            for name, value in auth.config.extra_headers.items():
                self.header_name(f"{base}.extraHeaders", name)
                self.header_text(f"{base}.extraHeaders.{name}", value)
        if isinstance(auth, d.ApiKeyAuth | d.PatAuth):
            config = auth.config
            self.placement(f"{base}.paramName", config.delivery, config.param_name)
            if config.delivery == "header":
                self.header_text(f"{base}.valuePrefix", config.value_prefix)
            for index, placed in enumerate(config.additional_credentials):
                at = f"{base}.additionalCredentials[{index}]"
                self.placement(f"{at}.paramName", placed.delivery, placed.param_name)
                if placed.delivery == "header":
                    self.header_text(f"{at}.valuePrefix", placed.value_prefix)
            if not config.credential_fields:
                self.add(f"{base}.credentialFields", "at least one credential field is needed")
            self.credential(
                f"{base}.credentialKey", config.credential_key, keys=own, fields_at=base
            )
            for index, extra in enumerate(config.additional_credentials):
                self.credential(
                    f"{base}.additionalCredentials[{index}].credential",
                    extra.credential,
                    keys=own,
                    fields_at=base,
                )
        elif isinstance(auth, d.BasicAuth):
            config_b = auth.config
            self.credential(f"{base}.usernameKey", config_b.username_key, keys=own, fields_at=base)
            self.credential(f"{base}.passwordKey", config_b.password_key, keys=own, fields_at=base)
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
                self.credential(f"{base}.credentialFields", key, keys=own, fields_at=base)
            if config_o.grant == "refresh_token" or config_o.authorise_url:
                self.oauth_url(f"{base}.authoriseUrl", config_o.authorise_url)
            self.oauth_url(f"{base}.tokenUrl", config_o.token_url)
            for index, lookup in enumerate(config_o.after_consent):
                self.consent_lookup(f"{base}.afterConsent[{index}]", lookup)

    def consent_lookup(self, where: str, lookup: d.ConsentLookup) -> None:
        self.path(f"{where}.path", lookup.path)
        self.path(f"{where}.wherePath", lookup.where_path)
        self.template(f"{where}.endpoint", lookup.endpoint, _HEALTH_VARIABLES)
        if (lookup.where_path is None) != (lookup.equals_config is None):
            self.add(where, "wherePath and equalsConfig go together", "give both, or neither")
        for key, name in (
            (lookup.config_field, "configField"),
            (lookup.equals_config, "equalsConfig"),
        ):
            if key is not None and self.config_keys is not None and key not in self.config_keys:
                self.add(
                    f"{where}.{name}",
                    f"no config field '{key}'",
                    f"add {{'key': '{key}', ...}} to configFields",
                )

    def polling(self, where: str, spec: d.PollingSpec) -> None:
        used: set[str] = set()
        used |= self.template(f"{where}.endpoint", spec.endpoint, _REQUEST_VARIABLES)
        for name, value in (spec.headers or {}).items():
            used |= self.template(f"{where}.headers.{name}", value, _REQUEST_VARIABLES)
            self.header_name(f"{where}.headers", name)
            self.header_text(f"{where}.headers.{name}", value)
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
        missing_next = pagination.next_path is None and pagination.next_header is None
        if kind in ("cursor", "next_url") and missing_next:
            self.add(
                f"{base}.nextPath",
                f"{kind} pagination needs nextPath",
                "or nextHeader when the API sends it in a response header",
            )
        if pagination.next_path is not None and pagination.next_header is not None:
            self.add(f"{base}.nextHeader", "give nextPath or nextHeader, not both")
        if pagination.next_header is not None and kind in ("offset", "link_header"):
            self.add(
                f"{base}.nextHeader",
                f"{kind} pagination does not read nextHeader",
                "use type 'cursor', 'next_url' or 'page_number'",
            )
        if pagination.total_path is not None and pagination.total_header is not None:
            self.add(f"{base}.totalHeader", "give totalPath or totalHeader, not both")
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
            signature = d.signature_scheme(spec, self.parts.auth)
            if signature is None and self.parts.auth is not None:
                self.add(
                    f"{where}.verification",
                    "verification is 'signature' but no signature scheme is configured",
                    "add a 'signature' object, or use auth.method 'webhook_secret'",
                )
            elif signature is not None:
                self.signature(f"{where}.signature", signature, explicit=spec.signature is not None)
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

    def signature(self, where: str, signature: d.SignatureVerification, *, explicit: bool) -> None:
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
        if explicit:
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
            self.signal_type(f"{rule_where}.then", rule.then)
        self.signal_type(f"{where}.defaultType", mapping.default_type)
        for index, priority_rule in enumerate(mapping.priority_mapping or []):
            rule_where = f"{where}.priorityMapping[{index}]"
            self.condition(rule_where, priority_rule)
            for sub_index, condition in enumerate(priority_rule.all):
                self.condition(f"{rule_where}.all[{sub_index}]", condition)
        for index, skip in enumerate(mapping.skip):
            self.condition(f"{where}.skip[{index}]", skip)

    def signal_type(self, where: str, signal_type: str) -> None:
        """Every signal carries its type whole, and a store keeps a signal only so large.

        Checked here, on a descriptor being registered or replaced, not by the model:
        a descriptor stored before the bound existed is read with the models again
        (the catalogue, an instance's page, its polls) and must still load.
        """
        if len(signal_type) > SIGNAL_TYPE_MAX_CHARS:
            self.add(
                where,
                f"signal type is {len(signal_type)} characters; at most "
                f"{SIGNAL_TYPE_MAX_CHARS} are allowed",
                "a signal type is a short name, such as 'bug' or 'incident'",
            )

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
            else:
                self.literal_repeat(f"{where}.value", condition.value)


def _is_http_url(text: str) -> bool:
    """An absolute http(s) URL with a host; the scheme in any case, as RFC 3986 has it."""
    parts = urlsplit(text)
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def check_descriptor(descriptor: d.ConnectorDescriptor) -> list[Problem]:
    """Meaning checks on a descriptor whose shape is already valid."""
    return _Checker(_Parts.of(descriptor)).run()


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
