"""``scim-bridge``: serve | dev | fake-modyo | check | healthcheck | journal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import secrets
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import uvicorn

from bridge import __version__
from bridge.config import (
    ENV_PREFIX,
    CheckSettings,
    Settings,
    host_problem,
    is_loopback,
    token_problem,
)
from bridge.config_loading import ConfigError, load_settings
from bridge.logs import configure_logging

if TYPE_CHECKING:
    from bridge.edge.readiness import Readiness
    from bridge.journal.history import History
    from bridge.safety import SafetyRails

DEV_MODYO_URL = "http://localhost:9"  # served in process: nothing listens there
DEV_MODYO_TOKEN = "fake-modyo-token-0123456789"
DEV_TOKEN_NAME = "dev"
SERVER_COMMANDS = ("serve", "dev")  # the commands whose address ``healthcheck`` probes


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print("scim-bridge: the configuration cannot be used:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    except CannotListen as exc:
        print(f"scim-bridge {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # stdout closed early (``check --explain | head``): no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail
        return 1


class CannotListen(Exception):
    """A listener's address is taken: one line, before anything starts."""


class _DefaultsShown(argparse.HelpFormatter):
    """``--help`` names each option's default (those that have one and do not say it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        shown = action.help or ""
        absent = action.default is None or action.default is False
        if absent or action.default == argparse.SUPPRESS or "(default" in shown:
            return action.help
        return f"{shown} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (``--help`` prints the usage), exit status 2 as argparse."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1..65535)")
    return port


def _host(text: str) -> str:
    problem = host_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return text


def _token(text: str) -> str:
    """A SCIM bearer token, checked as ``scim.tokens`` are; never echoed (a secret)."""
    problem = token_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"the token {problem}")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="scim-bridge",
        description="SCIM 2.0 server provisioning Microsoft Entra ID users and groups into Modyo.",
    )
    parser.add_argument("--version", action="version", version=f"scim-bridge {__version__}")
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="run the bridge against a real Modyo")
    serve.add_argument("--config", type=Path, help="TOML file (BRIDGE_* variables override it)")
    serve.add_argument("--host", type=_host, help="listen address (beats server.host and BRIDGE_*)")
    serve.add_argument("--port", type=_port, help="listen port (beats server.port and BRIDGE_*)")
    _log_level_option(serve, "server.log_level")
    _dry_run_option(serve)
    serve.set_defaults(command="serve", run=_serve)

    dev = commands.add_parser(
        "dev", help="run the bridge with an in-process fake Modyo", formatter_class=_DefaultsShown
    )
    dev.add_argument("--host", type=_host, default="127.0.0.1", help="listen address")
    dev.add_argument("--port", type=_port, default=8000, help="listen port")
    dev.add_argument("--token", type=_token, help="the SCIM bearer token (generated if omitted)")
    _log_level_option(dev, "info")
    dev.add_argument(
        "--modyo-api",
        choices=["rest", "scim"],
        default="rest",
        help="which fake Modyo interface the bridge calls (modyo.api)",
    )
    _dry_run_option(dev)
    _fault_options(dev)
    dev.set_defaults(command="dev", run=_dev)

    fake = commands.add_parser(
        "fake-modyo", help="serve the fake Modyo over HTTP", formatter_class=_DefaultsShown
    )
    fake.add_argument(
        "--host",
        type=_host,
        default="127.0.0.1",
        help="listen address (loopback unless --allow-remote)",
    )
    fake.add_argument("--port", type=_port, default=8001, help="listen port")
    fake.add_argument(
        "--token",
        help="the Modyo API token it accepts, also needed by its control plane /__fake__/ "
        "(generated and printed if omitted)",
    )
    fake.add_argument(
        "--allow-remote",
        action="store_true",
        help="let --host be a non-loopback address (a container, a lab); never in production",
    )
    fake.add_argument(
        "--api",
        choices=["rest", "scim"],
        default="rest",
        help="serve the Admin REST API (/api/admin) or Modyo's SCIM server (/api/admin/scim)",
    )
    fake.add_argument(
        "--no-delete", action="store_true", help="act as a Modyo without team-member DELETE"
    )
    _fault_options(fake)
    fake.set_defaults(command="fake-modyo", run=_fake_modyo)

    check = commands.add_parser(
        "check",
        help="validate the config and probe Modyo's contract (read-only unless --write)",
        description="Probes the Modyo endpoints the bridge uses, read-only: nothing is written "
        "unless --write. Needs only the [modyo] section. Exit status 1 when provisioning "
        "would break; warnings and skipped probes do not change it.",
    )
    check.add_argument("--config", type=Path, help="TOML file (BRIDGE_* variables override it)")
    check.add_argument(
        "--write",
        action="store_true",
        help="also create, change and delete a throw-away team member and group (always "
        "removed at the end; what cannot be is listed)",
    )
    check.add_argument(
        "--explain", action="store_true", help="list every probe and what it proves, and exit"
    )
    check.add_argument(
        "--json", action="store_true", help="one JSON document instead of the tables"
    )
    check.set_defaults(command="check", run=_check)

    health = commands.add_parser(
        "healthcheck",
        help="GET /healthz where the running serve (or dev) listens: exit 0 healthy, 1 not",
        description="For a container HEALTHCHECK: reads the command line of the server process "
        "(PID 1 in a container), then finds its address as it does (flags, BRIDGE_* variables, "
        "the TOML file), and asks its /healthz.",
    )
    health.add_argument("--pid", type=int, default=1, help="the server's process id (default 1)")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for /healthz")
    health.set_defaults(command="healthcheck", run=_healthcheck)
    _journal_commands(commands)
    _brake_commands(commands)
    return parser


def _journal_commands(commands: Any) -> None:
    """``journal verify | export | hash | schema``: the provisioning journal's files, offline
    (docs/reference/journal.md, "Commands")."""
    journal = commands.add_parser("journal", help="verify, export or match the journal's files")
    journal.set_defaults(command="journal", run=lambda args: _usage(journal))
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


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


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
                await tail_stream(link.client, key, where, args.lines, not args.no_follow, printer)
            else:
                await export_stream(link.client, key, settings.journal.history_size, where, printer)
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

    return _shared_run("journal report", run)


def _dry_run_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="rehearse: read Modyo, never write to it (modyo.dry_run; docs/operator/"
        "first-cycle.md)",
    )


def _brake_commands(commands: Any) -> None:
    """``brake status | release``: the safety brake on mass destructive changes
    (docs/operator/first-cycle.md, "Release the brake")."""
    brake = commands.add_parser("brake", help="the safety brake: its counts, or release it")
    brake.set_defaults(command="brake", run=lambda args: _usage(brake))
    actions = brake.add_subparsers(title="brake commands")
    kinds = ("disables", "deletes", "group_deletes", "member_removals", "privileged_additions")
    release = actions.add_parser(
        "release",
        help="let held changes through on Entra's next retry",
        description="With --config (or BRIDGE_* variables) naming the Redis the replicas "
        "share: releases their brake. With --pid: a single process whose brake counts in "
        "memory (idempotency.backend = memory) is sent SIGUSR1 and releases every kind.",
    )
    release.add_argument("--kind", choices=kinds, help="only this kind (default: every kind)")
    release.add_argument("--config", type=Path, help="TOML file (BRIDGE_* variables override it)")
    release.add_argument("--pid", type=int, help="a single scim-bridge process to signal")
    release.set_defaults(run=_brake_release)
    status = actions.add_parser("status", help="each kind's count in the window, and state")
    status.add_argument("--config", type=Path, help="TOML file (BRIDGE_* variables override it)")
    status.set_defaults(run=_brake_status)


def _brake_release(args: argparse.Namespace) -> int:
    if args.pid is not None:
        return _brake_signal(args)
    from bridge.safety.commands import release_command

    return _brake_shared(
        args, lambda link, safety: release_command(link, safety, args.kind, sys.stdout)
    )


def _brake_status(args: argparse.Namespace) -> int:
    from bridge.safety.commands import status_command

    return _brake_shared(args, lambda link, safety: status_command(link, safety, sys.stdout))


def _brake_shared(args: argparse.Namespace, command: Callable[[Any, Any], Any]) -> int:
    """Run ``command(link, safety)`` against the Redis the configured replicas share."""
    from bridge.store.redis_link import connect

    settings = load_settings(args.config)
    if settings.idempotency.backend != "redis":
        return _brake_error(
            "idempotency.backend is memory: the brake counts inside the running process; "
            "release it with --pid PID"
        )
    if not settings.safety.enabled or settings.modyo.dry_run:
        return _brake_error("the brake is off (safety.enabled = false, or a dry run)")

    async def run() -> int:
        link = connect(settings.idempotency)
        try:
            return int(await command(link, settings.safety))
        finally:
            await link.close()

    return _shared_run("brake", run)


def _shared_run(name: str, run: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a command against the shared store; its failure is one line, exit status 2."""
    from bridge.edge.errors import SharedStoreUnavailable

    try:
        return asyncio.run(run())
    except SharedStoreUnavailable:
        print(f"scim-bridge {name}: the shared store (Redis) did not answer", file=sys.stderr)
        return 2


