"""Store URLs: which backend, where. ``open_store`` dispatches on the scheme.

- ``sqlite:///abs/path/ucf.db`` — an absolute path (three slashes, then ``/abs``).
- ``sqlite:relative/ucf.db``, ``sqlite:./ucf.db``, ``sqlite:~/ucf.db`` — relative to
  the working directory, or to the home directory.
- ``dynamodb://TABLE?region=…&endpoint=…`` — a DynamoDB table.

Without a URL: ``$UCF_STORE``, else ``sqlite:///<data dir>/ucf.db`` where the data
dir is ``$UCF_DATA_DIR``, else ``$XDG_DATA_HOME/ucf``, else ``~/.local/share/ucf``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from ucf.stores.errors import StoreConfigError
from ucf.stores.models import StoreOptions
from ucf.stores.protocols import Store

ENV_STORE = "UCF_STORE"
ENV_DATA_DIR = "UCF_DATA_DIR"
SQLITE_FILENAME = "ucf.db"

_URL_FORMS = "use sqlite:///abs/path/ucf.db, sqlite:relative/ucf.db or dynamodb://TABLE?region=…"


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get(ENV_DATA_DIR):
        return Path(env[ENV_DATA_DIR]).expanduser()
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]).expanduser() / "ucf"
    return Path("~/.local/share/ucf").expanduser()


def resolve_store_url(url: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The URL to use: the explicit one, ``$UCF_STORE``, or the SQLite default."""
    env = os.environ if environ is None else environ
    if url:
        return url
    if env.get(ENV_STORE):
        return env[ENV_STORE]
    return f"sqlite:///{(default_data_dir(env) / SQLITE_FILENAME).resolve().as_posix().lstrip('/')}"


def store_scheme(url: str) -> str:
    scheme = urlsplit(url).scheme.lower() if "://" in url or ":" in url else ""
    if not scheme:
        raise StoreConfigError(f"store URL {url!r} has no scheme", _URL_FORMS)
    return scheme


def sqlite_path(url: str) -> Path:
    """The database file a ``sqlite:`` URL names (not resolved against the filesystem)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise StoreConfigError(f"{url!r} is not a sqlite: URL", _URL_FORMS)
    if parts.query or parts.fragment:
        raise StoreConfigError(f"store URL {url!r} has a query or fragment", _URL_FORMS)
    if url[len("sqlite:") :].startswith("//"):
        if parts.netloc:
            raise StoreConfigError(
                f"store URL {url!r} names a host ({parts.netloc!r}); SQLite is a local file",
                _URL_FORMS,
            )
        path = parts.path
    else:
        path = url[len("sqlite:") :]
    if not path or path in {"/", ":memory:", "/:memory:"}:
        raise StoreConfigError(f"store URL {url!r} names no database file", _URL_FORMS)
    return Path(path).expanduser()


Opener = Callable[[str, StoreOptions], Store]


def _open_sqlite(url: str, options: StoreOptions) -> Store:
    from ucf.stores.sqlite import open_sqlite_store

    return open_sqlite_store(sqlite_path(url), options)


def _open_dynamodb(url: str, options: StoreOptions) -> Store:
    from ucf.stores.dynamodb import open_dynamodb_store

    return open_dynamodb_store(url, options)


OPENERS: dict[str, Opener] = {
    "sqlite": _open_sqlite,
    "dynamodb": _open_dynamodb,
}


def open_store(
    url: str | None = None,
    *,
    options: StoreOptions | None = None,
    environ: Mapping[str, str] | None = None,
) -> Store:
    """A ``Store`` for ``url`` (or the configured default); nothing is opened until
    ``init()``/``async with``, so a bad URL fails here and an unreachable store there."""
    resolved = resolve_store_url(url, environ)
    scheme = store_scheme(resolved)
    opener = OPENERS.get(scheme)
    if opener is None:
        raise StoreConfigError(f"unknown store URL scheme {scheme!r} in {resolved!r}", _URL_FORMS)
    return opener(resolved, options or StoreOptions())
