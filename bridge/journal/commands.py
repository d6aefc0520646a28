"""What ``scim-bridge journal verify | export | hash | schema`` do, apart from parsing their
arguments (``bridge.run.cli``); exit status 0 when all is well, 1 on a finding, 2 when the
command cannot run (docs/reference/journal.md, "Commands")."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Final

from bridge.config import journal_key_problem
from bridge.journal.event import json_schema
from bridge.journal.export import export
from bridge.journal.history import EventFilter
from bridge.journal.keys import JournalKey
from bridge.journal.privacy import keyed_hash
from bridge.journal.verify import Witnessed, read_witness, verify

KEY_VARIABLE: Final = "BRIDGE_JOURNAL__KEY"
KEY_FILE_VARIABLE: Final = "BRIDGE_JOURNAL__KEY_FILE"


class CommandError(Exception):
    """The command cannot run; the message says why (never a key)."""


def keys(files: Sequence[Path], environ: Mapping[str, str] = os.environ) -> list[JournalKey]:
    """The keys of ``--key-file`` (each, for a journal sealed over a key rotation), else the
    bridge's own variables: ``BRIDGE_JOURNAL__KEY`` or ``BRIDGE_JOURNAL__KEY_FILE``."""
    try:
        if files:
            return [JournalKey.from_file(path) for path in files]
        if environ.get(KEY_FILE_VARIABLE):
            return [JournalKey.from_file(Path(environ[KEY_FILE_VARIABLE]))]
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    secret = environ.get(KEY_VARIABLE)
    if secret:
        problem = journal_key_problem(secret)
        if problem:
            raise CommandError(f"{KEY_VARIABLE}: the key {problem}")
        return [JournalKey.from_secret(secret)]
    return []


def _readable(paths: Sequence[Path]) -> None:
    for path in paths:
        if not path.is_file():
            raise CommandError(f"{path}: not a readable file")


def verify_command(
    paths: Sequence[Path], key_files: Sequence[Path], witness: Sequence[Path], out: IO[str]
) -> int:
    given = keys(key_files)
    if not given:
        raise CommandError(
            f"no journal key: give --key-file (or set {KEY_FILE_VARIABLE} or {KEY_VARIABLE})"
        )
    _readable([*paths, *witness])
    heads: list[Witnessed] = [seen for log in witness for seen in read_witness(log)]
    report = verify(list(paths), given, heads)
    for finding in report.findings:
        print(finding, file=out)
    for note in report.notes:
        print(f"note: {note}", file=out)
    chains = ", ".join(
        f"{replica} seq {first}-{last}" for replica, (first, last) in report.replicas.items()
    )
    if report.intact:
        print(f"intact: {report.files} file(s), {report.lines} line(s); {chains}", file=out)
        return 0
    print(
        f"NOT intact: {len(report.findings)} finding(s) in {report.files} file(s), "
        f"{report.lines} line(s)",
        file=out,
    )
    return 1


def export_command(
    paths: Sequence[Path], where: EventFilter, fmt: str, everything: bool, out: IO[str]
) -> int:
    _readable(paths)
    kinds = frozenset({"scim", "start", "rotated", "dropped"} if everything else {"scim"})
    out.flush()
    if fmt == "csv":
        result = export(list(paths), where, csv_out=out, kinds=kinds)
    else:
        binary = getattr(out, "buffer", None)
        if binary is not None:
            result = export(list(paths), where, write_jsonl=binary.write, kinds=kinds)
        else:
            result = export(
                list(paths), where, write_jsonl=lambda raw: out.write(raw.decode()), kinds=kinds
            )
    for where_skipped in result.skipped:
        print(f"{where_skipped}: skipped: not a journal line", file=sys.stderr)
    if result.skipped:
        print("run `scim-bridge journal verify` on these files", file=sys.stderr)
    return 0


def hash_command(values: Sequence[str], key_files: Sequence[Path], out: IO[str]) -> int:
    """The hash ``values = "hashed"`` writes for each value (``-``: one value per line of
    standard input), to match a known value in a journal."""
    given = keys(key_files)
    if len(given) != 1:
        raise CommandError(
            f"give one key: --key-file (or set {KEY_FILE_VARIABLE} or {KEY_VARIABLE})"
        )
    key = given[0]
    for value in values:
        texts = sys.stdin.read().splitlines() if value == "-" else [value]
        for text in texts:
            print(keyed_hash(key.values, text), file=out)
    return 0


def schema_command(out: IO[str]) -> int:
    print(json.dumps(json_schema(), indent=2), file=out)
    return 0
