"""A hostile network against the real ``scim-bridge serve``, over real sockets on loopback, in
front of ``scim-bridge fake-modyo``: what anyone on the internet can send the Tenant URL
(docs/operator/security.md). Each test measures what the attack costs the bridge in memory
(the server process's resident set, ``VmRSS`` of ``/proc/PID/status``), in ``/metrics`` and in
Modyo calls (the fake's counters), never in time; counts are bounded so the suite stays a few
seconds of CI. The same limits in process: tests/test_limits.py, tests/test_edge_hardening.py.

Bounds stated here (the figures the review measured before, in parentheses):

- 1,000 unique 4 KB methods: ``/metrics`` grows by less than 16 KB and the process by less
  than :data:`RSS_BOUND_MB` (5,000 of them grew ``/metrics`` to 367 MB, the process by 288 MB);
- 300 unauthenticated POSTs declaring 1 MiB each: every one 401 without its body, the process
  grows by less than :data:`RSS_BOUND_MB` (150 of them: 408 after 10 s, +188 MB);
- 2,000 failed authentications from rotating addresses: the throttle's table stays at its
  ``scim.auth_throttle_clients`` (100 here);
- a 5,000-term filter, a 45,000-member PATCH, ids such as ``..%2F..%2Fprofile``: refused with
  no Modyo call, in both ``modyo.api`` modes (13 s of event loop; 450 and 17,845 calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import entra
from tests.replicas import (
    HOST,
    MODYO_TOKEN,
    SCIM_TOKEN,
    FakeModyoProcess,
    Replica,
    running,
)
from tests.waits import HANG_GUARD_SECONDS, eventually

RSS_BOUND_MB = 24.0
"""What one bounded attack may add to the bridge's resident memory (interpreter arenas and
coverage's own data included)."""
MIB = 1_048_576
BUFFER = 4 * MIB
THROTTLE_LIMIT = 10
THROTTLE_TABLE = 100
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}


class ScimFake(FakeModyoProcess):
    """``scim-bridge fake-modyo --api scim``: Modyo's own SCIM server."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.args += ["--api", "scim"]
        self.log_path = directory / "fake-modyo-scim.log"


_FAKE_AUTH = {"Authorization": f"Bearer {MODYO_TOKEN}"}  # the fake's control plane takes it


@dataclass
class Rig:
    fake: FakeModyoProcess
    bridge: Replica

    @property
    def port(self) -> int:
        return self.bridge.port

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.bridge.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def metrics(self) -> str:
        return httpx.get(self.bridge.metrics_url, timeout=HANG_GUARD_SECONDS).text

    def sample(self, name: str, **labels: str) -> float:
        total = 0.0
        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def modyo_calls(self) -> int:
        """Calls the SCIM requests made (the readiness probe's token checks aside)."""
        answer = httpx.get(
            f"{self.fake.url}/__fake__/calls", headers=_FAKE_AUTH, timeout=HANG_GUARD_SECONDS
        )
        answer.raise_for_status()
        calls: dict[str, int] = answer.json()["calls"]
        return sum(count for route, count in calls.items() if "profile" not in route)

    def reset_calls(self) -> None:
        httpx.post(
            f"{self.fake.url}/__fake__/reset-calls", headers=_FAKE_AUTH, timeout=HANG_GUARD_SECONDS
        ).raise_for_status()


class Rigs:
    """The bridges of this module, one per ``modyo.api`` mode, each started on first use and
    stopped when the module ends."""

    def __init__(self, directory: Path, stack: contextlib.ExitStack) -> None:
        self.directory, self.stack = directory, stack
        self.started: dict[str, Rig] = {}

    def get(self, api: str) -> Rig:
        if api not in self.started:
            fake = FakeModyoProcess(self.directory) if api == "rest" else ScimFake(self.directory)
            bridge = Replica(
                f"bridge-{api}",
                self.directory,
                fake.url,
                {"backend": "memory"},
                settings={
                    "server": {"forwarded_allow_ips": HOST, "max_buffered_body_bytes": BUFFER},
                    "scim": {
                        "auth_failures_per_minute": THROTTLE_LIMIT,
                        "auth_throttle_clients": THROTTLE_TABLE,
                    },
                    "modyo": {"api": api},
                },
            )
            self.stack.enter_context(running(fake, bridge))
            self.started[api] = Rig(fake, bridge)
        return self.started[api]


@pytest.fixture(scope="module")
def rigs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rigs]:
    with contextlib.ExitStack() as stack:
        yield Rigs(tmp_path_factory.mktemp("hostile"), stack)


