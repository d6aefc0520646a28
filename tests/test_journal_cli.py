"""``scim-bridge journal verify | export | hash | schema`` on real files: exit status 0 when
all is well, 1 with one line per finding, 2 when the command cannot run (never echoing a
key)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from bridge.journal.event import json_schema
from bridge.journal.keys import JournalKey
from bridge.journal.privacy import Privacy
from bridge.journal.record import NOT_READ, JournalRecord
from bridge.journal.sink import FileSink, series
from bridge.journal.writer import JournalWriter
from bridge.run.cli import main

SECRET = "journal-key-for-tests-0123456789abcdef"
KEY = JournalKey.from_secret(SECRET)


@pytest.fixture(autouse=True)
def _no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BRIDGE_JOURNAL__KEY", "BRIDGE_JOURNAL__KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    path = secrets / "journal-key"
    path.write_text(SECRET + "\n")
    return path


def journal(directory: Path, replica: str, mode: str = "full") -> list[Path]:
    """A journal of six SCIM events (and a start line) of one replica."""
    directory.mkdir(exist_ok=True)
    privacy = Privacy(mode, KEY.values)  # type: ignore[arg-type]
    sink = FileSink(directory / "journal.jsonl", replica, max_bytes=1_000_000, keep_files=0)
    writer = JournalWriter(sink, KEY, replica, mode, 100)  # type: ignore[arg-type]
    writer.start()
    for number, (operation, outcome) in enumerate(
        [("users.create", "applied"), ("users.patch", "refused"), ("groups.patch", "applied"),
         ("users.delete", "failed"), ("users.patch", "applied"), ("groups.create", "applied")]
    ):  # fmt: skip
        entry = JournalRecord(
            privacy, request_id=f"{replica}-{number}", operation=operation,
            resource_type="Group" if operation.startswith("groups") else "User", token="entra",
        )  # fmt: skip
        entry.identify(id=f"id-{number}", name=f'=HYPERLINK("x")-{number}@contoso.com')
        entry.add_change("name.givenName", NOT_READ, "Zoë", op="replace")
        entry.add_members(added=["u1", "u2"])
        entry.add_modyo_call("PATCH", "/team_members/:id", 200, 1, 7)
        explanation = {"refused": {"detail": "taken", "scim_type": "uniqueness"},
                       "failed": {"reason": "Modyo is down"}}.get(outcome, {})  # fmt: skip
        writer.submit(entry.finish(outcome, status=200, **explanation).wire())  # type: ignore[arg-type]
    assert writer.stop(30)
    return [path for _, path in series(directory / "journal.jsonl", replica)]


def test_verify_intact_then_a_finding(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = journal(tmp_path / "j", "pod-a") + journal(tmp_path / "j", "pod-b")
    argv = ["journal", "verify", "--key-file", str(key_file), *map(str, paths)]
    assert main(argv) == 0
    assert capsys.readouterr().out == (
        "intact: 2 file(s), 14 line(s); pod-a seq 1-7, pod-b seq 1-7\n"
    )
    content = paths[1].read_bytes().splitlines(keepends=True)
    paths[1].write_bytes(b"".join(content[:2] + content[3:]))
    assert main(argv) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{paths[1]}:3: 1 line(s) removed before this line (seq 3 missing; before: "
        f"{paths[1].name}:2)",
        "NOT intact: 1 finding(s) in 2 file(s), 13 line(s)",
    ]


def test_verify_reads_the_key_the_bridge_reads(
    tmp_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    paths = journal(tmp_path / "j", "pod-a")
    monkeypatch.setenv("BRIDGE_JOURNAL__KEY", SECRET)
    assert main(["journal", "verify", str(paths[0])]) == 0
    monkeypatch.setenv("BRIDGE_JOURNAL__KEY_FILE", str(key_file))
    assert main(["journal", "verify", str(paths[0])]) == 0
    assert capsys.readouterr().out.startswith("intact: 1 file(s)")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["journal", "verify", "{journal}"], "scim-bridge journal: no journal key: give "
         "--key-file (or set BRIDGE_JOURNAL__KEY_FILE or BRIDGE_JOURNAL__KEY)\n"),
        (["journal", "verify", "--key-file", "{short}", "{journal}"],
         "scim-bridge journal: {short}: the key is shorter than 32 characters\n"),
        (["journal", "verify", "--key-file", "{missing}", "{journal}"],
         "scim-bridge journal: {missing}: cannot read the key (No such file or directory)\n"),
        (["journal", "verify", "--key-file", "{key}", "{missing}"],
         "scim-bridge journal: {missing}: not a readable file\n"),
        (["journal", "hash", "zoe"], "scim-bridge journal: give one key: --key-file (or set "
         "BRIDGE_JOURNAL__KEY_FILE or BRIDGE_JOURNAL__KEY)\n"),
    ],
)  # fmt: skip
def test_a_command_that_cannot_run_says_why_in_one_line(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str],
    argv: list[str], expected: str,
) -> None:  # fmt: skip
    short = tmp_path / "short-key"
    short.write_text("a-short-secret-value")
    names = {"journal": str(journal(tmp_path / "j", "pod-a")[0]), "key": str(key_file),
             "short": str(short), "missing": str(tmp_path / "missing")}  # fmt: skip
    assert main([word.format(**names) for word in argv]) == 2
    captured = capsys.readouterr()
    assert captured.err == expected.format(**names)
    assert "a-short-secret-value" not in captured.err + captured.out


def test_hash_gives_what_the_hashed_journal_holds(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    [path] = journal(tmp_path / "j", "pod-a", mode="hashed")
    first = json.loads(path.read_bytes().splitlines()[1])
    known = '=HYPERLINK("x")-0@contoso.com'
    assert main(["journal", "hash", "--key-file", str(key_file), known, "Zoë"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        first["resource"]["name"],
        first["changes"][0]["after"],
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{known}\nZoë\n"))
    assert main(["journal", "hash", "--key-file", str(key_file), "-"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        first["resource"]["name"],
        first["changes"][0]["after"],
    ]


def test_export_merges_replicas_and_filters(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    paths = journal(tmp_path / "j", "pod-a") + journal(tmp_path / "j", "pod-b")
    argv = ["journal", "export", "--operation", "users.patch", *map(str, reversed(paths))]
    assert main(argv) == 0
    out = capsysbinary.readouterr().out.splitlines()
    exported = [json.loads(line) for line in out]
    assert sorted(line["request_id"] for line in exported) == [
        "pod-a-1", "pod-a-4", "pod-b-1", "pod-b-4"
    ]  # fmt: skip
    times = [line["time"] for line in exported]
    assert times == sorted(times)
    written = set(paths[0].read_bytes().splitlines()) | set(paths[1].read_bytes().splitlines())
    assert set(out) <= written  # each line as written, seal included
    assert main(["journal", "export", "--all", "--text", "POD-A", str(paths[0])]) == 0
    kinds = [json.loads(line)["kind"] for line in capsysbinary.readouterr().out.splitlines()]
    assert kinds == ["scim"] * 6  # the start line has no request id to match
    assert main(["journal", "export", "--all", str(paths[0])]) == 0
    kinds = [json.loads(line)["kind"] for line in capsysbinary.readouterr().out.splitlines()]
    assert kinds == ["start"] + ["scim"] * 6


def test_export_csv_is_safe_to_open_in_a_spreadsheet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [path] = journal(tmp_path / "j", "pod-a")
    with path.open("ab") as handle:
        handle.write(b'{"not a journal line')
    argv = ["journal", "export", "--format", "csv", "--outcome", "refused", "--outcome",
            "failed", str(path)]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert [(row["request_id"], row["outcome"], row["detail"]) for row in rows] == [
        ("pod-a-1", "refused", "taken"), ("pod-a-3", "failed", "Modyo is down")
    ]  # fmt: skip
    assert rows[0]["resource_name"] == '\'=HYPERLINK("x")-1@contoso.com'
    assert rows[0]["changes"] == 'replace name.givenName "Zoë"'
    assert rows[0]["members_added"] == "u1 u2"
    assert rows[0]["modyo_calls"] == "PATCH /team_members/:id 200 #1 7ms"
    assert captured.err.splitlines() == [
        f"{path}:8: skipped: not a journal line",
        "run `scim-bridge journal verify` on these files",
    ]


def test_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["journal", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()


def test_journal_alone_prints_its_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["journal"]) == 2
    assert "verify" in capsys.readouterr().out
