"""Regular expressions compiled once, at build time, the way the artifact ships bytecode.

A cold start compiles about 180 ``re`` patterns (urllib3's URL grammar, botocore,
http.cookiejar, httpx, h11, the standard library's own, ucf's): 15-30 ms of CPU
in ``re._parser`` and ``re._compiler``, pure Python that turns the same pattern
into the same program in every execution environment. A ``.pyc`` saves the
equivalent work for modules; this module does it for the patterns they compile.

:func:`build` records, for each pattern the cold paths compile, what
``re._compiler.compile`` hands the regex engine (``_sre.compile``'s arguments:
the flags, the program, the group count and names), and writes them to one
``marshal`` file. ``make -C deploy app`` builds :data:`SHIPPED` with the
functions' Python. :func:`install` (run by :mod:`ucf.aws.handlers` before any
handler imports anything) loads the file and wraps ``re._compiler.compile``: a
pattern with an entry for exactly its text and flags goes straight to
``_sre.compile`` with the recorded program; any other is compiled as before.

Why the result is the pattern ``re`` would have compiled:

- the entry is looked up by the pattern's exact text (``str`` or ``bytes``) and
  integer flags, the whole input of the compiler;
- the file is used only by an interpreter whose regex compiler is the one that
  wrote it: its header holds a digest of the source of ``re._compiler``,
  ``re._parser``, ``re._constants`` and ``re._casefix`` with the engine's
  ``_sre.MAGIC``, ``CODESIZE``, ``MAXREPEAT``, ``MAXGROUPS``, the machine's
  byte order (a ``BIGCHARSET``'s block table is packed in native words) and the
  Python minor version (the Unicode tables case-insensitive patterns read change
  only with it). Any difference, an unreadable file or a missing source leaves
  ``re`` alone;
- ``_sre.compile`` checks the program it is given (``_validate`` in
  ``_sre.c``), and an entry it refuses is compiled the ordinary way;
- a pattern whose parse warns (``FutureWarning`` for a possible nested set, …) is
  not recorded: served, it would no longer warn.

A file that does not apply costs the gain and nothing else, silently: :func:`outcome`
says what :func:`install` did and why, and the Lambda container logs it once per
execution environment (``ucf.aws.container``).

``tests/aws/test_regex_cache.py`` holds every entry of a built file equal to
the pattern ``re`` compiles (``Pattern.__eq__`` compares the program).
"""

from __future__ import annotations

import _thread
import contextlib
import hashlib
import importlib
import marshal
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, NamedTuple

__all__ = [
    "COLD_PATH_MODULES",
    "SHIPPED",
    "Outcome",
    "build",
    "compiler_digest",
    "install",
    "installed",
    "outcome",
    "uninstall",
]

SHIPPED: Final = Path(__file__).with_name("regex-cache.marshal")
"""Where ``make -C deploy app`` writes the cache; absent in a checkout."""
PATH_ENV: Final = "UCF_REGEX_CACHE"
"""Another file to read instead of :data:`SHIPPED` (``bench/coldstart.py`` builds one)."""
_FORMAT: Final = "ucf-regex-cache-1"

COLD_PATH_MODULES: Final = (
    "ucf.aws.handlers.api",
    "ucf.aws.handlers.schedule",
    "ucf.aws.handlers.poll_worker",
    "ucf.aws.handlers.delivery",
    "ucf.aws.config",
    "ucf.aws.polling",
    "ucf.service.context",
    "ucf.service.poll",
    "ucf.service.ingest",
    "ucf.service.delivery",
    "ucf.service.aws_sinks",
    "ucf.service.scheduler",
    "ucf.stores.dynamodb",
    "ucf.stores.secrets.aws",
    "ucf.runtime.http",
    "ucf.runtime.sources",
    "ucf.core.mapping",
    "ucf.core.sanitiser",
    "ucf.web.front",
    "botocore.session",
    "botocore.client",
    "httpx",
    "httpcore",
    "h11",
    "http.cookiejar",
)
"""What :func:`build` imports: the modules a first invocation of each function loads
(the handlers import little themselves), so their module-level patterns are recorded.
A module that cannot be imported on the building machine (another platform's
extension modules) is skipped: its patterns are compiled at run time as before."""

