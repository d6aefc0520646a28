"""Seeded fault injection in front of the fake Modyo: latency, 5xx, 429, rate limit, lost responses.

Both adapters (respx router and ASGI app) call :meth:`FaultyModyo.serve`, so a fault behaves
the same in-process and over real HTTP. Every random draw comes from one ``random.Random(seed)``,
so a run with the same seed and the same request order injects the same faults.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from bridge.modyo.fake.base import FakeResponse
from bridge.modyo.fake.service import FakeService


@dataclass(frozen=True, slots=True)
class Faults:
    """What to inject; rates are probabilities per request (0 to 1)."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after_seconds: float = 1.0
    rate_limit_rps: float = 0.0
    lost_response_rate: float = 0.0
    hang_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        rates = (self.error_rate, self.throttle_rate, self.lost_response_rate, self.hang_rate)
        if any(not 0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError("fault rates are probabilities between 0 and 1")
        if not all(math.isfinite(value) for value in (*rates, *self._durations)):
            raise ValueError("fault options must be finite numbers (not nan or inf)")
        if min(self._durations) < 0:
            raise ValueError("latency, Retry-After and rate limit cannot be negative")

    @property
    def _durations(self) -> tuple[float, float, float]:
        return (self.latency_ms, self.retry_after_seconds, self.rate_limit_rps)

    @property
    def active(self) -> bool:
        return any(
            (self.latency_ms, self.error_rate, self.throttle_rate, self.rate_limit_rps,
             self.lost_response_rate, self.hang_rate)
        )  # fmt: skip


SHUTTING_DOWN = FakeResponse(503, {"errors": ["The server is shutting down"]})


class Drop(StrEnum):
    """How a lost response reaches the client."""

    BAD_GATEWAY = "502"  # the write was applied, then a proxy answered 502
    CONNECTION = "connection"  # the write was applied, then the connection dropped


@dataclass(frozen=True, slots=True)
class Served:
    """What the faulty fake did with one request: its answer, and whether the fake applied
    it (an applied write whose answer is lost is the case the bridge must survive)."""

    response: FakeResponse | None  # None when the connection is dropped
    applied: bool


@dataclass(frozen=True, slots=True)
class Hold:
    """A call held by :meth:`FaultyModyo.hold_next`: ``arrived`` is set when it reaches the
    fake, and it proceeds once ``release()`` is called."""

    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.released.set()


class FaultyModyo:
    """A fake Modyo (REST or SCIM) behind seeded faults; ``injected`` counts what was
    injected. ``clock`` (seconds, monotonic) refills the rate limit's bucket: tests pass their
    own."""

    def __init__(
        self,
        fake: FakeService,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fake = fake
        self._clock = clock
        self.faults = faults or Faults()
        self.injected: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lose_next: Counter[str] = Counter()
        self._held: dict[str, list[Hold]] = {}
        self._waiting: dict[str, list[Hold]] = {}
        self._random = random.Random(self.faults.seed)
        self._tokens = self.faults.rate_limit_rps
        self._refilled = clock()
        self._stop: asyncio.Event | None = None

    def configure(self, faults: Faults) -> None:
        """Swap the faults (tests turn them on and off between phases)."""
        self.faults = faults
        self._random = random.Random(faults.seed)
        self._tokens = faults.rate_limit_rps
        self._refilled = self._clock()

    def update(self, changes: Mapping[str, Any]) -> None:
        """Change only the given fault fields (``PUT /__fake__/faults``): the others, the
        random sequence included, go on as they were; a new ``seed`` restarts it.
        Unknown names raise :class:`TypeError`, impossible values :class:`ValueError`."""
        unknown = set(changes) - {field.name for field in fields(Faults)}
        if unknown:
            raise TypeError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        self.faults = replace(self.faults, **changes)
        if "seed" in changes:
            self._random = random.Random(self.faults.seed)
        if "rate_limit_rps" in changes:
            self._tokens = self.faults.rate_limit_rps
            self._refilled = self._clock()

    def stop_hanging(self) -> None:
        """Answer every hanging request (and any later one) with 503, and let every held one
        go on: the server is stopping, and a request that never ends would keep it from
        exiting."""
        self._stopping().set()
        self.release_all()

    def _stopping(self) -> asyncio.Event:
        if self._stop is None:
            self._stop = asyncio.Event()
        return self._stop

    def lose_next(self, route: str, times: int = 1) -> None:
        """Apply the next ``times`` calls to ``route`` (a key of the fake's ``calls``), then drop
        their connection: a deterministic lost response."""
        self._lose_next[route] += times

    def hold_next(self, route: str) -> Hold:
        """Make the next call to ``route`` wait, before it is applied, until released: a
        deterministic "Modyo is still working on it"."""
        hold = Hold()
        self._held.setdefault(route, []).append(hold)
        return hold

    @property
    def held(self) -> Counter[str]:
        """Calls waiting in a hold, by route (``GET /__fake__/calls`` reports them)."""
        return Counter(
            route
            for route, holds in self._waiting.items()
            for hold in holds
            if not hold.released.is_set()
        )

    def release_all(self) -> None:
        """Let every held call go on, and drop the holds no call has reached yet."""
        for holds in (*self._held.values(), *self._waiting.values()):
            for hold in holds:
                hold.release()
        self._held.clear()

    async def serve(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]],
        body: bytes,
        headers: Mapping[str, str],
    ) -> Served:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._serve(method, path, query, body, headers)
        finally:
            self.in_flight -= 1

    async def _serve(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]],
        body: bytes,
        headers: Mapping[str, str],
    ) -> Served:
        faults = self.faults
        route = self.fake.route_name(method, path)
        if route is not None and self._held.get(route):
            hold = self._held[route].pop(0)
            hold.arrived.set()
            waiting = self._waiting.setdefault(route, [])
            waiting.append(hold)
            try:
                await hold.released.wait()
            finally:
                waiting.remove(hold)
        if route is not None and self._lose_next[route] > 0:
            self._lose_next[route] -= 1
            self.fake.handle(method, path, query, body, headers)
            self.injected["lost_connection"] += 1
            return Served(None, applied=True)
        if not faults.active:
            return Served(self.fake.handle(method, path, query, body, headers), applied=True)
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.hang_rate and self._random.random() < faults.hang_rate:
            self.injected["hang"] += 1
            await self._stopping().wait()  # never answers until the server stops
            return Served(SHUTTING_DOWN, applied=False)
        if faults.rate_limit_rps and not self._take_token():
            self.injected["rate_limited"] += 1
            return Served(self._throttled(max(1.0, 1.0 / faults.rate_limit_rps)), applied=False)
        if faults.throttle_rate and self._random.random() < faults.throttle_rate:
            self.injected["throttled"] += 1
            return Served(self._throttled(faults.retry_after_seconds), applied=False)
        if faults.error_rate and self._random.random() < faults.error_rate:
            self.injected["error"] += 1
            status = self._random.choice((502, 503, 504))  # the transient ones
            return Served(FakeResponse(status, {"errors": ["Service unavailable"]}), False)
        response = self.fake.handle(method, path, query, body, headers)
        if faults.lost_response_rate and self._random.random() < faults.lost_response_rate:
            drop = self._random.choice(tuple(Drop))
            self.injected[f"lost_{drop.value}"] += 1
            if drop is Drop.BAD_GATEWAY:
                return Served(FakeResponse(502, {"errors": ["Bad gateway"]}), applied=True)
            return Served(None, applied=True)
        return Served(response, applied=True)

    def _throttled(self, retry_after: float) -> FakeResponse:
        return FakeResponse(
            429,
            {"errors": ["Too many requests"]},
            {"Retry-After": str(math.ceil(retry_after))},  # delta-seconds; 0 is allowed
        )

    def _take_token(self) -> bool:
        """A token bucket of one second's worth of requests."""
        now = self._clock()
        rate = self.faults.rate_limit_rps
        self._tokens = min(rate, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
