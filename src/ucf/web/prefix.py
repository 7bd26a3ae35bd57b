"""The path prefix ucf is served under, and the dashboard's paths moved under it.

Behind a proxy at ``https://tools.example.com/ucf/`` (``ucf serve`` with a
``UCF_PUBLIC_URL`` that has a path), or behind an API Gateway stage or a custom
domain's base path, the browser sees every page under a prefix that ucf's
routes do not have: the proxy (or API Gateway) takes it off before ucf sees the
request. ASGI carries it as ``root_path`` (uvicorn's ``--root-path``; the Lambda
API function sets it from the event), and the routes match on the path without
it, as Starlette's router does.

The routes, redirects and templates keep writing the app's own paths
(``/projects/default/connectors``); what reaches the browser is moved under the
prefix here, in one place: every link and form of a template starts with
``{{ root }}``, a redirect's ``Location`` and a cookie's ``Path`` are prefixed
where the dashboard answers (:func:`public_path`), and a path the browser sends
back (a ``Referer``) loses it again (:func:`app_path`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["app_path", "cookie_path", "public_path", "root_of"]


def root_of(scope: Mapping[str, Any]) -> str:
    """The prefix of this request, without a trailing ``/``; ``""`` at a host's root.

    ``app_root_path`` first: Starlette keeps the server's ``root_path`` there once a
    mount has extended ``root_path`` for its own routes (ucf mounts none today).
    """
    root: str = scope.get("app_root_path", scope.get("root_path", "")) or ""
    return root.rstrip("/")


def public_path(scope: Mapping[str, Any], path: str) -> str:
    """The app's ``path`` (``/…``) as the browser must ask for it: under the prefix.

    Only a path of this app moves: a URL of another site (``https://…``), a
    protocol-relative one (``//…``), a fragment and a relative reference are left
    as they are.
    """
    if not path.startswith("/") or path.startswith("//"):
        return path
    return root_of(scope) + path


def cookie_path(scope: Mapping[str, Any], path: str = "/") -> str:
    """A cookie's ``Path`` for the app's ``path``: the site's root is the prefix itself.

    ``/ucf`` (not ``/ucf/``) covers ``/ucf`` and everything under ``/ucf/`` and
    nothing else (RFC 6265 §5.1.4: ``/ucfx`` does not path-match it), so neither
    another application on the proxy's host nor a second ucf under another prefix
    receives this one's session, and a logout here drops only this one's cookie.
    """
    root = root_of(scope)
    if path == "/":
        return root or "/"
    return root + path


def app_path(scope: Mapping[str, Any], path: str) -> str | None:
    """A path the browser used (a ``Referer``'s) as the app's own path, or None when it
    is not under this app's prefix (another application on the same host)."""
    root = root_of(scope)
    if not root:
        return path
    if path == root:
        return "/"
    if path.startswith(root + "/"):
        return path[len(root) :]
    return None
