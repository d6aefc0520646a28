"""The journal's chain on real files: sealed, rotated, continued after a restart, written
without ever holding the caller, and checked by ``journal verify``, which names the exact
line of every removal, change, reordering, cut, missing file or wrong key."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.config import JournalSettings
from bridge.journal import EventFilter, Journal, replica_name
from bridge.journal import writer as writer_module
from bridge.journal.chain import HELD_BYTES, Chain, Head, authentic, open_line
from bridge.journal.event import LINE, ScimLine, StartLine
from bridge.journal.keys import JournalKey
from bridge.journal.privacy import Privacy
from bridge.journal.record import JournalRecord
from bridge.journal.sink import FileSink, JournalBusy, StreamSink, series
from bridge.journal.verify import Report, Witnessed, read_witness, verify
from bridge.journal.witness import WITNESS_MESSAGE, HeadWitness
from bridge.journal.writer import JournalWriter
from bridge.logs import configure_logging
from tests.servers import logged
from tests.waits import HANG_GUARD_SECONDS

SECRET = "journal-key-for-tests-0123456789abcdef"
KEY = JournalKey.from_secret(SECRET)
OTHER = JournalKey.from_secret("another-journal-key-0123456789abcdef")


def event(number: int) -> dict[str, Any]:
    entry = JournalRecord(
        Privacy("full", None), request_id=f"req-{number}", operation="users.patch",
        resource_type="User", token="entra",
    )  # fmt: skip
    entry.identify(id=str(number), name=f"user{number}@contoso.com")
    entry.add_change("active", True, False, op="replace")
    return entry.finish("applied", status=200).wire()


def writer(
    directory: Path,
    replica: str = "pod-1",
    key: JournalKey | None = KEY,
    sink: FileSink | None = None,
    queue_size: int = 10_000,
    **files: Any,
) -> JournalWriter:
    files = {"max_bytes": 1_000_000, "keep_files": 0} | files
    sink = sink or FileSink(directory / "journal.jsonl", replica, **files)
    return JournalWriter(sink, key, replica, "full", queue_size)


def write(directory: Path, count: int, replica: str = "pod-1", **options: Any) -> list[Path]:
    """``count`` events written by one process (a start line first); its files."""
    journal = writer(directory, replica, **options)
    journal.start()
    for number in range(count):
        assert journal.submit(event(number))
    assert journal.stop(HANG_GUARD_SECONDS)
    return files(directory, replica)


def files(directory: Path, replica: str = "pod-1") -> list[Path]:
    return [path for _, path in series(directory / "journal.jsonl", replica)]


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def rewrite(path: Path, content: list[bytes]) -> None:
    path.write_bytes(b"".join(content))


def findings(report: Report) -> list[str]:
    return [str(finding) for finding in report.findings]


def test_the_chain_over_n_events_is_what_the_docs_say(tmp_path: Path) -> None:
    """Recomputed here from the documented construction, not through the bridge's code:
    HKDF-Expand of the key, HMAC-SHA-256 over the line before its ``mac`` member."""
    [path] = write(tmp_path, 40)
    chain_key = hmac.new(SECRET.encode(), b"scim-bridge journal chain v1\x01", "sha256").digest()
    previous = None
    written = lines(path)
    assert len(written) == 41
    for seq, raw in enumerate(written, start=1):
        line = json.loads(raw)
        body = json.dumps(
            {k: v for k, v in line.items() if k != "mac"},
            sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        ).encode()  # fmt: skip
        assert raw == body[:-1] + b',"mac":"' + line["mac"].encode() + b'"}\n'
        assert line["mac"] == hmac.new(chain_key, body, hashlib.sha256).hexdigest()
        assert (line["seq"], line.get("prev"), line["replica"]) == (seq, previous, "pod-1")
        assert isinstance(LINE.validate_python(line), StartLine if seq == 1 else ScimLine)
        previous = line["mac"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    report = verify([path], [KEY])
    assert (report.intact, report.lines, report.replicas) == (True, 41, {"pod-1": (1, 41)})


def test_sealing_keeps_the_interpreter_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """hashlib lets the interpreter's lock go while it hashes 2,048 bytes or more at once, and
    ``hmac.digest`` always does: on the writer's thread each release handed the lock to the
    event loop and waited to take it back. A line is hashed in parts below that."""
    fed: list[int] = []
    update = hmac.HMAC.update

    def counted(self: hmac.HMAC, data: bytes) -> None:
        fed.append(len(data))
        update(self, data)

    def refused(*args: object) -> bytes:
        raise AssertionError("hmac.digest lets the interpreter's lock go")

    monkeypatch.setattr(hmac.HMAC, "update", counted)
    monkeypatch.setattr(hmac, "digest", refused)
    sealed = Chain(KEY, "pod-1").seal({"kind": "scim", "detail": "é" * 5_000})
    hashed = sum(fed)
    assert HELD_BYTES < 2048 and len(fed) > 1 and max(fed) == HELD_BYTES
    opened = open_line(sealed.line.rstrip(b"\n"))
    assert opened.problem is None and hashed == len(opened.body) and authentic(opened, KEY)


def test_a_removed_line_is_named(tmp_path: Path) -> None:
    [path] = write(tmp_path, 10)
    content = lines(path)
    del content[4]  # seq 5
    rewrite(path, content)
    assert findings(verify([path], [KEY])) == [
        f"{path}:5: 1 line(s) removed before this line (seq 5 missing; before: {path.name}:4)"
    ]


def test_a_changed_value_is_named(tmp_path: Path) -> None:
    [path] = write(tmp_path, 10)
    content = lines(path)
    content[6] = content[6].replace(b'"outcome":"applied"', b'"outcome":"refused"')
    rewrite(path, content)
    assert findings(verify([path], [KEY])) == [
        f"{path}:7: changed: its keyed hash does not match its content"
    ]


def test_an_edit_that_is_not_canonical_is_named(tmp_path: Path) -> None:
    """A duplicate member some readers take and others ignore is an edit too."""
    [path] = write(tmp_path, 5)
    content = lines(path)
    content[2] = b'{"outcome":"failed",' + content[2][1:]
    rewrite(path, content)
    assert findings(verify([path], [KEY])) == [
        f"{path}:3: not in the canonical form the bridge writes (edited)"
    ]


def test_a_swapped_pair_is_named(tmp_path: Path) -> None:
    [path] = write(tmp_path, 10)
    content = lines(path)
    content[3], content[4] = content[4], content[3]  # seq 4 and 5
    rewrite(path, content)
    assert findings(verify([path], [KEY])) == [
        f"{path}:5: out of order: seq 4 belongs between {path.name}:3 and {path.name}:4"
    ]


def test_a_copied_line_is_named(tmp_path: Path) -> None:
    [path] = write(tmp_path, 5)
    content = lines(path)
    rewrite(path, [*content, content[2]])
    assert findings(verify([path], [KEY])) == [
        f"{path}:7: seq 3 again: a copy of a line already in the chain"
    ]


def test_a_truncated_last_line_is_named(tmp_path: Path) -> None:
    [path] = write(tmp_path, 5)
    path.write_bytes(path.read_bytes()[:-40])
    assert findings(verify([path], [KEY])) == [
        f"{path}:6: truncated last line: the file ends inside a line"
    ]


def test_the_wrong_key_is_one_finding_per_file(tmp_path: Path) -> None:
    [path] = write(tmp_path, 5)
    assert findings(verify([path], [OTHER])) == [
        f'{path}:1-6: sealed with key id "{KEY.id}", which no key given has: wrong key'
    ]


def test_rotated_files_verify_in_any_order_and_a_missing_one_is_named(tmp_path: Path) -> None:
    paths = write(tmp_path, 500, max_bytes=65_536)
    assert len(paths) >= 4
    first_lines = [json.loads(lines(path)[0]) for path in paths[1:]]
    assert all(line["kind"] == "rotated" for line in first_lines)
    assert [line["previous_file"] for line in first_lines] == [path.name for path in paths[:-1]]
    assert verify(list(reversed(paths)), [KEY]).intact
    missing = paths[1]
    kept = [path for path in paths if path != missing]
    after = paths[2]
    report = verify(kept, [KEY])
    [finding] = findings(report)
    assert finding.startswith(f'{after}:1: the file before this one, "{missing.name}", is missing')


def test_old_files_are_removed_beyond_keep_files(tmp_path: Path) -> None:
    paths = write(tmp_path, 500, max_bytes=65_536, keep_files=2)
    assert len(paths) == 2
    report = verify(paths, [KEY])
    assert report.intact
    assert report.notes[0].endswith("(not given)")


def test_several_replicas_each_keep_a_chain(tmp_path: Path) -> None:
    first = write(tmp_path, 10, replica="pod-a")
    second = write(tmp_path, 20, replica="pod-b")
    report = verify(first + second, [KEY])
    assert report.intact and report.replicas == {"pod-a": (1, 11), "pod-b": (1, 21)}
    content = lines(second[0])
    del content[10]
    rewrite(second[0], content)
    assert [finding.path for finding in verify(first + second, [KEY]).findings] == second


def test_a_restart_continues_the_chain_from_the_file(tmp_path: Path) -> None:
    write(tmp_path, 5)
    [path] = write(tmp_path, 5)
    start = json.loads(lines(path)[6])
    assert start["kind"] == "start" and start["seq"] == 7
    assert start["previous"] == {
        "file": path.name,
        "seq": 6,
        "mac": json.loads(lines(path)[5])["mac"],
    }
    assert verify([path], [KEY]).replicas == {"pod-1": (1, 12)}


def test_a_restart_after_an_incomplete_line_closes_it_and_verify_names_it(
    tmp_path: Path,
) -> None:
    [path] = write(tmp_path, 5)
    with path.open("ab") as handle:
        handle.write(b'{"changes":[],"dur')  # a full disk, a power loss
    write(tmp_path, 2)
    start = json.loads(lines(path)[7])
    assert (start["kind"], start["repaired"], start["previous"]["seq"]) == ("start", True, 6)
    assert findings(verify([path], [KEY])) == [f"{path}:7: not a JSON object (damaged)"]


def test_a_key_rotation_starts_a_segment_that_both_keys_verify(tmp_path: Path) -> None:
    write(tmp_path, 3)
    [path] = write(tmp_path, 3, key=OTHER)
    assert verify([path], [KEY, OTHER]).intact
    [finding] = findings(verify([path], [OTHER]))
    assert finding.startswith(f"{path}:1-4: sealed with key id")


def test_a_second_process_with_the_same_replica_is_refused(tmp_path: Path) -> None:
    first = writer(tmp_path)
    first.start()
    try:
        with pytest.raises(JournalBusy, match=r"give each process its own journal\.replica"):
            writer(tmp_path).start()
    finally:
        first.stop(HANG_GUARD_SECONDS)


class _GatedSink(FileSink):
    """Writes wait at a gate the test opens: a disk that stopped answering."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def write(self, lines: bytes) -> None:
        if b'"kind":"start"' not in lines:
            self.waiting.set()
            assert self.gate.wait(HANG_GUARD_SECONDS), "the test never opened the gate"
        super().write(lines)


