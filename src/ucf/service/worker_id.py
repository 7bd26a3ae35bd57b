"""Who holds a lease: one name per live worker process.

A module of its own so that what only needs the name (the web front's state,
built by every API process, a Lambda's first webhook delivery included) does
not load the poll machinery and its HTTP client stack with it
(``bench/coldstart.py``).
"""

from __future__ import annotations

import os
import socket

__all__ = ["default_worker_id"]


def default_worker_id() -> str:
    """``host:pid``: unique among live workers, readable in a lease table."""
    return f"{socket.gethostname()}:{os.getpid()}"
