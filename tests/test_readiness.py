"""Readiness answers for the process alone; status reports the shared dependencies
(docs/operator/health.md). ``/readyz`` stays 200 while Modyo rejects the token, cannot be
reached or answers through a flaky network; ``/status`` (internal listener) shows each check's
state, since when, its last error in words and its flaps, changed only after
``server.status_consecutive`` probe results in a row; each change is logged once; SCIM
requests meanwhile get the bridge's own 503 with ``Retry-After`` and the reason."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client import REGISTRY

from bridge.config import Settings
from bridge.edge.app import create_app, internal_app
from bridge.edge.readiness import Readiness
from bridge.modyo.fake import FakeModyo, FakeModyoApp, Faults, FaultyModyo, mock_transport
from bridge.run.server import Server, server_config
from tests.harness import (
    MODYO_TOKEN,
    MODYO_URL,
    TOKEN,
    LogOutput,
    app_client,
    asgi_client,
    assert_scim_error,
    make_settings,
    no_rounds,
)
from tests.servers import ResetProxy, free_port, uvicorn_serving
from tests.waits import until

ROOT = "http://bridge.test"
INSIDE = "http://internal.test"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    client: httpx.AsyncClient
    inside: httpx.AsyncClient
    readiness: Readiness
    service: FaultyModyo
    clock: Clock

    async def readyz(self) -> httpx.Response:
        return await self.client.get(f"{ROOT}/readyz", headers={"Authorization": ""})

    async def status(self) -> dict[str, Any]:
        response = await self.inside.get("/status")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        body: dict[str, Any] = response.json()
        return body

    async def modyo(self) -> dict[str, Any]:
        check: dict[str, Any] = (await self.status())["checks"]["modyo"]
        return check

    async def rounds(self, count: int) -> None:
        for _ in range(count):
            await self.readiness.refresh()


def _rig_readiness(clock: Clock, consecutive: int = 1) -> Readiness:
    return Readiness(5.0, 15.0, consecutive=consecutive, schedule=no_rounds, clock=clock)


@pytest.fixture
async def rig(fake: FakeModyo, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    """The app with a readiness whose rounds the test runs (``refresh``) and whose clock it
    moves, and the internal listener's app with its ``/status``."""
    settings = make_settings()
    clock = Clock()
    consecutive = getattr(request, "param", 1)
    readiness = _rig_readiness(clock, consecutive)
    service = FaultyModyo(fake)
    app = create_app(
        settings, modyo_transport=mock_transport(service, MODYO_URL), readiness=readiness
    )
    inside = internal_app(settings, status=readiness.status_endpoint)
    async with (
        LifespanManager(app) as manager,
        asgi_client(manager.app, base_url=f"{ROOT}/scim") as client,
        asgi_client(inside, token=None, base_url=INSIDE) as status,
    ):
        yield Rig(client, status, readiness, service, clock)


def gauges() -> tuple[float | None, float | None]:
    return (
        REGISTRY.get_sample_value("scim_bridge_upstream_up"),
        REGISTRY.get_sample_value("scim_bridge_upstream_token_valid"),
    )


def probes(result: str, check: str = "modyo") -> float:
    labels = {"check": check, "result": result}
    return REGISTRY.get_sample_value("scim_bridge_status_probes_total", labels) or 0.0


def changes(check: str = "modyo") -> float:
    labels = {"check": check}
    return REGISTRY.get_sample_value("scim_bridge_status_changes_total", labels) or 0.0


async def test_starting_until_the_app_has_started_then_ready_before_any_probe(
    fake: FakeModyo,
) -> None:
    readiness = _rig_readiness(Clock())
    app = create_app(
        make_settings(), modyo_transport=mock_transport(FaultyModyo(fake), MODYO_URL),
        readiness=readiness,
    )  # fmt: skip
    assert readiness.reason() == "starting"
    async with app_client(app, token=None, base_url=ROOT) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200 and response.json() == {"status": "ready"}
    assert response.headers["cache-control"] == "no-store"
    assert fake.calls == {}  # readiness waited for no dependency
    assert readiness.state("modyo") == "unknown"