def _brake_signal(args: argparse.Namespace) -> int:
    """SIGUSR1 to a running ``serve`` or ``dev``: it releases every kind and logs it."""
    import signal

    if args.kind is not None:
        return _brake_error("--pid releases every kind: --kind needs the shared store (--config)")
    try:
        argv = Path("/proc", str(args.pid), "cmdline").read_bytes().decode(errors="replace")
    except OSError as exc:
        return _brake_error(f"cannot read the command line of process {args.pid}: {exc.strerror}")
    if _server_args(argv.split("\0")) is None:
        return _brake_error(f"process {args.pid} is not scim-bridge {' or '.join(SERVER_COMMANDS)}")
    os.kill(args.pid, signal.SIGUSR1)
    print(
        f"asked process {args.pid} to release its brake (every kind); its log says what it released"
    )
    return 0


def _brake_error(message: str) -> int:
    print(f"scim-bridge brake: {message}", file=sys.stderr)
    return 2


def _journal_run(command: Callable[[], int]) -> int:
    from bridge.journal.commands import CommandError

    try:
        return command()
    except CommandError as exc:
        print(f"scim-bridge journal: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader left (``| head``): not an error of the command
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _log_level_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help=f"debug adds one line per Modyo call (default: {default})",
    )


def _fault_options(parser: argparse.ArgumentParser) -> None:
    faults = parser.add_argument_group("fault injection (fake Modyo)")
    faults.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    faults.add_argument("--error-rate", type=float, default=0.0, help="share of 502/503/504")
    faults.add_argument("--throttle-rate", type=float, default=0.0, help="share of 429")
    faults.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of 429s (s)")
    faults.add_argument("--rate-limit", type=float, default=0.0, help="requests/s, then 429")
    faults.add_argument(
        "--lost-response-rate",
        type=float,
        default=0.0,
        help="share of requests applied whose answer is lost (502 or dropped connection)",
    )
    faults.add_argument("--hang-rate", type=float, default=0.0, help="share never answered")
    faults.add_argument("--seed", type=int, default=0, help="seed of every random draw")


