"""Request bodies, read once at the edge: a size cap and a time limit, then the inner app.

:class:`BodyReader` reads the whole body before anything else sees it. Past
``server.max_body_bytes`` it answers 413 (RFC 9110 §15.5.14), from ``Content-Length`` before
reading a byte when the client declares it; a body that has not fully arrived within
``server.body_timeout_seconds`` (never later than the request's deadline) gets 408 (RFC 9110
§15.5.9) with ``Connection: close``, instead of waiting for the deadline's 503. The inner app
then receives the complete body as a single ``http.request`` message; every later
``receive()`` goes to the server's own, so ``http.disconnect`` still reaches the layers that
watch for it. Requests without a body (no ``Content-Length``, no ``Transfer-Encoding``; RFC
9112 §6.3) pass through untouched.
"""

from __future__ import annotations

import asyncio
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.config import ServerSettings
from bridge.deadline import remaining
from bridge.scim.errors import HeaderedException, PayloadTooLarge, error_response

_CLOSE: Final = {"Connection": "close"}


class RequestTimeout(HeaderedException):
    """408: the client did not send its request in time; the connection is closed."""

    status = 408


class BodyReader:
    """ASGI middleware: the request body, size-capped (413) and time-limited (408)."""

    def __init__(self, app: ASGIApp, server: ServerSettings) -> None:
        self.app = app
        self.max_bytes = server.max_body_bytes
        self.timeout_seconds = server.body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is None:
            await self.app(scope, receive, send)
            return
        if declared > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        allowed = self._time_allowed()
        try:
            async with asyncio.timeout(allowed):
                body = await self._read(receive)
        except TimeoutError:
            slow = RequestTimeout(
                detail=f"the request body did not arrive within {round(allowed, 2):g} seconds; "
                "send it faster or retry",
                headers=_CLOSE,
            )
            await error_response(slow)(scope, receive, send)
            return
        if body is None:  # the client went away while sending: nobody to answer
            return
        if len(body) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _time_allowed(self) -> float:
        """The body timeout, cut to what is left of the request's deadline."""
        left = remaining()
        return self.timeout_seconds if left is None else max(0.0, min(self.timeout_seconds, left))

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, stopping one chunk past the cap; None if the client disconnected."""
        message = await receive()
        if message["type"] != "http.request":
            return None
        first: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return first
        body = bytearray(first)
        while len(body) <= self.max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return None
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        return bytes(body)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        too_large = PayloadTooLarge(detail=f"request body exceeds {self.max_bytes} bytes")
        await error_response(too_large)(scope, receive, send)


def _declared_length(scope: Scope) -> int | None:
    """The body's announced size: ``Content-Length``, or -1 for ``Transfer-Encoding``
    (length unknown until read); None when the request has no body."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():  # the HTTP parser rejects these; read to find out
                return -1
            length = int(value)
            return length if length > 0 else None
        if name == b"transfer-encoding":
            return -1
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """The complete body as one message, then the server's own ``receive``."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
