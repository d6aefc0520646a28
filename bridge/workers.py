"""``server.workers = N``: N worker processes serving one listening socket.

The parent binds the socket, then starts each worker with ``multiprocessing``'s spawn (a
fresh interpreter, as uvicorn's own workers): a worker loads the settings the way ``serve``
did (the same file, flags and ``BRIDGE_*`` environment: no secret crosses a process
boundary), builds its own app (its own Modyo and Redis connections) and runs the bridge's
server layer on the inherited socket. The kernel spreads connections over the workers.

The parent supervises: SIGTERM or SIGINT is handed to every worker as SIGTERM, each finishes
its requests in flight and exits (a second Ctrl-C reaches the workers from the terminal and
stops them at once); a worker that dies otherwise is replaced. Metrics: the workers write
prometheus-client's multiprocess files in one directory, and ``/metrics``, on the internal
listener (``[internal]``), which the parent serves, adds them up.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from bridge.metrics import MULTIPROCESS_DIR

log = logging.getLogger("bridge.server")


@dataclass(frozen=True, slots=True)
class Source:
    """Where a worker finds its settings: what ``serve`` was given (never the values)."""

    config: Path | None
    server: dict[str, Any]
    log_level: str | None


def run_workers(source: Source, workers: int, host: str, port: int, internal: Any) -> None:
    """Serve with ``workers`` processes until SIGTERM or SIGINT; ``internal`` builds the
    internal listener's server, which this process runs (or is None)."""
    listener = _bind(host, port)
    spawn = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    processes: list[BaseProcess] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        for process in processes:
            if process.pid is not None and process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    def start() -> BaseProcess:
        process = spawn.Process(target=_worker, args=(source, listener), daemon=False)
        process.start()
        return process

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    with _metrics_directory(), _internal_listener(internal) as side:
        try:
            processes.extend(start() for _ in range(workers))
            log.info("serving with %d workers", workers, extra={"pids": [p.pid for p in processes]})
            while processes:
                ended = wait([process.sentinel for process in processes])
                for process in [p for p in processes if p.sentinel in ended]:
                    process.join()
                    processes.remove(process)
                    _mark_dead(process.pid)
                    if not stopping.is_set():
                        log.error(
                            "worker %s exited (code %s): starting another",
                            process.pid,
                            process.exitcode,
                        )
                        processes.append(start())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            listener.close()
            if side is not None:
                side()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener


@contextlib.contextmanager
def _metrics_directory() -> Iterator[None]:
    """prometheus-client's multiprocess mode for the workers (they import it after this)."""
    directory = tempfile.mkdtemp(prefix="scim-bridge-metrics-")
    os.environ[MULTIPROCESS_DIR] = directory
    try:
        yield
    finally:
        os.environ.pop(MULTIPROCESS_DIR, None)
        shutil.rmtree(directory, ignore_errors=True)


def _mark_dead(pid: int | None) -> None:
    from prometheus_client import multiprocess

    if pid is not None:
        multiprocess.mark_process_dead(pid, os.environ[MULTIPROCESS_DIR])  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def _internal_listener(internal: Any) -> Iterator[Any]:
    """The internal listener in the parent, in a thread of its own."""
    if internal is None:
        yield None
        return
    ready, result = threading.Event(), {}

    def run() -> None:
        import asyncio

        server = internal()
        result["server"] = server
        ready.set()
        asyncio.run(server.serve())

    thread = threading.Thread(target=run, name="scim-bridge internal listener", daemon=True)
    thread.start()
    ready.wait()

    def stop() -> None:
        result["server"].should_exit = True
        thread.join()

    yield stop


def _worker(source: Source, listener: socket.socket) -> None:  # runs in a spawned process
    from bridge.cli import run_worker

    run_worker(source, listener)
