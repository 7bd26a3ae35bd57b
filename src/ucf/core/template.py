"""``{{ name }}`` templates: substitution only, escaped for where the text lands.

Descriptors template URLs (``{{baseUrl}}/repos/{{config.owner}}/issues``),
headers, query values, request bodies, signed webhook payloads and signal
summaries (``{{key}}: {{fields.summary}}``). A template is parsed once into
literal text and placeholders; rendering asks a ``resolve`` callable for each
placeholder's value and an ``escape`` callable to turn it into text for its
destination (:func:`plain`, :func:`url_component`, :func:`json_string_content`).

Syntax:

* ``{{ name }}`` — whitespace inside the braces is optional. A name is a
  variable (``baseUrl``, ``checkpoint``), a dotted path (``config.owner``,
  ``user.login``), or a JSONPath-like path with brackets (``labels[0].name``,
  ``fields['Story Points']``, ``labels[*].name``). A leading ``$`` is allowed.
* ``\\{{`` is a literal ``{{``. A ``}}`` outside a placeholder is literal
  text: GraphQL queries in request bodies end in ``}}}`` all the time
  (``{ issues { nodes { id }}}``), and making authors escape those would be
  a trap, while a stray ``}}`` catches no real typo (``{{baseUrl}}}`` is a
  placeholder followed by ``}``).
* There are no filters, expressions, calls or attribute access. A name is
  only ever handed to ``resolve`` as a string, so nothing in a template can
  run code; anything that is not a name is a :class:`TemplateSyntaxError`.

A missing value (``MISSING``) and ``None`` both render as empty text.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

from ucf.core.jsonpath import MISSING
from ucf.core.records import datarecord

__all__ = [
    "Escape",
    "Placeholder",
    "Resolve",
    "Template",
    "TemplateSyntaxError",
    "compile_template",
    "json_string_content",
    "plain",
    "render_json",
    "render_url",
    "url_component",
]

Resolve = Callable[[str], Any]
"""Looks a placeholder name up; returns the value, ``None`` or ``MISSING``."""

Escape = Callable[[str, Any], str]
"""Turns a placeholder's value into text for its destination (URL, JSON, …)."""


class TemplateSyntaxError(ValueError):
    """A template that does not parse; ``position`` is the 0-based offset."""

    def __init__(self, source: str, reason: str, position: int) -> None:
        self.source = source
        self.reason = reason
        self.position = position
        line = source.count("\n", 0, position) + 1
        column = position - (source.rfind("\n", 0, position) + 1) + 1
        where = f"column {column}" if "\n" not in source else f"line {line}, column {column}"
        excerpt = source[position : position + 24]
        super().__init__(f"at {where} (near {excerpt!r}): {reason}")


@datarecord
class Placeholder:
    """One ``{{ name }}``; ``start``/``end`` span the braces in the source."""

    name: str
    start: int
    end: int


# --- escapes ---------------------------------------------------------------------


def plain(name: str, value: Any) -> str:
    """Text as a person would write it: JSON spellings for JSON values.

    ``None``/``MISSING`` are empty, booleans are ``true``/``false`` (not
    Python's ``True``), lists and objects are compact JSON. Never raises.
    """
    if isinstance(value, str):
        return value
    if value is None or value is MISSING:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)


def url_component(name: str, value: Any) -> str:
    """Percent-encode everything but RFC 3986 unreserved characters.

    For path segments and query values: a ``/``, ``&``, ``#`` or ``?`` in a
    value can never change which resource is requested. A lone surrogate
    (possible in JSON input, not encodable as UTF-8) becomes ``?``.
    """
    return quote(plain(name, value), safe="", errors="replace")


def json_string_content(name: str, value: Any) -> str:
    """The text between the quotes of a JSON string literal.

    ASCII-only escapes, so the body stays valid UTF-8 whatever the input
    (including lone surrogates); a quote or backslash in a value cannot end
    the string early.
    """
    return json.dumps(plain(name, value))[1:-1]


# --- parsing ---------------------------------------------------------------------

_IDENT = r"[^\W\d][\w-]*"
_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_BRACKET = rf"\[\s*(?:-?\d+|\*|{_QUOTED})\s*\]"
_NAME: Final = re.compile(rf"(?:\$|{_IDENT}|{_BRACKET})(?:\.{_IDENT}|\.\*|{_BRACKET})*", re.DOTALL)
_MARK: Final = re.compile(r"\\\{\{|\{\{")
_NAME_HINT: Final = (
    "a placeholder holds a name only, e.g. {{checkpoint}}, {{config.owner}} or "
    "{{fields['Story Points']}}; templates have no expressions or filters"
)


