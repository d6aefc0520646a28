"""The CLI over real HTTP: ``dev`` and ``fake-modyo`` serve, ``serve`` works against
``fake-modyo``, ``check`` passes against it and fails against a broken one, ``healthcheck``
finds the port a running ``serve`` listens on."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bridge.config import token_problem
from bridge.run.cli import _dev_token
from tests import entra

SCIM_TOKEN = "cli-test-token-0123456789-abcdefghij"
FAKE_TOKEN = "cli-fake-modyo-token"
FAKE_AUTH = {"Authorization": f"Bearer {FAKE_TOKEN}"}  # its API and its control plane


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    return env | extra


@contextmanager
def _running(
    args: list[str], ready_url: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    """``python -m bridge ARGS``, once ``ready_url`` answers; stopped, and its pipe closed, on
    exit."""
    with subprocess.Popen(
        [sys.executable, "-m", "bridge", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or _env(),
        cwd=cwd,
    ) as process:
        try:
            _wait_until_answering(process, ready_url, args)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_answering(process: subprocess.Popen[str], url: str, args: list[str]) -> None:
    """Poll ``url`` until the server answers; between polls, wait on the process itself, so
    that a server that exits (a bad port, a crash) fails the test at once with its output."""
    for _ in range(200):  # 200 polls of 0.1 s: a server that never answers fails, not hangs
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            pass
        try:
            process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        break
    output = process.communicate()[0] if process.poll() is not None else ""
    raise AssertionError(f"{args} did not start:\n{output}")


@contextmanager
def _fake_modyo(*extra: str) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with _running(["fake-modyo", "--port", str(port), "--token", FAKE_TOKEN, *extra], f"{url}/"):
        yield url


def _serve_env(modyo_url: str, token: str = FAKE_TOKEN, port: int = 8000) -> dict[str, str]:
    return _env(
        BRIDGE_SCIM__TOKENS=json.dumps({"cli": SCIM_TOKEN}),
        BRIDGE_MODYO__BASE_URL=modyo_url,
        BRIDGE_MODYO__TOKEN=token,
        BRIDGE_SERVER__PORT=str(port),
        BRIDGE_RETRY__MAX_ATTEMPTS="2",
    )


def _lifecycle(base: str) -> None:
    """Entra's user lifecycle: query, create, patch, disable, re-enable, delete."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {SCIM_TOKEN}"}) as client:
        query = {"filter": 'userName eq "cli@contoso.com"'}
        assert client.get("/Users", params=query).json()["totalResults"] == 0
        created = client.post("/Users", json=entra.user("cli@contoso.com"))
        assert created.status_code == 201, created.text
        url = f"/Users/{created.json()['id']}"
        patched = client.patch(url, json=entra.patch(entra.op("Replace", "name.givenName", "Cli")))
        assert patched.json()["name"]["givenName"] == "Cli"
        assert (
            client.patch(url, json=entra.patch(entra.op("Replace", "active", "False"))).json()[
                "active"
            ]
            is False
        )
        assert (
            client.patch(url, json=entra.patch(entra.op("Replace", "active", "True"))).json()[
                "active"
            ]
            is True
        )
        assert client.get("/Users", params=query).json()["totalResults"] == 1
        assert client.delete(url).status_code == 204
        assert client.get(url).status_code == 404


def test_dev_serves_scim_with_the_fake_modyo_inside() -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}/scim"
    with _running(
        ["dev", "--port", str(port), "--token", SCIM_TOKEN], f"http://127.0.0.1:{port}/healthz"
    ) as process:
        _lifecycle(base)
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert f"Tenant URL:   {base}" in output
    assert f"Secret Token: {SCIM_TOKEN}" in output


def test_dev_generates_a_token_when_none_is_given() -> None:
    port = _free_port()
    with _running(["dev", "--port", str(port)], f"http://127.0.0.1:{port}/healthz") as process:
        health = _healthcheck(process.pid, _env())
        process.terminate()
        output = process.communicate(timeout=10)[0]
    token = next(line.split(": ", 1)[1] for line in output.splitlines() if "Secret Token:" in line)
    assert len(token) >= 16 and not token.startswith("-")
    assert health.stdout == f"healthy: GET http://127.0.0.1:{port}/healthz answered 200\n"


def test_serve_against_fake_modyo_over_real_http() -> None:
    with _fake_modyo() as modyo_url:
        port = _free_port()
        with _running(
            ["serve"], f"http://127.0.0.1:{port}/healthz", env=_serve_env(modyo_url, port=port)
        ):
            _lifecycle(f"http://127.0.0.1:{port}/scim")


