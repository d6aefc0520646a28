"""Reading journal files back: their lines with line numbers, and the files of each replica
in chain order (``journal verify`` and ``journal export``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bridge.journal.chain import open_line


@dataclass(frozen=True, slots=True)
class RawLine:
    path: Path
    number: int
    raw: bytes
    """Without its line break."""
    complete: bool
    """False for a last line without a line break (cut, or still being written)."""


def lines(path: Path) -> Iterator[RawLine]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            complete = raw.endswith(b"\n")
            yield RawLine(path, number, raw[:-1] if complete else raw, complete)


@dataclass(frozen=True, slots=True)
class FileStart:
    path: Path
    replica: str | None
    seq: int | None


def file_start(path: Path) -> FileStart:
    """The replica and first sequence number of the first readable line of ``path``."""
    for line in lines(path):
        fields = open_line(line.raw).fields if line.complete else None
        if fields is None:
            continue
        replica, seq = fields.get("replica"), fields.get("seq")
        if isinstance(replica, str) and isinstance(seq, int) and not isinstance(seq, bool):
            return FileStart(path, replica, seq)
    return FileStart(path, None, None)


def chains(paths: list[Path]) -> dict[str | None, list[Path]]:
    """The files of each replica, in chain order (by their first sequence number, then
    name); files with no readable line under None."""
    starts: dict[str | None, list[FileStart]] = defaultdict(list)
    for path in paths:
        start = file_start(path)
        starts[start.replica].append(start)
    return {
        replica: [s.path for s in sorted(found, key=lambda s: (s.seq or 0, s.path.name))]
        for replica, found in sorted(starts.items(), key=lambda item: item[0] or "")
    }
