"""What keeps the dashboard as closed as the API: the login token, sessions, CSRF, sealed drafts.

Every key is derived from the admin API token (HKDF-SHA256, one ``info`` per
use), so nothing new has to be stored, every worker of a deployment agrees on
the keys, and rotating the token logs every browser out.

- **Session** — a cookie ``<payload>.<mac>``: the payload (a random session id,
  expiry and the session's CSRF token) in base64url JSON, the MAC an
  HMAC-SHA256 over it. HttpOnly, SameSite=Strict, Secure over HTTPS. Logging
  out records the id as revoked in the store until the cookie would have
  expired (:class:`ucf.service.sessions.SessionRevocations`), so a copied
  cookie dies at logout too; rotating the token ends every session at once.
- **CSRF** — each session carries a random token that every POST form sends
  back and that is compared in constant time.
- **Sealed values** — what the setup flow keeps between its steps (the
  credentials typed in step 1) travels in a cookie encrypted with AES-GCM and
  bound (as associated data) to the session and the connector, never in a
  page or a URL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SESSION_COOKIE: Final = "ucf_session"
LOGIN_COOKIE: Final = "ucf_login"
FLASH_COOKIE: Final = "ucf_flash"
CSRF_HEADER: Final = "X-CSRF-Token"
"""How the page's own script proves a request is from the page (the session's CSRF token)."""
SESSION_LIFETIME: Final = timedelta(hours=12)

SECURITY_HEADERS: Final[dict[str, str]] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""On every dashboard response: scripts and styles only from our own files, no framing."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def token_matches(given: str, expected: str) -> bool:
    """Constant time over digests, so neither the content nor the length of the token leaks."""
    return bool(given) and hmac.compare_digest(_digest(given), _digest(expected))


def _wire(text: str) -> bytes:
    """Text from a request as bytes: ``compare_digest`` refuses non-ASCII ``str``, and a
    cookie or form may hold any character (even a lone surrogate)."""
    return text.encode("utf-8", "surrogatepass")


def same_secret(given: str, expected: str) -> bool:
    """Constant-time equality of two random tokens (CSRF); any text is simply unequal."""
    return bool(given) and hmac.compare_digest(_wire(given), _wire(expected))


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    """Random; what logout revokes."""
    csrf: str
    expires: int
    """Unix seconds."""


class Signer:
    """``<payload>.<mac>`` values: readable, but only we can make or change them."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, _wire(payload), hashlib.sha256).digest())

    def sign(self, data: dict[str, Any]) -> str:
        payload = _b64(json.dumps(data, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def unsign(self, value: str) -> dict[str, Any] | None:
        payload, _, mac = value.partition(".")
        if not payload or not mac:
            return None
        if not hmac.compare_digest(_wire(mac), _wire(self._mac(payload))):
            return None  # a forged, cut or non-ASCII value: no session, never an error
        try:
            data = json.loads(_unb64(payload))
        except (ValueError, binascii.Error):
            return None
        return data if isinstance(data, dict) else None


class Sealer:
    """AES-GCM sealed JSON: neither readable nor changeable without the key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, data: dict[str, Any], context: str) -> str:
        nonce = secrets.token_bytes(12)
        plain = json.dumps(data, separators=(",", ":")).encode()
        return _b64(nonce + self._aead.encrypt(nonce, plain, context.encode()))

    def open(self, value: str, context: str) -> dict[str, Any] | None:
        try:
            raw = _unb64(value)
            plain = self._aead.decrypt(raw[:12], raw[12:], context.encode())
            data = json.loads(plain)
        except (ValueError, binascii.Error, InvalidTag):
            return None
        return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Keys:
    sessions: Signer
    flashes: Signer
    drafts: Sealer

    def new_session(self, now: datetime) -> tuple[str, Session]:
        session = Session(
            id=secrets.token_urlsafe(16),
            csrf=secrets.token_urlsafe(32),
            expires=int((now + SESSION_LIFETIME).timestamp()),
        )
        value = self.sessions.sign(
            {"sid": session.id, "csrf": session.csrf, "exp": session.expires}
        )
        return value, session

    def read_session(self, value: str | None, now: datetime) -> Session | None:
        """The session the cookie names, if we signed it and it has not expired (whether it
        was revoked at logout is the store's to say)."""
        data = self.sessions.unsign(value) if value else None
        if data is None:
            return None
        sid, csrf, expires = data.get("sid"), data.get("csrf"), data.get("exp")
        if not isinstance(sid, str) or not isinstance(csrf, str) or not isinstance(expires, int):
            return None  # also a cookie from before sessions had ids: log in again
        if expires <= now.timestamp():
            return None
        return Session(id=sid, csrf=csrf, expires=expires)


def _derive(token: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        token.encode("utf-8", "surrogatepass")
    )


@lru_cache(maxsize=4)
def keys_for(token: str) -> Keys:
    return Keys(
        sessions=Signer(_derive(token, b"ucf dashboard session v1")),
        flashes=Signer(_derive(token, b"ucf dashboard flash v1")),
        drafts=Sealer(_derive(token, b"ucf dashboard setup draft v1")),
    )


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)
