"""Request bodies, read once at the edge: a size cap, a cap on what all requests hold at once,
and a time limit, then the inner app. It runs after authentication (``bridge.edge.app``): an
unauthenticated request never has a byte of its body read.

:class:`BodyReader` reads the whole body before anything else sees it. Past
``server.max_body_bytes`` it answers 413 (RFC 9110 §15.5.14), from ``Content-Length`` before
reading a byte when the client declares it. Bodies held in memory at once, across every
request, stay within ``server.max_buffered_body_bytes`` (:class:`BodyBudget`): a request whose
body would pass it gets 503 with ``Retry-After`` before its body is read (a declared length
is counted in full before reading, a chunked body as it arrives), and its share is given back
when its answer is out. A body that has not fully arrived within
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
from bridge.edge.errors import BodyBufferFull, RequestTimeout
from bridge.metrics import BODY_BUFFER_BYTES, BODY_BUFFER_REFUSED
from bridge.scim.errors import PayloadTooLarge, error_response

_CLOSE: Final = {"Connection": "close"}
BUSY_RETRY_AFTER: Final = "1"
"""Seconds a client refused for want of body buffer waits: bodies are held only while their
request is served."""


class BodyBudget:
    """Bytes of request bodies held at once by one app (``server.max_buffered_body_bytes``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        """Hold ``size`` more bytes, if that stays within the limit."""
        if self.held + size > self.limit:
            return False
        self.held += size
        BODY_BUFFER_BYTES.inc(size)
        return True

    def give_back(self, size: int) -> None:
        self.held -= size
        BODY_BUFFER_BYTES.dec(size)


class _OverBudget(Exception):
    """A chunked body outgrew what the buffer had left."""


class BodyReader:
    """ASGI middleware: the request body, size-capped (413) and time-limited (408)."""

    def __init__(self, app: ASGIApp, server: ServerSettings, budget: BodyBudget) -> None:
        self.app = app
        self.max_bytes = server.max_body_bytes
        self.timeout_seconds = server.body_timeout_seconds
        self.budget = budget

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
        held = _Held(self.budget)
        try:
            if not held.take(max(declared, 0)):
                await self._busy(scope, receive, send)
                return
            allowed = self._time_allowed()
            try:
                async with asyncio.timeout(allowed):
                    body = await self._read(receive, held)
            except TimeoutError:
                slow = RequestTimeout(
                    detail=f"the request body did not arrive within {round(allowed, 2):g} "
                    "seconds; send it faster or retry",
                    headers=_CLOSE,
                )
                await error_response(slow)(scope, receive, send)
                return
            except _OverBudget:
                await self._busy(scope, receive, send)
                return
            if body is None:  # the client went away while sending: nobody to answer
                return
            if len(body) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            held.release()

    def _time_allowed(self) -> float:
        """The body timeout, cut to what is left of the request's deadline."""
        left = remaining()
        return self.timeout_seconds if left is None else max(0.0, min(self.timeout_seconds, left))

    async def _read(self, receive: Receive, held: _Held) -> bytes | None:
        """The whole body, stopping one chunk past the cap; None if the client disconnected.
        A body longer than declared (or of unknown length) is held as it grows."""
        message = await receive()
        if message["type"] != "http.request":
            return None
        first: bytes = message.get("body", b"")
        held.grow_to(len(first))
        if not message.get("more_body", False):
            return first
        body = bytearray(first)
        while len(body) <= self.max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return None
            body += message.get("body", b"")
            held.grow_to(len(body))
            if not message.get("more_body", False):
                break
        return bytes(body)

    async def _busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        BODY_BUFFER_REFUSED.inc()
        busy = BodyBufferFull(
            detail="the bridge holds as many request bodies as it may at once "
            "(server.max_buffered_body_bytes); retry later",
            headers={"Retry-After": BUSY_RETRY_AFTER},
        )
        await error_response(busy)(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        too_large = PayloadTooLarge(detail=f"request body exceeds {self.max_bytes} bytes")
        await error_response(too_large)(scope, receive, send)


class _Held:
    """One request's share of the :class:`BodyBudget`, given back once."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size = 0

    def take(self, size: int) -> bool:
        if not self.budget.take(size):
            return False
        self.size += size
        return True

    def grow_to(self, size: int) -> None:
        """Hold at least ``size`` bytes; :class:`_OverBudget` if the buffer has no room."""
        if size > self.size and not self.take(size - self.size):
            raise _OverBudget

    def release(self) -> None:
        self.budget.give_back(self.size)
        self.size = 0


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
