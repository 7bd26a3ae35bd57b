"""The web interface: management API, webhook gateway, health and metrics in one ASGI app."""

from ucf.web.app import BackgroundService, create_app, default_services

__all__ = ["BackgroundService", "create_app", "default_services"]