def _faults(args: argparse.Namespace) -> Any:
    from bridge.modyo.fake import Faults

    try:
        return Faults(
            latency_ms=args.latency_ms,
            error_rate=args.error_rate,
            throttle_rate=args.throttle_rate,
            retry_after_seconds=args.retry_after,
            rate_limit_rps=args.rate_limit,
            lost_response_rate=args.lost_response_rate,
            hang_rate=args.hang_rate,
            seed=args.seed,
        )
    except ValueError as exc:
        raise ConfigError([f"fault options: {exc}"]) from None


def _serve(args: argparse.Namespace) -> int:
    if args.dry_run:  # as a variable: workers load their settings as serve does
        os.environ["BRIDGE_MODYO__DRY_RUN"] = "true"
    settings = _serve_settings(args)  # before the app's imports: a refusal is prompt

    from bridge.edge.app import create_app
    from bridge.edge.readiness import Readiness

    level = args.log_level or settings.server.log_level
    configure_logging(level, settings.server.log_format, settings.secret_values())
    if settings.server.workers > 1:
        from bridge.run.server import ensure_file_descriptors, internal_server
        from bridge.run.workers import Source, run_workers

        server, internal = settings.server, settings.internal
        _refuse_ports_in_use(settings)
        listener = None
        if internal.port is not None:  # served by the supervisor, adding up the workers

            def listener(status: Any) -> Any:
                inside = _internal_app(settings, status=status)
                return internal_server(inside, internal, server)

            ensure_file_descriptors(internal.max_connections)
        _say_where_metrics_are(settings)
        source = Source(args.config, _server_flags(args), args.log_level)
        run_workers(source, server.workers, server.host, server.port, listener)
        return 0
    from bridge.edge.app import journal_for
    from bridge.store.redis_link import connect

    readiness = Readiness.from_settings(settings.server)  # also the console's Overview
    link = connect(settings.idempotency) if settings.idempotency.backend == "redis" else None
    journal = journal_for(settings, link)  # its recent history is what the console lists
    app = create_app(settings, readiness=readiness, shared_store=link, journal=journal)
    history = journal.history if journal else None

    def started() -> None:
        _say_started(args.config, settings)

    _run(app, settings, readiness, history, on_started=started, rails=app.rails)
    return 0


