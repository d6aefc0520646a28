"""One request's journal event, filled in as the request runs and finished once
(docs/reference/journal.md, "Event schema").

Whoever serves the request adds what it learns: the resource, the attribute changes (with the
values read before, when the request read the object anyway), the members added and removed,
the Modyo calls, then the outcome. Every addition is bounded as it arrives (the counts of what
was left out go to ``truncated``), and personal values are hashed or dropped as they arrive
(``bridge.journal.privacy``): a record never holds more than its bounds, whatever a client
sends.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final

from bridge.journal.canonical import Ordered
from bridge.journal.event import (
    MAX_ATTRIBUTE,
    MAX_CALLS,
    MAX_CHANGES,
    MAX_DETAIL,
    MAX_ID,
    MAX_INTEGER,
    MAX_MEMBERS,
    MAX_PATH,
    MAX_TEXT,
    SCHEMA_VERSION,
    Outcome,
    ScimEvent,
    explanation_problem,
)
from bridge.journal.privacy import OMITTED, Privacy

CUT: Final = "…"
"""Ends a value cut at its bound."""
_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")
_OPS: Final = frozenset({"add", "replace", "remove"})
MAX_REMEMBERED: Final = 2 * MAX_CHANGES + 8
"""Personal values remembered (raw, until ``finish``) to clean them out of error texts."""
MIN_REMEMBERED: Final = 3
"""Shorter values are not cleaned out of texts: replacing every "al" would garble them."""
MAX_REMEMBERED_LENGTH: Final = 1024


class _NotRead:
    def __repr__(self) -> str:
        return "NOT_READ"


NOT_READ: Final = _NotRead()
"""``before`` of a change whose object the request did not read."""

Raw = str | bool | int | float | dict[str, Any] | list[Any] | None


def timestamp(moment: datetime) -> str:
    """``2025-01-02T03:04:05.678Z``: the journal's ``time`` (UTC, milliseconds cut, not
    rounded, as ``isoformat(timespec="milliseconds")`` cuts them), spelled directly: the
    conversion and ``isoformat`` cost a write more than the rest of its event's fields."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


