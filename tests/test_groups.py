"""/Groups: Entra's group requests (entra-scim-behaviour.md §2 R15-R22, §4), over the real app."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bridge.modyo.fake import FakeModyo, mock_transport
from bridge.scim.requests import PAST_EVERY_LISTING
from tests import entra
from tests.backends import Backend, cost, differs
from tests.conftest import MODYO_URL, assert_scim_error, create_group, create_user
from tests.hostile import ABSURD_START_INDEXES
from tests.scim_mode import Recording

pytestmark = pytest.mark.upstreams("rest", "scim")


async def _users(scim: httpx.AsyncClient, *names: str) -> list[str]:
    return [(await create_user(scim, f"{name}@contoso.com"))["id"] for name in names]


async def _member_ids(scim: httpx.AsyncClient, group_id: str) -> set[str]:
    body = (await scim.get(f"/Groups/{group_id}")).json()
    return {member["value"] for member in body.get("members", [])}


async def _patch(
    scim: httpx.AsyncClient, group_id: str, *operations: dict[str, Any]
) -> httpx.Response:
    return await scim.patch(f"/Groups/{group_id}", json=entra.patch(*operations))


async def test_create_accepts_microsofts_schema_urn_and_returns_201(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    response = await scim.post("/Groups", json=entra.group("Sales", external_id="obj-1"))
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"].endswith(f"/Groups/{body['id']}")
    assert (body["displayName"], body["externalId"]) == ("Sales", "obj-1")
    assert body["meta"]["resourceType"] == "Group"
    stored = backend.group(body["id"])
    assert stored is not None and stored.display_name == "Sales"


async def test_create_with_an_unknown_schema_urn_and_members(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    ana, bob = await _users(scim, "ana", "bob")
    payload = entra.group("Ops")
    payload["schemas"].append("urn:example:params:scim:schemas:extension:custom:2.0:Group")
    payload["members"] = entra.members(ana, bob)
    response = await scim.post("/Groups", json=payload)
    assert response.status_code == 201, response.text
    assert {m["value"] for m in response.json()["members"]} == {ana, bob}
    stored = backend.group(response.json()["id"])
    assert stored is not None and stored.member_ids == {ana, bob}


async def test_create_with_an_unknown_member_creates_nothing(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    payload = entra.group("Ghosts") | {"members": entra.members("424242")}
    body = assert_scim_error(await scim.post("/Groups", json=payload), 400, "invalidValue")
    assert "424242" in body["detail"]
    assert backend.held_groups() == []


async def test_duplicate_display_name_is_409_case_insensitive(scim: httpx.AsyncClient) -> None:
    await create_group(scim, "Finance")
    body = assert_scim_error(
        await scim.post("/Groups", json=entra.group("FINANCE")), 409, "uniqueness"
    )
    assert "displayName" in body["detail"]


async def test_entra_group_match_excludes_members_and_reads_none(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    """R15: ``excludedAttributes=members&filter=displayName eq "…"``: one call, no member read."""
    group = await create_group(scim, "Marketing")
    [ana] = await _users(scim, "ana")
    await _patch(scim, group["id"], entra.op("Add", "members", entra.members(ana)))
    backend.reset_calls()
    response = await scim.get(
        "/Groups", params={"excludedAttributes": "members", "filter": 'displayName eq "marketing"'}
    )
    body = response.json()
    assert body["totalResults"] == 1 and body["Resources"][0]["id"] == group["id"]
    assert "members" not in body["Resources"][0]
    assert backend.calls() == cost("entra group query", backend.api)
    backend.reset_calls()
    read = await scim.get(f"/Groups/{group['id']}", params={"excludedAttributes": "members"})
    assert "members" not in read.json() and backend.calls() == {"group.read": 1}


@pytest.mark.parametrize(
    "expression",
    [
        'displayName eq "Legal"',
        'DisplayName eq "LEGAL"',
        "displayName eq Legal",
        'externalId eq "obj-Legal"',
        'displayName eq "Legal" and externalId eq "obj-Legal"',
    ],
)
async def test_group_filters(scim: httpx.AsyncClient, expression: str) -> None:
    legal = await create_group(scim, "Legal")
    await create_group(scim, "Legal Ops")
    body = (await scim.get("/Groups", params={"filter": expression})).json()
    assert [group["id"] for group in body["Resources"]] == [legal["id"]]


async def test_group_filter_by_id_and_no_match(scim: httpx.AsyncClient) -> None:
    legal = await create_group(scim, "Legal")
    body = (await scim.get("/Groups", params={"filter": f'id eq "{legal["id"]}"'})).json()
    assert body["totalResults"] == 1
    for expression in (
        'displayName eq "Nope"',
        'id eq "99999"',
        'displayName eq "Legal" and externalId eq "x"',
    ):
        assert (await scim.get("/Groups", params={"filter": expression})).json()[
            "totalResults"
        ] == 0


@pytest.mark.parametrize("expression", ['members co "1"', 'userName eq "x"', "members pr"])
async def test_unsupported_group_filters_are_400(scim: httpx.AsyncClient, expression: str) -> None:
    assert_scim_error(
        await scim.get("/Groups", params={"filter": expression}), 400, "invalidFilter"
    )


async def test_groups_page_with_start_index_and_count(scim: httpx.AsyncClient) -> None:
    ids = [(await create_group(scim, f"Team {n:02}"))["id"] for n in range(7)]
    first = (await scim.get("/Groups", params={"count": 5, "excludedAttributes": "members"})).json()
    second = (await scim.get("/Groups", params={"startIndex": 6, "count": 5})).json()
    assert first["totalResults"] == second["totalResults"] == 7
    assert [g["id"] for g in first["Resources"] + second["Resources"]] == ids


@pytest.mark.parametrize("start", ABSURD_START_INDEXES, ids=["int64", "5000-digits"])
async def test_a_start_index_past_every_listing_is_an_empty_page_of_groups(
    backend: Backend, start: str
) -> None:
    """As for users (tests/test_user_queries.py): an empty page with the total, from one
    count-only listing call, in both modes."""
    backend.seed_group("Team", backend.seed_users(2))
    recording = Recording(mock_transport(backend.modyo, MODYO_URL))
    async with backend.client(transport=recording) as scim:
        response = await scim.get("/Groups", params={"startIndex": start})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["totalResults"], body["itemsPerPage"], body["Resources"]) == (1, 0, [])
    assert body["startIndex"] == PAST_EVERY_LISTING
    assert len(recording.sent) == 1, recording.sent
    numbers = [int(value) for _, value in recording.sent[0].params if value.isdigit()]
    assert numbers and max(numbers) <= 1, recording.sent


async def test_members_are_listed_completely_page_by_page(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    group = await create_group(scim, "Big")
    seeded = backend.seed_group_members(group["id"], 250)
    backend.reset_calls()
    body = (await scim.get(f"/Groups/{group['id']}")).json()
    assert {m["value"] for m in body["members"]} == {str(i) for i in seeded}
    member = body["members"][0]
    assert set(member) == {"value", "$ref", "display", "type"}
    assert member["$ref"].endswith(f"/Users/{member['value']}") and member["type"] == "User"
    assert backend.calls() == cost("read a 250-member group", backend.api)


async def test_add_one_and_many_members_then_read_back(scim: httpx.AsyncClient) -> None:
    """R19: one operation may carry several members."""
    group = await create_group(scim, "Readers")
    ana, bob, eva = await _users(scim, "ana", "bob", "eva")
    response = await _patch(scim, group["id"], entra.op("Add", "members", entra.members(ana)))
    assert response.status_code == 204 and response.content == b""
    await _patch(scim, group["id"], entra.op("Add", "members", entra.members(bob, eva)))
    assert await _member_ids(scim, group["id"]) == {ana, bob, eva}


async def test_remove_with_a_value_list_removes_only_the_listed_members(
    scim: httpx.AsyncClient,
) -> None:
    """R20 default form: treating it as "remove all" would wipe the group."""
    group = await create_group(scim, "Keepers")
    ana, bob, eva = await _users(scim, "ana", "bob", "eva")
    await _patch(scim, group["id"], entra.op("Add", "members", entra.members(ana, bob, eva)))
    response = await _patch(scim, group["id"], entra.op("Remove", "members", entra.members(bob)))
    assert response.status_code == 204
    assert await _member_ids(scim, group["id"]) == {ana, eva}


async def test_remove_by_member_filter_path(scim: httpx.AsyncClient) -> None:
    """R20 with aadOptscim062020: ``members[value eq "id"]``."""
    group = await create_group(scim, "Filtered")
    ana, bob = await _users(scim, "ana", "bob")
    await _patch(scim, group["id"], entra.op("Add", "members", entra.members(ana, bob)))
    await _patch(scim, group["id"], entra.op("remove", f'members[value eq "{ana}"]', no_value=True))
    assert await _member_ids(scim, group["id"]) == {bob}


async def test_remove_members_without_value_removes_all(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    group = await create_group(scim, "Everyone")
    ids = await _users(scim, "ana", "bob")
    await _patch(scim, group["id"], entra.op("Add", "members", entra.members(*ids)))
    await _patch(scim, group["id"], entra.op("Remove", "members", no_value=True))
    assert await _member_ids(scim, group["id"]) == set()
    assert all(backend.user(user_id) is not None for user_id in ids)  # users stay


async def test_replace_members_has_set_semantics(scim: httpx.AsyncClient) -> None:
    group = await create_group(scim, "Exact")
    ana, bob, eva = await _users(scim, "ana", "bob", "eva")
    await _patch(scim, group["id"], entra.op("Add", "members", entra.members(ana, bob)))
    await _patch(scim, group["id"], entra.op("Replace", "members", entra.members(bob, eva)))
    assert await _member_ids(scim, group["id"]) == {bob, eva}


async def test_pathless_add_and_replace_with_members(scim: httpx.AsyncClient) -> None:
    group = await create_group(scim, "Pathless")
    ana, bob = await _users(scim, "ana", "bob")
    await _patch(scim, group["id"], entra.op("add", value={"members": entra.members(ana)}))
    assert await _member_ids(scim, group["id"]) == {ana}
    await _patch(
        scim,
        group["id"],
        entra.op("replace", value={"members": entra.members(bob), "displayName": "P2"}),
    )
    body = (await scim.get(f"/Groups/{group['id']}")).json()
    assert body["displayName"] == "P2" and {m["value"] for m in body["members"]} == {bob}


async def test_rename_and_external_id(scim: httpx.AsyncClient, backend: Backend) -> None:
    """R18: ``Replace displayName`` answers 204; attribute names are case-insensitive.
    (scim mode: externalId is set once, a change is 400 before any write.)"""
    group = await create_group(scim, "Old Name")
    backend.reset_calls()
    patchable = differs("externalId patchable", backend.api)
    external_id = "obj-new" if patchable else group["externalId"]
    response = await _patch(
        scim,
        group["id"],
        entra.op("Replace", "displayName", "New Name"),
        entra.op("replace", "ExternalId", external_id),
    )
    assert response.status_code == 204
    if patchable:
        assert backend.calls() == cost("group rename", backend.api)
    body = (await scim.get(f"/Groups/{group['id']}")).json()
    assert (body["displayName"], body["externalId"]) == ("New Name", external_id)
    if not patchable:
        refused = await _patch(scim, group["id"], entra.op("replace", "externalId", "obj-new"))
        assert_scim_error(refused, 400, "invalidValue")
        assert (await scim.get(f"/Groups/{group['id']}")).json()["externalId"] == external_id


async def test_a_rename_costs(scim: httpx.AsyncClient, backend: Backend) -> None:
    group = await create_group(scim, "Old Name")
    backend.reset_calls()
    response = await _patch(scim, group["id"], entra.op("Replace", "displayName", "New Name"))
    assert response.status_code == 204
    assert backend.calls() == cost("group rename", backend.api)


async def test_rename_to_a_taken_name_is_409(scim: httpx.AsyncClient) -> None:
    await create_group(scim, "Taken")
    group = await create_group(scim, "Free")
    response = await _patch(scim, group["id"], entra.op("Replace", "displayName", "taken"))
    assert_scim_error(response, 409, "uniqueness")


async def test_adding_a_member_already_in_or_removing_one_not_in_writes_nothing(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    group = await create_group(scim, "Idempotent")
    ana, bob = await _users(scim, "ana", "bob")
    await _patch(scim, group["id"], entra.op("Add", "members", entra.members(ana)))
    backend.reset_calls()
    assert (
        await _patch(scim, group["id"], entra.op("Add", "members", entra.members(ana)))
    ).status_code == 204
    assert (
        await _patch(scim, group["id"], entra.op("Remove", "members", entra.members(bob)))
    ).status_code == 204
    assert backend.writes() == set()
    assert await _member_ids(scim, group["id"]) == {ana}


async def test_a_member_that_does_not_exist_is_400_and_nothing_is_written(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    """The whole PATCH is validated before the first write: the rename is not applied."""
    group = await create_group(scim, "Strict")
    [ana] = await _users(scim, "ana")
    backend.reset_calls()
    response = await _patch(
        scim,
        group["id"],
        entra.op("Replace", "displayName", "Renamed"),
        entra.op("Add", "members", entra.members(ana, "777777", "not-an-id")),
    )
    body = assert_scim_error(response, 400, "invalidValue")
    assert (
        "777777" in body["detail"] and "not-an-id" in body["detail"] and ana not in body["detail"]
    )
    assert backend.writes() == set()
    stored = backend.group(group["id"])
    assert stored is not None and stored.display_name == "Strict"


@pytest.mark.parametrize(
    ("operation", "scim_type"),
    [
        (entra.op("Add", "members", [{"value": "1", "type": "Group"}]), "invalidValue"),
        (entra.op("Add", "members", [{"display": "no value"}]), "invalidValue"),
        (entra.op("Add", "members", ["bare-string"]), "invalidValue"),
        (entra.op("remove", 'members[display eq "x"]', no_value=True), "invalidFilter"),
        (entra.op("replace", 'members[value eq "1"]', entra.members("2")), "invalidPath"),
        (entra.op("Replace", "members.value", "1"), "invalidPath"),
        (entra.op("Remove", "displayName", no_value=True), "mutability"),
        (entra.op("Zap", "members", entra.members("1")), "invalidValue"),
    ],
)
async def test_member_operations_the_bridge_cannot_honour_are_400(
    scim: httpx.AsyncClient, backend: Backend, operation: dict[str, Any], scim_type: str
) -> None:
    group = await create_group(scim, "Picky")
    backend.reset_calls()
    assert_scim_error(await _patch(scim, group["id"], operation), 400, scim_type)
    assert backend.writes() == set()


async def test_patch_of_a_missing_group_is_404(scim: httpx.AsyncClient) -> None:
    [ana] = await _users(scim, "ana")
    for operation in (
        entra.op("Add", "members", entra.members(ana)),
        entra.op("Remove", "members", entra.members(ana)),
        entra.op("Replace", "displayName", "X"),
    ):
        assert_scim_error(await _patch(scim, "424242", operation), 404)


async def test_a_failure_part_way_names_what_was_applied_and_a_resend_converges(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    group = await create_group(scim, "Half")
    ana, bob = await _users(scim, "ana", "bob")
    await _patch(scim, group["id"], entra.op("Add", "members", entra.members(bob)))
    backend.script("members.add", backend.failure(500, "boom"))
    request = (
        entra.op("Replace", "displayName", "Half Renamed"),
        entra.op("Add", "members", entra.members(ana)),
        entra.op("Remove", "members", entra.members(bob)),
    )
    response = await _patch(scim, group["id"], *request)
    body = assert_scim_error(response, 502)
    assert "Applied before the failure: update displayName" in body["detail"]
    assert "Not applied: add 1 member(s), remove 1 member(s)" in body["detail"]
    stored = backend.group(group["id"])
    assert stored is not None and stored.display_name == "Half Renamed"
    assert (await _patch(scim, group["id"], *request)).status_code == 204
    body = (await scim.get(f"/Groups/{group['id']}")).json()
    assert body["displayName"] == "Half Renamed" and {m["value"] for m in body["members"]} == {ana}


async def test_put_replaces_name_and_members(scim: httpx.AsyncClient, backend: Backend) -> None:
    group = await create_group(scim, "Before")
    ana, bob = await _users(scim, "ana", "bob")
    await _patch(scim, group["id"], entra.op("Add", "members", entra.members(ana)))
    replacement: dict[str, Any] = {
        "schemas": [entra.GROUP_URN],
        "displayName": "After",
        "members": entra.members(bob),
    }
    if not differs("externalId patchable", backend.api):
        refused = await scim.put(f"/Groups/{group['id']}", json=replacement)  # clears it
        assert_scim_error(refused, 400, "invalidValue")
        assert (await _member_ids(scim, group["id"])) == {ana}
        replacement["externalId"] = group["externalId"]
    response = await scim.put(f"/Groups/{group['id']}", json=replacement)
    assert response.status_code == 200, response.text
    assert response.json()["displayName"] == "After"
    assert {m["value"] for m in response.json()["members"]} == {bob}


async def test_delete_group_keeps_its_users(scim: httpx.AsyncClient, backend: Backend) -> None:
    """R21: 204; deleting a group never deletes its users."""
    group = await create_group(scim, "Doomed")
    [ana] = await _users(scim, "ana")
    await _patch(scim, group["id"], entra.op("Add", "members", entra.members(ana)))
    assert (await scim.delete(f"/Groups/{group['id']}")).status_code == 204
    assert_scim_error(await scim.get(f"/Groups/{group['id']}"), 404)
    assert (await scim.get(f"/Users/{ana}")).status_code == 200
    assert backend.user(ana) is not None


async def test_a_deleted_user_leaves_its_groups(scim: httpx.AsyncClient, backend: Backend) -> None:
    one, two = await create_group(scim, "One"), await create_group(scim, "Two")
    ana, bob = await _users(scim, "ana", "bob")
    for group in (one, two):
        await _patch(scim, group["id"], entra.op("Add", "members", entra.members(ana, bob)))
    assert (await scim.delete(f"/Users/{ana}")).status_code == 204
    for group in (one, two):
        assert await _member_ids(scim, group["id"]) == {bob}
        stored = backend.group(group["id"])
        assert stored is not None and stored.member_ids == {bob}
    backend.assert_deleted(ana)


async def test_one_member_change_costs_the_same_at_fifty_thousand_members(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    """O(k) Modyo calls, flat across group sizes, and the member list is never read."""
    empty, huge = await create_group(scim, "Empty"), await create_group(scim, "Huge")
    backend.seed_group_members(huge["id"], 50_000)
    [ana] = await _users(scim, "ana")

    async def spent(group_id: str, operation: dict[str, Any]) -> dict[str, int]:
        backend.reset_calls()
        assert (await _patch(scim, group_id, operation)).status_code == 204
        return dict(backend.calls())

    for operation in (
        entra.op("Add", "members", entra.members(ana)),
        entra.op("Remove", "members", entra.members(ana)),
        entra.op("remove", f'members[value eq "{ana}"]', no_value=True),
    ):
        small, large = await spent(empty["id"], operation), await spent(huge["id"], operation)
        assert small == large, operation
        assert "members.read" not in large
    add = await spent(huge["id"], entra.op("Add", "members", entra.members(ana)))
    assert add == cost("add one member", backend.api)
    remove = await spent(huge["id"], entra.op("Remove", "members", entra.members(ana)))
    assert remove == cost("remove one member", backend.api)
    stored = backend.group(huge["id"])
    assert stored is not None and len(stored.member_ids) == 50_000


async def test_adding_twenty_five_members_is_two_calls(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    """Two calls in rest mode; in scim mode each named user is read for its groups."""
    group = await create_group(scim, "TwentyFive")
    ids = await _users(scim, *(f"u{n}" for n in range(25)))
    backend.reset_calls()
    await _patch(scim, group["id"], entra.op("Add", "members", entra.members(*ids)))
    assert backend.calls() == cost("add 25 members", backend.api)
    assert await _member_ids(scim, group["id"]) == set(ids)


async def test_full_entra_group_lifecycle(scim: httpx.AsyncClient, backend: Backend) -> None:
    """Query by name (no members) -> create -> add (single, multi) -> remove (both forms)
    -> rename -> delete, then a user deleted while in a group leaves it cleanly."""
    ana, bob, eva = await _users(scim, "ana", "bob", "eva")
    lookup = {"excludedAttributes": "members", "filter": 'displayName eq "Lifecycle"'}
    assert (await scim.get("/Groups", params=lookup)).json()["totalResults"] == 0
    group = await create_group(scim, "Lifecycle")
    gid = group["id"]
    assert (await scim.get("/Groups", params=lookup)).json()["Resources"][0]["id"] == gid
    await _patch(scim, gid, entra.op("Add", "members", entra.members(ana)))
    await _patch(scim, gid, entra.op("Add", "members", entra.members(bob, eva)))
    await _patch(scim, gid, entra.op("Remove", "members", entra.members(ana)))
    await _patch(scim, gid, entra.op("remove", f'members[value eq "{bob}"]', no_value=True))
    assert await _member_ids(scim, gid) == {eva}
    await _patch(scim, gid, entra.op("Replace", "displayName", "Lifecycle 2"))
    assert (await scim.get(f"/Groups/{gid}")).json()["displayName"] == "Lifecycle 2"
    await scim.delete(f"/Users/{eva}")
    assert await _member_ids(scim, gid) == set()
    assert (await scim.delete(f"/Groups/{gid}")).status_code == 204
    assert backend.held_groups() == []
    assert all(backend.user(user_id) is not None for user_id in (ana, bob))
    backend.assert_deleted(eva)


async def test_a_modyo_that_ignores_group_search_still_yields_the_exact_group() -> None:
    from bridge.modyo.fake import FaultyModyo
    from tests.conftest import MODYO_TOKEN, bridge_client, make_settings

    fake = FakeModyo(token=MODYO_TOKEN, ignore_filters=True)
    for n in range(120):
        fake.seed_group(f"Noise {n}")
    async with bridge_client(FaultyModyo(fake), make_settings()) as scim:
        legal = await create_group(scim, "Legal")
        body = (await scim.get("/Groups", params={"filter": 'displayName eq "LEGAL"'})).json()
        assert [group["id"] for group in body["Resources"]] == [legal["id"]]
        body = (await scim.get("/Groups", params={"filter": 'displayName eq "Legal Ops"'})).json()
        assert body["totalResults"] == 0