def _say_started(config: Path | None, settings: Settings) -> None:
    """``serve``'s one start-up line: where it serves, from what, to which Modyo."""
    server, internal = settings.server, settings.internal
    scheme = "https" if server.tls_cert_file is not None else "http"
    listeners = f"SCIM {scheme}://{_local_address(server.host)}:{server.port}"
    if internal.port is not None:
        listeners += f", internal {_local_address(internal.host)}:{internal.port}"
    modyo = urlsplit(str(settings.modyo.base_url)).hostname
    summary = (
        f"scim-bridge serving: config {config or f'{ENV_PREFIX}* variables only'}; SCIM path "
        f"{server.base_path}; Modyo {modyo} (modyo.api = {settings.modyo.api}); store "
        f"{settings.idempotency.backend}; workers {server.workers}; listeners {listeners}"
    )
    logging.getLogger("bridge.run.server").info(summary)


def _refuse_ports_in_use(settings: Settings) -> None:
    """One line, before anything starts, when a listener's port is taken (uvicorn would log
    the bind error among its start-up and shutdown lines)."""
    listeners = [("server", settings.server.host, settings.server.port)]
    if settings.internal.port is not None:
        listeners.append(("internal", settings.internal.host, settings.internal.port))
    _refuse_in_use(listeners)


def _refuse_in_use(listeners: list[tuple[str, str, int]]) -> None:
    for name, host, port in listeners:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise CannotListen(
                    f"cannot listen on {host}:{port} ({name}): {exc.strerror}"
                ) from None


def _serve_settings(args: argparse.Namespace, cwd: Path | None = None) -> Settings:
    """``serve``'s settings: its flags, then ``BRIDGE_*`` variables, then its TOML file.

    ``cwd`` resolves a relative ``--config`` for another process (``healthcheck``).
    """
    config = args.config
    if config is not None and cwd is not None and not config.is_absolute():
        config = cwd / config
    server = _server_flags(args)
    return load_settings(config, **({"server": server} if server else {}))


def _server_flags(args: argparse.Namespace) -> dict[str, Any]:
    flags = {"host": args.host, "port": args.port}
    return {key: value for key, value in flags.items() if value is not None}


def _healthcheck(args: argparse.Namespace) -> int:
    """Docker ``HEALTHCHECK``: GET /healthz at the address the running server computed.

    Its command line comes from ``/proc/PID/cmdline``; for ``serve``, the same loading as
    ``serve`` then applies, with this process's environment (a HEALTHCHECK runs with the
    container's) and a relative ``--config`` read from the server's working directory.
    """
    import httpx

    proc = Path("/proc", str(args.pid))
    try:
        argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError as exc:
        return _unhealthy(f"cannot read the command line of process {args.pid}: {exc.strerror}")
    server = _server_args(argv)
    if server is None:
        return _unhealthy(f"process {args.pid} is not scim-bridge {' or '.join(SERVER_COMMANDS)}")
    scheme = "http"
    if server.command == "serve":
        try:
            settings = _serve_settings(server, cwd=proc / "cwd")
        except ConfigError as exc:
            return _unhealthy(f"the configuration cannot be used: {'; '.join(exc.problems)}")
        host, port = settings.server.host, settings.server.port
        if settings.server.tls_cert_file is not None:
            scheme = "https"
    else:
        host, port = server.host, server.port
    url = f"{scheme}://{_local_address(host)}:{port}/healthz"
    try:
        # Liveness of the local process only: no credential is sent, and its certificate
        # names the public host, not this address, so it is not verified here.
        status = httpx.get(
            url,
            timeout=args.timeout,
            trust_env=False,
            verify=False,  # noqa: S501
        ).status_code
    except httpx.HTTPError as exc:
        return _unhealthy(f"GET {url}: {type(exc).__name__}")
    if status != 200:
        return _unhealthy(f"GET {url} answered {status}")
    print(f"healthy: GET {url} answered 200")
    return 0


