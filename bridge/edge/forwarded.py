"""``X-Forwarded-Proto``, ``X-Forwarded-For`` and ``X-Forwarded-Host`` from a trusted proxy
(``server.forwarded_allow_ips``): the scheme, client and host the caller used, so that
``Location`` and ``meta.location`` name the public URL (RFC 7644 §3.1) and the access log the
real client, instead of the TLS proxy's view (``http://10.0.3.7:8000``).

uvicorn's ``ProxyHeadersMiddleware`` handles Proto and For (and the trust list syntax: IPs,
CIDRs, ``*``); it runs here, inside the app, instead of in uvicorn (``serve`` turns uvicorn's
own off), because it replaces the client address with the forwarded one: the Host decision
must see the proxy's own address first. The forwarded host replaces the ``Host`` header only
when it is a plain ``host[:port]`` (no CR/LF, no path, no user info, a valid port);
anything else is ignored. ``server.public_url``, when set, still wins (``ScimContext``).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

log = logging.getLogger("bridge.http")
_LABEL: Final = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST: Final = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])")
_PORT: Final = re.compile(r":(?P<port>[0-9]{1,5})")


class ForwardedHeaders:
    def __init__(self, app: ASGIApp, trusted: str) -> None:
        self._inner = ProxyHeadersMiddleware(app, trusted_hosts=trusted)  # type: ignore[arg-type]
        self._trusted = self._inner.trusted_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client = scope.get("client")
            if client and client[0] in self._trusted:
                _take_forwarded_host(scope)
        await self._inner(scope, receive, send)  # type: ignore[arg-type]


def forwarded_host(raw: bytes) -> bytes | None:
    """The host a trusted ``X-Forwarded-Host`` names, if it is a sane ``host[:port]``. Of a
    list, the last value counts: the one the nearest (trusted) proxy added."""
    if any(byte < 0x20 or byte > 0x7E for byte in raw):  # CR, LF, controls, non-ASCII
        return None
    value = raw.decode("ascii").rsplit(",", 1)[-1].strip(" ")
    if len(value) > 262:  # 253 for the name, 6 for the port, brackets
        return None
    host = _HOST.match(value)
    if host is None:
        return None
    rest = value[host.end() :]
    if rest and not ((port := _PORT.fullmatch(rest)) and 0 < int(port["port"]) < 65536):
        return None
    if host["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(host["ipv6"])
        except ValueError:
            return None
    return value.encode("ascii")


def _take_forwarded_host(scope: Scope) -> None:
    forwarded = [value for name, value in scope["headers"] if name == b"x-forwarded-host"]
    if not forwarded:
        return
    host = forwarded_host(b",".join(forwarded))
    if host is None:
        log.warning("ignored an X-Forwarded-Host that is not a host[:port] from a trusted proxy")
        return
    headers = [(name, value) for name, value in scope["headers"] if name != b"host"]
    scope["headers"] = [(b"host", host), *headers]
