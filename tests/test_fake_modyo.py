"""The fake Modyo honours the contract the bridge assumes and the quirks Modyo documents
(docs/design/modyo-contract.md §2, §3): envelope, silent clamps, ``only[]``,
``{"errors": [...]}`` with 409 by default, ``401 {}``; plus its fault injection and adapters."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from bridge.modyo.fake import FakeModyo, FakeModyoApp, Faults, FaultyModyo, mock_transport
from bridge.modyo.fake.base import FakeResponse
from bridge.modyo.fake.faults import Served
from tests.harness import MODYO_TOKEN, MODYO_URL
from tests.waits import until, within

API = "/api/admin"
AUTH = {"Authorization": f"Bearer {MODYO_TOKEN}"}
FIXED_CLOCK = 1_750_000_000.0


def call(
    fake: FakeModyo,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]] = (),
    body: Any = None,
    headers: Mapping[str, str] = AUTH,
) -> FakeResponse:
    raw = b"" if body is None else json.dumps(body).encode()
    return fake.handle(method, API + path, list(query), raw, headers)


def new_member(fake: FakeModyo, username: str, **fields: Any) -> dict[str, Any]:
    response = call(
        fake, "POST", "/team_members", body={"username": username, "email": username, **fields}
    )
    assert response.status == 201, response.body
    body: dict[str, Any] = response.body
    return body


def new_group(fake: FakeModyo, name: str, **fields: Any) -> dict[str, Any]:
    response = call(fake, "POST", "/groups", body={"name": name, **fields})
    assert response.status == 201, response.body
    body: dict[str, Any] = response.body
    return body


def ids_of(response: FakeResponse, plural: str = "team_members") -> list[int]:
    return [row["id"] for row in response.body[plural]]


def ticking_clock(start: float = FIXED_CLOCK) -> Any:
    """A clock that advances one second per reading: updated_at orders are deterministic."""
    counter = itertools.count()
    return lambda: start + next(counter)


# ---------------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Token {MODYO_TOKEN}"},
        {"Authorization": MODYO_TOKEN},
        {"Authorization": "Bearer "},
    ],
    ids=["missing", "wrong", "wrong-scheme", "no-scheme", "empty"],
)
def test_missing_or_wrong_token_answers_401_with_an_empty_object(
    fake: FakeModyo, headers: dict[str, str]
) -> None:
    listing = call(fake, "GET", "/team_members", headers=headers)
    create = call(fake, "POST", "/groups", body={"name": "g"}, headers=headers)
    assert (listing.status, listing.body) == (401, {})
    assert (create.status, create.body) == (401, {})
    assert fake.groups == {}  # nothing applied
    assert not fake.calls  # rejected before routing


def test_the_right_token_is_accepted_whatever_the_header_case(fake: FakeModyo) -> None:
    response = call(fake, "GET", "/profile", headers={"authorization": f"bearer {MODYO_TOKEN}"})
    assert response.status == 200
    assert response.body["username"] == "scim-admin"


# ---------------------------------------------------------------------- envelope and paging


def test_list_envelope_and_default_per_page_of_ten(fake: FakeModyo) -> None:
    for number in range(12):
        new_member(fake, f"user{number}@example.com")
    first = call(fake, "GET", "/team_members")
    assert first.status == 200
    assert set(first.body) == {"team_members", "meta"}
    assert first.body["meta"] == {
        "total_entries": 12,
        "per_page": 10,
        "current_page": 1,
        "total_pages": 2,
    }
    assert len(first.body["team_members"]) == 10
    second = call(fake, "GET", "/team_members", [("page", "2")])
    assert second.body["meta"]["current_page"] == 2
    assert len(second.body["team_members"]) == 2
    assert set(ids_of(first)).isdisjoint(ids_of(second))
    assert set(ids_of(first)) | set(ids_of(second)) == set(fake.team_members)


def test_groups_use_the_same_envelope_under_their_plural(fake: FakeModyo) -> None:
    new_group(fake, "Admins")
    response = call(fake, "GET", "/groups")
    assert set(response.body) == {"groups", "meta"}
    assert response.body["meta"]["total_entries"] == 1
    assert response.body["groups"][0]["name"] == "Admins"
    assert response.body["groups"][0]["admin_users_count"] == 0


@pytest.fixture
def crowded(fake: FakeModyo) -> FakeModyo:
    """150 team members (more than one clamped page)."""
    group = new_group(fake, "Crowd")
    fake.seed_group_members(group["id"], 150)
    return fake


def test_per_page_above_100_is_clamped_silently(crowded: FakeModyo) -> None:
    response = call(crowded, "GET", "/team_members", [("per_page", "1000")])
    assert response.status == 200
    assert response.body["meta"]["per_page"] == 100
    assert response.body["meta"]["total_pages"] == 2
    assert len(response.body["team_members"]) == 100


@pytest.mark.parametrize("per_page", ["0", "-5", "abc", "", "1.5"])
def test_bad_per_page_falls_back_to_ten(crowded: FakeModyo, per_page: str) -> None:
    response = call(crowded, "GET", "/team_members", [("per_page", per_page)])
    assert response.status == 200
    assert response.body["meta"]["per_page"] == 10
    assert len(response.body["team_members"]) == 10


@pytest.mark.parametrize("page", ["0", "-3", "abc"])
def test_bad_page_falls_back_to_page_one(crowded: FakeModyo, page: str) -> None:
    first = call(crowded, "GET", "/team_members", [("per_page", "20")])
    response = call(crowded, "GET", "/team_members", [("page", page), ("per_page", "20")])
    assert response.status == 200
    assert response.body["meta"]["current_page"] == 1
    assert ids_of(response) == ids_of(first)


def test_paginate_false_means_100_per_page_not_everything(crowded: FakeModyo) -> None:
    response = call(crowded, "GET", "/team_members", [("paginate", "false"), ("per_page", "5")])
    assert response.body["meta"]["per_page"] == 100
    assert len(response.body["team_members"]) == 100
    assert response.body["meta"]["total_entries"] == 150


def test_page_past_the_end_is_empty_with_the_right_meta(crowded: FakeModyo) -> None:
    response = call(crowded, "GET", "/team_members", [("page", "99"), ("per_page", "100")])
    assert response.status == 200
    assert response.body["team_members"] == []
    assert response.body["meta"]["total_entries"] == 150
    assert response.body["meta"]["current_page"] == 99


def test_default_order_is_updated_at_desc_and_unknown_sort_by_is_ignored() -> None:
    fake = FakeModyo(token=MODYO_TOKEN, clock=ticking_clock())
    created = [new_member(fake, name)["id"] for name in ("b@x.io", "c@x.io", "a@x.io")]
    call(fake, "PUT", f"/team_members/{created[0]}", body={"first_name": "Touched"})
    expected = [created[0], created[2], created[1]]  # most recently updated first
    assert ids_of(call(fake, "GET", "/team_members")) == expected
    for bogus in [("sort_by", "password")], [("order", "sideways")], [("sort_by", "")]:
        ignored = call(fake, "GET", "/team_members", bogus)
        assert ignored.status == 200
        assert ids_of(ignored) == expected
    by_name = call(fake, "GET", "/team_members", [("sort_by", "username"), ("order", "asc")])
    assert ids_of(by_name) == [created[2], created[0], created[1]]  # the known key does sort
    by_id = call(fake, "GET", "/team_members", [("sort_by", "id"), ("order", "asc")])
    assert ids_of(by_id) == sorted(created)


def test_only_trims_attributes_and_drops_unknown_names(fake: FakeModyo) -> None:
    member = new_member(fake, "ana@example.com")
    query = [("only[]", "id"), ("only[]", "username"), ("only[]", "no_such_attribute")]
    shown = call(fake, "GET", f"/team_members/{member['id']}", query)
    assert shown.body == {"id": member["id"], "username": "ana@example.com"}
    listed = call(fake, "GET", "/team_members", query)
    assert listed.body["team_members"] == [{"id": member["id"], "username": "ana@example.com"}]


def test_a_comma_joined_only_value_yields_empty_objects(fake: FakeModyo) -> None:
    member = new_member(fake, "ana@example.com")
    new_member(fake, "bob@example.com")
    listed = call(fake, "GET", "/team_members", [("only[]", "id,username")])
    assert listed.status == 200
    assert listed.body["team_members"] == [{}, {}]
    shown = call(fake, "GET", f"/team_members/{member['id']}", [("only[]", "id,username")])
    assert shown.body == {}


# ---------------------------------------------------------------------- create


def test_create_answers_201_with_integer_id_uuid_and_offset_timestamps() -> None:
    fake = FakeModyo(token=MODYO_TOKEN, clock=lambda: FIXED_CLOCK)
    response = call(
        fake,
        "POST",
        "/team_members",
        body={
            "username": "ana@example.com",
            "email": "ana@example.com",
            "first_name": "Ana",
            "last_name": "Diaz",
            "external_id": "ext-1",
        },
    )
    assert response.status == 201
    body = response.body
    assert isinstance(body["id"], int) and not isinstance(body["id"], bool)
    assert uuid.UUID(body["uuid"]).version == 4
    created = datetime.fromisoformat(body["created_at"])
    assert body["created_at"].endswith("-03:00")
    assert created.utcoffset() == timedelta(hours=-3)
    assert created.timestamp() == FIXED_CLOCK
    assert body["updated_at"] == body["created_at"]
    assert body["name"] == "Ana Diaz"  # derived from the parts
    assert body["active"] is True  # the default
    assert body["group_ids"] == []
    assert body["external_id"] == "ext-1"
    assert call(fake, "GET", f"/team_members/{body['id']}").body == body


def test_ids_and_uuids_are_distinct_and_increasing(fake: FakeModyo) -> None:
    created = [new_member(fake, f"u{number}@example.com") for number in range(5)]
    ids = [member["id"] for member in created]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert len({member["uuid"] for member in created}) == 5


@pytest.mark.parametrize(
    ("field", "second"),
    [
        ("username", {"username": "ANA@Example.com", "email": "other@example.com"}),
        ("email", {"username": "other@example.com", "email": "Ana@EXAMPLE.com"}),
    ],
)
def test_username_and_email_are_unique_case_insensitively(
    fake: FakeModyo, field: str, second: dict[str, str]
) -> None:
    new_member(fake, "ana@example.com")
    response = call(fake, "POST", "/team_members", body=second)
    assert response.status == 409
    assert response.body == {
        "errors": [
            {
                "field": field,
                "messages": ["has already been taken"],
                "details": [{"error": "taken"}],
            }
        ]
    }
    assert len(fake.team_members) == 1


def test_every_problem_is_reported_under_its_field(fake: FakeModyo) -> None:
    new_member(fake, "ana@example.com")
    new_member(fake, "bob@example.com")
    both = call(
        fake,
        "POST",
        "/team_members",
        body={"username": "Ana@example.com", "email": "BOB@example.com"},
    )
    assert both.status == 409
    assert [(e["field"], e["details"]) for e in both.body["errors"]] == [
        ("username", [{"error": "taken"}]),
        ("email", [{"error": "taken"}]),
    ]
    mixed = call(fake, "POST", "/team_members", body={"username": "ANA@example.COM", "email": "a"})
    codes = {(e["field"], e["details"][0]["error"]) for e in mixed.body["errors"]}
    assert codes == {("username", "taken"), ("email", "invalid")}
    assert len(fake.team_members) == 2


@pytest.mark.parametrize(
    "body",
    [{"username": "", "email": "  "}, {}, {"username": None, "email": None}],
    ids=["empty", "missing", "null"],
)
def test_blank_username_and_email_answer_409_blank(fake: FakeModyo, body: dict[str, Any]) -> None:
    response = call(fake, "POST", "/team_members", body=body)
    assert response.status == 409
    codes = [(error["field"], error["details"]) for error in response.body["errors"]]
    assert ("username", [{"error": "blank"}]) in codes
    assert ("email", [{"error": "blank"}]) in codes
    assert response.body["errors"][0]["messages"] == ["Username can't be blank"]
    assert fake.team_members == {}


@pytest.mark.parametrize("username", ["ana diaz", "ana!x", "ana<x>", "ñandú"])
def test_usernames_outside_the_documented_set_are_invalid(fake: FakeModyo, username: str) -> None:
    response = call(
        fake, "POST", "/team_members", body={"username": username, "email": "a@example.com"}
    )
    assert response.status == 409
    assert response.body["errors"] == [
        {"field": "username", "messages": ["is invalid"], "details": [{"error": "invalid"}]}
    ]


def test_entra_guest_upns_fit_the_username_rule(fake: FakeModyo) -> None:
    member = new_member(fake, "ana_contoso.com#EXT#@tenant.onmicrosoft.com")
    assert member["username"] == "ana_contoso.com#EXT#@tenant.onmicrosoft.com"
    odd = new_member(fake, "o'brien|+%/x@example.com")
    assert odd["username"] == "o'brien|+%/x@example.com"


@pytest.mark.parametrize(
    "body",
    [
        {"username": 5, "email": "a@example.com"},
        {"username": "a@example.com", "email": ["a@example.com"]},
        {"username": "a@example.com", "email": "a@example.com", "active": "true"},
        {"username": "a@example.com", "email": "a@example.com", "first_name": 1},
    ],
    ids=["int-username", "list-email", "string-active", "int-first-name"],
)
def test_wrong_types_answer_422(fake: FakeModyo, body: dict[str, Any]) -> None:
    response = call(fake, "POST", "/team_members", body=body)
    assert response.status == 422
    assert response.body["errors"][0]["details"] == [{"error": "invalid"}]
    assert fake.team_members == {}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"'])
def test_a_body_that_is_not_a_json_object_answers_422(fake: FakeModyo, raw: bytes) -> None:
    response = fake.handle("POST", f"{API}/team_members", [], raw, AUTH)
    assert response.status == 422
    assert isinstance(response.body["errors"], list)


def test_unpermitted_keys_are_dropped_silently(fake: FakeModyo) -> None:
    response = call(
        fake,
        "POST",
        "/team_members",
        body={
            "username": "ana@example.com",
            "email": "ana@example.com",
            "id": 1,
            "uuid": "forged",
            "role": "account_owner",
            "group_ids": [1],
        },
    )
    assert response.status == 201
    assert response.body["id"] != 1
    assert response.body["uuid"] != "forged"
    assert "role" not in response.body
    assert "role" not in fake.team_members[response.body["id"]]
    assert response.body["group_ids"] == []


def test_group_create_drops_unpermitted_keys_and_counts_no_members(fake: FakeModyo) -> None:
    group = new_group(fake, "Admins", external_id="obj-1", admin_users_count=99, role="x")
    assert group["admin_users_count"] == 0
    assert group["external_id"] == "obj-1"
    assert "role" not in group
    assert isinstance(group["id"], int)


# ---------------------------------------------------------------------- update and delete


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("raw_id", ["999999", "abc", "-1", "1.0"])
@pytest.mark.parametrize("resource", ["team_members", "groups"])
def test_unknown_or_non_numeric_ids_answer_404_empty(
    fake: FakeModyo, method: str, raw_id: str, resource: str
) -> None:
    new_member(fake, "ana@example.com")
    new_group(fake, "Admins")
    body = {"name": "x"} if method in ("PUT", "PATCH") else None
    response = call(fake, method, f"/{resource}/{raw_id}", body=body)
    assert (response.status, response.body) == (404, {})


def test_update_changes_values_and_a_derived_name_follows_its_parts() -> None:
    fake = FakeModyo(token=MODYO_TOKEN, clock=ticking_clock())
    member = new_member(fake, "ana@example.com", first_name="Ana", last_name="Diaz")
    response = call(fake, "PUT", f"/team_members/{member['id']}", body={"last_name": "Ruiz"})
    assert response.status == 200
    assert response.body["last_name"] == "Ruiz"
    assert response.body["name"] == "Ana Ruiz"
    assert response.body["updated_at"] > member["updated_at"]
    assert response.body["created_at"] == member["created_at"]
    patched = call(fake, "PATCH", f"/team_members/{member['id']}", body={"active": False})
    assert patched.status == 200 and patched.body["active"] is False
    assert fake.calls["PUT /team_members/:id"] == 2  # PATCH is counted as the PUT route


def test_an_explicit_name_is_kept_when_parts_change(fake: FakeModyo) -> None:
    member = new_member(fake, "ana@example.com", first_name="Ana", name="Dr. Ana")
    response = call(fake, "PUT", f"/team_members/{member['id']}", body={"first_name": "Anna"})
    assert response.body["name"] == "Dr. Ana"


def test_update_enforces_uniqueness_against_others_only(fake: FakeModyo) -> None:
    ana = new_member(fake, "ana@example.com")
    new_member(fake, "bob@example.com")
    same = call(fake, "PUT", f"/team_members/{ana['id']}", body={"username": "ANA@example.com"})
    assert same.status == 200  # its own username, recased, is not a conflict
    taken = call(fake, "PUT", f"/team_members/{ana['id']}", body={"email": "BOB@example.com"})
    assert taken.status == 409
    assert taken.body["errors"][0]["field"] == "email"
    assert taken.body["errors"][0]["details"] == [{"error": "taken"}]
    assert fake.team_members[ana["id"]]["email"] == "ana@example.com"  # unchanged


def test_a_renamed_username_frees_the_old_one(fake: FakeModyo) -> None:
    ana = new_member(fake, "ana@example.com")
    call(fake, "PUT", f"/team_members/{ana['id']}", body={"username": "ana2@example.com"})
    again = call(
        fake, "POST", "/team_members", body={"username": "ana@example.com", "email": "n@x.io"}
    )
    assert again.status == 201
    found = call(fake, "GET", "/team_members", [("username", "ANA2@example.com")])
    assert ids_of(found) == [ana["id"]]


def test_deleting_a_member_removes_its_memberships_and_frees_its_keys(fake: FakeModyo) -> None:
    group = new_group(fake, "Admins")
    ana = new_member(fake, "ana@example.com")
    bob = new_member(fake, "bob@example.com")
    call(
        fake,
        "POST",
        f"/groups/{group['id']}/team_members",
        body={"team_member_ids": [ana["id"], bob["id"]]},
    )
    response = call(fake, "DELETE", f"/team_members/{ana['id']}")
    assert (response.status, response.body) == (204, None)
    assert response.content() == b""
    assert call(fake, "GET", f"/team_members/{ana['id']}").status == 404
    assert fake.group_member_ids(group["id"]) == {bob["id"]}
    listing = call(fake, "GET", f"/groups/{group['id']}/team_members")
    assert ids_of(listing) == [bob["id"]]
    assert call(fake, "GET", f"/groups/{group['id']}").body["admin_users_count"] == 1
    assert new_member(fake, "ana@example.com")["id"] != ana["id"]


def test_deleting_a_group_keeps_its_members(fake: FakeModyo) -> None:
    group = new_group(fake, "Admins")
    ana = new_member(fake, "ana@example.com")
    call(fake, "POST", f"/groups/{group['id']}/team_members", body={"team_member_ids": [ana["id"]]})
    response = call(fake, "DELETE", f"/groups/{group['id']}")
    assert response.status == 204
    assert call(fake, "GET", f"/groups/{group['id']}").status == 404
    kept = call(fake, "GET", f"/team_members/{ana['id']}")
    assert kept.status == 200
    assert kept.body["group_ids"] == []
    assert new_group(fake, "admins")["name"] == "admins"  # the name is free again


def test_a_modyo_without_hard_delete_answers_405() -> None:
    fake = FakeModyo(token=MODYO_TOKEN, delete_team_members=False)
    ana = new_member(fake, "ana@example.com")
    response = call(fake, "DELETE", f"/team_members/{ana['id']}")
    assert response.status == 405
    assert ana["id"] in fake.team_members


def test_unrouted_methods_answer_405_and_unknown_paths_404(fake: FakeModyo) -> None:
    assert call(fake, "DELETE", "/team_members").status == 405
    assert call(fake, "PUT", "/groups").status == 405
    assert call(fake, "GET", "/admin_users/me").status == 404  # removed in 10.2
    assert fake.handle("GET", "/api/other", [], b"", AUTH).status == 404
    assert fake.route_name("PATCH", f"{API}/groups/7") == "PUT /groups/:id"
    assert fake.route_name("GET", f"{API}/nowhere") is None


# ---------------------------------------------------------------------- groups and filters


def test_group_names_are_unique_case_insensitively_and_required(fake: FakeModyo) -> None:
    admins = new_group(fake, "Admins")
    taken = call(fake, "POST", "/groups", body={"name": "ADMINS"})
    assert taken.status == 409
    assert taken.body == {
        "errors": [
            {
                "field": "name",
                "messages": ["has already been taken"],
                "details": [{"error": "taken"}],
            }
        ]
    }
    blank = call(fake, "POST", "/groups", body={"name": "  "})
    assert blank.status == 409
    assert blank.body["errors"][0]["details"] == [{"error": "blank"}]
    other = new_group(fake, "Writers")
    renamed = call(fake, "PUT", f"/groups/{other['id']}", body={"name": "admins"})
    assert renamed.status == 409
    recased = call(fake, "PUT", f"/groups/{admins['id']}", body={"name": "ADMINS"})
    assert recased.status == 200 and recased.body["name"] == "ADMINS"
    assert call(fake, "POST", "/groups", body={"name": 7}).status == 422
    assert len(fake.groups) == 2


def test_group_filters_by_name_case_insensitively_and_by_external_id(fake: FakeModyo) -> None:
    admins = new_group(fake, "Admins", external_id="obj-1")
    writers = new_group(fake, "Writers", external_id="obj-2")
    assert ids_of(call(fake, "GET", "/groups", [("name", "aDmInS")]), "groups") == [admins["id"]]
    assert ids_of(call(fake, "GET", "/groups", [("name", "Admin")]), "groups") == []
    by_external = call(fake, "GET", "/groups", [("external_id", "obj-2")])
    assert ids_of(by_external, "groups") == [writers["id"]]
    assert ids_of(call(fake, "GET", "/groups", [("external_id", "OBJ-2")]), "groups") == []
    both = call(fake, "GET", "/groups", [("name", "writers"), ("external_id", "obj-1")])
    assert both.body["groups"] == [] and both.body["meta"]["total_entries"] == 0


def test_team_member_filters(fake: FakeModyo) -> None:
    ana = new_member(fake, "ana@example.com", external_id="ext-ana")
    bob = new_member(fake, "bob@example.com", external_id="ext-bob")
    carl = new_member(fake, "carl@example.com")

    def found(*query: tuple[str, str]) -> list[int]:
        response = call(fake, "GET", "/team_members", query)
        assert response.body["meta"]["total_entries"] == len(response.body["team_members"])
        return ids_of(response)

    assert found(("username", "ANA@example.com")) == [ana["id"]]
    assert found(("username", "ana")) == []
    assert found(("email", "Bob@Example.COM")) == [bob["id"]]
    assert found(("external_id", "ext-bob")) == [bob["id"]]
    assert found(("external_id", "EXT-BOB")) == []  # external ids are exact
    assert found(("username", "ana@example.com"), ("email", "bob@example.com")) == []
    assert sorted(found(("ids[]", str(carl["id"])), ("ids[]", str(ana["id"])))) == sorted(
        [ana["id"], carl["id"]]
    )
    assert found(("ids[]", "999999"), ("ids[]", "abc"), ("ids[]", str(bob["id"]))) == [bob["id"]]
    assert found(("username", "ana@example.com"), ("ids[]", str(bob["id"]))) == []


# ---------------------------------------------------------------------- memberships


@pytest.fixture
def team(fake: FakeModyo) -> tuple[FakeModyo, int, list[int]]:
    group = new_group(fake, "Admins")
    ids = [new_member(fake, f"m{number}@example.com")["id"] for number in range(5)]
    return fake, group["id"], ids


def test_batch_add_is_atomic_and_names_the_unknown_ids(
    team: tuple[FakeModyo, int, list[int]],
) -> None:
    fake, group_id, ids = team
    response = call(
        fake,
        "POST",
        f"/groups/{group_id}/team_members",
        body={"team_member_ids": [ids[0], 999999, ids[1], "abc"]},
    )
    assert response.status == 409
    (error,) = response.body["errors"]
    assert error["field"] == "team_member_ids"
    assert error["details"][0]["error"] == "not_found"
    assert error["details"][0]["ids"] == [999999, "abc"]
    assert fake.group_member_ids(group_id) == set()  # nothing added


def test_batch_add_accepts_up_to_100_ids_and_refuses_more(fake: FakeModyo) -> None:
    group = new_group(fake, "Big")
    holder = new_group(fake, "Holder")
    ids = fake.seed_group_members(holder["id"], 101)
    path = f"/groups/{group['id']}/team_members"
    too_many = call(fake, "POST", path, body={"team_member_ids": ids})
    assert too_many.status == 422
    assert too_many.body["errors"][0]["field"] == "team_member_ids"
    assert fake.group_member_ids(group["id"]) == set()
    assert call(fake, "POST", path, body={"team_member_ids": ids[:100]}).status == 204
    assert fake.group_member_ids(group["id"]) == set(ids[:100])
    empties: list[dict[str, Any]] = [{"team_member_ids": []}, {}, {"team_member_ids": "1"}]
    for empty in empties:
        assert call(fake, "POST", path, body=empty).status == 422


def test_a_listed_group_reflects_every_later_change(
    team: tuple[FakeModyo, int, list[int]],
) -> None:
    fake, group_id, ids = team
    path = f"/groups/{group_id}/team_members"
    call(fake, "POST", path, body={"team_member_ids": [ids[1]]})
    assert ids_of(call(fake, "GET", path)) == [ids[1]]  # a snapshot now exists
    call(fake, "POST", path, body={"team_member_ids": [ids[0]]})
    assert ids_of(call(fake, "GET", path)) == [ids[0], ids[1]]
    call(fake, "DELETE", f"{path}/{ids[1]}")
    assert ids_of(call(fake, "GET", path)) == [ids[0]]
    call(fake, "DELETE", f"/team_members/{ids[0]}")
    listing = call(fake, "GET", path)
    assert listing.body["team_members"] == [] and listing.body["meta"]["total_entries"] == 0


def test_adding_an_existing_member_is_a_no_op(team: tuple[FakeModyo, int, list[int]]) -> None:
    fake, group_id, ids = team
    path = f"/groups/{group_id}/team_members"
    assert call(fake, "POST", path, body={"team_member_ids": [ids[0]]}).status == 204
    again = call(fake, "POST", path, body={"team_member_ids": [ids[0], str(ids[1])]})
    assert (again.status, again.body) == (204, None)
    assert fake.group_member_ids(group_id) == {ids[0], ids[1]}
    listing = call(fake, "GET", path)
    assert listing.body["meta"]["total_entries"] == 2


def test_removing_a_member_then_a_non_member(team: tuple[FakeModyo, int, list[int]]) -> None:
    fake, group_id, ids = team
    call(fake, "POST", f"/groups/{group_id}/team_members", body={"team_member_ids": [ids[0]]})
    path = f"/groups/{group_id}/team_members/{ids[0]}"
    assert call(fake, "DELETE", path).status == 204
    assert (call(fake, "DELETE", path).status, call(fake, "DELETE", path).body) == (404, {})
    assert call(fake, "DELETE", f"/groups/{group_id}/team_members/abc").status == 404
    assert call(fake, "DELETE", f"/groups/999999/team_members/{ids[0]}").status == 404
    assert fake.group_member_ids(group_id) == set()
    assert ids[0] in fake.team_members  # removing a membership keeps the member


def test_group_member_listing_pages_in_id_order(team: tuple[FakeModyo, int, list[int]]) -> None:
    fake, group_id, ids = team
    shuffled = [ids[3], ids[0], ids[4], ids[1]]
    for member_id in shuffled:  # one by one, out of order
        call(
            fake, "POST", f"/groups/{group_id}/team_members", body={"team_member_ids": [member_id]}
        )
    pages = [
        call(fake, "GET", f"/groups/{group_id}/team_members", [("page", p), ("per_page", "3")])
        for p in ("1", "2")
    ]
    assert pages[0].body["meta"] == {
        "total_entries": 4,
        "per_page": 3,
        "current_page": 1,
        "total_pages": 2,
    }
    assert ids_of(pages[0]) + ids_of(pages[1]) == sorted(shuffled)
    trimmed = call(fake, "GET", f"/groups/{group_id}/team_members", [("only[]", "id")])
    assert trimmed.body["team_members"] == [{"id": i} for i in sorted(shuffled)]
    assert call(fake, "GET", "/groups/999999/team_members").status == 404


def test_team_members_carry_their_group_ids(team: tuple[FakeModyo, int, list[int]]) -> None:
    fake, group_id, ids = team
    other = new_group(fake, "Writers")["id"]
    for group in (other, group_id):
        call(fake, "POST", f"/groups/{group}/team_members", body={"team_member_ids": [ids[2]]})
    assert call(fake, "GET", f"/team_members/{ids[2]}").body["group_ids"] == sorted(
        [group_id, other]
    )
    listed = call(fake, "GET", "/team_members", [("ids[]", str(ids[2])), ("ids[]", str(ids[3]))])
    by_id = {row["id"]: row["group_ids"] for row in listed.body["team_members"]}
    assert by_id == {ids[2]: sorted([group_id, other]), ids[3]: []}
    assert call(fake, "GET", f"/groups/{other}").body["admin_users_count"] == 1


# ---------------------------------------------------------------------- scale


def test_a_50000_member_group_costs_one_call_per_change_and_pages_correctly(
    fake: FakeModyo,
) -> None:
    group_id = new_group(fake, "Everyone")["id"]
    fake.reset_calls()
    seeded = fake.seed_group_members(group_id, 50_000)
    assert not fake.calls  # seeding is not counted
    page = call(
        fake,
        "GET",
        f"/groups/{group_id}/team_members",
        [("page", "500"), ("per_page", "100"), ("only[]", "id")],
    )
    assert page.body["meta"] == {
        "total_entries": 50_000,
        "per_page": 100,
        "current_page": 500,
        "total_pages": 500,
    }
    assert ids_of(page) == sorted(seeded)[49_900:]
    newcomer = new_member(fake, "newcomer@example.com")["id"]
    added = call(
        fake, "POST", f"/groups/{group_id}/team_members", body={"team_member_ids": [newcomer]}
    )
    removed = call(fake, "DELETE", f"/groups/{group_id}/team_members/{seeded[0]}")
    assert (added.status, removed.status) == (204, 204)
    assert fake.calls["POST /groups/:id/team_members"] == 1
    assert fake.calls["DELETE /groups/:id/team_members/:member_id"] == 1
    after = call(
        fake,
        "GET",
        f"/groups/{group_id}/team_members",
        [("page", "500"), ("per_page", "100"), ("only[]", "id")],
    )
    assert after.body["meta"]["total_entries"] == 50_000
    assert ids_of(after) == [*sorted(seeded)[49_901:], newcomer]
    assert seeded[0] not in fake.group_member_ids(group_id)
    # How long each step takes at 50,000 members: bench/ (group sizes), not a test.


# ---------------------------------------------------------------------- fault injection


async def serve(
    service: FaultyModyo,
    method: str,
    path: str,
    body: Any = None,
    query: Iterable[tuple[str, str]] = (),
) -> Served:
    raw = b"" if body is None else json.dumps(body).encode()
    return await service.serve(method, API + path, list(query), raw, AUTH)


async def run_script(faults: Faults) -> tuple[list[int | None], dict[str, int]]:
    service = FaultyModyo(FakeModyo(token=MODYO_TOKEN), faults)
    statuses: list[int | None] = []
    for number in range(40):
        outcome = await serve(service, "POST", "/groups", {"name": f"g{number}"})
        statuses.append(outcome.response.status if outcome.response else None)
    return statuses, dict(service.injected)


async def test_a_seeded_run_injects_the_same_faults_twice() -> None:
    faults = Faults(error_rate=0.2, throttle_rate=0.2, lost_response_rate=0.2, seed=42)
    first = await run_script(faults)
    second = await run_script(faults)
    assert first == second
    statuses, injected = first
    assert {"throttled", "error"} <= injected.keys()
    assert injected.keys() & {"lost_502", "lost_connection"}
    assert 201 in statuses
    other = await run_script(
        Faults(error_rate=0.2, throttle_rate=0.2, lost_response_rate=0.2, seed=43)
    )
    assert other[0] != statuses  # the seed matters


async def test_configure_restarts_the_seeded_sequence() -> None:
    faults = Faults(error_rate=0.5, seed=3)
    service = FaultyModyo(FakeModyo(token=MODYO_TOKEN), faults)
    first = [(await serve(service, "GET", "/profile")).response for _ in range(10)]
    service.configure(faults)
    second = [(await serve(service, "GET", "/profile")).response for _ in range(10)]
    assert [r.status for r in first if r] == [r.status for r in second if r]


async def test_a_partial_faults_put_changes_only_the_given_fields() -> None:
    """``PUT /__fake__/faults`` with one field keeps the others, the seed and the random
    sequence included: the draws go on exactly as if nothing had been changed."""
    faults = Faults(error_rate=0.5, seed=7)
    reference = FaultyModyo(FakeModyo(token=MODYO_TOKEN), faults)
    expected = [(await serve(reference, "GET", "/profile")).response for _ in range(20)]
    service = FaultyModyo(FakeModyo(token=MODYO_TOKEN), faults)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=FakeModyoApp(service)), base_url=MODYO_URL, headers=AUTH
    ) as control:
        first = [(await serve(service, "GET", "/profile")).response for _ in range(10)]
        changed = await control.put("/__fake__/faults", json={"retry_after_seconds": 3})
        assert changed.status_code == 200, changed.text
        assert changed.json() == {**dataclasses.asdict(faults), "retry_after_seconds": 3}
        second = [(await serve(service, "GET", "/profile")).response for _ in range(10)]
        assert [r and r.status for r in first + second] == [r and r.status for r in expected]
        reseeded = await control.put("/__fake__/faults", json={"seed": 8})
        assert reseeded.json()["seed"] == 8 and reseeded.json()["error_rate"] == 0.5
        for body in ({"no_such_fault": 1}, {"error_rate": 2}, [1]):
            refused = await control.put("/__fake__/faults", json=body)
            assert refused.status_code == 422 and refused.json()["errors"]
        assert (await control.get("/__fake__/faults")).json()["seed"] == 8  # unchanged


async def test_the_control_plane_needs_the_fake_s_token(fake: FakeModyo) -> None:
    """Read or change nothing without ``Bearer <token>``; the token is the one the fake had
    when the app was built, so revoking the API token (a test's move) keeps control."""
    app = FakeModyoApp(FaultyModyo(fake))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=MODYO_URL
    ) as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token"},
            {"Authorization": MODYO_TOKEN},
        ):
            for method, action in (("GET", "calls"), ("PUT", "faults"), ("POST", "seed")):
                refused = await client.request(
                    method, f"/__fake__/{action}", json={"users": 1}, headers=headers
                )
                assert refused.status_code == 401, (method, action, headers)
        assert fake.team_members == {}  # the seed was refused
        fake.token = "revoked-and-replaced"
        calls = await client.get("/__fake__/calls", headers=AUTH)
        assert calls.status_code == 200 and calls.json()["total"] == 0