def test_a_stuck_sink_never_holds_the_caller_and_the_drops_are_in_the_chain(
    tmp_path: Path,
) -> None:
    sink = _GatedSink(tmp_path / "journal.jsonl", "pod-1", max_bytes=1_000_000, keep_files=0)
    journal = writer(tmp_path, sink=sink, queue_size=3)
    journal.start()
    assert journal.submit(event(0))
    assert sink.waiting.wait(HANG_GUARD_SECONDS)  # the writer holds event 0 at the gate
    accepted = [journal.submit(event(number)) for number in range(1, 11)]
    assert accepted == [True] * 3 + [False] * 7  # the queue holds 3; the rest are dropped
    assert journal.dropped == {"queue_full": 7, "write_error": 0}
    sink.gate.set()
    assert journal.stop(HANG_GUARD_SECONDS)
    [path] = files(tmp_path)
    kinds = [(line["kind"], line.get("count")) for line in map(json.loads, lines(path))]
    assert kinds == [("start", None), ("scim", None), ("dropped", 7), *[("scim", None)] * 3]
    assert verify([path], [KEY]).intact


class _FailingSink(FileSink):
    """One write fails (a full disk) in the middle of req-2's line: what came before it
    reached the file."""

    failures = 1

    def write(self, lines: bytes) -> None:
        if b'"request_id":"req-2"' in lines and self.failures:
            self.failures -= 1
            super().write(lines[: lines.index(b'"request_id":"req-2"')])
            raise OSError(28, "No space left on device")
        super().write(lines)


