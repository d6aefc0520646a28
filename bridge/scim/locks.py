"""Per-key locks: two creates of the same userName (or email, or group name) run one after the
other, so the second sees the first's result (Modyo's 409) instead of racing it.

:class:`CreateLocks` is what the SCIM endpoints depend on; :class:`KeyedLocks` holds them in
this process. Several processes (replicas, workers) get a shared implementation from the edge
(``bridge.store.redis_locks``), which raises
:class:`~bridge.store.errors.StoreUnavailable` when it cannot lock: a create never runs
without its lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
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

    @asynccontextmanager
    async def hold(self, *keys: str) -> AsyncIterator[None]:
        """Hold every key's lock, taken in sorted order so two holders cannot deadlock."""
        registered: list[str] = []
        acquired: list[asyncio.Lock] = []
        try:
            for key in sorted({key.lower() for key in keys if key}):
                lock, users = self._locks.get(key, (asyncio.Lock(), 0))
                self._locks[key] = (lock, users + 1)
                registered.append(key)
                await lock.acquire()
                acquired.append(lock)
            yield
        finally:
            for lock in reversed(acquired):
                lock.release()
            for key in registered:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)
