"""The fake Modyo as a respx router: what ``scim-bridge dev`` and the tests put under httpx."""

from __future__ import annotations

import httpx
import respx

from bridge.modyo.fake.faults import FaultyModyo


def build_router(service: FaultyModyo, base_url: str) -> respx.Router:
    """A router answering every request to ``base_url`` from the fake (faults included).

    The fake sees the path as sent (percent-encoded), as a server routes it. A dropped
    connection surfaces as :class:`httpx.RemoteProtocolError`, what httpx raises when
    a server closes the connection without a complete response.
    """
    router = respx.Router(assert_all_called=False, assert_all_mocked=True)

    async def answer(request: httpx.Request) -> httpx.Response:
        outcome = await service.serve(
            request.method,
            request.url.raw_path.split(b"?")[0].decode("ascii"),
            request.url.params.multi_items(),
            request.content,
            dict(request.headers),
        )
        if outcome.response is None:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        response = outcome.response
        return httpx.Response(
            response.status,
            content=response.content(),
            headers={"Content-Type": response.media_type, **response.headers},
        )

    router.route(url__startswith=base_url.rstrip("/")).mock(side_effect=answer)
    return router


def mock_transport(service: FaultyModyo, base_url: str) -> httpx.AsyncBaseTransport:
    """An httpx transport serving the fake in-process, for the bridge's Modyo client."""
    return httpx.MockTransport(build_router(service, base_url).async_handler)
