"""CSRF tokens for every form the console posts (OWASP CSRF Prevention Cheat Sheet).

Signed in, a form carries the session's synchronizer token: an HMAC of the session's nonce,
so it changes with every sign-in and is worthless without the session cookie. The sign-in
form, before any session, uses a signed double-submit: a random value in a cookie of its own
and the same value, with its HMAC under a key only the bridge holds, in the form. Every
comparison is constant-time. The session cookie is also ``SameSite=Strict``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

from bridge.console.session import Session

FIELD: Final = "csrf"
SIGN_IN_COOKIE: Final = "scim_bridge_console_sign_in"
_MAX: Final = 200


def for_session(session: Session) -> str:
    """The token the forms of ``session`` carry."""
    return hmac.new(session.key, b"csrf." + session.nonce.encode(), hashlib.sha256).hexdigest()


def session_valid(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(_bytes(given), for_session(session).encode())


class SignInTokens:
    """The signed double-submit of the sign-in form, keyed by ``key`` (derived from every
    admin token: any replica checks what another issued)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def issue(self) -> tuple[str, str]:
        """(cookie value, form value)."""
        value = secrets.token_urlsafe(16)
        return value, f"{value}.{self._mac(value)}"

    def valid(self, cookie: str | None, given: str | None) -> bool:
        if not cookie or not given or len(given) > _MAX or len(cookie) > _MAX:
            return False
        value, _, mac = given.partition(".")
        same = hmac.compare_digest(_bytes(value), _bytes(cookie))
        signed = hmac.compare_digest(_bytes(mac), self._mac(value).encode())
        return same and signed

    def _mac(self, value: str) -> str:
        return hmac.new(self._key, b"sign-in." + _bytes(value), hashlib.sha256).hexdigest()


def _bytes(text: str) -> bytes:
    """A client's text as bytes for a comparison (a lone surrogate becomes ``?``)."""
    return text.encode("utf-8", "replace")
