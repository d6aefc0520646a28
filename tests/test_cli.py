"""The CLI over real HTTP: ``dev`` and ``fake-modyo`` serve, ``serve`` works against
``fake-modyo``, ``check`` passes against it and fails against a broken one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

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
    args: list[str], ready_url: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """``python -m bridge ARGS``, once ``ready_url`` answers; stopped, and its pipe closed, on
    exit."""
    with subprocess.Popen(
        [sys.executable, "-m", "bridge", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or _env(),
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
        process.terminate()
        output = process.communicate(timeout=10)[0]
    token = next(line.split(": ", 1)[1] for line in output.splitlines() if "Secret Token:" in line)
    assert len(token) >= 16


def test_serve_against_fake_modyo_over_real_http() -> None:
    with _fake_modyo() as modyo_url:
        port = _free_port()
        with _running(
            ["serve"], f"http://127.0.0.1:{port}/healthz", env=_serve_env(modyo_url, port=port)
        ):
            _lifecycle(f"http://127.0.0.1:{port}/scim")


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
