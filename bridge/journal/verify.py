"""``journal verify``: whether each replica's chain is intact, and if not exactly where a line
was changed, removed, reordered, cut or copied (docs/reference/journal.md, "Verifying").

Each line is checked alone first: complete, canonical, sealed by a key given, its keyed hash
matching. Then the authentic lines of each replica are walked in chain order (its files by
their first sequence number): each must follow the one before (``seq`` + 1, ``prev`` its
``mac``), and a rotated file's first line must name the file before it. A gap is resolved at
the end: lines found elsewhere were moved (reordered), lines found nowhere were removed,
unless damaged lines stand in their place (reported as such). Heads witnessed in the ordinary
log (``--witness``) catch what the chain alone cannot: lines cut off the end.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.journal.chain import authentic, open_line
from bridge.journal.keys import JournalKey
from bridge.journal.reader import RawLine, chains, lines
from bridge.journal.witness import WITNESS_MESSAGE


@dataclass(slots=True)
class Finding:
    path: Path
    first: int
    last: int
    message: str

    def __str__(self) -> str:
        where = f"{self.first}" if self.first == self.last else f"{self.first}-{self.last}"
        return f"{self.path}:{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Witnessed:
    replica: str
    seq: int
    mac: str | None
    where: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lines: int = 0
    files: int = 0
    replicas: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Each replica's first and last sequence number seen."""

    @property
    def intact(self) -> bool:
        return not self.findings


@dataclass(frozen=True, slots=True)
class _At:
    path: Path
    number: int
    seq: int
    mac: str | None

    def __str__(self) -> str:
        return f"{self.path.name}:{self.number}"


@dataclass(slots=True)
class _Gap:
    first: int
    last: int
    before: _At
    after: _At
    damaged: int
    """Lines in between that could not be authenticated (already reported)."""


class _Walk:
    """One replica's chain, line by line in chain order."""

    def __init__(self, replica: str, report: Report, keys: dict[str, JournalKey],
                 witnessed: dict[int, Witnessed]) -> None:  # fmt: skip
        self.replica = replica
        self.report = report
        self.keys = keys
        self.witnessed = witnessed
        self.last: _At | None = None
        self.damaged = 0
        self.gaps: list[_Gap] = []
        self.displaced: dict[int, list[_At]] = {}
        self.first_seq: int | None = None
        self._run: Finding | None = None

    def bad(self, line: RawLine, message: str) -> None:
        """A line that cannot be authenticated; consecutive ones with the same message are
        one finding."""
        self.damaged += 1
        run = self._run
        if (
            run is not None
            and run.path == line.path
            and run.last == line.number - 1
            and run.message == message
        ):
            run.last = line.number
            return
        self._run = Finding(line.path, line.number, line.number, message)
        self.report.findings.append(self._run)

    def line(self, line: RawLine) -> None:
        self.report.lines += 1
        if not line.complete:
            self.bad(line, "truncated last line: the file ends inside a line")
            return
        opened = open_line(line.raw)
        fields = opened.fields
        if opened.problem is not None or fields is None:
            self.bad(line, opened.problem or "damaged")
            return
        seq = fields.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            self.bad(line, "no sequence number (not a journal line)")
            return
        if fields.get("replica") != self.replica:
            self.bad(line, f"belongs to another replica's chain ({_shown(fields.get('replica'))})")
            return
        if opened.mac is None:
            self.bad(line, "not sealed: written without a journal key, its content cannot be "
                     "verified")  # fmt: skip
            return
        key = self.keys.get(str(fields.get("kid")))
        if key is None:
            self.bad(line, f"sealed with key id {_shown(fields.get('kid'))}, which no key given "
                     "has: wrong key")  # fmt: skip
            return
        if not authentic(opened, key):
            self.bad(line, "changed: its keyed hash does not match its content")
            return
        self._run = None
        self.accept(line, fields, _At(line.path, line.number, seq, opened.mac))

    def accept(self, line: RawLine, fields: dict[str, Any], at: _At) -> None:
        last, damaged = self.last, self.damaged
        prev = fields.get("prev")
        if prev is None and at.seq == 1 and fields.get("kind") == "start":
            if last is not None:
                self.report.notes.append(
                    f"{at}: replica {self.replica} starts a new chain segment (a process "
                    "that could not continue the previous one)"
                )
                self.finish_segment()
            self.begin(at)
            return
        if last is None:
            if at.seq > 1:
                earlier = fields.get("previous_file") if fields.get("kind") == "rotated" else None
                self.report.notes.append(
                    f"{at}: replica {self.replica}'s chain begins at seq {at.seq}"
                    + (f", after {_shown(earlier)} (not given)" if earlier else "")
                )
            self.begin(at)
            return
        if at.seq <= last.seq:
            self.displaced.setdefault(at.seq, []).append(at)
            return
        previous_file = fields.get("previous_file")
        if (
            fields.get("kind") == "rotated"
            and previous_file != last.path.name
            and at.seq > last.seq + 1
        ):
            self.find(at, f"the file before this one, {_shown(previous_file)}, is missing "
                      f"(seq {_span(last.seq + 1, at.seq - 1)})")  # fmt: skip
            self.advance(at)
            return
        if at.seq > last.seq + 1:
            self.gaps.append(_Gap(last.seq + 1, at.seq - 1, last, at, damaged))
        elif prev != last.mac:
            self.find(at, f"does not follow {last}: its prev is not that line's hash (a line "
                      "from another chain)")  # fmt: skip
        self.advance(at)

    def begin(self, at: _At) -> None:
        if self.first_seq is None:
            self.first_seq = at.seq
        self.advance(at)

    def advance(self, at: _At) -> None:
        self.last, self.damaged = at, 0
        seen = self.witnessed.get(at.seq)
        if seen is not None and seen.mac is not None and seen.mac != at.mac:
            self.find(at, f"differs from the head the log witnessed ({seen.where})")

    def find(self, at: _At, message: str) -> None:
        self.report.findings.append(Finding(at.path, at.number, at.number, message))

    def finish_segment(self) -> None:
        """Resolve the gaps: moved lines, removed lines, or damaged lines in their place."""
        for gap in self.gaps:
            moved = [seq for seq in range(gap.first, gap.last + 1) if seq in self.displaced]
            for first, last in _runs(moved):
                places = [self.displaced.pop(seq)[0] for seq in range(first, last + 1)]
                self.report.findings.append(Finding(
                    places[0].path, places[0].number, places[-1].number,
                    f"out of order: seq {_span(first, last)} belongs between {gap.before} and "
                    f"{gap.after}",
                ))  # fmt: skip
            missing = [seq for seq in range(gap.first, gap.last + 1) if seq not in moved]
            if len(missing) > gap.damaged:
                removed = len(missing) - gap.damaged
                self.find(gap.after, f"{removed} line(s) removed before this line (seq "
                          f"{_spans(missing)} missing; before: {gap.before})")  # fmt: skip
        for seq, places in sorted(self.displaced.items()):
            for place in places:
                self.find(place, f"seq {seq} again: a copy of a line already in the chain")
        self.gaps, self.displaced = [], {}

    def end(self) -> None:
        self.finish_segment()
        if self.last is None:
            return
        self.report.replicas[self.replica] = (self.first_seq or 1, self.last.seq)
        beyond = [seen for seen in self.witnessed.values() if seen.seq > self.last.seq]
        for seen in sorted(beyond, key=lambda seen: seen.seq)[-1:]:
            self.find(self.last, f"the chain ends at seq {self.last.seq}, but the log witnessed "
                      f"seq {seen.seq} ({seen.where}): lines were cut off the end")  # fmt: skip


