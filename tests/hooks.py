"""Deterministic synchronisation for tests: no test sleeps or times itself.

- :class:`VirtualClock`: the time the fake Modyo's rate limit and the bridge's retry waits see;
  a wait advances it at once instead of sleeping.
- :class:`HookedModyo`: a :class:`FaultyModyo` with two more hooks, a gate that holds calls at
  Modyo until the test opens it, and ``bad_gateway_next`` (apply a call, then answer 502: the
  deterministic twin of ``lose_next``, which drops the connection instead).
- :func:`until`: yield to the event loop until a condition holds (no timer involved).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from bridge.modyo.fake import Faults, FaultyModyo
from bridge.modyo.fake.base import FakeResponse
from bridge.modyo.fake.faults import Served
from bridge.modyo.fake.service import FakeService


class VirtualClock:
    """Monotonic seconds that move only when something waits on them."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """A wait of the bridge's retry policy: recorded, the clock moved, no time spent."""
        self.waits.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class HookedModyo(FaultyModyo):
    """A :class:`FaultyModyo` whose calls can be held at a gate, or answered 502 once applied."""

    def __init__(
        self,
        fake: FakeService,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(fake, faults, clock)
        self.entered = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self._bad_gateway_next: Counter[str] = Counter()

    def bad_gateway_next(self, route: str, times: int = 1) -> None:
        """Apply the next ``times`` calls to ``route``, then answer each with a proxy's 502."""
        self._bad_gateway_next[route] += times

    async def serve(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]],
        body: bytes,
        headers: Mapping[str, str],
    ) -> Served:
        self.entered += 1
        await self.gate.wait()  # unguarded: the test opens it, stop_hanging() too
        route = self.fake.route_name(method, path)
        if route is not None and self._bad_gateway_next[route] > 0:
            self._bad_gateway_next[route] -= 1
            self.fake.handle(method, path, query, body, headers)
            self.injected["lost_502"] += 1
            return Served(FakeResponse(502, {"errors": ["Bad gateway"]}), applied=True)
        return await super().serve(method, path, query, body, headers)
