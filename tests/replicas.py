"""Real processes for the cross-process tests (``tests/test_replicas.py``): ``scim-bridge
fake-modyo`` and several ``scim-bridge serve`` replicas, each on its own free 127.0.0.1 port
with a TOML file of its own, sharing one store (Redis) and one fake Modyo.

Every process writes its output to a file (read back when it fails to start, or to explain a
failing assertion) and is stopped by the test that started it: SIGTERM, so coverage saves its
data, then SIGKILL after a hang guard. Waits are conditions polled over HTTP (the fake's
control plane, a replica's ``/metrics`` and ``/readyz``) or a process's exit, each bounded by
:data:`HANG_GUARD_SECONDS`: a broken guarantee fails a test, it never hangs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import ResetProxy, free_port
from tests.waits import HANG_GUARD_SECONDS, eventually

HOST = "127.0.0.1"
SCIM_TOKEN = "replicas-scim-token-0123456789-abcdef"
MODYO_TOKEN = "replicas-fake-modyo-token"
CREATE = "POST /team_members"
"""The fake's route of a user create (a key of its call counters)."""
START_GUARD_SECONDS = 120.0
"""A process's start (imports, under coverage, several at once on a busy machine: one took
over 30 s on a 2-core machine running three other suites)."""


def _env() -> dict[str, str]:
    """This environment without ``BRIDGE_*`` (a replica's TOML file is its whole config)."""
    return {key: value for key, value in os.environ.items() if not key.startswith("BRIDGE_")}


class Process:
    """``python -m bridge ARGS``, its output in ``log_path``."""

    def __init__(self, name: str, args: list[str], log_path: Path) -> None:
        self.name, self.args, self.log_path = name, args, log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        assert self._process is not None, f"{self.name} is not running"
        return self._process.pid

    def start(self) -> None:
        assert not self.running, f"{self.name} already runs"
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "bridge", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_env(),
            )

    def wait_answering(self, url: str) -> None:
        """Poll ``url`` until it answers at all; a process that exits first fails at once."""
        give_up = time.monotonic() + START_GUARD_SECONDS
        while time.monotonic() < give_up:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(url, timeout=1, trust_env=False)
                return
            assert self._process is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=0.05)
                break
        raise AssertionError(f"{self.name} did not start:\n{self.output()}")

    def wait_started(self) -> None:
        """Return once the process serves (each kind knows where to ask)."""

    def output(self, last: int = 60) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-last:])

    def stop(self) -> None:
        """SIGTERM (coverage saves its data), SIGKILL after the hang guard; waited for."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=HANG_GUARD_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crashed node: no cleanup, no goodbye to Redis or Modyo."""
        process, self._process = self._process, None
        assert process is not None and process.poll() is None, f"{self.name} is not running"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=HANG_GUARD_SECONDS)


