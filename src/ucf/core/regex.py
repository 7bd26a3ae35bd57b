"""User-supplied regular expressions, always on RE2: linear time whatever the input.

RE2's C++ side logs parse errors to stderr unless told not to; a descriptor
author should see one clean problem line from ``ucf connectors validate``, not
a native log line, so every compile goes through :func:`compile_regex`.
"""

from __future__ import annotations

import functools
from typing import Any

import re2


class RegexError(ValueError):
    """A pattern RE2 refuses; the message says why in plain text."""


@functools.lru_cache(maxsize=512)
def compile_regex(pattern: str) -> Any:
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        reason = error.args[0] if error.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(str(reason)) from None