async def test_a_hanging_request_is_answered_503_once_the_server_stops(fake: FakeModyo) -> None:
    service = FaultyModyo(fake, Faults(hang_rate=1.0))
    app = FakeModyoApp(service)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url=MODYO_URL
        ) as client,
    ):
        pending = asyncio.create_task(
            client.post(f"{API}/groups", json={"name": "g"}, headers=AUTH)
        )
        await until(lambda: service.injected["hang"])
        assert not pending.done()
        app.shutting_down()  # what the server's SIGTERM handler calls
        response = await pending
    assert response.status_code == 503
    assert fake.groups == {}  # not applied


async def test_a_held_route_waits_unapplied_until_released_over_the_control_plane(
    fake: FakeModyo,
) -> None:
    """``POST /__fake__/hold`` holds the next call to a route before it is applied, ``GET
    calls`` counts it as ``held``, ``POST release`` lets it go on; other routes pass."""
    service = FaultyModyo(fake)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=FakeModyoApp(service)), base_url=MODYO_URL, headers=AUTH
    ) as client:
        refused = await client.post("/__fake__/hold", json={"route": 3})
        assert refused.status_code == 422 and refused.json()["errors"]
        hold = await client.post("/__fake__/hold", json={"route": "POST /groups"})
        assert hold.status_code == 204
        pending = asyncio.create_task(
            client.post(f"{API}/groups", json={"name": "held"}, headers=AUTH)
        )
        await until(lambda: service.held["POST /groups"] == 1)
        calls = (await client.get("/__fake__/calls")).json()
        assert calls["held"] == {"POST /groups": 1} and fake.groups == {}
        passed = await client.post(f"{API}/groups", json={"name": "free"}, headers=AUTH)
        assert passed.status_code == 201  # a hold is for one call only
        assert (await client.post("/__fake__/release")).status_code == 204
        assert (await pending).status_code == 201
        assert (await client.get("/__fake__/calls")).json()["held"] == {}
    assert sorted(group["name"] for group in fake.groups.values()) == ["free", "held"]


