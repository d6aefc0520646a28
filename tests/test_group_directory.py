"""The group directory of the ``scim`` upstream (bridge/modyo/group_directory.py): Entra's group
queries cost at most one Modyo call once it holds the listing, in this process or shared by
replicas through Redis, while creates and renames still check the whole listing and groups
changed behind the bridge's back are found (docs/design/upstreams.md, Group queries at scale).
The fake of Modyo's SCIM server is seeded directly; time is a virtual clock."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from bridge.edge.app import create_app
from bridge.edge.readiness import Readiness
from bridge.modyo.fake import FakeModyoScim, FaultyModyo, mock_transport
from bridge.modyo.group_directory import MemoryGroupDirectory
from bridge.modyo.upstreams import scim_upstream
from bridge.upstream import GroupField, GroupRecord
from tests import entra
from tests.harness import MODYO_URL, app_client, assert_scim_error, no_rounds
from tests.redis_servers import RedisServer
from tests.scim_mode import scim_fake, scim_mode_settings

__all__ = ["scim_fake"]  # fixture used below

GROUPS = 10_000
MAX_AGE = 60.0


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The directory in this process, or in a real redis-server shared by replicas."""
    if request.param == "memory":
        return {}
    server: RedisServer = request.getfixturevalue("redis_server")
    return {"backend": "redis", "redis_url": server.url}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def replica(
    fake: FakeModyoScim, store: dict[str, Any], clock: Clock, **modyo: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """One bridge in scim mode (a replica: several share the fake and the store)."""
    settings = scim_mode_settings(idempotency=store, modyo=modyo)
    transport = mock_transport(FaultyModyo(fake), MODYO_URL)
    upstream = scim_upstream(settings.modyo, settings.retry, transport)
    upstream.clock = clock
    readiness = Readiness(5, 15, schedule=no_rounds)  # no probe among the counted calls
    app = create_app(settings, upstream=upstream, readiness=readiness)
    async with app_client(app) as client:
        yield client


def seed(fake: FakeModyoScim, count: int) -> None:
    for number in range(count):
        fake.seed_group(f"Group {number}")
    fake.reset_calls()


async def query(client: httpx.AsyncClient, field: str, value: str) -> list[str]:
    params = {"filter": f'{field} eq "{value}"', "excludedAttributes": "members"}
    response = await client.get("/Groups", params=params)
    assert response.status_code == 200, response.text
    return [group["displayName"] for group in response.json()["Resources"]]


def calls(fake: FakeModyoScim) -> int:
    return sum(fake.calls.values())


async def test_entra_group_queries_cost_at_most_one_call_amortised_at_10_000_groups(
    scim_fake: FakeModyoScim, store: dict[str, Any]
) -> None:
    """Without the directory each query reads the listing: 100 calls at 10,000 groups. With
    it: the first query reads it once; every later one costs at most one call (a group seen
    too long ago is read again, an absence too old reads the next page of the listing), and
    over an Entra-paced stream of queries (two a second, half of them for absent names) the
    average stays at or under one, answers exact."""
    seed(scim_fake, GROUPS)
    clock = Clock()
    queries, spent = 600, []
    async with replica(scim_fake, store, clock) as bridge:
        for number in range(queries):
            clock.now += 0.5
            before = calls(scim_fake)
            if number % 2:
                assert await query(bridge, "displayName", f"Absent {number}") == []
            else:
                name = f"Group {number * 13 % GROUPS}"
                assert await query(bridge, "displayName", name.upper()) == [name]
            spent.append(calls(scim_fake) - before)
    assert spent[0] == math.ceil(GROUPS / 100)  # the directory is built once
    assert max(spent[1:]) <= 1
    assert sum(spent) <= queries, f"{sum(spent)} Modyo calls for {queries} queries"


async def test_replicas_share_the_directory_through_redis(
    scim_fake: FakeModyoScim, redis_server: RedisServer
) -> None:
    """One replica's listing serves the other's queries."""
    seed(scim_fake, 1_000)
    store, clock = {"backend": "redis", "redis_url": redis_server.url}, Clock()
    async with replica(scim_fake, store, clock) as one, replica(scim_fake, store, clock) as other:
        assert await query(one, "displayName", "Group 1") == ["Group 1"]
        assert calls(scim_fake) == 10
        scim_fake.reset_calls()
        assert await query(other, "displayName", "Group 999") == ["Group 999"]
        assert await query(other, "displayName", "Nobody") == []
        assert calls(scim_fake) == 0


async def test_groups_created_or_renamed_behind_the_bridge_s_back_are_found(
    scim_fake: FakeModyoScim, store: dict[str, Any]
) -> None:
    """A group created directly in Modyo is found within one pass over the listing (one
    call per query), and at once after a create of its name, which checks the whole listing
    (409: never a duplicate); a group renamed directly is read again once its entry is too
    old, then found under its new name."""
    seed(scim_fake, GROUPS)
    clock = Clock()
    async with replica(scim_fake, store, clock) as bridge:
        assert await query(bridge, "displayName", "Group 0") == ["Group 0"]  # built
        behind = scim_fake.seed_group("Behind")
        renamed = next(g for g in scim_fake.groups.values() if g["displayName"] == "Group 7")
        renamed["displayName"] = "Renamed"
        # the creation is invisible to a directory younger than its max age...
        assert await query(bridge, "displayName", "Behind") == []
        clock.now += MAX_AGE + 1
        # ...then the pass reads one page per query until it reaches the new group
        for _ in range(math.ceil(GROUPS / 100) + 1):
            scim_fake.reset_calls()
            found = await query(bridge, "displayName", "Behind")
            assert calls(scim_fake) <= 1
            if found:
                break
        assert found == ["Behind"], "not found within one pass over the listing"
        # the old name: read again (too old), no longer matching; the new name found at once
        assert await query(bridge, "displayName", "Group 7") == []
        scim_fake.reset_calls()
        assert await query(bridge, "displayName", "Renamed") == ["Renamed"]
        assert calls(scim_fake) == 0

        # a create of a name taken behind the bridge's back is refused from the whole listing
        other = scim_fake.seed_group("Sneaky")
        assert await query(bridge, "displayName", "Sneaky") == []  # the directory is young
        assert_scim_error(
            await bridge.post("/Groups", json=entra.group("Sneaky")), 409, "uniqueness"
        )
        assert await query(bridge, "displayName", "Sneaky") == ["Sneaky"]  # rebuilt by it
    assert [g["displayName"] for g in scim_fake.groups.values()].count("Sneaky") == 1
    assert behind in scim_fake.groups and other in scim_fake.groups


async def test_the_bridge_s_own_writes_keep_the_directory_exact(
    scim_fake: FakeModyoScim, store: dict[str, Any]
) -> None:
    seed(scim_fake, 300)
    clock = Clock()
    async with replica(scim_fake, store, clock) as bridge:
        created = (await bridge.post("/Groups", json=entra.group("Mine", external_id="x-1"))).json()
        scim_fake.reset_calls()
        assert await query(bridge, "externalId", "x-1") == ["Mine"]
        rename = entra.patch(entra.op("Replace", "displayName", "Yours"))
        assert (await bridge.patch(f"/Groups/{created['id']}", json=rename)).status_code == 204
        assert await query(bridge, "displayName", "Mine") == []
        assert await query(bridge, "displayName", "Yours") == ["Yours"]
        assert (await bridge.delete(f"/Groups/{created['id']}")).status_code == 204
        calls_before = calls(scim_fake)
        assert await query(bridge, "displayName", "Yours") == []
        assert await query(bridge, "externalId", "x-1") == []
        assert calls(scim_fake) == calls_before  # answered by the directory


async def test_an_account_larger_than_the_directory_reads_the_listing(
    scim_fake: FakeModyoScim, store: dict[str, Any]
) -> None:
    """Bounded: past ``modyo.group_directory_size`` groups, no directory is kept."""
    seed(scim_fake, 250)
    async with replica(scim_fake, store, Clock(), group_directory_size=200) as bridge:
        for _ in range(2):
            scim_fake.reset_calls()
            assert await query(bridge, "displayName", "Group 3") == ["Group 3"]
            assert calls(scim_fake) == 3


async def test_the_memory_directory_holds_at_most_its_size() -> None:
    directory = MemoryGroupDirectory(size=2)
    records = [GroupRecord(str(n), f"G{n}", None, None, None) for n in range(3)]
    await directory.rebuild(records, 0)
    assert len(directory) == 0 and (await directory.find(GroupField.DISPLAY_NAME, "G1"))[1] == []
    await directory.rebuild(records[:2], 0)
    assert len(directory) == 2
    await directory.put(records[2], 1)  # a third: too many, so none
    state, held = await directory.find(GroupField.DISPLAY_NAME, "G0")
    assert len(directory) == 0 and held == [] and state.complete_at is None
    await directory.rebuild(records[:2], 2)
    await directory.refresh([records[2]], 1, 3)  # a pass that meets a third: none either
    state, held = await directory.find(GroupField.DISPLAY_NAME, "G0")
    assert len(directory) == 0 and held == [] and state.complete_at is None
