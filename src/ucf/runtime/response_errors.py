"""Failures an API reports in the response body, whatever the HTTP status.

Some APIs do not say "no" with the status line. Slack's Web API answers a
revoked token with HTTP 200 and ``{"ok": false, "error": "invalid_auth"}``;
Linear's GraphQL answers a bad key with HTTP 400 and
``{"errors": [{"extensions": {"code": "AUTHENTICATION_ERROR"}}]}`` and throttles
with the same shape and ``RATELIMITED``. Read by status alone, the first is an
empty page and a healthy check, the second a bare "HTTP 400".

A descriptor's ``responseErrors`` says where the codes are and what they mean;
:class:`ResponseErrorClassifier` is that part compiled once. It reads every
code at ``codePath`` and ranks them: a credential code wins (retrying cannot
help), then a rate-limit code (wait and retry, like HTTP 429), then any code
not listed in ``ignoreCodes`` fails the request. This module is pure — JSON in,
:class:`BodyError` out; :mod:`ucf.runtime.http` turns the verdict into its typed
errors inside the retry loop, so polls and health checks read bodies the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol

from ucf.core.records import datarecord
from ucf.runtime.redaction import redact

if TYPE_CHECKING:
    from ucf.core.descriptor import ConnectorDescriptor, ResponseErrors
    from ucf.core.descriptor_view import ConnectorView, ResponseErrorsView
    from ucf.core.jsonpath import CompiledPath

__all__ = [
    "BodyError",
    "BodyErrorKind",
    "ResponseErrorCheck",
    "ResponseErrorClassifier",
    "classifier_for",
]

_SHOWN_CODES: Final = 3
_MAX_CODE_LENGTH: Final = 64


class BodyErrorKind(enum.Enum):
    """What the codes in a body mean for the request that got them."""

    AUTH = "auth"
    """The credentials are wrong, revoked or lack scope: fail at once."""

    RATE_LIMITED = "rate_limited"
    """Slow down: wait (``Retry-After`` or reset headers) and try again."""

    FAILED = "failed"
    """Any other code: the request failed, and trying again will not change that."""


@datarecord
class BodyError:
    """The verdict on one body: its kind and the codes that decided it."""

    kind: BodyErrorKind
    codes: tuple[str, ...]

    @property
    def summary(self) -> str:
        """The codes for a message: a few, shortened, with anything credential-shaped masked.

        Codes come from the upstream, so they are treated as untrusted text.
        """
        shown = [_printable(code) for code in self.codes[:_SHOWN_CODES]]
        more = len(self.codes) - len(shown)
        return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")


def _printable(code: str) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in code)
    if len(text) > _MAX_CODE_LENGTH:
        text = text[: _MAX_CODE_LENGTH - 1] + "…"
    return redact(text)


class ResponseErrorCheck(Protocol):
    """Reads a parsed JSON body; None when it reports no failure.

    The HTTP layer depends on this, not on descriptors, so a native source can
    bring its own reading of its API's error bodies.
    """

    def classify(self, body: Any) -> BodyError | None: ...


@datarecord
class _CodeRule:
    """Codes of one meaning; the first rule with a matching code decides."""

    kind: BodyErrorKind
    codes: frozenset[str]

    def match(self, found: Iterable[str]) -> BodyError | None:
        hits = tuple(code for code in found if code in self.codes)
        return BodyError(self.kind, hits) if hits else None


def _as_code(value: Any) -> str | None:
    """Error codes are strings (Slack, GraphQL) or numbers; anything else is not a code."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


class ResponseErrorClassifier:
    """A descriptor's ``responseErrors``, compiled: the path parsed, the code sets built.

    ``Slack``: ``codePath: "$.error"`` finds ``invalid_auth`` in
    ``{"ok": false, "error": "invalid_auth"}`` and nothing in ``{"ok": true, …}``.
    ``Linear``: ``codePath: "$.errors[*].extensions.code"`` finds every GraphQL
    error's code. A body without codes (or not JSON at all) reports nothing; the
    HTTP status then decides on its own. A body whose codes are all ignored
    reports nothing either, so ``ignoreCodes`` never turns an HTTP error status
    into a success — it keeps a 2xx with harmless partial errors a success.
    """

    __slots__ = ("_ignored", "_path", "_rules", "spec")

    def __init__(self, spec: ResponseErrors | ResponseErrorsView) -> None:
        # Here, not at module level: the HTTP client imports this module, and a
        # process that only delivers to a sink never compiles a descriptor's path.
        from ucf.core.jsonpath import compile_path

        self.spec = spec
        self._path: CompiledPath = compile_path(spec.code_path)
        self._rules = (
            _CodeRule(BodyErrorKind.AUTH, frozenset(spec.auth_codes)),
            _CodeRule(BodyErrorKind.RATE_LIMITED, frozenset(spec.rate_limit_codes)),
        )
        self._ignored = frozenset(spec.ignore_codes)

    def codes(self, body: Any) -> tuple[str, ...]:
        """Every code at ``codePath``, in document order, without repeats."""
        found = (_as_code(value) for value in self._path.values(body))
        return tuple(dict.fromkeys(code for code in found if code is not None))

    def classify(self, body: Any) -> BodyError | None:
        found = self.codes(body)
        if not found:
            return None
        for rule in self._rules:
            verdict = rule.match(found)
            if verdict is not None:
                return verdict
        failing = tuple(code for code in found if code not in self._ignored)
        return BodyError(BodyErrorKind.FAILED, failing) if failing else None

    def __repr__(self) -> str:
        return f"ResponseErrorClassifier({self.spec.code_path!r})"


def classifier_for(
    descriptor: ConnectorDescriptor | ConnectorView,
) -> ResponseErrorClassifier | None:
    """The descriptor's compiled ``responseErrors``; None when it declares none."""
    spec = descriptor.response_errors
    return ResponseErrorClassifier(spec) if spec is not None else None
