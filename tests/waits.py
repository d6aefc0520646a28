"""The tests' one way to wait: for a condition, never for a count of requests nor a sleep, and
never without a guard that FAILS when it runs out (a test that can hang is a bug).

- :class:`Signal`: an event the code under test (or a test's fake) sets; awaiting it fails
  once the guard runs out instead of hanging.
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
from typing import Literal, TypeVar

T = TypeVar("T")

HANG_GUARD_SECONDS = 60.0
"""How long a condition may take before the test fails: far beyond any healthy wait (a cold
process start under coverage on a loaded 2-CPU machine), far below CI's own kill."""
POLL_SECONDS = 0.02
"""Between two looks at a condition another process changes (no event crosses processes):
the pace of polling, never a bound a test relies on."""


class Signal(asyncio.Event):
    """An :class:`asyncio.Event` whose :meth:`wait` fails the test, saying ``what`` was
    awaited, once :data:`HANG_GUARD_SECONDS` have passed: every event a test awaits is one
    (tests/test_suite_rules.py), so a broken guarantee fails a test instead of hanging it."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    async def wait(self) -> Literal[True]:
        try:
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                return await super().wait()
        except TimeoutError:
            raise AssertionError(
                f"never happened within {HANG_GUARD_SECONDS} s: {self.what}"
            ) from None


async def within(what: str, awaited: Awaitable[T]) -> T:
    """``awaited``, or the test fails once :data:`HANG_GUARD_SECONDS` have passed."""
    try:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            return await awaited
    except TimeoutError:
        raise AssertionError(f"never happened within {HANG_GUARD_SECONDS} s: {what}") from None


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
