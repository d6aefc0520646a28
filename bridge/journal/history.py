"""The recent history the console reads: a bounded store of the latest events, newest first,
filtered and paginated by a cursor (docs/reference/journal.md, "Recent history").

:class:`MemoryHistory` keeps one process's events (as JSON text);
``bridge.journal.redis_history`` keeps every replica's in a capped Redis stream. Adding never
blocks and never raises: the history is a convenience, the journal's sink is the record.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from pydantic_core import PydanticSerializationError, from_json, to_json

MAX_PAGE: Final = 200


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a query or an export keeps; an empty set or None keeps everything.
    ``text`` is a case-insensitive part of the resource's id, name or externalId, or of the
    request id (with ``values = "hashed"``, a name is found by its hash); ``since`` is
    inclusive, ``until`` exclusive."""

    outcomes: frozenset[str] = frozenset()
    operations: frozenset[str] = frozenset()
    resource_types: frozenset[str] = frozenset()
    text: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    _folded: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_folded", self.text.casefold() if self.text else None)

    @property
    def everything(self) -> bool:
        """Whether every event passes (no condition set)."""
        return not (
            self.outcomes or self.operations or self.resource_types or self._folded is not None
            or self.since is not None or self.until is not None
        )  # fmt: skip

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether ``event`` (a line's fields, possibly from a file an attacker edited)
        passes; anything malformed fails a filter it is asked about."""
        if self.outcomes and event.get("outcome") not in self.outcomes:
            return False
        if self.operations and event.get("operation") not in self.operations:
            return False
        if self.resource_types and event.get("resource_type") not in self.resource_types:
            return False
        if self._folded is not None and not any(
            self._folded in text.casefold() for text in _texts(event)
        ):
            return False
        if self.since is not None or self.until is not None:
            moment = event_time(event)
            if moment is None:
                return False
            if self.since is not None and moment < self.since:
                return False
            if self.until is not None and moment >= self.until:
                return False
        return True


def _texts(event: Mapping[str, Any]) -> Iterable[str]:
    resource = event.get("resource")
    values = [event.get("request_id")]
    if isinstance(resource, Mapping):
        values += [resource.get("id"), resource.get("name"), resource.get("external_id")]
    return (value for value in values if isinstance(value, str))


def event_time(event: Mapping[str, Any]) -> datetime | None:
    text = event.get("time")
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    events: list[dict[str, Any]]
    """Newest first."""
    cursor: str | None
    """Pass it back for the next page; None: there is no older match."""


class HistoryUnavailable(Exception):
    """The history cannot be read now (the shared store did not answer)."""


class History(Protocol):
    def add(self, event: Mapping[str, Any]) -> None: ...

    async def query(
        self, where: EventFilter, limit: int = 50, cursor: str | None = None
    ) -> HistoryPage: ...

    def running(self) -> contextlib.AbstractAsyncContextManager[None]: ...


def page_size(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


Summary = tuple[Any, Any, Any, Any, Any, Any, Any, Any]
"""What :meth:`EventFilter.matches` reads of an event: its outcome, operation, resource type,
time, request id, and its resource's id, name and externalId."""


class MemoryHistory:
    """The latest ``size`` events of this process, in a ring buffer: each its JSON text and
    the fields a filter reads, in tuples of strings: the garbage collector does not walk them
    (a dict per event, ten thousand kept, made each full collection walk them all)."""

    def __init__(self, size: int) -> None:
        self._events: deque[tuple[int, Summary, bytes]] = deque(maxlen=size)
        self._counter = 0

    def add(self, event: Mapping[str, Any]) -> None:
        """Keep ``event`` (a JSON object); one that is not JSON is not kept."""
        try:
            text = to_json(event)
        except PydanticSerializationError:
            return
        resource = event.get("resource")
        found = resource if isinstance(resource, Mapping) else {}
        summary = (
            event.get("outcome"), event.get("operation"), event.get("resource_type"),
            event.get("time"), event.get("request_id"),
            found.get("id"), found.get("name"), found.get("external_id"),
        )  # fmt: skip
        self._counter += 1
        self._events.append((self._counter, summary, text))

    async def query(
        self, where: EventFilter, limit: int = 50, cursor: str | None = None
    ) -> HistoryPage:
        """Raises ValueError for a cursor this store did not hand out."""
        before = _number(cursor)
        wanted = page_size(limit)
        everything = where.everything
        found: list[dict[str, Any]] = []
        last = 0
        for number, summary, text in reversed(self._events):
            if before is not None and number >= before:
                continue
            if everything or where.matches(_probe(summary)):
                if len(found) == wanted:
                    return HistoryPage(found, str(last))
                found.append(from_json(text))
                last = number
        return HistoryPage(found, None)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        yield


def _probe(summary: Summary) -> dict[str, Any]:
    """An event as far as a filter reads it."""
    outcome, operation, resource_type, time, request_id, id_, name, external_id = summary
    return {
        "outcome": outcome, "operation": operation, "resource_type": resource_type,
        "time": time, "request_id": request_id,
        "resource": {"id": id_, "name": name, "external_id": external_id},
    }  # fmt: skip


def _number(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 20):
        raise ValueError("not a cursor of this history")
    return int(cursor)
