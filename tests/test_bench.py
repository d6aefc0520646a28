"""The benchmark's own guarantees (``python -m bench``, docs/performance.md): a ceiling that
shares no code with the bridge, windows that make the same work on any machine, phases that
check the world they measure and fail in one line, and the CI step's judgement against the
committed baseline. Fast: loopback servers in this process, no benchmark run."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from bench import ceiling, cpu, journal_ab, load, procs, rounds, shares
from bench.checks import PhaseError
from bench.rig import OPS, QUICK, SCIM_TOKEN, Bench
from bench.runner import run_guarded, scan_path
from bridge.edge.app import create_app
from bridge.modyo.fake import FakeModyo, FakeModyoApp, FaultyModyo, mock_transport
from tests.harness import MODYO_TOKEN, MODYO_URL, app_client, make_settings, quiet_readiness
from tests.lookups import counted_lookups
from tests.servers import uvicorn_serving

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------- the ceiling


def test_the_ceiling_imports_nothing_from_the_bridge() -> None:
    """A cost added to the bridge's shared code (its HTTP client, say) must not slow the
    ceiling too, or bridge ÷ ceiling cannot show it."""
    tree = ast.parse((ROOT / "bench" / "ceiling.py").read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert imported and not [name for name in imported if name and name.startswith("bridge")]


@pytest.fixture
async def modyo_port(fake: FakeModyo) -> AsyncIterator[int]:
    async with uvicorn_serving(FakeModyoApp(FaultyModyo(fake))) as port:
        yield port


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_the_ceiling_reads_no_environment_and_no_file_per_request(
    transport: str, fake: FakeModyo, modyo_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ceiling's own client is configured once: a call to Modyo costs no look-up of the
    environment, no file opened (``~/.netrc``) and no job for the thread pool."""
    [member] = fake.seed_members(1)
    path = f"/scim/Users/{fake.client_id('user', member)}"
    upstream = ceiling.Upstream(f"http://127.0.0.1:{modyo_port}", MODYO_TOKEN, transport)
    async with app_client(
        ceiling.create_ceiling(upstream), token=None, base_url="http://ceiling.test"
    ) as client:
        assert (await client.get(path)).status_code == 200  # connections and imports warm
        with counted_lookups(monkeypatch) as lookups:
            for _ in range(50):
                assert (await client.get(path)).status_code == 200
    assert fake.calls == {"GET /team_members/:id": 51}
    assert lookups.counts() == (0, 0, [])


# ---------------------------------------------------------------------- the load generator