async def test_readyz_never_calls_modyo(rig: Rig) -> None:
    await rig.readiness.refresh()
    for _ in range(5):
        assert (await rig.readyz()).status_code == 200
    assert rig.service.fake.calls == {"GET /profile": 1}  # the one probe, not the requests
    assert (await rig.modyo())["state"] == "ok"
    assert gauges() == (1.0, 1.0)


async def test_a_revoked_token_is_reported_not_gated_and_scim_answers_503_with_the_reason(
    rig: Rig, log_output: LogOutput
) -> None:
    log_output.configure(secrets=[MODYO_TOKEN])
    await rig.readiness.refresh()
    rig.service.fake.token = "revoked-in-modyo"
    await rig.readiness.refresh()
    response = await rig.readyz()
    assert response.status_code == 200 and response.json() == {"status": "ready"}
    modyo = await rig.modyo()
    assert modyo["state"] == "token_rejected" and modyo["flaps"] == 1
    assert "401 or 403" in modyo["last_error"] and modyo["since"] is not None
    assert gauges() == (1.0, 0.0)  # Modyo answers; it refuses the token
    answer = await rig.client.get("/Users")  # what Entra meets meanwhile
    assert_scim_error(answer, 503)
    assert answer.headers["retry-after"] == "60"
    assert "rejected the bridge's API token" in answer.json()["detail"]
    (line,) = [line for line in log_output.lines() if line["logger"] == "bridge.edge.readiness"][1:]
    assert line["level"] == "error" and line["state"] == "token_rejected"
    assert line["check"] == "modyo" and "401 or 403" in line["message"]
    assert MODYO_TOKEN not in log_output.text
    assert MODYO_TOKEN not in str(await rig.status())


async def test_an_unreachable_modyo_is_reported_and_the_probe_is_not_retried(rig: Rig) -> None:
    await rig.readiness.refresh()
    rig.service.configure(Faults(error_rate=1.0))
    await rig.readiness.refresh()
    assert (await rig.readyz()).status_code == 200
    modyo = await rig.modyo()
    assert modyo["state"] == "unreachable" and "no usable answer" in modyo["last_error"]
    assert rig.service.injected["error"] == 1  # one attempt, not the retry policy's five
    up, token_valid = gauges()
    assert (up, token_valid) == (0.0, 1.0)  # the token's last known state is kept
    assert_scim_error(await rig.client.get("/Users"), 503)  # retried, then 503 + Retry-After


async def test_a_throttled_probe_still_counts_as_up(rig: Rig) -> None:
    rig.service.configure(Faults(throttle_rate=1.0))
    await rig.readiness.refresh()
    assert (await rig.modyo())["state"] == "ok"


@pytest.mark.parametrize("rig", [3], indirect=True)
async def test_a_change_needs_consecutive_results_and_is_logged_once_each_way(
    rig: Rig, log_output: LogOutput
) -> None:
    log_output.configure()
    before = probes("unreachable"), changes()
    await rig.rounds(1)
    assert (await rig.modyo())["state"] == "ok"  # the first result: nothing reported before
    rig.service.configure(Faults(error_rate=1.0))
    await rig.rounds(2)
    modyo = await rig.modyo()
    assert modyo["state"] == "ok" and modyo["last_probe"]["result"] == "unreachable"
    assert modyo["streak"] == 2 and modyo["failed_probes"] == 2
    rig.service.configure(Faults())
    await rig.rounds(1)  # an answer between two failures: the run starts again
    rig.service.configure(Faults(error_rate=1.0))
    await rig.rounds(2)
    assert (await rig.modyo())["state"] == "ok"
    await rig.rounds(1)
    modyo = await rig.modyo()
    assert modyo["state"] == "unreachable" and modyo["flaps"] == 1
    rig.service.configure(Faults())
    await rig.rounds(2)
    assert (await rig.modyo())["state"] == "unreachable"
    await rig.rounds(1)
    modyo = await rig.modyo()
    assert modyo["state"] == "ok" and modyo["flaps"] == 2 and modyo["probes"] == 10
    assert (probes("unreachable"), changes()) == (before[0] + 5, before[1] + 2)
    logged = [line for line in log_output.lines() if line["logger"] == "bridge.edge.readiness"]
    assert [(line["level"], line["state"]) for line in logged] == [
        ("info", "ok"),
        ("error", "unreachable"),
        ("info", "ok"),
    ]
    assert logged[-1]["message"] == "modyo ok again after unreachable"
    assert (await rig.readyz()).status_code == 200