@pytest.fixture
def rig(rigs: Rigs) -> Rig:
    """The REST-mode bridge, for the attacks on the edge, which no mode changes."""
    return rigs.get("rest")


@pytest.fixture(params=["rest", "scim"])
def either(request: pytest.FixtureRequest, rigs: Rigs) -> Rig:
    """A bridge in each ``modyo.api`` mode, for the limits of the work a request causes."""
    return rigs.get(request.param)


# ---------------------------------------------------------------------- raw HTTP


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=HANG_GUARD_SECONDS)
    sock.settimeout(HANG_GUARD_SECONDS)  # the hang guard: a missing answer fails, never hangs
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer (a Content-Length body): status, headers, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed inside an answer"
        body += chunk
    return int(lines[0].split(" ")[1]), headers, body[:length]


def _head(method: bytes, path: bytes, *headers: bytes) -> bytes:
    return (
        b"\r\n".join([method + b" " + path + b" HTTP/1.1", b"Host: " + HOST.encode(), *headers])
        + b"\r\n\r\n"
    )


def _bearer(token: str = SCIM_TOKEN) -> bytes:
    return b"Authorization: Bearer " + token.encode()


# ---------------------------------------------------------------------- the attacks


def test_unique_hostile_methods_leave_metrics_and_memory_bounded(rig: Rig) -> None:
    """h11 accepts any token as a method, and the method was a metric label."""
    sock = _connect(rig.port)
    for number in range(1_000):
        if number == 10:  # the first few make the OTHER series exist
            rig.metrics()
            before_size, before_rss = len(rig.metrics()), rig.rss_mb()
        method = b"X%04d" % number + b"A" * 4090
        sock.sendall(_head(method, b"/healthz"))
        status, headers, _ = _answer(sock)
        assert status == 405, status
        if headers.get("connection") == "close":
            sock.close()
            sock = _connect(rig.port)
    sock.close()
    text = rig.metrics()
    families = text_string_to_metric_families(text)
    labels = {s.labels["method"] for f in families for s in f.samples if "method" in s.labels}
    assert labels <= METHODS, labels - METHODS
    assert len(text) - before_size < 16_384
    assert rig.rss_mb() - before_rss < RSS_BOUND_MB


