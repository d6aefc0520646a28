"""``scim-bridge journal verify | export | tail | hash | schema | report``: the provisioning
journal, read offline from its files or from the shared history (docs/reference/journal.md,
"Commands"); the commands themselves are ``bridge.journal.commands`` and
``bridge.journal.tail``, this module parses their arguments."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.config_loading import load_settings
from bridge.run.cli_support import leave_quietly, shared_run, usage


def add_journal_commands(commands: Any) -> None:
    """``journal verify | export | hash | schema``: the provisioning journal's files, offline
    (docs/reference/journal.md, "Commands")."""
    journal = commands.add_parser("journal", help="verify, export or match the journal's files")
    journal.set_defaults(command="journal", run=lambda args: usage(journal))
    actions = journal.add_subparsers(title="journal commands")
    keyed = argparse.ArgumentParser(add_help=False)
    keyed.add_argument(
        "--key-file",
        type=Path,
        action="append",
        default=[],
        help="the journal key (repeat for a journal sealed across a key rotation); default: "
        "BRIDGE_JOURNAL__KEY_FILE or BRIDGE_JOURNAL__KEY",
    )
    verify = actions.add_parser(
        "verify",
        parents=[keyed],
        help="check each replica's chain: exit 0 intact, 1 with one line per finding",
    )
    verify.add_argument("files", type=Path, nargs="+", metavar="FILE")
    verify.add_argument(
        "--witness",
        type=Path,
        action="append",
        default=[],
        metavar="LOG",
        help="the bridge's ordinary log: the heads it witnessed must be in the chain",
    )
    verify.set_defaults(run=_journal_verify)
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--outcome", action="append", default=[], help="applied, refused...")
    filters.add_argument("--operation", action="append", default=[], help="users.create...")
    filters.add_argument("--resource-type", action="append", default=[], help="User, Group")
    filters.add_argument(
        "--text", help="part of a resource's id, name or externalId, or of the request id"
    )
    filters.add_argument("--since", type=_moment, help="ISO 8601 time (UTC if no offset)")
    filters.add_argument("--until", type=_moment, help="ISO 8601 time, exclusive")
    source = argparse.ArgumentParser(add_help=False)
    source.add_argument(
        "files",
        type=Path,
        nargs="*",
        metavar="FILE",
        help="journal files, or the journal.file setting (every replica's files beside it)",
    )
    source.add_argument(
        "--redis",
        action="store_true",
        help='read the shared history (the Redis of idempotency.backend = "redis") instead',
    )
    source.add_argument(
        "--config", type=Path, help="with --redis: the bridge's TOML file (BRIDGE_* override it)"
    )
    export = actions.add_parser(
        "export", parents=[source, filters], help="the events of journal files, filtered"
    )
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--all", action="store_true", help="the chain's own records too")
    export.set_defaults(run=_journal_export)
    tail = actions.add_parser(
        "tail",
        parents=[source, filters],
        help="the latest events, then each new one as it is written (Ctrl-C stops)",
    )
    tail.add_argument(
        "-n", "--lines", type=int, default=10, help="latest events shown first (default: 10)"
    )
    tail.add_argument("--no-follow", action="store_true", help="show the latest, then stop")
    tail.add_argument("--format", choices=("text", "jsonl", "csv"), default="text")
    tail.set_defaults(run=_journal_tail)
    hashed = actions.add_parser(
        "hash", parents=[keyed], help='what values = "hashed" writes for a known value'
    )
    hashed.add_argument("values", nargs="+", metavar="VALUE", help="- reads one per line")
    hashed.set_defaults(run=_journal_hash)
    schema = actions.add_parser("schema", help="the JSON Schema of a journal line")
    schema.set_defaults(run=_journal_schema)
    report = actions.add_parser(
        "report",
        help="what a dry run would do (--planned): from journal files, or the shared plan",
        description="From FILE... (journal events with outcome planned), or with no FILE from "
        "the plan a dry run keeps in the Redis its replicas share (--config or BRIDGE_* "
        "variables name it).",
    )
    report.add_argument("files", type=Path, nargs="*", metavar="FILE")
    report.add_argument(
        "--planned", action="store_true", required=True, help="report the planned changes"
    )
    report.add_argument("--format", choices=("text", "json"), default="text")
    report.add_argument("--config", type=Path, help="TOML file (BRIDGE_* variables override it)")
    report.set_defaults(run=_journal_report)


def _moment(text: str) -> Any:
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _journal_verify(args: argparse.Namespace) -> int:
    from bridge.journal.commands import verify_command

    return _journal_run(lambda: verify_command(args.files, args.key_file, args.witness, sys.stdout))


def _event_filter(args: argparse.Namespace) -> Any:
    from bridge.journal.history import EventFilter

    return EventFilter(
        outcomes=frozenset(args.outcome),
        operations=frozenset(args.operation),
        resource_types=frozenset(args.resource_type),
        text=args.text,
        since=args.since,
        until=args.until,
    )


def _journal_source(args: argparse.Namespace) -> None:
    """Files, or ``--redis``: one of them."""
    from bridge.journal.commands import CommandError

    if args.redis and args.files:
        raise CommandError("give journal files or --redis, not both")
    if not args.redis and not args.files:
        raise CommandError("give journal files (or the journal.file setting), or --redis")
    if args.config is not None and not args.redis:
        raise CommandError("--config is for --redis (the files name themselves)")


def _journal_export(args: argparse.Namespace) -> int:
    from bridge.journal.commands import export_command

    where = _event_filter(args)

    def command() -> int:
        _journal_source(args)
        if args.redis:
            return _from_redis(args, where, tail=False)
        return export_command(args.files, where, args.format, args.all, sys.stdout)

    return _journal_run(command)


def _journal_tail(args: argparse.Namespace) -> int:
    from bridge.journal.tail import Printer, tail_files

    where = _event_filter(args)

    def command() -> int:
        _journal_source(args)
        if args.redis:
            return _from_redis(args, where, tail=True)
        printer = Printer(sys.stdout, args.format)
        tail_files(args.files, where, args.lines, not args.no_follow, printer)
        return 0

    return _journal_run(command)


def _from_redis(args: argparse.Namespace, where: Any, *, tail: bool) -> int:
    """``tail`` (else ``export``) of the shared history: the Redis of the bridge's configuration
    (its URL a secret: never printed, nor any error text that could hold it)."""
    from redis.exceptions import RedisError

    from bridge.config import JournalReadSettings
    from bridge.journal.commands import CommandError
    from bridge.journal.history import HistoryUnavailable
    from bridge.journal.tail import Printer, export_stream, tail_stream
    from bridge.store.redis_link import connect

    settings = load_settings(args.config, JournalReadSettings)
    if settings.idempotency.backend != "redis":
        raise CommandError(
            'the shared history is in Redis only with idempotency.backend = "redis"; '
            "give the journal's files instead"
        )
    link = connect(settings.idempotency)
    key = link.key("journal")
    printer = Printer(sys.stdout, args.format)

    async def read() -> None:
        try:
            if tail:
                await tail_stream(
                    link.client, key, where, args.lines, not args.no_follow, printer,
                    call_seconds=link.call_seconds,
                )  # fmt: skip
            else:
                await export_stream(
                    link.client, key, settings.journal.history_size, where, printer,
                    call_seconds=link.call_seconds,
                )  # fmt: skip
        finally:
            await link.close()

    try:
        asyncio.run(read())
    except (RedisError, OSError, HistoryUnavailable) as exc:
        raise CommandError(f"the shared store did not answer ({type(exc).__name__})") from None
    return 0


def _journal_hash(args: argparse.Namespace) -> int:
    from bridge.journal.commands import hash_command

    return _journal_run(lambda: hash_command(args.values, args.key_file, sys.stdout))


def _journal_schema(args: argparse.Namespace) -> int:
    from bridge.journal.commands import schema_command

    return schema_command(sys.stdout)


def _journal_report(args: argparse.Namespace) -> int:
    from bridge.journal.commands import CommandError
    from bridge.safety.report import report_command

    if not args.files:
        return _shared_plan_report(args)

    def run() -> int:
        for path in args.files:
            if not path.is_file():
                raise CommandError(f"{path}: not a readable file")
        return report_command(args.files, args.format, sys.stdout, sys.stderr)

    return _journal_run(run)


def _shared_plan_report(args: argparse.Namespace) -> int:
    """The report of the plan in the Redis the configured replicas share."""
    from bridge.safety.plan import RedisLog
    from bridge.safety.report import report_command
    from bridge.store.redis_link import connect

    settings = load_settings(args.config)
    if settings.idempotency.backend != "redis":
        print(
            "scim-bridge journal report: no FILE, and idempotency.backend is memory: the plan "
            "is in the serving process (name journal files)",
            file=sys.stderr,
        )
        return 2
    link = connect(settings.idempotency)

    async def run() -> int:
        try:
            entries = await RedisLog(link).since(0)
        finally:
            await link.close()
        return report_command([], args.format, sys.stdout, sys.stderr, plan=entries)

    return shared_run("journal report", run)


def _journal_run(command: Callable[[], int]) -> int:
    from bridge.journal.commands import CommandError

    try:
        return command()
    except CommandError as exc:
        print(f"scim-bridge journal: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader left (``| head``): not an error of the command
        leave_quietly()
        return 0
