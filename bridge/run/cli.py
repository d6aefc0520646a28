"""``scim-bridge``: serve | dev | fake-modyo | check | healthcheck, and the command groups
``journal`` (bridge/run/cli_journal.py) and ``brake`` (bridge/run/cli_brake.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import logging
import os
import secrets
import socket
import sys
from collections.abc import Callable, Sequence
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
from bridge.run.cli_brake import add_brake_commands
from bridge.run.cli_journal import add_journal_commands
from bridge.run.cli_support import SERVER_COMMANDS, leave_quietly

if TYPE_CHECKING:
    from bridge.edge.readiness import Readiness
    from bridge.journal.history import History
    from bridge.safety import SafetyRails

DEV_MODYO_URL = "http://localhost:9"  # served in process: nothing listens there
DEV_MODYO_TOKEN = "fake-modyo-token-0123456789"
DEV_TOKEN_NAME = "dev"


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
        leave_quietly()
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
    add_journal_commands(commands)
    add_brake_commands(commands, is_server=lambda argv: _server_args(argv) is not None)
    return parser


def _dry_run_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="rehearse: read Modyo, never write to it (modyo.dry_run; docs/operator/"
        "first-cycle.md)",
    )


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
    from bridge.run.server import serve

    internal = settings.internal
    _refuse_ports_in_use(settings)
    _say_where_metrics_are(settings)
    # Everything imported and built so far lives as long as the process: freezing it keeps
    # the garbage collector from re-scanning it on every full collection (docs/performance.md,
    # Costs the code avoids).
    gc.collect()
    gc.freeze()
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
