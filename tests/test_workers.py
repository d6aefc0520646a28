"""``server.workers = N`` over real HTTP: ``serve`` starts N worker processes on one port,
sharing a real redis-server, against the ``fake-modyo`` process; and refuses, in one line, more
than one worker without Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests import entra
from tests.processes import SCIM_TOKEN, fake_modyo, serve_env
from tests.redis_servers import RedisServer
from tests.servers import free_port

STARTED = "Application startup complete."
STARTUP_GUARD_SECONDS = 120.0
"""A hang guard only: spawning a worker imports the whole bridge (seconds on a busy CI host)."""


class _Serving:
    """``python -m bridge serve`` whose JSON log lines are collected as they come."""

    def __init__(self, env: dict[str, str]) -> None:
        self.lines: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                with self._changed:
                    self.lines.append(json.loads(line) if line.startswith("{") else {"raw": line})
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, message: str, count: int = 1) -> list[dict[str, Any]]:
        """The first ``count`` log lines saying ``message``, once they are there."""

        def found() -> list[dict[str, Any]]:
            return [line for line in self.lines if line.get("message") == message]

        with self._changed:
            self._changed.wait_for(
                lambda: len(found()) >= count or not self._reader.is_alive(),
                timeout=STARTUP_GUARD_SECONDS,
            )
            lines = found()
        assert len(lines) >= count, f"no {count} x {message!r} in:\n{self.lines[-30:]}"
        return lines[:count]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        code = self.process.wait(timeout=STARTUP_GUARD_SECONDS)
        self._reader.join(timeout=STARTUP_GUARD_SECONDS)
        return code


@contextmanager
def _serving(env: dict[str, str]) -> Iterator[_Serving]:
    serving = _Serving(env)
    try:
        yield serving
    finally:
        serving.stop()


def _parent(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def test_two_workers_serve_one_port_and_share_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    port, metrics_port = free_port(), free_port()
    with fake_modyo() as modyo_url:
        env = serve_env(modyo_url, port=port) | {
            "BRIDGE_SERVER__WORKERS": "2",
            "BRIDGE_INTERNAL__PORT": str(metrics_port),
            "BRIDGE_IDEMPOTENCY__BACKEND": "redis",
            "BRIDGE_IDEMPOTENCY__REDIS_URL": redis_server.url,
            "BRIDGE_JOURNAL__ENABLED": "true",
            "BRIDGE_JOURNAL__FILE": str(tmp_path / "journal.jsonl"),
            "BRIDGE_JOURNAL__KEY": "workers-journal-key-0123456789abcdef",
            "BRIDGE_JOURNAL__REPLICA": "pod",
            "BRIDGE_SERVER__READINESS_INTERVAL_SECONDS": "0.2",
        }
        with _serving(env) as bridge:
            (serving,) = bridge.wait_for("serving with 2 workers")
            workers = set(serving["pids"])
            assert len(workers) == 2 and bridge.process.pid not in workers
            assert {_parent(pid) for pid in workers} == {bridge.process.pid}
            started = bridge.wait_for(STARTED, count=2)
            assert {line["worker"] for line in started} == workers

            base = f"http://127.0.0.1:{port}/scim"
            headers = {"Authorization": f"Bearer {SCIM_TOKEN}"}
            sent = _until_both_answered(bridge, base, headers, workers)

            # one Redis for both: a create twin is a 409 whichever worker answers it
            user = entra.user("workers@contoso.com")
            with httpx.Client(base_url=base, headers=headers) as scim:
                assert scim.post("/Users", json=user).status_code == 201
                again = [scim.post("/Users", json=user) for _ in range(4)]
                query = {"filter": 'userName eq "workers@contoso.com"'}
                found = scim.get("/Users", params=query).json()
            assert {r.status_code for r in again} == {409}
            assert found["totalResults"] == 1  # one user in Modyo

            # /metrics on the parent's internal listener adds up both workers
            bridge.wait_for("request", count=sent + 6)  # counted before the access log line
            inside = f"http://127.0.0.1:{metrics_port}"
            metrics = httpx.get(f"{inside}/metrics").text
            total = sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("scim_bridge_requests_total{")
            )
            assert total == sent + 6

            # /status on the parent's internal listener: each worker's report
            readyz, status = f"http://127.0.0.1:{port}/readyz", f"{inside}/status"
            assert {_readyz(readyz) for _ in range(4)} == {(200, None)}
            reports = _until_reported(status, workers)
            assert {r["checks"]["modyo"]["state"] for r in reports.values()} == {"ok"}
            assert {r["checks"]["shared_store"]["state"] for r in reports.values()} == {"ok"}

            # a worker that dies is replaced; the other serves meanwhile, unready until then
            dead = min(workers)
            os.kill(dead, signal.SIGKILL)
            bridge.wait_for(f"worker {dead} exited (code -9): starting another")
            # the replacement takes seconds to start (a fresh interpreter importing the bridge)
            assert _readyz(readyz) == (503, "worker_missing")
            assert httpx.get(status).json()["workers"] == {"expected": 2, "alive": 1}
            assert httpx.get(f"{base}/Users", headers=headers).status_code == 200
            fresh = bridge.wait_for(STARTED, count=3)[2]["worker"]
            assert fresh not in workers and _parent(fresh) == bridge.process.pid
            assert {_readyz(readyz) for _ in range(4)} == {(200, None)}
            assert httpx.get(status).json()["workers"] == {"expected": 2, "alive": 2}

            assert bridge.stop() == 0  # SIGTERM: both workers finish and exit, then the parent
            for pid in (workers - {dead}) | {fresh}:
                assert not Path(f"/proc/{pid}").exists()
    # each worker its own journal chain (a file each, named by its process id)
    chains = {path.name.split(".")[1] for path in tmp_path.glob("journal.*.jsonl")}
    assert chains == {f"pod-{pid}" for pid in workers | {fresh}}


def _readyz(url: str) -> tuple[int, str | None]:
    """``/readyz`` on a new connection (the kernel hands it to either worker)."""
    answer = httpx.get(url)
    reason: str | None = answer.json().get("reason")
    return answer.status_code, reason


def _until_reported(url: str, workers: set[int]) -> dict[str, Any]:
    """The parent's ``/status`` once every worker has written a report (after its first
    probing round)."""
    for _ in range(5000):  # a hang guard: a round runs every 0.2 s
        body: dict[str, Any] = httpx.get(url).json()
        if set(body["processes"]) == {str(pid) for pid in workers}:
            assert body["workers"] == {"expected": 2, "alive": 2}
            reports: dict[str, Any] = body["processes"]
            return reports
        threading.Event().wait(0.02)  # the pace of polling another process, not a bound
    raise AssertionError(f"not every worker reported: {body}")


def _until_both_answered(
    bridge: _Serving, base: str, headers: dict[str, str], workers: set[int]
) -> int:
    """Send rounds of concurrent requests, each on its own connection, until the access log
    shows both workers answering (the kernel hands connections to either); requests sent."""
    sent = 0

    def get(_: int) -> int:
        with httpx.Client(headers=headers) as client:
            return client.get(f"{base}/Users?count=1").status_code

    with ThreadPoolExecutor(8) as pool:
        for _ in range(50):  # a hang guard: both answer within the first rounds
            assert set(pool.map(get, range(8))) == {200}
            sent += 8
            answered = {
                line.get("worker")
                for line in list(bridge.lines)
                if line.get("logger") == "bridge.http"
            }
            if workers <= answered:
                return sent
    raise AssertionError(f"not every worker answered: {answered} of {workers}")


def test_several_workers_without_redis_are_refused_in_one_line() -> None:
    env = serve_env("http://127.0.0.1:9") | {"BRIDGE_SERVER__WORKERS": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "serve"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert problems == [
        '  - server.workers = 3 needs idempotency.backend = "redis": the memory backend holds '
        "one process's idempotency and create locks"
    ]
