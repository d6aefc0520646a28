"""Where sealed lines go: JSON-lines files, one series per replica rotated by size, or the
process's stdout (docs/reference/journal.md, "Files and rotation").

A file sink writes ``<stem>.<replica>.<number><suffix>`` beside ``journal.file`` (for
``/var/lib/bridge/journal.jsonl``: ``journal.pod-1.000001.jsonl``, then ``.000002``...): a
name never changes once written, so a rotated file's first line can name the one before it.
Each batch of lines the writer hands over is one ``write()`` to a descriptor opened
``O_APPEND`` (no buffer in the process: a line is in the kernel, and survives the process,
once written); the file is forced to disk (``fsync``) at rotation and close, or after every
write with ``journal.fsync = "event"``. The
current file is locked (``flock``): a second process given the same replica name is refused
instead of interleaving its lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Protocol

from bridge.journal.chain import Head

TAIL_BYTES: Final = 1_048_576
"""How far from a file's end its last line is looked for (lines are far shorter)."""
FILE_MODE: Final = 0o600


class JournalBusy(OSError):
    """Another process writes this replica's journal file."""


@dataclass(frozen=True, slots=True)
class Resumed:
    """What a sink found on opening: the last complete line (to continue the chain from),
    and whether the file ended in an incomplete line, now closed by a line break."""

    head: Head | None
    repaired: bool = False


class Sink(Protocol):
    @property
    def name(self) -> str | None: ...
    @property
    def written(self) -> int:
        """Bytes written so far, all files together (a failed write counts what it wrote)."""
        ...

    def open(self) -> Resumed: ...
    def due(self, pending: int = 0) -> bool:
        """Whether the current file is full, with ``pending`` bytes more."""
        ...

    def rotate(self) -> str: ...
    def write(self, lines: bytes) -> None: ...
    def close(self) -> None: ...


class StreamSink:
    """Lines on a binary stream (stdout by default), flushed each. Not through ``logging``:
    no formatter, level or redaction may alter a sealed line, and the ordinary log is on
    stderr. Nothing to resume: every process starts a new segment."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._written = 0

    @property
    def name(self) -> str | None:
        return None

    @property
    def written(self) -> int:
        return self._written

    def open(self) -> Resumed:
        return Resumed(None)

    def due(self, pending: int = 0) -> bool:
        return False

    def rotate(self) -> str:  # pragma: no cover - never due
        raise NotImplementedError

    def write(self, lines: bytes) -> None:
        """All or nothing, as far as the writer counts (a new segment follows a failure)."""
        self._stream.write(lines)
        self._stream.flush()
        self._written += len(lines)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()


def series_pattern(template: Path, replica: str) -> re.Pattern[str]:
    """The names of ``replica``'s files for ``journal.file = template``; group 1 numbers."""
    return re.compile(
        rf"^{re.escape(template.stem)}\.{re.escape(replica)}\.(\d{{6,}}){re.escape(template.suffix)}$"
    )


def series(template: Path, replica: str) -> list[tuple[int, Path]]:
    """``replica``'s files, oldest first."""
    pattern = series_pattern(template, replica)
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in template.parent.iterdir():
            match = pattern.match(entry.name)
            if match:
                found.append((int(match.group(1)), entry))
    return sorted(found)


class FileSink:
    """Size-rotated files for one replica (the module docstring)."""

    def __init__(
        self,
        template: Path,
        replica: str,
        *,
        max_bytes: int,
        keep_files: int,
        fsync_each: bool = False,
    ) -> None:
        self.template = template
        self.replica = replica
        self.max_bytes = max_bytes
        self.keep_files = keep_files
        self.fsync_each = fsync_each
        self._fd: int | None = None
        self._number = 0
        self._size = 0
        self._written = 0
        self._name = ""

    @property
    def name(self) -> str | None:
        return self._name if self._number else None

    @property
    def written(self) -> int:
        return self._written

    def _path(self, number: int) -> Path:
        template = self.template
        return template.with_name(f"{template.stem}.{self.replica}.{number:06d}{template.suffix}")

    def open(self) -> Resumed:
        """Open the newest file of the series (or the first), continuing after its last
        complete line; an incomplete last line is closed by a line break (``repaired``)."""
        existing = series(self.template, self.replica)
        self._number = existing[-1][0] if existing else 1
        self._open_current()
        head, repaired = _tail(self._path(self._number), self.replica)
        if repaired:
            self.write(b"\n")
        if head is None and self._size == 0 and len(existing) > 1:
            head, _ = _tail(existing[-2][1], self.replica)  # rotated, then nothing written
        return Resumed(head, repaired)

    def _open_current(self) -> None:
        import fcntl  # POSIX: the bridge writes on Linux; an auditor may verify elsewhere

        path = self._path(self._number)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(path, flags, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalBusy(
                f"another process writes {path.name}: give each process its own journal.replica"
            ) from None
        self._fd = fd
        self._size = os.fstat(fd).st_size
        self._name = path.name

    def due(self, pending: int = 0) -> bool:
        return self._size + pending >= self.max_bytes

    def rotate(self) -> str:
        """Close the current file (forced to disk), open the next; removes the oldest beyond
        ``keep_files``. Returns the closed file's name."""
        previous = self._path(self._number).name
        self.close()
        self._number += 1
        self._open_current()
        if self.keep_files:
            for _, path in series(self.template, self.replica)[: -self.keep_files]:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return previous

    def write(self, lines: bytes) -> None:
        """``lines`` in one ``write()`` (more only if the kernel takes part of them), then
        forced to disk with ``fsync_each``."""
        if self._fd is None:
            raise OSError("the journal file is not open")
        view = memoryview(lines)
        while view:
            written = os.write(self._fd, view)
            self._size += written
            self._written += written
            view = view[written:]
        if self.fsync_each:
            os.fsync(self._fd)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _tail(path: Path, replica: str) -> tuple[Head | None, bool]:
    """The last complete line of ``path`` as a head (None when there is none, or it is not
    this replica's), and whether the file ends in an incomplete line."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = max(0, size - TAIL_BYTES)
        handle.seek(start)
        tail = handle.read()
    if not tail:
        return None, False
    repaired = not tail.endswith(b"\n")
    lines = tail.split(b"\n")[:-1]  # the last element: "" or the incomplete line
    if start > 0:
        lines = lines[1:]  # the first may be cut by the window
    for line in reversed(lines):
        if line.strip():
            return _head(line, path.name, replica), repaired
    return None, repaired


def _head(line: bytes, file: str, replica: str) -> Head | None:
    try:
        fields = json.loads(line)
    except ValueError:
        return None
    if not isinstance(fields, dict) or fields.get("replica") != replica:
        return None
    seq, mac = fields.get("seq"), fields.get("mac")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return None
    return Head(replica, seq, mac if isinstance(mac, str) else None, file)
