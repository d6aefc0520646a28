"""The journal's writer: lines sealed and written on a thread of their own, fed by a bounded
queue, so a slow disk never holds the event loop and a full queue never holds a request
(docs/reference/journal.md, "Writing").

:meth:`JournalWriter.submit` never blocks and never raises: when the queue is full the event
is dropped and counted, and the next line written is a ``dropped`` record with the count, so
the loss is in the chain itself. A failed write (a full disk) drops the event the same way;
an event at least :data:`RETRY_SECONDS` later reopens the file, whose last complete line the
chain continues from, after a ``start`` record. Failures are logged once per change of state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from bridge import __version__
from bridge.journal.chain import Chain, Head
from bridge.journal.event import ValuesMode
from bridge.journal.keys import JournalKey
from bridge.journal.record import timestamp
from bridge.journal.sink import Resumed, Sink
from bridge.metrics import JOURNAL_DROPPED, JOURNAL_LINES

log = logging.getLogger("bridge.journal")
REASONS: Final = ("queue_full", "write_error")
TAKE_SECONDS: Final = 0.05
"""How often the writer takes the events handed to it: one wake-up of its thread for all of
them. Waking it for each event cost the request more than the writing (the thread switch)."""
RETRY_SECONDS: Final = 1.0
"""After a failed write, events are dropped without a try for this long (a full disk is not
probed once per event)."""


class JournalWriter:
    """Seals and writes the lines of one replica's chain (the module docstring)."""

    def __init__(
        self,
        sink: Sink,
        key: JournalKey | None,
        replica: str,
        values: ValuesMode,
        queue_size: int,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.key = key
        self.replica = replica
        self.values: ValuesMode = values
        self._now = now
        self._monotonic = monotonic
        self._retry_at = 0.0
        self._items: deque[Mapping[str, Any]] = deque()
        self._size = queue_size
        self._wake = threading.Event()
        self._stopping = False
        self._pending = dict.fromkeys(REASONS, 0)
        self._pending_lock = threading.Lock()
        self._chain = Chain(key, replica)
        self._broken = False
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self.head: Head | None = None
        """The last line written (read by the witness from another thread)."""

    def start(self) -> None:
        """Open the sink and write the ``start`` record (here, so that a journal that cannot
        be written stops the process from starting), then start the thread."""
        self._begin(self.sink.open())
        self._thread.start()

    def submit(self, fields: Mapping[str, Any]) -> bool:
        """Queue an event's fields; False when it was dropped (the queue is full). No lock
        and no wake-up: the thread takes the queue every :data:`TAKE_SECONDS`."""
        if len(self._items) >= self._size:
            self._drop("queue_full")
            return False
        self._items.append(fields)  # atomic; only the writer's thread takes from it
        return True

    def stop(self, timeout: float) -> bool:
        """Write what is queued, close; blocking (run it in a thread). False when the
        writer did not finish within ``timeout`` seconds."""
        if not self._thread.is_alive():
            self.sink.close()
            return True
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def dropped(self) -> dict[str, int]:
        """Events dropped and not yet recorded in the chain, by reason."""
        with self._pending_lock:
            return dict(self._pending)

    def _run(self) -> None:
        while True:
            stopping = self._stopping  # read before taking: what comes before stop is written
            while self._items:
                item = self._items.popleft()
                try:
                    self._event(item)
                except Exception:  # the thread must outlive an event it cannot write
                    self._drop("write_error")
                    log.exception(
                        "a journal event could not be written", extra={"replica": self.replica}
                    )
            if stopping:
                break
            self._wake.wait(TAKE_SECONDS)
        with contextlib.suppress(OSError):
            self.sink.close()

    def _event(self, fields: Mapping[str, Any]) -> None:
        try:
            if self._broken:
                if self._monotonic() < self._retry_at:
                    self._drop("write_error")
                    return
                self._begin(self.sink.open())
                self._broken = False
                log.warning("journal writable again", extra={"replica": self.replica})
            self._record_drops()
            if self.sink.due():
                previous = self.sink.rotate()
                self._write({"kind": "rotated", "previous_file": previous})
            self._write(fields)
        except OSError as exc:
            self._drop("write_error")
            self._retry_at = self._monotonic() + RETRY_SECONDS
            if not self._broken:
                self._broken = True
                log.error(
                    "journal write failed: events are dropped (counted) until it recovers",
                    extra={"replica": self.replica, "error": type(exc).__name__,
                           "errno": exc.errno},
                )  # fmt: skip
            with contextlib.suppress(OSError):
                self.sink.close()

    def _begin(self, resumed: Resumed) -> None:
        """A ``start`` record: continuing the file's last line, or a new segment."""
        head = resumed.head if resumed.head and resumed.head.replica == self.replica else None
        self._chain = Chain(self.key, self.replica, head)
        start: dict[str, Any] = {
            "kind": "start",
            "bridge_version": __version__,
            "pid": os.getpid(),
            "values": self.values,
        }
        if head is not None:
            previous: dict[str, Any] = {"seq": head.seq}
            if head.file is not None:
                previous["file"] = head.file
            if head.mac is not None:
                previous["mac"] = head.mac
            start["previous"] = previous
        if resumed.repaired:
            start["repaired"] = True
        self._write(start)

    def _record_drops(self) -> None:
        for reason in REASONS:
            with self._pending_lock:
                count = self._pending[reason]
            if count:
                self._write({"kind": "dropped", "count": count, "reason": reason})
                with self._pending_lock:
                    self._pending[reason] -= count

    def _write(self, fields: Mapping[str, Any]) -> None:
        line = {"schema_version": 1, **fields}
        if "time" not in line:  # a SCIM event has its own: when its outcome was known
            line["time"] = timestamp(self._now())
        sealed = self._chain.seal(line)
        self.sink.write(sealed.line)
        self._chain.advance(sealed)
        JOURNAL_LINES.inc()
        self.head = Head(self.replica, sealed.seq, sealed.mac, self.sink.name)

    def _drop(self, reason: str) -> None:
        JOURNAL_DROPPED(reason).inc()
        with self._pending_lock:
            self._pending[reason] += 1