def _closing(source: str, start: int) -> int:
    """Offset of the ``}}`` closing the placeholder whose body starts at ``start``.

    Quoted bracket names may contain braces (``{{fields['a}}b']}}``), so quotes
    are skipped as a unit.
    """
    position = start
    length = len(source)
    while position < length:
        char = source[position]
        if char in "'\"":
            position += 1
            while position < length and source[position] != char:
                position += 2 if source[position] == "\\" else 1
            if position >= length:
                raise TemplateSyntaxError(source, "unterminated quote in placeholder", start - 2)
            position += 1
            continue
        if char == "}" and source.startswith("}}", position):
            return position
        if char == "{":
            raise TemplateSyntaxError(source, "'{' inside a placeholder (nested braces)", position)
        position += 1
    raise TemplateSyntaxError(source, "'{{' is never closed with '}}'", start - 2)


def _parse(source: str) -> tuple[tuple[str, ...], tuple[Placeholder, ...]]:
    literals: list[str] = []
    placeholders: list[Placeholder] = []
    pending: list[str] = []
    position = 0
    while True:
        mark = _MARK.search(source, position)
        if mark is None:
            pending.append(source[position:])
            break
        pending.append(source[position : mark.start()])
        token = mark.group()
        if token[0] == "\\":
            pending.append(token[1:])
            position = mark.end()
            continue
        close = _closing(source, mark.end())
        name = source[mark.end() : close].strip()
        if not name:
            raise TemplateSyntaxError(source, "empty placeholder '{{}}'", mark.start())
        if not _NAME.fullmatch(name):
            shown = name if len(name) <= 40 else name[:37] + "..."
            raise TemplateSyntaxError(
                source, f"{shown!r} is not a name; {_NAME_HINT}", mark.start()
            )
        literals.append("".join(pending))
        pending = []
        placeholders.append(Placeholder(name=name, start=mark.start(), end=close + 2))
        position = close + 2
    literals.append("".join(pending))
    return tuple(literals), tuple(placeholders)


class Template:
    """A parsed template: literal text interleaved with placeholders.

    ``literals`` always has one more element than ``placeholders``: the text
    before the first placeholder, between each pair, and after the last.
    """

    __slots__ = (
        "_names",
        "is_single_placeholder",
        "literals",
        "placeholders",
        "source",
        "variables",
    )

    def __init__(self, source: str) -> None:
        literals, placeholders = _parse(source)
        self.source = source
        self.literals = literals
        self.placeholders = placeholders
        self.variables = frozenset(p.name for p in placeholders)
        self.is_single_placeholder = len(placeholders) == 1 and literals == ("", "")
        self._names = tuple(p.name for p in placeholders)

    def render(self, resolve: Resolve, escape: Escape = plain) -> str:
        """Substitute every placeholder; ``escape`` sees ``None``/``MISSING`` too."""
        literals = self.literals
        if not self._names:
            return literals[0]
        parts = [literals[0]]
        for name, after in zip(self._names, literals[1:], strict=True):
            parts.append(escape(name, resolve(name)))
            parts.append(after)
        return "".join(parts)

    def __repr__(self) -> str:
        return f"compile_template({self.source!r})"


@functools.lru_cache(maxsize=4096)
def compile_template(source: str) -> Template:
    """Parse once; templates are immutable and shared."""
    return Template(source)


_URL_PREFIXES: Final = frozenset({"baseUrl", "config.baseUrl"})


def render_url(template: Template, resolve: Resolve) -> str:
    """A URL template's text: its site's address verbatim, every other value percent-encoded.

    The address is ``{{baseUrl}}`` (the brief's name) wherever it stands, and a
    variable that starts the template (``{{config.siteUrl}}/api/me``, Slack's
    ``{{signInUrl}}/oauth/v2/authorize``): a template that starts with one has
    no scheme of its own, so that value is the address, which percent-encoding
    could only break (``https%3A%2F%2F…``, never an http URL). Any later value is
    a path segment or query value, encoded so that a ``/``, ``?`` or ``#`` in it
    cannot change which resource is asked for.
    """
    literals = template.literals
    parts = [literals[0]]
    leading = not literals[0]
    for placeholder, after in zip(template.placeholders, literals[1:], strict=True):
        name = placeholder.name
        value = resolve(name)
        verbatim = leading or name in _URL_PREFIXES
        parts.append(plain(name, value) if verbatim else url_component(name, value))
        parts.append(after)
        leading = False
    return "".join(parts)


# --- JSON bodies -----------------------------------------------------------------


def render_json(template_obj: Any, resolve: Resolve) -> Any:
    """Render every templated string inside a parsed JSON value.

    A string that is exactly one placeholder becomes the raw typed value, so
    ``{"after": "{{pageToken}}"}`` sends ``null`` on the first page and
    ``{"first": "{{config.pageSize}}"}`` can send a number. Missing values
    become ``null``. Other strings are rendered as text (the JSON encoder
    escapes them later). Object keys are never templated.
    """
    if isinstance(template_obj, str):
        if "{{" not in template_obj:
            return template_obj
        template = compile_template(template_obj)
        if template.is_single_placeholder:
            value = resolve(template.placeholders[0].name)
            return None if value is MISSING else value
        return template.render(resolve)
    if isinstance(template_obj, Mapping):
        return {key: render_json(value, resolve) for key, value in template_obj.items()}
    if isinstance(template_obj, Sequence):
        return [render_json(value, resolve) for value in template_obj]
    return template_obj
