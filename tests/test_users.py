"""/Users: every request Entra sends (entra-scim-behaviour.md §2 R1-R14), over the real app."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bridge.modyo.fake import FakeModyo
from bridge.scim.unheld import forget_noted
from tests import entra
from tests.backends import Backend, cost, differs
from tests.conftest import BASE, assert_scim_error, create_user

pytestmark = pytest.mark.upstreams("rest", "scim")


async def test_test_connection_query_returns_an_empty_list_response(
    scim: httpx.AsyncClient,
) -> None:
    """R1: a random GUID filter answers 200 with an empty ListResponse."""
    response = await scim.get("/Users", params={"filter": 'userName eq "5f2e7a8c-0000-4d1e"'})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/scim+json"
    assert response.json() == {
        "schemas": [entra.LIST_URN],
        "totalResults": 0,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }


async def test_create_returns_201_location_and_the_full_resource(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    response = await scim.post(
        "/Users", json=entra.user("ana@contoso.com", given="Ana", family="Diaz")
    )
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"{BASE}/Users/{body['id']}"
    assert body["userName"] == "ana@contoso.com"
    assert body["externalId"] == "ext-ana@contoso.com"
    assert body["active"] is True
    assert body["name"] == {"formatted": "Ana Diaz", "familyName": "Diaz", "givenName": "Ana"}
    # as Microsoft's documented create-user response: the one email is the primary one
    assert body["emails"] == [{"value": "ana@contoso.com", "type": "work", "primary": True}]
    assert body["meta"]["resourceType"] == "User"
    assert body["meta"]["created"] and body["meta"]["lastModified"]
    stored = backend.user(body["id"])
    assert stored is not None
    assert (stored.user_name, stored.given, stored.family) == ("ana@contoso.com", "Ana", "Diaz")
    assert stored.email == "ana@contoso.com" and stored.external_id == "ext-ana@contoso.com"


async def test_legacy_create_with_nulls_and_malformed_urn_is_accepted(
    scim: httpx.AsyncClient,
) -> None:
    """R5 Example 2: explicit nulls and ``…enterprise:2.0User`` must not fail the create."""
    response = await scim.post("/Users", json=entra.legacy_user("legacy@contoso.com"))
    assert response.status_code == 201, response.text


async def test_create_with_attributes_modyo_cannot_hold_ignores_them(
    scim: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    forget_noted()
    payload = entra.user("extra@contoso.com")
    payload.update(
        nickName="Babs",
        phoneNumbers=[{"type": "work", "value": "+56 2 2345 6789"}],
        **{entra.ENTERPRISE_URN: {"department": "Sales", "manager": {"value": "42"}}},
    )
    response = await scim.post("/Users", json=payload)
    assert response.status_code == 201
    assert "nickName" not in response.json() and "phoneNumbers" not in response.json()
    logged = {getattr(record, "attribute", None) for record in caplog.records}
    assert {"nickName", "phoneNumbers", entra.ENTERPRISE_URN} <= logged


async def test_duplicate_user_name_is_409_uniqueness(scim: httpx.AsyncClient) -> None:
    await create_user(scim, "dup@contoso.com")
    response = await scim.post(
        "/Users", json=entra.user("DUP@contoso.com", email="other@contoso.com")
    )
    body = assert_scim_error(response, 409, "uniqueness")
    assert "userName" in body["detail"]


async def test_duplicate_email_is_409_uniqueness(scim: httpx.AsyncClient) -> None:
    await create_user(scim, "first@contoso.com", email="shared@contoso.com")
    response = await scim.post(
        "/Users", json=entra.user("second@contoso.com", email="shared@contoso.com")
    )
    body = assert_scim_error(response, 409, "uniqueness")
    assert "emails" in body["detail"]


async def test_create_without_user_name_is_400(scim: httpx.AsyncClient, backend: Backend) -> None:
    payload = entra.user("x@contoso.com")
    del payload["userName"]
    assert_scim_error(await scim.post("/Users", json=payload), 400, "invalidValue")
    assert backend.held_users() == [] and backend.writes() == set()


@pytest.mark.parametrize(
    ("content", "scim_type"),
    [(b"{not json", "invalidSyntax"), (b"[1, 2]", "invalidSyntax"), (b"", "invalidSyntax")],
)
async def test_bad_bodies_are_400(scim: httpx.AsyncClient, content: bytes, scim_type: str) -> None:
    response = await scim.post(
        "/Users", content=content, headers={"Content-Type": "application/scim+json"}
    )
    assert_scim_error(response, 400, scim_type)


async def test_a_value_modyo_refuses_is_400_invalid_value(scim: httpx.AsyncClient) -> None:
    """Modyo's 409 for a validation error (not a uniqueness one) is the client's fault: 400."""
    response = await scim.post(
        "/Users", json=entra.user("has space@contoso.com", email="space@contoso.com")
    )
    body = assert_scim_error(response, 400, "invalidValue")
    assert "username" in body["detail"].lower()  # Modyo's words: "username", "userName"


async def test_get_by_id_and_404_for_missing(scim: httpx.AsyncClient) -> None:
    created = await create_user(scim, "get@contoso.com")
    response = await scim.get(f"/Users/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created | {"meta": response.json()["meta"]}
    assert_scim_error(await scim.get("/Users/999999"), 404)
    assert_scim_error(await scim.get("/Users/not-a-modyo-id"), 404)


@pytest.mark.upstreams("rest")  # scim ids are opaque strings (S5)
@pytest.mark.parametrize("wanted", ["9" * 20, str(2**63), "9" * 64])
async def test_a_number_past_every_id_is_no_call(
    scim: httpx.AsyncClient, backend: Backend, wanted: str
) -> None:
    """C13: no id column holds a number past 2^63-1, and a uuid is no number: such an id
    names no user and is no member, and it is never sent to Modyo (a path, ``ids[]``)."""
    user = await create_user(scim, "big@contoso.com")
    group = (await scim.post("/Groups", json=entra.group("Numbers"))).json()
    backend.reset_calls()
    assert_scim_error(await scim.get(f"/Users/{wanted}"), 404)
    assert_scim_error(await scim.patch(f"/Users/{wanted}", json=entra.patch(
        {"op": "replace", "path": "active", "value": False}
    )), 404)  # fmt: skip
    assert_scim_error(await scim.delete(f"/Users/{wanted}"), 404)
    add = entra.patch({"op": "add", "path": "members", "value": [{"value": wanted}]})
    assert_scim_error(await scim.patch(f"/Groups/{group['id']}", json=add), 400, "invalidValue")
    assert backend.calls() == {}
    held = backend.user(user["id"])
    assert held is not None and held.active


async def test_disabled_user_stays_readable_and_can_be_re_enabled(scim: httpx.AsyncClient) -> None:
    """R12/R13: disable by PATCH (string "False"), still readable; re-enable with true."""
    created = await create_user(scim, "soft@contoso.com")
    url = f"/Users/{created['id']}"
    disabled = await scim.patch(url, json=entra.patch(entra.op("Replace", "active", "False")))
    assert disabled.status_code == 200 and disabled.json()["active"] is False
    assert (await scim.get(url)).json()["active"] is False
    found = await scim.get("/Users", params={"filter": 'userName eq "soft@contoso.com"'})
    assert found.json()["Resources"][0]["active"] is False
    enabled = await scim.patch(url, json=entra.patch(entra.op("Replace", "active", "True")))
    assert enabled.json()["active"] is True


@pytest.mark.parametrize(
    "operation",
    [
        entra.op("Replace", "active", "False"),
        entra.op("replace", "active", False),
        entra.op("Add", "active", "False"),
        entra.op("add", "active", "false"),
        entra.op("Replace", "active", "FALSE"),
    ],
)
async def test_every_disable_form(
    scim: httpx.AsyncClient, backend: Backend, operation: dict[str, Any]
) -> None:
    created = await create_user(scim, "disable@contoso.com")
    response = await scim.patch(f"/Users/{created['id']}", json=entra.patch(operation))
    assert response.status_code == 200
    stored = backend.user(created["id"])
    assert stored is not None and stored.active is False


async def test_patch_multi_valued_and_name_replace_round_trips(scim: httpx.AsyncClient) -> None:
    """R7: Replace emails[type eq "work"].value plus name.familyName."""
    created = await create_user(scim, "r7@contoso.com")
    url = f"/Users/{created['id']}"
    response = await scim.patch(
        url,
        json=entra.patch(
            entra.op("Replace", 'emails[type eq "work"].value', "new.r7@contoso.com"),
            entra.op("Replace", "name.familyName", "Nuevo"),
        ),
    )
    assert response.status_code == 200
    got = (await scim.get(url)).json()
    assert got["emails"] == [{"value": "new.r7@contoso.com", "type": "work", "primary": True}]
    assert got["name"]["familyName"] == "Nuevo" and got["name"]["givenName"] == "Test"


async def test_patch_single_valued_user_name_and_external_id(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    """R8 and the externalId replace (scim mode: externalId is set once, 400 before any
    write, the difference "externalId patchable")."""
    created = await create_user(scim, "r8@contoso.com")
    url = f"/Users/{created['id']}"
    response = await scim.patch(
        url,
        json=entra.patch(
            entra.op("Replace", "userName", "renamed@contoso.com"),
            entra.op("Replace", "externalId", "obj-123"),
        ),
    )
    got = (await scim.get(url)).json()
    if differs("externalId patchable", backend.api):
        assert (got["userName"], got["externalId"]) == ("renamed@contoso.com", "obj-123")
        return
    assert_scim_error(response, 400, "invalidValue")
    assert (got["userName"], got["externalId"]) == ("r8@contoso.com", "ext-r8@contoso.com")
    renamed = await scim.patch(
        url, json=entra.patch(entra.op("Replace", "userName", "renamed@contoso.com"))
    )
    assert renamed.status_code == 200 and renamed.json()["userName"] == "renamed@contoso.com"


async def test_pathless_replace_with_dotted_and_urn_keys(scim: httpx.AsyncClient) -> None:
    """aadOptscim062020: one path-less replace whose value has dotted and URN keys (§4)."""
    created = await create_user(scim, "flag@contoso.com")
    url = f"/Users/{created['id']}"
    response = await scim.patch(
        url,
        json=entra.patch(
            entra.op("replace", 'emails[type eq "work"].value', "flag2@contoso.com"),
            entra.op(
                "replace",
                value={
                    "displayName": "Flag User",
                    "name.givenName": "Flag",
                    "name.familyName": "Gado",
                    f"{entra.ENTERPRISE_URN}:employeeNumber": "701984",
                },
            ),
        ),
    )
    assert response.status_code == 200
    got = (await scim.get(url)).json()
    assert got["name"]["givenName"] == "Flag" and got["name"]["familyName"] == "Gado"
    assert got["emails"][0]["value"] == "flag2@contoso.com"
    assert "name.givenName" not in got and entra.ENTERPRISE_URN not in got


async def test_pathless_add_with_dotted_keys(scim: httpx.AsyncClient, backend: Backend) -> None:
    created = await create_user(scim, "padd@contoso.com")
    url = f"/Users/{created['id']}"
    external_id = "x9" if differs("externalId patchable", backend.api) else created["externalId"]
    await scim.patch(
        url,
        json=entra.patch(
            entra.op("add", value={"name.givenName": "Added", "externalId": external_id})
        ),
    )
    got = (await scim.get(url)).json()
    assert (got["name"]["givenName"], got["externalId"]) == ("Added", external_id)


@pytest.mark.upstreams("rest")  # a legacy REST team member without an email
async def test_replace_work_email_upserts_when_there_is_none(
    scim: httpx.AsyncClient, fake: FakeModyo
) -> None:
    """Replace emails[type eq "work"].value when no work email exists: create it (§4)."""
    created = await create_user(scim, "noemail@contoso.com")
    fake.team_members[int(created["id"])]["email"] = None  # a legacy member without email
    url = f"/Users/{created['id']}"
    response = await scim.patch(
        url, json=entra.patch(entra.op("Replace", 'emails[type eq "work"].value', "w@contoso.com"))
    )
    assert response.status_code == 200
    assert response.json()["emails"] == [
        {"value": "w@contoso.com", "type": "work", "primary": True}
    ]


async def test_add_emails_list_sets_the_work_email(scim: httpx.AsyncClient) -> None:
    created = await create_user(scim, "addmail@contoso.com")
    url = f"/Users/{created['id']}"
    await scim.patch(
        url,
        json=entra.patch(
            entra.op(
                "Add", "emails", [{"type": "work", "value": "second@contoso.com", "primary": True}]
            )
        ),
    )
    assert (await scim.get(url)).json()["emails"][0]["value"] == "second@contoso.com"


async def test_patch_given_name_and_clearing_it(scim: httpx.AsyncClient, backend: Backend) -> None:
    created = await create_user(scim, "given@contoso.com")
    url = f"/Users/{created['id']}"
    await scim.patch(url, json=entra.patch(entra.op("Replace", "name.givenName", "Gina")))
    assert (await scim.get(url)).json()["name"]["givenName"] == "Gina"
    await scim.patch(url, json=entra.patch(entra.op("Replace", "name.givenName", "")))
    stored = backend.user(created["id"])
    assert stored is not None and stored.given is None
    await scim.patch(url, json=entra.patch(entra.op("Replace", "name.familyName", None)))
    assert "familyName" not in (await scim.get(url)).json().get("name", {})


async def test_patch_of_only_unheld_attributes_writes_nothing(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    """R9/R11: nickName, department, a bare-string manager: accepted, ignored, no write."""
    created = await create_user(scim, "unheld@contoso.com")
    backend.reset_calls()
    response = await scim.patch(
        f"/Users/{created['id']}",
        json=entra.patch(
            entra.op("Add", "nickName", "Babs"),
            entra.op("Add", f"{entra.ENTERPRISE_URN}:department", "Sales"),
            entra.op("add", f"{entra.ENTERPRISE_URN}:manager", "12345"),
            entra.op("Add", "manager", [{"$ref": None, "value": "12345"}]),
        ),
    )
    assert response.status_code == 200
    assert response.json()["userName"] == "unheld@contoso.com"
    assert backend.calls() == cost("user patch of nothing held", backend.api)


async def test_user_patch_is_one_upstream_write(scim: httpx.AsyncClient, backend: Backend) -> None:
    created = await create_user(scim, "onecall@contoso.com")
    backend.reset_calls()
    await scim.patch(
        f"/Users/{created['id']}", json=entra.patch(entra.op("Replace", "name.givenName", "X"))
    )
    assert backend.calls() == cost("user patch", backend.api)


@pytest.mark.parametrize(
    ("operation", "scim_type"),
    [
        (entra.op("Replace", "active", "maybe"), "invalidValue"),
        (entra.op("Remove", "userName", no_value=True), "mutability"),
        (entra.op("Remove", "active", no_value=True), "mutability"),
        (entra.op("Replace", "id", "5"), "mutability"),
        (entra.op("Explode", "active", True), "invalidValue"),
        (entra.op("Replace", "emails[type eq", "x"), "invalidPath"),
    ],
)
async def test_bad_patches_are_400_and_write_nothing(
    scim: httpx.AsyncClient, backend: Backend, operation: dict[str, Any], scim_type: str
) -> None:
    created = await create_user(scim, "badpatch@contoso.com")
    before = backend.user(created["id"])
    backend.reset_calls()
    response = await scim.patch(f"/Users/{created['id']}", json=entra.patch(operation))
    assert_scim_error(response, 400, scim_type)
    assert backend.user(created["id"]) == before and backend.writes() == set()


async def test_patch_without_operations_is_400(scim: httpx.AsyncClient) -> None:
    created = await create_user(scim, "noops@contoso.com")
    response = await scim.patch(f"/Users/{created['id']}", json={"schemas": [entra.PATCH_URN]})
    assert_scim_error(response, 400, "invalidValue")


async def test_patch_unknown_user_is_404(scim: httpx.AsyncClient) -> None:
    response = await scim.patch(
        "/Users/424242", json=entra.patch(entra.op("Replace", "active", False))
    )
    assert_scim_error(response, 404)


async def test_patch_to_a_taken_user_name_is_409(scim: httpx.AsyncClient) -> None:
    await create_user(scim, "taken@contoso.com")
    other = await create_user(scim, "other@contoso.com")
    response = await scim.patch(
        f"/Users/{other['id']}",
        json=entra.patch(entra.op("Replace", "userName", "taken@contoso.com")),
    )
    assert_scim_error(response, 409, "uniqueness")


async def test_put_replaces_held_attributes(scim: httpx.AsyncClient, backend: Backend) -> None:
    created = await create_user(scim, "put@contoso.com", given="Old", family="Name")
    replacement: dict[str, Any] = {
        "schemas": [entra.USER_URN],
        "userName": "put@contoso.com",
        "emails": [{"type": "work", "value": "put2@contoso.com"}],
        "active": False,
    }
    if not differs("externalId patchable", backend.api):  # set once: a PUT keeps it
        replacement["externalId"] = created["externalId"]
    response = await scim.put(f"/Users/{created['id']}", json=replacement)
    assert response.status_code == 200, response.text
    stored = backend.user(created["id"])
    assert stored is not None
    assert (stored.email, stored.active, stored.given, stored.external_id) == (
        "put2@contoso.com",
        False,
        None,
        replacement.get("externalId"),
    )


async def test_delete_is_204_then_gone_for_scim(scim: httpx.AsyncClient, backend: Backend) -> None:
    """R14: 404 on GET and absent from queries; in Modyo a hard delete, or a deactivation
    under a tombstone (the difference "user delete")."""
    created = await create_user(scim, "gone@contoso.com")
    response = await scim.delete(f"/Users/{created['id']}")
    assert response.status_code == 204 and response.content == b""
    assert_scim_error(await scim.get(f"/Users/{created['id']}"), 404)
    found = await scim.get("/Users", params={"filter": 'userName eq "gone@contoso.com"'})
    assert found.json()["totalResults"] == 0
    backend.assert_deleted(created["id"])
    assert backend.users() == {}
    assert_scim_error(await scim.delete(f"/Users/{created['id']}"), 404)  # RFC 7644 §3.6


async def test_delete_of_an_unknown_user_is_404(scim: httpx.AsyncClient) -> None:
    assert_scim_error(await scim.delete("/Users/987654"), 404)