async def test_readyz_is_unready_when_probing_stops_when_draining_and_when_a_gate_fails(
    rig: Rig,
) -> None:
    """What readyz does gate on: this process."""
    await rig.readiness.refresh()
    rig.clock.now += 15.0
    assert (await rig.readyz()).status_code == 200
    rig.clock.now += 0.1
    assert (await rig.readyz()).json() == {"status": "unready", "reason": "stale"}
    await rig.readiness.refresh()
    missing: list[str | None] = ["worker_missing"]
    rig.readiness.add_gate("workers", lambda: missing[0])
    response = await rig.readyz()
    assert response.status_code == 503 and response.json()["reason"] == "worker_missing"
    assert (await rig.status())["readiness"] == {"status": "unready", "reason": "worker_missing"}
    missing[0] = None
    assert (await rig.readyz()).status_code == 200
    rig.readiness.drain()
    assert (await rig.readyz()).json() == {"status": "unready", "reason": "draining"}


async def test_one_probe_at_a_time_even_when_modyo_hangs(fake: FakeModyo) -> None:
    """A hanging Modyo: the round ends at its own deadline (the interval), and a refresh
    asked for meanwhile joins it instead of probing again."""
    service = FaultyModyo(fake, Faults(hang_rate=1.0))
    settings = make_settings()
    readiness = Readiness(0.05, 1.0, schedule=no_rounds)
    app = create_app(
        settings, modyo_transport=mock_transport(service, MODYO_URL), readiness=readiness
    )
    async with LifespanManager(app):
        rounds = [asyncio.create_task(readiness.refresh()) for _ in range(3)]
        await asyncio.gather(*rounds)
        assert readiness.state("modyo") == "unreachable"
        assert readiness.reason() is None
    assert service.injected["hang"] == 1 and service.peak_in_flight == 1


async def test_readyz_needs_no_token_and_is_not_under_the_scim_path(rig: Rig) -> None:
    assert (await rig.client.get(f"{ROOT}/readyz")).status_code == 200
    assert (await rig.client.get("/readyz")).status_code == 404  # SCIM paths need the token
    assert (await rig.client.get(f"{ROOT}/status")).status_code == 404  # internal only


async def test_a_probe_in_flight_at_shutdown_is_stopped_without_an_alarm(
    fake: FakeModyo, log_output: LogOutput
) -> None:
    """Shutting down while Modyo hangs: the round stops with the app, and the closing of its
    connection is not logged as Modyo becoming unreachable."""
    log_output.configure()
    service = FaultyModyo(fake, Faults(hang_rate=1.0))
    settings = make_settings()
    readiness = Readiness(5.0, 15.0, schedule=no_rounds)
    app = create_app(
        settings, modyo_transport=mock_transport(service, MODYO_URL), readiness=readiness
    )
    async with LifespanManager(app):
        probing = asyncio.create_task(readiness.refresh())
        await until(lambda: service.injected["hang"])
    assert probing.done()
    assert not [line for line in log_output.lines() if line["level"] in ("error", "warning")]
    assert readiness.state("modyo") == "unknown"  # nothing was concluded from the interruption