class FakeModyoProcess(Process):
    """A ``scim-bridge fake-modyo`` process (REST) and its control plane (``/__fake__/``), over
    HTTP: the fake itself (``bridge.modyo.fake.FakeModyo``) runs inside that process."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        args = ["fake-modyo", "--host", HOST, "--port", str(self.port), "--token", MODYO_TOKEN]
        super().__init__("fake-modyo", args, directory / "fake-modyo.log")

    def wait_started(self) -> None:
        self.wait_answering(f"{self.url}/__fake__/calls")

    def client(self) -> httpx.AsyncClient:
        """A client of its API and its control plane (both take the fake's token)."""
        return httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {MODYO_TOKEN}"},
            trust_env=False,
            timeout=HANG_GUARD_SECONDS,
        )

    async def calls(self) -> dict[str, Any]:
        async with self.client() as client:
            answer = await client.get("/__fake__/calls")
        answer.raise_for_status()
        return dict(answer.json())

    async def count(self, route: str) -> int:
        return int((await self.calls())["calls"].get(route, 0))

    async def control(self, method: str, action: str, body: Any = None) -> None:
        async with self.client() as client:
            answer = await client.request(method, f"/__fake__/{action}", json=body)
        assert answer.status_code < 300, answer.text

    async def faults(self, **changes: Any) -> None:
        await self.control("PUT", "faults", changes)

    async def hold(self, route: str) -> None:
        """The next call to ``route`` waits at the fake, unapplied, until :meth:`release`."""
        await self.control("POST", "hold", {"route": route})

    async def release(self) -> None:
        await self.control("POST", "release")

    async def wait_held(self, route: str, count: int = 1) -> None:
        async def held() -> bool:
            return int((await self.calls())["held"].get(route, 0)) >= count

        await eventually(held, f"{count} call(s) to {route} held at the fake")

    async def wait_calls(self, route: str, count: int) -> None:
        async def reached() -> bool:
            return await self.count(route) >= count

        await eventually(reached, f"{count} call(s) to {route} at the fake")

    async def wait_injected(self, kind: str, count: int = 1) -> None:
        async def reached() -> bool:
            return int((await self.calls())["injected"].get(kind, 0)) >= count

        await eventually(reached, f"{count} injected {kind} fault(s)")

    async def reset(self) -> None:
        """No faults, no holds, counters at zero: a test starts from here."""
        await self.control("PUT", "faults", {
            "latency_ms": 0, "error_rate": 0, "throttle_rate": 0, "rate_limit_rps": 0,
            "lost_response_rate": 0, "hang_rate": 0,
        })  # fmt: skip
        await self.release()
        await self.control("POST", "reset-calls")

    async def state(self) -> ModyoState:
        """Modyo's whole state as its REST API lists it (read after the counts a test
        checks: these reads are counted too)."""
        headers = {"Authorization": f"Bearer {MODYO_TOKEN}"}
        async with self.client() as client:
            members = await _all(client, "/api/admin/team_members", "team_members", headers)
            groups = await _all(client, "/api/admin/groups", "groups", headers)
            names = {member["id"]: str(member["username"]) for member in members}
            memberships = {}
            for group in groups:
                inside = await _all(
                    client, f"/api/admin/groups/{group['id']}/team_members", "team_members", headers
                )
                memberships[str(group["name"])] = {names[member["id"]] for member in inside}
        users: dict[str, list[dict[str, Any]]] = {}
        for member in members:
            users.setdefault(str(member["username"]).lower(), []).append(member)
        return ModyoState(users, memberships, len(groups))


