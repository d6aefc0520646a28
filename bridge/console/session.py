"""The console's session: a signed cookie naming the admin token that signed in, with an
expiry (docs/operator/console.md, "Security").

The cookie holds ``name.expires.nonce.mac``: the admin token's *name*, the Unix second it
expires, a random nonce, and an HMAC-SHA-256 over them keyed by a key derived from that
token. Nothing is kept server-side, so every replica accepts the session of another, and
removing a token from ``admin.tokens`` ends its sessions at once. The token itself is never
in the cookie, a page or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from pydantic import SecretStr

COOKIE: Final = "scim_bridge_console"
_PURPOSE: Final = b"scim-bridge console session v1"
_MAX_COOKIE: Final = 256
"""A longer cookie is refused unread (a name is at most 63 characters)."""


@dataclass(frozen=True, slots=True)
class Session:
    admin: str
    """The name of the admin token that signed in."""
    expires: int
    nonce: str
    """Random per sign-in: the CSRF tokens of this session are derived from it."""
    key: bytes
    """The session's key (derived from the admin token)."""


class Sessions:
    """Issues and checks session cookies for ``tokens`` (``admin.tokens``)."""

    def __init__(
        self,
        tokens: Mapping[str, SecretStr],
        minutes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = {name: _derive(token) for name, token in tokens.items()}
        self._tokens = {name: token.get_secret_value().encode() for name, token in tokens.items()}
        self.seconds = minutes * 60
        self._clock = clock

    def admin_for(self, token: str) -> str | None:
        """The name of the admin token ``token`` is, compared in constant time with every
        one (no early exit that would time which matched)."""
        given = token.encode("utf-8", "replace")
        found = None
        for name, expected in self._tokens.items():
            if hmac.compare_digest(given, expected):
                found = name
        return found

    def issue(self, admin: str) -> tuple[str, Session]:
        """A new session for ``admin`` (a name of ``admin.tokens``) and its cookie value."""
        expires = int(self._clock()) + self.seconds
        nonce = secrets.token_urlsafe(16)
        key = self._keys[admin]
        body = f"{admin}.{expires}.{nonce}"
        return f"{body}.{_mac(key, body)}", Session(admin, expires, nonce, key)

    def check(self, cookie: str | None) -> Session | None:
        """The session ``cookie`` carries, or None: absent, malformed, forged, expired, or
        of a token no longer configured."""
        if not cookie or len(cookie) > _MAX_COOKIE:
            return None
        parts = cookie.split(".")
        if len(parts) != 4:
            return None
        admin, expires, nonce, mac = parts
        key = self._keys.get(admin)
        if key is None or not expires.isdigit() or len(expires) > 12:
            return None
        if not hmac.compare_digest(mac, _mac(key, f"{admin}.{expires}.{nonce}")):
            return None
        if int(expires) <= self._clock():
            return None
        return Session(admin, int(expires), nonce, key)


def _derive(token: SecretStr) -> bytes:
    return hmac.new(token.get_secret_value().encode(), _PURPOSE, hashlib.sha256).digest()


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
