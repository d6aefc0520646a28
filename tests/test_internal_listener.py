"""The internal listener (``[internal]``): ``/metrics`` is served there and never on the SCIM
listener; it runs the SCIM listener's protocols and timeouts with a connection cap of its own,
so a flood of it cannot take the file descriptors SCIM needs (a real ``serve`` process under
a 300-file limit, real sockets); ``server.metrics_port`` is refused, naming what replaced it
(docs/operator/listeners.md)."""

from __future__ import annotations

import os
import resource
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

import httpx
import pytest

from bridge.config_loading import ConfigError, load_settings
from bridge.edge.protocols import MAX_REFUSING
from tests.processes import (
    FAKE_AUTH,
    SCIM_TOKEN,
    fake_modyo,
    running,
    serve_env,
    wait_until_answering,
)
from tests.servers import free_port
from tests.waits import wait_until

FILE_LIMIT = 300  # the open-files limit (soft and hard) the flooded bridge runs under
FLOOD = 320  # half-open connections to the internal listener: more than the limit
INTERNAL_CAP = 8  # internal.max_connections


def test_metrics_are_served_only_on_the_internal_listener() -> None:
    with fake_modyo() as modyo_url:
        port, internal = free_port(), free_port()
        env = serve_env(modyo_url, port=port) | {"BRIDGE_INTERNAL__PORT": str(internal)}
        with running(["serve"], f"http://127.0.0.1:{port}/healthz", env=env) as process:
            base, inside = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{internal}"
            headers = {"Authorization": f"Bearer {SCIM_TOKEN}"}
            assert httpx.get(f"{base}/scim/Users", headers=headers).status_code == 200
            assert httpx.get(f"{base}/metrics").status_code == 404
            metrics = httpx.get(f"{inside}/metrics")
            assert metrics.status_code == 200
            assert 'operation="users.query"' in metrics.text
            assert "scim_bridge_shared_store_up" not in metrics.text  # no Redis: nothing to report
            for path in ("/scim/Users", "/healthz"):  # nothing of the SCIM listener's
                missing = httpx.get(f"{inside}{path}", headers=headers)
                assert missing.status_code == 404
                assert missing.headers["content-type"] == "application/scim+json"
            # the SCIM listener's protocols: a head over 16 KiB is a SCIM 431, closed
            oversized = httpx.get(f"{inside}/metrics", headers={"X-Big": "x" * 20_000})
            assert oversized.status_code == 431 and oversized.headers["connection"] == "close"
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=20)
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output
    [started] = [line for line in output.splitlines() if "scim-bridge serving:" in line]
    assert (  # one start-up line: where, from what, to which Modyo
        "config BRIDGE_* variables only; SCIM path /scim; Modyo 127.0.0.1 (modyo.api = rest); "
        f"store memory; workers 1; listeners SCIM http://127.0.0.1:{port}, internal "
        f"127.0.0.1:{internal}"
    ) in started


def test_without_an_internal_port_metrics_are_nowhere_and_the_log_says_so() -> None:
    with fake_modyo() as modyo_url:
        port = free_port()
        env = serve_env(modyo_url, port=port)
        with running(["serve"], f"http://127.0.0.1:{port}/healthz", env=env) as process:
            assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 404
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=20)
    assert "/metrics is not served: set internal.port" in output


@pytest.mark.parametrize("source", ["file", "environment"])
def test_server_metrics_port_is_refused_naming_what_replaced_it(
    source: str, tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken as an alias, it would move the scraper's target from server.host (0.0.0.0 in a
    container) to the internal listener's loopback default without a word."""
    config = None
    if source == "file":
        config = tmp_path / "bridge.toml"  # type: ignore[operator]
        config.write_text("[server]\nmetrics_port = 9100\n")
    else:
        monkeypatch.setenv("BRIDGE_SERVER__METRICS_PORT", "9100")
    with pytest.raises(ConfigError) as refused:
        load_settings(
            config,
            scim={"tokens": {"entra": SCIM_TOKEN}},
            modyo={"base_url": "https://m.example", "token": "t"},
        )
    (problem,) = refused.value.problems
    assert "server.metrics_port" in problem and "internal.port" in problem
    assert "internal.host" in problem


