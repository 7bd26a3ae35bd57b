"""Names of the credentials the runtime itself keeps beside the ones a user types.

Constants only, so the services that read an instance's secret (a webhook
delivery reads one) need not import the descriptor models to know them;
:mod:`ucf.core.descriptor` re-exports them where the language defines them.
"""

from __future__ import annotations

from typing import Final

AUTH_METHOD_KEY: Final = "authMethod"
"""The credential naming the ``authAlternatives`` method an instance signs in with."""
ACCESS_TOKEN_EXPIRES_AT: Final = "accessTokenExpiresAt"  # noqa: S105 - a key name
"""Credentials key holding when the stored access token expires (ISO 8601 UTC)."""
