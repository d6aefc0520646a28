"""``journal export``: the events of journal files, filtered, as JSON lines (each line as
written, seal included) or CSV for a spreadsheet (docs/reference/journal.md, "Exporting").

Each replica's files are read in chain order and the replicas merged by ``time`` (each chain
is in time order: an event is written when its outcome is known). Export does not verify:
``journal verify`` does; lines that are not journal lines are skipped and named.
"""

from __future__ import annotations

import csv
import heapq
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from bridge.journal.chain import open_line
from bridge.journal.history import EventFilter
from bridge.journal.reader import chains, lines

COLUMNS: Final = (
    "time", "replica", "seq", "request_id", "client_request_id", "token", "operation",
    "resource_type", "resource_id", "resource_name", "external_id", "outcome", "status",
    "scim_type", "detail", "changes", "members_added", "members_removed", "modyo_calls",
    "duration_ms",
)  # fmt: skip
FORMULA: Final = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet takes for a formula at the start of a cell (OWASP CSV injection)."""


@dataclass(frozen=True, slots=True)
class _Line:
    time: str
    fields: dict[str, Any]
    raw: bytes


@dataclass
class Exported:
    events: int = 0
    skipped: list[str] = field(default_factory=list)
    """``path:line`` of each line that is not a journal line."""


def export(
    paths: list[Path],
    where: EventFilter,
    write_jsonl: Callable[[bytes], object] | None = None,
    csv_out: IO[str] | None = None,
    kinds: frozenset[str] = frozenset({"scim"}),
) -> Exported:
    """Write the matching lines of ``kinds`` to ``write_jsonl`` (raw lines) or ``csv_out``."""
    result = Exported()
    streams = [_read(files, result) for files in chains(paths).values()]
    writer = None
    if csv_out is not None:
        writer = csv.writer(csv_out, lineterminator="\n")
        writer.writerow(COLUMNS)
    for line in heapq.merge(*streams, key=lambda line: line.time):
        if line.fields.get("kind") not in kinds or not where.matches(line.fields):
            continue
        result.events += 1
        if writer is not None:
            writer.writerow([cell(value) for value in row(line.fields)])
        elif write_jsonl is not None:
            write_jsonl(line.raw + b"\n")
    return result


def _read(files: Iterable[Path], result: Exported) -> Iterator[_Line]:
    for path in files:
        for line in lines(path):
            opened = open_line(line.raw) if line.complete else None
            fields = opened.fields if opened is not None else None
            if fields is None:
                result.skipped.append(f"{path}:{line.number}")
                continue
            time = fields.get("time")
            yield _Line(time if isinstance(time, str) else "", fields, line.raw)


def row(event: Mapping[str, Any]) -> list[object]:
    """One CSV row of :data:`COLUMNS` for an event's fields."""
    resource = _mapping(event.get("resource"))
    error = _mapping(event.get("error"))
    members = _mapping(event.get("members"))
    return [
        event.get("time"), event.get("replica"), event.get("seq"), event.get("request_id"),
        event.get("client_request_id"), event.get("token"), event.get("operation"),
        event.get("resource_type"), resource.get("id"), resource.get("name"),
        resource.get("external_id"), event.get("outcome"), event.get("status"),
        error.get("scim_type"), error.get("detail", event.get("reason")),
        "; ".join(_change(_mapping(change)) for change in _list(event.get("changes"))),
        _members(members, "added"), _members(members, "removed"),
        "; ".join(_call(_mapping(call)) for call in _list(event.get("modyo_calls"))),
        event.get("duration_ms"),
    ]  # fmt: skip


def _change(change: Mapping[str, Any]) -> str:
    text = f"{change.get('op')} " if change.get("op") else ""
    text += str(change.get("attribute"))
    if "before" in change:
        text += f" {_json(change['before'])} ->"
    if "after" in change:
        text += f" {_json(change['after'])}"
    elif "before" not in change:
        text += " (value not recorded)"
    return text


def _members(members: Mapping[str, Any], direction: str) -> str:
    ids = [str(member) for member in _list(members.get(direction))]
    count = members.get(f"{direction}_count")
    more = count - len(ids) if isinstance(count, int) else 0
    return " ".join(ids) + (f" (+{more} more)" if more > 0 else "")


def _call(call: Mapping[str, Any]) -> str:
    return (
        f"{call.get('method')} {call.get('path')} {call.get('status')} "
        f"#{call.get('attempt')} {call.get('ms')}ms"
    )


def cell(value: object) -> object:
    """A cell, defused: text a spreadsheet would run as a formula starts with a quote."""
    if isinstance(value, str) and value.startswith(FORMULA):
        return "'" + value
    return "" if value is None else value


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
