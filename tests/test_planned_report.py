"""``scim-bridge journal report --planned FILE...`` over real journal files: the events a dry
run journals with outcome ``planned`` (their calls added by ``bridge.safety.journal_outcome``
from the request's state) summarised by kind, each object named; other outcomes left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.journal.keys import JournalKey
from bridge.journal.privacy import Privacy
from bridge.journal.record import NOT_READ, JournalRecord
from bridge.journal.sink import FileSink, series
from bridge.journal.writer import JournalWriter
from bridge.request_state import RequestState
from bridge.run.cli import main
from bridge.safety import journal_outcome

KEY = JournalKey.from_secret("journal-key-for-tests-0123456789abcdef")
Members = tuple[list[str], list[str]]
Event = tuple[str, tuple[str, str], list[tuple[str, str | bool]], Members | None]
EVENTS: list[Event] = [
    # operation, resource (id, name), changes (attribute, after), members (added, removed)
    ("users.create", ("dryrun-1", "ana@contoso.com"), [], None),
    ("users.patch", ("7", "bo@contoso.com"), [("active", False)], None),
    ("users.patch", ("8", "cy@contoso.com"), [("name.givenName", "Cy"), ("active", True)], None),
    ("users.delete", ("9", "dee@contoso.com"), [], None),
    ("groups.create", ("dryrun-2", "Sales"), [], None),
    ("groups.patch", ("3", "Finance Team"), [("displayName", "Finance Team")], (["7"], ["8"])),
    ("groups.delete", ("4", "IT"), [], None),
]


def planned_journal(directory: Path) -> list[Path]:
    """The events above as a dry run journals them, and one applied event (not reported)."""
    directory.mkdir()
    privacy = Privacy("full", KEY.values)
    sink = FileSink(directory / "journal.jsonl", "pod-a", max_bytes=1_000_000, keep_files=0)
    writer = JournalWriter(sink, KEY, "pod-a", "full", 100)
    writer.start()
    for number, (operation, (object_id, name), changes, members) in enumerate(
        [*EVENTS, ("users.create", ("10", "live@contoso.com"), [], None)]
    ):
        record = JournalRecord(privacy, request_id=f"r{number}", operation=operation)
        record.identify(id=object_id, name=name)
        for attribute, after in changes:
            record.add_change(attribute, NOT_READ, after, op="replace")
        if members:
            record.add_members(added=members[0], removed=members[1])
        state = RequestState(f"r{number}")
        if number < len(EVENTS):
            state.withheld = "planned"
            state.withheld_calls = [("POST", "/team_members")]
        outcome = journal_outcome(record, state) or "applied"
        writer.submit(record.finish(outcome, status=200).wire())
    assert writer.stop(30)
    return [path for _, path in series(directory / "journal.jsonl", "pod-a")]


def test_the_report_of_planned_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = [str(path) for path in planned_journal(tmp_path / "j")]
    assert main(["journal", "report", "--planned", "--format", "json", *paths]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["events"] == len(EVENTS)
    assert {kind: n for kind, n in report["counts"].items() if n} == {
        "users created": 1,
        "users disabled": 1,
        "users re-enabled": 1,
        "users updated": 1,
        "users deleted": 1,
        "groups created": 1,
        "groups renamed": 1,
        "groups deleted": 1,
        "members added": 1,
        "members removed": 1,
    }
    changes = report["changes"]
    assert changes["users updated"] == [
        {"object": "cy@contoso.com (id 8)", "detail": "name.givenName"}
    ]
    assert changes["groups renamed"][0]["detail"] == "-> Finance Team"
    assert report["members"]["Finance Team (id 3)"]["removed"] == ["8"]

    assert main(["journal", "report", "--planned", *paths]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith("planned changes: 7 request(s)")
    assert "  ana@contoso.com (id dryrun-1)" in text
    assert "members added: 1, removed: 1" in text


def test_an_unplanned_request_has_no_outcome_of_the_rails() -> None:
    record = JournalRecord(Privacy("full", KEY.values), request_id="r", operation="users.create")
    assert journal_outcome(record, None) is None
    assert journal_outcome(record, RequestState("r")) is None
    held = RequestState("r", withheld="held", withheld_calls=[("DELETE", "/team_members/:id")])
    assert journal_outcome(record, held) == "held"
    wire = record.finish("held", status=503).wire()
    assert wire["modyo_calls"][0]["status"] == "held"
