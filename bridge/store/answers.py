"""Where the idempotency cache keeps undelivered answers and coordinates identical writes.

:class:`IdempotencyStore` is the interface; :class:`MemoryStore` implements it for one
process. A shared store (Redis) implements the same methods with the same semantics so that
several replicas behave as one:

- ``put``/``claim``: an answer that never reached its client, kept for ``ttl_seconds`` until
  one identical retry takes it (``claim`` is atomic: two retries cannot both get it);
- ``invalidate``: any other write to the same resource drops the kept answers about it;
- ``begin``: single-flight. The first of concurrent identical writes leads (it gets a
  :class:`Lead` and executes); the others get a :class:`Flight` whose ``outcome()`` waits
  for the leader's :class:`LeadResult`. A lead that ends without an outcome (its execution
  failed, or its process died and its lock expired) makes ``outcome()`` answer None: the
  waiter then begins again, and may lead;
- ``start``: ``claim``, else ``begin``, as one step (one round trip to a shared store);
- ``Lead.finish``: once the leader's answer was sent (or kept for a retry), ``invalidate``
  for what it wrote, release what its execution deferred (a shared store's create locks,
  ``Lead.running``) and hand the outcome to the waiting twins, as one step.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class Kept:
    """An undelivered answer and the resources it wrote (``User/12``)."""

    answer: StoredAnswer
    resources: frozenset[str]


@dataclass(frozen=True, slots=True)
class LeadResult:
    """What a leader's execution produced, as the identical requests waiting on it need it."""

    answer: StoredAnswer
    delivered: bool
    """Whether the answer reached the leader's client (it was sent before any disconnect)."""
    resource: str | None
    """The resource the leader wrote (``User/12``), if routing named one."""


class Lead(Protocol):
    """The right, and the duty, to execute a write for everyone waiting on the same key."""

    def running(self) -> AbstractContextManager[None]:
        """The execution's scope: what it holds in the store until its answer is known (a
        shared store's create locks) is released by :meth:`finish` or :meth:`abandon`."""
        ...

    async def finish(self, outcome: LeadResult, written: frozenset[str] = frozenset()) -> None:
        """The answer went out (or was kept): drop other kept answers about the resources
        it ``written`` (empty unless it succeeded), release what :meth:`running` deferred,
        and end the flight with ``outcome``."""
        ...

    async def abandon(self) -> None:
        """End without an outcome (the execution failed): a waiter leads instead."""
        ...


class Flight(ABC):
    """Someone else's execution of the same write, in progress. A base class, not a
    protocol: the middleware tells it from a :class:`Lead` by ``isinstance`` on every write,
    which a runtime-checked protocol answers by inspecting the object's attributes."""

    @abstractmethod
    async def outcome(self) -> LeadResult | None: ...


class IdempotencyStore(Protocol):
    async def claim(self, key: str) -> Kept | None: ...

    async def put(self, key: str, answer: StoredAnswer, resources: frozenset[str]) -> None: ...

    async def invalidate(self, resources: frozenset[str], keep: str) -> None: ...

    async def begin(self, key: str) -> Lead | Flight: ...

    async def start(self, key: str) -> Kept | Lead | Flight: ...


@dataclass(slots=True)
class _Entry:
    kept: Kept
    expires: float


class MemoryStore:
    """In this process: at most ``max_entries`` kept answers, each for ``ttl_seconds``."""

    def __init__(
        self, max_entries: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_resource: dict[str, set[str]] = {}
        self._flights: dict[str, asyncio.Future[LeadResult | None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def claim(self, key: str) -> Kept | None:
        return self._claim(key)

    def _claim(self, key: str) -> Kept | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._drop(key)
        return None if entry.expires <= self._clock() else entry.kept

    async def put(self, key: str, answer: StoredAnswer, resources: frozenset[str]) -> None:
        self._drop(key)
        self._expire()
        while len(self._entries) >= self.max_entries:
            self._drop(next(iter(self._entries)))  # oldest first
        self._entries[key] = _Entry(Kept(answer, resources), self._clock() + self.ttl_seconds)
        for resource in resources:
            self._by_resource.setdefault(resource, set()).add(key)

    async def invalidate(self, resources: frozenset[str], keep: str) -> None:
        self._invalidate(resources, keep)

    def _invalidate(self, resources: frozenset[str], keep: str) -> None:
        for resource in resources:
            keys = self._by_resource.get(resource)
            for key in list(keys) if keys else ():
                if key != keep:
                    self._drop(key)

    async def begin(self, key: str) -> Lead | Flight:
        return self._begin(key)

    def _begin(self, key: str) -> Lead | Flight:
        flight = self._flights.get(key)
        if flight is not None:
            return _MemoryFlight(flight)
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        return _MemoryLead(self, key, flight)

    async def start(self, key: str) -> Kept | Lead | Flight:
        kept = self._claim(key)
        return kept if kept is not None else self._begin(key)

    def _expire(self) -> None:
        """Entries are kept in insertion order with one TTL, so expired ones are at the front."""
        now = self._clock()
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.expires > now:
                return
            self._drop(key)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for resource in entry.kept.resources:
            keys = self._by_resource.get(resource)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_resource[resource]


@dataclass(frozen=True, slots=True)
class _MemoryFlight(Flight):
    flight: asyncio.Future[LeadResult | None]

    async def outcome(self) -> LeadResult | None:
        return await asyncio.shield(self.flight)


@dataclass(slots=True)
class _MemoryLead:
    store: MemoryStore
    key: str
    flight: asyncio.Future[LeadResult | None]
    done: bool = field(default=False)

    def running(self) -> AbstractContextManager[None]:
        return nullcontext()  # this process's create locks are released as their block ends

    async def finish(self, outcome: LeadResult, written: frozenset[str] = frozenset()) -> None:
        self.store._invalidate(written, keep=self.key)
        self._end(outcome)

    async def abandon(self) -> None:
        self._end(None)

    def _end(self, outcome: LeadResult | None) -> None:
        if not self.done:
            self.done = True
            del self.store._flights[self.key]
            self.flight.set_result(outcome)
