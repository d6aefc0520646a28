"""Reading the recent history for the console: the Activity filters from a query string, the
whole filtered history for an export, an event by its request id, and the Errors page's
groups (docs/operator/console.md, "Activity", "Errors").

Every read goes through the :class:`~bridge.journal.history.History` protocol (memory, or the
Redis stream every replica writes), and is bounded by the history's own size.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, get_args

from bridge.journal.event import MAX_ID, Outcome
from bridge.journal.history import MAX_PAGE, EventFilter, History, event_time

OUTCOMES: Final = get_args(Outcome)
RESOURCE_TYPES: Final = ("User", "Group")
MAX_TEXT: Final = 256
MAX_OPERATION: Final = 64
REQUEST_ID: Final = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_ID}}}")
_MINUTE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?")
FAILED: Final = frozenset({"failed", "refused"})


@dataclass
class Query:
    """The Activity page's filters as given (echoed in the form) and as an
    :class:`EventFilter`; ``problems`` names the fields that were ignored."""

    outcomes: list[str] = field(default_factory=list)
    operation: str = ""
    resource_type: str = ""
    text: str = ""
    since: str = ""
    until: str = ""
    cursor: str | None = None
    problems: list[str] = field(default_factory=list)

    def where(self) -> EventFilter:
        return EventFilter(
            outcomes=frozenset(self.outcomes),
            operations=frozenset({self.operation}) if self.operation else frozenset(),
            resource_types=frozenset({self.resource_type}) if self.resource_type else frozenset(),
            text=self.text or None,
            since=_moment(self.since),
            until=_moment(self.until),
        )

    def params(self, cursor: str | None = None) -> list[tuple[str, str]]:
        """The filters as query parameters (for the next page and the export links)."""
        found = [("outcome", outcome) for outcome in self.outcomes]
        for name in ("operation", "resource_type", "text", "since", "until"):
            if getattr(self, name):
                found.append((name, getattr(self, name)))
        if cursor:
            found.append(("cursor", cursor))
        return found


def parse(params: Any) -> Query:
    """The filters of a query string (a Starlette ``QueryParams``); a value out of its
    bounds is ignored and named in ``problems``, never an error page."""
    query = Query()
    for outcome in params.getlist("outcome")[: len(OUTCOMES)]:
        if outcome in OUTCOMES and outcome not in query.outcomes:
            query.outcomes.append(outcome)
        else:
            query.problems.append("outcome")
    operation = params.get("operation", "").strip()
    if len(operation) <= MAX_OPERATION:
        query.operation = operation
    else:
        query.problems.append("operation")
    resource_type = params.get("resource_type", "")
    if resource_type in ("", *RESOURCE_TYPES):
        query.resource_type = resource_type
    else:
        query.problems.append("resource_type")
    text = params.get("text", "").strip()
    if len(text) <= MAX_TEXT:
        query.text = text
    else:
        query.problems.append("text")
    for name in ("since", "until"):
        value = params.get(name, "").strip()
        if not value or _moment(value) is not None:
            setattr(query, name, value)
        else:
            query.problems.append(name)
    cursor = params.get("cursor")
    if cursor and len(cursor) <= 64:
        query.cursor = cursor
    return query


def _moment(text: str) -> datetime | None:
    """A ``datetime-local`` value (``2026-01-02T03:04``), read as UTC."""
    if not text or not _MINUTE.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        return None


async def scan(history: History, where: EventFilter, most: int) -> AsyncIterator[dict[str, Any]]:
    """The matching events, newest first, at most ``most`` (the history's size)."""
    cursor: str | None = None
    seen = 0
    while seen < most:
        page = await history.query(where, MAX_PAGE, cursor)
        for event in page.events:
            if seen >= most:
                return
            seen += 1
            yield event
        if page.cursor is None:
            return
        cursor = page.cursor


async def find(history: History, request_id: str, most: int) -> dict[str, Any] | None:
    """The event of ``request_id`` (the newest, if a client reused one)."""
    async for event in scan(history, EventFilter(text=request_id), most):
        if event.get("request_id") == request_id:
            return event
    return None


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    outcome: str
    status: str
    scim_type: str
    reason: str
    last_hour: int
    last_day: int


MAX_GROUPS: Final = 100


async def error_groups(
    history: History, most: int, now: datetime | None = None
) -> tuple[list[ErrorGroup], int]:
    """Failed and refused requests of the last day grouped by reason (outcome, status, SCIM
    error type and detail, or the failure's reason), the most frequent first, with their
    counts over the last hour and day; and how many groups were left out."""
    now = now or datetime.now(UTC)
    hour_ago = now - timedelta(hours=1)
    where = EventFilter(outcomes=FAILED, since=now - timedelta(days=1))
    day: Counter[tuple[str, str, str, str]] = Counter()
    hour: Counter[tuple[str, str, str, str]] = Counter()
    async for event in scan(history, where, most):
        key = reason_key(event)
        day[key] += 1
        moment = event_time(event)
        if moment is not None and moment >= hour_ago:
            hour[key] += 1
    groups = [
        ErrorGroup(*key, last_hour=hour[key], last_day=count)
        for key, count in day.most_common(MAX_GROUPS)
    ]
    return groups, max(0, len(day) - MAX_GROUPS)


def reason_key(event: Mapping[str, Any]) -> tuple[str, str, str, str]:
    error = event.get("error")
    error = error if isinstance(error, Mapping) else {}
    reason = error.get("detail") if event.get("outcome") == "refused" else event.get("reason")
    return (
        str(event.get("outcome", "")),
        str(event.get("status", "")),
        str(error.get("scim_type") or ""),
        str(reason or "")[:200],
    )
