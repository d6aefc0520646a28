"""``scim-bridge journal tail`` and ``journal export --redis``: the latest events, then each new
one as it is written, from the journal's files (every replica's, rotation followed) or from
the shared Redis stream (docs/reference/journal.md, "Commands").

Output is JSON lines (the events as written) or one line of text per event for a person;
neither can hold a secret (an event holds the SCIM token's name, never the token). Following
polls the files (a journal is appended, never rewritten) or blocks on the stream
(``XREAD BLOCK``), until stopped.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, cast

import redis.asyncio as redis

from bridge.journal.chain import open_line
from bridge.journal.export import COLUMNS, cell, row
from bridge.journal.history import EventFilter
from bridge.journal.redis_history import RedisHistory, entry_event, stream_id

POLL_SECONDS: Final = 0.5
"""Between two looks at the files when following."""
BLOCK_MS: Final = 1000
"""The longest one ``XREAD`` waits for new entries (then the stop condition is checked)."""
MAX_LAST: Final = 10_000


def text_line(event: Mapping[str, Any]) -> str:
    """One event as a person reads it: when, where, what came of it, on what, and why."""
    resource = _mapping(event.get("resource"))
    error = _mapping(event.get("error"))
    named = " ".join(
        str(part)
        for part in (
            event.get("resource_type"),
            resource.get("name"),
            f"id={resource['id']}" if resource.get("id") else None,
        )
        if part
    )
    parts = [
        event.get("time"),
        event.get("replica"),
        event.get("outcome"),
        event.get("status"),
        event.get("operation"),
        named or None,
        f"token={event['token']}" if event.get("token") else None,
        f"request={event.get('request_id')}",
    ]
    why = error.get("detail") or event.get("reason")
    line = " ".join(str(part) for part in parts if part is not None)
    return _one_line(f"{line}: {why}" if why else line)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _one_line(text: str) -> str:
    """No control character of an event's text reaches the terminal (a line break in a
    detail would forge a second line)."""
    return re.sub(r"[\x00-\x1f\x7f]", "?", text)


class Printer:
    """Writes events in one ``fmt`` (``jsonl``, ``text`` or ``csv``) to ``out``."""

    def __init__(self, out: IO[str], fmt: str) -> None:
        self.out = out
        self.fmt = fmt
        self.count = 0
        if fmt == "csv":
            import csv

            self._csv = csv.writer(out, lineterminator="\n")
            self._csv.writerow(COLUMNS)

    def __call__(self, event: Mapping[str, Any]) -> None:
        self.count += 1
        if self.fmt == "text":
            self.out.write(text_line(event) + "\n")
        elif self.fmt == "csv":
            self._csv.writerow([cell(value) for value in row(event)])
        else:
            self.out.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
        self.out.flush()


# ---------------------------------------------------------------------------- files


@dataclass
class _Followed:
    offset: int = 0
    partial: bytes = b""


@dataclass
class FileTail:
    """The journal files named (a file, or the ``journal.file`` setting: every replica's files
    beside it), read from where the last look stopped."""

    names: list[Path]
    where: EventFilter
    _files: dict[Path, _Followed] = field(default_factory=dict)

    def paths(self) -> list[Path]:
        found: set[Path] = set()
        for name in self.names:
            if name.is_file():
                found.add(name)
            else:  # the setting's value: <stem>.<replica>.<number><suffix> beside it
                found.update(name.parent.glob(f"{name.stem}.*{name.suffix}"))
        return sorted(found)

    def new_events(self) -> Iterator[dict[str, Any]]:
        """The matching events written since the last call (oldest first per file; files in
        name order, which is each replica's chain order)."""
        for path in self.paths():
            followed = self._files.setdefault(path, _Followed())
            try:
                with path.open("rb") as handle:
                    handle.seek(followed.offset)
                    chunk = handle.read()
            except FileNotFoundError:  # removed by rotation's keep_files
                self._files.pop(path, None)
                continue
            followed.offset += len(chunk)
            data = followed.partial + chunk
            *complete, followed.partial = data.split(b"\n")
            for raw in complete:
                opened = open_line(raw)
                fields = opened.fields if opened is not None else None
                if fields and fields.get("kind") == "scim" and self.where.matches(fields):
                    yield fields


def tail_files(
    names: list[Path],
    where: EventFilter,
    last: int,
    follow: bool,
    emit: Callable[[Mapping[str, Any]], None],
    *,
    stop: Callable[[], bool] = lambda: False,
    wait: Callable[[float], None] = time.sleep,
) -> None:
    """The ``last`` matching events of the files (by time, across replicas), then, with
    ``follow``, every new one until ``stop()``."""
    tail = FileTail(names, where)
    latest: deque[dict[str, Any]] = deque(maxlen=max(0, min(last, MAX_LAST)))
    latest.extend(sorted(tail.new_events(), key=_time))
    for event in latest:
        emit(event)
    while follow and not stop():
        wait(POLL_SECONDS)
        for event in sorted(tail.new_events(), key=_time):
            emit(event)


def _time(event: Mapping[str, Any]) -> str:
    moment = event.get("time")
    return moment if isinstance(moment, str) else ""


# ---------------------------------------------------------------------------- the stream


async def tail_stream(
    client: redis.Redis,
    key: str,
    where: EventFilter,
    last: int,
    follow: bool,
    emit: Callable[[Mapping[str, Any]], None],
    *,
    call_seconds: float,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """The ``last`` matching events of the stream ``key``, then, with ``follow``, every new
    one until ``stop()``; ``call_seconds`` bounds each read of the last ones."""
    top = cast("list[tuple[Any, Any]]", await client.xrevrange(key, count=1))
    after = stream_id(top[0][0]) if top else "0-0"
    history = RedisHistory(client, key, MAX_LAST, call_seconds)
    if last > 0:
        page = await history.query(where, limit=min(last, MAX_LAST))
        for event in reversed(page.events):
            emit(event)
    while follow and not stop():
        found = cast(
            "list[tuple[Any, list[tuple[Any, Mapping[Any, Any]]]]]",
            await client.xread({key: after}, count=200, block=BLOCK_MS),
        )
        for _, entries in found or ():
            for entry_id, fields in entries:
                after = stream_id(entry_id)
                event = entry_event(fields)
                if event is not None and where.matches(event):
                    emit(event)


async def export_stream(
    client: redis.Redis,
    key: str,
    size: int,
    where: EventFilter,
    emit: Callable[[Mapping[str, Any]], None],
    *,
    call_seconds: float,
) -> int:
    """Every matching event the stream holds, oldest first; how many (``call_seconds``:
    each page's bound)."""
    history = RedisHistory(client, key, size, call_seconds)
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        page = await history.query(where, limit=200, cursor=cursor)
        pages.append(page.events)
        if page.cursor is None:
            break
        cursor = page.cursor
    events = [event for page in reversed(pages) for event in reversed(page)]
    for event in events:
        emit(event)
    return len(events)
