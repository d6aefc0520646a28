"""Bearer-token authentication for the SCIM endpoints (Entra's "Secret Token").

Several tokens are accepted at once so one can be rotated without downtime: add the new one,
switch Entra to it, remove the old one. Tokens are compared as SHA-256 digests with
``hmac.compare_digest``, against every configured token, so neither the content nor the
position of a token leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from bridge.scim.errors import Unauthorized, error_response

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="scim-bridge"'}


class BearerAuth:
    """ASGI middleware: 401 (SCIM error JSON) unless ``Authorization: Bearer <token>`` matches."""

    def __init__(self, app: ASGIApp, tokens: Iterable[str]) -> None:
        self.app = app
        self._digests = [hashlib.sha256(token.encode()).digest() for token in tokens]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = self._problem(scope)
        if problem is None:
            await self.app(scope, receive, send)
            return
        response = error_response(Unauthorized(detail=problem, headers=_CHALLENGE))
        await response(scope, receive, send)

    def _problem(self, scope: Scope) -> str | None:
        supplied = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                supplied = value
                break
        scheme, _, credential = supplied.partition(b" ")
        if not supplied:
            return "missing Authorization header: send 'Authorization: Bearer <token>'"
        if scheme.lower() != b"bearer" or not credential.strip():
            return "the Authorization header must be 'Bearer <token>'"
        presented = hashlib.sha256(credential.strip()).digest()
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(presented, digest)
        return None if matched else "the bearer token is not valid for this server"
