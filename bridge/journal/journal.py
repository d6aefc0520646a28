"""The journal of one process, as the request flow uses it: records to fill, events to emit,
and the writer, history and witness running beside the app (docs/reference/journal.md).

:meth:`Journal.emit` is the one thing a request pays: it hands the event to the writer's
queue and to the history, and returns; neither ever blocks it nor raises into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, BinaryIO, Final

from bridge.config import JournalSettings
from bridge.journal.chain import Head
from bridge.journal.event import ScimEvent
from bridge.journal.history import History, MemoryHistory
from bridge.journal.keys import JournalKey
from bridge.journal.privacy import Privacy
from bridge.journal.record import JournalRecord
from bridge.journal.sink import FileSink, Sink, StreamSink
from bridge.journal.witness import HeadWitness
from bridge.journal.writer import JournalWriter

log = logging.getLogger("bridge.journal")
STOP_SECONDS: Final = 10.0
"""How long shutdown waits for the writer to write what is queued."""
_NOT_A_NAME: Final = re.compile(r"[^A-Za-z0-9._-]+")


def replica_name(configured: str | None, worker_pid: int | None = None) -> str:
    """``journal.replica``, else the host name (a Kubernetes pod's name), made a file-name
    part; a worker of ``server.workers`` adds its process id."""
    base = configured or _NOT_A_NAME.sub("-", socket.gethostname()).strip("-._") or "bridge"
    suffix = "" if worker_pid is None else f"-{worker_pid}"
    return base[: 64 - len(suffix)] + suffix


class Journal:
    def __init__(
        self,
        settings: JournalSettings,
        *,
        replica: str,
        history: History | None = None,
        stream: BinaryIO | None = None,
        wait: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``history`` defaults to this process's memory; ``stream`` is where lines go
        without ``journal.file`` (stdout); ``wait`` paces the head witness."""
        self.replica = replica
        self.key = (
            None
            if settings.key is None
            else JournalKey.from_secret(settings.key.get_secret_value())
        )
        self.privacy = Privacy(settings.values, self.key.values if self.key else None)
        self.history = history or MemoryHistory(settings.history_size)
        sink: Sink
        if settings.file is not None:
            sink = FileSink(
                settings.file,
                replica,
                max_bytes=settings.max_bytes,
                keep_files=settings.keep_files,
                fsync_each=settings.fsync == "event",
            )
        else:
            sink = StreamSink(stream or sys.stdout.buffer)
        self.writer = JournalWriter(sink, self.key, replica, settings.values, settings.queue_size)
        self.witness = HeadWitness(self.head, settings.witness_interval_seconds, wait)

    def head(self) -> Head | None:
        return self.writer.head

    def record(
        self,
        *,
        request_id: str,
        operation: str,
        resource_type: str | None = None,
        client_request_id: str | None = None,
        token: str | None = None,
    ) -> JournalRecord:
        """A record for one request, under this journal's ``values`` mode."""
        return JournalRecord(
            self.privacy,
            request_id=request_id,
            operation=operation,
            resource_type=resource_type,
            client_request_id=client_request_id,
            token=token,
        )

    def emit(self, event: ScimEvent) -> None:
        """Hand a finished event to the writer and the history."""
        self.emit_wire(event.wire())

    def emit_wire(self, fields: dict[str, Any]) -> None:
        """Hand a finished event, as written (``JournalRecord.finish_wire``), to the writer
        and the history; ``fields`` is theirs from here on."""
        self.writer.submit(fields)
        self.history.add({**fields, "replica": self.replica})

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Writer, history and witness, for the app's lifespan. Opening the sink fails here
        (an unwritable directory, a replica name in use), before the app serves."""
        await asyncio.to_thread(self.writer.start)
        async with self.history.running():
            witness = asyncio.create_task(self.witness.run(), name="journal-witness")
            try:
                yield
            finally:
                witness.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await witness
                if not await asyncio.to_thread(self.writer.stop, STOP_SECONDS):
                    log.error("the journal writer did not finish in time: queued events lost")
                self.witness.witness()
