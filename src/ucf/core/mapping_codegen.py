"""A field mapping written out as one specialised Python function, compiled once.

:class:`~ucf.core.mapping.CompiledMapping` interprets a descriptor: every item
walks closures for each path, rule and template. That interpreter stays the
reference. This module writes the same mapping as straight-line Python source
(``compile()``d once per mapping, cached by the mapping's content) so a plain
field path costs one subscript, a path used by several parts of the mapping
(``labels[*].name`` for the priority and the tags, ``updated_at`` for the
timestamp and the raw fields) is read once per item, and no per-item call goes
through a closure chain. ``bench/mapping.py`` measures the gain; a hypothesis
test holds the generated function equal to the interpreter over generated
descriptors and items (``tests/core/test_mapping_codegen.py``).

**No descriptor text ever becomes source.** Every value that comes from a
descriptor — path keys, template literals, rule values, connector names — is
bound as a constant (``_k0``, ``_k1``, …) in the function's namespace; the
source is assembled only from this module's own fixed fragments, generated
identifiers and integers. :func:`_checked` refuses, before ``compile()``, any
source that contains a quote character (there are no string literals in it),
so a hostile path or template cannot inject code even through a bug here.
Whatever the generator does not specialise (query paths, ``matches``,
``contains``, ``in`` on rules outside a lookup table, version paths) calls the
interpreter's own compiled closure, passed as a constant.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from ucf.core.jsonpath import MISSING, WILDCARD, compile_path, plain_steps
from ucf.core.jsonpath import _step as jsonpath_step
from ucf.core.records import datarecord
from ucf.core.signal_identity import SUMMARY_MAX_CHARS, dedup_key, iso_utc, signal_id
from ucf.core.template import compile_template
from ucf.core.timestamps import CANONICAL_UTC, parser_for, to_epoch_ms

if TYPE_CHECKING:
    from ucf.core.descriptor_view import ConditionView, PriorityRuleView, SignalTypeRuleView
    from ucf.core.mapping import CompiledMapping

__all__ = ["GeneratedMapping", "generate"]

MapOne = Callable[[Any, str, str, Any, Any, Any], Any]
"""``(item, connector_id, project_id, event_type, fallback_version, now) -> MappedSignal``."""

Skip = Callable[[Any], bool]

_EMPTY: Final[dict[str, Any]] = {}
"""What a path reads through where it meets no object: only ever read, never written."""

_ISO_FORMATS: Final = frozenset({"auto", "iso8601"})
"""Timestamp formats whose parsed text may be the signal's timestamp as written."""

#: Characters the generated source may contain: identifiers, digits, operators,
#: brackets, whitespace. No quotes, so no string literal can exist in it.
_SAFE_SOURCE: Final = re.compile(r"[A-Za-z0-9_\s.,:=()\[\]{}<>!+\-*/%|&~]*")


@datarecord
class GeneratedMapping:
    """The compiled functions and their source (kept for tests and ``repr``)."""

    map_one: MapOne
    skip: Skip | None
    source: str


