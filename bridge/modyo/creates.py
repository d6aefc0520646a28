"""Creating without ever creating twice, for both upstreams (docs/design/modyo-contract.md).

A create is :attr:`~bridge.modyo.http.Repeat.UNSAFE`: ``ModyoHttp.send`` never re-sends it
after an unknown outcome (a reset once sent, a 502, 503 or 504) but raises
:class:`~bridge.modyo.http.UnknownOutcome`. :func:`create_once` then looks the object up by
its unique key and adopts it if it holds what was being created; not found, it was not
applied, and creating again is safe. A uniqueness failure (``Conflict``) is adopted the same
way only when an earlier attempt of this call may have been applied; otherwise it is a real
duplicate, and the SCIM side answers 409 (RFC 7644 §3.3).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bridge.modyo.http import Answer, ModyoHttp, Repeat, UnknownOutcome
from bridge.upstream import Conflict, Unavailable

log = logging.getLogger("bridge.modyo")

FindExisting = Callable[[], Awaitable[Mapping[str, Any] | None]]
"""The object a create may have made, looked up by its unique key (None: not there)."""


async def create_once(
    http: ModyoHttp,
    call: str,
    path: str,
    payload: dict[str, Any],
    find_existing: FindExisting,
    accept: Callable[[Answer], dict[str, Any]],
) -> dict[str, Any]:
    """POST ``payload`` to ``path``, applied at most once: the created object, as ``accept``
    reads it from Modyo's answer (``accept`` raises the upstream's failure for any other),
    or the one an attempt with an unknown outcome made."""
    maybe_applied = False
    for _ in range(http.retry.settings.max_attempts):
        try:
            answer = await http.send(call, "POST", path, json=payload, repeat=Repeat.UNSAFE)
        except UnknownOutcome:
            maybe_applied = True
            existing = await find_existing()
            if existing is not None:
                log.info("adopted object after an unknown create outcome", extra={"call": call})
                return dict(existing)
            continue  # not found: it was not applied, creating again is safe
        try:
            return accept(answer)
        except Conflict:
            existing = await find_existing() if maybe_applied else None
            if existing is None:
                raise
            log.info("adopted object created by an earlier attempt", extra={"call": call})
            return dict(existing)
    raise Unavailable(f"Modyo did not confirm {call} after repeated attempts", retry_after=5)
