"""JSONPath for descriptors: RFC 9535 syntax, direct lookups for plain paths.

Descriptors point at data with JSONPath (``$.items``, ``fields.summary``,
``labels[*].name``, ``$.items[?@.type == 'x']``). Every path is parsed by
python-jsonpath in strict RFC 9535 mode, so there is one grammar and one set
of error messages. What happens next depends on the shape of the path:

* **Plain paths** — only member names (``.name``, ``['odd key']``), integer
  indexes (``[0]``, ``[-1]``) and wildcards (``[*]``, ``.*``) — are turned
  into a pre-planned tuple of steps walked with plain ``dict``/``list``
  lookups. The mapping engine evaluates a handful of these per item for
  every item of every poll; python-jsonpath's general machinery costs about
  15x more per lookup (see the issue's benchmark notes), so it is never
  touched at evaluation time for them.
* **Query paths** — descendant segments (``$..name``), filters, slices,
  unions of selectors — are evaluated by python-jsonpath itself.

Authoring conventions (documented for descriptor writers):

* A path without a leading ``$`` is relative to the document root:
  ``items`` means ``$.items`` and ``[0].id`` means ``$[0].id``.
* Keys that are not identifiers (``@odata.nextLink``, ``Story Points``,
  ``odata.count``) need bracket notation: ``$['@odata.nextLink']``. A bare
  ``@`` is the *current node* of a filter in RFC 9535, so ``@odata.nextLink``
  is rejected with a hint rather than silently meaning something else.
* Regular expressions in filters (``match()``, ``search()``) run on RE2, so
  no upstream payload can make a filter take exponential time.

Evaluation never raises on JSON input (dicts, lists, strings, numbers,
booleans, ``None``): no match is :data:`MISSING` from ``first`` and ``[]``
from ``values``. JSON ``null`` is a value (``None``), distinct from absence.
"""

from __future__ import annotations

import enum
import functools
import re
from typing import TYPE_CHECKING, Any, Final, Protocol

from ucf.core.missing import MISSING, Missing
from ucf.core.regex import RegexError, compile_regex

if TYPE_CHECKING:
    import jsonpath as _jp

__all__ = [
    "MISSING",
    "WILDCARD",
    "CompiledPath",
    "Missing",
    "PathSyntaxError",
    "Step",
    "compile_path",
    "plain_steps",
]


class PathSyntaxError(ValueError):
    """A JSONPath that does not parse; says what is wrong and at which column.

    ``column`` is 1-based and counts in the expression exactly as the author
    wrote it (before ``$.`` is prepended to relative paths).
    """

    def __init__(self, expression: str, reason: str, column: int | None = None) -> None:
        self.expression = expression
        self.reason = reason
        self.column = column
        where = f" at column {column}" if column is not None else ""
        super().__init__(f"invalid JSONPath {expression!r}{where}: {reason}")


class CompiledPath(Protocol):
    """A parsed path, ready to be evaluated against many documents."""

    @property
    def expression(self) -> str:
        """The path as the author wrote it."""
        ...

    @property
    def canonical(self) -> str:
        """The RFC 9535 normalised form, e.g. ``$['items'][0]``; for messages."""
        ...

    @property
    def is_singular(self) -> bool:
        """True when the path can select at most one node, whatever the data."""
        ...

    def first(self, data: Any) -> Any:
        """The first match in document order, or :data:`MISSING`."""
        ...

    def values(self, data: Any) -> list[Any]:
        """Every match, in document order."""
        ...


# --- RE2-backed filter functions ------------------------------------------------


@functools.lru_cache(maxsize=256)
def _re2(pattern: str) -> Any:
    """Compile once; an invalid pattern is ``None`` (RFC 9535: the test is false)."""
    try:
        return compile_regex(pattern)
    except RegexError:
        return None