class _Writer:
    """Source lines, constants and per-path value variables of one function.

    ``item_is_dict``: the function has checked that ``item`` is a dict before
    any read (``map_one`` has; ``skip`` reads any JSON value).
    """

    def __init__(self, constants: dict[str, Any], *, item_is_dict: bool) -> None:
        self.lines: list[str] = []
        self.constants = constants
        self.item_is_dict = item_is_dict
        self.present: set[str] = set()
        """Variables known to hold a value ``exists`` holds for (the checked id)."""
        self._values: dict[tuple[str, bool], str] = {}
        self._nodes: dict[tuple[str, ...], str] = {}
        self._temps = 0
        self.event_base: str | None = None

    def const(self, value: Any) -> str:
        """Bind ``value`` in the namespace; the source names it, never spells it."""
        for name, bound in self.constants.items():
            if bound is value:
                return name
        name = f"_k{len(self.constants)}"
        self.constants[name] = value
        return name

    def temp(self) -> str:
        self._temps += 1
        return f"t{self._temps}"

    def emit(self, line: str, indent: int = 1) -> None:
        self.lines.append("    " * indent + line)

    def event_type_base(self) -> str:
        """A variable holding the event type's part before its first dot, made once.

        ``_event_matches`` split it again for every rule naming event types.
        """
        if self.event_base is None:
            self.event_base = "event_base"
            self.emit("event_base = None if event_type is None else event_type.split(_dot, 1)[0]")
        return self.event_base

    def read(self, expression: str) -> str:
        """A variable holding the path's value as the interpreter reads it (first or list).

        Each distinct path is read once per item (keyed by its canonical form).
        """
        path = compile_path(expression)
        key = (path.canonical, path.is_singular)
        found = self._values.get(key)
        if found is not None:
            return found
        variable = f"v{len(self._values)}"
        self._values[key] = variable
        steps = plain_steps(path)
        if steps is not None and all(step.__class__ is str for step in steps) and steps:
            names = [str(step) for step in steps]
            node = self.node(tuple(names[:-1]))
            self.emit(f"{variable} = {node}.get({self.const(names[-1])}, MISSING)")
        elif steps is not None and steps and not path.is_singular:
            self._read_fan_out(variable, steps)
        else:  # the root, index steps, queries: the path object's own reader
            reader = path.first if path.is_singular else path.values
            self.emit(f"{variable} = {self.const(reader)}(item)")
        return variable

    def node(self, names: tuple[str, ...]) -> str:
        """A variable holding the object at ``names``, or an empty one when there is none.

        Member names select only from objects (RFC 9535), so a path that meets
        anything else on the way has no value: reading the rest from an empty
        dict says so without an exception. Each object is looked up once per
        item however many paths go through it (``issue`` for ten raw fields).
        """
        if not names:
            if self.item_is_dict:
                return "item"
            names_root = self._nodes.get(())
            if names_root is None:
                names_root = self._nodes[()] = "d0"
                self.emit("d0 = item if isinstance(item, dict) else _EMPTY")
            return names_root
        found = self._nodes.get(names)
        if found is not None:
            return found
        parent = self.node(names[:-1])
        variable = self._nodes[names] = f"d{len(self._nodes) + 1}"
        self.emit(f"{variable} = {parent}.get({self.const(names[-1])}, _EMPTY)")
        self.emit(f"if not isinstance({variable}, dict):")
        self.emit(f"{variable} = _EMPTY", 2)
        return variable

    def _read_fan_out(self, variable: str, steps: tuple[Any, ...]) -> None:
        """RFC 9535 segment by segment over the node list, as ``_FanOutPath.values``.

        Leading names are read as one value (through :meth:`node`), not one-node
        lists, and a wildcard followed by a name is one comprehension
        (``issue.labels[*].name`` builds one list, not four): the node lists
        these skip are never seen by anything else.
        """
        index = 0
        lead = 0
        while lead < len(steps) and steps[lead].__class__ is str:
            lead += 1
        if 0 < lead < len(steps) and steps[lead] is WILDCARD:
            names = tuple(str(step) for step in steps[:lead])
            node = self.node(names[:-1])
            self.emit(f"{variable} = {node}.get({self.const(names[-1])}, MISSING)")
            steps = steps[lead - 1 :]  # the last name, then the wildcard: as before
            children = (
                f"({variable} if isinstance({variable}, list) "
                f"else {variable}.values() if isinstance({variable}, dict) else ())"
            )
            if len(steps) > 2 and steps[2].__class__ is str:
                field = self.const(steps[2])
                self.emit(
                    f"{variable} = [f for c in {children} if isinstance(c, dict) "
                    f"and (f := c.get({field}, MISSING)) is not MISSING]"
                )
                index = 3
            else:
                self.emit(f"{variable} = list{children}")
                index = 2
        else:
            self.emit(f"{variable} = [item]")
        while index < len(steps):
            step = steps[index]
            index += 1
            if step is WILDCARD and index < len(steps) and steps[index].__class__ is str:
                name = self.const(steps[index])
                index += 1
                self.emit(
                    f"{variable} = [f for n in {variable} for c in (n if isinstance(n, list) "
                    "else n.values() if isinstance(n, dict) else ()) if isinstance(c, dict) "
                    f"and (f := c.get({name}, MISSING)) is not MISSING]"
                )
            elif step is WILDCARD:
                self.emit(
                    f"{variable} = [c for n in {variable} for c in (n if isinstance(n, list) "
                    "else n.values() if isinstance(n, dict) else ())]"
                )
            elif step.__class__ is str:
                self.emit(
                    f"{variable} = [f for n in {variable} if isinstance(n, dict) "
                    f"and (f := n.get({self.const(step)}, MISSING)) is not MISSING]"
                )
            else:
                self.emit(
                    f"{variable} = [f for n in {variable} "
                    f"if (f := _step(n, {self.const(step)})) is not MISSING]"
                )


