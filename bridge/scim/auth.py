"""Bearer-token authentication for the SCIM endpoints (Entra's "Secret Token"), judged from the
request head alone, before any byte of a body is read (docs/operator/security.md).

Several named tokens are accepted at once so one can be rotated without downtime: add the new
one, switch Entra to it, watch the old one's name stop appearing in the access log and in
``scim_bridge_token_requests_total``, remove it. Tokens are compared as SHA-256 digests with
``hmac.compare_digest``, against every configured token, so neither the content nor the
position of a token leaks through timing. A request carrying more than one ``Authorization``
header is refused (400): which one counts would be the server's guess.

Failed authentications are counted per client address (after a trusted proxy's
``X-Forwarded-For``): past ``scim.auth_failures_per_minute`` in a minute, the address gets 429
with ``Retry-After`` until the minute ends. A request with a valid token is never throttled.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from bridge import request_state
from bridge.metrics import AUTH_FAILURES, AUTH_THROTTLE_CLIENTS, TOKEN_REQUESTS
from bridge.scim.errors import BadRequest, HeaderedException, Unauthorized, error_response

_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="scim-bridge"'}
WINDOW_SECONDS: Final = 60.0
MAX_KEY_LENGTH: Final = 64
"""A client key is at most this long, whatever a proxy forwarded as the address."""


class TooManyFailures(HeaderedException):
    """429: this client failed authentication too often this minute (RFC 6585 §4)."""

    status = 429


class FailureThrottle:
    """Failed authentications per client address and minute, in a table of at most
    ``max_clients`` addresses (the least recently failing forgotten first), so an attacker
    rotating addresses cannot grow it: each entry is a short key and two numbers.

    An IPv6 client is counted by its /64, which one subscriber usually holds whole."""

    def __init__(
        self, per_minute: int, max_clients: int, clock: Callable[[], float] | None = None
    ) -> None:
        self.per_minute = per_minute
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, tuple[int, int]] = OrderedDict()  # key: (minute, n)

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, client: str | None) -> float | None:
        """Seconds until ``client`` may try again, or None if it is not throttled."""
        minute, now = self._minute()
        seen = self._failures.get(_key(client))
        if seen is None or seen[0] != minute or seen[1] < self.per_minute:
            return None
        return (minute + 1) * WINDOW_SECONDS - now

    def failed(self, client: str | None) -> None:
        """Count a failed authentication of ``client``."""
        key, (minute, _) = _key(client), self._minute()
        seen = self._failures.pop(key, None)
        count = seen[1] + 1 if seen is not None and seen[0] == minute else 1
        self._failures[key] = (minute, count)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)
        AUTH_THROTTLE_CLIENTS.set(len(self._failures))

    def _minute(self) -> tuple[int, float]:
        seconds = self._clock() if self._clock is not None else now()
        return int(seconds // WINDOW_SECONDS), seconds


def now() -> float:
    """The throttle's clock (monotonic seconds), looked up at each use: tests set their own."""
    return time.monotonic()


def _key(client: str | None) -> str:
    """The table key of a client address: the address, an IPv6 one's /64, anything else
    (a proxy may forward any text) cut to :data:`MAX_KEY_LENGTH` characters."""
    if client is None:
        return "-"
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client[:MAX_KEY_LENGTH]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class BearerAuth:
    """ASGI middleware: the SCIM request goes on only with ``Authorization: Bearer <token>``
    naming a configured token; otherwise 401 (400 for two headers, 429 when throttled), all
    SCIM error JSON, and the body is never read."""

    def __init__(self, app: ASGIApp, tokens: Mapping[str, str], throttle: FailureThrottle) -> None:
        self.app = app
        self.throttle = throttle
        self._digests = [
            (hashlib.sha256(token.encode()).digest(), name) for name, token in tokens.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name, reason, problem = self._judge(scope)
        if name is not None:
            TOKEN_REQUESTS(name).inc()
            state = request_state.current()
            if state is not None:
                state.token_name = name
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else None
        wait = self.throttle.retry_after(address)
        if wait is not None:
            AUTH_FAILURES("throttled").inc()
            refusal: HeaderedException = TooManyFailures(
                detail="too many failed authentications from this address; retry later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        else:
            AUTH_FAILURES(reason).inc()
            self.throttle.failed(address)
            refusal = (
                BadRequest(detail=problem)
                if reason == "duplicate"
                else Unauthorized(detail=problem, headers=_CHALLENGE)
            )
        await error_response(refusal)(scope, receive, send)

    def _judge(self, scope: Scope) -> tuple[str | None, str, str]:
        """The name of the token presented, or None with the reason (a metric label) and
        what to tell the client."""
        supplied = [value for name, value in scope["headers"] if name == b"authorization"]
        if not supplied or supplied == [b""]:
            return (
                None,
                "missing",
                "missing Authorization header: send 'Authorization: Bearer <token>'",
            )
        if len(supplied) > 1:
            return None, "duplicate", "the request has more than one Authorization header"
        scheme, _, credential = supplied[0].partition(b" ")
        if scheme.lower() != b"bearer" or not credential.strip():
            return None, "malformed", "the Authorization header must be 'Bearer <token>'"
        presented = hashlib.sha256(credential.strip()).digest()
        matched = None
        for digest, name in self._digests:
            if hmac.compare_digest(presented, digest):
                matched = name
        if matched is None:
            return None, "invalid", "the bearer token is not valid for this server"
        return matched, "", ""
