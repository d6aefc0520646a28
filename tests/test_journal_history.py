"""The recent history the console reads: newest first, filtered, paginated by a cursor,
capped; in memory and in a real redis-server, which may stop at any time without a request
noticing (events left out, counted, logged once per change)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bridge.config import IdempotencySettings
from bridge.journal.history import MAX_PAGE, EventFilter, History, HistoryUnavailable, MemoryHistory
from bridge.journal.privacy import Privacy
from bridge.journal.record import JournalRecord
from bridge.journal.redis_history import RedisHistory
from bridge.store.redis_link import connect
from tests.harness import PATIENT_REDIS
from tests.redis_servers import RedisServer
from tests.waits import HANG_GUARD_SECONDS

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OPERATIONS = ["users.create", "users.patch", "groups.patch"]


def event(number: int) -> dict[str, Any]:
    operation = OPERATIONS[number % 3]
    outcome = "refused" if number % 3 == 1 else "failed" if number % 5 == 0 else "applied"
    entry = JournalRecord(
        Privacy("full", None), request_id=f"req-{number}", operation=operation,
        resource_type="Group" if operation.startswith("groups") else "User",
        now=lambda: START + timedelta(minutes=number),
    )  # fmt: skip
    entry.identify(id=str(number), name=f"Person{number}@Contoso.com", external_id=f"ext-{number}")
    explanation = {"refused": {"detail": "x"}, "failed": {"reason": "y"}}.get(outcome, {})
    return entry.finish(outcome, **explanation).wire() | {"replica": "pod-1"}  # type: ignore[arg-type]


class Redis:
    """A RedisHistory over the bridge's own link to a real redis-server."""

    def __init__(self, server: RedisServer, size: int, queue_size: int = 1000) -> None:
        settings = IdempotencySettings(backend="redis", redis_url=server.url, **PATIENT_REDIS)
        self.link = connect(settings)
        key = self.link.key("journal")
        self.history = RedisHistory(self.link.client, key, size, self.link.call_seconds, queue_size)


@pytest.fixture(params=["memory", "redis"])
async def history(request: pytest.FixtureRequest) -> AsyncIterator[History]:
    if request.param == "memory":
        yield MemoryHistory(1000)
        return
    redis = Redis(request.getfixturevalue("redis_server"), 1000)
    try:
        async with redis.history.running():
            yield redis.history
    finally:
        await redis.link.close()


async def fill(history: History, count: int) -> list[dict[str, Any]]:
    added = [event(number) for number in range(count)]
    for entry in added:
        history.add(entry)
    if isinstance(history, RedisHistory):
        await asyncio.wait_for(history.drained(), HANG_GUARD_SECONDS)
    return added


async def every_page(history: History, where: EventFilter, limit: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = await history.query(where, limit, cursor)
        pages.append([entry["request_id"] for entry in page.events])
        if page.cursor is None:
            return pages
        cursor = page.cursor
        assert len(pages) < 100, "pagination does not end"


def flat(pages: list[list[str]]) -> list[str]:
    return [entry for page in pages for entry in page]


async def test_newest_first_in_pages_that_cover_everything_once(history: History) -> None:
    await fill(history, 25)
    pages = await every_page(history, EventFilter(), 10)
    assert [len(page) for page in pages] == [10, 10, 5]
    assert flat(pages) == [f"req-{number}" for number in reversed(range(25))]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (EventFilter(outcomes=frozenset({"refused"})), [n for n in range(30) if n % 3 == 1]),
        (EventFilter(operations=frozenset({"groups.patch"})), [n for n in range(30) if n % 3 == 2]),
        (EventFilter(resource_types=frozenset({"User"})), [n for n in range(30) if n % 3 != 2]),
        (EventFilter(text="person1"), [1, *range(10, 20)]),  # any case, any part
        (EventFilter(text="EXT-2"), [2, *range(20, 30)]),
        (EventFilter(since=START + timedelta(minutes=5), until=START + timedelta(minutes=8)),
         [5, 6, 7]),
        (EventFilter(outcomes=frozenset({"failed"}), operations=frozenset({"users.create"})),
         [0, 15]),
    ],
)  # fmt: skip
async def test_filters(history: History, where: EventFilter, expected: list[int]) -> None:
    await fill(history, 30)
    pages = await every_page(history, where, 3)
    assert flat(pages) == [f"req-{number}" for number in reversed(expected)]
    assert all(len(page) <= 3 for page in pages)


