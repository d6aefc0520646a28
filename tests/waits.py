"""The tests' one way to wait: for a condition, never for a count of requests nor a sleep, and
never without a guard that FAILS when it runs out (a test that can hang is a bug).

- :func:`until`: state this event loop changes (a task's progress): the loop is given turns
  until the condition holds; no clock involved.
- :func:`eventually` (async) and :func:`wait_until` (blocking): state another process or
  thread changes (a server's answers, a file, a counter over HTTP), looked at every
  :data:`POLL_SECONDS` until it holds, for at most the guard's seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

HANG_GUARD_SECONDS = 60.0
"""How long a condition may take before the test fails: far beyond any healthy wait (a cold
process start under coverage on a loaded 2-CPU machine), far below CI's own kill."""
POLL_SECONDS = 0.02
"""Between two looks at a condition another process changes (no event crosses processes):
the pace of polling, never a bound a test relies on."""


async def until(condition: Callable[[], object], turns: int = 100_000) -> None:
    """Let the event loop run until ``condition()`` holds: synchronises on state the code
    under test changes (no clock involved); fails if it never does."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{condition} never held")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, guard: float = HANG_GUARD_SECONDS
) -> T:
    """Await ``probe()`` until it returns something true, and return that; fails with
    ``what`` when the guard runs out."""
    give_up = time.monotonic() + guard
    while not (found := await probe()):
        if time.monotonic() > give_up:
            raise AssertionError(f"never happened within {guard} s: {what}")
        await asyncio.sleep(POLL_SECONDS)
    return found


def wait_until(
    condition: Callable[[], T | None], what: str, guard: float = HANG_GUARD_SECONDS
) -> T:
    """Call ``condition()`` until it returns something true, and return that (blocking: for
    tests without an event loop); fails with ``what`` when the guard runs out."""
    give_up = time.monotonic() + guard
    while not (found := condition()):
        if time.monotonic() > give_up:
            raise AssertionError(f"never happened within {guard} s: {what}")
        time.sleep(POLL_SECONDS)
    return found
