"""Logs never contain credentials.

Credentials reach log lines in four ways, and each gets its own rule:

* as header values (``Authorization: Bearer …``, ``DD-API-KEY: …``, and the
  ``(b'set-cookie', b'…')`` tuples httpcore prints at DEBUG);
* as query or form parameters (Trello authenticates with ``?key=…&token=…``, and
  httpx logs every request URL at INFO) or JSON fields of token responses;
* as URL userinfo (``https://user:pass@host``);
* as bare tokens whose shape is recognisable (``ghp_…``, ``xoxb-…``, ``AKIA…``;
  :data:`ucf.core.secret_shapes.SECRET_SHAPES`, the list the sanitiser uses too).

Shapes and names cannot catch everything, so the secret store also registers
every credential value it hands out (:meth:`SecretRegistry.add`) and any
literal occurrence is masked (a short value only where it is a whole word). Masks keep at most the last four characters of a
long secret so an operator can tell two keys apart, and nothing of a short one.
Values typed for one try-out or connection test are registered only while it
runs (:meth:`SecretRegistry.lent`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final, cast
from urllib.parse import quote, quote_plus

from ucf.core.payload import encodes_as_utf8
from ucf.core.records import datarecord
from ucf.core.secret_shapes import SECRET_SHAPES

if TYPE_CHECKING:
    import re2

MASK: Final = "••••"
_REVEAL_MIN_LENGTH: Final = 12
_MIN_REGISTERED_LENGTH: Final = 4
_WHOLE_WORD_BELOW_LENGTH: Final = 12

# Header names (a regex) whose values are credentials: masked in logs, and never
# sent on a redirect to another origin (ucf.runtime.redirects).
SENSITIVE_HEADERS: Final = (
    r"authorization|proxy-authorization|cookie|set-cookie|x-api-key|api-key|apikey"
    r"|dd-api-key|dd-application-key|x-auth-token|x-access-token|private-token"
    r"|x-vault-token|x-hook-secret|x-[\w-]*-(?:token|key|secret|signature)"
)
# A parameter is sensitive when its name ends like a credential: key, token,
# apiKey, access_token, client_secret, X-Amz-Signature, X-Amz-Credential, …
_SENSITIVE_PARAM: Final = (
    r"[\w.\-]*(?:key|token|secret|password|passwd|pwd|signature|sig|credentials?)|auth"
)


def mask(value: str) -> str:
    """``••••1234`` for a secret long enough to keep four characters private-enough.

    Masking a mask changes nothing; a longer value that merely starts like one
    is still a secret and is masked like any other.
    """
    if value.startswith(MASK) and len(value) <= len(MASK) + 4:
        return value
    if len(value) >= _REVEAL_MIN_LENGTH:
        return MASK + value[-4:]
    return MASK


def _mask_group(group: int | str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        start, end = match.span(group)
        whole_start = match.start()
        text = match.group(0)
        return text[: start - whole_start] + mask(match.group(group)) + text[end - whole_start :]

    return replace


# One alternation for every provider shape, a named group each, so one scan
# of a log line covers them all and the match says which shape (and its
# ``accept``) it was (compiled with the other rules, see :func:`_rules`).
def _shapes_source() -> str:
    return "|".join(f"(?P<s{index}>{shape.pattern})" for index, shape in enumerate(SECRET_SHAPES))


_SHAPE_ACCEPT: Final = {f"s{index}": shape.accept for index, shape in enumerate(SECRET_SHAPES)}


def _mask_shape(match: re.Match[str]) -> str:
    accept = _SHAPE_ACCEPT[match.lastgroup or ""]
    text = match.group(0)
    return text if accept is not None and not accept(text) else mask(text)


@functools.cache
def _shape_detector() -> re2._Regexp[str]:
    """Every shape in one RE2 pattern, no captures: one linear pass says whether
    :func:`_shapes_source`'s pattern can match at all (loaded on first use, as the sanitiser does).

    Python's ``re`` tries each of the ~20 alternatives at every position (about
    45 µs for a 130-character URL; RE2 needs a fraction of one). The shapes use
    only ASCII classes and ``\\b``; RE2's ``\\b`` is ASCII, Python's Unicode, so
    next to the ASCII characters a shape starts and ends with RE2 sees a boundary
    wherever Python does: it finds a match whenever the ``re`` pattern would (a
    property test holds this), and that pattern then does the masking.
    """
    import re2

    options = re2.Options()
    options.never_capture = True
    options.log_errors = False
    return re2.compile("|".join(f"(?:{shape.pattern})" for shape in SECRET_SHAPES), options)


def _shape_possible(text: str) -> bool:
    try:
        return _shape_detector().search(text) is not None
    except UnicodeEncodeError:  # a lone surrogate: RE2 reads UTF-8 only, so let re look
        return True


_PARAM_ENDINGS: Final = r"(?:key|token|secret|password|passwd|pwd|signature|sig|credentials?|auth)="


@functools.cache
def _param_detector() -> re2._Regexp[str]:
    r"""What every sensitive ``name=`` ends with, for RE2: one linear pass over a line.

    The parameter rule's ``[\w.\-]*`` makes Python's ``re`` walk each word at
    every position it starts from (about 150 µs for a 1.4 KB line holding a
    harmless ``?state=all&page=7``); lines rarely hold a credential parameter.
    """
    import re2

    options = re2.Options()
    options.never_capture = True
    options.log_errors = False
    options.case_sensitive = False
    return re2.compile(_PARAM_ENDINGS, options)


def _param_possible(text: str) -> bool:
    try:
        return _param_detector().search(text) is not None
    except UnicodeEncodeError:  # a lone surrogate: RE2 reads UTF-8 only, so let re look
        return True


class _Pattern:
    """An ``re`` pattern compiled on its first substitution.

    Compiling all seven rules costs ~2.8 ms, and most texts pass the cheap test of
    one or two: a poll's page URL (``https:``, ``?state=all&since=…``) needs only the
    header-line rule, so a Lambda poll worker's cold start compiles that one alone.
    """

    __slots__ = ("_compiled", "_flags", "_source")

    def __init__(self, source: str, flags: int = 0) -> None:
        self._source = source
        self._flags = flags
        self._compiled: re.Pattern[str] | None = None

    def sub(self, replace: Callable[[re.Match[str]], str], text: str) -> str:
        compiled = self._compiled
        if compiled is None:  # racing threads may both compile: the same pattern
            compiled = self._compiled = re.compile(self._source, self._flags)
        return compiled.sub(replace, text)


Rule = tuple[_Pattern, Callable[[re.Match[str]], str], Callable[[str], bool]]
"""A pattern, its replacement, and a cheap test without which the pattern cannot match
(a literal every match holds): most texts skip most patterns (a poll redacts each page's
URL, the log filter every line)."""


@functools.cache
def _rules() -> tuple[Rule, ...]:
    """The rules, built by the first :func:`redact`; each pattern is compiled when a text
    first passes its cheap test (:class:`_Pattern`)."""
    return (
        # https://user:password@host → https://••••@host
        (
            _Pattern(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<userinfo>[^/\s@?#'\"]+)@", re.I),
            lambda m: f"{m.group('scheme')}{MASK}@",
            lambda text: "@" in text,
        ),
        # (b'authorization', b'Bearer x') and ('authorization', 'Bearer x') tuples.
        (
            _Pattern(
                rf"""\(b?(?P<q>['"])(?:{SENSITIVE_HEADERS})(?P=q),\s*b?(?P<q2>['"])(?P<value>.*?)(?P=q2)\)""",
                re.I,
            ),
            _mask_group("value"),
            lambda text: "(" in text,
        ),
        # 'Authorization': 'Bearer x' (dict reprs) and "password": "x" (JSON bodies).
        (
            _Pattern(
                rf"""(?P<q>['"])(?:{SENSITIVE_HEADERS}|{_SENSITIVE_PARAM})(?P=q)\s*:\s*(?P<q2>['"])(?P<value>(?:\\.|(?!(?P=q2)).)*)(?P=q2)""",
                re.I,
            ),
            _mask_group("value"),
            lambda text: '"' in text or "'" in text,
        ),
        # Authorization: Bearer x (header lines) — the value runs to the end of the line.
        (
            _Pattern(
                rf"(?P<name>(?<![\w-])(?:{SENSITIVE_HEADERS}))\s*:\s*(?P<value>[^\r\n'\",}}]+)",
                re.I,
            ),
            _mask_group("value"),
            lambda text: ":" in text,
        ),
        # ?key=…&token=… in URLs and form bodies.
        (
            _Pattern(
                rf"(?P<name>(?<![\w.\-])(?:{_SENSITIVE_PARAM}))=(?P<value>[^&\s#'\"<>;,)]+)", re.I
            ),
            _mask_group("value"),
            lambda text: "=" in text and _param_possible(text),
        ),
        # The same inside a URL carried percent-encoded in another's query (a login's
        # next=%2Fcb%3Fclient_secret%3D…, a redirect_uri): "?", "&" and "=" escaped, so
        # the rule above saw no name and no "=", and the value was logged whole.
        (
            _Pattern(
                rf"(?:%3F|%26)(?P<name>{_SENSITIVE_PARAM})%3D"
                r"(?P<value>(?:(?!%26)[^&\s#'\"<>;,)])+)",
                re.I,
            ),
            _mask_group("value"),
            lambda text: "%3D" in text or "%3d" in text,
        ),
        # And in a URL nested in that one, escaped twice: %253F, %2526, %253D.
        (
            _Pattern(
                rf"(?:%253F|%2526)(?P<name>{_SENSITIVE_PARAM})%253D"
                r"(?P<value>(?:(?!%2526)[^&\s#'\"<>;,)])+)",
                re.I,
            ),
            _mask_group("value"),
            lambda text: "%253D" in text or "%253d" in text,
        ),
        # Bearer / Basic credentials wherever they appear (not "basic" in prose).
        (
            _Pattern(r"\b(?:[Bb]earer|Basic)\s+(?P<value>[A-Za-z0-9._~+/=\-]{8,})"),
            _mask_group("value"),
            lambda text: "earer" in text or "Basic" in text,
        ),
        # Provider token shapes, shared with the sanitiser.
        (_Pattern(_shapes_source()), _mask_shape, _shape_possible),
    )