@functools.cache
def _environment() -> Any:
    """python-jsonpath in strict RFC 9535 mode, with the regex functions swapped for RE2.

    Imported and built on first use: its lexer compiles a large regular
    expression, and a process whose paths are all plain (the usual poll of a
    shipped connector) never needs it (``bench/coldstart.py``).
    """
    import jsonpath as _jp
    from jsonpath.function_extensions import ExpressionType, FilterFunction

    class _Re2Match(FilterFunction):
        """``match(value, pattern)``: whole-string match, on RE2 (linear time)."""

        arg_types = [ExpressionType.VALUE, ExpressionType.VALUE]  # noqa: RUF012 - library API
        return_type = ExpressionType.LOGICAL

        def __call__(self, value: object, pattern: object) -> bool:
            if not isinstance(value, str) or not isinstance(pattern, str):
                return False
            compiled = _re2(pattern)
            return compiled is not None and compiled.fullmatch(value) is not None

    class _Re2Search(_Re2Match):
        """``search(value, pattern)``: match anywhere in the string, on RE2."""

        def __call__(self, value: object, pattern: object) -> bool:
            if not isinstance(value, str) or not isinstance(pattern, str):
                return False
            compiled = _re2(pattern)
            return compiled is not None and compiled.search(value) is not None

    class _Environment(_jp.JSONPathEnvironment):
        def setup_function_extensions(self) -> None:
            super().setup_function_extensions()
            self.function_extensions["match"] = _Re2Match()
            self.function_extensions["search"] = _Re2Search()

    return _Environment(strict=True)


# --- plain paths: pre-planned direct lookups ------------------------------------


class _Wildcard(enum.Enum):
    STEP = "*"


_WILDCARD: Final = _Wildcard.STEP
WILDCARD: Final = _WILDCARD
"""The wildcard step (``[*]``, ``.*``) in :func:`plain_steps`."""

Step = str | int | _Wildcard
"""A member name, an array index, or every child."""


class _RootPath:
    """``$``: the document itself."""

    __slots__ = ("canonical", "expression")
    is_singular: Final = True

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.canonical = "$"

    def first(self, data: Any) -> Any:
        return data

    def values(self, data: Any) -> list[Any]:
        return [data]

    def __repr__(self) -> str:
        return f"compile_path({self.expression!r})"


class _NamePath:
    """Member names only (``$.fields.status.name``): the common case, kept tightest.

    Indexing with a ``str`` key succeeds only on a dict; on lists, strings,
    numbers, booleans and ``None`` it raises ``TypeError``, so one ``try``
    around the loop is both correct for any JSON value and the fastest form.
    """

    __slots__ = ("_names", "canonical", "expression")
    is_singular: Final = True

    def __init__(self, expression: str, canonical: str, names: tuple[str, ...]) -> None:
        self.expression = expression
        self.canonical = canonical
        self._names = names

    def first(self, data: Any) -> Any:
        node = data
        try:
            for name in self._names:
                node = node[name]
        except (KeyError, TypeError):
            return MISSING
        return node

    def values(self, data: Any) -> list[Any]:
        found = self.first(data)
        return [] if found is MISSING else [found]

    def __repr__(self) -> str:
        return f"compile_path({self.expression!r})"


def _step(node: Any, step: str | int) -> Any:
    """One name or index step; MISSING when the node has no such child.

    Names select only from objects and indexes only from arrays (RFC 9535),
    so ``"abc"[0]`` is no match, not ``"a"``.
    """
    if isinstance(step, str):
        if isinstance(node, dict):
            return node.get(step, MISSING)
        return MISSING
    if isinstance(node, list):
        try:
            return node[step]
        except IndexError:
            return MISSING
    return MISSING


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return list(node.values())
    if isinstance(node, list):
        return node
    return []


class _StepPath:
    """Names and indexes (``labels[0].name``): at most one node.

    As in :class:`_NamePath`, a name on a non-object raises ``TypeError``;
    an index is only tried on a list, since ``"abc"[0]`` must not match.
    """

    __slots__ = ("_steps", "canonical", "expression")
    is_singular: Final = True

    def __init__(self, expression: str, canonical: str, steps: tuple[str | int, ...]) -> None:
        self.expression = expression
        self.canonical = canonical
        self._steps = steps

    def first(self, data: Any) -> Any:
        node = data
        try:
            for step in self._steps:
                if isinstance(step, int) and not isinstance(node, list):
                    return MISSING  # a string, too, must not be indexed
                node = node[step]
        except (KeyError, IndexError, TypeError):
            return MISSING
        return node

    def values(self, data: Any) -> list[Any]:
        found = self.first(data)
        return [] if found is MISSING else [found]

    def __repr__(self) -> str:
        return f"compile_path({self.expression!r})"