async def test_stopping_releases_held_calls_and_unused_holds(fake: FakeModyo) -> None:
    service = FaultyModyo(fake)
    first = service.hold_next("POST /groups")
    service.hold_next("POST /groups")
    pending = asyncio.create_task(serve(service, "POST", "/groups", {"name": "g"}))
    await within("the held call arriving", first.arrived.wait())
    service.stop_hanging()
    assert (await pending).applied
    assert (await serve(service, "POST", "/groups", {"name": "h"})).applied  # hold dropped
    assert not service.held


async def test_no_faults_is_a_plain_pass_through(fake: FakeModyo) -> None:
    service = FaultyModyo(fake)
    assert not service.faults.active
    outcome = await serve(service, "POST", "/groups", {"name": "g"})
    assert outcome.applied and outcome.response is not None
    assert outcome.response.status == 201
    assert not service.injected


@pytest.mark.parametrize(("retry_after", "header"), [(1.0, "1"), (2.5, "3"), (0.0, "0")])
async def test_throttle_answers_429_with_retry_after_and_applies_nothing(
    fake: FakeModyo, retry_after: float, header: str
) -> None:
    service = FaultyModyo(fake, Faults(throttle_rate=1.0, retry_after_seconds=retry_after))
    outcome = await serve(service, "POST", "/groups", {"name": "g"})
    assert outcome.response is not None
    assert outcome.response.status == 429
    assert outcome.response.headers == {"Retry-After": header}
    assert outcome.applied is False
    assert fake.groups == {}
    assert not fake.calls  # the fake never saw it
    assert service.injected == {"throttled": 1}


