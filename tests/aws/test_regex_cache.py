"""The regex cache the artifact ships: each pattern it serves is the one ``re`` compiles."""

from __future__ import annotations

import _sre  # type: ignore[import-not-found]
import contextlib
import json
import logging
import marshal
import os
import re
import re._compiler  # type: ignore[import-not-found]
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

import pytest

from ucf.aws import regex_cache
from ucf.aws.container import Container

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, **environ: str) -> str:
    """Run ``code`` in a fresh interpreter (the cache changes ``re`` process-wide)."""
    env = {**os.environ, **environ}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache built as ``make -C deploy app`` builds the artifact's."""
    path = tmp_path_factory.mktemp("regex") / "regex-cache.marshal"
    done = subprocess.run(
        [sys.executable, "-m", "ucf.aws.regex_cache", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.startswith(f"{len(_entries(path))} patterns")
    return path


def _entries(path: Path) -> dict[tuple[str | bytes, int], Any]:
    data = marshal.loads(path.read_bytes())
    entries: dict[tuple[str | bytes, int], Any] = data["entries"]
    return entries


def test_every_pattern_the_cache_serves_is_the_program_re_compiles_for_it(built: Path) -> None:
    entries = _entries(built)

    assert len(entries) > 100  # the cold paths' imports: urllib3, botocore, httpx, h11, ucf…
    compile_with_re = re._compiler.compile
    for (pattern, flags), (final_flags, program, groups, names, by_index) in entries.items():
        served = _sre.compile(pattern, final_flags, program, groups, dict(names), by_index)
        compiled = compile_with_re(pattern, flags)
        # Pattern equality compares the flags, the text and the program.
        assert served == compiled, pattern
        assert served.groups == compiled.groups, pattern
        assert served.groupindex == compiled.groupindex, pattern


def test_the_cache_holds_the_patterns_the_functions_dependencies_compile_on_import(
    built: Path,
) -> None:
    import urllib3.util.url

    patterns = {pattern for pattern, _ in _entries(built)}

    # urllib3's URL grammar (botocore's transport): the largest, ~5 ms alone.
    assert urllib3.util.url._URI_RE.pattern in patterns
    assert urllib3.util.url._IPV6_ADDRZ_RE.pattern in patterns


def test_an_installed_cache_serves_what_it_holds_without_compiling_and_the_rest_as_before(
    built: Path,
) -> None:
    probe = """
import json, re, re._parser, sys
from ucf.aws import regex_cache
held = regex_cache.install()
parsed = []
parse = re._parser.parse
re._parser.parse = lambda pattern, flags=0, state=None: parsed.append(pattern) or parse(pattern, flags, state)
import urllib3.util.url as url
served = url._URI_RE
other = re.compile("not (?P<in>the) cache+")
print(json.dumps({
    "held": held,
    "installed": regex_cache.installed(),
    "parsed": parsed,
    "match": served.match("https://user@example.com:8443/a?b#c").groups(),
    "other": other.match("not the cacheee").groupdict(),
}))
"""
    seen = json.loads(_python(probe, UCF_REGEX_CACHE=str(built)))

    assert seen["held"] == len(_entries(built))
    assert seen["installed"] is True
    # urllib3's patterns came from the cache; the other one was compiled by re.
    assert seen["parsed"] == ["not (?P<in>the) cache+"]
    assert seen["match"] == ["https", "user@example.com:8443", "/a", "b", "c"]
    assert seen["other"] == {"in": "the"}


def _install_and_report(path: Path) -> dict[str, Any]:
    probe = """
import json, re._compiler
from ucf.aws import regex_cache
original = re._compiler.compile
held = regex_cache.install()
print(json.dumps({"held": held, "untouched": re._compiler.compile is original}))
"""
    result: dict[str, Any] = json.loads(_python(probe, UCF_REGEX_CACHE=str(path)))
    return result


def test_a_cache_written_by_another_regex_compiler_is_never_used(
    built: Path, tmp_path: Path
) -> None:
    data = marshal.loads(built.read_bytes())
    data["compiler"] = "0" * 64  # another Python, or a patch release that changed re
    foreign = tmp_path / "foreign.marshal"
    foreign.write_bytes(marshal.dumps(data))

    assert _install_and_report(foreign) == {"held": 0, "untouched": True}


@pytest.mark.parametrize("content", [b"", b"not marshal", marshal.dumps(["a", "list"])])
def test_an_unreadable_or_missing_cache_leaves_re_alone(tmp_path: Path, content: bytes) -> None:
    broken = tmp_path / "broken.marshal"
    broken.write_bytes(content)

    assert _install_and_report(broken) == {"held": 0, "untouched": True}
    assert _install_and_report(tmp_path / "missing.marshal") == {"held": 0, "untouched": True}


@pytest.mark.parametrize(
    "program",
    [
        [1, 2, 3],  # not an SRE program
        [-1],  # words that are no SRE_CODE: OverflowError, not ValueError
        [1 << 40],
    ],
)
def test_a_program_the_regex_engine_refuses_is_compiled_by_re_instead(
    built: Path, tmp_path: Path, program: list[int]
) -> None:
    data = marshal.loads(built.read_bytes())
    data["entries"] = {("ab+c", 0): (32, program, 0, {}, (None,))}
    bad = tmp_path / "bad.marshal"
    bad.write_bytes(marshal.dumps(data))
    probe = """
import json, re
from ucf.aws import regex_cache
held = regex_cache.install()
print(json.dumps([held, bool(re.fullmatch("ab+c", "abbbc"))]))
"""

    assert json.loads(_python(probe, UCF_REGEX_CACHE=str(bad))) == [1, True]


def test_importing_a_handler_installs_the_cache_before_anything_compiles(built: Path) -> None:
    probe = """
import json, sys
import ucf.aws.handlers.poll_worker
from ucf.aws import regex_cache
print(json.dumps([regex_cache.installed(), "urllib3" in sys.modules]))
"""

    assert json.loads(_python(probe, UCF_REGEX_CACHE=str(built))) == [True, False]


def test_without_a_built_file_the_handlers_leave_re_as_it_is() -> None:
    probe = """
import json
import ucf.aws.handlers.api
from ucf.aws import regex_cache
print(json.dumps(regex_cache.installed()))
"""
    environ = {"UCF_REGEX_CACHE": ""}

    assert not regex_cache.SHIPPED.exists()  # a checkout ships none: make -C deploy app does
    assert json.loads(_python(probe, **environ)) is False


def test_the_deploy_build_ships_a_cache_made_by_the_functions_python() -> None:
    makefile = (ROOT / "deploy" / "Makefile").read_text()
    step = re.search(r"\$\(BYTECODE_PYTHON\) -m ucf\.aws\.regex_cache (\S+)", makefile)

    assert step is not None
    assert step.group(1) == '"$(BUILD_DIR)/ucf/aws/regex-cache.marshal"'
    assert regex_cache.SHIPPED.name == "regex-cache.marshal"
    assert regex_cache.SHIPPED.parent.name == "aws"


def test_a_cache_built_on_a_machine_of_the_other_byte_order_is_never_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large character set's block table is packed into native words: the program a
    machine of the other byte order builds passes the engine's check here but matches
    other characters, so the byte order is part of what a cache must have been built by."""
    pattern = "[\u0100-\u017f\u0400-\u04ff\u4e00-\u4e0f]+"
    native = re._compiler._bytes_to_codes
    other: Literal["little", "big"] = "big" if sys.byteorder == "little" else "little"

    def swapped(table: bytes) -> list[int]:
        words = range(0, len(table), _sre.CODESIZE)
        return [int.from_bytes(table[i : i + _sre.CODESIZE], other) for i in words]

    assert native(bytes(range(8))) != swapped(bytes(range(8)))
    monkeypatch.setattr(re._compiler, "_bytes_to_codes", swapped)
    final_flags, program, groups, names, by_index = regex_cache._entry(pattern, 0)
    monkeypatch.setattr(re._compiler, "_bytes_to_codes", native)
    foreign = _sre.compile(pattern, final_flags, program, groups, dict(names), by_index)
    assert re.fullmatch(pattern, "\u0100\u0401\u4e01")
    assert not foreign.fullmatch("\u0100\u0401\u4e01"), "accepted, and wrong"

    here = regex_cache.compiler_digest()
    monkeypatch.setattr(sys, "byteorder", other)
    assert regex_cache.compiler_digest() != here


def _feed_when_read(fifos: list[Path], content: bytes, threads: list[threading.Thread]) -> None:
    """Write ``content`` into each FIFO a thread opens, one at a time, each only once the
    thread reading the one before is done; the first only once both are open, or 2 s
    after one is if only one is (an install waiting for the other never opens its file)."""
    writers: dict[Path, int] = {}
    waited = time.monotonic() + 60.0
    while len(writers) < len(fifos) and time.monotonic() < waited:
        for fifo in fifos:
            if fifo not in writers:
                with contextlib.suppress(OSError):  # ENXIO: nobody reads it yet
                    writers[fifo] = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                    waited = min(waited, time.monotonic() + 2.0)
        time.sleep(0.01)
    for fifo, descriptor in writers.items():
        os.set_blocking(descriptor, True)
        os.write(descriptor, content)
        os.close(descriptor)
        threads[fifos.index(fifo)].join(30)


def test_two_installs_racing_leave_re_as_it_was_after_uninstall(
    built: Path, tmp_path: Path
) -> None:
    """Two threads installing at once both found no cache installed, and the second
    wrapped ``re`` around the first one's wrapper, which stayed after ``uninstall()``
    (results right, every compile through a dead cache). One install at a time."""
    fifos = [tmp_path / "first.marshal", tmp_path / "second.marshal"]
    for fifo in fifos:
        os.mkfifo(fifo)
    original = re._compiler.compile
    served: list[int] = []
    threads = [
        threading.Thread(
            target=lambda path=fifo: served.append(regex_cache.install(path)), daemon=True
        )
        for fifo in fifos
    ]
    try:
        for thread in threads:
            thread.start()
        _feed_when_read(fifos, built.read_bytes(), threads)
        for thread in threads:
            thread.join(30)
        assert sorted(served) == [0, len(_entries(built))]
    finally:
        regex_cache.uninstall()
    assert re._compiler.compile is original


def test_a_shipped_cache_that_goes_unused_is_said_once_at_the_cold_start(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A runtime whose ``re`` is not the build's ignores the file, rightly, but said
    nothing: the cold start's gain was gone without a sign. The container says it once,
    as the environment starts (logging is set up only then), at INFO."""
    data = marshal.loads(built.read_bytes())
    data["compiler"] = "0" * 64
    foreign = tmp_path / "foreign.marshal"
    foreign.write_bytes(marshal.dumps(data))
    monkeypatch.setattr(regex_cache, "_outcome", None)

    assert regex_cache.install(foreign) == 0
    found = regex_cache.outcome()
    assert found is not None
    assert found.unused_file
    assert "another regex compiler" in found.why
    container = Container("regex-probe", environ={})
    try:
        with caplog.at_level(logging.INFO, logger="ucf.aws"):
            container.call(lambda: None)
            container.call(lambda: None)  # a warm invocation says nothing more
    finally:
        container.close()
    said = [r.getMessage() for r in caplog.records if "regex cache" in r.getMessage()]
    assert len(said) == 1
    assert "another regex compiler" in said[0]

    monkeypatch.setattr(regex_cache, "_outcome", None)
    assert regex_cache.install(tmp_path / "missing.marshal") == 0
    missing = regex_cache.outcome()
    assert missing is not None
    assert not missing.unused_file  # a checkout ships none: nothing lost


def test_a_build_python_without_res_sources_builds_the_artifact_without_a_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``make -C deploy app`` failed outright with a Python stripped of ``re``'s sources
    (nothing to key a cache on), though the artifact is good without one."""
    destination = tmp_path / "regex-cache.marshal"
    destination.write_bytes(b"an earlier build's")
    monkeypatch.setattr(re, "__file__", str(tmp_path / "stripped" / "re" / "__init__.py"))
    assert regex_cache.compiler_digest() is None

    regex_cache.main([str(destination)])

    assert not destination.exists()
    assert "no regex cache built" in capsys.readouterr().err


def test_a_pattern_whose_parse_warns_is_not_recorded_so_it_still_warns(tmp_path: Path) -> None:
    """Served from the cache, a pattern is never parsed, so ``re``'s parse-time warnings
    (a possible nested set, …) were no longer given: such a pattern is left out."""
    (tmp_path / "warns_7f3.py").write_text(
        'import re\nNESTED = re.compile("[[a]x-7f3")\nPLAIN = re.compile("plain-7f3+")\n'
    )
    built = tmp_path / "cache.marshal"
    probe = f"""
import warnings
from pathlib import Path
from ucf.aws import regex_cache
warnings.simplefilter("ignore")
regex_cache.build(Path({str(built)!r}), ["warns_7f3"])
"""
    _python(probe, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))

    entries = _entries(built)
    assert ("plain-7f3+", 0) in entries
    assert ("[[a]x-7f3", 0) not in entries
