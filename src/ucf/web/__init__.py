"""The web interface: management API, webhook gateway, health and metrics in one ASGI app.

``create_app`` is imported on first use: the webhook front (:mod:`ucf.web.front`)
must not pull FastAPI in on a Lambda that only receives deliveries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ucf.web.app import BackgroundService, create_app, default_services

__all__ = ["BackgroundService", "create_app", "default_services"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ucf.web import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
