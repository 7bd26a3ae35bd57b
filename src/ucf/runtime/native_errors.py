"""The one error of the native-connector registry that code outside it names.

It lives apart from :mod:`ucf.runtime.native` (re-exported there and as
:data:`ucf.runtime.sources.NativeSourceMissing`) so that the poll loop can list
it among the errors that fail a poll without loading the registry, its
dataclasses and its entry-point machinery: a descriptor connector's poll (a
Lambda poll worker's cold start among them) never needs them.
"""

from __future__ import annotations

__all__ = ["NativeLoadError"]


class NativeLoadError(LookupError):
    """A native connector that is not installed, failed to load or was blocked."""
