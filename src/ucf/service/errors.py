"""Errors a use case reports to its caller, each with an HTTP-ish meaning.

The web layer maps ``status`` and ``code`` to a JSON error body; the CLI prints
``message``. Messages never contain credentials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ServiceError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFoundError(ServiceError):
    status = 404
    code = "not_found"


class ConflictError(ServiceError):
    status = 409
    code = "conflict"


class PreconditionFailed(ServiceError):
    """A write made on a version that is no longer the stored one (HTTP ``If-Match``)."""

    status = 412
    code = "precondition_failed"


class ValidationFailed(ServiceError):
    status = 422
    code = "invalid"

    @classmethod
    def from_problems(cls, message: str, problems: Sequence[Any]) -> ValidationFailed:
        return cls(
            message,
            [{"path": p.path, "message": p.message, "hint": p.hint} for p in problems],
        )

    @staticmethod
    def raise_any(refused: Sequence[ValidationFailed]) -> None:
        """Raise the one refusal of the settings or the credentials as it is, or both as
        one (every problem of each listed), so its message names the form at fault."""
        if len(refused) == 1:
            raise refused[0]
        if refused:
            details = [p for failed in refused for p in failed.details or []]
            raise ValidationFailed("the settings and the credentials are not valid", details)


class ForbiddenError(ServiceError):
    status = 403
    code = "forbidden"
