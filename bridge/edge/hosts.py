"""The ``Host`` header, checked before anything uses it (RFC 9112 §3.2).

The bridge builds its own URLs (``Location``, every ``meta.location``) from the ``Host`` a
request names, unless ``server.public_url`` is set. RFC 9112 §3.2 requires a 400 for a
request with more than one ``Host`` line, an invalid one, or none in HTTP/1.1; the bridge
also refuses an empty one, which names no server to build a URL from. Starlette would
otherwise fall back to the listening address (``0.0.0.0:8000`` in a container) and answer a
URL no client can use.

Without ``server.public_url``, a SCIM request's host must also be one the bridge may name in
its URLs (``server.allowed_hosts``: by default the listening address and the loopback names),
else 421 Misdirected Request (RFC 9110 §15.5.20): ``Host: evil.example`` must never become
``Location: http://evil.example/scim/Users/...`` (:class:`AllowedHosts`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from bridge.scim.errors import BadRequest, HeaderedException, error_response

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


class MisdirectedRequest(HeaderedException):
    status = 421


def host_name(host: bytes) -> str:
    """The name of a valid ``Host`` value, without its port or brackets, in lower case."""
    text = host.decode("latin-1").lower()
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    return text.rsplit(":", 1)[0].rstrip(".") if ":" in text else text.rstrip(".")


class AllowedHosts:
    """ASGI middleware: a request whose host (its ``Host``, or a trusted proxy's
    ``X-Forwarded-Host``, which ``bridge.edge.forwarded`` has put there; the listening address
    without either) is not in ``allowed`` is answered 421 before anything builds a URL from
    it. ``allowed`` None: any host (``server.public_url`` is set, or ``dev``)."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.allowed is not None:
            host = next((value for name, value in scope["headers"] if name == b"host"), None)
            server = scope.get("server")
            name = host_name(host) if host else (str(server[0]).lower() if server else "")
            if name not in self.allowed:
                refused = MisdirectedRequest(
                    detail="this host is not one the bridge builds its URLs from: set "
                    "server.public_url (or add the host to server.allowed_hosts)"
                )
                await error_response(refused)(scope, receive, send)
                return
        await self.app(scope, receive, send)
