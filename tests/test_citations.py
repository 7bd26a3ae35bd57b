"""Project files cite the providers' own documentation, never notes users do not have.

The catalogue's API facts were first collected in private notes outside the
repository; a citation of them (in a docstring, a docs page or the published
JSON Schema) sends a user to a file they cannot open. Provider links belong in
a descriptor's ``references``, which the connector pages list under Sources.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRIVATE_NOTES = re.compile(r"api-facts|\.\./shared/|/work/shared/", re.IGNORECASE)
THIS_FILE = Path(__file__).resolve().relative_to(ROOT).as_posix()


UNTRACKED_DIRS = frozenset({".git", ".venv", ".tools", "node_modules", "__pycache__"})


def _tracked_files() -> list[str]:
    """The files git tracks; outside a checkout (an unpacked sdist), every file but the
    installed tooling's."""
    try:
        listing = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return [
            path.relative_to(ROOT).as_posix()
            for path in ROOT.rglob("*")
            if path.is_file() and not UNTRACKED_DIRS & set(path.relative_to(ROOT).parts)
        ]
    return [name for name in listing.decode().split("\0") if name]


def test_no_tracked_file_cites_the_private_api_notes() -> None:
    hits = []
    for name in _tracked_files():
        path = ROOT / name
        if name == THIS_FILE or not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        for number, line in enumerate(text.splitlines(), start=1):
            if PRIVATE_NOTES.search(line):
                hits.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not hits, (
        "cite the provider's own documentation (a descriptor's 'references' for connector "
        "facts) instead of notes users do not have:\n" + "\n".join(hits)
    )
