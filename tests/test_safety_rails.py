"""The safety rails end to end (docs/operator/first-cycle.md), in both upstream modes, with the
fake Modyo served over real HTTP on loopback: an Entra-style first cycle in a dry run makes no
write call to Modyo, every follow-up read agrees with the plan and the plan's counts are the
history's intended changes; the same history replayed live leaves Modyo as the dry run showed
it. The brake holds the changes past its threshold (503 + Retry-After, nothing sent), alone
or with two replicas sharing a real redis-server, until it is released."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from bridge.config import Settings
from bridge.edge.app import create_app
from bridge.edge.readiness import Readiness
from bridge.modyo.fake import FakeModyoApp
from bridge.run.cli import main
from bridge.safety import SafetyEdge
from bridge.safety.overlay import PLANNED_PREFIX
from tests import entra
from tests.backends import Backend
from tests.harness import TOKEN, app_client, quiet_readiness
from tests.redis_servers import RedisServer
from tests.servers import uvicorn_serving

pytestmark = pytest.mark.upstreams("rest", "scim")
HEADER = "X-Scim-Bridge-Dry-Run"
GUARD_SECONDS = 60.0
INTENDED = {
    "users created": 2,
    "users updated": 1,
    "users disabled": 1,
    "users deleted": 1,
    "groups created": 1,
    "groups renamed": 1,
    "groups deleted": 1,
    "members added": 3,
    "members removed": 1,
}
"""What :func:`first_cycle` asks for, counted as a dry run's plan counts it."""


@asynccontextmanager
async def modyo_over_http(backend: Backend) -> AsyncIterator[str]:
    """The backend's fake Modyo on a free 127.0.0.1 port; its base URL."""
    async with uvicorn_serving(FakeModyoApp(backend.modyo)) as port:
        yield f"http://127.0.0.1:{port}"


@asynccontextmanager
async def bridge(
    settings: Settings, readiness: Readiness | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, SafetyEdge]]:
    """The real app, started, behind httpx; its rails. Readiness probes when the test asks."""
    app = create_app(settings, readiness=readiness or quiet_readiness(settings))
    assert isinstance(app, SafetyEdge)
    async with (
        asyncio.timeout(GUARD_SECONDS),
        app_client(app) as client,
    ):
        yield client, app


async def one_id(scim: httpx.AsyncClient, path: str, attribute: str, value: str) -> str | None:
    """The id Entra's matching query finds (``userName eq``, ``displayName eq``), or None."""
    found = await scim.get(path, params={"filter": f'{attribute} eq "{value}"'})
    assert found.status_code == 200, found.text
    resources = found.json().get("Resources", [])
    assert found.json()["totalResults"] == len(resources) <= 1
    return str(resources[0]["id"]) if resources else None


async def member_ids(scim: httpx.AsyncClient, group_id: str) -> set[str]:
    read = await scim.get(f"/Groups/{group_id}")
    assert read.status_code == 200, read.text
    return {member["value"] for member in read.json().get("members", [])}