_AWS_CLIENTS: Final = ("dynamodb", "secretsmanager", "sqs", "events")
"""Clients the functions create; building one offline compiles botocore's own patterns."""

Entry = tuple[int, list[int], int, dict[str, int], tuple[str | None, ...]]
"""``_sre.compile``'s arguments after the pattern: flags, program, groups - 1, names."""

# re's own compiler and engine: loaded with re, untyped.
_sre: Any = importlib.import_module("_sre")
_compiler: Any = importlib.import_module("re._compiler")
_parser: Any = importlib.import_module("re._parser")

_original: Callable[..., Any] | None = None
_building = False
_lock = _thread.allocate_lock()
"""Install and uninstall one at a time: two installs racing could each wrap ``re``, and
the wrapper of the first would stay after :func:`uninstall` (the threading module is
not loaded this early at a cold start; ``_thread`` is)."""


class Outcome(NamedTuple):
    """What the last :func:`install` did."""

    served: int
    """How many patterns the cache serves (0: ``re`` compiles every one itself)."""
    why: str
    unused_file: bool
    """A file was there and is not used: the cold start's gain is gone (a Python other
    than the build's, a file damaged), which nothing else shows."""


_outcome: Outcome | None = None


def compiler_digest() -> str | None:
    """What a cache must have been built by: this interpreter's regex compiler and engine.

    None when the compiler's source cannot be read (a runtime shipped without it):
    nothing then shows that the file's programs are this compiler's.

    The byte order is part of it: ``re._compiler._bytes_to_codes`` packs a large
    character set's block table into native words, so a program built on a
    big-endian machine is valid on a little-endian one (``_validate`` accepts it)
    but matches other characters.
    """

    digest = hashlib.sha256()
    engine = (_sre.MAGIC, _sre.CODESIZE, _sre.MAXREPEAT, _sre.MAXGROUPS, sys.byteorder)
    digest.update(repr((sys.version_info[:2], *engine)).encode())
    folder = Path(re.__file__).parent
    for name in ("_compiler.py", "_parser.py", "_constants.py", "_casefix.py"):
        try:
            digest.update((folder / name).read_bytes())
        except OSError:
            return None
    return digest.hexdigest()


def installed() -> bool:
    return _original is not None


def outcome() -> Outcome | None:
    """What the last :func:`install` did and why; None before any."""
    return _outcome


def install(path: str | os.PathLike[str] | None = None) -> int:
    """Serve ``re``'s compiles from the cache at ``path`` (default: ``UCF_REGEX_CACHE``,
    else :data:`SHIPPED`); how many patterns it holds (0: ``re`` left as it was).

    Idempotent. Never raises for the file: a missing, unreadable or foreign one is ignored
    (:func:`outcome` says so).
    """
    with _lock:
        if _original is not None or _building:
            return 0
        return _install(Path(path or os.environ.get(PATH_ENV) or SHIPPED))


def _unused(why: str, *, unused_file: bool = True) -> int:
    global _outcome
    _outcome = Outcome(0, why, unused_file)
    return 0


def _install(source: Path) -> int:
    global _original, _outcome
    try:
        data = marshal.loads(source.read_bytes())  # noqa: S302 - the build's own file, checked below
    except FileNotFoundError:
        return _unused(f"no regex cache at {source}", unused_file=False)
    except (OSError, EOFError, ValueError, TypeError) as error:
        return _unused(f"the regex cache {source} cannot be read ({type(error).__name__})")
    if not (
        isinstance(data, dict)
        and data.get("format") == _FORMAT
        and isinstance(data.get("entries"), dict)
    ):
        return _unused(f"{source} is not a regex cache of this ucf")
    digest = compiler_digest()
    if digest is None:
        return _unused("this Python ships no source of re's compiler to check the cache against")
    if data.get("compiler") != digest:
        return _unused(
            f"the regex cache {source} was built by another regex compiler (another Python "
            "version or build of re, engine or byte order): re compiles every pattern"
        )
    entries: dict[tuple[str | bytes, int], Entry] = data["entries"]

    original = _compiler.compile

    def compile(pattern: Any, flags: int = 0) -> Any:
        if isinstance(pattern, str | bytes):
            entry = entries.get((pattern, int(flags)))
            if entry is not None:
                try:
                    final_flags, program, groups, names, by_index = entry
                    return _sre.compile(
                        pattern, final_flags, program, groups, dict(names), by_index
                    )
                except (RuntimeError, TypeError, ValueError, OverflowError):
                    # A program the engine refuses (OverflowError: a word that is not
                    # an unsigned SRE_CODE): compile it as re would.
                    pass
        return original(pattern, flags)

    _original = original
    _compiler.compile = compile
    _outcome = Outcome(len(entries), f"{len(entries)} patterns served from {source}", False)
    return len(entries)