class _Recording:
    """A trivial server that keeps every request's method, path and body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.requests.append((scope["method"], scope["path"], body))
        headers = [(b"content-type", b"application/scim+json"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})


async def test_a_counted_window_answers_its_count_whatever_the_speed() -> None:
    """``requests``: the window ends after that many answers (not after some seconds), and
    the CPU per request divides by every answer the server gave."""
    server = _Recording()
    async with uvicorn_serving(server) as port:
        result = await load.run(
            {
                "base": f"http://127.0.0.1:{port}",
                "op": "layer_get",
                "data": {},
                "concurrency": 4,
                "requests": 60,
                "warmup_requests": 20,
                "warmup": 0,  # a timed window would last 30 s and answer thousands
                "duration": 30,
                "timeout": 120,  # the hang guard: the window fails after it
            }
        )
    assert 60 <= result["requests"] <= 60 + 4
    assert result["requests_with_warmup"] == len(server.requests) >= 80
    assert not result["exhausted"] and not result["errors"]


async def test_member_adds_each_add_a_new_member_and_a_used_up_pool_is_reported() -> None:
    """``add_member`` adds each pool user to each group once, never the same pair twice;
    a window that wants more is reported ``exhausted`` (the runner then fails the phase)."""
    server = _Recording()
    groups = [{"id": f"g{n}", "displayName": f"G{n}"} for n in range(2)]
    pool = [{"id": f"u{n}", "userName": f"u{n}"} for n in range(3)]
    async with uvicorn_serving(server) as port:
        result = await load.run(
            {
                "base": f"http://127.0.0.1:{port}",
                "op": "add_member",
                "data": {"groups": groups, "member_pool": pool},
                "concurrency": 2,
                "requests": 100,
                "warmup_requests": 0,
                "timeout": 120,
            }
        )
    pairs = [
        (path, json.loads(body)["Operations"][0]["value"][0]["value"])
        for _, path, body in server.requests
    ]
    assert sorted(pairs) == sorted((f"/Groups/g{g}", f"u{u}") for g in range(2) for u in range(3))
    assert result["exhausted"]


# ---------------------------------------------------------------------- phases


async def test_the_scan_refuses_a_world_other_than_the_seeded_one(fake: FakeModyo) -> None:
    """The scan needs exactly the seeded users (more would exceed ``scim.max_filter_scan``
    on a machine fast enough to create them first): it names the phase, what it expected
    and what it saw, before measuring anything."""
    fake.seed_members(7)  # any other number than the seeded one
    settings = make_settings(scim={"tokens": {"entra": SCIM_TOKEN}})
    modyo = FaultyModyo(fake)
    app = create_app(
        settings,
        modyo_transport=mock_transport(modyo, MODYO_URL),
        readiness=quiet_readiness(settings),
    )
    bench = Bench(QUICK, Path("unused"))
    async with uvicorn_serving(app) as port:
        bench.bridge_port = port
        with pytest.raises(PhaseError) as raised:
            await asyncio.to_thread(scan_path, bench)
    assert str(raised.value) == (
        "phase scan: expected exactly the 6,000 seeded users in Modyo (the scan runs before "
        "anything creates users); saw 200, totalResults 7"
    )
    assert not [call for call in fake.calls if call != "GET /team_members"]


def test_a_failing_phase_prints_one_line_and_keeps_the_logs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def body(bench: Bench) -> dict[str, Any]:
        bench.phase = "throughput"
        raise PhaseError("throughput", "get_user on bridge: no error answers", "3 of 900")

    assert run_guarded(QUICK, "rest", body) is None
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line]
    assert lines[0] == (
        "bench failed: phase throughput: expected get_user on bridge: no error answers; "
        "saw 3 of 900"
    )
    logs = Path(lines[1].split("process logs: ")[1])
    assert "Traceback" not in err and logs.is_dir()
    logs.rmdir()


# ---------------------------------------------------------------------- the CI step


def _figures(**relative: float) -> dict[str, Any]:
    return {"ops": {op: {"relative_cpu": value, "cpu_us": 0.0} for op, value in relative.items()}}


def test_the_ci_step_fails_an_op_more_than_20_percent_over_its_baseline() -> None:
    baseline = _figures(get_user=10.0, create_user=20.0)
    figures = _figures(get_user=12.1, create_user=23.9, patch_user=99.0)
    assert cpu.changes(figures, baseline) == pytest.approx(
        {"get_user": 0.21, "create_user": 0.195, "patch_user": None}
    )
    assert cpu.over_tolerance(figures, baseline) == ["get_user"]
    assert cpu.over_tolerance(_figures(get_user=8.0), baseline) == []
    other_upstream = {**_figures(get_user=99.0), "modyo_api": "scim"}  # not judged by REST's
    assert cpu.changes(other_upstream, baseline) == {"get_user": None}


def test_the_committed_baseline_judges_every_op() -> None:
    baseline = cpu.load_baseline()
    assert baseline is not None
    assert set(baseline["ops"]) == set(OPS)
    assert all(row["relative_cpu"] > 1 for row in baseline["ops"].values())
    assert {"recorded", "commit", "bridge_tree", "machine", "trivial_cpu_us"} <= set(baseline)


# ---------------------------------------------------------------------- profiles


def _stack(*files: str) -> list[str]:
    return [f"f{n} ({file}:1)" for n, file in enumerate(files)]


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        (_stack("uvicorn/server.py", "bridge/edge/observe.py", "logging/__init__.py",
                "json/encoder.py"),
         "access log (logging)"),
        (_stack("bridge/edge/observe.py", "uuid.py", "<frozen os>"), "uuid request ids"),
        (_stack("httpx/_client.py", "aiohttp/http_writer.py", "re/__init__.py"), "aiohttp writer"),
        (_stack("bridge/edge/observe.py", "bridge/scim/users.py", "enum.py"), "bridge SCIM logic"),
        (_stack("bridge/edge/observe.py", "asyncio/timeouts.py"), "middleware stack"),
        (_stack("bridge/scim/users.py", "scim2_models/base.py"), "pydantic / scim2-models"),
        (_stack("asyncio/runners.py"), "event loop"),
        (_stack("somewhere/else.py"), "other"),
    ],
)  # fmt: skip
def test_a_profile_sample_is_counted_to_what_it_serves(stack: list[str], expected: str) -> None:
    assert shares.category(stack) == expected


def test_the_app_s_cpu_per_write_is_measured_with_the_cache_on_and_off() -> None:
    """``python -m bench.app_cpu`` (a process of its own: it sets the garbage collector as
    ``serve`` does); a request answered other than 201/200 would stop it."""
    shown = subprocess.run(
        [sys.executable, "-m", "bench.app_cpu", "--requests", "5", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    figures = {
        name: float(cpu)
        for name, cpu in re.findall(
            r"^(\w+ idempotency o\w+) +([\d.]+) µs/request$", shown.stdout, re.M
        )
    }
    assert sorted(figures) == [
        "create idempotency off",
        "create idempotency on",
        "patch idempotency off",
        "patch idempotency on",
    ]
    assert all(cpu > 0 for cpu in figures.values())


class Recorded:
    """A Bench whose windows are recorded, not run: each result says which it was."""

    def __init__(self, setups: list[str]) -> None:
        self.by_target: dict[str, Any] = {setup: setup for setup in setups}
        self.bridge_port = 0
        self.windows: list[tuple[str, str]] = []

    def measure(self, target: str, op: str, data: dict[str, Any]) -> dict[str, Any]:
        setup = self.by_target[target]
        self.windows.append((op, setup))
        return {"rps": float(len(self.windows)), "port": self.bridge_port}


def test_rounds_alternate_the_setups_and_give_medians_and_spreads() -> None:
    """bench.journal_ab and bench.stores measure their setups so (bench/rounds.py)."""
    ports = {"a": 1, "b": 2, "c": 3}
    bench = Recorded(list(ports))
    shown: list[tuple[int, str, str]] = []

    def show(number: int, op: str, setup: str, result: dict[str, Any]) -> None:
        shown.append((number, op, setup))

    runs = rounds.alternate(bench, ports, ("get", "put"), {}, 3, show)  # type: ignore[arg-type]
    forward, backward = ["a", "b", "c"], ["c", "b", "a"]
    expected = [(op, s) for order in (forward, backward, forward) for op in ("get", "put")
                for s in order]  # fmt: skip
    assert bench.windows == expected == [(op, setup) for _, op, setup in shown]
    assert all(r["port"] == ports[s] for by in runs.values() for s, rs in by.items() for r in rs)
    assert [r["rps"] for r in runs["put"]["a"]] == [4.0, 12.0, 16.0]
    row = rounds.medians(runs["put"]["a"], ("rps", "cpu_us_per_request"))
    assert row == {"rps": 12.0, "rps_range": [4.0, 16.0], "cpu_us_per_request": 0.0,
                   "cpu_us_per_request_range": [0.0, 0.0]}  # fmt: skip


def test_the_journal_s_cpu_is_split_into_the_event_loop_and_the_other_threads() -> None:
    """bench.journal_ab: per round, on minus off, of the process's CPU and of its main
    thread's; the other threads' share (the journal's writer) is what is left."""

    def window(cpu: float, loop: float) -> dict[str, Any]:
        return {"rps": 100.0, "p50_ms": 1.0, "p99_ms": 2.0, "cpu_us_per_request": cpu,
                "loop_cpu_us_per_request": loop}  # fmt: skip

    off = [window(800, 780), window(820, 800), window(810, 790)]
    on = [window(900, 860), window(930, 880), window(905, 870)]
    runs = {"create_user": {setup: off for setup in ("memory, journal off", "Redis, journal off")}
            | {setup: on for setup in ("memory, journal on", "Redis, journal on")}}  # fmt: skip
    cost = journal_ab.summarise(runs)["cost"]["create_user|memory"]
    assert cost["cpu_added_us"] == 100  # medians of 100, 110, 95
    assert cost["loop_cpu_added_us"] == 80  # of 80, 80, 80
    assert cost["threads_cpu_added_us"] == 20  # of 20, 30, 15


def test_the_main_thread_s_cpu_is_read_apart_from_the_process_s() -> None:
    """bench.procs: the event loop's thread alone, from the kernel's per-thread count."""

    class Own(procs.Process):
        def __init__(self) -> None:  # this process, not one started
            self.popen = type("P", (), {"pid": os.getpid()})()

    own = Own()
    loop = own.main_thread_cpu_seconds()
    assert loop is not None and 0 < loop <= own.cpu_seconds()