def verify(
    paths: list[Path], keys: Iterable[JournalKey], witnessed: Iterable[Witnessed] = ()
) -> Report:
    report = Report(files=len(paths))
    by_id = {key.id: key for key in keys}
    heads: dict[str, dict[int, Witnessed]] = {}
    for seen in witnessed:
        heads.setdefault(seen.replica, {})[seen.seq] = seen
    for replica, files in chains(paths).items():
        if replica is None:
            for path in files:
                walk = _Walk("", report, by_id, {})
                for line in lines(path):
                    walk.bad(line, "not a journal line")
            continue
        walk = _Walk(replica, report, by_id, heads.pop(replica, {}))
        for path in files:
            for line in lines(path):
                walk.line(line)
        walk.end()
    for replica in sorted(heads):
        report.notes.append(f"the log witnessed replica {replica}, of which no file was given")
    return report


_TEXT_WITNESS = re.compile(
    rf"{WITNESS_MESSAGE} \[.*?replica=(\S+) seq=(\d+) head=([0-9a-f]{{64}}|None)"
)


def read_witness(path: Path) -> Iterator[Witnessed]:
    """The heads an ordinary log holds (its JSON lines, or the text format)."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.decode("utf-8", "replace")
            if WITNESS_MESSAGE not in text:
                continue
            where = f"{path.name}:{number}"
            try:
                entry = json.loads(text)
            except ValueError:
                match = _TEXT_WITNESS.search(text)
                if match:
                    mac = None if match.group(3) == "None" else match.group(3)
                    yield Witnessed(match.group(1), int(match.group(2)), mac, where)
                continue
            if isinstance(entry, dict) and entry.get("message") == WITNESS_MESSAGE:
                replica, seq, mac = entry.get("replica"), entry.get("seq"), entry.get("head")
                if isinstance(replica, str) and isinstance(seq, int):
                    yield Witnessed(replica, seq, mac if isinstance(mac, str) else None, where)


def _runs(numbers: list[int]) -> Iterator[tuple[int, int]]:
    """Consecutive runs of sorted ``numbers``, as (first, last)."""
    start = previous = None
    for number in numbers:
        if previous is not None and number == previous + 1:
            previous = number
            continue
        if start is not None and previous is not None:
            yield start, previous
        start = previous = number
    if start is not None and previous is not None:
        yield start, previous


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def _spans(numbers: list[int]) -> str:
    return ", ".join(_span(first, last) for first, last in _runs(numbers))


def _shown(value: object) -> str:
    """A value from a file, for a message: bounded, quoted."""
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 80 else text[:77] + "..."
