"""Request bodies read once: the JSON parse FastAPI does also notes keys given twice.

A descriptor with a key given twice is a validation problem wherever one is
written (``ucf connectors validate``, the editor's Save, ``POST``/``PUT``
``/api/connectors``, ``/api/connectors/validate``) and inside the ``descriptor``
of a ``/try`` or ``/preview`` body. JSON parsers keep the last of a repeated key
without a word, so the parsed body FastAPI hands a route no longer shows them;
parsing the raw bytes again to find them cost more than the first parse
(:func:`~ucf.core.validation.loads_noting_repeats`). :class:`NotingRequest` is
the request the API's routes receive (``access.py``'s route classes make it):
FastAPI's own parse of the body goes through it, so one parse gives both.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from ucf.core.validation import Problem, duplicate_keys, loads_noting_repeats

__all__ = ["NotingRequest", "repeated_keys"]


class NotingRequest(Request):
    """A request whose :meth:`json` notes the keys its body gives twice in one object."""

    _noted: list[Problem]
    _value: Any

    async def json(self) -> Any:
        if not hasattr(self, "_noted"):
            self._value, self._noted = loads_noting_repeats(await self.body())
        return self._value


async def repeated_keys(request: Request, under: str | None = None) -> list[Problem]:
    """The keys the JSON body gives twice in one object, at their paths; with ``under``
    (a top-level key, such as ``descriptor``), only those inside its value, at paths
    relative to it (the problems of a descriptor sent inside a larger body).

    Read off the parse FastAPI made (a :class:`NotingRequest`); any other request's
    body is parsed again for them.
    """
    if isinstance(request, NotingRequest) and hasattr(request, "_noted"):
        noted = request._noted
    else:
        noted = duplicate_keys(await request.body())
    if under is None:
        return noted
    prefix = under + "."
    return [
        Problem(p.path.removeprefix(prefix), p.message, p.hint)
        for p in noted
        if p.path.startswith(prefix)
    ]
