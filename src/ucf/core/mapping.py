"""The Field Mapper: raw API items to ``NormalisedSignal`` (SPEC §6.3).

A ``FieldMappingDescriptor`` compiles once into a :class:`CompiledMapping`;
every path, rule, regex and template is planned at compile time so mapping one
item is a handful of direct lookups (see ``bench/mapping.py``). Mapping never
raises on arbitrary JSON: an item that cannot become a signal (no id, a bad
timestamp) yields an :class:`ItemError` with the reason and the batch goes on.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ucf.core.descriptor_view import (
    ConditionView,
    FieldMappingView,
    PriorityRuleView,
    SignalTypeRuleView,
    mapping_view,
)
from ucf.core.jsonpath import MISSING, CompiledPath, compile_path
from ucf.core.records import datarecord
from ucf.core.regex import compile_regex
from ucf.core.signal_identity import SUMMARY_MAX_CHARS, Priority, dedup_key, iso_utc, signal_id
from ucf.core.template import Template, compile_template, plain
from ucf.core.timestamps import parse_timestamp, to_epoch_ms

if TYPE_CHECKING:
    from ucf.core.descriptor import FieldMappingDescriptor
    from ucf.core.signal import NormalisedSignal

FallbackVersion = str | Callable[[], str]
"""The version of an item that carries none of its own (a webhook's signed delivery id
or body hash), or a function that makes it, called only when an item needs it."""

#: Keys tried, in order, to name a participant/tag given as an object.
NAME_KEYS = ("login", "name", "displayName", "display_name", "summary", "email", "username", "id")


@datarecord(frozen=False)
class MappedSignal:
    """A signal, as its camelCase wire object, with the identity the stores deduplicate on.

    The mapper emits the wire object directly, not a model: it is what the
    sanitiser reads and the store writes, and building pydantic objects for
    every polled item cost more than the mapping itself (``bench/poll.py``).
    :attr:`signal` gives the model view for code that wants attributes.
    Read-only by convention, not ``frozen`` (its ``wire`` is a dict anyway): a
    frozen dataclass sets each field through ``object.__setattr__``, 0.52 → 0.16 µs
    a construction, one per mapped item.
    """

    wire: dict[str, Any]
    dedup_key: str
    item_id: str
    version: str

    @property
    def signal(self) -> NormalisedSignal:
        from ucf.core.signal import NormalisedSignal  # the model on demand: see the docstring

        return NormalisedSignal.from_wire(self.wire)

    @classmethod
    def of(
        cls, signal: NormalisedSignal, *, dedup_key: str, item_id: str, version: str
    ) -> MappedSignal:
        return cls(wire=signal.to_wire(), dedup_key=dedup_key, item_id=item_id, version=version)


def build_signal(
    *,
    source: str,
    project_id: str,
    item_id: str,
    version: str,
    timestamp: datetime,
    signal_type: str,
    summary: str,
    raw: dict[str, Any],
    priority: Priority | None = None,
    participants: Sequence[str] = (),
    related_tickets: Sequence[str] = (),
    tags: Sequence[str] = (),
) -> MappedSignal:
    """A signal written by code instead of a ``fieldMapping`` (native connectors).

    The identity rules are the mapper's, so a native source and a descriptor
    agree on what "the same signal" is: the dedup key is (source, project,
    item id, version), the id a ULID of the event time and that key, the
    summary cut to the contract's length. Lists are de-duplicated, order kept.
    """
    key = dedup_key(source, project_id, item_id, version)
    text = summary if len(summary) <= SUMMARY_MAX_CHARS else summary[: SUMMARY_MAX_CHARS - 1] + "…"
    wire: dict[str, Any] = {
        "id": signal_id(key, to_epoch_ms(timestamp)),
        "source": source,
        "timestamp": iso_utc(timestamp),
        "type": signal_type,
        "summary": text,
        "raw": raw,
        "projectId": project_id,
    }
    people, related, labels = (
        names(list(participants)),
        names(list(related_tickets)),
        names(list(tags)),
    )
    if priority is not None or people or related or labels:
        metadata = wire["metadata"] = {} if priority is None else {"priority": priority}
        metadata["participants"] = people
        metadata["relatedTickets"] = related
        metadata["tags"] = labels
    return MappedSignal(wire=wire, dedup_key=key, item_id=item_id, version=version)


@datarecord
class ItemError:
    """Why one item did not become a signal."""

    index: int
    reason: str
    item_id: str | None = None


@datarecord(frozen=False)
class MappingResult:
    signals: list[MappedSignal] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    skipped: int = 0
    """Items the mapping's ``skip`` conditions left out (not signals, not errors)."""


