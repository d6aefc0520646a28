"""Per-key locks: two creates of the same userName (or email, or group name) run one after the
other, so the second sees the first's result (Modyo's 409) instead of racing it.

:class:`CreateLocks` is what the SCIM endpoints depend on; :class:`KeyedLocks` holds them in
this process. Several processes (replicas, workers) get a shared implementation from the edge
(``bridge.store.redis_locks``), which raises
:class:`~bridge.store.errors.StoreUnavailable` when it cannot lock: a create never runs
without its lock."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class CreateLocks(Protocol):
    def hold(self, *keys: str) -> AbstractAsyncContextManager[None]:
        """Hold every key's lock (case-insensitively) for the block; empty keys are ignored."""
        ...


class KeyedLocks:
    """In this process: locks created on demand and dropped when nobody holds or waits for
    them."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    def hold(self, *keys: str) -> AbstractAsyncContextManager[None]:
        """Hold every key's lock, taken in sorted order so two holders cannot deadlock."""
        return _Holding(self._locks, sorted({key.lower() for key in keys if key}))


class _Holding(AbstractAsyncContextManager[None]):
    """One :meth:`KeyedLocks.hold`. A class rather than an ``asynccontextmanager``: every
    create enters one, and the generator's machinery cost more than the locks
    (docs/performance.md, Costs the code avoids)."""

    __slots__ = ("_acquired", "_keys", "_locks", "_registered")

    def __init__(self, locks: dict[str, tuple[asyncio.Lock, int]], keys: list[str]) -> None:
        self._locks = locks
        self._keys = keys
        self._registered: list[str] = []
        self._acquired: list[asyncio.Lock] = []

    async def __aenter__(self) -> None:
        try:
            for key in self._keys:
                held = self._locks.get(key)
                lock, users = held if held is not None else (asyncio.Lock(), 0)
                self._locks[key] = (lock, users + 1)
                self._registered.append(key)
                await lock.acquire()
                self._acquired.append(lock)
        except BaseException:  # cancelled while waiting: give back what was taken
            self._release()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        for lock in reversed(self._acquired):
            lock.release()
        for key in self._registered:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
        self._acquired.clear()
        self._registered.clear()