def _server_args(argv: list[str]) -> argparse.Namespace | None:
    """The parsed ``serve``/``dev`` arguments within a process's argv, if any.

    Whatever precedes the command (the interpreter, ``-m bridge``, the script, an init
    such as ``docker-init --``) is skipped.
    """
    argv = argv[:-1] if argv and argv[-1] == "" else argv  # cmdline ends with a NUL
    for position, word in enumerate(argv):
        if word in SERVER_COMMANDS:
            with contextlib.redirect_stderr(io.StringIO()):
                try:
                    return _parser().parse_args(argv[position:])
                except SystemExit:
                    continue
    return None


def _local_address(host: str) -> str:
    """Where a client on the same host reaches a server bound to ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _unhealthy(reason: str) -> int:
    print(f"unhealthy: {reason}", file=sys.stderr)
    return 1


def _dev(args: argparse.Namespace) -> int:
    token = args.token or _dev_token()
    settings = load_settings(  # BRIDGE_* variables apply to the other settings, checked alike
        None,
        # any Host: a laptop's own names and addresses, and no public URL to protect
        server={"host": args.host, "port": args.port, "log_format": "text", "allowed_hosts": ["*"]},
        scim={"tokens": {DEV_TOKEN_NAME: token}},
        modyo={
            "base_url": DEV_MODYO_URL,
            "token": DEV_MODYO_TOKEN,
            "api": args.modyo_api,
            "dry_run": args.dry_run,
        },
    )
    faults = _faults(args)

    from bridge.edge.app import create_app
    from bridge.edge.readiness import Readiness
    from bridge.modyo.fake import FakeModyo, FakeModyoScim, FaultyModyo, mock_transport

    fake = (FakeModyoScim if args.modyo_api == "scim" else FakeModyo)(token=DEV_MODYO_TOKEN)
    service = FaultyModyo(fake, faults)
    readiness = Readiness.from_settings(settings.server)
    transport = mock_transport(service, DEV_MODYO_URL)
    app = create_app(settings, modyo_transport=transport, readiness=readiness)
    configure_logging(args.log_level or "info", "text", settings.secret_values())
    base = f"http://{_local_address(args.host)}:{args.port}{settings.server.base_path}"
    banner = (
        f"\nscim-bridge dev server (fake Modyo {args.modyo_api.upper()} API in memory: data is "
        "lost on exit)\n"
        f"  Tenant URL:   {base}\n"
        f"  Secret Token: {token}\n"
        f"  Try:  curl -H 'Authorization: Bearer {token}' {base}/Users\n"
    )

    def listening() -> None:
        print(banner, flush=True)

    _run(app, settings, readiness, on_started=listening, rails=app.rails)
    return 0


def _dev_token(draw: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> str:
    """A random SCIM token (256 bits) that ``scim.tokens`` accepts and that cannot be mistaken
    for a flag when pasted (no leading ``-``).

    Drawing again keeps every allowed token equally likely.
    """
    while (token := draw()).startswith("-") or token_problem(token):
        pass
    return token


def _fake_modyo(args: argparse.Namespace) -> int:
    """The fake Modyo over HTTP, for development, tests and benchmarks: never a production
    component. It listens on loopback unless ``--allow-remote`` (and says so); its token,
    which its control plane needs too, is drawn per start unless given, and printed once."""
    if not is_loopback(args.host) and not args.allow_remote:
        raise ConfigError(
            [
                f"fake-modyo --host {args.host} is not a loopback address: anyone who reaches "
                "it could read and change the fake; add --allow-remote if that is what you "
                "want (a container, a lab)"
            ]
        )
    from bridge.modyo.fake import FakeModyo, FakeModyoApp, FakeModyoScim, FaultyModyo
    from bridge.modyo.fake.service import FakeService

    faults = _faults(args)
    token = args.token or _dev_token()
    fake: FakeService
    if args.api == "scim":
        fake = FakeModyoScim(token=token, seed=args.seed)
    else:
        fake = FakeModyo(token=token, seed=args.seed, delete_team_members=not args.no_delete)
    _refuse_in_use([("fake-modyo", args.host, args.port)])
    configure_logging("warning", "text", [token])
    if not is_loopback(args.host):
        logging.getLogger("bridge.fake").warning(
            "fake-modyo listens on %s, beyond this host (--allow-remote): it is a test "
            "double with a control plane, never a production component",
            args.host,
        )
    print(
        f"fake Modyo {args.api.upper()} API on http://{args.host}:{args.port} "
        f"(API token, also for /__fake__/: {token})"
        + (f"; faults: {faults}" if faults.active else ""),
        flush=True,
    )
    app = FakeModyoApp(FaultyModyo(fake, faults))
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_config=None, access_log=False, **_fast_server()
    )
    _StoppingServer(config, on_exit=app.shutting_down).run()
    return 0


class _StoppingServer(uvicorn.Server):
    """uvicorn's server, telling the app as soon as SIGTERM or SIGINT arrives: its graceful
    shutdown waits for every request in flight, and the fake's hanging ones never end by
    themselves (SIGTERM, which orchestrators send, would then never stop it)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._on_exit()