def test_dev_tokens_never_start_with_a_dash_and_meet_the_token_rules() -> None:
    """A pasted token starting with ``-`` would be read as a flag, one ``scim.tokens`` refuses
    would not start: such draws are redrawn."""
    draws = iter(
        [
            "-leading-dash-0123456789-abcdefghijkl",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "Plain_token-0123456789-abcdefghijklmnopq",
        ]
    )
    assert _dev_token(draws.__next__) == "Plain_token-0123456789-abcdefghijklmnopq"
    assert next(draws, None) is None
    assert token_problem(_dev_token()) is None


def test_serve_with_nothing_configured_names_each_required_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "serve"],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[1:] == [
        "  - scim.tokens: required, set it in the config file or BRIDGE_SCIM__TOKENS "
        "(or scim.tokens_file: a file holding it)",
        "  - modyo.base_url: required, set it in the config file or BRIDGE_MODYO__BASE_URL",
        "  - modyo.token: required, set it in the config file or BRIDGE_MODYO__TOKEN "
        "(or modyo.token_file: a file holding it)",
    ]


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_serve_refuses_a_port_out_of_range_in_one_line(port: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "serve", "--port", port],
        capture_output=True, text=True, env=_env(), timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"scim-bridge serve: error: argument --port: {port!r} is not a TCP port (1..65535)"
        " (see scim-bridge serve --help)"
    ]


NEVER_CALLED_MODYO = "http://127.0.0.1:9"  # /healthz never calls Modyo


def _healthcheck(pid: int, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "healthcheck", "--pid", str(pid)],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("source", ["toml", "environment", "flags"])
def test_healthcheck_follows_the_address_serve_listens_on(tmp_path: Path, source: str) -> None:
    """Flags beat ``BRIDGE_SERVER__*``, which beat the TOML file: for ``serve`` and for the
    ``healthcheck`` of the container image, which reads serve's command line."""
    toml_port, env_port, flag_port = _free_port(), _free_port(), _free_port()
    (tmp_path / "bridge.toml").write_text(
        f'[server]\nhost = "{"localhost" if source == "flags" else "127.0.0.1"}"\n'
        f"port = {toml_port}\n"
    )
    env = _serve_env(NEVER_CALLED_MODYO)
    del env["BRIDGE_SERVER__PORT"]
    args = ["serve", "--config", "bridge.toml"]  # relative: read from serve's directory
    port = toml_port
    if source != "toml":
        env["BRIDGE_SERVER__PORT"], port = str(env_port), env_port
    if source == "flags":
        args += ["--host", "127.0.0.1", "--port", str(flag_port)]
        port = flag_port
    url = f"http://127.0.0.1:{port}/healthz"
    with _running(args, url, env=env, cwd=tmp_path) as process:
        result = _healthcheck(process.pid, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"healthy: GET {url} answered 200\n"


def test_healthcheck_is_unhealthy_when_nothing_answers_or_no_server_runs() -> None:
    port = _free_port()
    env = _serve_env(NEVER_CALLED_MODYO, port=port)
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", "serve", "--port", str(port)],
        stdin=subprocess.PIPE,
    ) as silent:  # looks like serve, listens nowhere
        result = _healthcheck(silent.pid, env)
        assert silent.stdin is not None
        silent.stdin.close()
    assert result.returncode == 1
    assert result.stderr == f"unhealthy: GET http://127.0.0.1:{port}/healthz: ConnectError\n"
    result = _healthcheck(os.getpid(), env)
    assert result.returncode == 1
    assert result.stderr == f"unhealthy: process {os.getpid()} is not scim-bridge serve or dev\n"


def test_serve_with_a_bad_config_prints_one_line_per_problem(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[scim]\ntokens = ["tiny"]\n[modyo]\nbase_url = "nope"\n')
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "serve", "--config", str(config)],
        capture_output=True, text=True, env=_env(), timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert [line.split(":")[0] for line in lines] == [
        "  - scim.tokens",
        "  - modyo.base_url",
        "  - modyo.token",
    ]
    assert "tiny" not in result.stderr


def _check(modyo_url: str, *args: str, token: str = FAKE_TOKEN) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "check", *args],
        capture_output=True, text=True, env=_serve_env(modyo_url, token), timeout=60, check=False,
    )  # fmt: skip


def _rows(stdout: str) -> dict[str, str]:
    """The result of each check line (``ok``, ``warn``, ``skip``, ``FAIL``), by check name."""
    rows = {}
    for line in stdout.splitlines():
        for kind in ("ok", "warn", "skip", "FAIL"):
            name, sep, _ = line.partition(f"  {kind}  ")
            if sep and name.strip():
                rows[name.strip()] = kind
                break
    return rows


