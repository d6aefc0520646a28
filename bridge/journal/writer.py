"""The journal's writer: lines sealed and written on a thread of their own, fed by a bounded
queue, so a slow disk never holds the event loop and a full queue never holds a request
(docs/reference/journal.md, "Writing").

The thread takes the queue every :data:`TAKE_SECONDS` and writes what it took as one batch:
the lines sealed in order, then one ``write()`` for all of them (and, with
``journal.fsync = "event"``, one ``fsync``), so the thread takes the interpreter's lock once a
batch instead of once a line. :meth:`JournalWriter.submit` never blocks and never raises:
when the queue is full the event is dropped and counted, and the next line written is a
``dropped`` record with the count, so the loss is in the chain itself. A failed write (a full
disk) drops the events of its batch that did not reach the file the same way; an event at
least :data:`RETRY_SECONDS` later reopens the file, whose last complete line the chain
continues from, after a ``start`` record. Failures are logged once per change of state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from bridge import __version__
from bridge.journal.chain import Chain, Head, Sealed
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
BATCH_BYTES: Final = 1_048_576
"""A batch is written once it holds this much (a long queue is written in parts)."""


@dataclass(slots=True)
class _Line:
    """A line sealed and not yet written: what its loss would mean (never changed once
    made; not frozen, as :class:`Sealed`)."""

    sealed: Sealed
    event: bool
    """A SCIM event (lost: counted as dropped), not a record of the chain itself."""
    dropped: tuple[str, int] | None = None
    """A ``dropped`` record's reason and count (lost: counted again for the next one)."""


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
        self._batch: list[_Line] = []
        self._batch_bytes = 0
        self._broken = False
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self.head: Head | None = None
        """The last line written (read by the witness from another thread)."""

    def start(self) -> None:
        """Open the sink and write the ``start`` record (here, so that a journal that cannot
        be written stops the process from starting), then start the thread."""
        self._begin(self.sink.open())
        self._flush()
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
            if self._items:
                self._take()
            if stopping:
                break
            self._wake.wait(TAKE_SECONDS)
        with contextlib.suppress(OSError):
            self.sink.close()

    def _take(self) -> None:
        """Seal what is queued, in order, and write it: one batch."""
        while self._items:
            item = self._items.popleft()
            try:
                self._event(item)
            except OSError as exc:
                self._drop("write_error")
                self._fail(exc)
            except Exception:  # the thread must outlive an event it cannot write
                self._drop("write_error")
                log.exception(
                    "a journal event could not be written", extra={"replica": self.replica}
                )
            if self._batch_bytes >= BATCH_BYTES:
                self._write_batch()
        self._write_batch()

    def _event(self, fields: Mapping[str, Any]) -> None:
        """Seal ``fields`` into the batch (after what the chain must say first); OSError
        when the file cannot be reopened or rotated."""
        if self._broken:
            if self._monotonic() < self._retry_at:
                self._drop("write_error")
                return
            self._begin(self.sink.open())
            self._broken = False
            log.warning("journal writable again", extra={"replica": self.replica})
        self._record_drops()
        if self.sink.due(self._batch_bytes):
            self._flush()
            previous = self.sink.rotate()
            self._write({"kind": "rotated", "previous_file": previous})
        self._write(fields, event=True)

    def _write_batch(self) -> None:
        try:
            self._flush()
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        """A write failed: events are dropped untried for :data:`RETRY_SECONDS`."""
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
        if not any(self._pending.values()):  # mostly: no lock taken (the next event looks again)
            return
        for reason in REASONS:
            with self._pending_lock:
                count = self._pending[reason]
                self._pending[reason] -= count
            if count:
                self._write({"kind": "dropped", "count": count, "reason": reason},
                            dropped=(reason, count))  # fmt: skip

    def _write(
        self, fields: Mapping[str, Any], *, event: bool = False,
        dropped: tuple[str, int] | None = None,
    ) -> None:  # fmt: skip
        """Seal ``fields`` as the chain's next line, into the batch."""
        line = fields
        if "schema_version" not in fields or "time" not in fields:  # a SCIM event has both
            line = {"schema_version": 1, **fields}
            if "time" not in line:  # a SCIM event's: when its outcome was known
                line["time"] = timestamp(self._now())
        try:
            sealed = self._chain.seal(line)
        except Exception:
            if dropped is not None:
                self._restore(*dropped)
            raise
        self._chain.advance(sealed)
        self._batch.append(_Line(sealed, event, dropped))
        self._batch_bytes += len(sealed.line)

    def _flush(self) -> None:
        """Write the batch: one ``write()``. When it fails, the lines that reached the file
        whole stay (an incomplete last one is closed at reopening, ``repaired``), and the
        events after them are dropped (counted), then OSError; the chain is taken up again
        from the file when it is reopened."""
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if not batch:
            return
        before = self.sink.written
        try:
            self.sink.write(b"".join(line.sealed.line for line in batch))
        except OSError:
            self._account(batch, self.sink.written - before)
            raise
        self._account(batch, None)

    def _account(self, batch: list[_Line], written: int | None) -> None:
        """The head after the lines of ``batch`` that reached the file (all of them when
        ``written`` is None, else those within its first ``written`` bytes)."""
        kept = len(batch)
        if written is not None:
            kept, total = 0, 0
            for line in batch:
                total += len(line.sealed.line)
                if total > written:
                    break
                kept += 1
            for line in batch[kept:]:
                if line.event:
                    self._drop("write_error")
                elif line.dropped is not None:
                    self._restore(*line.dropped)
        if kept:
            last = batch[kept - 1].sealed
            JOURNAL_LINES.inc(kept)
            self.head = Head(self.replica, last.seq, last.mac, self.sink.name)

    def _drop(self, reason: str) -> None:
        JOURNAL_DROPPED(reason).inc()
        self._restore(reason, 1)

    def _restore(self, reason: str, count: int) -> None:
        """Events to record in the next ``dropped`` line (counted in the metric already)."""
        with self._pending_lock:
            self._pending[reason] += count