def _condition(writer: _Writer, condition: ConditionView) -> str:
    """A boolean expression for one condition (``event_type`` and ``item`` in scope)."""
    from ucf.core import mapping as m

    operator = condition.operator
    if operator in ("exists", "not_exists"):
        value = writer.read(condition.when)
        if value in writer.present:
            return "True" if operator == "exists" else "False"
        test = f"_present({value})"
        return test if operator == "exists" else f"(not {test})"
    if operator in ("equals", "not_equals"):
        value = writer.read(condition.when)
        target = writer.temp()
        if condition.value_path is not None:
            other = writer.read(condition.value_path)
            writer.emit(f"{target} = {other} if {other}.__class__ is str else as_text({other})")
        else:
            constant = condition.value if isinstance(condition.value, str) else ""
            writer.emit(f"{target} = {writer.const(constant)}")
        test = (
            f"(({value} == {target}) if {value}.__class__ is str "
            f"else _any_text({value}, {target}.__eq__))"
        )
        return test if operator == "equals" else f"(not {test})"
    return f"{writer.const(m.compile_condition(condition))}(item, event_type)"


def _rule(writer: _Writer, rule: SignalTypeRuleView | PriorityRuleView) -> str:
    """A boolean expression: the rule's event types, its condition and every ``all``."""
    parts: list[str] = []
    if rule.event_types is not None:
        # _event_matches inline: neither None nor its base is in a set of strings.
        allowed = writer.const(frozenset(rule.event_types))
        base = writer.event_type_base()
        parts.append(f"(event_type in {allowed} or {base} in {allowed})")
    parts.append(_condition(writer, rule))
    parts.extend(_condition(writer, condition) for condition in rule.all)
    held = [part for part in parts if part != "True"]  # an id that is there exists
    return " and ".join(held) if held else "True"


def _first_match(
    writer: _Writer, variable: str, rules: list[SignalTypeRuleView] | list[PriorityRuleView]
) -> None:
    """``variable`` = the ``then`` of the first rule that holds, else None.

    The same runs as :func:`~ucf.core.mapping.compile_first_match`: a run of
    constant comparisons on one path is one table lookup, with the same table.
    """
    from ucf.core import mapping as m

    writer.emit(f"{variable} = None")
    for start, end in m.rule_runs(rules):
        if end - start > 1:
            table = m.rule_table([(r, r.then) for r in rules[start:end]], start)
            value = writer.read(rules[start].when)
            hit = writer.temp()
            writer.emit(f"if {variable} is None:")
            writer.emit(f"{hit} = _table_lookup({writer.const(table)}, {value})", 2)
            writer.emit(f"if {hit} is not None:", 2)
            writer.emit(f"{variable} = {hit}[1]", 3)
            continue
        rule = rules[start]
        # The tests are expressions over variables read before: emit reads first.
        test = _rule(writer, rule)
        writer.emit(f"if {variable} is None and {test}:")
        writer.emit(f"{variable} = {writer.const(rule.then)}", 2)