WRITE_PROBES = [
    "create team member (POST /team_members)",
    "duplicate team member refused as taken (POST /team_members)",
    "update team member (PUT /team_members/:id)",
    "create group (POST /groups)",
    "add group member (POST /groups/:id/team_members)",
    "remove group member (DELETE /groups/:id/team_members/:id)",
    "delete group (DELETE /groups/:id)",
    "hard delete team member (DELETE /team_members/:id)",
]


def test_check_is_read_only_by_default_and_needs_only_the_modyo_section() -> None:
    with _fake_modyo() as modyo_url:
        env = {k: v for k, v in _serve_env(modyo_url).items() if k != "BRIDGE_SCIM__TOKENS"}
        result = subprocess.run(
            [sys.executable, "-m", "bridge", "check"],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        calls = httpx.get(f"{modyo_url}/__fake__/calls", headers=FAKE_AUTH).json()["calls"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls and all(name.startswith("GET ") for name in calls), calls  # nothing written
    rows = _rows(result.stdout)
    assert rows["token accepted (GET /api/admin/profile)"] == "ok"
    assert rows["team member by id (GET /team_members/:id)"] == "skip"  # no member to read
    assert all(rows[name] == "skip" for name in WRITE_PROBES)
    assert result.stdout.count("only --write proves it") == len(WRITE_PROBES)


def test_check_write_proves_every_write_and_leaves_nothing_behind() -> None:
    with _fake_modyo() as modyo_url:
        result = _check(modyo_url, "--write")
        auth = {"Authorization": f"Bearer {FAKE_TOKEN}"}
        members = httpx.get(f"{modyo_url}/api/admin/team_members", headers=auth).json()
        groups = httpx.get(f"{modyo_url}/api/admin/groups", headers=auth).json()
    assert result.returncode == 0, result.stdout + result.stderr
    rows = _rows(result.stdout)
    assert all(rows[name] == "ok" for name in WRITE_PROBES), rows
    assert "FAIL" not in result.stdout and "left behind" not in result.stdout
    assert members["meta"]["total_entries"] == 0 and groups["meta"]["total_entries"] == 0


def test_check_without_hard_delete_warns_and_deactivates_what_it_cannot_delete() -> None:
    with _fake_modyo("--no-delete") as modyo_url:
        result = _check(modyo_url, "--write")
        auth = {"Authorization": f"Bearer {FAKE_TOKEN}"}
        members = httpx.get(f"{modyo_url}/api/admin/team_members", headers=auth).json()
        groups = httpx.get(f"{modyo_url}/api/admin/groups", headers=auth).json()
    assert result.returncode == 0, result.stdout  # provisioning works without hard delete
    rows = _rows(result.stdout)
    assert rows["hard delete team member (DELETE /team_members/:id)"] == "warn"
    assert "remove the Delete action" in result.stdout
    [member] = members["team_members"]
    assert member["username"].startswith("scim-bridge-check-leftover-") and not member["active"]
    assert f"left behind: team member {member['id']}, deactivated and renamed" in result.stdout
    assert groups["meta"]["total_entries"] == 0


def test_check_fails_with_a_rejected_token_and_does_not_print_it() -> None:
    with _fake_modyo() as modyo_url:
        result = _check(modyo_url, token="not-the-right-token")
    assert result.returncode == 1
    rows = _rows(result.stdout)
    assert rows.pop("token accepted (GET /api/admin/profile)") == "FAIL"
    assert set(rows.values()) == {"skip"}  # nothing else can be known without a valid token
    assert "401" in result.stdout and "scim-bridge check --explain" in result.stdout
    assert "not-the-right-token" not in result.stdout + result.stderr


def test_check_explain_lists_every_probe() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "--explain"],
        capture_output=True, text=True, env=_env(), timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0
    assert all(f"{name} [--write]" in result.stdout for name in WRITE_PROBES)
    assert "docs/" not in result.stdout


@pytest.mark.parametrize("args", [["--error-rate", "2"], ["--throttle-rate", "-1"]])
def test_fake_modyo_refuses_impossible_fault_rates(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "fake-modyo", *args],
        capture_output=True, text=True, env=_env(), timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "fault options" in result.stderr


def test_fake_modyo_draws_its_token_per_start_and_its_control_plane_needs_it() -> None:
    """No public default token: each start draws one, prints it once, and both the fake's
    API and its control plane (``/__fake__/``) refuse anything else."""
    drawn = []
    for _ in range(2):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with _running(["fake-modyo", "--port", str(port)], f"{url}/") as process:
            assert process.stdout is not None
            banner = process.stdout.readline()
            token = banner.rsplit("/__fake__/: ", 1)[1].split(")", 1)[0]
            drawn.append(token)
            for refused in (None, "fake-modyo-token", FAKE_TOKEN):
                headers = {"Authorization": f"Bearer {refused}"} if refused else {}
                for path in ("/__fake__/calls", "/api/admin/profile"):
                    assert httpx.get(f"{url}{path}", headers=headers).status_code == 401, path
            auth = {"Authorization": f"Bearer {token}"}
            assert httpx.get(f"{url}/__fake__/calls", headers=auth).status_code == 200
            assert httpx.get(f"{url}/api/admin/profile", headers=auth).status_code == 200
    assert len(set(drawn)) == 2 and all(len(token) >= 16 for token in drawn)


def test_fake_modyo_listens_beyond_loopback_only_when_told() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "fake-modyo", "--host", "0.0.0.0",
         "--port", str(_free_port())],
        capture_output=True, text=True, env=_env(), timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--allow-remote" in result.stderr and result.stdout == ""