class _FanOutPath:
    """Plain steps with at least one wildcard (``labels[*].name``).

    ``values`` expands one segment at a time over the whole node list, which
    is exactly RFC 9535's definition and so keeps document order. ``first``
    walks depth-first and stops at the first hit, so it does not build the
    full list for a large array.
    """

    __slots__ = ("_steps", "canonical", "expression")
    is_singular: Final = False

    def __init__(self, expression: str, canonical: str, steps: tuple[Step, ...]) -> None:
        self.expression = expression
        self.canonical = canonical
        self._steps = steps

    def first(self, data: Any) -> Any:
        return self._first_from(data, 0)

    def _first_from(self, node: Any, position: int) -> Any:
        steps = self._steps
        while position < len(steps):
            step = steps[position]
            position += 1
            if step is _WILDCARD:
                for child in _children(node):
                    found = self._first_from(child, position)
                    if found is not MISSING:
                        return found
                return MISSING
            node = _step(node, step)
            if node is MISSING:
                return MISSING
        return node

    def values(self, data: Any) -> list[Any]:
        nodes = [data]
        for step in self._steps:
            if step is _WILDCARD:
                nodes = [child for node in nodes for child in _children(node)]
            else:
                nodes = [found for node in nodes if (found := _step(node, step)) is not MISSING]
            if not nodes:
                break
        return nodes

    def __repr__(self) -> str:
        return f"compile_path({self.expression!r})"


# --- query paths: evaluated by python-jsonpath ----------------------------------


class _QueryPath:
    """Filters, descendants, slices, selector lists: python-jsonpath evaluates.

    Two guards keep evaluation total over JSON input: a ``str`` document is a
    JSON string with no children (python-jsonpath would otherwise try to
    ``json.loads`` it), and resolution errors — chiefly the descendant
    segment's depth limit on pathologically nested data — mean no match.
    """

    __slots__ = ("_errors", "_path", "canonical", "expression", "is_singular")

    def __init__(self, expression: str, path: _jp.JSONPath) -> None:
        self.expression = expression
        self.canonical = str(path)
        self.is_singular = path.singular_query()
        self._path = path
        self._errors = _evaluation_errors()

    def first(self, data: Any) -> Any:
        if isinstance(data, str):
            return MISSING
        try:
            match = next(iter(self._path.finditer(data)), None)
        except self._errors:
            return MISSING
        return MISSING if match is None else match.obj

    def values(self, data: Any) -> list[Any]:
        if isinstance(data, str):
            return []
        try:
            return list(self._path.findall(data))
        except self._errors:
            return []

    def __repr__(self) -> str:
        return f"compile_path({self.expression!r})"


def _evaluation_errors() -> tuple[type[BaseException], ...]:
    import jsonpath as _jp

    return (_jp.JSONPathError, RecursionError)


# --- compilation ----------------------------------------------------------------


def _plain_steps(path: _jp.JSONPath) -> tuple[Step, ...] | None:
    """The lookup plan of a plain path, or None when a query engine is needed."""
    from jsonpath.segments import JSONPathChildSegment
    from jsonpath.selectors import IndexSelector, NameSelector, WildcardSelector

    steps: list[Step] = []
    for segment in path.segments:
        if type(segment) is not JSONPathChildSegment or len(segment.selectors) != 1:
            return None
        selector = segment.selectors[0]
        if type(selector) is NameSelector:
            steps.append(selector.name)
        elif type(selector) is IndexSelector:
            steps.append(selector.index)
        elif type(selector) is WildcardSelector:
            steps.append(_WILDCARD)
        else:
            return None
    return tuple(steps)


def _plan(expression: str, path: _jp.JSONPath) -> CompiledPath:
    steps = _plain_steps(path)
    if steps is None:
        return _QueryPath(expression, path)
    return _planned(expression, steps, str(path))


_SIMPLE: Final = re.compile(
    r"\$(?:\.[A-Za-z_][A-Za-z0-9_]*|\.\*|\[(?:0|[1-9][0-9]{0,8})\]|\[\*\])*"
)
"""Paths made only of identifier names, small non-negative indexes and wildcards."""
_SIMPLE_STEP: Final = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\.\*|\[([0-9]+)\]|\[\*\]")