async def first_cycle(scim: httpx.AsyncClient, seeded: list[str], dry_run: bool) -> None:
    """Entra's first cycle over a Modyo holding ``seeded`` (userNames; Finance holds the
    first two, IT the third), each change followed by the reads Entra (or an admin) makes;
    every read must agree with the change, dry run or not."""
    ids = {name: await one_id(scim, "/Users", "userName", name) for name in seeded}
    created: dict[str, str] = {}
    for name in ("new0@example.com", "new1@example.com"):
        assert await one_id(scim, "/Users", "userName", name) is None
        made = await scim.post("/Users", json=entra.user(name, external_id=f"ext-{name}"))
        assert made.status_code == 201, made.text
        created[name] = made.json()["id"]
        assert created[name].startswith(PLANNED_PREFIX) is dry_run
        assert (await scim.get(f"/Users/{created[name]}")).json()["userName"] == name
        assert await one_id(scim, "/Users", "userName", name.upper()) == created[name]
        assert await one_id(scim, "/Users", "externalId", f"ext-{name}") == created[name]
    again = await scim.post("/Users", json=entra.user("NEW0@example.com"))
    assert again.status_code == 409 and again.json()["scimType"] == "uniqueness", again.text

    first, second, third = (str(ids[name]) for name in seeded[:3])
    renamed = await scim.patch(
        f"/Users/{first}", json=entra.patch(entra.op("Replace", "name.givenName", "Renamed"))
    )
    assert renamed.status_code == 200, renamed.text
    assert (await scim.get(f"/Users/{first}")).json()["name"]["givenName"] == "Renamed"
    disabled = await scim.patch(
        f"/Users/{second}", json=entra.patch(entra.op("Replace", "active", "False"))
    )
    assert disabled.status_code == 200, disabled.text
    assert (await scim.get(f"/Users/{second}")).json()["active"] is False
    assert (await scim.delete(f"/Users/{third}")).status_code == 204
    assert (await scim.get(f"/Users/{third}")).status_code == 404
    assert await one_id(scim, "/Users", "userName", seeded[2]) is None

    assert await one_id(scim, "/Groups", "displayName", "Sales") is None
    sales = await scim.post("/Groups", json=entra.group("Sales"))
    assert sales.status_code == 201, sales.text
    sales_id = sales.json()["id"]
    assert sales_id.startswith(PLANNED_PREFIX) is dry_run
    assert await one_id(scim, "/Groups", "displayName", "sales") == sales_id
    joined = entra.patch(
        entra.op("Add", "members", entra.members(created["new0@example.com"], first))
    )
    assert (await scim.patch(f"/Groups/{sales_id}", json=joined)).status_code == 204
    assert await member_ids(scim, sales_id) == {created["new0@example.com"], first}

    finance = await one_id(scim, "/Groups", "displayName", "Finance")
    assert finance is not None
    moved = entra.patch(
        entra.op("Remove", f'members[value eq "{first}"]', no_value=True),
        entra.op("Add", "members", entra.members(created["new1@example.com"])),
    )
    assert (await scim.patch(f"/Groups/{finance}", json=moved)).status_code == 204
    assert await member_ids(scim, finance) == {second, created["new1@example.com"]}
    retitled = entra.patch(entra.op("Replace", "displayName", "Finance Team"))
    assert (await scim.patch(f"/Groups/{finance}", json=retitled)).status_code == 204
    assert await one_id(scim, "/Groups", "displayName", "Finance Team") == finance
    assert await one_id(scim, "/Groups", "displayName", "Finance") is None

    it = await one_id(scim, "/Groups", "displayName", "IT")
    assert it is not None
    assert (await scim.delete(f"/Groups/{it}")).status_code == 204
    assert (await scim.get(f"/Groups/{it}")).status_code == 404


async def world(scim: httpx.AsyncClient) -> dict[str, Any]:
    """Everything SCIM clients see, by natural keys: users (userName -> given name, active)
    and groups (displayName -> members' userNames)."""
    listed = await scim.get("/Users", params={"count": 100})
    assert listed.status_code == 200, listed.text
    users = {row["id"]: row for row in listed.json()["Resources"]}
    groups: dict[str, set[str]] = {}
    for row in (await scim.get("/Groups", params={"count": 100})).json()["Resources"]:
        groups[row["displayName"]] = {
            users[member]["userName"] for member in await member_ids(scim, row["id"])
        }
    return {
        "users": {
            row["userName"]: (row.get("name", {}).get("givenName"), row["active"])
            for row in users.values()
        },
        "groups": groups,
    }


def seed(backend: Backend) -> list[str]:
    """Five users (the first two in Finance, the third in IT); their userNames."""
    ids = backend.seed_users(5)
    backend.seed_group("Finance", ids[:2])
    backend.seed_group("IT", ids[2:3])
    names = {user.id: user.user_name for user in backend.held_users()}
    return [names[user_id] for user_id in ids]


class Alternating(httpx.AsyncBaseTransport):
    """Each request to the next of several bridges (replicas behind a load balancer)."""

    def __init__(self, *transports: httpx.AsyncBaseTransport) -> None:
        self._transports = transports
        self._turn = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._turn += 1
        return await self._transports[self._turn % len(self._transports)].handle_async_request(
            request
        )


