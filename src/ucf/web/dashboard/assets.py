"""The dashboard's own CSS and JS and its vendored icons, served from memory.

Only files under ``static/`` that were there at start-up can be served (a
lookup in a dict, so no path can reach outside it). URLs carry a content hash
(:func:`~ucf.web.dashboard.rendering.static_url`), so browsers may keep them.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from functools import cache
from typing import Final

from fastapi import APIRouter, Request, Response

from ucf.web.dashboard.rendering import STATIC

router = APIRouter(include_in_schema=False)

_TYPES: Final = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


@cache
def assets() -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    for path in sorted(STATIC.rglob("*")):
        if not path.is_file():
            continue
        body = path.read_bytes()
        media = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        found[path.relative_to(STATIC).as_posix()] = Asset(
            body,
            media or "application/octet-stream",
            '"' + hashlib.sha256(body).hexdigest()[:16] + '"',
        )
    return found


@router.get("/static/dashboard/{name:path}")
async def asset(request: Request, name: str) -> Response:
    found = assets().get(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    headers = {
        "ETag": found.etag,
        "Cache-Control": "public, max-age=31536000, immutable"
        if request.query_params.get("v")
        else "public, max-age=300",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == found.etag:
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)