def test_a_failed_write_drops_its_events_and_the_chain_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = _FailingSink(tmp_path / "journal.jsonl", "pod-1", max_bytes=1_000_000, keep_files=0)
    seconds = iter([100.0, 100.5, 101.0])  # the failure, then each later event until reopened
    journal = JournalWriter(sink, KEY, "pod-1", "full", 100, monotonic=lambda: next(seconds))
    for number in range(6):  # queued before the thread starts: its first batch, one write
        journal.submit(event(number))
    with caplog.at_level(logging.INFO, "bridge.journal"):
        journal.start()
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while journal.dropped["write_error"] < 4:  # that batch failed: later events are apart
            assert time.monotonic() < deadline, "the first batch was never written"
            time.sleep(0.001)
        for number in range(6, 9):
            journal.submit(event(number))
        assert journal.stop(HANG_GUARD_SECONDS)
    [path] = files(tmp_path)
    parsed = [json.loads(line) if line.endswith(b"}\n") else None for line in lines(path)]
    kinds = [line and (line["kind"], line.get("request_id")) for line in parsed]
    assert kinds == [
        ("start", None), ("scim", "req-0"), ("scim", "req-1"), None,  # req-2: part of a line
        # req-2 to req-5 did not reach the file; req-6 at 100.5 s: dropped untried;
        # req-7 at 101 s: the file is reopened
        ("start", None), ("dropped", None), ("scim", "req-7"), ("scim", "req-8"),
    ]  # fmt: skip
    assert parsed[4] is not None and parsed[4]["repaired"] is True
    assert parsed[5] is not None and (parsed[5]["count"], parsed[5]["reason"]) == (5, "write_error")
    assert [record.message for record in caplog.records] == [
        "journal write failed: events are dropped (counted) until it recovers",
        "journal writable again",
    ]
    assert findings(verify([path], [KEY])) == [f"{path}:4: not a JSON object (damaged)"]


