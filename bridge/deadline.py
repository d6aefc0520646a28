"""The per-request deadline, shared by the SCIM side (which sets it) and the Modyo side (which
spends it on calls, retries and queueing). A context variable, so concurrent requests each
see their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("scim_bridge_deadline", default=None)


@contextmanager
def deadline_in(seconds: float) -> Iterator[None]:
    """Run the block with a deadline ``seconds`` from now (monotonic clock)."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the current deadline, or None outside any deadline."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()