def test_fake_modyo_stops_on_sigterm_with_a_hanging_request_in_flight() -> None:
    """Orchestrators stop with SIGTERM; uvicorn's graceful shutdown waits for requests in
    flight, so a hang (``--hang-rate``) is answered 503 and the process exits."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["fake-modyo", "--port", str(port), "--token", FAKE_TOKEN, "--hang-rate", "1"]
    with _running(args, f"{url}/__fake__/calls") as process, ThreadPoolExecutor(1) as pool:
        auth = {"Authorization": f"Bearer {FAKE_TOKEN}"}
        pending = pool.submit(httpx.get, f"{url}/api/admin/profile", headers=auth, timeout=60)
        for _ in range(100_000):  # the fake says when the request is hanging
            if httpx.get(f"{url}/__fake__/calls", headers=auth).json()["injected"].get("hang"):
                break
        else:
            raise AssertionError("the request never reached the fake")
        process.send_signal(signal.SIGTERM)
        answer = pending.result(timeout=60)
        output = process.communicate(timeout=60)[0]
    assert answer.status_code == 503
    # uvicorn re-raises the signal once it has shut down: the conventional SIGTERM exit
    assert process.returncode == -signal.SIGTERM
    assert output.splitlines()[1:] == []  # nothing logged after the start-up line: no error


def test_serve_log_level_debug_logs_each_modyo_call_under_the_request_id() -> None:
    with _fake_modyo() as modyo_url:
        port = _free_port()
        healthz = f"http://127.0.0.1:{port}/healthz"
        env = _serve_env(modyo_url, port=port)
        with _running(["serve", "--log-level", "debug"], healthz, env=env) as process:
            response = httpx.get(
                f"http://127.0.0.1:{port}/scim/Users",
                headers={"Authorization": f"Bearer {SCIM_TOKEN}", "X-Request-Id": "cli-trace-1"},
            )
            process.terminate()
            output = process.communicate(timeout=10)[0]
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert request_id != "cli-trace-1"  # the bridge's own id, the client's beside it
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == request_id]
    calls = [line for line in mine if line["message"] == "Modyo call"]
    assert [(line["call"], line["status"]) for line in calls] == [("GET /team_members", "200")]
    [access] = [line for line in mine if line["message"] == "request"]
    assert (access["operation"], access["client_request_id"], access["token"]) == (
        "users.query",
        "cli-trace-1",
        "cli",
    )
    assert FAKE_TOKEN not in output and SCIM_TOKEN not in output


def test_serve_takes_the_public_host_from_a_trusted_proxy() -> None:
    """``serve`` as a TLS proxy reaches it (from 127.0.0.1, the default trusted address):
    the Location names the public scheme and host (one of ``server.allowed_hosts``), not
    the bridge's own address."""
    with _fake_modyo() as modyo_url:
        port = _free_port()
        healthz = f"http://127.0.0.1:{port}/healthz"
        env = _serve_env(modyo_url, port=port)
        env["BRIDGE_SERVER__ALLOWED_HOSTS"] = '["scim.bank.example"]'
        with _running(["serve"], healthz, env=env):
            response = httpx.post(
                f"http://127.0.0.1:{port}/scim/Users",
                json=entra.user("proxied@contoso.com"),
                headers={
                    "Authorization": f"Bearer {SCIM_TOKEN}",
                    "X-Forwarded-Proto": "https",
                    "X-Forwarded-Host": "scim.bank.example",
                    "X-Forwarded-For": "203.0.113.9",
                },
            )
    assert response.status_code == 201, response.text
    assert response.headers["location"].startswith("https://scim.bank.example/scim/Users/")
