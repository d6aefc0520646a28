"""The second witness: the chain's head written to the ordinary log at an interval, whenever
it moved, and once more at shutdown (docs/reference/journal.md, "The head witness").

Whoever cuts lines off the end of a journal file can leave a chain that verifies; the log,
shipped elsewhere, still holds a later head, which ``journal verify --witness`` checks the
files against. The wait between two looks is injectable: tests drive it without a clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bridge.journal.chain import Head

log = logging.getLogger("bridge.journal")
WITNESS_MESSAGE = "journal head"


class HeadWitness:
    def __init__(
        self,
        head: Callable[[], Head | None],
        interval: float,
        wait: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._head = head
        self.interval = interval
        self._wait = wait
        self._last: Head | None = None

    async def run(self) -> None:
        """Look every ``interval`` until cancelled."""
        while True:
            await self._wait(self.interval)
            self.witness()

    def witness(self) -> bool:
        """Log the head if it moved since the last line; whether it did."""
        head = self._head()
        if head is None or head == self._last:
            return False
        self._last = head
        log.info(
            WITNESS_MESSAGE,
            extra={"replica": head.replica, "seq": head.seq, "head": head.mac,
                   "file": head.file},
        )  # fmt: skip
        return True
