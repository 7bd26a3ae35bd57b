"""HTTP conditional requests on a connector: ``ETag`` out, ``If-Match`` in (RFC 9110 §13.1.1).

An API script that GETs a connector, works on it and PUTs it back overwrote any
edit saved meanwhile without a word (the dashboard's editor is protected by the
``saved_at`` its page carries). The standard way: a GET answers the stored
version's ``ETag``; a write sent with ``If-Match`` is made only if one of its
tags is still the stored version's, else 412. Without the header, or with
``If-Match: *`` (the connector exists, which every write already requires), a
write does what it always did.
"""

from __future__ import annotations

import re
from typing import Final

from fastapi import Request

__all__ = ["if_match"]

_ENTITY_TAG: Final = re.compile(r'\s*(\*|(W/)?"([\x21\x23-\x7e\x80-\xff]*)")\s*(?:,|$)')
"""One member of RFC 9110's ``If-Match = "*" / #entity-tag`` list, with its comma.
An ``etagc`` is any visible character but DQUOTE (or obs-text)."""


def if_match(request: Request) -> frozenset[str] | None:
    """The strong entity tags (quoted, as :attr:`Connector.etag` gives them) the request's
    ``If-Match`` names; None without the header or with ``*``.

    Strong comparison (§13.1.1): a weak tag (``W/"…"``) never matches, nor does
    anything that is no entity tag, so a header naming only such is a precondition
    nothing meets (412), not one ignored. Several ``If-Match`` lines are one list.
    """
    lines = request.headers.getlist("if-match")
    if not lines:
        return None
    text = ",".join(lines)
    tags: set[str] = set()
    position = 0
    while position < len(text):
        if text[position:].strip(" \t,") == "":
            break
        found = _ENTITY_TAG.match(text, position)
        if found is None:
            # Not an entity tag: skip to the next member, which may be one.
            comma = text.find(",", position)
            position = len(text) if comma < 0 else comma + 1
            continue
        position = found.end()
        if found.group(1) == "*":
            return None
        if found.group(2) is None:
            tags.add(f'"{found.group(3)}"')
    return frozenset(tags)
