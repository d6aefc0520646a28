"""Processes of the CLI for tests: ``python -m bridge ARGS`` started on free 127.0.0.1 ports,
waited for until it answers (a process that exits first fails the test at once, with its
output), and always stopped; the environment without the runner's ``BRIDGE_*`` variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests import entra
from tests.servers import free_port
from tests.waits import HANG_GUARD_SECONDS, wait_until

START_GUARD_SECONDS = 120.0
"""A process's start (imports, under coverage, several at once on a busy machine)."""

SCIM_TOKEN = "cli-test-token-0123456789-abcdefghij"
FAKE_TOKEN = "cli-fake-modyo-token"
FAKE_AUTH = {"Authorization": f"Bearer {FAKE_TOKEN}"}  # its API and its control plane


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the runner's ``BRIDGE_*`` variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    return env | extra


@contextmanager
def running(
    args: list[str], ready_url: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    """``python -m bridge ARGS``, once ``ready_url`` answers; stopped, and its pipe closed, on
    exit."""
    with subprocess.Popen(
        [sys.executable, "-m", "bridge", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or clean_env(),
        cwd=cwd,
    ) as process:
        try:
            wait_until_answering(process, ready_url, args)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=HANG_GUARD_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_answering(process: subprocess.Popen[str], url: str, args: list[str]) -> None:
    """Poll ``url`` until the server answers; a server that exits first (a bad port, a crash)
    fails the test at once with its output, one that never answers when the guard runs out."""

    def answering_or_exited() -> bool:
        try:
            httpx.get(url, timeout=1, trust_env=False)
            return True
        except httpx.HTTPError:
            return process.poll() is not None

    wait_until(answering_or_exited, f"{args} answering {url}", START_GUARD_SECONDS)
    if process.poll() is not None:
        raise AssertionError(f"{args} did not start:\n{process.communicate()[0]}")


@contextmanager
def fake_modyo(*extra: str) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(["fake-modyo", "--port", str(port), "--token", FAKE_TOKEN, *extra], f"{url}/"):
        yield url


def serve_env(modyo_url: str, token: str = FAKE_TOKEN, port: int = 8000) -> dict[str, str]:
    return clean_env(
        BRIDGE_SCIM__TOKENS=json.dumps({"cli": SCIM_TOKEN}),
        BRIDGE_MODYO__BASE_URL=modyo_url,
        BRIDGE_MODYO__TOKEN=token,
        BRIDGE_SERVER__PORT=str(port),
        BRIDGE_RETRY__MAX_ATTEMPTS="2",
    )


def entra_lifecycle(base: str) -> None:
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


def healthcheck(pid: int, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "healthcheck", "--pid", str(pid)],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
