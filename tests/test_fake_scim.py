"""The fake of Modyo's own SCIM server (``FakeModyoScim``): the documented behaviour and gaps
(docs/design/modyo-contract.md §9), each GUESS its docstring names, and the shared surface that
faults, the control plane and both adapters use."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from bridge.modyo.fake import FakeModyoApp, FakeModyoScim, Faults, FaultyModyo, mock_transport
from bridge.modyo.fake.base import FakeResponse
from bridge.modyo.fake.scim_state import ERROR_URN, LIST_URN, PATCH_URN, SCIM_PREFIX
from tests.harness import MODYO_TOKEN, MODYO_URL

AUTH = {"Authorization": f"Bearer {MODYO_TOKEN}"}
SCIM_JSON = "application/scim+json; charset=utf-8"


@pytest.fixture
def fake() -> FakeModyoScim:
    return FakeModyoScim(token=MODYO_TOKEN)


def call(
    fake: FakeModyoScim,
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> FakeResponse:
    raw = b"" if body is None else json.dumps(body).encode()
    return fake.handle(
        method,
        SCIM_PREFIX + path,
        list((query or {}).items()),
        raw,
        AUTH if headers is None else headers,
    )


def user_body(user_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "emails": [{"value": user_name, "type": "work", "primary": True}],
        "name": {"givenName": "Test", "familyName": "User"},
        "active": True,
        **extra,
    }


def make_user(fake: FakeModyoScim, user_name: str, **extra: Any) -> dict[str, Any]:
    response = call(fake, "POST", "/Users", user_body(user_name, **extra))
    assert response.status == 201, response.body
    body: dict[str, Any] = response.body
    return body


def make_group(fake: FakeModyoScim, name: str, **extra: Any) -> dict[str, Any]:
    response = call(fake, "POST", "/Groups", {"displayName": name, **extra})
    assert response.status == 201, response.body
    body: dict[str, Any] = response.body
    return body


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_URN], "Operations": list(operations)}


def assert_error(response: FakeResponse, status: int, scim_type: str | None = None) -> None:
    assert response.status == status, response.body
    assert response.media_type == SCIM_JSON
    assert response.body["schemas"] == [ERROR_URN]
    assert response.body["status"] == str(status)
    assert response.body.get("scimType") == scim_type


def assert_not_scim(response: FakeResponse, status: int) -> None:
    assert response.status == status
    assert response.media_type.startswith("text/html")
    assert isinstance(response.body, str)


# ---------------------------------------------------------------------- documented


def test_a_bad_token_is_401_in_scim_form(fake: FakeModyoScim) -> None:
    assert_error(call(fake, "GET", "/Users", headers={}), 401)
    assert_error(call(fake, "GET", "/Users", headers={"Authorization": "Bearer wrong"}), 401)
    assert fake.calls == {}


def test_every_scim_answer_is_application_scim_json(fake: FakeModyoScim) -> None:
    user = make_user(fake, "ana@contoso.com")
    for response in (
        call(fake, "GET", "/Users"),
        call(fake, "GET", f"/Users/{user['id']}"),
        call(fake, "GET", "/Users/nope"),
        call(fake, "GET", "/Schemas"),
    ):
        assert response.media_type == SCIM_JSON


def test_create_answers_201_with_an_opaque_id_and_offset_timestamps(fake: FakeModyoScim) -> None:
    body = make_user(fake, "ana@contoso.com", externalId="ext-ana")
    assert not body["id"].isdigit() and len(body["id"]) == 36  # a UUID: opaque, not an integer
    assert body["externalId"] == "ext-ana"
    assert body["emails"] == [{"value": "ana@contoso.com", "type": "work", "primary": True}]
    assert body["meta"]["created"].endswith("-03:00")
    assert call(fake, "GET", f"/Users/{body['id']}").body == body


def test_delete_user_fails_with_a_generic_non_scim_error_and_changes_nothing(
    fake: FakeModyoScim,
) -> None:
    user = make_user(fake, "ana@contoso.com")
    assert_not_scim(call(fake, "DELETE", f"/Users/{user['id']}"), 500)
    assert call(fake, "GET", f"/Users/{user['id']}").body == user
    assert fake.calls["DELETE /scim/Users/:id"] == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/Users/x"), ("PUT", "/Groups/x"), ("GET", "/ServiceProviderConfig"),
     ("GET", "/ResourceTypes"), ("DELETE", "/Users"), ("GET", "/Bulk")],
)  # fmt: skip
def test_unlisted_routes_answer_a_non_scim_404(fake: FakeModyoScim, method: str, path: str) -> None:
    assert_not_scim(call(fake, method, path, body={} if method == "PUT" else None), 404)
    assert fake.calls == {}


def test_only_the_two_documented_user_filters_work(fake: FakeModyoScim) -> None:
    ana = make_user(fake, "Ana@Contoso.com", externalId="Ext-Ana")
    make_user(fake, "bob@contoso.com", externalId="ext-bob")

    def ids(text: str) -> list[str]:
        response = call(fake, "GET", "/Users", query={"filter": text})
        assert response.status == 200, response.body
        return [row["id"] for row in response.body["Resources"]]

    assert ids('userName eq "ana@contoso.com"') == [ana["id"]]  # caseExact false
    assert ids('USERNAME eq "ANA@CONTOSO.COM"') == [ana["id"]]
    assert ids('externalId eq "Ext-Ana"') == [ana["id"]]
    assert ids('externalId eq "ext-ana"') == []  # caseExact true
    assert ids('userName eq "nobody"') == []
    for refused in (
        'emails[type eq "work"].value eq "ana@contoso.com"',
        'displayName eq "Ana"',
        'userName eq "a" and active eq true',
        'userName sw "ana"',
        "userName eq ana",
    ):
        assert_error(call(fake, "GET", "/Users", query={"filter": refused}), 400, "invalidFilter")


def test_group_filters_are_ignored_so_every_group_is_listed(fake: FakeModyoScim) -> None:
    make_group(fake, "Sales")
    make_group(fake, "Ops")
    listed = call(fake, "GET", "/Groups", query={"filter": 'displayName eq "Sales"'}).body
    assert [g["displayName"] for g in listed["Resources"]] == ["Sales", "Ops"]


def test_user_patch_applies_only_the_four_documented_attributes(fake: FakeModyoScim) -> None:
    user = make_user(fake, "ana@contoso.com", externalId="ext-ana")
    response = call(
        fake,
        "PATCH",
        f"/Users/{user['id']}",
        patch(
            {"op": "replace", "path": "externalId", "value": "changed"},
            {"op": "replace", "path": "nickName", "value": "Babs"},
            {"op": "replace", "path": "displayName", "value": "Ana D"},
            {"op": "replace", "path": "name.givenName", "value": "Ana"},
            {"op": "replace", "path": "active", "value": False},
        ),
    )
    assert response.status == 200, response.body
    body = response.body
    assert (body["externalId"], body["name"]["givenName"], body["active"]) == (
        "ext-ana",
        "Ana",
        False,
    )
    assert "nickName" not in body and "displayName" not in body


def test_user_patch_forms(fake: FakeModyoScim) -> None:
    user_id = make_user(fake, "ana@contoso.com")["id"]

    def patched(*operations: dict[str, Any]) -> dict[str, Any]:
        response = call(fake, "PATCH", f"/Users/{user_id}", patch(*operations))
        assert response.status == 200, response.body
        body: dict[str, Any] = response.body
        return body

    body = patched({"op": "replace", "value": {"userName": "ana2@contoso.com", "nickName": "x"}})
    assert body["userName"] == "ana2@contoso.com"
    body = patched(
        {"op": "replace", "path": "emails", "value": [{"value": "a@b.c", "type": "work"}]}
    )
    assert body["emails"][0]["value"] == "a@b.c"
    body = patched({"op": "replace", "path": 'emails[type eq "work"].value', "value": "d@e.f"})
    assert body["emails"][0]["value"] == "d@e.f"
    body = patched({"op": "remove", "path": "name.familyName"})
    assert body["name"] == {"givenName": "Test"}
    body = patched({"op": "replace", "path": "name", "value": {"formatted": "A D"}})
    assert body["name"] == {"formatted": "A D"}


@pytest.mark.parametrize(
    ("operation", "scim_type"),
    [
        ({"op": "Replace", "path": "active", "value": False}, "invalidSyntax"),  # Entra's case
        ({"op": "replace", "path": "active", "value": "False"}, "invalidValue"),  # a string
        ({"op": "remove", "path": "userName"}, "mutability"),
        ({"op": "remove", "path": "emails"}, "mutability"),
        ({"op": "replace", "path": "userName", "value": "has space"}, "invalidValue"),
        ({"op": "replace", "path": "emails", "value": []}, "invalidValue"),
        ({"op": "add", "path": "name.givenName"}, "invalidSyntax"),
    ],
)
def test_user_patch_is_strict_and_writes_nothing_when_refused(
    fake: FakeModyoScim, operation: dict[str, Any], scim_type: str
) -> None:
    user = make_user(fake, "ana@contoso.com")
    assert_error(call(fake, "PATCH", f"/Users/{user['id']}", patch(operation)), 400, scim_type)
    assert call(fake, "GET", f"/Users/{user['id']}").body == user


def test_a_patch_without_the_patchop_schema_is_refused(fake: FakeModyoScim) -> None:
    user = make_user(fake, "ana@contoso.com")
    body = {"Operations": [{"op": "replace", "path": "active", "value": False}]}
    assert_error(call(fake, "PATCH", f"/Users/{user['id']}", body), 400, "invalidSyntax")


def test_user_name_and_email_are_unique_ignoring_case(fake: FakeModyoScim) -> None:
    ana = make_user(fake, "ana@contoso.com")
    assert_error(call(fake, "POST", "/Users", user_body("ANA@contoso.com")), 409, "uniqueness")
    other = user_body("other@contoso.com", emails=[{"value": "Ana@Contoso.com", "type": "work"}])
    assert_error(call(fake, "POST", "/Users", other), 409, "uniqueness")
    bob = make_user(fake, "bob@contoso.com")
    rename = patch({"op": "replace", "path": "userName", "value": "ana@CONTOSO.com"})
    assert_error(call(fake, "PATCH", f"/Users/{bob['id']}", rename), 409, "uniqueness")
    own = patch({"op": "replace", "path": "userName", "value": "ANA@contoso.com"})
    assert call(fake, "PATCH", f"/Users/{ana['id']}", own).status == 200
    assert len(fake.users) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"emails": [{"value": "a@b.c"}]},  # no userName
        {"userName": "a@b.c"},  # no email [SCIM L82]
        {"userName": "a b@c.d", "emails": [{"value": "a@b.c"}]},  # a space [ROLES L23]
        {"userName": "a@b.c", "emails": [{"value": "a@b.c"}], "active": "True"},
    ],
)
def test_creates_modyo_refuses_are_400_invalid_value(
    fake: FakeModyoScim, body: dict[str, Any]
) -> None:
    assert_error(call(fake, "POST", "/Users", body), 400, "invalidValue")
    assert fake.users == {}


def test_list_response_paging_clamps_count_at_100(fake: FakeModyoScim) -> None:
    fake.seed_members(120)
    body = call(fake, "GET", "/Users", query={"count": "500"}).body
    assert body["schemas"] == [LIST_URN]
    assert (body["totalResults"], body["itemsPerPage"], body["startIndex"]) == (120, 100, 1)
    tail = call(fake, "GET", "/Users", query={"startIndex": "101", "count": "50"}).body
    assert (tail["itemsPerPage"], tail["startIndex"]) == (20, 101)
    assert tail["Resources"][0]["userName"] == "seed100@example.com"
    assert (
        call(fake, "GET", "/Users", query={"startIndex": "0", "count": "1"}).body["startIndex"] == 1
    )
    none = call(fake, "GET", "/Users", query={"count": "0"}).body
    assert (none["totalResults"], none["Resources"]) == (120, [])


def test_group_create_read_and_excluded_members(fake: FakeModyoScim) -> None:
    ana = make_user(fake, "ana@contoso.com")
    group = make_group(fake, "Sales", externalId="obj-1", members=[{"value": ana["id"]}])
    assert group["members"] == [{"value": ana["id"], "display": "ana@contoso.com", "type": "User"}]
    slim = call(fake, "GET", f"/Groups/{group['id']}", query={"excludedAttributes": "members"})
    assert "members" not in slim.body and slim.body["externalId"] == "obj-1"
    listed = call(fake, "GET", "/Groups", query={"excludedAttributes": "members"}).body
    assert "members" not in listed["Resources"][0]
    assert call(fake, "GET", f"/Users/{ana['id']}").body["groups"] == [
        {"value": group["id"], "display": "Sales", "type": "direct"}
    ]


def test_group_display_names_are_not_unique(fake: FakeModyoScim) -> None:
    make_group(fake, "Sales")
    make_group(fake, "sales")
    assert len(fake.groups) == 2


def test_group_patch_membership_forms(fake: FakeModyoScim) -> None:
    ana, bob, eva = (make_user(fake, f"{n}@contoso.com")["id"] for n in ("ana", "bob", "eva"))
    group_id = make_group(fake, "Sales")["id"]

    def patched(*operations: dict[str, Any]) -> set[str]:
        response = call(fake, "PATCH", f"/Groups/{group_id}", patch(*operations))
        assert response.status == 204, response.body
        return fake.group_member_ids(group_id)

    assert patched({"op": "add", "path": "members", "value": [{"value": ana}, {"value": bob}]}) == {
        ana,
        bob,
    }
    assert patched({"op": "remove", "path": f'members[value eq "{ana}"]'}) == {bob}
    assert patched({"op": "remove", "path": f'members[value eq "{eva}"]'}) == {bob}  # no-op
    assert patched({"op": "replace", "path": "members", "value": [{"value": eva}]}) == {eva}
    assert patched({"op": "add", "value": {"members": [{"value": ana}]}}) == {ana, eva}
    # RFC 7644 §3.5.2.2: remove members without a filter removes them all, a value list or not
    assert patched({"op": "remove", "path": "members", "value": [{"value": ana}]}) == set()
    assert call(fake, "GET", f"/Users/{ana}").body.get("groups") is None


def test_group_patch_operations_apply_in_order(fake: FakeModyoScim) -> None:
    ana, bob = (make_user(fake, f"{n}@contoso.com")["id"] for n in ("ana", "bob"))
    group_id = make_group(fake, "Sales", members=[{"value": ana}])["id"]
    add_bob = {"op": "add", "path": "members", "value": [{"value": bob}]}
    remove = {"op": "remove", "path": f'members[value eq "{bob}"]'}
    cases: list[tuple[list[dict[str, Any]], set[str]]] = [
        ([add_bob, remove], {ana}),
        ([remove, add_bob], {ana, bob}),
        ([{"op": "remove", "path": "members"}, add_bob], {bob}),
        ([{"op": "replace", "path": "members", "value": [{"value": ana}]}, remove], {ana}),
    ]
    for operations, expected in cases:
        assert call(fake, "PATCH", f"/Groups/{group_id}", patch(*operations)).status == 204
        assert fake.group_member_ids(group_id) == expected, operations
        assert {g["value"] for g in call(fake, "GET", f"/Users/{ana}").body.get("groups", [])} == (
            {group_id} if ana in expected else set()
        )


def test_group_patch_renames_ignores_external_id_and_refuses_unknown_members(
    fake: FakeModyoScim,
) -> None:
    ana = make_user(fake, "ana@contoso.com")["id"]
    group_id = make_group(fake, "Sales", externalId="obj-1")["id"]
    rename = patch(
        {"op": "replace", "path": "displayName", "value": "Sales EU"},
        {"op": "replace", "path": "externalId", "value": "obj-2"},
    )
    assert call(fake, "PATCH", f"/Groups/{group_id}", rename).status == 204
    assert (fake.groups[group_id]["displayName"], fake.groups[group_id]["externalId"]) == (
        "Sales EU",
        "obj-1",
    )
    bad = patch(
        {"op": "replace", "path": "displayName", "value": "Renamed"},
        {"op": "add", "path": "members", "value": [{"value": ana}, {"value": "nobody"}]},
    )
    assert_error(call(fake, "PATCH", f"/Groups/{group_id}", bad), 400, "invalidValue")
    assert fake.groups[group_id]["displayName"] == "Sales EU"
    assert fake.group_member_ids(group_id) == set()


def test_deleting_a_group_keeps_its_users_and_their_other_groups(fake: FakeModyoScim) -> None:
    ana = make_user(fake, "ana@contoso.com")["id"]
    first = make_group(fake, "One", members=[{"value": ana}])["id"]
    second = make_group(fake, "Two", members=[{"value": ana}])["id"]
    assert call(fake, "DELETE", f"/Groups/{first}").status == 204
    assert_error(call(fake, "GET", f"/Groups/{first}"), 404)
    assert [g["value"] for g in call(fake, "GET", f"/Users/{ana}").body["groups"]] == [second]


def test_schemas_lists_the_user_and_group_core_schemas(fake: FakeModyoScim) -> None:
    body = call(fake, "GET", "/Schemas").body
    assert [s["id"] for s in body["Resources"]] == [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:core:2.0:Group",
    ]


def test_a_membership_change_in_a_50000_member_group_is_one_call(fake: FakeModyoScim) -> None:
    group_id = fake.seed_group("Huge")
    fake.seed_group_members(group_id, 50_000)
    ana = make_user(fake, "ana@contoso.com")["id"]
    fake.reset_calls()
    add = patch({"op": "add", "path": "members", "value": [{"value": ana}]})
    assert call(fake, "PATCH", f"/Groups/{group_id}", add).status == 204
    assert call(fake, "PATCH", f"/Groups/{group_id}", patch(
        {"op": "remove", "path": f'members[value eq "{ana}"]'})).status == 204  # fmt: skip
    assert fake.calls == {"PATCH /scim/Groups/:id": 2}
    assert len(fake.group_member_ids(group_id)) == 50_000


def test_calls_are_counted_by_route_and_scripts_answer_without_applying(
    fake: FakeModyoScim,
) -> None:
    fake.script("POST /scim/Users", FakeResponse(503, {"errors": ["down"]}))
    assert call(fake, "POST", "/Users", user_body("ana@contoso.com")).status == 503
    assert fake.users == {}
    make_user(fake, "ana@contoso.com")
    assert fake.calls == {"POST /scim/Users": 2}
    assert fake.route_name("PATCH", f"{SCIM_PREFIX}/Groups/abc") == "PATCH /scim/Groups/:id"
    assert fake.route_name("PUT", f"{SCIM_PREFIX}/Users/abc") is None
    fake.reset_calls()
    assert fake.calls == {}


# ---------------------------------------------------------------------- shared surface


async def test_faults_and_both_adapters_serve_the_scim_fake(fake: FakeModyoScim) -> None:
    service = FaultyModyo(fake, Faults(throttle_rate=1.0, retry_after_seconds=3))
    async with httpx.AsyncClient(
        transport=mock_transport(service, MODYO_URL), base_url=MODYO_URL, headers=AUTH
    ) as client:
        throttled = await client.get(f"{SCIM_PREFIX}/Users")
        assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "3")
        service.configure(Faults())
        listed = await client.get(f"{SCIM_PREFIX}/Users")
        assert listed.headers["content-type"] == SCIM_JSON
        deleted = await client.delete(f"{SCIM_PREFIX}/Users/x")
        assert deleted.headers["content-type"].startswith("text/html")
    fake.reset_calls()
    app = FakeModyoApp(FaultyModyo(fake))
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url=MODYO_URL, headers=AUTH
        ) as client,
    ):
        seeded = await client.post(
            "/__fake__/seed", json={"users": 3, "groups": [{"name": "G", "members": 2}]}
        )
        assert seeded.status_code == 201
        users, groups = seeded.json()["users"], seeded.json()["groups"]
        assert [u["username"] for u in users] == [f"seed{n}@example.com" for n in range(3)]
        group = await client.get(f"{SCIM_PREFIX}/Groups/{groups[0]['id']}")
        assert group.headers["content-type"] == SCIM_JSON
        assert [m["value"] for m in group.json()["members"]] == [u["id"] for u in users[:2]]
        calls = (await client.get("/__fake__/calls")).json()
        assert calls["calls"] == {"GET /scim/Groups/:id": 1}
