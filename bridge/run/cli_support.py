"""What every ``scim-bridge`` subcommand shares: its usage when called bare, a closed
standard output (``... | head``), and the one-line failure of the shared store."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

SERVER_COMMANDS = ("serve", "dev")  # the commands whose address ``healthcheck`` probes


def usage(parser: argparse.ArgumentParser) -> int:
    """A command group called without its command: its help, exit status 2."""
    parser.print_help()
    return 2


def leave_quietly() -> None:
    """The reader of standard output has gone (``check --explain | head``): point it at
    ``/dev/null`` so that the interpreter's last flush cannot print a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def shared_run(name: str, run: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a command against the shared store; its failure is one line, exit status 2."""
    from bridge.edge.errors import SharedStoreUnavailable

    try:
        return asyncio.run(run())
    except SharedStoreUnavailable:
        print(f"scim-bridge {name}: the shared store (Redis) did not answer", file=sys.stderr)
        return 2
