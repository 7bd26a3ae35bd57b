"""The "no value here" marker of JSONPath lookups, apart from JSONPath itself.

:data:`MISSING` is what :mod:`ucf.core.jsonpath` returns when no node matched;
code that only needs to recognise it (the payload helpers, the HTTP client)
imports it from here and so does not load the JSONPath library.
"""

from __future__ import annotations

import enum
from typing import Final, Literal

__all__ = ["MISSING", "Missing"]


class Missing(enum.Enum):
    """The type of :data:`MISSING`; an enum so ``x is MISSING`` narrows types."""

    MISSING = "MISSING"

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing.MISSING
"""No node matched. Distinct from ``None``, which is JSON ``null``."""
