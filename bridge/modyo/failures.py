"""The failures both upstreams read alike from Modyo's answer, whichever API answered
(docs/design/modyo-contract.md, error mapping): each API reads its other failures its own
way (``rest._failure``, ``scim._failure``)."""

from __future__ import annotations

import httpx

from bridge.modyo.http import RETRIED_STATUSES
from bridge.modyo.retry import parse_retry_after
from bridge.upstream import BadGateway, TokenRejected, Unavailable, UpstreamError


def shared_failure(call: str, response: httpx.Response) -> UpstreamError | None:
    """The token refused (401), the call forbidden (403), Modyo throttling or unavailable
    (429, 502, 503, 504: retry later, after its ``Retry-After``); None for any other
    status. Never includes credentials."""
    status = response.status_code
    if status == 401:
        return TokenRejected(
            "Modyo rejected the bridge's API token (HTTP 401): check modyo.token, its "
            "permissions, and that the token's owner is an active team member"
        )
    if status == 403:
        return BadGateway(f"Modyo refused {call} (HTTP 403)")
    if status == 429 or status in RETRIED_STATUSES:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return Unavailable(f"Modyo answered {call} with HTTP {status}", retry_after or 5)
    return None
