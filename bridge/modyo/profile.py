"""The token owner's profile, ``GET /api/admin/profile`` [API L757-L780]: documented, needs no
permission, and shared by both Modyo interfaces (the same token serves the REST API and
Modyo's SCIM server [SCIM L33]), so it is how either upstream proves its token works."""

from __future__ import annotations

from typing import Final

from bridge import deadline
from bridge.deadline import deadline_in
from bridge.modyo.http import ModyoHttp
from bridge.upstream import UpstreamError, UpstreamHealth

PATH: Final = "/api/admin/profile"
HEALTH_SECONDS: Final = 5.0  # a readiness probe's own deadline


async def token_health(http: ModyoHttp) -> UpstreamHealth:
    """One attempt within ``HEALTH_SECONDS`` (or the caller's shorter deadline): 200 means up;
    401 or 403, the token is rejected; 429, Modyo is up, only busy; no answer (refused,
    timeout, TLS, DNS), 5xx or anything else: unreachable."""
    left = deadline.remaining()
    with deadline_in(HEALTH_SECONDS if left is None else min(left, HEALTH_SECONDS)):
        try:
            answer = await http.send("GET /profile", "GET", PATH, retried=False)
        except UpstreamError:
            return UpstreamHealth.UNREACHABLE
    if answer.status in (200, 429):
        return UpstreamHealth.UP
    if answer.status in (401, 403):
        return UpstreamHealth.TOKEN_REJECTED
    return UpstreamHealth.UNREACHABLE
