"""``ucf store init`` as a user runs it: the real console script, real files."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from ucf.stores.sqlite.schema import MIGRATIONS

UCF = str(Path(sys.executable).parent / "ucf")


def ucf(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [UCF, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_init_creates_the_sqlite_store_then_reports_nothing_to_do(tmp_path: Path) -> None:
    path = tmp_path / "new" / "ucf.db"
    first = ucf("store", "init", "--store", f"sqlite://{path}")
    assert first.returncode == 0, first.stderr
    assert f"created SQLite file {path}" in first.stdout
    for migration in MIGRATIONS:
        assert f"applied migration {migration.version}: {migration.summary}" in first.stdout
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == MIGRATIONS[-1].version

    second = ucf("store", "init", "--store", f"sqlite://{path}")
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout


def test_init_defaults_to_the_data_dir(tmp_path: Path) -> None:
    env = {"UCF_DATA_DIR": str(tmp_path / "data")}
    env_without_store = {k: v for k, v in os.environ.items() if k != "UCF_STORE"}
    result = subprocess.run(
        [UCF, "store", "init"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env_without_store, **env},
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "ucf.db").is_file()


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_corrupt_sqlite_file_is_one_line_naming_it_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "ucf.db"
    path.write_text("garbage " * 500)
    line = _one_line_error(ucf("store", "init", "--store", f"sqlite://{path}"))
    assert str(path) in line
    assert "move the file aside" in line
    assert path.read_text() == "garbage " * 500, "a corrupt file is left for the user to inspect"


def test_an_unknown_store_scheme_is_one_line_with_the_accepted_forms() -> None:
    line = _one_line_error(ucf("store", "init", "--store", "mysql://db/ucf"))
    assert "unknown store URL scheme 'mysql'" in line
    assert "sqlite:///abs/path/ucf.db" in line


def test_an_unwritable_location_is_one_line_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    line = _one_line_error(ucf("store", "init", "--store", f"sqlite://{tmp_path}/file/ucf.db"))
    assert "not a directory" in line
    assert "UCF_STORE" in line


def test_storage_md_shows_what_init_prints(tmp_path: Path) -> None:
    """docs/storage.md's session is the command's output, migration for migration: it
    listed six migrations under "schema version 7" once the seventh was added."""
    root = tmp_path / "var/lib/ucf"
    store = f"sqlite://{root}/ucf.db"
    session = "".join(
        f"$ ucf store init --store sqlite:///var/lib/ucf/ucf.db\n{run.stdout}"
        for run in (ucf("store", "init", "--store", store), ucf("store", "init", "--store", store))
    ).replace(str(tmp_path), "")
    page = (Path(__file__).resolve().parents[2] / "docs/storage.md").read_text(encoding="utf-8")
    assert f"```\n{session}```" in page
