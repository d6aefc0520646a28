"""A stopped bridge is visible: ``/readyz`` answers 503 with the reason while Modyo rejects the
token or cannot be reached, from results one background task refreshes (never on the request
path, one probe at a time, one attempt each); each change of state is logged once, and the
``scim_bridge_upstream_up`` / ``scim_bridge_upstream_token_valid`` gauges follow."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client import REGISTRY

from bridge.config import Settings
from bridge.edge.app import create_app
from bridge.edge.readiness import Readiness
from bridge.modyo.fake import FakeModyo, FakeModyoApp, Faults, FaultyModyo, mock_transport
from tests.harness import (
    MODYO_TOKEN,
    MODYO_URL,
    LogOutput,
    app_client,
    make_settings,
    no_rounds,
)
from tests.servers import uvicorn_serving
from tests.waits import eventually, until

ROOT = "http://bridge.test"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    client: httpx.AsyncClient
    readiness: Readiness
    service: FaultyModyo
    clock: Clock

    async def readyz(self) -> httpx.Response:
        return await self.client.get(f"{ROOT}/readyz", headers={"Authorization": ""})


@pytest.fixture
async def rig(fake: FakeModyo) -> AsyncIterator[Rig]:
    """The app with a readiness whose rounds the test runs (``refresh``) and whose clock it
    moves: what the background task does, without waiting for it."""
    settings = make_settings()
    clock = Clock()
    readiness = Readiness(5.0, 15.0, schedule=no_rounds, clock=clock)
    service = FaultyModyo(fake)
    app = create_app(
        settings, modyo_transport=mock_transport(service, MODYO_URL), readiness=readiness
    )
    async with app_client(app, base_url=f"{ROOT}/scim") as client:
        yield Rig(client, readiness, service, clock)


def gauges() -> tuple[float | None, float | None]:
    return (
        REGISTRY.get_sample_value("scim_bridge_upstream_up"),
        REGISTRY.get_sample_value("scim_bridge_upstream_token_valid"),
    )


async def test_unready_until_the_first_probe_then_ready(rig: Rig) -> None:
    before = await rig.readyz()
    assert before.status_code == 503
    assert before.json() == {"status": "unready", "reason": "starting"}
    await rig.readiness.refresh()
    after = await rig.readyz()
    assert after.status_code == 200 and after.json() == {"status": "ready"}
    assert after.headers["cache-control"] == "no-store"
    assert rig.service.fake.calls == {"GET /profile": 1}
    assert gauges() == (1.0, 1.0)


async def test_readyz_never_calls_modyo(rig: Rig) -> None:
    await rig.readiness.refresh()
    for _ in range(5):
        assert (await rig.readyz()).status_code == 200
    assert rig.service.fake.calls == {"GET /profile": 1}  # the one probe, not the requests


async def test_a_revoked_token_makes_it_unready_with_the_reason(rig: Rig) -> None:
    await rig.readiness.refresh()
    rig.service.fake.token = "revoked-in-modyo"
    await rig.readiness.refresh()
    response = await rig.readyz()
    assert response.status_code == 503
    assert response.json() == {"status": "unready", "reason": "modyo_token_rejected"}
    assert gauges() == (1.0, 0.0)  # Modyo answers; it refuses the token
    assert (await rig.client.get("/Users")).status_code == 502  # what Entra meets meanwhile


async def test_an_unreachable_modyo_makes_it_unready_and_the_probe_is_not_retried(
    rig: Rig,
) -> None:
    await rig.readiness.refresh()
    rig.service.configure(Faults(error_rate=1.0))
    await rig.readiness.refresh()
    response = await rig.readyz()
    assert response.json() == {"status": "unready", "reason": "modyo_unreachable"}
    assert rig.service.injected["error"] == 1  # one attempt, not the retry policy's five
    up, token_valid = gauges()
    assert (up, token_valid) == (0.0, 1.0)  # the token's last known state is kept


async def test_a_throttled_probe_still_counts_as_up(rig: Rig) -> None:
    rig.service.configure(Faults(throttle_rate=1.0))
    await rig.readiness.refresh()
    assert (await rig.readyz()).status_code == 200


async def test_results_older_than_the_maximum_age_are_not_trusted(rig: Rig) -> None:
    await rig.readiness.refresh()
    rig.clock.now += 15.0
    assert (await rig.readyz()).status_code == 200
    rig.clock.now += 0.1
    response = await rig.readyz()
    assert response.json() == {"status": "unready", "reason": "stale"}


async def test_each_change_of_state_is_logged_once_and_a_recovery_at_info(
    rig: Rig, log_output: LogOutput
) -> None:
    log_output.configure(secrets=[MODYO_TOKEN])
    await rig.readiness.refresh()
    rig.service.configure(Faults(error_rate=1.0))
    for _ in range(3):
        await rig.readiness.refresh()
        await rig.readyz()
    rig.service.configure(Faults())
    rig.service.fake.token = "revoked-in-modyo"
    for _ in range(3):
        await rig.readiness.refresh()
    rig.service.fake.token = MODYO_TOKEN
    for _ in range(3):
        await rig.readiness.refresh()
    changes = [line for line in log_output.lines() if line["logger"] == "bridge.edge.readiness"]
    assert [(line["level"], line.get("reason")) for line in changes] == [
        ("info", None),
        ("error", "modyo_unreachable"),
        ("error", "modyo_token_rejected"),
        ("info", None),  # the recovery is good news, not an alarm
    ]
    assert "recovered from modyo_token_rejected" in changes[-1]["message"]
    assert MODYO_TOKEN not in log_output.text


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
        assert readiness.reason() == "modyo_unreachable"
    assert service.injected["hang"] == 1 and service.peak_in_flight == 1


def _settings(modyo_url: str, token: str = MODYO_TOKEN) -> Settings:
    return make_settings(
        modyo={"base_url": modyo_url, "token": token},
        server={"readiness_interval_seconds": 0.2, "readiness_max_age_seconds": 30},
    )


async def test_the_background_task_follows_modyo_over_real_http(fake: FakeModyo) -> None:
    """The app as served: its lifespan starts the one task; /readyz follows Modyo."""
    async with uvicorn_serving(FakeModyoApp(FaultyModyo(fake))) as modyo_port:
        app = create_app(_settings(f"http://127.0.0.1:{modyo_port}"))
        async with uvicorn_serving(app) as port, httpx.AsyncClient() as client:
            readyz = f"http://127.0.0.1:{port}/readyz"

            async def answer() -> httpx.Response:
                return await client.get(readyz)

            async def ready() -> bool:
                return bool((await answer()).json() == {"status": "ready"})

            async def token_rejected() -> bool:
                expected = {"status": "unready", "reason": "modyo_token_rejected"}
                return bool((await answer()).json() == expected)

            await eventually(ready, "/readyz ready")  # a probe runs every 0.2 s
            assert (await answer()).status_code == 200
            fake.token = "revoked-in-modyo"
            await eventually(token_rejected, "/readyz: the Modyo token rejected")
            assert (await answer()).status_code == 503


async def test_readyz_needs_no_token_and_is_not_under_the_scim_path(rig: Rig) -> None:
    assert (await rig.client.get(f"{ROOT}/readyz")).status_code in (200, 503)
    assert (await rig.client.get("/readyz")).status_code == 404  # SCIM paths need the token


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
    assert readiness.reason() == "starting"  # nothing was concluded from the interruption