def _check(args: argparse.Namespace) -> int:
    from bridge.modyo.check import explain, run_check

    if args.explain:
        print(explain())
        return 0
    settings = load_settings(args.config, CheckSettings)  # [scim] is not needed to probe
    if not args.json:
        print("configuration: ok", flush=True)
    checking = run_check(settings.modyo, settings.retry, write=args.write, as_json=args.json)
    return asyncio.run(checking)


def _internal_app(
    settings: Settings,
    readiness: Readiness | None = None,
    history: History | None = None,
    status: Any = None,
    rails: SafetyRails | None = None,
) -> Any:
    """The internal listener's app: ``/metrics``, ``/status`` (``readiness``'s, or
    ``status``: the workers' supervisor's) and the admin console (``[admin]``;
    docs/operator/console.md), whose Overview reads ``readiness`` (the SCIM app's) and whose
    Activity, Errors and Charts read ``history`` (the journal's recent history; without a
    journal, an empty one)."""
    from bridge.console import console_routes
    from bridge.console.safety import RailsPanel
    from bridge.edge.app import internal_app
    from bridge.journal import MemoryHistory

    shown = history if history is not None else MemoryHistory(settings.journal.history_size)
    if status is None and readiness is not None:
        status = readiness.status_endpoint
    panel = RailsPanel(rails) if rails is not None else None
    routes = console_routes(settings, shown, readiness, panel)
    return internal_app(settings, routes, status=status)


def _run(
    app: Any,
    settings: Settings,
    readiness: Readiness,
    history: History | None = None,
    on_started: Callable[[], None] | None = None,
    rails: SafetyRails | None = None,
) -> None:
    """Serve ``app`` on the SCIM listener, and the internal listener when ``internal.port``
    is set, with ``readiness``'s ``/status`` (docs/operator/listeners.md)."""
    from bridge.run.server import serve, settle_heap

    internal = settings.internal
    _refuse_ports_in_use(settings)
    _say_where_metrics_are(settings)
    settle_heap()
    inside = _internal_app(settings, readiness, history, rails=rails)
    listener = (inside, internal) if internal.port else None
    serve(app, settings.server, listener, on_started=on_started, on_drain=readiness.drain)


def _say_where_metrics_are(settings: Settings) -> None:
    """``/metrics`` is never on the SCIM listener: without an internal one it is nowhere."""
    if settings.server.metrics_enabled and settings.internal.port is None:
        logging.getLogger("bridge.run.server").info(
            "/metrics is not served: set internal.port to serve it on the internal listener "
            "(docs/operator/listeners.md)"
        )


def _fast_server() -> dict[str, Any]:
    """uvloop (when installed) and httptools, for the fake Modyo."""
    from bridge.run.server import loop_name

    return {"loop": loop_name(), "http": "httptools"}


if __name__ == "__main__":
    raise SystemExit(main())