async def test_errors_answer_transient_5xx_and_apply_nothing(fake: FakeModyo) -> None:
    service = FaultyModyo(fake, Faults(error_rate=1.0, seed=5))
    statuses = set()
    for number in range(30):
        outcome = await serve(service, "POST", "/groups", {"name": f"g{number}"})
        assert outcome.response is not None and outcome.applied is False
        statuses.add(outcome.response.status)
    assert statuses == {502, 503, 504}  # the retryable ones
    assert fake.groups == {} and not fake.calls
    assert service.injected == {"error": 30}


async def test_lost_responses_apply_the_write_then_fail(fake: FakeModyo) -> None:
    service = FaultyModyo(fake, Faults(lost_response_rate=1.0, seed=1))
    outcomes = [await serve(service, "POST", "/groups", {"name": f"g{n}"}) for n in range(20)]
    assert all(outcome.applied for outcome in outcomes)
    assert len(fake.groups) == 20  # every write was applied
    bad_gateway = [o for o in outcomes if o.response is not None]
    dropped = [o for o in outcomes if o.response is None]
    assert all(o.response is not None and o.response.status == 502 for o in bad_gateway)
    assert bad_gateway and dropped  # both ways of losing an answer occur
    assert service.injected == {"lost_502": len(bad_gateway), "lost_connection": len(dropped)}


