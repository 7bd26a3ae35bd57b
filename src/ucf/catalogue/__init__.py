"""The connectors ucf ships: one JSON descriptor per file, named after its id."""

from __future__ import annotations

import errno
import json
import os
import re
from typing import Any, Final

_HERE: Final = os.path.dirname(__file__)
_ID: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
"""A connector id as the descriptor schema allows it (``CONNECTOR_ID_PATTERN``): the only
strings looked up as ``<id>.json``, so no other one can name a path."""


_NO_SUCH_FILE: Final = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG})
"""What opening ``<id>.json`` answers when no such file can be there: none, a "folder" that
is inside a file (an archive's), a name too long for one."""


def builtin_descriptors() -> list[dict[str, Any]]:
    """Every shipped descriptor as its JSON object, ordered by id."""
    from importlib import resources

    files = sorted(
        (entry for entry in resources.files(__name__).iterdir() if entry.name.endswith(".json")),
        key=lambda entry: entry.name,
    )
    return [json.loads(entry.read_text(encoding="utf-8")) for entry in files]


def builtin_descriptor(connector_id: str) -> dict[str, Any] | None:
    """The shipped descriptor ``connector_id`` (its entry in :func:`builtin_descriptors`),
    or None when ucf ships none.

    Read from its own file, ``<id>.json``, as a plain file: a Lambda poll worker
    or webhook delivery reads the one connector it runs, and listing and parsing
    the whole catalogue through ``importlib.resources`` to find it was ~6 ms of a
    cold start's CPU (``bench/coldstart.py``). ``tests/catalogue/test_catalogue.py``
    holds every file to its name, so the answer is the listing's. A package read
    from an archive (zipimport) has no plain files (its "folder" is inside a file:
    ``NotADirectoryError``): it looks the id up in the listing. An id too long for a
    file name (``ENAMETOOLONG``; a URL's, at the webhook gateway) names no file either.
    """
    if _ID.fullmatch(connector_id) is None:
        return None
    try:
        with open(os.path.join(_HERE, f"{connector_id}.json"), encoding="utf-8") as file:
            data: dict[str, Any] = json.load(file)
    except OSError as error:
        if error.errno not in _NO_SUCH_FILE:
            raise  # a shipped file there but unreadable (EACCES, EIO) is no missing connector
        if os.path.isdir(_HERE):
            return None
        return next((d for d in builtin_descriptors() if d.get("id") == connector_id), None)
    return data if data.get("id") == connector_id else None
