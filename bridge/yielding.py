"""Long loops of one request give the event loop back: every :data:`BATCH` items, the other
requests (and ``/healthz``) are served before the loop goes on (docs/operator/security.md,
Event loop). The SCIM side evaluates filters over a scan this way, the upstreams convert the
pages of a scan this way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Final, TypeVar

T = TypeVar("T")
BATCH: Final = 100
"""Items handled between two yields: a few milliseconds of work (a filter evaluated over one
rendered resource, one Modyo row converted)."""


async def batches(items: Sequence[T], size: int = BATCH) -> AsyncIterator[Sequence[T]]:
    """``items`` in runs of ``size``, letting the event loop serve others between runs."""
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)
        yield items[start : start + size]