async def test_lose_next_applies_then_drops_only_the_named_route(fake: FakeModyo) -> None:
    service = FaultyModyo(fake)
    service.lose_next("POST /groups")
    read = await serve(service, "GET", "/groups")
    lost = await serve(service, "POST", "/groups", {"name": "g1"})
    kept = await serve(service, "POST", "/groups", {"name": "g2"})
    assert read.response is not None and read.response.status == 200
    assert lost == Served(response=None, applied=True)
    assert kept.response is not None and kept.response.status == 201
    assert sorted(group["name"] for group in fake.groups.values()) == ["g1", "g2"]
    assert service.injected == {"lost_connection": 1}


async def test_rate_limit_rejects_requests_beyond_the_bucket(fake: FakeModyo) -> None:
    now = [100.0]
    service = FaultyModyo(fake, Faults(rate_limit_rps=4), clock=lambda: now[0])
    names = (f"g{n}" for n in range(100))

    async def burst(size: int) -> list[Served]:
        return [await serve(service, "POST", "/groups", {"name": next(names)}) for _ in range(size)]

    def statuses(outcomes: list[Served]) -> list[int | None]:
        return [o.response.status if o.response else None for o in outcomes]

    first = await burst(6)  # one instant: the bucket holds one second's worth, 4
    assert statuses(first) == [201, 201, 201, 201, 429, 429]
    now[0] += 0.25  # a quarter of a second refills one token
    second = await burst(2)
    assert statuses(second) == [201, 429]
    now[0] += 60  # a long pause refills the bucket, never beyond one second's worth
    third = await burst(6)
    assert statuses(third) == [201, 201, 201, 201, 429, 429]
    rejected = [o for o in first + second + third if o.response and o.response.status == 429]
    assert all(o.applied is False for o in rejected)
    assert all(
        o.response is not None and o.response.headers == {"Retry-After": "1"} for o in rejected
    )
    assert len(fake.groups) == 9
    assert service.injected == {"rate_limited": 5}