def test_internal_and_scim_ports_must_differ() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(
            None,
            server={"port": 8000},
            internal={"port": 8000},
            scim={"tokens": {"entra": SCIM_TOKEN}},
            modyo={"base_url": "https://m.example", "token": "t"},
        )
    assert "internal.port and server.port are both 8000" in refused.value.problems[0]


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@contextmanager
def _serving_under_a_file_limit(env: dict[str, str], url: str) -> Iterator[subprocess.Popen[str]]:
    """``serve`` with RLIMIT_NOFILE = FILE_LIMIT (soft and hard: it cannot raise it)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))

    with subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=limit,
    ) as process:
        try:
            wait_until_answering(process, url, ["serve"])
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _settled(flood: list[socket.socket], answered: set[int]) -> None:
    """Note every flood connection the server answered (503) or closed."""
    readable, _, _ = select.select([s for s in flood if s.fileno() not in answered], [], [], 0.05)
    for sock in readable:
        with suppress(ConnectionError):
            sock.recv(65536)
        answered.add(sock.fileno())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and RLIMIT_NOFILE")
def test_a_flood_of_the_internal_listener_leaves_scim_answering() -> None:
    """FLOOD silent connections to the internal listener, under a FILE_LIMIT-file limit, held
    open (the header timeout is longer than the test): the internal listener keeps
    INTERNAL_CAP of them and refuses the rest, its share of files stays bounded, and the SCIM
    listener answers, Modyo calls included. Without the cap (a plain uvicorn there) the
    flood took every file and SCIM answered nothing."""
    port, internal = free_port(), free_port()
    with fake_modyo() as modyo_url, ExitStack() as held:
        env = serve_env(modyo_url, port=port) | {
            "BRIDGE_INTERNAL__PORT": str(internal),
            "BRIDGE_INTERNAL__MAX_CONNECTIONS": str(INTERNAL_CAP),
            "BRIDGE_SERVER__MAX_CONNECTIONS": "32",
            "BRIDGE_SERVER__HEADER_TIMEOUT_SECONDS": "120",
        }
        healthz = f"http://127.0.0.1:{port}/healthz"
        with _serving_under_a_file_limit(env, healthz) as bridge:
            before = _open_files(bridge.pid)
            flood = [
                held.enter_context(socket.create_connection(("127.0.0.1", internal)))
                for _ in range(FLOOD)
            ]
            answered: set[int] = set()

            def turned_away() -> bool:  # all but the admitted ones
                _settled(flood, answered)
                return len(answered) >= FLOOD - INTERNAL_CAP

            wait_until(turned_away, f"{FLOOD - INTERNAL_CAP} of {FLOOD} flood connections settled")
            during = _open_files(bridge.pid)
            assert len(answered) == FLOOD - INTERNAL_CAP  # the admitted ones are held
            assert during <= before + INTERNAL_CAP + MAX_REFUSING < FILE_LIMIT

            calls = httpx.get(f"{modyo_url}/__fake__/calls", headers=FAKE_AUTH).json()["total"]
            headers = {"Authorization": f"Bearer {SCIM_TOKEN}"}
            assert httpx.get(healthz, timeout=10).status_code == 200
            users = httpx.get(f"http://127.0.0.1:{port}/scim/Users", headers=headers, timeout=10)
            assert users.status_code == 200 and users.json()["totalResults"] == 0
            after = httpx.get(f"{modyo_url}/__fake__/calls", headers=FAKE_AUTH).json()["total"]
            assert after == calls + 1  # the query reached Modyo

            held.close()  # the flood ends: the internal listener serves again

            def metrics_served() -> bool:
                try:
                    metrics = httpx.get(f"http://127.0.0.1:{internal}/metrics", timeout=10)
                except httpx.HTTPError:
                    return False
                return metrics.status_code == 200

            wait_until(metrics_served, "the internal listener serving after the flood")
            bridge.terminate()
            output = bridge.communicate(timeout=20)[0]
    assert "Too many open files" not in output and "Traceback" not in output, output