class JournalRecord:
    """A request's event under construction (the module docstring)."""

    def __init__(
        self,
        privacy: Privacy,
        *,
        request_id: str,
        operation: str,
        resource_type: str | None = None,
        client_request_id: str | None = None,
        token: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._privacy = privacy
        self._full = privacy.mode == "full"
        """Values written as given: no path to clean, no value to hash or remember."""
        self._now = now
        self._monotonic = monotonic
        self._started = monotonic()
        self._truncated = {"changes": 0, "members": 0, "modyo_calls": 0, "values": 0}
        self.request_id = self._clip(request_id, MAX_ID)
        self.operation = self._clip(operation, 64)
        self.resource_type = None if resource_type is None else self._clip(resource_type, 32)
        self.client_request_id = self._maybe(client_request_id, MAX_ID)
        self.token = self._maybe(token, MAX_ID)
        self._resource: dict[str, Any] = {}
        self._changes: list[dict[str, Any]] = []
        self._added: list[str] = []
        self._removed: list[str] = []
        self._added_count = 0
        self._removed_count = 0
        self._calls: list[dict[str, Any]] = []
        self._remembered: list[str] = []
        self._finished = False

    def routed(self, operation: str, resource_type: str | None) -> None:
        """What routing resolved, when the record was opened before it (at the edge)."""
        if operation == self.operation and resource_type == self.resource_type:
            return  # told again (the request flow tells it when routed and when finished)
        self.operation = self._clip(operation, 64)
        self.resource_type = None if resource_type is None else self._clip(resource_type, 32)

    def identify(
        self, *, id: str | None = None, name: str | None = None, external_id: str | None = None
    ) -> None:
        """The resource: its id (known after a create), its name (a User's userName, a
        Group's displayName) and externalId. A later call completes or corrects."""
        if id is not None:
            self._resource["id"] = self._clip(id, MAX_ID)
        if name is not None:
            attribute = "displayName" if self.resource_type == "Group" else "userName"
            kept, shown = self._recorded(attribute, name)
            if kept:
                self._resource["name"] = shown
        if external_id is not None:
            self._resource["external_id"] = self._clip(external_id, MAX_TEXT)

    def add_change(
        self, attribute: str, before: Raw | _NotRead, after: Raw, *, op: str | None = None
    ) -> None:
        """An attribute the request sets (``op``: the PATCH operation, if any). ``before``
        is :data:`NOT_READ` unless the request read the object anyway."""
        if len(self._changes) >= MAX_CHANGES:
            self._truncated["changes"] += 1
            return
        path = attribute
        if not self._full:
            path, literals = self._privacy.path(self.resource_type, attribute)
            for literal in literals:
                self._remember(literal)
        fits = len(path) <= MAX_ATTRIBUTE and path.isascii()  # _clip's answer, without a call
        recorded = path if fits else self._clip(path, MAX_ATTRIBUTE)
        was: tuple[bool, Any] = (False, None)
        if not isinstance(before, _NotRead):
            was = self._recorded(attribute, before)
        kept, shown = self._recorded(attribute, after)
        fields: dict[str, Any] = {"after": shown} if kept else {}  # members in order (Ordered)
        fields["attribute"] = recorded
        if was[0]:
            fields["before"] = was[1]
        if op is not None and (operation := op.lower()) in _OPS:
            fields["op"] = operation
        self._changes.append(fields)

    def add_members(self, added: Iterable[str] = (), removed: Iterable[str] = ()) -> None:
        """Member ids added to and removed from a group (ids are not personal)."""
        for member in added:
            self._added_count += 1
            self._member(self._added, member)
        for member in removed:
            self._removed_count += 1
            self._member(self._removed, member)

    def add_modyo_call(
        self, method: str, path: str, status: int | str, attempt: int, ms: float
    ) -> None:
        """One attempt of a Modyo call: ``path`` its template (``/team_members/:id``),
        ``status`` the HTTP status or why none came."""
        if len(self._calls) >= MAX_CALLS:
            self._truncated["modyo_calls"] += 1
            return
        answered = isinstance(status, int) and 100 <= status <= 599
        self._calls.append(
            {  # members in order (Ordered)
                "attempt": min(max(attempt, 1), 1000),
                "method": self._clip(method, 16),
                "ms": min(max(round(ms), 0), MAX_INTEGER),
                "path": self._clip(path, MAX_PATH),
                "status": status if answered else self._clip(str(status), 64),
            }
        )

    def add_upstream_calls(
        self, calls: Iterable[tuple[str, int | str, int, float]], left_out: int = 0
    ) -> None:
        """The attempts a request kept (``bridge.request_state``): each call named
        ``"METHOD /template"``; ``left_out`` more were only counted."""
        for call, status, attempt, ms in calls:
            method, _, path = call.partition(" ")
            self.add_modyo_call(method, path, status, attempt, ms)
        self._truncated["modyo_calls"] += left_out

    def finish(
        self,
        outcome: Outcome,
        *,
        status: int | None = None,
        scim_type: str | None = None,
        detail: str | None = None,
        reason: str | None = None,
    ) -> ScimEvent:
        """The event: ``refused`` needs the SCIM error's ``detail`` (and ``scim_type``),
        ``failed`` its ``reason``. Texts are cleaned of the personal values this record
        saw when values are not written in full."""
        fields = self.finish_wire(
            outcome, status=status, scim_type=scim_type, detail=detail, reason=reason, checked=False
        )
        return ScimEvent.model_validate(fields)

    def finish_wire(
        self,
        outcome: Outcome,
        *,
        status: int | None = None,
        scim_type: str | None = None,
        detail: str | None = None,
        reason: str | None = None,
        checked: bool = True,
    ) -> Ordered:
        """:meth:`finish`'s event as the journal writes it (``ScimEvent.wire()``), built
        directly: the request flow's path, without validating again what the record already
        bounded, every nested object's members in order (tests/test_journal_events.py holds
        the two equal, and the line sealed from it equal to the reference). Raises ValueError
        for an outcome without its explanation, as :meth:`finish` does."""
        if self._finished:
            raise RuntimeError("a journal record is finished once")
        self._finished = True
        has_error = detail is not None or scim_type is not None
        problem = explanation_problem(outcome, has_error, reason is not None)
        if checked and problem:
            raise ValueError(problem)
        elapsed = max(0.0, self._monotonic() - self._started)
        event = Ordered(
            {
                "schema_version": SCHEMA_VERSION,
                "kind": "scim",
                "time": timestamp(self._now()),
                "request_id": self.request_id,
                "operation": self.operation,
                "values": self._privacy.mode,
                "changes": self._changes,
                "outcome": outcome,
                "modyo_calls": self._calls,
                "duration_ms": min(round(elapsed * 1000), MAX_INTEGER),
            }
        )
        for name, value in (
            ("client_request_id", self.client_request_id),
            ("token", self.token),
            ("resource_type", self.resource_type),
            ("status", status),
        ):
            if value is not None:
                event[name] = value
        if self._resource:
            event["resource"] = dict(sorted(self._resource.items()))
        if self._added_count or self._removed_count:
            event["members"] = {
                "added": self._added,
                "added_count": self._added_count,
                "removed": self._removed,
                "removed_count": self._removed_count,
            }
        if has_error:
            error = {"detail": self._text(detail or "", MAX_DETAIL)}
            if scim_type is not None:
                error["scim_type"] = self._clip(scim_type, 64)
            event["error"] = error
        if reason is not None:
            event["reason"] = self._text(reason, MAX_DETAIL)
        if any(self._truncated.values()):
            event["truncated"] = dict(self._truncated)
        return event

    def _recorded(self, attribute: str, value: Raw) -> tuple[bool, str | bool | int | None]:
        """What is written for ``value`` of ``attribute``: privacy first (a hash covers the
        whole value), then the bound."""
        if self._full:  # as below, without the calls, for the values a write mostly holds
            if value is None or value is True or value is False:
                return True, value
            if type(value) is str and len(value) <= MAX_TEXT and value.isascii():
                return True, value
        plain = _plain(value)
        if self._full:
            kept, shown = True, plain
        else:
            personal = self._privacy.personal(self.resource_type, attribute)
            if personal and isinstance(plain, str):
                self._remember(plain)
            kept, shown = self._privacy.value(personal, plain)
        if isinstance(shown, str):
            shown = self._clip(shown, MAX_TEXT)
        return kept, shown

    def _member(self, kept: list[str], member: str) -> None:
        if len(kept) < MAX_MEMBERS:
            kept.append(self._clip(str(member), MAX_ID))
        else:
            self._truncated["members"] += 1

    def _remember(self, value: str) -> None:
        if (
            MIN_REMEMBERED <= len(value) <= MAX_REMEMBERED_LENGTH
            and len(self._remembered) < MAX_REMEMBERED
        ):
            self._remembered.append(value)

    def _text(self, text: str, limit: int) -> str:
        """An error text, cleaned of the personal values seen (unless written in full)."""
        if self._privacy.mode != "full":
            for value in sorted(set(self._remembered), key=len, reverse=True):
                shown = OMITTED if self._privacy.mode == "none" else self._privacy.hashed(value)
                text = re.compile(re.escape(value), re.IGNORECASE).sub(_constant(shown), text)
        return self._clip(text, limit)

    def _maybe(self, text: str | None, limit: int) -> str | None:
        return None if text is None else self._clip(text, limit)

    def _clip(self, text: str, limit: int) -> str:
        """``text`` as valid Unicode, at most ``limit`` characters (a cut one ends in
        :data:`CUT`, counted in ``truncated.values``)."""
        if not text.isascii():
            text = _SURROGATE.sub("\ufffd", text)
        if len(text) <= limit:
            return text
        self._truncated["values"] += 1
        return text[: limit - 1] + CUT


def _constant(text: str) -> Callable[[re.Match[str]], str]:
    """A replacement taken as is (no backslash or group reference is interpreted)."""
    return lambda _: text


def _plain(value: Raw) -> str | bool | int | None:
    """A JSON value as the journal writes it: strings, booleans, integers and null as they
    are; another number, or an object or array, as its JSON text."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int) and -MAX_INTEGER <= value <= MAX_INTEGER:
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)
