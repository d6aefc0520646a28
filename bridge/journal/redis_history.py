"""The recent history in a capped Redis stream, shared by every replica and worker
(``idempotency.backend = "redis"``): each event one entry, ``XADD ... MAXLEN ~ size``,
read newest first with ``XREVRANGE`` (docs/reference/journal.md, "Recent history").

Events reach Redis from a task of their own, through a bounded queue: a SCIM request never
waits for Redis. What queued while the task's last call was out goes in the next one, a
script adding them all (:data:`ADD`): one round trip for many events. While Redis does not
answer, events are left out of the history (counted, logged once per change of state); the
journal's sink still has them. Every call is bounded in time. Needs Redis 6.2 (exclusive
ranges).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final, cast

import redis.asyncio as redis
from pydantic_core import to_json
from redis.exceptions import RedisError

from bridge.journal.history import EventFilter, HistoryPage, HistoryUnavailable, page_size
from bridge.metrics import JOURNAL_HISTORY_DROPPED

log = logging.getLogger("bridge.journal")
BATCH: Final = 200
"""Entries read per ``XREVRANGE``, and events added per call at most."""
# KEYS: the stream. ARGV: its MAXLEN, then the events (JSON). Each XADD ... MAXLEN ~ as one.
ADD: Final = """
for i = 2, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i])
end
return #ARGV - 1
"""
_CURSOR: Final = re.compile(r"\d{1,20}-\d{1,20}")


class RedisHistory:
    """The history in the stream ``key`` (the idempotency store's prefix + ``journal``)."""

    def __init__(
        self, client: redis.Redis, key: str, size: int, call_seconds: float, queue_size: int = 1000
    ) -> None:
        """``call_seconds`` (``idempotency.redis_timeout_seconds``): the longest one call
        adding events, or one query, may take; events whose call takes longer are left out,
        a query that does is refused."""
        self.client = client
        self.key = key
        self.size = size
        self.call_seconds = call_seconds
        self._queue: deque[Mapping[str, Any]] = deque()
        self._queue_size = queue_size
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._add = client.register_script(ADD)
        self.reachable: bool | None = None

    def add(self, event: Mapping[str, Any]) -> None:
        """Queue ``event`` for the stream (it is the history's from here on); dropped
        (counted) when the queue is full. Encoded by the task that sends it."""
        if len(self._queue) >= self._queue_size:
            JOURNAL_HISTORY_DROPPED("queue_full").inc()
            return
        self._queue.append(event)
        self._idle.clear()
        self._wake.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Move queued events to Redis while the block runs."""
        task = asyncio.create_task(self._pump(), name="journal-history")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def drained(self) -> None:
        """Return once every event queued so far was added to Redis or dropped."""
        await self._idle.wait()

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                count = min(len(self._queue), BATCH)
                batch = [self._queue.popleft() for _ in range(count)]
                await self._send(batch)
            self._idle.set()

    async def _send(self, batch: list[Mapping[str, Any]]) -> None:
        """One call for ``batch``; when Redis fails it, its events are left out (counted)."""
        entries = [to_json(event) for event in batch]  # pydantic's encoder: a quarter of json's
        try:
            async with asyncio.timeout(self.call_seconds):
                await self._add(keys=[self.key], args=[self.size, *entries])
        except (RedisError, OSError, TimeoutError) as exc:
            JOURNAL_HISTORY_DROPPED("unreachable").inc(len(batch))
            self._record(False, exc)
        else:
            self._record(True)

    async def query(
        self, where: EventFilter, limit: int = 50, cursor: str | None = None
    ) -> HistoryPage:
        """Newest first, from ``cursor`` (exclusive); reads at most the stream's size.
        Raises ValueError for a malformed cursor, HistoryUnavailable when Redis fails."""
        if cursor is not None and not _CURSOR.fullmatch(cursor):
            raise ValueError("not a cursor of this history")
        wanted = page_size(limit)
        found: list[dict[str, Any]] = []
        top = "+" if cursor is None else f"({cursor}"
        scanned, last_found, last_scanned = 0, "", None
        try:
            async with asyncio.timeout(self.call_seconds):
                while scanned < self.size:
                    batch = cast(
                        "list[tuple[bytes | str, Mapping[Any, Any]]]",
                        await self.client.xrevrange(self.key, max=top, min="-", count=BATCH),
                    )
                    if not batch:
                        last_scanned = None  # the stream's oldest entry was read
                        break
                    for entry_id, fields in batch:
                        event = entry_event(fields)
                        if event is not None and where.matches(event):
                            if len(found) == wanted:
                                return HistoryPage(found, last_found)
                            found.append(event)
                            last_found = stream_id(entry_id)
                        scanned += 1
                        last_scanned = stream_id(entry_id)
                    if len(batch) < BATCH:
                        last_scanned = None
                        break
                    top = f"({last_scanned}"
        except (RedisError, OSError, TimeoutError) as exc:
            self._record(False, exc)
            raise HistoryUnavailable("the shared store did not answer") from None
        self._record(True)
        return HistoryPage(found, last_scanned)  # a cursor when the scan bound stopped it

    def _record(self, reachable: bool, failure: BaseException | None = None) -> None:
        """Once per change of state: a log line."""
        if reachable == self.reachable:
            return
        previous, self.reachable = self.reachable, reachable
        if not reachable:
            log.error(
                "journal history unreachable: events are left out of it (the journal keeps them)",
                extra={"error": type(failure).__name__},
            )
        elif previous is not None:
            log.warning("journal history reachable again")


def stream_id(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def entry_event(fields: Mapping[Any, Any]) -> dict[str, Any] | None:
    raw = fields.get(b"e", fields.get("e"))
    if raw is None:
        return None
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None