def _summary(writer: _Writer, template_source: str) -> str:
    from ucf.core import mapping as m

    template = compile_template(template_source)
    pieces: list[str] = []
    if template.literals[0]:
        pieces.append(writer.const(template.literals[0]))
    for placeholder, after in zip(template.placeholders, template.literals[1:], strict=True):
        value = writer.read(placeholder.name)
        name = writer.const(placeholder.name)
        # An int (an issue number) reads as str() does in template.plain: no call for it.
        pieces.append(
            f"({value} if {value}.__class__ is str else str({value}) if {value}.__class__ is int "
            f"else {writer.const(m._summary_text)}({name}, {value}))"
        )
        if after:
            pieces.append(writer.const(after))
    writer.emit(f"summary = {' + '.join(pieces) if pieces else writer.const('')}")
    writer.emit(f"if len(summary) > {SUMMARY_MAX_CHARS}:")
    writer.emit(f"summary = summary[:{SUMMARY_MAX_CHARS - 1}] + {writer.const('…')}", 2)
    return "summary"


#: One raw field as the generator places it: its keys under ``raw`` and its value's test.
_RawEntry = tuple[tuple[str, ...], str, str]


def _raw(writer: _Writer, fields: list[str] | None) -> str:
    from ucf.core import mapping as m

    if fields is None:
        return "item"  # map_one has checked it is a dict
    entries: list[_RawEntry] = []
    for expression in fields:
        value = writer.read(expression)
        present = f"{value} is not MISSING" if compile_path(expression).is_singular else value
        keys = m._plain_keys(expression)
        entries.append((keys if keys is not None else (expression,), value, present))
    writer.emit("raw = {}")
    if _nests(entries):
        _raw_tree(writer, "raw", entries)
    else:
        _raw_by_lookup(writer, entries)
    return "raw"


def _nests(entries: list[_RawEntry]) -> bool:
    """Whether the fields form a tree the generator can build object by object.

    At each level a key must be either only a leaf or only an object, and an
    object's fields one run: then an object built apart and put in place after
    its run sits where the interpreter's (made at its first present field)
    does. Anything else (``a`` beside ``a.t``, ``a.t, b, a.u``) is looked up
    as the interpreter does.
    """
    kinds: dict[str, bool] = {}  # key -> whether it holds an object
    ended: set[str] = set()  # objects whose run is over
    previous: str | None = None
    for keys, _value, _present in entries:
        first, inner = keys[0], len(keys) > 1
        if kinds.setdefault(first, inner) != inner:
            return False
        if previous is not None and previous != first and kinds[previous]:
            ended.add(previous)
        if inner and first in ended:
            return False
        previous = first
    groups: dict[str, list[_RawEntry]] = {}
    for keys, value, present in entries:
        if len(keys) > 1:
            groups.setdefault(keys[0], []).append((keys[1:], value, present))
    return all(_nests(group) for group in groups.values())


def _raw_tree(writer: _Writer, node: str, entries: list[_RawEntry]) -> None:
    """Leaves assigned when present; each object filled apart, put in place if not empty."""
    index = 0
    while index < len(entries):
        keys, value, present = entries[index]
        name = writer.const(keys[0])
        if len(keys) == 1:
            writer.emit(f"if {present}:")
            writer.emit(f"{node}[{name}] = {value}", 2)
            index += 1
            continue
        end = index
        while end < len(entries) and entries[end][0][0] == keys[0]:
            end += 1
        child = writer.temp()
        writer.emit(f"{child} = {{}}")
        _raw_tree(writer, child, [(k[1:], v, p) for k, v, p in entries[index:end]])
        writer.emit(f"if {child}:")
        writer.emit(f"{node}[{name}] = {child}", 2)
        index = end


def _raw_by_lookup(writer: _Writer, entries: list[_RawEntry]) -> None:
    """The interpreter's way: each field finds or makes the objects on its way."""
    for keys, value, present in entries:
        writer.emit(f"if {present}:")
        node = "raw"
        for key in keys[:-1]:
            child = writer.temp()
            name = writer.const(key)
            writer.emit(f"{child} = {node}.get({name})", 2)
            writer.emit(f"if not isinstance({child}, dict):", 2)
            writer.emit(f"{child} = {node}[{name}] = {{}}", 3)
            node = child
        writer.emit(f"{node}[{writer.const(keys[-1])}] = {value}", 2)