def uninstall() -> None:
    """``re`` compiles everything itself again (tests)."""
    global _original
    with _lock:
        if _original is None:
            return
        _compiler.compile = _original
        _original = None


def _entry(pattern: str | bytes, flags: int) -> Entry:
    """What ``re._compiler.compile(pattern, flags)`` passes to ``_sre.compile``, as plain data."""

    parsed = _parser.parse(pattern, flags)
    program = [int(word) for word in _compiler._code(parsed, flags)]
    names = dict(parsed.state.groupdict)
    by_index: list[str | None] = [None] * parsed.state.groups
    for name, index in names.items():
        by_index[index] = name
    return (
        int(flags | parsed.state.flags),
        program,
        parsed.state.groups - 1,
        names,
        tuple(by_index),
    )


def build(destination: Path, modules: Iterable[str] = COLD_PATH_MODULES) -> int:
    """Import ``modules`` (and make the functions' AWS clients, offline) in this process,
    record every pattern compiled meanwhile, and write the cache; how many it holds.

    Run it in a fresh interpreter (``python -m ucf.aws.regex_cache FILE``): a pattern
    compiled before it started is in ``re``'s own cache and is not seen again.
    """
    digest = compiler_digest()
    if digest is None:
        raise RuntimeError("this Python ships no source for re's compiler: nothing to key on")
    import warnings

    global _building
    original = _compiler.compile
    entries: dict[tuple[str | bytes, int], Entry] = {}

    def recording(pattern: Any, flags: int = 0) -> Any:
        # re.DEBUG prints the program as it compiles: such a pattern is never served. Nor is
        # one whose parse warns (served, it would not warn): the call below warns as usual.
        if isinstance(pattern, str | bytes) and not flags & re.DEBUG:
            with contextlib.suppress(re.error), warnings.catch_warnings(record=True) as warned:
                warnings.simplefilter("always")
                entry = _entry(pattern, flags)  # re.error: the call below raises it
                if not warned:
                    entries.setdefault((pattern, int(flags)), entry)
        return original(pattern, flags)

    # The handlers' package installs a cache when imported: not while one is made.
    _building, _compiler.compile = True, recording
    try:
        for name in modules:
            try:
                importlib.import_module(name)
            except ImportError:
                continue
        _make_clients()
    finally:
        _building, _compiler.compile = False, original
    data = {"format": _FORMAT, "compiler": digest, "entries": entries}
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    partial.write_bytes(marshal.dumps(data))
    partial.replace(destination)
    return len(entries)


def _make_clients() -> None:
    """The functions' botocore clients, made (never called) with placeholder settings."""
    try:
        from ucf.stores.aws_session import aws_client
    except ImportError:
        return
    for service in _AWS_CLIENTS:
        # An SDK that cannot be loaded here: its patterns are compiled at run time.
        with contextlib.suppress(Exception):
            aws_client(
                service,
                region_name="us-east-1",
                aws_access_key_id="regex-cache",
                aws_secret_access_key="regex-cache",  # noqa: S106 - a placeholder, never sent
            ).close()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m ucf.aws.regex_cache FILE")
    # This file runs as __main__: build with the module the handlers' package imports.
    from ucf.aws import regex_cache

    if regex_cache.compiler_digest() is None:
        # The artifact is still good without the cache (re compiles at run time, as in a
        # checkout): `make -C deploy app` must not fail for a build Python stripped of
        # re's sources. A file made by an earlier build would no longer match: gone.
        Path(args[0]).unlink(missing_ok=True)
        print(
            f"no regex cache built ({args[0]}): this Python ships no source of re's "
            "compiler to key it on; the functions compile their patterns at run time",
            file=sys.stderr,
        )
        return
    count = regex_cache.build(Path(args[0]))
    print(f"{count} patterns -> {args[0]}")


if __name__ == "__main__":
    main()