class _CountingSink(FileSink):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[bytes] = []

    def write(self, lines: bytes) -> None:
        self.writes.append(lines)
        super().write(lines)


def test_what_the_writer_takes_at_once_is_one_write_and_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    sink = _CountingSink(
        tmp_path / "journal.jsonl", "pod-1", max_bytes=1_000_000, keep_files=0, fsync_each=True
    )
    journal = writer(tmp_path, sink=sink)
    for number in range(50):  # queued before the thread starts: one batch
        assert journal.submit(event(number))
    journal.start()
    assert journal.stop(HANG_GUARD_SECONDS)
    assert [batch.count(b"\n") for batch in sink.writes] == [1, 50]  # the start line, then all
    assert len(synced) == 3  # after each write, and at close
    [path] = files(tmp_path)
    assert len(lines(path)) == 51
    assert verify([path], [KEY]).intact


def test_a_long_queue_is_written_in_parts_of_about_batch_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "BATCH_BYTES", 2_000)
    sink = _CountingSink(tmp_path / "journal.jsonl", "pod-1", max_bytes=1_000_000, keep_files=0)
    journal = writer(tmp_path, sink=sink)
    for number in range(40):
        assert journal.submit(event(number))
    journal.start()
    assert journal.stop(HANG_GUARD_SECONDS)
    longest = max(len(line) for path in files(tmp_path) for line in lines(path))
    parts = sink.writes[1:]
    assert len(parts) > 1
    assert all(2_000 <= len(part) < 2_000 + longest for part in parts[:-1])
    assert sum(part.count(b"\n") for part in parts) == 40
    assert verify(files(tmp_path), [KEY]).intact