def _names(writer: _Writer, expression: str | None) -> str:
    if not expression:
        return "[]"
    return f"names({writer.read(expression)})"


def _namespace(mapping: CompiledMapping) -> dict[str, Any]:
    from ucf.core import mapping as m

    return {
        "MISSING": MISSING,
        "_EMPTY": _EMPTY,
        "_dot": ".",
        "ItemMappingError": m.ItemMappingError,
        "MappedSignal": m.MappedSignal,
        "as_text": m.as_text,
        "_not_an_object": m.not_an_object,
        "names": m.names,
        "_present": m._present,
        "_any_text": m._any_text,
        "_event_matches": m._event_matches,
        "_table_lookup": m.table_lookup,
        "_step": jsonpath_step,
        "iso_utc": iso_utc,
        "_canonical_utc": CANONICAL_UTC.fullmatch,
        "_fromisoformat": datetime.fromisoformat,
        "to_epoch_ms": to_epoch_ms,
        "dedup_key": dedup_key,
        "signal_id": signal_id,
        "_parse": parser_for(mapping.descriptor.timestamp_format),
    }


def _map_one_source(mapping: CompiledMapping, writer: _Writer) -> str:
    from ucf.core import mapping as m

    spec = mapping.descriptor
    body = writer
    body.emit("if not isinstance(item, dict):")
    body.emit("raise ItemMappingError(_not_an_object(item))", 2)
    raw_id = body.read(spec.id_path)
    no_id = body.const(f"no id at {spec.id_path}")
    body.emit(
        f"if {raw_id} is MISSING or {raw_id} is None or isinstance({raw_id}, dict | list | bool):"
    )
    body.emit(f"raise ItemMappingError({no_id})", 2)
    # An int id (GitHub's, Jira's) is written as as_text writes it, without the call.
    body.emit(
        f"item_id = {raw_id} if {raw_id}.__class__ is str "
        f"else int.__repr__({raw_id}) if {raw_id}.__class__ is int else as_text({raw_id})"
    )
    body.emit("if not item_id:")
    body.emit(f"raise ItemMappingError({body.const(f'empty id at {spec.id_path}')})", 2)
    body.present.add(raw_id)  # neither missing, null, empty nor a container: it exists

    raw_time = body.read(spec.timestamp_path)
    body.emit(f"own_time = {raw_time} is not MISSING and {raw_time} is not None")
    body.emit("if not own_time:")
    body.emit("if now is None:", 2)
    no_time = body.const(f"no timestamp at {spec.timestamp_path}")
    body.emit(f"raise ItemMappingError({no_time}, item_id)", 3)
    body.emit("moment = now", 2)
    body.emit("timestamp = None", 2)
    body.emit("else:")
    if spec.timestamp_format in _ISO_FORMATS:
        # Text already written as iso_utc writes it (GitHub's ...:SSZ) is the signal's
        # timestamp as it is, and is read by fromisoformat alone: the parser's own
        # steps (its type checks, the fallback for other ISO shapes, the UTC
        # conversion) give the same moment or, for a date that does not exist, None.
        body.emit(f"if {raw_time}.__class__ is str and _canonical_utc({raw_time}) is not None:", 2)
        body.emit("try:", 3)
        body.emit(f"moment = _fromisoformat({raw_time})", 4)
        body.emit("except ValueError:", 3)
        body.emit("moment = None", 4)
        body.emit(
            f"timestamp = {raw_time} if len({raw_time}) == 24 "
            f"else {raw_time}[:19] + {body.const('.000Z')}",
            3,
        )
        body.emit("else:", 2)
        body.emit(f"moment = _parse({raw_time})", 3)
        body.emit("timestamp = None", 3)
    else:
        body.emit(f"moment = _parse({raw_time})", 2)
        body.emit("timestamp = None", 2)
    body.emit("if moment is None:", 2)
    not_a_date = body.const(m.not_a_date_reason(spec.timestamp_path))
    body.emit(f"raise ItemMappingError({not_a_date}(as_text({raw_time})), item_id)", 3)
    body.emit("if timestamp is None:")
    body.emit("timestamp = iso_utc(moment)", 2)

    version_time = m._VERSION_TIME[spec.version_precision]
    if spec.version_path:
        reader = body.const(m._VersionReader(spec.version_path, version_time))
        body.emit(f"version = {reader}(item)")
    else:
        body.emit("version = None")
    body.emit("if version is None:")
    body.emit("if own_time or fallback_version is None:", 2)
    if version_time is None:
        body.emit("version = timestamp", 3)
    else:
        body.emit(f"version = {body.const(version_time)}(moment)", 3)
    body.emit("else:", 2)
    body.emit(
        "version = fallback_version if fallback_version.__class__ is str else fallback_version()",
        3,
    )
    body.emit("key = dedup_key(connector_id, project_id, item_id, version)")

    if spec.priority_mapping:
        _first_match(body, "priority", spec.priority_mapping)
    else:
        body.emit("priority = None")
    participants = _names(body, spec.participants_path)
    body.emit(f"participants = {participants}")
    tags = _names(body, spec.tags_path)
    body.emit(f"tags = {tags}")
    related = _names(body, spec.related_items_path)
    body.emit(f"related = {related}")
    _first_match(body, "signal_type", spec.signal_type_rules)
    body.emit("if signal_type is None:")
    body.emit(f"signal_type = {body.const(spec.default_type)}", 2)
    summary = _summary(body, spec.summary_template)
    raw = _raw(body, spec.raw_fields)
    body.emit(
        "wire = {"
        f"{body.const('id')}: signal_id(key, to_epoch_ms(moment)), "
        f"{body.const('source')}: connector_id, "
        f"{body.const('timestamp')}: timestamp, "
        f"{body.const('type')}: signal_type, "
        f"{body.const('summary')}: {summary}, "
        f"{body.const('raw')}: {raw}, "
        f"{body.const('projectId')}: project_id}}"
    )
    body.emit("if priority is not None or participants or tags or related:")
    body.emit(
        f"metadata = wire[{body.const('metadata')}] = "
        f"{{}} if priority is None else {{{body.const('priority')}: priority}}",
        2,
    )
    body.emit(f"metadata[{body.const('participants')}] = participants", 2)
    body.emit(f"metadata[{body.const('relatedTickets')}] = related", 2)
    body.emit(f"metadata[{body.const('tags')}] = tags", 2)
    body.emit("return MappedSignal(wire, key, item_id, version)")
    header = "def map_one(item, connector_id, project_id, event_type, fallback_version, now):"
    return "\n".join([header, *body.lines])