async def test_a_cursor_the_store_did_not_give_is_refused(history: History) -> None:
    for cursor in ["x", "1" * 30, "(0", "1-2-3"]:
        with pytest.raises(ValueError, match="not a cursor"):
            await history.query(EventFilter(), 10, cursor)


async def test_a_page_is_bounded(history: History) -> None:
    await fill(history, MAX_PAGE + 5)
    page = await history.query(EventFilter(), 10_000)
    assert len(page.events) == MAX_PAGE and page.cursor is not None


async def test_the_memory_history_keeps_the_latest() -> None:
    history = MemoryHistory(10)
    await fill(history, 25)
    page = await history.query(EventFilter(), 50)
    assert [entry["request_id"] for entry in page.events] == [
        f"req-{number}" for number in reversed(range(15, 25))
    ]


def test_the_memory_history_keeps_nothing_the_garbage_collector_walks() -> None:
    """Ten thousand events kept as dicts made every full collection walk them all; kept as
    JSON text and tuples of strings, they are not tracked at all."""
    history = MemoryHistory(1000)
    kept = [event(number) for number in range(1000)]
    gc.collect()
    before = len(gc.get_objects())
    for entry in kept:
        history.add(entry)
    del kept
    gc.collect()
    assert len(gc.get_objects()) - before < 50  # was 1000 events x 4 containers


async def test_the_redis_stream_is_capped(redis_server: RedisServer) -> None:
    redis = Redis(redis_server, 10)
    try:
        async with redis.history.running():
            await fill(redis.history, 500)
        length = await redis.link.client.xlen("scim-bridge:journal")
        # MAXLEN ~ trims whole nodes of the stream (stream-node-max-entries: 100)
        assert 10 <= length <= 10 + 100
        newest = await redis.history.query(EventFilter(), 3)
        assert [entry["request_id"] for entry in newest.events] == ["req-499", "req-498", "req-497"]
    finally:
        await redis.link.close()


async def test_events_queued_together_reach_the_stream_in_one_call_per_batch(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = Redis(redis_server, 10_000)
    client = redis.link.client
    sent: list[object] = []
    execute: Callable[..., Awaitable[Any]] = client.execute_command

    async def counted(*args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return await execute(*args, **options)

    monkeypatch.setattr(client, "execute_command", counted)
    try:
        async with redis.history.running():
            await fill(redis.history, 450)  # queued at once: the task wakes to all of them
        # the script is loaded at its first use; then 200 + 200 + 50 events, one call each
        assert sent == ["EVALSHA", "SCRIPT LOAD", *["EVALSHA"] * 3]
        assert await client.xlen("scim-bridge:journal") == 450  # one entry each, as before
        page = await redis.history.query(EventFilter(), 2)
        assert [entry["request_id"] for entry in page.events] == ["req-449", "req-448"]
    finally:
        await redis.link.close()


def _dropped(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "scim_bridge_journal_history_dropped_total", {"reason": reason}
    )
    return value or 0.0


async def test_a_full_queue_drops_without_waiting(redis_server: RedisServer) -> None:
    redis = Redis(redis_server, 10, queue_size=2)
    try:
        before = _dropped("queue_full")
        for number in range(5):
            redis.history.add(event(number))  # the pump is not running: nothing leaves
        assert _dropped("queue_full") == before + 3
    finally:
        await redis.link.close()


async def test_redis_stopping_mid_run_drops_events_from_the_history_only(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis = Redis(redis_server, 100)
    history = redis.history
    try:
        with caplog.at_level(logging.INFO, "bridge.journal"):
            async with history.running():
                await fill(history, 3)
                redis_server.stop()
                before = _dropped("unreachable")
                await fill(history, 5)  # never raises, never waits on the caller
                assert _dropped("unreachable") == before + 5
                with pytest.raises(HistoryUnavailable):
                    await history.query(EventFilter())
                redis_server.start()  # empty again: no persistence
                await fill(history, 2)
                page = await history.query(EventFilter())
        assert [entry["request_id"] for entry in page.events] == ["req-1", "req-0"]
        assert [record.message for record in caplog.records] == [
            "journal history unreachable: events are left out of it (the journal keeps them)",
            "journal history reachable again",
        ]
    finally:
        await redis.link.close()