async def test_latency_delays_every_answer(fake: FakeModyo) -> None:
    service = FaultyModyo(fake, Faults(latency_ms=60))
    started = time.perf_counter()
    outcome = await serve(service, "GET", "/profile")
    assert time.perf_counter() - started >= 0.05
    assert outcome.response is not None and outcome.response.status == 200


async def test_hang_never_answers(fake: FakeModyo) -> None:
    service = FaultyModyo(fake, Faults(hang_rate=1.0))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(serve(service, "POST", "/groups", {"name": "g"}), 0.05)
    assert service.injected == {"hang": 1}
    assert fake.groups == {}


@pytest.mark.parametrize(
    "values",
    [{"error_rate": 1.5}, {"hang_rate": -0.1}, {"latency_ms": -1}, {"rate_limit_rps": -2},
     {"error_rate": float("nan")}, {"latency_ms": float("inf")}, {"latency_ms": float("nan")},
     {"retry_after_seconds": float("inf")}],
)  # fmt: skip
def test_impossible_faults_are_refused(values: dict[str, Any]) -> None:
    """Infinite latency made every answer wait forever (``--latency-ms inf`` was accepted)."""
    with pytest.raises(ValueError, match=r"negative|probabilities|finite"):
        Faults(**values)


# ---------------------------------------------------------------------- adapters