@datarecord
class TypeReason:
    """Why an item got its signal type: the rule that chose it, or none (the default).

    For authors (the dashboard's preview, ``ucf map``), never on the hot path:
    :meth:`CompiledMapping.explain_type` evaluates the rules one by one, which
    the planned lookup of :meth:`CompiledMapping.signal_type` does not.
    """

    type: str
    rule: int | None
    """Index in ``signalTypeRules``; None when no rule held and ``defaultType`` applied."""
    because: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "rule": self.rule, "because": self.because}


def describe_condition(condition: ConditionView) -> str:
    """``$.state equals 'closed'``: a condition as an author reads it."""
    if condition.operator in ("exists", "not_exists"):
        return f"{condition.when} {condition.operator.replace('_', ' ')}"
    operand = (
        f"the value at {condition.value_path}"
        if condition.value_path is not None
        else json.dumps(condition.value, ensure_ascii=False)
    )
    return f"{condition.when} {condition.operator.replace('_', ' ')} {operand}"


def _describe_rule(rule: SignalTypeRuleView) -> str:
    parts = [describe_condition(rule), *(describe_condition(c) for c in rule.all)]
    if rule.event_types is not None:
        parts.insert(0, "event type in " + ", ".join(rule.event_types))
    return " and ".join(parts)


