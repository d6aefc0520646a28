"""The ``Host`` header, checked before anything uses it (RFC 9112 §3.2).

The bridge builds its own URLs (``Location``, every ``meta.location``) from the ``Host`` a
request names, unless ``server.public_url`` is set. RFC 9112 §3.2 requires a 400 for a
request with more than one ``Host`` line, an invalid one, or none in HTTP/1.1; the bridge
also refuses an empty one, which names no server to build a URL from. Starlette would
otherwise fall back to the listening address (``0.0.0.0:8000`` in a container) and answer a
URL no client can use.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from bridge.scim.errors import BadRequest, error_response

_HOST: Final = re.compile(
    rb"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]"  # IP-literal (RFC 3986 §3.2.2; IPvFuture is not served)
    rb"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)"  # IPv4address / reg-name
    rb"(?::(?P<port>[0-9]{0,5}))?"
)


def host_problem(values: list[bytes], http_version: str) -> str | None:
    """Why these ``Host`` values cannot be served, or None. Never echoes them."""
    if not values:
        return None if http_version == "1.0" else "the request has no Host header"
    if len(values) > 1:
        return "the request has more than one Host header"
    match = _HOST.fullmatch(values[0])
    if match is None:
        return "the Host header is not a valid host[:port]"
    if match["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(match["ipv6"].decode())
        except ValueError:
            return "the Host header is not a valid host[:port]"
    if match["port"] and int(match["port"]) > 65535:  # an empty port is allowed (RFC 3986)
        return "the Host header's port is not a TCP port"
    return None


class HostCheck:
    """ASGI middleware: a SCIM 400 for a request whose ``Host`` cannot be served."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hosts = [value for name, value in scope["headers"] if name == b"host"]
            problem = host_problem(hosts, str(scope.get("http_version", "1.1")))
            if problem is not None:
                await error_response(BadRequest(detail=problem))(scope, receive, send)
                return
        await self.app(scope, receive, send)
