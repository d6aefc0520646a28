"""The SCIM side under every shape Modyo documents for its answers (docs/design/modyo-contract.md
C8, C13): error envelopes as objects, translated strings or the 2022 hash (422); creates
answered 200 or 201; deletes answered 204 or 200 ``{}``; objects addressed by integer id or
by uuid. Each variant runs Entra's whole lifecycle and must end with the same answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bridge.modyo.fake import FakeModyo, FaultyModyo, Variant
from tests import entra
from tests.harness import MODYO_TOKEN, assert_scim_error, bridge_client, make_settings

VARIANTS = [
    Variant(),
    Variant(errors="strings"),
    Variant(errors="hash"),
    Variant(create_status=200, delete_status=200),
    Variant(uuid_ids=True),
    Variant(errors="strings", create_status=200, delete_status=200, uuid_ids=True),
]


def _name(variant: Variant) -> str:
    ids = "uuid" if variant.uuid_ids else "int"
    return f"{variant.errors}-{variant.create_status}-{variant.delete_status}-{ids}"


@pytest.fixture(params=VARIANTS, ids=_name)
def fake(request: pytest.FixtureRequest) -> FakeModyo:
    variant: Variant = request.param
    return FakeModyo(token=MODYO_TOKEN, variant=variant)


@pytest.fixture
async def modyo(fake: FakeModyo) -> FaultyModyo:
    return FaultyModyo(fake)


@pytest.fixture
async def scim(modyo: FaultyModyo) -> AsyncIterator[httpx.AsyncClient]:
    async with bridge_client(modyo, make_settings()) as client:
        yield client


def _member(fake: FakeModyo, user_name: str) -> dict[str, object]:
    return next(m for m in fake.team_members.values() if m["username"] == user_name)


async def test_the_user_lifecycle_is_the_same_under_every_variant(
    scim: httpx.AsyncClient, fake: FakeModyo
) -> None:
    query = {"filter": 'userName eq "ana@contoso.com"'}
    assert (await scim.get("/Users", params=query)).json()["totalResults"] == 0
    created = await scim.post("/Users", json=entra.user("ana@contoso.com", given="Ana"))
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    assert user_id == str(fake.external_id(_member(fake, "ana@contoso.com")))
    assert created.headers["location"].endswith(f"/Users/{user_id}")
    assert (await scim.get(f"/Users/{user_id}")).json()["userName"] == "ana@contoso.com"
    found = (await scim.get("/Users", params=query)).json()
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == user_id

    duplicate = await scim.post("/Users", json=entra.user("ana@contoso.com", given="Other"))
    assert "userName" in assert_scim_error(duplicate, 409, "uniqueness")["detail"]
    email_taken = await scim.post(
        "/Users", json=entra.user("x@contoso.com", email="ana@contoso.com")
    )
    assert_scim_error(email_taken, 409, "uniqueness")

    patch = entra.patch(
        entra.op("Replace", "name.familyName", "Diaz"), entra.op("Replace", "active", "False")
    )
    patched = await scim.patch(f"/Users/{user_id}", json=patch)
    assert patched.status_code == 200 and patched.json()["active"] is False
    assert _member(fake, "ana@contoso.com")["last_name"] == "Diaz"
    enable = entra.patch(entra.op("replace", "active", True))
    assert (await scim.patch(f"/Users/{user_id}", json=enable)).json()["active"] is True
    refused = await scim.patch(
        f"/Users/{user_id}", json=entra.patch(entra.op("Replace", "userName", "has space"))
    )
    assert "userName" in assert_scim_error(refused, 400, "invalidValue")["detail"]

    assert (await scim.delete(f"/Users/{user_id}")).status_code == 204
    assert_scim_error(await scim.get(f"/Users/{user_id}"), 404)
    assert_scim_error(await scim.delete(f"/Users/{user_id}"), 404)
    assert fake.team_members == {}


async def test_the_group_lifecycle_is_the_same_under_every_variant(
    scim: httpx.AsyncClient, fake: FakeModyo
) -> None:
    users = []
    for n in range(3):
        response = await scim.post("/Users", json=entra.user(f"u{n}@contoso.com"))
        assert response.status_code == 201, response.text
        users.append(response.json()["id"])
    created = await scim.post("/Groups", json=entra.group("Sales"))
    assert created.status_code == 201, created.text
    group_id = created.json()["id"]
    params = {"filter": 'displayName eq "Sales"', "excludedAttributes": "members"}
    assert (await scim.get("/Groups", params=params)).json()["Resources"][0]["id"] == group_id
    assert_scim_error(await scim.post("/Groups", json=entra.group("Sales")), 409, "uniqueness")

    add = entra.patch(entra.op("Add", "members", entra.members(*users)))
    assert (await scim.patch(f"/Groups/{group_id}", json=add)).status_code == 204
    remove = entra.patch(entra.op("remove", f'members[value eq "{users[0]}"]', no_value=True))
    assert (await scim.patch(f"/Groups/{group_id}", json=remove)).status_code == 204
    listed = (await scim.get(f"/Groups/{group_id}")).json()["members"]
    assert sorted(member["value"] for member in listed) == sorted(users[1:])
    unknown = entra.patch(entra.op("Add", "members", entra.members("no-such-user")))
    assert_scim_error(await scim.patch(f"/Groups/{group_id}", json=unknown), 400, "invalidValue")

    other = (await scim.post("/Groups", json=entra.group("Support"))).json()["id"]
    rename = entra.patch(entra.op("Replace", "displayName", "Sales"))
    assert_scim_error(await scim.patch(f"/Groups/{other}", json=rename), 409, "uniqueness")

    assert (await scim.delete(f"/Groups/{group_id}")).status_code == 204
    assert_scim_error(await scim.delete(f"/Groups/{group_id}"), 404)
    assert sorted(group["name"] for group in fake.groups.values()) == ["Support"]
    assert len(fake.team_members) == 3  # deleting a group never deletes its users


async def test_a_lost_create_is_adopted_under_every_variant(
    modyo: FaultyModyo, fake: FakeModyo
) -> None:
    modyo.lose_next("POST /team_members")
    async with bridge_client(modyo, make_settings()) as scim:
        response = await scim.post("/Users", json=entra.user("lost@contoso.com"))
    assert response.status_code == 201, response.text
    assert response.json()["id"] == str(fake.external_id(_member(fake, "lost@contoso.com")))
    assert len(fake.team_members) == 1


def test_the_variants_cover_every_documented_shape() -> None:
    shapes = {(v.errors, v.create_status, v.delete_status, v.uuid_ids) for v in VARIANTS}
    for axis, values in enumerate((("objects", "strings", "hash"), (200, 201), (200, 204))):
        assert {shape[axis] for shape in shapes} == set(values)
    assert {shape[3] for shape in shapes} == {False, True}
