"""What the request being served carries across layers: its id (and the client's), the token
it was authenticated with, the SCIM operation routing resolved, the resource it names, the
upstream calls it made, what the idempotency cache and the safety rails did with it.
Concurrent requests each see their own.

It flows one way. The outermost middleware (``bridge.edge.observe``) opens it with the
request id; each layer notes here what happened in it, as it happens (routing, the bearer
check, the idempotency cache, the safety rails, the Modyo plumbing); the layers around them
read those notes once the inner call has returned: the error handlers (the resource type of
an error), the journal middleware (the event), the idempotency cache (the resources a
request wrote), the access log. No layer reads here what a layer around it wrote, except
the request id it was opened with (sent to Modyo as ``X-Request-Id``); the Modyo plumbing
also reads its own count of calls, against the request's budget. It is a record of the
request, not a channel into an inner layer.

A context variable, as the deadline (``bridge.deadline``) is, rather than the ASGI scope's
state: most notes are made by the Modyo plumbing (``bridge.modyo.http``, ``retry``), below
the upstream interface (``bridge.upstream``), which speaks users and groups and has no
scope; passing the request down every upstream method would put a request in an interface
that has none."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Final

MAX_KEPT_CALLS: Final = 32
"""Upstream attempts a request keeps for its journal event; more are only counted."""


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
    modyo_calls: list[tuple[str, int | str, int, float]] = field(default_factory=list)
    """The upstream attempts, for the journal: (call template, status or why none came,
    attempt, milliseconds); at most :data:`MAX_KEPT_CALLS`."""
    modyo_calls_left_out: int = 0
    replayed: bool = False
    """The answer was an earlier identical request's (the idempotency cache)."""
    undelivered_status: int | None = None
    """The status of an answer its client left before (the idempotency cache kept it)."""
    read_before: object | None = None
    """The object an upstream read before changing it (a ``UserRecord``...), for the
    journal's before-values; set only where the upstream reads anyway."""
    error_type: str | None = None
    """The ``scimType`` of the SCIM error the request was answered with, if any."""
    error_detail: str | None = None
    """Its ``detail``: the reason a refused or failed request's access line carries."""

    def add_upstream_call(self, call: str, status: int | str, attempt: int, ms: float) -> None:
        """One upstream attempt (``call``: ``"GET /team_members/:id"``, never a raw path)."""
        if len(self.modyo_calls) < MAX_KEPT_CALLS:
            self.modyo_calls.append((call, status, attempt, ms))
        else:
            self.modyo_calls_left_out += 1

    withheld: str | None = None
    """``planned`` (a dry run) or ``held`` (the brake): a write the safety rails kept from
    Modyo (``bridge.safety``); ``withheld_calls`` are the calls (method, path template) it
    would have made."""
    withheld_calls: list[tuple[str, str]] = field(default_factory=list)


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