class SecretRegistry:
    """Exact credential values to mask wherever they appear, whatever their shape.

    The secret store adds each value it decrypts; the log filter consults the
    registry on every record. Thread-safe, because logging is.

    Thousands of values are normal (every refresh of every OAuth instance adds
    its new token), so the registry never runs one pattern of them all over a
    line: Python's ``re`` tries each alternative at each position (about 90 ms
    for a 1.4 KB line against a thousand values) and recompiling it on every
    ``add`` made a thousand adds take a minute. An RE2 set of the values says
    in one linear pass which occur (a few µs); only those few are then masked
    with the word rules of :func:`_literal`. Building the set costs about 60 ms
    at 4 096 values, so values added since it was built are looked for one by
    one (``in``) until there are :data:`_RECENT_MAX` of them, and only then is
    the set built again, on the next line: a server whose instances refresh
    every few seconds does not rebuild it every few seconds.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._lock = threading.Lock()
        # Insertion-ordered, so the oldest value goes first when a long-running
        # server has rotated more tokens than ``capacity``: bounded memory and a
        # bounded index, keeping the values most likely still in use.
        self._values: dict[str, None] = {}
        self._capacity = capacity
        self._lent: dict[str, int] = {}
        """Values (and URL forms) masked only while a :meth:`lent` block that added them
        runs: how many such blocks have. A value added outside any block is kept."""
        self._lookup: _Lookup | None = None
        """What :meth:`redact` searches with, swapped whole (never half updated)."""
        self.clean: set[str] = set()
        """Short texts :func:`redact` found nothing to mask in, since the last change.

        Most log lines repeat (every access line of a route is one text), and
        the rules cost tens of µs a line. Only texts that redact to themselves
        are kept, so no credential is ever held here; a new value empties it
        (it may occur in a text that was clean before)."""

    def add(self, value: str) -> None:
        """Mask ``value`` from now on (values shorter than 4 characters would mask prose),
        and the forms a URL gives it (:func:`url_forms`); inside a :meth:`lent` block,
        until the block ends, unless it is also added outside one."""
        if len(value) < _MIN_REGISTERED_LENGTH:
            return
        loan = _LOAN.get()
        if loan is not None and loan.returned:  # a task the block started outlived it
            loan = None
        if loan is None and value in self._values and value not in self._lent:
            return  # kept already: the common case (a credential sent with every request)
        forms = url_forms(value)
        with self._lock:
            if loan is None:
                for form in forms:  # kept from now on, even if a try-out lent it first
                    self._lent.pop(form, None)
                if value in self._values:
                    return
            else:
                if value in loan.values:
                    return
                if value in self._values and value not in self._lent:
                    return  # kept already: there is nothing to give back
                loan.values.add(value)
                for form in forms:
                    if form in self._values and form not in self._lent:
                        continue  # kept already (another value, or its URL form): not lent
                    self._lent[form] = self._lent.get(form, 0) + 1
                if value in self._values:
                    return
            for form in forms:
                self._values[form] = None
            # Lent values do not count: they go when their block ends, and a full
            # registry (a long-running server's) made each one evict a stored
            # instance's value, unmasked until the secret store handed it out again.
            while len(self._values) - len(self._lent) > self._capacity:
                # An evicted value may stay in the set until the next build; redact
                # masks only what is still registered.
                evicted = next(v for v in self._values if v not in self._lent)
                del self._values[evicted]
            lookup = self._lookup
            if lookup is not None and len(lookup.recent) < _RECENT_MAX:
                self._lookup = _Lookup(lookup.index, (*lookup.recent, *forms))
            else:
                self._lookup = None  # the set is built again, with every value, by the next line
            self.clean = set()  # after the lookup: a text found clean from now on saw it

    def keep(self, values: Iterable[str]) -> None:
        """Values a :meth:`lent` block registered that are stored after all: masked for
        good, not given back when it ends (a stored OAuth refresh token that a typed
        connection test refreshed: its new tokens are the instance's, not the draft's).
        Values not registered are left so; kept ones stay kept."""
        with self._lock:
            for value in values:
                for form in url_forms(value):
                    self._lent.pop(form, None)

    @contextlib.contextmanager
    def lent(self) -> Iterator[None]:
        """Values first added inside the block (and the tasks it starts) are masked until
        it ends, then forgotten; kept if it ends with an error, which may quote them.

        For credentials typed into a try-out or a connection test and not stored:
        kept for good, a typed word (``test``, ``admin``) masked that word in every
        later log line, and each try's values (up to a megabyte each) stayed in
        the registry, crowding out the stored instances' tokens. A value also
        added outside a block (an instance's poll uses it) stays registered.
        """
        loan = _Loan()
        token = _LOAN.set(loan)
        try:
            yield
        except BaseException:
            # Kept: the error is logged after the block (the web layer's 500 line, a
            # native connector's message), and a typed value it quotes must be masked then.
            _LOAN.reset(token)
            self._keep(loan)
            raise
        _LOAN.reset(token)
        self._give_back(loan)

    def _keep(self, loan: _Loan) -> None:
        """Register the loan's values for good, as if added outside any block."""
        with self._lock:
            loan.returned = True
            for value in loan.values:
                for form in url_forms(value):
                    self._lent.pop(form, None)

    def _give_back(self, loan: _Loan) -> None:
        with self._lock:
            loan.returned = True
            removed: set[str] = set()
            for value in loan.values:
                for form in url_forms(value):
                    count = self._lent.get(form)
                    if count is None:  # added outside a block since, or evicted
                        continue
                    if count > 1:
                        self._lent[form] = count - 1
                        continue
                    del self._lent[form]
                    if form in self._values:
                        del self._values[form]
                        removed.add(form)
            lookup = self._lookup
            if removed and lookup is not None:
                # The set keeps them until its next build (redact skips them): building it
                # again now would cost every try-out up to 60 ms of a log line.
                recent = tuple(v for v in lookup.recent if v not in removed)
                self._lookup = _Lookup(lookup.index, recent)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._lent.clear()
            self._lookup = None
            self.clean = set()

    def __len__(self) -> int:
        return len(self._values)

    def redact(self, text: str) -> str:
        lookup = self._lookup
        if lookup is None:
            with self._lock:
                if self._lookup is None and self._values:
                    self._lookup = _Lookup(_Index(tuple(self._values)), ())
                lookup = self._lookup
            if lookup is None:
                return text
        present = lookup.index.present(text)
        present += [value for value in lookup.recent if value in text]
        if not present:
            return text
        values = self._values  # the set may still hold values given back or evicted
        present = [value for value in present if value in values]
        if not present:
            return text
        return _pattern_of(frozenset(present)).sub(lambda m: mask(m.group(0)), text)


class _Loan:
    """The values one :meth:`SecretRegistry.lent` block added."""

    __slots__ = ("returned", "values")

    def __init__(self) -> None:
        self.values: set[str] = set()
        self.returned = False


_LOAN: ContextVar[_Loan | None] = ContextVar("ucf_secret_loan", default=None)


_URL_SAFE_SETS: Final = ("", "/", "!$&'()*+,;=:@/")
"""Characters left as they are by ``quote`` in a query value, a path, and httpx's path."""


def url_forms(value: str) -> tuple[str, ...]:
    """``value`` and the percent-encoded forms a URL carries it in.

    A credential sent as a query parameter (``?access=…``) or put in a path goes on
    the wire encoded: ``a+b/c==`` is ``a%2Bb%2Fc%3D%3D`` in the URL that httpx logs and
    a try-out shows. Looking for the typed text alone missed it whenever the value
    holds a character a URL escapes.
    """
    forms = dict.fromkeys([value])
    try:
        forms.update(dict.fromkeys([quote_plus(value, safe="")]))
        forms.update(dict.fromkeys(quote(value, safe=safe) for safe in _URL_SAFE_SETS))
    except UnicodeEncodeError:  # a lone surrogate: no URL carries it
        pass
    return tuple(forms)


@datarecord
class _Lookup:
    index: _Index
    recent: tuple[str, ...]
    """Values added since ``index`` was built, looked for one by one."""


class _Index:
    """Which registered values occur in a text: one RE2 set of them all.

    RE2 reads UTF-8 only, so a value holding a lone surrogate (JSON's
    ``"\\ud800"`` in a credential typed into a try-out or an instance) cannot
    join the set: adding it raised, and since the set is built again by the next
    log line, every log line of the process raised from then on. Such values are
    looked for one by one instead.
    """

    def __init__(self, values: tuple[str, ...]) -> None:
        import re2

        self._values = values
        self._indexed = tuple(value for value in values if encodes_as_utf8(value))
        self._unencodable = tuple(value for value in values if not encodes_as_utf8(value))
        options = re2.Options()
        options.log_errors = False
        options.max_mem = (
            _INDEX_MEMORY  # the DFA of thousands of literals outgrows the 8 MiB default
        )
        finder = re2.Set.SearchSet(options)
        for value in self._indexed:
            finder.Add(re2.escape(value))
        finder.Compile()
        self._finder = finder

    def present(self, text: str) -> list[str]:
        try:
            # The indices of the values present (the stubs say bool: RE2::Set answers indices).
            found = cast("list[int] | None", self._finder.Match(text))
        except UnicodeEncodeError:  # a lone surrogate: RE2 reads UTF-8 only
            return [value for value in self._values if value in text]
        present = [self._indexed[i] for i in found] if found else []
        return present + [value for value in self._unencodable if value in text]


_INDEX_MEMORY: Final = 64 << 20
_RECENT_MAX: Final = 64


@functools.lru_cache(maxsize=256)
def _pattern_of(values: frozenset[str]) -> re.Pattern[str]:
    """The few values a line holds as one pattern, longest first (a value inside a
    longer one is masked with it)."""
    return re.compile("|".join(_literal(v) for v in sorted(values, key=lambda v: (-len(v), v))))


def _literal(value: str) -> str:
    """The pattern that finds ``value`` in a log line.

    A long value is found anywhere, even run into other text (a token in a URL
    path such as ``/bot<token>/``). A short one is found only where it is not
    part of a longer word: a client id ``client`` or a password ``test`` must
    still be masked when a line quotes it, but not in ``client_id``,
    ``clients`` or ``tests``, which would make every log line of the process
    hard to read. A short value embedded in a longer word is not that value
    leaking; an edge that is not a word character (``#s3!``) needs no guard.
    An escape that ends in a letter or digit starts a word too: a quote in a
    logged URL (``%22test``), a newline or tab in logged JSON (``\\ntest``).
    """
    escaped = re.escape(value)
    if len(value) >= _WHOLE_WORD_BELOW_LENGTH:
        return escaped
    before = _WORD_START if _WORD_CHARACTER.match(value[0]) else ""
    after = r"(?!\w)" if _WORD_CHARACTER.match(value[-1]) else ""
    return f"{before}{escaped}{after}"


_WORD_CHARACTER: Final = re.compile(r"\w")
_WORD_START: Final = r"(?:(?<!\w)|(?<=%[0-9A-Fa-f]{2})|(?<=\\[nrt]))"
"""Where a word starts: after a non-word character, a percent-escape or a JSON escape."""


SECRETS: Final = SecretRegistry()
"""The process-wide registry the log filter uses unless given another."""


_CLEAN_TEXT_MAX_CHARS: Final = 256
_CLEAN_TEXTS_MAX: Final = 1024


def redact(text: str, registry: SecretRegistry = SECRETS) -> str:
    """``text`` with every credential we can recognise masked.

    Characters shown as nothing (zero-width, bidi controls, stray joiners) are
    removed first, as the sanitiser removes them from signals: a token split by a
    U+200B was seen by no rule as a token, and printed whole to whoever read the
    log. A line that held some is written without them.
    """
    clean = registry.clean  # read before the rules: a change after it starts a new set
    if text in clean:
        return text
    redacted = registry.redact(text if text.isascii() else _visible(text))
    for pattern, replace, possible in _rules():
        if possible(redacted):
            redacted = pattern.sub(replace, redacted)
    if redacted == text and len(text) <= _CLEAN_TEXT_MAX_CHARS:
        if len(clean) >= _CLEAN_TEXTS_MAX:
            clean.clear()
        clean.add(text)
    return redacted


def _visible(text: str) -> str:
    """:func:`ucf.core.sanitiser.without_invisible`, imported by the first non-ASCII line
    (the sanitiser's module loads nh3 and RE2, which most log lines never need), then
    called directly."""
    global _visible  # replaced by the function it imports, once
    from ucf.core.sanitiser import without_invisible

    _visible = without_invisible
    return without_invisible(text)


REDACTED_ATTRIBUTE: Final = "_ucf_redacted"
"""Set on a record once redacted, or by code that builds a record from values that cannot
hold a secret (the access line: method, route template, status)."""


class RedactionFilter(logging.Filter):
    """Rewrites each record's message (and traceback) with :func:`redact` applied.

    Works both on loggers (the record is fixed before it propagates) and on
    handlers (covers records from loggers nobody thought of).
    """

    def __init__(self, registry: SecretRegistry = SECRETS) -> None:
        super().__init__()
        self._registry = registry

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, REDACTED_ATTRIBUTE, False):
            return True
        record.msg = redact(record.getMessage(), self._registry)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._registry)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._registry)
        record.__dict__[REDACTED_ATTRIBUTE] = True
        return True


# Libraries that log URLs and headers: httpx logs every request URL at INFO,
# httpcore prints request/response header tuples at DEBUG.
HTTP_LIBRARY_LOGGERS: Final = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


def install_redaction(
    logger: logging.Logger | None = None, registry: SecretRegistry = SECRETS
) -> RedactionFilter:
    """Redact everything ``logger`` (default: root) and the HTTP libraries emit.

    The filter goes on the logger, on each of its current handlers, and on the
    httpx/httpcore loggers, so records are clean before any handler formats
    them. Call it after logging is configured; installing twice is harmless.
    """
    target = logger if logger is not None else logging.getLogger()
    existing = next((f for f in target.filters if isinstance(f, RedactionFilter)), None)
    redaction = existing if existing is not None else RedactionFilter(registry)
    places: list[logging.Filterer] = [target, *target.handlers]
    places += [logging.getLogger(name) for name in HTTP_LIBRARY_LOGGERS]
    for place in places:
        if not any(isinstance(f, RedactionFilter) for f in place.filters):
            place.addFilter(redaction)
    return redaction
