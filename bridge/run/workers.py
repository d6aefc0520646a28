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

Readiness: slot i of a :class:`Slots`, memory the parent and its workers share, holds the pid
of worker i once its app has started, and 0 from its death until its replacement has started;
every worker's ``/readyz`` is 503 ``worker_missing`` meanwhile (docs/operator/health.md). Each
worker writes its ``/status`` report to the same directory after every probing round, and the
parent's ``/status`` gathers those of the workers alive.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge.config_loading import load_settings
from bridge.logs import configure_logging
from bridge.metrics import MULTIPROCESS_DIR

log = logging.getLogger("bridge.run.server")


@dataclass(frozen=True, slots=True)
class Source:
    """Where a worker finds its settings: what ``serve`` was given (never the values)."""

    config: Path | None
    server: dict[str, Any]
    log_level: str | None


WORKER_MISSING: Final = "worker_missing"
STATUS_FILE: Final = "status-{pid}.json"


class Slots:
    """Which workers have started, in shared memory: slot i holds worker i's pid, or 0 while
    it is missing (dead, or its replacement still starting). Handed to each worker when it
    is spawned."""

    def __init__(self, count: int, context: Any) -> None:
        self.pids = context.RawArray("q", count)

    def serving(self, index: int) -> None:
        """Worker ``index`` has started (its app's lifespan)."""
        self.pids[index] = os.getpid()

    def ended(self, index: int) -> None:
        self.pids[index] = 0

    def alive(self) -> list[int]:
        return [pid for pid in self.pids if pid]

    def gate(self) -> str | None:
        """A readiness gate (``Readiness.add_gate``): every worker has started and lives."""
        return None if all(self.pids) else WORKER_MISSING


def publish_status(report: dict[str, Any]) -> None:
    """A worker's ``/status`` report, written where the parent reads it (whole or not at all)."""
    directory = Path(os.environ[MULTIPROCESS_DIR])
    target = directory / STATUS_FILE.format(pid=os.getpid())
    scratch = target.with_suffix(".tmp")
    scratch.write_text(json.dumps(report))
    scratch.replace(target)


def gathered_status(slots: Slots, directory: Path) -> dict[str, Any]:
    """The parent's status report: how many workers serve, and each one's last report (what
    ``Readiness.status_report`` is for one process)."""
    reports: dict[str, Any] = {}
    alive = slots.alive()
    for pid in alive:
        written = directory / STATUS_FILE.format(pid=pid)
        with contextlib.suppress(OSError, ValueError):  # not written yet
            reports[str(pid)] = json.loads(written.read_text())
    return {"workers": {"expected": len(slots.pids), "alive": len(alive)}, "processes": reports}


def status_endpoint(slots: Slots, directory: Path) -> Callable[[Request], Any]:
    """The parent's ``GET /status``: :func:`gathered_status`."""

    async def status(request: Request) -> Response:
        body = gathered_status(slots, directory)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return status


def run_workers(source: Source, workers: int, host: str, port: int, internal: Any) -> None:
    """Serve with ``workers`` processes until SIGTERM or SIGINT; ``internal``, given the
    parent's ``/status`` endpoint, builds the internal listener's server, which this process
    runs (or is None)."""
    listener = _bind(host, port)
    spawn = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    processes: list[BaseProcess] = []
    slots = Slots(workers, spawn)
    index_of: dict[BaseProcess, int] = {}

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        for process in processes:
            if process.pid is not None and process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    def start(index: int) -> BaseProcess:
        process = spawn.Process(target=_worker, args=(source, listener, slots, index), daemon=False)
        process.start()
        index_of[process] = index
        return process

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    with (
        _metrics_directory() as directory,
        _internal_listener(
            None
            if internal is None
            else functools.partial(internal, status_endpoint(slots, directory))
        ) as side,
    ):
        try:
            processes.extend(start(index) for index in range(workers))
            log.info("serving with %d workers", workers, extra={"pids": [p.pid for p in processes]})
            while processes:
                ended = wait([process.sentinel for process in processes])
                for process in [p for p in processes if p.sentinel in ended]:
                    process.join()
                    processes.remove(process)
                    index = index_of.pop(process)
                    slots.ended(index)
                    _mark_dead(process.pid)
                    if not stopping.is_set():
                        log.error(
                            "worker %s exited (code %s): starting another",
                            process.pid,
                            process.exitcode,
                        )
                        processes.append(start(index))
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
def _metrics_directory() -> Iterator[Path]:
    """prometheus-client's multiprocess mode for the workers (they import it after this),
    and where they write their ``/status`` reports."""
    directory = tempfile.mkdtemp(prefix="scim-bridge-metrics-")
    os.environ[MULTIPROCESS_DIR] = directory
    try:
        yield Path(directory)
    finally:
        os.environ.pop(MULTIPROCESS_DIR, None)
        shutil.rmtree(directory, ignore_errors=True)


def _mark_dead(pid: int | None) -> None:
    from prometheus_client import multiprocess

    if pid is not None:
        multiprocess.mark_process_dead(pid, os.environ[MULTIPROCESS_DIR])  # type: ignore[no-untyped-call]
        with contextlib.suppress(OSError):
            (Path(os.environ[MULTIPROCESS_DIR]) / STATUS_FILE.format(pid=pid)).unlink()


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


def _worker(
    source: Source, listener: socket.socket, slots: Slots, index: int
) -> None:  # runs in a spawned process
    """Worker ``index`` of ``server.workers``: the settings loaded as ``serve`` did, its own
    app, the bridge's server on the socket the parent listens on; ready while every worker of
    ``slots`` is (docs/operator/health.md)."""
    from bridge.edge.app import create_app
    from bridge.edge.readiness import Readiness
    from bridge.run.server import Server, ensure_file_descriptors, server_config, settle_heap

    settings = load_settings(source.config, **({"server": source.server} if source.server else {}))
    level = source.log_level or settings.server.log_level
    handler = configure_logging(level, settings.server.log_format, settings.secret_values())
    handler.addFilter(_WorkerPid())
    readiness = Readiness.from_settings(settings.server)
    readiness.add_gate("workers", slots.gate)
    readiness.when_started(lambda: slots.serving(index))
    readiness.after_each_round(publish_status)
    app = create_app(settings, readiness=readiness, worker_pid=os.getpid())  # its own journal
    settle_heap()
    ensure_file_descriptors(settings.server.max_connections)
    server = Server(server_config(app, settings.server))
    server.on_drain = readiness.drain
    server.run(sockets=[listener])


class _WorkerPid(logging.Filter):
    """Every line of a worker names it (``"worker": pid``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = os.getpid()
        return True
