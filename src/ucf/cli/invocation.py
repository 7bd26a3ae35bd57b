"""How a hint should spell this installation's ``ucf`` so that a shell runs it.

ucf's ``ucf`` script lives in the project's virtual environment (``.venv/bin``),
which is on ``PATH`` only once activated; ``make serve`` and ``make sandbox`` run
it through uv. Meanwhile Debian and Ubuntu ship an unrelated ``/usr/bin/ucf``
(dpkg's "Update Configuration File" tool), so a hint that says ``ucf signals
tail …`` runs that one outside the environment and answers ``*** ERROR: Need
exactly two arguments``. Hints name the environment's script by its path
whenever the bare name would not find it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path


def ucf_command(*, environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    """``ucf`` when the user's shell finds this installation's script, else its path.

    The shell's ``PATH`` is ``environ``'s (default: the process's own), except
    under ``uv run`` (``make serve``, ``make sandbox``), which put the
    environment's ``bin`` first for this process only: the user's shell does not
    have it there. The path is made relative to ``cwd`` (default: the working
    directory) when the script is under it (``.venv/bin/ucf``), absolute
    otherwise, and quoted for a shell.
    """
    env = os.environ if environ is None else environ
    own = Path(sys.executable).parent / "ucf"
    if not own.is_file():  # run as `python -m` or from an unusual layout: nothing better
        return "ucf"
    entries = env.get("PATH", "").split(os.pathsep)
    if env.get("UV_RUN_RECURSION_DEPTH") and entries and _same_file(Path(entries[0]), own.parent):
        entries = entries[1:]  # what uv run added; an activated environment stays listed
    found = shutil.which("ucf", path=os.pathsep.join(entries))
    if found is not None and _same_file(Path(found), own):
        return "ucf"
    here = (cwd or Path.cwd()).resolve()
    absolute = own.absolute()
    try:
        shown = str(absolute.relative_to(here))
    except ValueError:
        shown = str(absolute)
    return shlex.quote(shown)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False