class ItemMappingError(ValueError):
    """Raised by :meth:`CompiledMapping.map` for one unmappable item."""

    def __init__(self, reason: str, item_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.item_id = item_id


# --------------------------------------------------------------------------- values


def not_an_object(item: Any) -> str:
    """Why ``item`` cannot be mapped, in JSON's words: the author reads a response, not
    Python (this said "item is a NoneType" for ``null`` and "a int" for ``1``)."""
    if item is None:
        kind = "null"
    elif isinstance(item, bool):
        kind = "a boolean"
    elif isinstance(item, int | float):
        kind = "a number"
    elif isinstance(item, str):
        kind = "a string"
    elif isinstance(item, list):
        kind = "an array"
    else:
        kind = f"a {type(item).__name__}"
    return f"item is {kind}, not an object"


def as_text(value: Any) -> str:
    """How a JSON value reads when compared or rendered: strings as-is, others as JSON."""
    if isinstance(value, str):
        return value
    if value is None or value is MISSING:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)  # what json.dumps writes for an int, without its machinery
    if isinstance(value, float):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _name_of(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return as_text(value)
    if isinstance(value, dict):
        for key in NAME_KEYS:
            found = value.get(key)
            if isinstance(found, str | int) and not isinstance(found, bool) and found != "":
                return str(found)
    return None


def names(value: Any) -> list[str]:
    """Participants, tags or related items as de-duplicated strings, order kept."""
    if value is MISSING or value is None:
        return []
    candidates = value if isinstance(value, list) else [value]
    seen: dict[str, None] = {}
    for candidate in candidates:
        if candidate.__class__ is str:  # logins and label names: no call for them
            if candidate:
                seen.setdefault(candidate, None)
            continue
        if isinstance(candidate, list):
            for inner in candidate:
                name = _name_of(inner)
                if name is not None:
                    seen.setdefault(name, None)
            continue
        name = _name_of(candidate)
        if name is not None:
            seen.setdefault(name, None)
    return list(seen)


class _Getter:
    """A compiled path read as one value: the first match, or the list for multi-node paths."""

    __slots__ = ("_path", "get")

    def __init__(self, expression: str) -> None:
        self._path: CompiledPath = compile_path(expression)
        self.get: Callable[[Any], Any] = (
            self._path.first if self._path.is_singular else self._path.values
        )


# --------------------------------------------------------------------------- conditions

Test = Callable[[Any, str | None], bool]


def _any_text(value: Any, predicate: Callable[[str], bool]) -> bool:
    if isinstance(value, list):
        return any(predicate(as_text(v)) for v in value if v is not None)
    if value is MISSING or value is None:
        return False
    return predicate(as_text(value))


def _present(value: Any) -> bool:
    if value is MISSING or value is None:
        return False
    return not (isinstance(value, list | dict | str) and len(value) == 0)


def compile_condition(condition: ConditionView) -> Test:
    """One small closure per condition; the operator is resolved here, not per item."""
    getter = _Getter(condition.when).get
    operator = condition.operator
    if operator == "exists":
        return lambda item, _event: _present(getter(item))
    if operator == "not_exists":
        return lambda item, _event: not _present(getter(item))

    if condition.value_path is not None:
        other = _Getter(condition.value_path).get

        def target_of(item: Any) -> str:
            return as_text(other(item))
    else:
        constant = condition.value if isinstance(condition.value, str) else ""

        def target_of(item: Any) -> str:
            return constant

    if operator == "in":
        allowed = frozenset(condition.value if isinstance(condition.value, list) else [])
        return lambda item, _event: _any_text(getter(item), allowed.__contains__)
    if operator == "matches":
        pattern = compile_regex(condition.value if isinstance(condition.value, str) else "")
        return lambda item, _event: _any_text(getter(item), lambda s: pattern.search(s) is not None)
    if operator == "contains":

        def contains(item: Any, _event: str | None) -> bool:
            value = getter(item)
            target = target_of(item)
            if isinstance(value, str):
                return target in value
            if isinstance(value, dict):
                return target in value
            return _any_text(value, target.__eq__)

        return contains
    equals: Test = lambda item, _event: _any_text(getter(item), target_of(item).__eq__)  # noqa: E731
    if operator == "not_equals":
        return lambda item, event: not equals(item, event)
    return equals


def _compile_rule(rule: SignalTypeRuleView | PriorityRuleView) -> Test:
    tests = [compile_condition(rule), *(compile_condition(c) for c in rule.all)]
    event_types = frozenset(rule.event_types) if rule.event_types is not None else None
    if event_types is None and len(tests) == 1:
        return tests[0]

    def test(item: Any, event_type: str | None) -> bool:
        if event_types is not None and (
            event_type is None or not _event_matches(event_type, event_types)
        ):
            return False
        return all(t(item, event_type) for t in tests)

    return test


Then = TypeVar("Then")


def _table_key(rule: SignalTypeRuleView | PriorityRuleView) -> str | None:
    """The shared path of a rule that is a plain constant lookup, else None."""
    if rule.all or rule.event_types is not None:
        return None
    if rule.value_path is not None:
        return None
    if rule.operator == "in" and isinstance(rule.value, list):
        return rule.when
    if rule.operator == "equals" and isinstance(rule.value, str):
        return rule.when
    return None


def rule_runs(rules: Sequence[SignalTypeRuleView | PriorityRuleView]) -> list[tuple[int, int]]:
    """``rules`` cut into runs ``[start, end)``: a run longer than one is a lookup table."""
    runs: list[tuple[int, int]] = []
    index = 0
    while index < len(rules):
        key = _table_key(rules[index])
        end = index + 1
        if key is not None:
            while end < len(rules) and _table_key(rules[end]) == key:
                end += 1
        runs.append((index, end))
        index = end
    return runs


def compile_first_match(
    rules: Sequence[tuple[SignalTypeRuleView | PriorityRuleView, Then]],
) -> Callable[[Any, str | None], Then | None]:
    """Plan an ordered rule list once: the first rule that holds gives the result.

    A run of consecutive rules that only compare one path with constants (the
    usual label → priority table) becomes one dictionary lookup per value found,
    instead of one path evaluation per rule.
    """
    steps: list[Callable[[Any, str | None], tuple[int, Then] | None]] = [
        _table_step(rules[start:end], start)
        if end - start > 1
        else _single_step(rules[start], start)
        for start, end in rule_runs([rule for rule, _ in rules])
    ]

    def first_match(item: Any, event_type: str | None) -> Then | None:
        for step in steps:
            found = step(item, event_type)
            if found is not None:
                return found[1]
        return None

    return first_match


def _single_step(
    entry: tuple[SignalTypeRuleView | PriorityRuleView, Then], position: int
) -> Callable[[Any, str | None], tuple[int, Then] | None]:
    test = _compile_rule(entry[0])
    hit = (position, entry[1])
    return lambda item, event_type: hit if test(item, event_type) else None


def _table_step(
    entries: Sequence[tuple[SignalTypeRuleView | PriorityRuleView, Then]], offset: int
) -> Callable[[Any, str | None], tuple[int, Then] | None]:
    table = rule_table(entries, offset)
    getter = _Getter(entries[0][0].when).get
    return lambda item, _event_type: table_lookup(table, getter(item))


def rule_table(
    entries: Sequence[tuple[SignalTypeRuleView | PriorityRuleView, Then]], offset: int
) -> dict[str, tuple[int, Then]]:
    """Constant-comparison rules on one path as value text → (rule position, result)."""
    table: dict[str, tuple[int, Then]] = {}
    for position, (rule, then) in enumerate(entries, start=offset):
        values = rule.value if isinstance(rule.value, list) else [rule.value or ""]
        for value in values:
            table.setdefault(value, (position, then))
    return table


def _position(hit: tuple[int, Then]) -> int:
    return hit[0]


def table_lookup(table: dict[str, tuple[int, Then]], value: Any) -> tuple[int, Then] | None:
    """The earliest rule of ``table`` that ``value`` (one value or a list) satisfies."""
    if isinstance(value, list):
        # Labels are strings nearly always: no as_text call for them, no min() for one hit.
        hits = [
            hit
            for v in value
            if (hit := table.get(v if v.__class__ is str else as_text(v))) is not None
        ]
        if len(hits) < 2:
            return hits[0] if hits else None
        return min(hits, key=_position)
    if value is MISSING or value is None:
        return None
    return table.get(as_text(value))


def _event_matches(event_type: str, allowed: frozenset[str]) -> bool:
    """'issues.opened' matches a rule naming 'issues.opened' or just 'issues'."""
    return event_type in allowed or event_type.split(".", 1)[0] in allowed


# --------------------------------------------------------------------------- raw fields


def _compile_raw(fields: Sequence[str] | None) -> Callable[[Any], dict[str, Any]]:
    if fields is None:
        return lambda item: item if isinstance(item, dict) else {"value": item}
    plans: list[tuple[tuple[str, ...] | None, str, CompiledPath]] = []
    for expression in fields:
        path = compile_path(expression)
        plans.append((_plain_keys(expression), expression, path))

    def pick(item: Any) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        for keys, expression, path in plans:
            value = path.first(item) if path.is_singular else path.values(item)
            if value is MISSING or (isinstance(value, list) and not path.is_singular and not value):
                continue
            if keys is None:
                raw[expression] = value
                continue
            node = raw
            for key in keys[:-1]:
                child = node.get(key)
                if not isinstance(child, dict):
                    child = node[key] = {}
                node = child
            node[keys[-1]] = value
        return raw

    return pick


def _plain_keys(expression: str) -> tuple[str, ...] | None:
    """'user.login' → ('user', 'login'); None when the path is not a chain of plain names."""
    text = expression.removeprefix("$").removeprefix(".")
    parts = tuple(text.split("."))
    if all(part.isidentifier() for part in parts):
        return parts
    return None


def _summary_text(name: str, value: Any) -> str:
    """A placeholder in a summary: a multi-valued path reads as its values joined by ', '.

    People read summaries: ``{{labels[*].name}}`` says ``bug, P1``, not ``["bug","P1"]``,
    and a wildcard that matches nothing says nothing (Notion's title property has a
    user-chosen name, so its summary reads ``properties.*.title[*].plain_text``).
    """
    if isinstance(value, list):
        return ", ".join(text for text in (plain(name, v) for v in value) if text)
    return plain(name, value)


def _compile_summary(template: Template) -> Callable[[Any], str]:
    """The summary template as one closure: literals and path reads, planned once."""
    head = template.literals[0]
    parts = [
        (placeholder.name, _Getter(placeholder.name).get, after)
        for placeholder, after in zip(template.placeholders, template.literals[1:], strict=True)
    ]

    def render(item: Any) -> str:
        out = [head]
        for name, get, after in parts:
            out.append(_summary_text(name, get(item)))
            out.append(after)
        return "".join(out)

    return render


# --------------------------------------------------------------------------- versions


def _to_second(moment: datetime) -> str:
    return iso_utc(moment.replace(microsecond=0))


def _to_minute(moment: datetime) -> str:
    return iso_utc(moment.replace(second=0, microsecond=0))


#: ``versionPrecision`` → how a timestamp version is written (None: the signal's own
#: millisecond timestamp text, already at hand: the poll hot path does no extra work).
_VERSION_TIME: dict[str, Callable[[datetime], str] | None] = {
    "millisecond": None,
    "second": _to_second,
    "minute": _to_minute,
}

#: An ISO 8601 date-time at the start of a string: compared as an instant in a version.
_ISO_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


class _VersionReader:
    """A ``versionPath`` read as dedup-key text, the same whichever channel wrote the item.

    Providers write one instant differently in their API and their webhooks
    (Sentry lists ``lastSeen`` as ``…37.391Z`` and pushes ``…37.391000Z``), so
    an ISO date-time among the values is written as UTC at ``versionPrecision``;
    every other value is its JSON text.
    """

    __slots__ = ("_get", "_time")

    def __init__(self, expression: str, time: Callable[[datetime], str] | None) -> None:
        self._get = _Getter(expression).get
        self._time = time or iso_utc

    def __call__(self, item: Any) -> str | None:
        """The version, or None when the item has none at the path."""
        value = self._get(item)
        if value is MISSING or value is None or value == "" or value == []:
            return None
        if isinstance(value, list):
            return as_text([self._part(part) for part in value])
        return self._part(value) if isinstance(value, str) else as_text(value)

    def _part(self, value: Any) -> Any:
        if isinstance(value, str) and _ISO_INSTANT.match(value):
            moment = parse_timestamp(value, "iso8601")
            if moment is not None:
                return self._time(moment)
        return value


def not_a_date_reason(path: str) -> Callable[[str], str]:
    """The error for an item whose timestamp (as text) does not parse."""
    return lambda text: f"timestamp {text[:40]!r} at {path} is not a date"


# --------------------------------------------------------------------------- the engine


class CompiledMapping:
    """A field mapping planned once and run on many items."""

    def __init__(self, mapping: FieldMappingDescriptor | FieldMappingView) -> None:
        mapping = mapping_view(mapping)  # a model's (previews, tests) read as the stored one's
        self.descriptor = mapping
        self._items = compile_path(mapping.items_path)
        self._id = _Getter(mapping.id_path).get
        self._timestamp = _Getter(mapping.timestamp_path).get
        self._timestamp_format = mapping.timestamp_format
        self._version_time = _VERSION_TIME[mapping.version_precision]
        self._version = (
            _VersionReader(mapping.version_path, self._version_time)
            if mapping.version_path
            else None
        )
        self._summary = _compile_summary(compile_template(mapping.summary_template))
        self._type_of = compile_first_match([(r, r.then) for r in mapping.signal_type_rules])
        self._priority_of = compile_first_match(
            [(r, r.then) for r in mapping.priority_mapping or []]
        )
        self._has_priority = bool(mapping.priority_mapping)
        self._participants = (
            _Getter(mapping.participants_path).get if mapping.participants_path else None
        )
        self._tags = _Getter(mapping.tags_path).get if mapping.tags_path else None
        self._related = (
            _Getter(mapping.related_items_path).get if mapping.related_items_path else None
        )
        self._raw = _compile_raw(mapping.raw_fields)
        self._default_type = mapping.default_type
        self._skip = [compile_condition(condition) for condition in mapping.skip]
        from ucf.core.mapping_codegen import generate  # it builds on this module

        self.generated = generate(self)
        """The same mapping as one compiled function: what :meth:`map` runs."""

    # -- items

    def extract_items(self, response: Any) -> list[Any]:
        """The items of one API response (or webhook payload), per ``itemsPath``.

        A path that lands on an array yields its elements; on an object, that one
        object (a webhook payload is usually one item); nothing, no items.
        """
        if self._items.is_singular:
            found = self._items.first(response)
            if found is MISSING or found is None:
                return []
            return list(found) if isinstance(found, list) else [found]
        return [v for v in self._items.values(response) if v is not None]

    # -- one item

    def skipped(self, item: Any) -> bool:
        """Whether the mapping's ``skip`` conditions leave this item out (the reference)."""
        return any(test(item, None) for test in self._skip)

    def signal_type(self, item: Any, event_type: str | None = None) -> str:
        found = self._type_of(item, event_type)
        return self._default_type if found is None else found

    def explain_type(self, item: Any, event_type: str | None = None) -> TypeReason:
        """The signal type with the rule that chose it (same answer as :meth:`signal_type`)."""
        rules = self.descriptor.signal_type_rules
        for index, rule in enumerate(rules):
            if _compile_rule(rule)(item, event_type):
                return TypeReason(rule.then, index, _describe_rule(rule))
        because = "no rule held" if rules else "there are no signalTypeRules"
        return TypeReason(self._default_type, None, f"{because}: defaultType")

    def priority(self, item: Any, event_type: str | None = None) -> Priority | None:
        return self._priority_of(item, event_type)

    def summary(self, item: Any) -> str:
        text = self._summary(item)
        if len(text) > SUMMARY_MAX_CHARS:
            text = text[: SUMMARY_MAX_CHARS - 1] + "…"
        return text

    def map(
        self,
        item: Any,
        connector_id: str,
        project_id: str,
        *,
        event_type: str | None = None,
        fallback_version: FallbackVersion | None = None,
        now: datetime | None = None,
    ) -> MappedSignal:
        """Map one item; raises :class:`ItemMappingError` when it cannot be a signal.

        Runs the generated function (:mod:`ucf.core.mapping_codegen`);
        :meth:`interpret` is the reference it is held equal to.
        """
        signal: MappedSignal = self.generated.map_one(
            item, connector_id, project_id, event_type, fallback_version, now
        )
        return signal

    def interpret(
        self,
        item: Any,
        connector_id: str,
        project_id: str,
        *,
        event_type: str | None = None,
        fallback_version: FallbackVersion | None = None,
        now: datetime | None = None,
    ) -> MappedSignal:
        """Map one item by walking the planned closures: the reference for :meth:`map`.

        The signal's identity is connector + project + item id + item version,
        whichever channel saw the item, so a poll and a webhook of the same
        change agree on one signal (docs/security.md "Signal identity and
        dedup"). The version is the ``versionPath`` value, else the item's own
        timestamp (at ``versionPrecision``); ``fallback_version`` (a webhook's
        signed delivery id or body hash, or a function that makes it: called only
        then, so a delivery whose items all carry a version never hashes its body)
        is used only for an item that carries neither. ``now`` is the fallback time for payloads that carry no
        timestamp at all (never used to paper over a malformed one).
        """
        if not isinstance(item, dict):
            raise ItemMappingError(not_an_object(item))
        raw_id = self._id(item)
        if raw_id is MISSING or raw_id is None or isinstance(raw_id, dict | list | bool):
            raise ItemMappingError(f"no id at {self.descriptor.id_path}")
        item_id = raw_id if isinstance(raw_id, str) else as_text(raw_id)
        if not item_id:
            raise ItemMappingError(f"empty id at {self.descriptor.id_path}")

        raw_timestamp = self._timestamp(item)
        own_time = raw_timestamp is not MISSING and raw_timestamp is not None
        if not own_time:
            if now is None:
                raise ItemMappingError(f"no timestamp at {self.descriptor.timestamp_path}", item_id)
            moment = now
        else:
            parsed = parse_timestamp(raw_timestamp, self._timestamp_format)
            if parsed is None:
                reason = not_a_date_reason(self.descriptor.timestamp_path)
                raise ItemMappingError(reason(as_text(raw_timestamp)), item_id)
            moment = parsed
        timestamp = iso_utc(moment)

        version = self._version(item) if self._version is not None else None
        if version is None:
            if own_time or fallback_version is None:
                time_version = self._version_time
                version = timestamp if time_version is None else time_version(moment)
            else:
                version = (
                    fallback_version if isinstance(fallback_version, str) else fallback_version()
                )
        key = dedup_key(connector_id, project_id, item_id, version)

        priority = self._priority_of(item, event_type) if self._has_priority else None
        participants = names(self._participants(item)) if self._participants else []
        tags = names(self._tags(item)) if self._tags else []
        related = names(self._related(item)) if self._related else []
        wire: dict[str, Any] = {
            "id": signal_id(key, to_epoch_ms(moment)),
            "source": connector_id,
            "timestamp": timestamp,
            "type": self.signal_type(item, event_type),
            "summary": self.summary(item),
            "raw": self._raw(item),
            "projectId": project_id,
        }
        if priority is not None or participants or tags or related:
            metadata = wire["metadata"] = {} if priority is None else {"priority": priority}
            metadata["participants"] = participants
            metadata["relatedTickets"] = related
            metadata["tags"] = tags
        return MappedSignal(wire=wire, dedup_key=key, item_id=item_id, version=version)

    # -- batches

    def map_items(
        self,
        items: Sequence[Any],
        connector_id: str,
        project_id: str,
        *,
        event_type: str | None = None,
        fallback_version: FallbackVersion | None = None,
        now: datetime | None = None,
    ) -> MappingResult:
        result = MappingResult()
        skip = self.generated.skip
        map_one = self.generated.map_one
        signals = result.signals
        for index, item in enumerate(items):
            if skip is not None and skip(item):
                result.skipped += 1
                continue
            try:
                signals.append(
                    map_one(item, connector_id, project_id, event_type, fallback_version, now)
                )
            except ItemMappingError as error:
                result.errors.append(ItemError(index, error.reason, error.item_id))
        return result

    def map_response(
        self, response: Any, connector_id: str, project_id: str, *, now: datetime | None = None
    ) -> MappingResult:
        return self.map_items(self.extract_items(response), connector_id, project_id, now=now)


def iter_signals(result: MappingResult) -> Iterator[NormalisedSignal]:
    return (mapped.signal for mapped in result.signals)


_COMPILED: OrderedDict[str, CompiledMapping] = OrderedDict()
_COMPILED_MAX = 256


def compile_mapping(mapping: FieldMappingDescriptor | FieldMappingView) -> CompiledMapping:
    """The compiled mapping for this descriptor content, generated once and shared.

    Keyed by the mapping's whole content (its view's ``repr``: a model and the
    stored JSON it came from key alike) rather than the descriptor's id and
    version: an edited descriptor that kept its version still gets its own
    function, and two connectors with one mapping share one. Bounded (LRU).
    """
    view = mapping_view(mapping)
    key = view.cache_key()
    found = _COMPILED.get(key)
    if found is None:
        found = _COMPILED[key] = CompiledMapping(view)
        if len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
    else:
        _COMPILED.move_to_end(key)
    return found
