"""One reading of which method stored credentials sign in with, on the models and the views."""

from __future__ import annotations

from typing import Any

import pytest

from ucf.catalogue import builtin_descriptors
from ucf.core.credential_keys import AUTH_METHOD_KEY
from ucf.core.descriptor import ConnectorDescriptor
from ucf.core.descriptor_view import ConnectorView, load_connector_view
from ucf.core.sign_in import sign_in_method

TOKENS = {"accessToken": "a-token", "refreshToken": "r-token"}
APP = {"clientId": "client", "clientSecret": "client-secret"}


def _linear() -> dict[str, Any]:
    (raw,) = (d for d in builtin_descriptors() if d["id"] == "linear")
    return raw


def _forms() -> list[ConnectorDescriptor | ConnectorView]:
    stored = ConnectorDescriptor.model_validate(_linear())
    return [stored, load_connector_view(stored.model_dump(by_alias=True, exclude_unset=True))]


@pytest.mark.parametrize("descriptor", _forms(), ids=["model", "view"])
@pytest.mark.parametrize(
    ("credentials", "provided", "method"),
    [
        ({"apiKey": "k"}, (), "api_key"),  # auth complete: auth
        ({"apiKey": "k", **APP, **TOKENS}, (), "api_key"),  # auth first when both complete
        ({**APP, **TOKENS}, (), "oauth2"),  # stored before authMethod was: what they complete
        (TOKENS, ("clientId", "clientSecret"), "oauth2"),  # the registered app brings the rest
        (TOKENS, (), "api_key"),  # nothing complete: auth, whose check names what is missing
        (APP, (), "api_key"),  # an OAuth app without a consent's token signs in with nothing
        ({AUTH_METHOD_KEY: "oauth2", "apiKey": "k"}, (), "oauth2"),  # a stored choice wins
        ({AUTH_METHOD_KEY: "basic", **APP, **TOKENS}, (), "api_key"),  # not offered: auth
    ],
)
def test_the_method_is_the_stored_one_else_the_one_the_credentials_complete(
    descriptor: ConnectorDescriptor | ConnectorView,
    credentials: dict[str, str],
    provided: tuple[str, ...],
    method: str,
) -> None:
    assert sign_in_method(descriptor, credentials, provided).method == method