async def _all(
    client: httpx.AsyncClient, path: str, plural: str, headers: Mapping[str, str]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for page in itertools.count(1):
        answer = await client.get(path, params={"page": page, "per_page": 100}, headers=headers)
        answer.raise_for_status()
        found = answer.json()[plural]
        rows += found
        if len(found) < 100:
            return rows
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class ModyoState:
    users: dict[str, list[dict[str, Any]]]
    """Team members by lower-cased username: more than one under a name is a duplicate."""
    groups: dict[str, set[str]]
    """Group name -> member usernames."""
    group_count: int

    def members_named(self, user_name: str) -> list[dict[str, Any]]:
        return self.users.get(user_name.lower(), [])

    def assert_no_duplicates(self) -> None:
        twins = {name: len(rows) for name, rows in self.users.items() if len(rows) > 1}
        assert not twins, f"duplicated team members: {twins}"
        assert self.group_count == len(self.groups), "two groups share a name"


class Replica(Process):
    """``scim-bridge serve --config FILE`` on a free port of 127.0.0.1; ``store`` is its
    ``[idempotency]`` section, ``settings`` overrides other sections' keys."""

    def __init__(
        self,
        name: str,
        directory: Path,
        modyo_url: str,
        store: Mapping[str, Any],
        settings: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.port, self.internal_port = free_port(), free_port()
        self.modyo_url, self.store = modyo_url, dict(store)
        sections = self._sections()
        for section, values in (settings or {}).items():
            sections.setdefault(section, {}).update(values)
        config = directory / f"{name}.toml"
        config.write_text(_toml(sections))
        super().__init__(name, ["serve", "--config", str(config)], config.with_suffix(".log"))

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def scim_url(self) -> str:
        return f"{self.url}/scim"

    def _sections(self) -> dict[str, dict[str, Any]]:
        sections: dict[str, dict[str, Any]] = {
            "server": {
                "host": HOST,
                "port": self.port,
                "log_format": "text",
                "log_level": "warning",
                "readiness_interval_seconds": 0.2,
                "readiness_max_age_seconds": 1.0,
            },
            "internal": {"host": HOST, "port": self.internal_port},  # its /metrics
            "scim": {"tokens": {"entra": SCIM_TOKEN}, "request_deadline_seconds": 20.0},
            "modyo": {"base_url": self.modyo_url, "token": MODYO_TOKEN},
            "retry": {
                "max_attempts": 3,
                "backoff_initial_seconds": 0.01,
                "backoff_max_seconds": 0.05,
            },
            "idempotency": dict(self.store),
            "safety": {"enabled": False},  # histories far beyond the brake's defaults
        }
        return sections

    def wait_started(self) -> None:
        self.wait_answering(f"{self.url}/healthz")

    def client(self, **options: Any) -> httpx.AsyncClient:
        """A SCIM client of this replica (Entra's token, no proxy from the environment)."""
        options.setdefault("timeout", HANG_GUARD_SECONDS)
        return httpx.AsyncClient(
            base_url=self.scim_url,
            headers={"Authorization": f"Bearer {SCIM_TOKEN}"},
            trust_env=False,
            **options,
        )

    @property
    def metrics_url(self) -> str:
        """This replica's ``/metrics``, on its internal listener (never the SCIM one)."""
        return f"http://{HOST}:{self.internal_port}/metrics"

    async def metric(self, name: str, **labels: str) -> float:
        """A sample of this replica's ``/metrics`` (0 when it was never set)."""
        async with httpx.AsyncClient(trust_env=False, timeout=HANG_GUARD_SECONDS) as client:
            text = (await client.get(self.metrics_url)).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    async def idempotency(self, outcome: str) -> float:
        return await self.metric("scim_bridge_idempotency_total", outcome=outcome)

    async def ready(self) -> httpx.Response:
        async with httpx.AsyncClient(trust_env=False, timeout=HANG_GUARD_SECONDS) as client:
            return await client.get(f"{self.url}/readyz")

    async def wait_ready(self, expected: int = 200) -> httpx.Response:
        """Poll ``/readyz`` until it answers ``expected``; that answer."""
        answers: list[httpx.Response] = []

        async def reached() -> bool:
            answers.append(await self.ready())
            return answers[-1].status_code == expected

        await eventually(reached, f"{self.name} /readyz answering {expected}")
        return answers[-1]

    async def wait_status(self, check: str, state: str) -> dict[str, Any]:
        """Poll the internal listener's ``/status`` until ``check`` is reported ``state``
        (``unreachable``, ``ok``...); that check's report."""
        url = f"http://{HOST}:{self.internal_port}/status"

        async def reached() -> dict[str, Any] | None:
            async with httpx.AsyncClient(trust_env=False, timeout=HANG_GUARD_SECONDS) as client:
                report: dict[str, Any] = (await client.get(url)).json()["checks"].get(check, {})
            return report if report.get("state") == state else None

        return await eventually(reached, f"{self.name} /status reporting {check} {state}")

    def wait_exit(self) -> None:
        assert self._process is not None
        self._process.wait(timeout=HANG_GUARD_SECONDS)


def _toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML from plain values (strings, numbers, booleans, lists, tables): JSON's literals
    are TOML's, a table is written inline."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


@contextlib.contextmanager
def running(*processes: Process) -> Iterator[None]:
    """Start every process (together: they boot in parallel), wait until each answers, and
    stop them all on exit, last started first, also when the test fails or a start does."""
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.wait_started()
        yield
    finally:
        for process in reversed(processes):  # the ones started first may serve the others
            process.stop()


class RoundRobin:
    """A client spreading requests over several replicas in turn, as a load balancer does:
    a request re-sent after a 5xx lands on the next replica."""

    def __init__(self, replicas: list[Replica]) -> None:
        self._clients = [replica.client() for replica in replicas]
        self._turn = itertools.cycle(self._clients)

    async def request(
        self, method: str, url: str, json: Any = None, **params: str
    ) -> httpx.Response:
        return await next(self._turn).request(method, url, json=json, params=params or None)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()

    async def __aenter__(self) -> RoundRobin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@dataclass
class _AnchoredProxy(ResetProxy):
    """A :class:`ResetProxy` holding its connections' tasks: asyncio keeps only a weak
    reference to a connection's task once its client has gone (Python 3.11), and one still
    waiting for the fake would be collected mid-``await`` instead of ending."""

    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await super()._client(reader, writer)
        finally:
            self.tasks.discard(task)


class ProxyThread:
    """A :class:`tests.servers.ResetProxy` to ``upstream_port`` on an event loop of its own
    (a thread), so that processes started once per module can be pointed at it and a test
    can make it reset connections (``proxy.reset_share``) while its own loop drives the
    replicas."""

    def __init__(self, upstream_port: int) -> None:
        self.proxy: ResetProxy = _AnchoredProxy(upstream_port)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="reset-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.proxy.port}"

    def _run(self) -> None:
        async def serve() -> None:
            self._stop = asyncio.Event()
            async with self.proxy.running():
                self._started.set()
                await self._stop.wait()  # unguarded: set by stop()

        try:
            self._loop.run_until_complete(serve())
        finally:
            self._started.set()  # a failed start does not leave __enter__ waiting
            self._loop.run_until_complete(self._end_connections())
            self._loop.close()

    async def _end_connections(self) -> None:
        """Connections still open (a request the fake never answered) end with the proxy."""
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> ProxyThread:
        self._thread.start()
        assert self._started.wait(HANG_GUARD_SECONDS) and self.proxy.port, "proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        stop = self._stop
        if stop is not None:
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(HANG_GUARD_SECONDS)
        assert not self._thread.is_alive(), "proxy did not stop"


class Background:
    """``work()`` in a thread: a slow start (a Sentinel topology's discovery) overlapping with
    others; :meth:`result` waits for it and raises what it raised."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self._work = work
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="background-start", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._work()
        except BaseException as exc:  # handed to result(), in the test's thread
            self._error = exc

    def result(self) -> Any:
        self._thread.join(HANG_GUARD_SECONDS)
        assert not self._thread.is_alive(), "a background start did not end"
        if self._error is not None:
            raise self._error
        return self._value


async def leave_create(fake: FakeModyoProcess, replica: Replica, body: Mapping[str, Any]) -> None:
    """A create whose client leaves ``replica`` before the answer (Entra timing out): sent on
    a raw connection and closed while Modyo holds it. Returns once the replica has seen the
    client go, the create still held at Modyo (:meth:`FakeModyoProcess.release` lets it finish)."""
    gone = await replica.idempotency("client_gone")
    await fake.hold(CREATE)
    payload = json.dumps(body).encode()
    _, writer = await asyncio.open_connection(HOST, replica.port)
    writer.write(
        b"POST /scim/Users HTTP/1.1\r\nHost: "
        + HOST.encode()
        + b"\r\nAuthorization: Bearer "
        + SCIM_TOKEN.encode()
        + b"\r\nContent-Type: application/scim+json\r\nContent-Length: "
        + str(len(payload)).encode()
        + b"\r\n\r\n"
        + payload
    )
    await writer.drain()
    await fake.wait_held(CREATE)
    writer.close()
    await writer.wait_closed()

    async def noticed() -> bool:
        return await replica.idempotency("client_gone") > gone

    await eventually(noticed, f"{replica.name} saw its client leave")


async def abandon_create(fake: FakeModyoProcess, replica: Replica, body: Mapping[str, Any]) -> None:
    """:func:`leave_create`, then the create completes: returns once the replica has kept
    the undelivered 201 for a retry."""
    kept = await replica.idempotency("kept_undelivered")
    await leave_create(fake, replica, body)
    await fake.release()

    async def kept_it() -> bool:
        return await replica.idempotency("kept_undelivered") > kept

    await eventually(kept_it, f"{replica.name} kept the undelivered 201")
