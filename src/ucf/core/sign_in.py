"""Which of a connector's ways of signing in an instance's stored credentials use.

One answer for every reader: the runtime signs in with it, the check that says
whether an instance can sign in (its page, a PATCH) checks it, and a create or a
PATCH stores it as ``authMethod``. The runtime read ``auth`` wherever no
``authMethod`` was stored, while the check inferred the method from the
credentials: an instance from before ``authMethod`` was stored, holding OAuth
tokens on a connector whose ``auth`` is an API key, read as able to sign in on
its page while every poll failed for want of a key.

Works on the descriptor models and on their views alike (a poll runs on the
view, :mod:`ucf.core.descriptor_view`, without importing the models): both
have ``auth``, ``auth_alternatives`` and ``auth_for``, and each method its
``method`` and, but for ``none``, a ``config`` with ``credential_fields``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Final, overload

from ucf.core.credential_keys import AUTH_METHOD_KEY

if TYPE_CHECKING:
    from ucf.core.descriptor import AuthDescriptor, ConnectorDescriptor
    from ucf.core.descriptor_view import AuthView, ConnectorView

_CONSENT_GRANT: Final = "refresh_token"
"""An OAuth 2.0 method whose tokens come from a user's consent (``OAUTH_CONSENT_GRANT``)."""


@overload
def sign_in_method(
    descriptor: ConnectorDescriptor,
    credentials: Mapping[str, str],
    provided: Collection[str] = (),
) -> AuthDescriptor: ...


@overload
def sign_in_method(
    descriptor: ConnectorView,
    credentials: Mapping[str, str],
    provided: Collection[str] = (),
) -> AuthView: ...


def sign_in_method(
    descriptor: ConnectorDescriptor | ConnectorView,
    credentials: Mapping[str, str],
    provided: Collection[str] = (),
) -> AuthDescriptor | AuthView:
    """The method ``credentials`` sign in with: the one their ``authMethod`` names; without
    one, ``auth`` when its required fields are all there, else the one alternative whose
    are (an OAuth consent's only with one of its tokens); ``auth`` when none or several
    are. ``provided``: fields given elsewhere (the operator's registered OAuth app)."""
    if credentials.get(AUTH_METHOD_KEY) or not descriptor.auth_alternatives:
        return descriptor.auth_for(credentials)
    present = {key for key, value in credentials.items() if value} | set(provided)
    auth: Any = descriptor.auth
    if _complete(auth, present):
        return auth  # type: ignore[no-any-return]
    fitting = [method for method in descriptor.auth_alternatives if _complete(method, present)]
    if len(fitting) != 1:
        return auth  # type: ignore[no-any-return]
    chosen = fitting[0]
    consent = _consent(chosen)
    if (
        consent is not None
        and _consent(auth) is None
        and not (
            credentials.get(consent.access_token_key) or credentials.get(consent.refresh_token_key)
        )
    ):
        # The registered app brings the client id and secret: an OAuth alternative
        # whose tokens are optional is "complete" before anyone consented.
        return auth  # type: ignore[no-any-return]
    return chosen


def _complete(method: Any, present: Collection[str]) -> bool:
    config = getattr(method, "config", None)
    fields = config.credential_fields if config is not None else ()
    return all(field.key in present for field in fields if field.required)


def _consent(method: Any) -> Any:
    """The method's OAuth 2.0 config when its tokens come from a user's consent."""
    config = getattr(method, "config", None)
    if method.method == "oauth2" and getattr(config, "grant", None) == _CONSENT_GRANT:
        return config
    return None
