"""Hints name a ``ucf`` the user's shell runs: Debian's own ``/usr/bin/ucf`` is another program."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ucf.cli.invocation import ucf_command

OWN = Path(sys.executable).parent / "ucf"


def _debian_ucf(tmp_path: Path) -> Path:
    """A stand-in for dpkg's Update Configuration File tool, first on PATH."""
    bin_dir = tmp_path / "usr-bin"
    bin_dir.mkdir()
    script = bin_dir / "ucf"
    script.write_text("#!/bin/sh\necho '*** ERROR: Need exactly two arguments' >&2\nexit 2\n")
    script.chmod(0o755)
    return bin_dir


def test_the_bare_name_when_path_finds_this_installation() -> None:
    assert ucf_command(environ={"PATH": f"{OWN.parent}{os.pathsep}/usr/bin"}) == "ucf"


def test_the_environments_script_by_path_when_path_finds_another_ucf(tmp_path: Path) -> None:
    other = _debian_ucf(tmp_path)
    command = ucf_command(environ={"PATH": f"{other}{os.pathsep}/usr/bin"}, cwd=tmp_path)
    assert Path(command) == OWN.absolute()
    inside = ucf_command(environ={"PATH": str(other)}, cwd=OWN.parent.parent)
    assert inside == f"{OWN.parent.name}/ucf"  # relative to where the user stands
    no_ucf_at_all = ucf_command(environ={"PATH": str(tmp_path / "nowhere")}, cwd=tmp_path)
    assert Path(no_ucf_at_all) == OWN.absolute()


def test_under_uv_run_the_environment_uv_put_first_is_not_the_users(tmp_path: Path) -> None:
    """``make sandbox`` runs ``uv run ucf sandbox``: uv prepends .venv/bin for that process."""
    other = _debian_ucf(tmp_path)
    by_make = {"PATH": f"{OWN.parent}{os.pathsep}{other}", "UV_RUN_RECURSION_DEPTH": "1"}
    assert Path(ucf_command(environ=by_make, cwd=tmp_path)) == OWN.absolute()
    activated_too = {
        "PATH": os.pathsep.join([str(OWN.parent), str(OWN.parent), str(other)]),
        "UV_RUN_RECURSION_DEPTH": "1",
    }
    assert ucf_command(environ=activated_too) == "ucf"


def test_connectors_new_hints_a_validate_command_that_runs_this_ucf(tmp_path: Path) -> None:
    """Outside the activated environment the hint's bare ``ucf`` would run Debian's tool."""
    other = _debian_ucf(tmp_path)
    result = subprocess.run(
        [str(OWN), "connectors", "new", "acme"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
        env={**os.environ, "PATH": f"{other}{os.pathsep}/usr/bin{os.pathsep}/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    hint = result.stderr.strip().split("next: ", 1)[1]
    assert hint == f"{OWN.absolute()} connectors validate acme.json"
    validate = subprocess.run(
        hint.split(), capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False
    )
    assert validate.returncode == 0, validate.stderr
