"""``scim-bridge brake status | release``: the safety brake on mass destructive changes
(docs/operator/first-cycle.md, "Release the brake"); the commands themselves are
``bridge.safety.commands``, this module parses their arguments and reaches the brake: the
Redis the replicas share, or one process's signal."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.config_loading import load_settings
from bridge.run.cli_support import SERVER_COMMANDS, shared_run, usage


def add_brake_commands(commands: Any, is_server: Callable[[list[str]], bool]) -> None:
    """``brake status | release`` under ``commands``; ``is_server(argv)`` says whether a
    process's command line is a ``serve`` or ``dev`` (which ``release --pid`` may signal)."""
    brake = commands.add_parser("brake", help="the safety brake: its counts, or release it")
    brake.set_defaults(command="brake", run=lambda args: usage(brake))
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
    release.set_defaults(run=functools.partial(_brake_release, is_server=is_server))
    status = actions.add_parser("status", help="each kind's count in the window, and state")
    status.add_argument("--config", type=Path, help="TOML file (BRIDGE_* variables override it)")
    status.set_defaults(run=_brake_status)


def _brake_release(args: argparse.Namespace, is_server: Callable[[list[str]], bool]) -> int:
    if args.pid is not None:
        return _brake_signal(args, is_server)
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

    return shared_run("brake", run)


def _brake_signal(args: argparse.Namespace, is_server: Callable[[list[str]], bool]) -> int:
    """SIGUSR1 to a running ``serve`` or ``dev``: it releases every kind and logs it."""
    import signal

    if args.kind is not None:
        return _brake_error("--pid releases every kind: --kind needs the shared store (--config)")
    try:
        argv = Path("/proc", str(args.pid), "cmdline").read_bytes().decode(errors="replace")
    except OSError as exc:
        return _brake_error(f"cannot read the command line of process {args.pid}: {exc.strerror}")
    if not is_server(argv.split("\0")):
        return _brake_error(f"process {args.pid} is not scim-bridge {' or '.join(SERVER_COMMANDS)}")
    os.kill(args.pid, signal.SIGUSR1)
    print(
        f"asked process {args.pid} to release its brake (every kind); its log says what it released"
    )
    return 0


def _brake_error(message: str) -> int:
    print(f"scim-bridge brake: {message}", file=sys.stderr)
    return 2