def test_unauthenticated_large_posts_get_401_without_their_bodies(rig: Rig) -> None:
    """Each declares a megabyte and sends 64 KiB of it: the answer comes from the head alone
    (it waited for the body, then answered 408 after ``server.body_timeout_seconds``), and
    nothing of the bodies stays in memory. Each comes from its own forwarded address, as a
    botnet's would, so the throttle (tested below) does not answer instead."""
    before = rig.rss_mb()
    sockets = []
    for number in range(300):
        sock = _connect(rig.port)
        forwarded = b"X-Forwarded-For: 198.51.%d.%d" % (number // 250, number % 250)
        head = _head(b"POST", b"/scim/Users", b"Content-Length: %d" % MIB, forwarded,
                     b"Content-Type: application/scim+json")  # fmt: skip
        sock.sendall(head + b"{" + b" " * 65535)
        sockets.append(sock)
    statuses = []
    for sock in sockets:
        status, headers, body = _answer(sock)
        statuses.append(status)
        assert headers["www-authenticate"].startswith("Bearer"), headers
        assert json.loads(body)["status"] == "401"
        sock.close()
    assert statuses == [401] * 300
    assert rig.rss_mb() - before < RSS_BOUND_MB


def test_bodies_held_at_once_are_capped_and_the_next_is_refused_503(rig: Rig) -> None:
    """Authenticated clients that declare a megabyte and send it slowly hold the buffer:
    past ``server.max_buffered_body_bytes`` the next gets 503 with Retry-After before a byte
    of its body is read, and the buffer empties as they go."""
    held = []
    for _ in range(BUFFER // MIB):
        sock = _connect(rig.port)
        sock.sendall(_head(b"POST", b"/scim/Users", _bearer(), b"Content-Length: %d" % MIB))
        held.append(sock)

    async def full() -> bool:
        return rig.sample("scim_bridge_body_buffer_bytes") >= BUFFER

    asyncio.run(eventually(full, "the bodies' buffer full"))
    refused = _connect(rig.port)
    refused.sendall(_head(b"POST", b"/scim/Users", _bearer(), b"Content-Length: %d" % MIB))
    status, headers, body = _answer(refused)
    assert (status, headers["retry-after"]) == (503, "1")
    assert "server.max_buffered_body_bytes" in json.loads(body)["detail"]
    refused.close()
    for sock in held:
        sock.close()

    async def empty() -> bool:
        return rig.sample("scim_bridge_body_buffer_bytes") == 0

    asyncio.run(eventually(empty, "the bodies' buffer emptied"))


def test_failed_authentications_are_throttled_per_address_in_a_bounded_table(rig: Rig) -> None:
    """Past ``scim.auth_failures_per_minute`` failures, an address gets 429 (a minute may
    turn during the run: the count restarts once, so the first 429 comes within twice the
    limit); its valid token still works; 2,000 rotating addresses leave the table at
    ``scim.auth_throttle_clients``."""
    address = b"X-Forwarded-For: 203.0.113.77"
    sock = _connect(rig.port)
    statuses: list[int] = []
    while 429 not in statuses:
        assert len(statuses) <= 2 * THROTTLE_LIMIT + 1, statuses
        sock.sendall(_head(b"GET", b"/scim/Users", _bearer("x" * 40), address))
        status, headers, _ = _answer(sock)
        statuses.append(status)
    assert statuses[:THROTTLE_LIMIT] == [401] * THROTTLE_LIMIT
    assert 1 <= int(headers["retry-after"]) <= 60
    sock.sendall(_head(b"GET", b"/scim/Users", _bearer(), address))
    assert _answer(sock)[0] == 200
    before = rig.rss_mb()
    for number in range(2_000):
        rotating = b"X-Forwarded-For: 10.%d.%d.%d" % (
            number // 65536,
            number // 256 % 256,
            number % 256,
        )
        sock.sendall(_head(b"GET", b"/scim/Users", _bearer("y" * 40), rotating))
        assert _answer(sock)[0] == 401
    sock.close()
    assert rig.sample("scim_bridge_auth_throttle_clients") == THROTTLE_TABLE
    assert rig.rss_mb() - before < RSS_BOUND_MB


def test_headers_are_not_a_side_door(rig: Rig) -> None:
    """Two Authorization headers (the first decided), a Host the bridge would have written
    into Location, a client's request id taken as the bridge's."""
    sock = _connect(rig.port)
    user = json.dumps(entra.user("side.door@contoso.com")).encode()
    rig.reset_calls()
    sock.sendall(_head(b"GET", b"/scim/Users", _bearer(), _bearer("x" * 40)))
    assert _answer(sock)[0] == 400
    evil = _head(b"POST", b"/scim/Users", _bearer(), b"Content-Length: %d" % len(user))
    sock.sendall(evil.replace(b"Host: " + HOST.encode(), b"Host: evil.example") + user)
    status, _, body = _answer(sock)
    assert status == 421 and b"evil.example" not in body
    assert rig.modyo_calls() == 0
    sock.sendall(_head(b"POST", b"/scim/Users", _bearer(), b"X-Request-Id: client-7",
                       b"Content-Length: %d" % len(user)) + user)  # fmt: skip
    status, headers, _ = _answer(sock)
    assert status == 201
    assert headers["location"].startswith(f"http://{HOST}/scim/Users/")
    assert headers["x-request-id"] != "client-7"
    sock.close()


def _patch(rig: Rig, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.patch(
        f"{rig.bridge.scim_url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {SCIM_TOKEN}"},
        timeout=HANG_GUARD_SECONDS,
    )


def test_work_a_request_asks_for_is_refused_before_any_modyo_call(either: Rig) -> None:
    """A 5,000-term filter, a PATCH naming 45,000 members (and one naming 1,001, past
    ``scim.max_patch_members`` alone), ids no Modyo can hold: each refused, no Modyo call."""
    rig, auth = either, {"Authorization": f"Bearer {SCIM_TOKEN}"}
    rig.reset_calls()
    huge = " or ".join(f'name.givenName eq "g{n:06d}"' for n in range(5_000))
    search = httpx.post(
        f"{rig.bridge.scim_url}/Users/.search",
        json={"schemas": [entra.SEARCH_URN], "filter": huge},
        headers=auth,
        timeout=HANG_GUARD_SECONDS,
    )
    assert (search.status_code, search.json()["scimType"]) == (400, "invalidFilter")
    for count in (45_000, 1_001):
        members = entra.members(*(str(100_000 + n) for n in range(count)))
        answer = _patch(rig, "/Groups/1", entra.patch(entra.op("Add", "members", members)))
        assert answer.status_code == 413, answer.text
    for raw in ("..%2F..%2Fprofile", "a%0D%0Ab", "a%3Fb"):
        answer = _patch(rig, f"/Users/{raw}", entra.patch(entra.op("Replace", "active", "False")))
        assert answer.status_code == 404, answer.text
    assert rig.modyo_calls() == 0
