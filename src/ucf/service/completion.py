"""Store steps that finish even when their caller is cancelled: see
:mod:`ucf.runtime.completion` (there so that the runtime's OAuth flow can use it too)."""

from ucf.runtime.completion import to_the_end

__all__ = ["to_the_end"]
