"""Connection resets after Modyo applied a write, over real TCP: bridge (real aiohttp
transport) -> a proxy that forwards a request, reads Modyo's whole answer, then resets the
connection -> ``fake-modyo`` under uvicorn. Every re-send is the bridge's own decision, so each
write kind ends in the intended state with the status Entra expects (issue: aiohttp re-sent
idempotent requests by itself, and a DELETE that succeeded was answered 404)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from asgi_lifespan import LifespanManager

from bridge.app import create_app
from bridge.modyo.fake import FakeModyo, FakeModyoApp, FaultyModyo
from tests import entra
from tests.conftest import BASE, MODYO_TOKEN, TOKEN, make_settings
from tests.servers import ResetProxy, uvicorn_serving

API = "/api/admin"


@dataclass
class Rig:
    fake: FakeModyo
    proxy: ResetProxy
    scim: httpx.AsyncClient


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    fake = FakeModyo(token=MODYO_TOKEN)
    async with uvicorn_serving(FakeModyoApp(FaultyModyo(fake))) as modyo_port:
        proxy = ResetProxy(modyo_port)
        async with proxy.running() as port:
            settings = make_settings(
                modyo={"base_url": f"http://127.0.0.1:{port}", "transport": "aiohttp"}
            )
            async with (
                LifespanManager(create_app(settings)) as manager,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=manager.app),
                    base_url=BASE,
                    headers={"Authorization": f"Bearer {TOKEN}"},
                ) as scim,
            ):
                yield Rig(fake, proxy, scim)


async def _user(rig: Rig, name: str) -> str:
    response = await rig.scim.post("/Users", json=entra.user(name))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _group(rig: Rig, name: str, *members: str) -> str:
    response = await rig.scim.post("/Groups", json=entra.group(name))
    assert response.status_code == 201, response.text
    group_id = str(response.json()["id"])
    if members:
        patch = entra.patch(entra.op("Add", "members", entra.members(*members)))
        assert (await rig.scim.patch(f"/Groups/{group_id}", json=patch)).status_code == 204
    return group_id


async def test_a_user_create_reset_after_modyo_applied_it_is_adopted(rig: Rig) -> None:
    await _user(rig, "warm@contoso.com")  # the connection to Modyo is now a reused one
    rig.proxy.reset_next("POST", f"{API}/team_members")
    response = await rig.scim.post("/Users", json=entra.user("ann@contoso.com"))
    assert response.status_code == 201, response.text
    assert rig.proxy.resets == [("POST", f"{API}/team_members")]
    names = sorted(member["username"] for member in rig.fake.team_members.values())
    assert names == ["ann@contoso.com", "warm@contoso.com"]
    assert response.json()["id"] == str(
        next(m["id"] for m in rig.fake.team_members.values() if m["username"] == "ann@contoso.com")
    )


async def test_a_user_update_reset_after_modyo_applied_it_is_answered_200(rig: Rig) -> None:
    user_id = await _user(rig, "ann@contoso.com")
    rig.proxy.reset_next("PUT", f"{API}/team_members/{user_id}")
    patch = entra.patch(entra.op("Replace", "name.familyName", "Lee"))
    response = await rig.scim.patch(f"/Users/{user_id}", json=patch)
    assert response.status_code == 200, response.text
    assert response.json()["name"]["familyName"] == "Lee"
    assert rig.fake.team_members[int(user_id)]["last_name"] == "Lee"
    assert rig.proxy.resets == [("PUT", f"{API}/team_members/{user_id}")]


async def test_a_user_delete_reset_after_modyo_applied_it_is_answered_204(rig: Rig) -> None:
    user_id = await _user(rig, "ann@contoso.com")
    rig.proxy.reset_next("DELETE", f"{API}/team_members/{user_id}")
    response = await rig.scim.delete(f"/Users/{user_id}")
    assert response.status_code == 204, response.text
    assert rig.fake.team_members == {}
    assert rig.proxy.resets == [("DELETE", f"{API}/team_members/{user_id}")]
    assert (await rig.scim.get(f"/Users/{user_id}")).status_code == 404


async def test_a_group_delete_reset_after_modyo_applied_it_is_answered_204(rig: Rig) -> None:
    group_id = await _group(rig, "Sales")
    rig.proxy.reset_next("DELETE", f"{API}/groups/{group_id}")
    response = await rig.scim.delete(f"/Groups/{group_id}")
    assert response.status_code == 204, response.text
    assert rig.fake.groups == {}


async def test_a_member_add_reset_after_modyo_applied_it_is_answered_204(rig: Rig) -> None:
    user_id = await _user(rig, "ann@contoso.com")
    group_id = await _group(rig, "Sales")
    rig.proxy.reset_next("POST", f"{API}/groups/{group_id}/team_members")
    patch = entra.patch(entra.op("Add", "members", entra.members(user_id)))
    response = await rig.scim.patch(f"/Groups/{group_id}", json=patch)
    assert response.status_code == 204, response.text
    assert rig.fake.group_member_ids(int(group_id)) == {int(user_id)}
    assert len(rig.proxy.resets) == 1


async def test_a_member_remove_reset_after_modyo_applied_it_is_answered_204(rig: Rig) -> None:
    user_id = await _user(rig, "ann@contoso.com")
    group_id = await _group(rig, "Sales", user_id)
    rig.proxy.reset_next("DELETE", f"{API}/groups/{group_id}/team_members/{user_id}")
    patch = entra.patch(entra.op("Remove", "members", entra.members(user_id)))
    response = await rig.scim.patch(f"/Groups/{group_id}", json=patch)
    assert response.status_code == 204, response.text
    assert rig.fake.group_member_ids(int(group_id)) == set()
    assert len(rig.proxy.resets) == 1


async def test_a_group_create_and_rename_reset_after_modyo_applied_them(rig: Rig) -> None:
    await _group(rig, "Warm")
    rig.proxy.reset_next("POST", f"{API}/groups")
    created = await rig.scim.post("/Groups", json=entra.group("Sales"))
    assert created.status_code == 201, created.text
    group_id = created.json()["id"]
    rig.proxy.reset_next("PUT", f"{API}/groups/{group_id}")
    patch = entra.patch(entra.op("Replace", "displayName", "Sales EMEA"))
    assert (await rig.scim.patch(f"/Groups/{group_id}", json=patch)).status_code == 204
    assert sorted(group["name"] for group in rig.fake.groups.values()) == ["Sales EMEA", "Warm"]
    assert len(rig.proxy.resets) == 2


async def test_a_provisioning_history_under_resets_ends_exactly_as_intended(rig: Rig) -> None:
    """300 users and 15 groups created, half the users disabled, members added and removed,
    a third of the users and groups deleted, while the proxy resets 5% of the write
    connections after Modyo applied them. Entra re-sends what got a 5xx (as it does)."""
    rig.proxy.reset_share(0.05, seed=11, methods=frozenset({"POST", "PUT", "DELETE"}))
    gate = asyncio.Semaphore(8)

    async def send(method: str, url: str, body: object = None) -> httpx.Response:
        async with gate:
            for _ in range(20):
                response = await rig.scim.request(method, url, json=body)
                if response.status_code < 500:
                    return response
            raise AssertionError(f"{method} {url}: {response.text}")

    async def provision(n: int) -> str:
        created = await send("POST", "/Users", entra.user(f"user{n}@contoso.com"))
        assert created.status_code == 201, created.text
        user_id = str(created.json()["id"])
        if n % 2:
            disable = entra.patch(entra.op("Replace", "active", "False"))
            assert (await send("PATCH", f"/Users/{user_id}", disable)).status_code == 200
        return user_id

    users = await asyncio.gather(*(provision(n) for n in range(300)))
    groups = []
    for g in range(15):
        created = await send("POST", "/Groups", entra.group(f"Group {g}"))
        assert created.status_code == 201, created.text
        groups.append(str(created.json()["id"]))
    expected: dict[int, set[str]] = {}
    for g, group_id in enumerate(groups):
        members = users[g * 20 : g * 20 + 20]
        add = entra.patch(entra.op("Add", "members", entra.members(*members)))
        assert (await send("PATCH", f"/Groups/{group_id}", add)).status_code == 204
        removed = members[:5]
        remove = entra.patch(entra.op("Remove", "members", entra.members(*removed)))
        assert (await send("PATCH", f"/Groups/{group_id}", remove)).status_code == 204
        expected[g] = set(members[5:])
    deleted_users = set(users[::3])
    for user_id in deleted_users:
        assert (await send("DELETE", f"/Users/{user_id}")).status_code == 204
    for group_id in groups[::3]:
        assert (await send("DELETE", f"/Groups/{group_id}")).status_code == 204

    assert len(rig.proxy.resets) > 10  # the faults really happened
    fake = rig.fake
    by_name = {m["username"]: m for m in fake.team_members.values()}
    assert set(by_name) == {
        f"user{n}@contoso.com" for n in range(300) if str(users[n]) not in deleted_users
    }
    for n in range(300):
        member = by_name.get(f"user{n}@contoso.com")
        if member is not None:
            assert member["active"] is (n % 2 == 0)
    remaining = {g: group_id for g, group_id in enumerate(groups) if g % 3}
    assert {int(group_id) for group_id in remaining.values()} == set(fake.groups)
    for g, group_id in remaining.items():
        wanted = {int(user_id) for user_id in expected[g] - deleted_users}
        assert fake.group_member_ids(int(group_id)) == wanted
