"""SQLite backend (being written)."""

from __future__ import annotations

from pathlib import Path

from ucf.stores.models import StoreOptions
from ucf.stores.protocols import Store


def open_sqlite_store(path: Path, options: StoreOptions) -> Store:
    raise NotImplementedError("the SQLite store is being written")
