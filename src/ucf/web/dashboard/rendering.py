"""Pages out of Jinja2 templates, with the dashboard's headers, icons and time formats.

Autoescape is on for every template, so whatever a descriptor, a config value
or an upstream error says is shown as text. The only markup not written in a
template is the icons' SVG, built here from the vendored Simple Icons paths.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from ucf.web.dashboard.security import SECURITY_HEADERS
from ucf.web.prefix import root_of

HERE: Final = Path(__file__).parent
TEMPLATES: Final = HERE / "templates"
STATIC: Final = HERE / "static"
STATIC_PREFIX: Final = "/static/dashboard/"
SIMPLE_ICONS: Final = STATIC / "vendor" / "simple-icons-16.37.0"


# --------------------------------------------------------------------------- static files


@cache
def static_version(name: str) -> str:
    """A content hash for cache busting: the URL changes whenever the file does."""
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """The app's path of a static file; a template puts ``{{ root }}`` (the prefix) before it."""
    return f"{STATIC_PREFIX}{name}?v={static_version(name)}"


# --------------------------------------------------------------------------- icons


@cache
def _brands() -> dict[str, tuple[str, str]]:
    """slug → (brand colour, SVG path) of the vendored icons."""
    entries = json.loads((SIMPLE_ICONS / "simple-icons.json").read_text(encoding="utf-8"))
    brands: dict[str, tuple[str, str]] = {}
    for entry in entries:
        slug = str(entry.get("slug") or entry["title"].lower())
        svg = (SIMPLE_ICONS / "icons" / f"{slug}.svg").read_text(encoding="utf-8")
        path = re.search(r'<path d="([^"]+)"', svg)
        if path is not None:
            brands[slug] = (str(entry["hex"]), path.group(1))
    return brands


MONOGRAM_TONES: Final = 6


def monogram(name: str) -> str:
    words = [w for w in re.split(r"[\s_-]+", name) if w]
    letters = "".join(w[0] for w in words[:2]) if len(words) > 1 else name[:1]
    return letters.upper() or "?"


def icon(slug: str, name: str, size: str = "md") -> Markup:
    """The connector's brand icon on a tile, or a monogram when we ship none."""
    brand = _brands().get(slug)
    if brand is None:
        tone = int(hashlib.sha256(slug.encode()).hexdigest(), 16) % MONOGRAM_TONES
        return Markup(
            '<span class="tile tile--{size} tile--mono tone-{tone}" aria-hidden="true">{text}</span>'
        ).format(size=size, tone=tone, text=monogram(name))
    colour, path = brand
    return Markup(
        '<span class="tile tile--{size}" aria-hidden="true"><svg viewBox="0 0 24 24" '
        'xmlns="http://www.w3.org/2000/svg" focusable="false" fill="#{colour}">'
        '<path d="{path}"/></svg></span>'
    ).format(size=size, colour=colour, path=path)


# --------------------------------------------------------------------------- time


def ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = (now - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size:
            amount = f"{int(seconds // size)} {unit}"
            return f"in {amount}" if future else f"{amount} ago"
    return "just now"


def absolute(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else ""


def milliseconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


# --------------------------------------------------------------------------- pages


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(static_url=static_url, icon=icon, ago=ago, absolute=absolute)
    environment.filters["ms"] = milliseconds
    environment.filters["json_pretty"] = lambda value: json.dumps(
        value, indent=2, ensure_ascii=False, sort_keys=True
    )
    return environment


ENVIRONMENT: Final = _environment()


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
) -> HTMLResponse:
    # root: the prefix ucf is served under; every link, form and asset URL starts with it.
    values = {"request": request, "root": root_of(request.scope), **context}
    page = ENVIRONMENT.get_template(template).render(values)
    return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)


def redirect(location: str) -> RedirectResponse:
    """303: after a POST, the browser GETs the page (POST/redirect/GET)."""
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)


def with_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
