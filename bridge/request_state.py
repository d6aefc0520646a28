"""What the request being served carries across layers, in a context variable (as the
deadline is): its id (and the client's), the token it was authenticated with, the SCIM
operation routing resolved, the resource it names, and the upstream calls it made. The
outermost middleware opens it; routing, the upstream plumbing and the access log read and fill
it. Concurrent requests each see their own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class RequestState:
    request_id: str
    operation: str | None = None
    """What routing resolved, e.g. ``users.create``, ``groups.patch``; None if unrouted."""
    resource_type: str | None = None
    """The SCIM resource type the operation serves (``User``, ``Group``), if any."""
    resource_id: str | None = None
    """The resource the request names, or the one a create made."""
    upstream_calls: int = 0
    """Attempts sent to the upstream (retries included), for the access log."""
    upstream_retries: int = 0
    upstream_budget_used: int = 0
    """Upstream calls made (each with its retries), against ``modyo.max_calls_per_request``."""
    token_name: str | None = None
    """The name of the SCIM token the request was authenticated with."""
    client_request_id: str | None = None
    """The client's own ``X-Request-Id``, kept beside the bridge's (never instead of it)."""


_current: ContextVar[RequestState | None] = ContextVar("scim_bridge_request", default=None)


@contextmanager
def serving(request_id: str) -> Iterator[RequestState]:
    """Run the block as the request ``request_id``."""
    state = RequestState(request_id)
    token = _current.set(state)
    try:
        yield state
    finally:
        _current.reset(token)


def current() -> RequestState | None:
    """The request being served, or None outside of one (start-up, ``check``)."""
    return _current.get()