def test_the_stdout_stream_carries_the_same_lines(tmp_path: Path) -> None:
    stream = io.BytesIO()
    journal = JournalWriter(StreamSink(stream), KEY, "pod-1", "full", 100)
    journal.start()
    journal.submit(event(1))
    assert journal.stop(HANG_GUARD_SECONDS)
    path = tmp_path / "captured.jsonl"
    path.write_bytes(stream.getvalue())
    assert verify([path], [KEY]).replicas == {"pod-1": (1, 2)}


def test_a_stream_without_a_key_is_reported_unsealed(tmp_path: Path) -> None:
    stream = io.BytesIO()
    journal = JournalWriter(StreamSink(stream), None, "pod-1", "full", 100)
    journal.start()
    journal.submit(event(1))
    assert journal.stop(HANG_GUARD_SECONDS)
    path = tmp_path / "captured.jsonl"
    path.write_bytes(stream.getvalue())
    assert [line["seq"] for line in map(json.loads, lines(path))] == [1, 2]
    [finding] = findings(verify([path], [KEY]))
    assert finding.startswith(f"{path}:1-2: not sealed")


# ------------------------------------------------------------------------------------ witness


@pytest.fixture
def ticks() -> Iterator[asyncio.Queue[None]]:
    yield asyncio.Queue()


async def test_the_witness_logs_the_head_when_it_moved(
    ticks: asyncio.Queue[None], caplog: pytest.LogCaptureFixture
) -> None:
    head: list[Head | None] = [None]

    async def tick(seconds: float) -> None:
        assert seconds == 60.0
        await ticks.get()

    witness = HeadWitness(lambda: head[0], 60.0, tick)
    task = asyncio.create_task(witness.run())
    try:
        for current, logged_now in [
            (None, False), (Head("pod-1", 5, "ab" * 32, "j.1"), True),
            (Head("pod-1", 5, "ab" * 32, "j.1"), False), (Head("pod-1", 9, "cd" * 32, "j.1"), True),
        ]:  # fmt: skip
            head[0] = current
            with caplog.at_level(logging.INFO, "bridge.journal"):
                caplog.clear()
                ticks.put_nowait(None)
                while not ticks.empty():  # taken by the witness, which then looked
                    assert not task.done(), task
                    await asyncio.sleep(0)
            assert [r.message for r in caplog.records] == ([WITNESS_MESSAGE] if logged_now else [])
        assert caplog.records[0].__dict__["seq"] == 9
    finally:
        task.cancel()


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_verify_with_the_witness_catches_lines_cut_off_the_end(
    tmp_path: Path, log_format: str
) -> None:
    [path] = write(tmp_path, 10)
    log = tmp_path / "bridge.log"
    with log.open("w") as stream:
        configure_logging("info", log_format, stream=stream)
        logging.getLogger("bridge.http").info("request", extra={"seq": 99})  # not a witness
        head = json.loads(lines(path)[-1])
        HeadWitness(lambda: Head("pod-1", head["seq"], head["mac"], path.name), 60).witness()
        logging.getLogger().handlers.clear()
    rewrite(path, lines(path)[:-3])
    assert verify([path], [KEY]).intact  # the chain alone cannot tell
    heads = list(read_witness(log))
    assert heads == [Witnessed("pod-1", 11, head["mac"], "bridge.log:2")]
    assert findings(verify([path], [KEY], heads)) == [
        f"{path}:8: the chain ends at seq 8, but the log witnessed seq 11 (bridge.log:2): "
        "lines were cut off the end"
    ]


# ------------------------------------------------------------------------------------ journal


