"""The fake Modyo as an ASGI app: what ``scim-bridge fake-modyo`` serves over real HTTP."""

from __future__ import annotations

import asyncio
from typing import Final
from urllib.parse import parse_qsl, quote

from starlette.types import Receive, Scope, Send

from bridge.modyo.fake.control import PREFIX, authorised, control
from bridge.modyo.fake.faults import FaultyModyo, Outcome
from bridge.modyo.fake.state import FakeResponse

_UNAUTHORISED: Final = FakeResponse(
    401, {"errors": ["the control plane needs the fake's token: Authorization: Bearer <token>"]}
)


class FakeModyoApp:
    """A raw ASGI app (no framework overhead: it is the far end of every benchmark).

    Its control plane (``/__fake__/``) takes the fake's API token as it is when the app is
    built: a test that revokes the API token keeps control of the fake."""

    def __init__(self, service: FaultyModyo) -> None:
        self.service = service
        self._control_token = service.fake.token
        self._loop: asyncio.AbstractEventLoop | None = None

    def shutting_down(self) -> None:
        """The server was asked to stop (a signal handler may call this): hanging requests
        are answered, so the server's graceful shutdown, which waits for them, can end."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.service.stop_hanging)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            self._loop = asyncio.get_running_loop()
            await _lifespan(receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        raw_path = scope.get("raw_path")  # as sent, percent-encoded (optional in ASGI)
        path = raw_path.decode("ascii") if raw_path else quote(scope["path"])
        if path.startswith(PREFIX):
            if authorised(headers, self._control_token):
                answer = control(self.service, scope["method"], path, bytes(body))
            else:
                answer = _UNAUTHORISED
            outcome = Outcome(answer, False)
        else:
            outcome = await self.service.serve(scope["method"], path, query, bytes(body), headers)
        if outcome.response is None:
            # Promise a body, send half of it, then fail: the server drops the connection and
            # the client sees an incomplete response after the write was applied.
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"64")]})  # fmt: skip
            await send({"type": "http.response.body", "body": b"{", "more_body": True})
            raise ConnectionAbortedError("fake Modyo dropped the connection (injected fault)")
        content = outcome.response.content()
        response_headers = [
            (b"content-type", outcome.response.media_type.encode()),
            (b"content-length", str(len(content)).encode()),
            *(
                (key.lower().encode(), value.encode())
                for key, value in outcome.response.headers.items()
            ),
        ]
        await send({"type": "http.response.start", "status": outcome.response.status,
                    "headers": response_headers})  # fmt: skip
        await send({"type": "http.response.body", "body": content})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