# ---------------------------------------------------------------- over real sockets

FAULT_MIX = Faults(error_rate=0.05, throttle_rate=0.05, lost_response_rate=0.05, seed=22)
RESET_SHARE = 0.02
ROUNDS = 100
ROUNDS_GUARD_SECONDS = 120.0
"""A hang guard only: the rounds run every few hundredths of a second."""


def _settings(modyo_url: str, token: str = MODYO_TOKEN) -> Settings:
    return make_settings(
        modyo={"base_url": modyo_url, "token": token},
        server={
            "readiness_interval_seconds": 0.1,
            "readiness_max_age_seconds": 3600,  # a busy host's pause is not a stuck prober
            "status_consecutive": 3,
        },
    )


@dataclass
class Replica:
    """One bridge of the fault-mix test: its readiness, each round's raw Modyo probe result,
    and what its /readyz answered after each round."""

    readiness: Readiness
    results: list[str] = field(default_factory=list)
    readyz: list[int] = field(default_factory=list)
    port: int = 0

    @property
    def old_flips(self) -> int:
        """How often a readiness following the last probe (as before) would have left 200."""
        previous = ["ok", *self.results]
        return sum(a == "ok" and b != "ok" for a, b in zip(previous, self.results, strict=False))


async def test_under_the_fault_mix_two_replicas_never_leave_200_while_status_records_faults(
    fake: FakeModyo,
) -> None:
    """Two bridges, their background probing tasks and one fake Modyo, over real TCP through
    a proxy resetting 2% of the connections, Modyo answering 5% 5xx, 5% 429 and losing 5% of
    its answers: each /readyz, read after every round, is 200 every time, so the replicas
    never leave the load balancer, together or alone; /status and the metrics count the
    failed probes. A readiness that followed the last probe, as before, would have left 200
    once per failing run (counted from the probes' own results, in the same run)."""
    service = FaultyModyo(fake, FAULT_MIX)
    before = probes("ok"), sum(probes(r) for r in ("unreachable", "token_rejected"))
    round_done = asyncio.Event()
    async with uvicorn_serving(FakeModyoApp(service)) as modyo_port:
        proxy = ResetProxy(modyo_port)
        proxy.reset_share(RESET_SHARE, seed=22, methods=frozenset({"GET"}))
        async with proxy.running() as proxy_port, contextlib.AsyncExitStack() as stack:
            settings = _settings(f"http://127.0.0.1:{proxy_port}")
            replicas = [Replica(Readiness.from_settings(settings.server)) for _ in range(2)]
            for replica in replicas:

                def note(report: dict[str, Any], replica: Replica = replica) -> None:
                    replica.results.append(report["checks"]["modyo"]["last_probe"]["result"])
                    round_done.set()

                replica.readiness.after_each_round(note)
                app = create_app(settings, readiness=replica.readiness)
                replica.port = await stack.enter_async_context(uvicorn_serving(app))
            inside = internal_app(settings, status=replicas[0].readiness.status_endpoint)
            inside_port = await stack.enter_async_context(uvicorn_serving(inside, lifespan="off"))
            client = await stack.enter_async_context(httpx.AsyncClient())
            async with asyncio.timeout(ROUNDS_GUARD_SECONDS):
                while min(len(replica.results) for replica in replicas) < ROUNDS:
                    await round_done.wait()  # a round completed: read both /readyz
                    round_done.clear()
                    for replica in replicas:
                        answer = await client.get(f"http://127.0.0.1:{replica.port}/readyz")
                        replica.readyz.append(answer.status_code)
                status = (await client.get(f"http://127.0.0.1:{inside_port}/status")).json()
    assert status["readiness"] == {"status": "ready"}
    assert status["checks"]["modyo"]["failed_probes"] > 0
    assert service.injected["error"] and service.injected["throttled"] and proxy.resets
    reported = []
    for replica in replicas:
        modyo = replica.readiness.status_report()["checks"]["modyo"]  # the rounds have stopped
        reported.append(modyo)
        failed = sum(result != "ok" for result in replica.results)
        print(
            f"\nreplica: {len(replica.results)} rounds, {failed} failed probes; /readyz "
            f"{replica.readyz.count(200)} x 200 of {len(replica.readyz)}; a readiness following "
            f"the last probe would have left 200 {replica.old_flips} times; /status changed "
            f"{modyo['flaps']} times"
        )
        assert set(replica.readyz) == {200} and len(replica.readyz) >= ROUNDS
        assert modyo["failed_probes"] == failed > 0 and replica.old_flips > 0
        assert modyo["probes"] == len(replica.results) >= ROUNDS
        assert modyo["last_error"] is not None and modyo["flaps"] < replica.old_flips
    after_ok = probes("ok") - before[0]
    after_failed = sum(probes(r) for r in ("unreachable", "token_rejected")) - before[1]
    assert after_failed == sum(modyo["failed_probes"] for modyo in reported)  # the metrics
    assert after_ok + after_failed == sum(modyo["probes"] for modyo in reported)