async def test_the_journal_writes_keeps_history_and_witnesses_its_last_head(
    tmp_path: Path,
) -> None:
    settings = JournalSettings(enabled=True, file=tmp_path / "journal.jsonl", key=SECRET)
    journal = Journal(settings, replica="pod-1")
    with logged("bridge.journal", WITNESS_MESSAGE) as witnessed:
        async with journal.running():
            for number in range(3):
                entry = journal.record(request_id=f"r{number}", operation="users.create")
                journal.emit(entry.finish("applied", status=201))
        assert witnessed.is_set()  # the last head, at shutdown
    page = await journal.history.query(EventFilter())
    assert [event["request_id"] for event in page.events] == ["r2", "r1", "r0"]
    assert {event["replica"] for event in page.events} == {"pod-1"}
    assert journal.head() == Head("pod-1", 4, journal.head().mac, "journal.pod-1.000001.jsonl")  # type: ignore[union-attr]
    assert verify(files(tmp_path), [KEY]).intact


def test_a_journal_file_that_cannot_be_opened_fails_at_start(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    directory.mkdir()
    settings = JournalSettings(enabled=True, file=directory / "journal.jsonl", key=SECRET)
    directory.rmdir()  # the volume went away after the settings were read
    with pytest.raises(FileNotFoundError):
        asyncio.run(_start(Journal(settings, replica="pod-1")))


async def _start(journal: Journal) -> None:
    async with journal.running():
        pass  # pragma: no cover - never reached


def test_a_line_that_differs_from_the_witnessed_head_is_named(tmp_path: Path) -> None:
    [path] = write(tmp_path, 5)
    heads = [Witnessed("pod-1", 3, "0" * 64, "bridge.log:7"), Witnessed("pod-9", 1, None, "x")]
    report = verify([path], [KEY], heads)
    assert findings(report) == [f"{path}:3: differs from the head the log witnessed (bridge.log:7)"]
    assert report.notes == ["the log witnessed replica pod-9, of which no file was given"]


def test_an_event_the_writer_cannot_write_is_dropped_and_the_writer_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = writer(tmp_path)
    journal.start()
    with caplog.at_level(logging.INFO, "bridge.journal"):
        journal.submit({"kind": "scim", "not json": object()})
        journal.submit(event(1))
        assert journal.stop(HANG_GUARD_SECONDS)
    assert [record.message for record in caplog.records] == ["a journal event could not be written"]
    [path] = files(tmp_path)
    kinds = [(line["kind"], line.get("reason")) for line in map(json.loads, lines(path))]
    assert kinds == [("start", None), ("dropped", "write_error"), ("scim", None)]


def test_replica_names() -> None:
    assert replica_name("bridge-1") == "bridge-1"
    assert replica_name("bridge-1", worker_pid=4242) == "bridge-1-4242"
    assert replica_name("p" * 64, worker_pid=7) == "p" * 62 + "-7"
    host = replica_name(None)
    assert host == socket.gethostname()[:64] or re.fullmatch(r"[A-Za-z0-9._-]{1,64}", host)


def test_a_stream_with_several_processes_holds_several_segments(tmp_path: Path) -> None:
    stream = io.BytesIO()
    for _ in range(2):  # a container restarted: its pod, and replica name, stay
        journal = JournalWriter(StreamSink(stream), KEY, "pod-1", "full", 100)
        journal.start()
        journal.submit(event(1))
        assert journal.stop(HANG_GUARD_SECONDS)
    path = tmp_path / "captured.jsonl"
    path.write_bytes(stream.getvalue() + b"not a journal line\n")
    other = tmp_path / "other.log"
    other.write_bytes(b"something else\nentirely\n")
    report = verify([path, other], [KEY])
    assert report.notes == [
        "captured.jsonl:3: replica pod-1 starts a new chain segment (a process that could not "
        "continue the previous one)"
    ]
    assert findings(report) == [
        f"{other}:1-2: not a journal line",
        f"{path}:5: not a JSON object (damaged)",
    ]