def _skip_source(mapping: CompiledMapping, writer: _Writer) -> str | None:
    conditions = mapping.descriptor.skip
    if not conditions:
        return None
    writer.emit("event_type = None")
    tests = [_condition(writer, condition) for condition in conditions]
    writer.emit(f"return {' or '.join(tests)}")
    return "\n".join(["def skip(item):", *writer.lines])


def _checked(source: str) -> str:
    """Refuse source that could hold a literal: only generated names and operators."""
    if not _SAFE_SOURCE.fullmatch(source):
        raise AssertionError("generated mapping source holds an unexpected character")
    return source


def generate(mapping: CompiledMapping) -> GeneratedMapping:
    """Write, check and compile the mapping's functions (see the module docstring)."""
    constants: dict[str, Any] = {}
    map_source = _map_one_source(mapping, _Writer(constants, item_is_dict=True))
    skip_source = _skip_source(mapping, _Writer(constants, item_is_dict=False))
    source = _checked("\n\n".join(s for s in (map_source, skip_source) if s is not None) + "\n")
    namespace = _namespace(mapping)
    clash = namespace.keys() & constants.keys()
    if clash:  # pragma: no cover - the names are generated apart
        raise AssertionError(f"generated constant names clash: {sorted(clash)}")
    namespace.update(constants)
    code = compile(source, "<ucf mapping>", "exec")
    exec(code, namespace)  # noqa: S102 - our own checked source; descriptor values are constants
    return GeneratedMapping(
        map_one=namespace["map_one"],
        skip=namespace.get("skip"),
        source=source,
    )