def _simple_steps(text: str) -> tuple[Step, ...] | None:
    """The steps of the commonest plain paths (``$.a.b``, ``$.items[0].id``, ``$.a[*].b``),
    read without python-jsonpath; None for anything else, which the library parses.

    Every path this accepts is one RFC 9535 accepts with the same meaning
    (``tests/core/test_jsonpath.py`` holds both readings equal), so the
    library's lexer and parser (the costliest part of loading it) are
    needed only for paths that are not this simple.
    """
    if _SIMPLE.fullmatch(text) is None:
        return None
    steps: list[Step] = []
    for match in _SIMPLE_STEP.finditer(text, 1):
        name, index = match.group(1), match.group(2)
        if name is not None:
            steps.append(name)
        elif index is not None:
            steps.append(int(index))
        else:
            steps.append(_WILDCARD)
    return tuple(steps)


def _canonical(steps: tuple[Step, ...]) -> str:
    """RFC 9535's normalized path of plain steps, as python-jsonpath prints it."""
    parts = ["$"]
    for step in steps:
        if isinstance(step, str):
            parts.append(f"['{step}']")
        elif isinstance(step, _Wildcard):
            parts.append("[*]")
        else:
            parts.append(f"[{step}]")
    return "".join(parts)


def _planned(
    expression: str, steps: tuple[Step, ...], canonical: str | None = None
) -> CompiledPath:
    if canonical is None:
        canonical = _canonical(steps)
    if not steps:
        return _RootPath(expression)
    if all(step.__class__ is str for step in steps):
        return _NamePath(expression, canonical, tuple(str(step) for step in steps))
    if _WILDCARD in steps:
        return _FanOutPath(expression, canonical, steps)
    return _StepPath(expression, canonical, tuple(s for s in steps if not isinstance(s, _Wildcard)))


_BRACKET_HINT: Final = (
    "keys that are not plain identifiers need bracket notation, e.g. $['odata.nextLink']"
)


def _reason(error: _jp.JSONPathError) -> str:
    """The library's message, plus the usual fix for the mistakes authors make."""
    from jsonpath.token import TOKEN_EOF, TOKEN_NAME

    reason = str(error.args[0]) if error.args else type(error).__name__
    token = error.token
    if token is None or token.kind == TOKEN_EOF:
        return f"{reason} (the path ends too early)"
    if token.kind == TOKEN_NAME or reason.startswith("expected a shorthand selector"):
        return f"{reason}; {_BRACKET_HINT}"
    return reason


@functools.lru_cache(maxsize=4096)
def compile_path(expression: str) -> CompiledPath:
    """Parse ``expression`` once; the result is shared (paths are immutable).

    Raises :class:`PathSyntaxError` for anything RFC 9535 does not accept,
    with the column in the author's text.
    """
    if not isinstance(expression, str):
        raise PathSyntaxError(repr(expression), "a JSONPath must be a string")
    text = expression.strip()
    leading = len(expression) - len(expression.lstrip())
    if not text:
        raise PathSyntaxError(expression, "empty path; write $ for the whole document")
    if text.startswith("@"):
        raise PathSyntaxError(
            expression,
            "'@' is the current node inside a filter; a key that starts with '@' "
            f"needs bracket notation: $['{text}']",
            leading + 1,
        )
    prefix = "" if text.startswith("$") else "$" if text.startswith(("[", ".")) else "$."
    steps = _simple_steps(prefix + text)
    if steps is not None:
        return _planned(expression, steps)
    import jsonpath as _jp

    try:
        parsed = _environment().compile(prefix + text)
    except _jp.JSONPathError as error:
        token = error.token
        if token is None or token.index < 0:
            column = len(expression.rstrip()) + 1
        else:
            column = max(token.index - len(prefix), 0) + leading + 1
        raise PathSyntaxError(expression, _reason(error), column) from None
    except RecursionError:
        raise PathSyntaxError(expression, "path is nested too deeply") from None
    if not isinstance(parsed, _jp.JSONPath):  # unions of whole paths: not RFC 9535
        raise PathSyntaxError(expression, "a descriptor path must be a single JSONPath query")
    return _plan(expression, parsed)


def plain_steps(path: CompiledPath) -> tuple[Step, ...] | None:
    """The lookup plan of a plain path (names, indexes, wildcards), None for a query path.

    For the mapping code generator (``ucf.core.mapping_codegen``), which writes
    these steps out as subscripts; query paths stay with python-jsonpath.
    """
    if isinstance(path, _RootPath):
        return ()
    if isinstance(path, _NamePath):
        return path._names
    if isinstance(path, _StepPath | _FanOutPath):
        return path._steps
    return None
