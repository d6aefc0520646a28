"""The provisioning journal's cost: ``python -m bench.journal [--events N] [--rounds R]``.

- on the event loop, per SCIM write: a ``JournalRecord`` filled as a user PATCH fills it (the
  resource, three changes, one Modyo call), finished as the request flow finishes it
  (``finish_wire``) and handed over as ``Journal.emit_wire`` does (the writer's queue and the
  memory history), under each ``journal.values`` mode;
- on the writer's thread: lines sealed and written to a file, with ``fsync = "rotation"``
  and ``"event"``;
- ``journal verify``: lines checked per second;
- the size of that event's line.

Costs are CPU time (of the event loop's thread, of the writer's thread, of ``verify``): on a
shared machine they move far less than elapsed time; the writer's elapsed rate is given too.
Each figure is the median over the rounds, with its spread (lowest-highest). The files go to a
temporary directory on the disk of the current directory (the disk decides ``fsync``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bridge.journal.canonical import Ordered
from bridge.journal.chain import Chain
from bridge.journal.history import MemoryHistory
from bridge.journal.keys import JournalKey
from bridge.journal.privacy import Privacy
from bridge.journal.record import NOT_READ, JournalRecord
from bridge.journal.sink import FileSink, series
from bridge.journal.verify import verify
from bridge.journal.writer import JournalWriter

KEY = JournalKey.from_secret("bench-journal-key-0123456789abcdefghij")


def patch_event(privacy: Privacy, number: int) -> Ordered:
    entry = JournalRecord(
        privacy,
        request_id=f"a1b2c3d4e5f6{number:04d}",
        operation="users.patch",
        resource_type="User",
        client_request_id="5f2e1d4c-9b8a-4c7d-8e6f-1a2b3c4d5e6f",
        token="entra",
    )
    entry.identify(id=str(10_000 + number), name=f"user{number}@contoso.com",
                   external_id="0c5d3a8e-1f2b-4c6d-9e8f-7a6b5c4d3e2f")  # fmt: skip
    entry.add_change("name.givenName", "Zoë", "Zoe", op="Replace")
    entry.add_change('emails[type eq "work"].value', NOT_READ, f"zoe{number}@contoso.com",
                     op="Replace")  # fmt: skip
    entry.add_change("active", True, False, op="Replace")
    entry.add_modyo_call("PATCH", "/team_members/:id", 200, 1, 23.4)
    return entry.finish_wire("applied", status=200)


def on_the_loop(mode: str, events: int) -> float:
    """CPU microseconds per event: build, finish, emit (queue and memory history)."""
    privacy = Privacy(mode, KEY.values)  # type: ignore[arg-type]
    history = MemoryHistory(10_000)
    sink = FileSink(Path(tempfile.mkdtemp()) / "j.jsonl", "bench", max_bytes=10**9, keep_files=0)
    writer = JournalWriter(sink, KEY, "bench", "full", events + 1)  # not started: queue only
    started = time.thread_time()
    for number in range(events):
        fields = patch_event(privacy, number)
        writer.submit(fields)
        history.add({**fields, "replica": "bench"})
    return (time.thread_time() - started) / events * 1e6


def writing(directory: Path, fsync: str, events: int) -> tuple[float, float, list[Path]]:
    """The writer thread's CPU microseconds per line, its lines per second (elapsed), and
    the files written."""
    template = directory / f"journal-{fsync}.jsonl"
    sink = FileSink(template, "bench", max_bytes=10**9, keep_files=0, fsync_each=fsync == "event")
    writer = JournalWriter(sink, KEY, "bench", "full", events + 1)
    privacy = Privacy("full", None)
    queued = [patch_event(privacy, number) for number in range(events)]
    writer.start()
    ident = writer._thread.ident
    assert ident is not None
    clock = time.pthread_getcpuclockid(ident)
    cpu, started = time.clock_gettime(clock), time.perf_counter()
    for fields in queued:
        writer.submit(fields)
    writer.submit({"kind": "scim", "last": True})  # measured before the thread ends
    while writer.head is None or writer.head.seq < events + 2:
        time.sleep(0.001)
    cpu, seconds = time.clock_gettime(clock) - cpu, time.perf_counter() - started
    writer.stop(600)
    return cpu / events * 1e6, events / seconds, [path for _, path in series(template, "bench")]


def spread(values: list[float], unit: str, digits: int = 1) -> str:
    return (
        f"{statistics.median(values):,.{digits}f} {unit} "
        f"({min(values):,.{digits}f}-{max(values):,.{digits}f})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.journal", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    for _ in range(args.rounds):
        for mode in ("full", "hashed", "none"):
            add(f"loop CPU µs/event, values={mode}", on_the_loop(mode, args.events))
        with tempfile.TemporaryDirectory(dir=".") as directory:
            cpu, rate, files = writing(Path(directory), "rotation", args.events)
            add("writer CPU µs/line, fsync=rotation", cpu)
            add("writer lines/s, fsync=rotation", rate)
            started = time.process_time()
            report = verify(files, [KEY])
            add("verify CPU µs/line", (time.process_time() - started) / report.lines * 1e6)
            events = min(args.events, 2_000)  # a disk wait per line
            cpu, rate, _ = writing(Path(directory), "event", events)
            add("writer CPU µs/line, fsync=event", cpu)
            add("writer lines/s, fsync=event", rate)
    print(f"journal bench: {args.rounds} rounds of {args.events} events; median (lowest-highest)")
    for name, values in figures.items():
        print(f"  {name:34} {spread(values, '')}")
    for mode in ("full", "hashed", "none"):
        event = patch_event(Privacy(mode, KEY.values), 1)  # type: ignore[arg-type]
        print(f"  line bytes, values={mode:14} {len(Chain(KEY, 'pod-1').seal(event).line)}")


if __name__ == "__main__":
    main()
