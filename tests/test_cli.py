"""The CLI over real HTTP: ``dev`` and ``fake-modyo`` serve, ``serve`` works against
``fake-modyo``, ``check`` passes against it and fails against a broken one, ``healthcheck``
finds the port a running ``serve`` listens on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bridge.cli import _dev_token
from tests import entra

SCIM_TOKEN = "cli-test-token-0123456789"
FAKE_TOKEN = "cli-fake-modyo-token"


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
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or _env(),
        cwd=cwd,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(ready_url, timeout=1)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read() if process.stdout else ""
                    raise AssertionError(f"{args} did not start:\n{output}") from None
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def _fake_modyo(*extra: str) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with _running(["fake-modyo", "--port", str(port), "--token", FAKE_TOKEN, *extra], f"{url}/"):
        yield url


def _serve_env(modyo_url: str, token: str = FAKE_TOKEN, port: int = 8000) -> dict[str, str]:
    return _env(
        BRIDGE_SCIM__TOKENS=f'["{SCIM_TOKEN}"]',
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


def test_dev_tokens_never_start_with_a_dash() -> None:
    """A pasted token starting with ``-`` would be read as a flag: such draws are redrawn."""
    draws = iter(["-leading-dash-0123456789", "-another-one-0123456789", "Plain_token-0123456789"])
    assert _dev_token(draws.__next__) == "Plain_token-0123456789"
    assert next(draws, None) is None


def test_serve_with_nothing_configured_names_each_required_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "serve"],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[1:] == [
        "  - scim.tokens: required, set it in the config file or BRIDGE_SCIM__TOKENS",
        "  - modyo.base_url: required, set it in the config file or BRIDGE_MODYO__BASE_URL",
        "  - modyo.token: required, set it in the config file or BRIDGE_MODYO__TOKEN",
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


def test_check_passes_against_fake_modyo_including_writes() -> None:
    with _fake_modyo() as modyo_url:
        result = _check(modyo_url, "--write")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout and "all checks passed" in result.stdout
    assert "token accepted (GET /api/admin/profile)" in result.stdout
    assert "write cycle" in result.stdout


def test_check_fails_against_a_modyo_without_hard_delete() -> None:
    with _fake_modyo("--no-delete") as modyo_url:
        result = _check(modyo_url)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if "FAIL" in line]
    assert len(failed) == 1 and "DELETE /team_members/:id" in failed[0] and "405" in failed[0]


def test_check_fails_with_a_rejected_token_and_does_not_print_it() -> None:
    with _fake_modyo() as modyo_url:
        result = _check(modyo_url, token="not-the-right-token")
    assert result.returncode == 1
    assert "token accepted" in result.stdout and "FAIL" in result.stdout and "401" in result.stdout
    assert "not-the-right-token" not in result.stdout + result.stderr


@pytest.mark.parametrize("args", [["--error-rate", "2"], ["--throttle-rate", "-1"]])
def test_fake_modyo_refuses_impossible_fault_rates(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "fake-modyo", *args],
        capture_output=True, text=True, env=_env(), timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "fault options" in result.stderr