def toml(url: str, redis_url: str, dry_run: bool = False) -> str:
    """A configuration file naming the shared store (what the CLI reads)."""
    return (
        f'[scim.tokens]\nentra = "{TOKEN}"\n[modyo]\nbase_url = "{url}"\n'
        f'token = "unused-here-0123456789"\ndry_run = {str(dry_run).lower()}\n'
        f"[safety]\nmax_disables = 10\n"
        f'[idempotency]\nbackend = "redis"\nredis_url = "{redis_url}"\n'
    )


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_dry_run_first_cycle_writes_nothing_and_going_live_applies_its_plan(
    backend: Backend,
    store: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With Redis, two replicas share the plan: each request goes to the other one."""
    seeded = seed(backend)
    before = backend.users()
    async with modyo_over_http(backend) as url:
        shared: dict[str, Any] = {}
        if store == "redis":
            redis_url = request.getfixturevalue("redis_server").url
            shared = {"backend": "redis", "redis_url": redis_url}
        dry = backend.with_settings(modyo={"base_url": url, "dry_run": True}, idempotency=shared)
        answers: list[httpx.Response] = []
        async with bridge(dry) as (scim, app), bridge(dry) as (other, _):
            if store == "redis":
                scim._transport = Alternating(scim._transport, other._transport)

            async def kept(response: httpx.Response) -> None:
                answers.append(response)

            scim.event_hooks["response"].append(kept)
            backend.reset_calls()
            await first_cycle(scim, seeded, dry_run=True)
            assert backend.writes() == set()  # not one write reached Modyo
            assert sum(backend.calls().values()) > 0  # while its reads did
            assert answers and all(answer.headers[HEADER] == "true" for answer in answers)
            assert await app.rails.plan_summary() == INTENDED
            report = await app.rails.plan_report()
            assert {kind: n for kind, n in report["counts"].items() if n} == INTENDED
            changes = report["changes"]
            assert changes["users created"][0]["object"].startswith("new0@example.com (id dryrun-")
            assert "given_name" in changes["users updated"][0]["detail"]
            assert changes["groups renamed"][0]["detail"] == "Finance -> Finance Team"
            assert changes["users deleted"][0]["object"].startswith(seeded[2])
            rehearsed = await world(scim)
        assert backend.users() == before  # Modyo untouched
        if store == "redis":
            config = tmp_path / "bridge.toml"
            config.write_text(toml(url, redis_url, dry_run=True))
            capsys.readouterr()
            argv = ["journal", "report", "--planned", "--format", "json", "--config", str(config)]
            assert await asyncio.to_thread(main, argv) == 0
            printed = json.loads(capsys.readouterr().out)
            assert {kind: n for kind, n in printed["counts"].items() if n} == INTENDED

        live = backend.with_settings(modyo={"base_url": url}, idempotency=shared)
        async with bridge(live) as (scim, app):
            assert not app.rails.dry_run
            await first_cycle(scim, seeded, dry_run=False)
            assert HEADER not in (await scim.get("/Users/nobody")).headers
            assert await world(scim) == rehearsed
        if store == "redis":  # going live discarded the shared plan
            assert await asyncio.to_thread(main, argv) == 0
            assert not any(json.loads(capsys.readouterr().out)["counts"].values())
    held = backend.users()
    assert set(held) == set(rehearsed["users"])
    assert {name: user.active for name, user in held.items()} == {
        name: active for name, (_, active) in rehearsed["users"].items()
    }
    assert backend.member_names() == rehearsed["groups"]


async def test_a_dry_run_says_so_in_readiness_and_refuses_writes_past_its_bound(
    backend: Backend,
) -> None:
    async with modyo_over_http(backend) as url:
        settings = backend.with_settings(
            modyo={"base_url": url, "dry_run": True, "dry_run_max_changes": 1}
        )
        async with bridge(settings) as (scim, _):
            ready = await scim.get("http://bridge.test/readyz")
            assert ready.json()["dry_run"] is True and ready.headers[HEADER] == "true"
            made = await scim.post("/Users", json=entra.user("one@example.com"))
            assert made.status_code == 201, made.text
            full = await scim.post("/Users", json=entra.user("two@example.com"))
            assert full.status_code == 503, full.text
            assert "dry_run_max_changes" in full.json()["detail"]
            assert int(full.headers["Retry-After"]) > 0
            assert await one_id(scim, "/Users", "userName", "two@example.com") is None
    assert backend.writes() == set()


# ---------------------------------------------------------------------- the brake


async def disable(scim: httpx.AsyncClient, user_id: str) -> httpx.Response:
    return await scim.patch(
        f"/Users/{user_id}", json=entra.patch(entra.op("Replace", "active", "False"))
    )


def assert_held(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/scim+json")
    assert answer.json()["schemas"] == [entra.ERROR_URN]
    assert "safety brake" in answer.json()["detail"]
    assert int(answer.headers["Retry-After"]) > 0


def engaged(kind: str) -> float | None:
    """``scim_bridge_brake_engaged{kind}`` as this process exports it."""
    return REGISTRY.get_sample_value("scim_bridge_brake_engaged", {"kind": kind})


class Logged(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def brake_errors() -> Iterator[Callable[[], list[str]]]:
    handler = Logged()
    logger = logging.getLogger("bridge.safety")
    logger.addHandler(handler)
    yield lambda: [message for message in handler.messages if "brake engaged" in message]
    logger.removeHandler(handler)


async def test_twenty_disables_past_a_threshold_of_ten_hold_ten_until_released(
    backend: Backend, brake_errors: Callable[[], list[str]]
) -> None:
    ids = backend.seed_users(20)
    async with modyo_over_http(backend) as url:
        settings = backend.with_settings(
            modyo={"base_url": url}, safety={"enabled": True, "max_disables": 10}
        )
        readiness = quiet_readiness(settings)
        async with bridge(settings, readiness) as (scim, app):
            backend.reset_calls()
            answers = [await disable(scim, user_id) for user_id in ids]
            assert [answer.status_code for answer in answers] == [200] * 10 + [503] * 10
            for answer in answers[10:]:
                assert_held(answer)
            assert backend.calls()["user.update"] == 10  # none held reached Modyo
            assert sum(not backend.user(user_id).active for user_id in ids) == 10  # type: ignore[union-attr]
            assert len(brake_errors()) == 1  # logged once, at error level
            status = {kind.kind.value: kind for kind in await app.rails.brake_status()}
            assert status["disables"].engaged_since is not None
            assert status["deletes"].engaged_since is None
            await readiness.refresh()
            ready = await scim.get("http://bridge.test/readyz")
            assert ready.status_code == 200 and ready.json()["brake"] == ["disables"]
            assert engaged("disables") == 1 and engaged("deletes") == 0
            other = await scim.post("/Users", json=entra.user("still@example.com"))
            assert other.status_code == 201  # other changes keep flowing

            assert await app.rails.release() == ["disables"]
            assert engaged("disables") == 0
            assert "brake" not in (await scim.get("http://bridge.test/readyz")).json()
            retried = [await disable(scim, user_id) for user_id in ids[10:]]
            assert [answer.status_code for answer in retried] == [200] * 10
    assert backend.calls()["user.update"] == 20
    assert not any(backend.user(user_id).active for user_id in ids)  # type: ignore[union-attr]


async def test_two_replicas_sharing_redis_hold_the_threshold_together(
    backend: Backend, redis_server: RedisServer, tmp_path: Path
) -> None:
    ids = backend.seed_users(20)
    async with modyo_over_http(backend) as url:
        shared = {"backend": "redis", "redis_url": redis_server.url}
        settings = backend.with_settings(
            modyo={"base_url": url},
            safety={"enabled": True, "max_disables": 10},
            idempotency=shared,
        )
        async with bridge(settings) as (one, _), bridge(settings) as (other, _):
            backend.reset_calls()
            replicas = [one, other]
            answers = await asyncio.gather(
                *(disable(replicas[n % 2], user_id) for n, user_id in enumerate(ids))
            )
            codes = [answer.status_code for answer in answers]
            assert codes.count(200) == 10 and codes.count(503) == 10, codes
            assert backend.calls()["user.update"] == 10
            held = [user_id for user_id, code in zip(ids, codes, strict=True) if code == 503]

            config = tmp_path / "bridge.toml"
            config.write_text(toml(url, redis_server.url))
            # a replica that held one says so (the other learns at its next readiness round)
            holder = replicas[codes.index(503) % 2]
            assert (await holder.get("http://bridge.test/readyz")).json()["brake"] == ["disables"]
            assert await asyncio.to_thread(main, ["brake", "release", "--config", str(config)]) == 0
            retried = [await disable(replicas[n % 2], user_id) for n, user_id in enumerate(held)]
            assert [answer.status_code for answer in retried] == [200] * 10
            for replica in replicas:  # each saw its changes flow again
                assert "brake" not in (await replica.get("http://bridge.test/readyz")).json()
    assert backend.calls()["user.update"] == 20
