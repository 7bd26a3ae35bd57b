"""Store URLs: which backend and where, with errors that say the accepted forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from ucf.stores import StoreConfigError, open_store, resolve_store_url
from ucf.stores.url import sqlite_path


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///var/lib/ucf/ucf.db", Path("/var/lib/ucf/ucf.db")),
        ("sqlite:data/ucf.db", Path("data/ucf.db")),
        ("sqlite:./ucf.db", Path("ucf.db")),
        ("SQLITE:///x.db", Path("/x.db")),
    ],
)
def test_sqlite_urls_name_absolute_and_relative_files(url: str, expected: Path) -> None:
    assert sqlite_path(url) == expected


def test_home_relative_sqlite_url_is_expanded() -> None:
    assert sqlite_path("sqlite:~/ucf.db") == Path.home() / "ucf.db"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sqlite://server/ucf.db", "names a host"),
        ("sqlite:///", "names no database file"),
        ("sqlite::memory:", "names no database file"),
        ("sqlite:///x.db?mode=ro", "query"),
    ],
)
def test_unusable_sqlite_urls_are_refused_with_the_accepted_forms(url: str, problem: str) -> None:
    with pytest.raises(StoreConfigError, match=problem) as caught:
        sqlite_path(url)
    assert "sqlite:///abs/path/ucf.db" in str(caught.value)


@pytest.mark.parametrize("url", ["postgres://db/ucf", "ucf.db", "/abs/ucf.db"])
def test_unknown_or_missing_scheme_is_refused(url: str) -> None:
    with pytest.raises(StoreConfigError, match="scheme"):
        open_store(url)


def test_explicit_url_beats_environment() -> None:
    env = {"UCF_STORE": "sqlite:///env.db", "UCF_DATA_DIR": "/data"}
    assert resolve_store_url("sqlite:///flag.db", env) == "sqlite:///flag.db"
    assert resolve_store_url(None, env) == "sqlite:///env.db"


def test_default_store_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    assert resolve_store_url(None, {"UCF_DATA_DIR": str(tmp_path)}) == (
        f"sqlite://{tmp_path.resolve()}/ucf.db"
    )
    xdg = resolve_store_url(None, {"XDG_DATA_HOME": str(tmp_path)})
    assert xdg == f"sqlite://{tmp_path.resolve()}/ucf/ucf.db"


def test_default_without_any_setting_is_under_the_home_directory() -> None:
    assert resolve_store_url(None, {}) == (
        f"sqlite://{(Path.home() / '.local/share/ucf/ucf.db').resolve()}"
    )