def script() -> list[tuple[str, str, list[tuple[str, str]], Any, Mapping[str, str]]]:
    """Requests covering created/listed/conflict/validation/404/401/204 answers."""
    return [
        ("POST", "/groups", [], {"name": "Admins", "external_id": "obj-1"}, AUTH),
        ("POST", "/team_members", [], {"username": "ana@x.io", "email": "ana@x.io"}, AUTH),
        ("POST", "/team_members", [], {"username": "ANA@x.io", "email": "b@x.io"}, AUTH),
        ("POST", "/team_members", [], {"username": 5, "email": "c@x.io"}, AUTH),
        (
            "GET",
            "/team_members",
            [("per_page", "1000"), ("only[]", "id"), ("only[]", "username")],
            None,
            AUTH,
        ),
        ("GET", "/groups", [("name", "admins")], None, AUTH),
        ("POST", "/groups/18/team_members", [], {"team_member_ids": [344, 999]}, AUTH),
        ("POST", "/groups/18/team_members", [], {"team_member_ids": [344]}, AUTH),
        ("GET", "/groups/18/team_members", [("only[]", "id,username")], None, AUTH),
        ("GET", "/team_members/344", [], None, AUTH),
        ("DELETE", "/groups/18/team_members/345", [], None, AUTH),
        ("GET", "/team_members/abc", [], None, AUTH),
        ("GET", "/profile", [], None, {"Authorization": "Bearer nope"}),
        ("DELETE", "/team_members/344", [], None, AUTH),
    ]


