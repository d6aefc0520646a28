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

from bridge.edge.app import create_app
from bridge.modyo.fake import FakeModyoApp
from tests import entra
from tests.backends import Backend, wire, write_methods
from tests.conftest import BASE, TOKEN
from tests.servers import ResetProxy, uvicorn_serving

pytestmark = pytest.mark.upstreams("rest", "scim")


@dataclass
class Rig:
    backend: Backend
    proxy: ResetProxy
    scim: httpx.AsyncClient

    def reset_next(self, operation: str, **ids: str) -> tuple[str, str]:
        """Reset the connection of the next ``operation`` after Modyo answered it."""
        method, path = wire(self.backend.api, operation, **ids)
        self.proxy.reset_next(method, path)
        return method, path


@pytest.fixture
async def rig(backend: Backend) -> AsyncIterator[Rig]:
    async with uvicorn_serving(FakeModyoApp(backend.modyo)) as modyo_port:
        proxy = ResetProxy(modyo_port)
        async with proxy.running() as port:
            settings = backend.with_settings(
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
                yield Rig(backend, proxy, scim)


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
    reset = rig.reset_next("user.create")
    response = await rig.scim.post("/Users", json=entra.user("ann@contoso.com"))
    assert response.status_code == 201, response.text
    assert rig.proxy.resets == [reset]
    users = rig.backend.users()
    assert sorted(users) == ["ann@contoso.com", "warm@contoso.com"]
    assert response.json()["id"] == users["ann@contoso.com"].id


async def test_a_user_update_reset_after_modyo_applied_it_is_answered_200(rig: Rig) -> None:
    user_id = await _user(rig, "ann@contoso.com")
    reset = rig.reset_next("user.update", id=user_id)
    patch = entra.patch(entra.op("Replace", "name.familyName", "Lee"))
    response = await rig.scim.patch(f"/Users/{user_id}", json=patch)
    assert response.status_code == 200, response.text
    assert response.json()["name"]["familyName"] == "Lee"
    stored = rig.backend.user(user_id)
    assert stored is not None and stored.family == "Lee"
    assert rig.proxy.resets == [reset]


async def test_a_user_delete_reset_after_modyo_applied_it_is_answered_204(rig: Rig) -> None:
    user_id = await _user(rig, "ann@contoso.com")
    reset = rig.reset_next("user.delete", id=user_id)
    response = await rig.scim.delete(f"/Users/{user_id}")
    assert response.status_code == 204, response.text
    assert rig.backend.users() == {}
    rig.backend.assert_deleted(user_id)
    assert rig.proxy.resets == [reset]
    assert (await rig.scim.get(f"/Users/{user_id}")).status_code == 404


async def test_a_group_delete_reset_after_modyo_applied_it_is_answered_204(rig: Rig) -> None:
    group_id = await _group(rig, "Sales")
    rig.reset_next("group.delete", id=group_id)
    response = await rig.scim.delete(f"/Groups/{group_id}")
    assert response.status_code == 204, response.text
    assert rig.backend.held_groups() == [] and len(rig.proxy.resets) == 1


async def test_a_member_add_reset_after_modyo_applied_it_is_answered_204(rig: Rig) -> None:
    user_id = await _user(rig, "ann@contoso.com")
    group_id = await _group(rig, "Sales")
    rig.reset_next("members.add", id=group_id)
    patch = entra.patch(entra.op("Add", "members", entra.members(user_id)))
    response = await rig.scim.patch(f"/Groups/{group_id}", json=patch)
    assert response.status_code == 204, response.text
    stored = rig.backend.group(group_id)
    assert stored is not None and stored.member_ids == {user_id}
    assert len(rig.proxy.resets) == 1


async def test_a_member_remove_reset_after_modyo_applied_it_is_answered_204(rig: Rig) -> None:
    user_id = await _user(rig, "ann@contoso.com")
    group_id = await _group(rig, "Sales", user_id)
    rig.reset_next("members.remove", id=group_id, member=user_id)
    patch = entra.patch(entra.op("Remove", "members", entra.members(user_id)))
    response = await rig.scim.patch(f"/Groups/{group_id}", json=patch)
    assert response.status_code == 204, response.text
    stored = rig.backend.group(group_id)
    assert stored is not None and stored.member_ids == set()
    assert len(rig.proxy.resets) == 1


async def test_a_group_create_and_rename_reset_after_modyo_applied_them(rig: Rig) -> None:
    await _group(rig, "Warm")
    rig.reset_next("group.create")
    created = await rig.scim.post("/Groups", json=entra.group("Sales"))
    assert created.status_code == 201, created.text
    group_id = created.json()["id"]
    rig.reset_next("group.update", id=group_id)
    patch = entra.patch(entra.op("Replace", "displayName", "Sales EMEA"))
    assert (await rig.scim.patch(f"/Groups/{group_id}", json=patch)).status_code == 204
    assert sorted(rig.backend.groups()) == ["Sales EMEA", "Warm"]
    assert len(rig.proxy.resets) == 2


async def test_a_provisioning_history_under_resets_ends_exactly_as_intended(rig: Rig) -> None:
    """300 users and 15 groups created, half the users disabled, members added and removed,
    a third of the users and groups deleted, while the proxy resets 5% of the write
    connections after Modyo applied them. Entra re-sends what got a 5xx (as it does)."""
    rig.proxy.reset_share(0.05, seed=11, methods=write_methods(rig.backend.api))
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
    by_name = rig.backend.users()
    assert set(by_name) == {
        f"user{n}@contoso.com" for n in range(300) if str(users[n]) not in deleted_users
    }
    for n in range(300):
        member = by_name.get(f"user{n}@contoso.com")
        if member is not None:
            assert member.active is (n % 2 == 0)
    for user_id in deleted_users:
        rig.backend.assert_deleted(user_id)
    remaining = {g: group_id for g, group_id in enumerate(groups) if g % 3}
    held = {group.id: group for group in rig.backend.held_groups()}
    assert set(remaining.values()) == set(held)
    for g, group_id in remaining.items():
        assert held[group_id].member_ids == expected[g] - deleted_users