async def test_a_revoked_token_over_real_http_keeps_readyz_and_shows_in_status(
    fake: FakeModyo, log_output: LogOutput
) -> None:
    """The app as served, its background task probing: /status follows Modyo, readyz stays."""
    log_output.configure(secrets=[MODYO_TOKEN])
    async with uvicorn_serving(FakeModyoApp(FaultyModyo(fake))) as modyo_port:
        settings = _settings(f"http://127.0.0.1:{modyo_port}")
        readiness = Readiness.from_settings(settings.server)
        app = create_app(settings, readiness=readiness)
        inside = internal_app(settings, status=readiness.status_endpoint)
        async with (
            uvicorn_serving(app) as port,
            uvicorn_serving(inside, lifespan="off") as inside_port,
            httpx.AsyncClient() as client,
            asyncio.timeout(ROUNDS_GUARD_SECONDS),
        ):
            status_url = f"http://127.0.0.1:{inside_port}/status"
            round_done = asyncio.Event()
            readiness.after_each_round(lambda report: round_done.set())

            async def modyo_state() -> str:
                await round_done.wait()
                round_done.clear()
                state: str = (await client.get(status_url)).json()["checks"]["modyo"]["state"]
                return state

            while await modyo_state() != "ok":
                pass
            fake.token = "revoked-in-modyo"
            while await modyo_state() != "token_rejected":
                assert (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
            assert (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
            scim = await client.get(
                f"http://127.0.0.1:{port}/scim/Users", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert_scim_error(scim, 503)
            assert scim.headers["retry-after"] == "60"
    logged = [line for line in log_output.lines() if line["logger"] == "bridge.edge.readiness"]
    assert [(line["level"], line["state"]) for line in logged] == [
        ("info", "ok"),
        ("error", "token_rejected"),
    ]
    assert MODYO_TOKEN not in log_output.text


async def test_the_server_says_it_is_draining_as_soon_as_it_stops(fake: FakeModyo) -> None:
    """SIGTERM's path (``should_exit``): the server tells readiness before closing anything,
    so a /readyz still arriving on an open connection is answered 503 ``draining``."""
    settings = make_settings(server={"port": free_port()})
    readiness = Readiness(5.0, 15.0, schedule=no_rounds)
    app = create_app(
        settings, modyo_transport=mock_transport(FaultyModyo(fake), MODYO_URL), readiness=readiness
    )
    server = Server(server_config(app, settings.server))
    server.on_drain = readiness.drain
    async with asyncio.timeout(ROUNDS_GUARD_SECONDS):
        serving = asyncio.create_task(server.serve())
        await until(lambda: server.started or serving.done())
        async with httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{settings.server.port}/readyz"
            assert (await client.get(url)).status_code == 200
        assert readiness.reason() is None
        server.should_exit = True
        await serving
    assert readiness.reason() == "draining"