def twin() -> FakeModyo:
    return FakeModyo(token=MODYO_TOKEN, clock=lambda: FIXED_CLOCK)


def expected_answers() -> list[tuple[int, Any]]:
    direct = twin()
    answers = []
    for method, path, query, body, headers in script():
        response = call(direct, method, path, query, body, headers)
        answers.append((response.status, response.body))
    assert [status for status, _ in answers] == [
        201,
        201,
        409,
        422,
        200,
        200,
        409,
        204,
        200,
        200,
        404,
        404,
        401,
        204,
    ]
    return answers


async def over_http(client: httpx.AsyncClient) -> list[tuple[int, Any]]:
    answers = []
    for method, path, query, body, headers in script():
        response = await client.request(
            method, API + path, params=tuple(query), json=body, headers=dict(headers)
        )
        assert response.headers["content-type"].startswith("application/json")
        answers.append((response.status_code, response.json() if response.content else None))
    return answers


async def test_the_asgi_app_answers_like_handle() -> None:
    app = FakeModyoApp(FaultyModyo(twin()))
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url=MODYO_URL
        ) as client,
    ):
        assert await over_http(client) == expected_answers()


async def test_the_respx_router_answers_like_handle() -> None:
    service = FaultyModyo(twin())
    async with httpx.AsyncClient(
        transport=mock_transport(service, MODYO_URL), base_url=MODYO_URL
    ) as client:
        assert await over_http(client) == expected_answers()
    assert service.fake.calls["POST /team_members"] == 3


@pytest.mark.parametrize("adapter", ["asgi", "router"])
async def test_adapters_pass_retry_after_through(adapter: str) -> None:
    service = FaultyModyo(twin(), Faults(throttle_rate=1.0, retry_after_seconds=7))
    transport = (
        httpx.ASGITransport(app=FakeModyoApp(service))
        if adapter == "asgi"
        else mock_transport(service, MODYO_URL)
    )
    async with httpx.AsyncClient(transport=transport, base_url=MODYO_URL) as client:
        response = await client.get(f"{API}/profile", headers=AUTH)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"


async def test_a_dropped_connection_surfaces_as_remote_protocol_error_through_the_router() -> None:
    fake = twin()
    service = FaultyModyo(fake)
    service.lose_next("POST /groups")
    async with httpx.AsyncClient(
        transport=mock_transport(service, MODYO_URL), base_url=MODYO_URL
    ) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(f"{API}/groups", json={"name": "g"}, headers=AUTH)
    assert service.injected == {"lost_connection": 1}
    assert [group["name"] for group in fake.groups.values()] == ["g"]  # applied nonetheless


async def test_a_dropped_connection_over_asgi_applies_then_fails() -> None:
    fake = twin()
    service = FaultyModyo(fake)
    service.lose_next("POST /groups")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=FakeModyoApp(service)), base_url=MODYO_URL
    ) as client:
        with pytest.raises(ConnectionAbortedError):
            await client.post(f"{API}/groups", json={"name": "g"}, headers=AUTH)
    assert service.injected == {"lost_connection": 1}
    assert len(fake.groups) == 1


async def test_the_router_refuses_hosts_other_than_modyo() -> None:
    service = FaultyModyo(twin())
    async with httpx.AsyncClient(transport=mock_transport(service, MODYO_URL)) as client:
        with pytest.raises(Exception, match=r"not mocked|RESPX"):
            await client.get("http://elsewhere.test/api/admin/profile", headers=AUTH)
    assert not service.fake.calls
