"""RestUpstream against the fake Modyo (no other mocks): field mapping, paging, memberships,
error mapping, retries, create adoption after lost answers, the deadline."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import Settings
from bridge.deadline import deadline_in
from bridge.modyo import retry
from bridge.modyo.fake import FakeModyo, Faults, mock_transport
from bridge.modyo.fake.base import FakeResponse
from bridge.modyo.http import ModyoHttp
from bridge.modyo.rest import RestUpstream, _failure
from bridge.modyo.retry import RetryPolicy, parse_retry_after
from bridge.upstream import (
    BadGateway,
    Conflict,
    GroupField,
    GroupRecord,
    MemberRecord,
    NotFound,
    Rejected,
    TokenRejected,
    Unavailable,
    UnknownMembers,
    UpstreamError,
    UserChanges,
    UserField,
    UserRecord,
)
from tests.harness import MODYO_TOKEN, MODYO_URL, make_settings
from tests.hooks import HookedModyo, VirtualClock
from tests.properties import examples
from tests.waits import until

API = "/api/admin"
AUTH = {"Authorization": f"Bearer {MODYO_TOKEN}"}


@pytest.fixture(autouse=True)
def _quiet_retry_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="bridge.modyo")


@dataclass
class Rig:
    fake: FakeModyo
    service: HookedModyo
    client: RestUpstream
    clock: VirtualClock  # the retry policy waits on it: ``clock.waits`` says how long


@asynccontextmanager
async def rig(
    faults: Faults | None = None,
    fake: FakeModyo | None = None,
    settings: Settings | None = None,
) -> AsyncIterator[Rig]:
    fake = fake if fake is not None else FakeModyo(token=MODYO_TOKEN)
    clock = VirtualClock()
    service = HookedModyo(fake, faults, clock=clock)
    settings = settings or make_settings()
    http = ModyoHttp(
        settings.modyo,
        RetryPolicy(settings.retry, sleep=clock.sleep),
        mock_transport(service, MODYO_URL),
    )
    client = RestUpstream(http)
    async with client.connected():
        yield Rig(fake, service, client, clock)


@pytest.fixture
async def bench() -> AsyncIterator[Rig]:
    async with rig() as built:
        yield built


def seed_member(fake: FakeModyo, username: str, **fields: Any) -> dict[str, Any]:
    """A team member created straight in the fake (its call is then forgotten)."""
    body = json.dumps({"username": username, "email": username, **fields}).encode()
    response = fake.handle("POST", f"{API}/team_members", [], body, AUTH)
    assert response.status == 201, response.body
    fake.reset_calls()
    created: dict[str, Any] = response.body
    return created


def seed_group(fake: FakeModyo, name: str, **fields: Any) -> int:
    body = json.dumps({"name": name, **fields}).encode()
    response = fake.handle("POST", f"{API}/groups", [], body, AUTH)
    assert response.status == 201, response.body
    fake.reset_calls()
    group_id: int = response.body["id"]
    return group_id


def seed_users(fake: FakeModyo, count: int) -> list[int]:
    return [seed_member(fake, f"user{number:04}@example.com")["id"] for number in range(count)]


ANA: UserChanges = {
    UserField.USER_NAME: "ana@contoso.com",
    UserField.EMAIL: "ana@contoso.com",
    UserField.GIVEN_NAME: "Ana",
    UserField.FAMILY_NAME: "Diaz",
    UserField.FORMATTED_NAME: "Ana Diaz",
    UserField.EXTERNAL_ID: "ext-ana",
    UserField.ACTIVE: True,
}


# ---------------------------------------------------------------------- users


async def test_create_user_maps_every_field_and_costs_one_call(bench: Rig) -> None:
    record = await bench.client.create_user(ANA)
    stored = bench.fake.team_members[int(record.id)]
    assert (stored["username"], stored["email"], stored["first_name"], stored["last_name"]) == (
        "ana@contoso.com",
        "ana@contoso.com",
        "Ana",
        "Diaz",
    )
    assert (stored["name"], stored["external_id"], stored["active"]) == (
        "Ana Diaz",
        "ext-ana",
        True,
    )
    assert record == UserRecord(
        id=str(stored["id"]),
        user_name="ana@contoso.com",
        email="ana@contoso.com",
        given_name="Ana",
        family_name="Diaz",
        formatted_name="Ana Diaz",
        external_id="ext-ana",
        active=True,
        created=stored["created_at"],
        last_modified=stored["updated_at"],
        group_ids=frozenset(),
    )
    assert bench.fake.calls == {"POST /team_members": 1}


async def test_get_user_maps_fields_and_group_ids(bench: Rig) -> None:
    member = seed_member(bench.fake, "bob@contoso.com", first_name="Bob", active=False)
    group_id = seed_group(bench.fake, "Admins")
    bench.fake.handle(
        "POST",
        f"{API}/groups/{group_id}/team_members",
        [],
        json.dumps({"team_member_ids": [member["id"]]}).encode(),
        AUTH,
    )
    bench.fake.reset_calls()
    record = await bench.client.get_user(str(member["id"]))
    assert record.id == str(member["id"])
    assert record.user_name == "bob@contoso.com"
    assert record.given_name == "Bob"
    assert record.family_name is None  # null upstream
    assert record.formatted_name == "Bob"  # Modyo derives the name
    assert record.external_id is None
    assert record.active is False
    assert record.group_ids == frozenset({str(group_id)})
    assert bench.fake.calls == {"GET /team_members/:id": 1}
    with pytest.raises(NotFound):
        await bench.client.get_user("999999")


async def test_update_user_sends_only_the_changes_and_can_clear_values(bench: Rig) -> None:
    created = await bench.client.create_user(ANA)
    updated = await bench.client.update_user(
        created.id,
        {UserField.GIVEN_NAME: None, UserField.ACTIVE: False, UserField.EMAIL: "a2@contoso.com"},
    )
    assert updated.given_name is None
    assert updated.active is False
    assert updated.email == "a2@contoso.com"
    assert updated.family_name == "Diaz" and updated.external_id == "ext-ana"  # untouched
    assert updated.user_name == "ana@contoso.com"
    stored = bench.fake.team_members[int(created.id)]
    assert stored["first_name"] is None and stored["active"] is False
    assert bench.fake.calls["PUT /team_members/:id"] == 1
    with pytest.raises(NotFound):
        await bench.client.update_user("999999", {UserField.ACTIVE: False})


async def test_delete_user_removes_the_team_member(bench: Rig) -> None:
    created = await bench.client.create_user(ANA)
    await bench.client.delete_user(created.id)
    assert int(created.id) not in bench.fake.team_members
    assert bench.fake.calls["DELETE /team_members/:id"] == 1
    with pytest.raises(NotFound):
        await bench.client.get_user(created.id)
    with pytest.raises(NotFound):  # no lost answer before: a 404 is a real 404
        await bench.client.delete_user(created.id)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (UserField.USER_NAME, "ANA@Contoso.com"),
        (UserField.EMAIL, "Ana@CONTOSO.com"),
        (UserField.EXTERNAL_ID, "ext-ana"),
    ],
)
async def test_search_users_by_each_searchable_field(
    bench: Rig, field: UserField, value: str
) -> None:
    ana = seed_member(bench.fake, "ana@contoso.com", external_id="ext-ana")
    seed_member(bench.fake, "bob@contoso.com", external_id="ext-bob")
    found = await bench.client.search_users(field, value)
    assert [record.id for record in found] == [str(ana["id"])]
    assert found[0].user_name == "ana@contoso.com"
    assert bench.fake.calls == {"GET /team_members": 1}
    assert await bench.client.search_users(field, "nobody") == []


# ---------------------------------------------------------------------- groups


async def test_group_lifecycle_maps_fields(bench: Rig) -> None:
    created = await bench.client.create_group(
        {GroupField.DISPLAY_NAME: "Admins", GroupField.EXTERNAL_ID: "obj-1"}
    )
    stored = bench.fake.groups[int(created.id)]
    assert created == GroupRecord(
        id=str(stored["id"]),
        display_name="Admins",
        external_id="obj-1",
        created=stored["created_at"],
        last_modified=stored["updated_at"],
    )
    assert await bench.client.get_group(created.id) == created
    renamed = await bench.client.update_group(
        created.id, {GroupField.DISPLAY_NAME: "Admins 2", GroupField.EXTERNAL_ID: None}
    )
    assert (renamed.display_name, renamed.external_id) == ("Admins 2", None)
    assert stored["name"] == "Admins 2"
    assert [
        g.id for g in await bench.client.search_groups(GroupField.DISPLAY_NAME, "aDMINS 2")
    ] == [created.id]
    await bench.client.delete_group(created.id)
    assert bench.fake.groups == {}
    with pytest.raises(NotFound):
        await bench.client.get_group(created.id)
    assert bench.fake.calls == {
        "POST /groups": 1,
        "GET /groups/:id": 2,
        "PUT /groups/:id": 1,
        "GET /groups": 1,
        "DELETE /groups/:id": 1,
    }


async def test_search_groups_by_external_id(bench: Rig) -> None:
    seed_group(bench.fake, "Admins", external_id="obj-1")
    writers = seed_group(bench.fake, "Writers", external_id="obj-2")
    found = await bench.client.search_groups(GroupField.EXTERNAL_ID, "obj-2")
    assert [(g.id, g.display_name) for g in found] == [(str(writers), "Writers")]
    assert await bench.client.search_groups(GroupField.EXTERNAL_ID, "obj-3") == []


# ---------------------------------------------------------------------- ids


BAD_IDS = [
    "",
    " 7",
    "7 ",
    "+7",
    "-1",
    "١٢",
    "a/b",
    "a?b",
    "a#b",
    "a%2Fb",
    "..",
    "a..b",
    "7\n",
    "x" * 65,
]
"""Ids no Modyo can have issued for a path: ids are opaque tokens (integers, uuids) of a
path-safe alphabet, at most 64 characters (docs/design/modyo-contract.md C13)."""
OPAQUE_IDS = ["abc", "007", "0x10", "830d2b95-4f0c-4c5e-9a57-2e0b1f6a7c11", "1.5"]


@pytest.mark.parametrize("raw", BAD_IDS)
async def test_ids_that_cannot_be_in_a_path_are_not_found_without_a_call(
    bench: Rig, raw: str
) -> None:
    group_id = str(seed_group(bench.fake, "Admins"))
    member_id = str(seed_member(bench.fake, "ana@contoso.com")["id"])
    attempts = [
        bench.client.get_user(raw),
        bench.client.update_user(raw, {UserField.ACTIVE: False}),
        bench.client.delete_user(raw),
        bench.client.get_group(raw),
        bench.client.update_group(raw, {GroupField.DISPLAY_NAME: "x"}),
        bench.client.delete_group(raw),
        bench.client.list_members(raw),
        bench.client.add_members(raw, [member_id]),
        bench.client.remove_members(raw, [member_id]),
    ]
    for attempt in attempts:
        with pytest.raises(NotFound):
            await attempt
    assert not bench.fake.calls
    assert await bench.client.memberships([raw]) == {}
    assert not bench.fake.calls
    assert group_id  # the objects exist; only the id shape decided


@pytest.mark.parametrize("raw", OPAQUE_IDS)
async def test_opaque_ids_are_asked_of_modyo(bench: Rig, raw: str) -> None:
    """A uuid (Modyo's console addresses team members by it) or any safe token reaches
    Modyo, which decides: here it has no such object."""
    with pytest.raises(NotFound):
        await bench.client.get_user(raw)
    assert bench.fake.calls["GET /team_members/:id"] == 1


# ---------------------------------------------------------------------- windows and paging


@pytest.fixture
async def thirty(bench: Rig) -> tuple[Rig, list[int]]:
    return bench, seed_users(bench.fake, 30)


async def test_an_aligned_window_costs_one_call(thirty: tuple[Rig, list[int]]) -> None:
    bench, ids = thirty
    page = await bench.client.list_users(10, 10)
    assert page.total == 30
    assert [int(record.id) for record in page.items] == ids[10:20]
    assert bench.fake.calls == {"GET /team_members": 1}


async def test_an_aligned_window_across_a_hundred_boundary_is_still_one_call(bench: Rig) -> None:
    ids = seed_users(bench.fake, 130)
    page = await bench.client.list_users(90, 30)  # page 4 of 30, not pages 1 and 2 of 100
    assert [int(record.id) for record in page.items] == ids[90:120]
    assert bench.fake.calls == {"GET /team_members": 1}


async def test_an_unaligned_window_returns_exactly_the_right_users_in_id_order(
    thirty: tuple[Rig, list[int]],
) -> None:
    bench, ids = thirty
    # A recent update must not change the order (Modyo's default is updated_at DESC).
    bench.fake.handle("PUT", f"{API}/team_members/{ids[7]}", [], b'{"first_name": "X"}', AUTH)
    bench.fake.reset_calls()
    page = await bench.client.list_users(5, 10)
    assert page.total == 30
    assert [int(record.id) for record in page.items] == ids[5:15]
    assert bench.fake.calls == {"GET /team_members": 1}
    tail = await bench.client.list_users(25, 10)
    assert [int(record.id) for record in tail.items] == ids[25:]
    past = await bench.client.list_users(40, 10)
    assert (past.total, past.items) == (30, [])


async def test_a_window_across_two_pages(bench: Rig) -> None:
    ids = seed_users(bench.fake, 130)
    page = await bench.client.list_users(95, 10)
    assert [int(record.id) for record in page.items] == ids[95:105]
    assert bench.fake.calls == {"GET /team_members": 2}
    bench.fake.reset_calls()
    whole = await bench.client.list_users(0, 130)
    assert [int(record.id) for record in whole.items] == ids
    assert whole.total == 130
    assert bench.fake.calls == {"GET /team_members": 2}


async def test_count_zero_returns_the_total_and_no_items(thirty: tuple[Rig, list[int]]) -> None:
    bench, _ = thirty
    page = await bench.client.list_users(0, 0)
    assert (page.total, page.items) == (30, [])
    assert bench.fake.calls == {"GET /team_members": 1}


async def test_list_groups_windows_in_id_order(bench: Rig) -> None:
    ids = [seed_group(bench.fake, f"Group {number:02}") for number in range(12)]
    page = await bench.client.list_groups(3, 4)
    assert page.total == 12
    assert [int(group.id) for group in page.items] == ids[3:7]
    assert [group.display_name for group in page.items] == [f"Group {n:02}" for n in range(3, 7)]
    empty = await bench.client.list_groups(0, 0)
    assert (empty.total, empty.items) == (12, [])


async def test_list_members_collects_every_page(bench: Rig) -> None:
    group_id = seed_group(bench.fake, "Everyone")
    ids = bench.fake.seed_group_members(group_id, 250)
    members = await bench.client.list_members(str(group_id))
    assert len(members) == 250
    assert {member.id for member in members} == {str(i) for i in ids}
    assert members[0] == MemberRecord(id=str(ids[0]), display="bulk0@example.com")
    assert bench.fake.calls == {"GET /groups/:id/team_members": 3}
    with pytest.raises(NotFound):
        await bench.client.list_members("999999")


async def test_list_members_of_an_empty_group_is_one_call(bench: Rig) -> None:
    group_id = seed_group(bench.fake, "Nobody")
    assert await bench.client.list_members(str(group_id)) == []
    assert bench.fake.calls == {"GET /groups/:id/team_members": 1}


# ---------------------------------------------------------------------- memberships


async def test_memberships_per_existing_user_one_call_per_100_ids(bench: Rig) -> None:
    first = seed_group(bench.fake, "First")
    second = seed_group(bench.fake, "Second")
    ids = bench.fake.seed_group_members(first, 250)
    bench.fake.handle(
        "POST",
        f"{API}/groups/{second}/team_members",
        [],
        json.dumps({"team_member_ids": ids[:3]}).encode(),
        AUTH,
    )
    loner = seed_member(bench.fake, "loner@contoso.com")["id"]
    bench.fake.reset_calls()
    asked = [str(i) for i in ids] + [str(loner), "999999", "abc", str(ids[0])]
    found = await bench.client.memberships(asked)
    assert set(found) == {str(i) for i in ids} | {str(loner)}  # unknown ids are absent
    assert found[str(ids[0])] == frozenset({str(first), str(second)})
    assert found[str(ids[100])] == frozenset({str(first)})
    assert found[str(loner)] == frozenset()
    assert bench.fake.calls == {"GET /team_members": 3}  # 252 numeric ids


async def test_memberships_of_nothing_costs_nothing(bench: Rig) -> None:
    assert await bench.client.memberships([]) == {}
    assert await bench.client.memberships(["a/b", "..", ""]) == {}
    assert not bench.fake.calls


async def test_add_members_in_chunks_of_100(bench: Rig) -> None:
    holder = seed_group(bench.fake, "Holder")
    target = seed_group(bench.fake, "Target")
    ids = bench.fake.seed_group_members(holder, 250)
    await bench.client.add_members(str(target), [str(i) for i in ids] + [str(ids[0])])
    assert bench.fake.group_member_ids(target) == set(ids)
    assert bench.fake.calls == {"POST /groups/:id/team_members": 3}
    bench.fake.reset_calls()
    await bench.client.add_members(str(target), [str(ids[5])])  # already a member: no-op
    assert bench.fake.calls == {"POST /groups/:id/team_members": 1}
    assert len(bench.fake.group_member_ids(target)) == 250


async def test_add_members_with_unknown_ids_names_them_and_adds_nothing(bench: Rig) -> None:
    group_id = seed_group(bench.fake, "Admins")
    ana = seed_member(bench.fake, "ana@contoso.com")["id"]
    with pytest.raises(UnknownMembers) as caught:
        await bench.client.add_members(str(group_id), [str(ana), "999999", "ghost"])
    assert caught.value.ids == ["999999", "ghost"]
    assert "999999" in caught.value.detail and "ghost" in caught.value.detail
    assert bench.fake.group_member_ids(group_id) == set()


async def test_add_members_to_a_missing_group_is_not_found(bench: Rig) -> None:
    ana = seed_member(bench.fake, "ana@contoso.com")["id"]
    with pytest.raises(NotFound):
        await bench.client.add_members("999999", [str(ana)])


async def test_remove_members_treats_not_a_member_as_done(bench: Rig) -> None:
    group_id = seed_group(bench.fake, "Admins")
    ids = bench.fake.seed_group_members(group_id, 3)
    outsider = seed_member(bench.fake, "out@contoso.com")["id"]
    await bench.client.remove_members(str(group_id), [str(ids[0]), str(ids[1]), str(outsider)])
    assert bench.fake.group_member_ids(group_id) == {ids[2]}
    assert bench.fake.calls == {"DELETE /groups/:id/team_members/:member_id": 3}
    await bench.client.remove_members(str(group_id), [str(ids[0])])  # again: still fine
    assert ids[0] in bench.fake.team_members  # the member itself stays


async def test_remove_members_reports_an_upstream_failure_as_such() -> None:
    settings = make_settings(retry={"max_attempts": 1})
    async with rig(Faults(error_rate=1.0), settings=settings) as bench:
        group_id = seed_group(bench.fake, "Admins")
        ids = bench.fake.seed_group_members(group_id, 2)
        with pytest.raises(Unavailable):
            await bench.client.remove_members(str(group_id), [str(i) for i in ids])


async def test_a_failing_later_page_is_reported_as_an_upstream_error() -> None:
    settings = make_settings(retry={"max_attempts": 1})
    async with rig(settings=settings) as bench:
        group_id = seed_group(bench.fake, "Everyone")
        bench.fake.seed_group_members(group_id, 250)
        # One request per second: page 1 passes, pages 2 and 3 are throttled (and not retried).
        bench.service.configure(Faults(rate_limit_rps=1))
        with pytest.raises(UpstreamError):
            await bench.client.list_members(str(group_id))


# ---------------------------------------------------------------------- error mapping


async def test_uniqueness_conflicts_name_the_field(bench: Rig) -> None:
    await bench.client.create_user(ANA)
    with pytest.raises(Conflict) as by_name:
        await bench.client.create_user(
            {UserField.USER_NAME: "ANA@contoso.com", UserField.EMAIL: "other@contoso.com"}
        )
    assert by_name.value.field is UserField.USER_NAME
    with pytest.raises(Conflict) as by_email:
        await bench.client.create_user(
            {UserField.USER_NAME: "other@contoso.com", UserField.EMAIL: "ANA@contoso.com"}
        )
    assert by_email.value.field is UserField.EMAIL
    bob = await bench.client.create_user(
        {UserField.USER_NAME: "bob@contoso.com", UserField.EMAIL: "bob@contoso.com"}
    )
    with pytest.raises(Conflict) as on_update:
        await bench.client.update_user(bob.id, {UserField.USER_NAME: "ana@contoso.com"})
    assert on_update.value.field is UserField.USER_NAME
    assert len(bench.fake.team_members) == 2


async def test_group_name_conflicts_name_display_name(bench: Rig) -> None:
    await bench.client.create_group(
        {GroupField.DISPLAY_NAME: "Admins", GroupField.EXTERNAL_ID: "1"}
    )
    with pytest.raises(Conflict) as on_create:
        await bench.client.create_group(
            {GroupField.DISPLAY_NAME: "ADMINS", GroupField.EXTERNAL_ID: "2"}
        )
    assert on_create.value.field is GroupField.DISPLAY_NAME
    writers = await bench.client.create_group({GroupField.DISPLAY_NAME: "Writers"})
    with pytest.raises(Conflict) as on_update:
        await bench.client.update_group(writers.id, {GroupField.DISPLAY_NAME: "admins"})
    assert on_update.value.field is GroupField.DISPLAY_NAME
    assert len(bench.fake.groups) == 2


async def test_an_identical_create_is_a_conflict_not_an_adoption(bench: Rig) -> None:
    """A uniqueness failure nobody of ours may have caused is a real duplicate: RFC 7644 §3.3
    wants 409, so the upstream reports Conflict even when the values are the same."""
    await bench.client.create_user(ANA)
    with pytest.raises(Conflict) as caught:
        await bench.client.create_user(ANA)
    assert caught.value.field is UserField.USER_NAME
    await bench.client.create_group({GroupField.DISPLAY_NAME: "Admins"})
    with pytest.raises(Conflict):
        await bench.client.create_group({GroupField.DISPLAY_NAME: "Admins"})
    assert len(bench.fake.team_members) == 1 and len(bench.fake.groups) == 1


async def test_a_conflict_after_an_unknown_outcome_adopts_our_own_create(bench: Rig) -> None:
    """The first POST was applied but its answer lost; the lookup lags behind (it finds
    nothing), so the create is sent again and meets 409: that one is ours, and is adopted."""
    empty = {"team_members": [], "meta": {"total_entries": 0, "per_page": 100,
                                          "current_page": 1, "total_pages": 0}}  # fmt: skip
    bench.service.lose_next("POST /team_members")
    bench.fake.script("GET /team_members", FakeResponse(200, empty))
    created = await bench.client.create_user(ANA)
    assert len(bench.fake.team_members) == 1
    assert created.id == str(next(iter(bench.fake.team_members)))
    assert bench.fake.calls["POST /team_members"] == 2


@pytest.mark.parametrize(
    "values",
    [
        {UserField.USER_NAME: "ana diaz", UserField.EMAIL: "ana@contoso.com"},
        {UserField.USER_NAME: "ana@contoso.com", UserField.EMAIL: "not-an-email"},
        {UserField.USER_NAME: "ana@contoso.com", UserField.EMAIL: ""},
        {UserField.USER_NAME: "ana@contoso.com", UserField.EMAIL: "a@c.io", UserField.ACTIVE: "y"},
    ],
    ids=["bad-username", "bad-email", "blank-email", "wrong-type"],
)
async def test_validation_failures_are_rejected(bench: Rig, values: dict[UserField, Any]) -> None:
    with pytest.raises(Rejected) as caught:
        await bench.client.create_user(values)
    assert not isinstance(caught.value, Conflict)
    assert caught.value.detail
    assert bench.fake.team_members == {}


async def test_a_group_without_name_is_rejected(bench: Rig) -> None:
    with pytest.raises(Rejected):
        await bench.client.create_group({GroupField.DISPLAY_NAME: " "})


async def test_a_bad_modyo_token_is_token_rejected_and_hides_the_token() -> None:
    async with rig(fake=FakeModyo(token="the-real-token-is-different")) as bench:
        for attempt in (
            bench.client.get_user("344"),
            bench.client.create_user(ANA),
            bench.client.list_users(0, 10),
        ):
            with pytest.raises(TokenRejected) as caught:
                await attempt
            assert caught.value.retry_after == 60
            for text in (str(caught.value), caught.value.detail, repr(caught.value)):
                assert MODYO_TOKEN not in text
                assert "the-real-token" not in text
            assert "401" in caught.value.detail
        assert not bench.fake.calls


async def test_an_unexpected_status_is_a_bad_gateway() -> None:
    async with rig(fake=FakeModyo(token=MODYO_TOKEN, delete_team_members=False)) as bench:
        member = seed_member(bench.fake, "ana@contoso.com")
        with pytest.raises(BadGateway, match="405"):
            await bench.client.delete_user(str(member["id"]))
        assert bench.fake.calls == {"DELETE /team_members/:id": 1}  # not retried


def test_a_500_maps_to_bad_gateway_and_retryable_statuses_to_unavailable() -> None:
    request = httpx.Request("GET", f"{MODYO_URL}{API}/profile")
    server_error = _failure("GET /profile", httpx.Response(500, json={}, request=request))
    assert isinstance(server_error, BadGateway)
    assert "500" in server_error.detail
    throttled = _failure(
        "GET /profile",
        httpx.Response(429, headers={"Retry-After": "12"}, json={}, request=request),
    )
    assert isinstance(throttled, Unavailable) and throttled.retry_after == 12
    down = _failure("GET /profile", httpx.Response(503, request=request))
    assert isinstance(down, Unavailable) and down.retry_after == 5
    assert isinstance(_failure("GET /profile", httpx.Response(403, request=request)), BadGateway)
    assert isinstance(_failure("GET /x", httpx.Response(404, request=request)), NotFound)
    bare = _failure("POST /groups", httpx.Response(422, request=request))
    assert isinstance(bare, Rejected)


# ---------------------------------------------------------------------- retries


def _down(status: int = 503) -> FakeResponse:
    return FakeResponse(status, {"errors": ["Service unavailable"]})


def _throttled(retry_after: str) -> FakeResponse:
    return FakeResponse(429, {"errors": ["Too many requests"]}, {"Retry-After": retry_after})


async def test_a_read_succeeds_despite_a_high_5xx_rate() -> None:
    async with rig() as bench:
        member = seed_member(bench.fake, "ana@contoso.com")
        bench.fake.script("GET /team_members/:id", _down(502), _down(503), _down(504), _down())
        record = await bench.client.get_user(str(member["id"]))
    assert record.user_name == "ana@contoso.com"
    assert bench.fake.calls == {"GET /team_members/:id": 5}  # four 5xx, then the answer


async def test_a_read_waits_out_a_429_before_retrying() -> None:
    async with rig() as bench:
        member = seed_member(bench.fake, "ana@contoso.com")
        bench.fake.script("GET /team_members/:id", _throttled("1"), _down())
        record = await bench.client.get_user(str(member["id"]))
    assert record.id == str(member["id"])
    assert bench.fake.calls == {"GET /team_members/:id": 3}
    assert bench.clock.waits[0] == 1.0  # Retry-After: 1 was honoured, never called earlier
    assert len(bench.clock.waits) == 2 and bench.clock.waits[1] < 1  # then a backoff


async def test_the_retry_metric_names_each_status_it_retried() -> None:
    """The ``reason`` label is the status Modyo answered (given by the code that saw it, not
    read back from a message)."""
    from prometheus_client import REGISTRY

    def retried(reason: str) -> float:
        labels = {"call": "GET /team_members/:id", "reason": reason}
        return REGISTRY.get_sample_value("scim_bridge_modyo_retries_total", labels) or 0.0

    before = {reason: retried(reason) for reason in ("429", "502", "503")}
    async with rig() as bench:
        member = seed_member(bench.fake, "ana@contoso.com")
        bench.fake.script("GET /team_members/:id", _throttled("0"), _down(502), _down(503))
        await bench.client.get_user(str(member["id"]))
    assert {reason: retried(reason) - before[reason] for reason in before} == {
        "429": 1.0, "502": 1.0, "503": 1.0
    }  # fmt: skip


async def test_a_read_succeeds_despite_a_high_429_rate() -> None:
    async with rig() as bench:
        member = seed_member(bench.fake, "ana@contoso.com")
        bench.fake.script("GET /team_members/:id", *(_throttled("0") for _ in range(3)))
        record = await bench.client.get_user(str(member["id"]))
    assert record.user_name == "ana@contoso.com"
    assert bench.fake.calls == {"GET /team_members/:id": 4}
    assert bench.clock.waits == [0.0, 0.0, 0.0]


async def test_a_throttled_create_is_sent_again_without_a_lookup() -> None:
    """A 429 was not applied: re-sending a create is safe, no adoption lookup is needed."""
    async with rig() as bench:
        bench.fake.script("POST /team_members", *(_throttled("0") for _ in range(3)))
        record = await bench.client.create_user(ANA)
    assert bench.fake.calls == {"POST /team_members": 4}  # no GET: nothing to adopt
    assert list(bench.fake.team_members) == [int(record.id)]


async def test_a_retry_after_beyond_the_cap_gives_up_at_once() -> None:
    settings = make_settings(retry={"retry_after_cap_seconds": 0.5})
    faults = Faults(throttle_rate=1.0, retry_after_seconds=30)
    async with rig(faults, settings=settings) as bench:
        with pytest.raises(Unavailable) as caught:
            await bench.client.get_user("344")
    assert caught.value.retry_after >= 30
    assert bench.service.injected == {"throttled": 1}  # exactly one call
    assert bench.clock.waits == []  # and no wait: the 30 s are handed to the caller


async def test_retries_back_off_between_attempts() -> None:
    settings = make_settings(
        retry={"max_attempts": 3, "backoff_initial_seconds": 0.05, "backoff_max_seconds": 0.2}
    )
    async with rig(Faults(error_rate=1.0), settings=settings) as bench:
        with pytest.raises(Unavailable):
            await bench.client.get_user("344")
    assert bench.service.injected == {"error": 3}
    first, second = bench.clock.waits  # between the three attempts: 0.05 s, then 0.1 s,
    assert 0.05 <= first <= 0.1 and 0.1 <= second <= 0.15  # each plus up to 0.05 s of jitter


@pytest.mark.parametrize("attempts", [1, 3])
async def test_max_attempts_is_respected(attempts: int) -> None:
    settings = make_settings(retry={"max_attempts": attempts})
    async with rig(Faults(error_rate=1.0), settings=settings) as bench:
        with pytest.raises(Unavailable) as caught:
            await bench.client.get_user("344")
    assert bench.service.injected == {"error": attempts}
    assert not bench.fake.calls
    assert caught.value.retry_after >= 1


async def test_a_4xx_is_never_retried(bench: Rig) -> None:
    with pytest.raises(NotFound):
        await bench.client.get_user("999999")
    with pytest.raises(Rejected):
        await bench.client.create_user({UserField.USER_NAME: "x y", UserField.EMAIL: "x@y.io"})
    assert bench.fake.calls == {"GET /team_members/:id": 1, "POST /team_members": 1}


def _lose_next(service: HookedModyo, route: str, lost: str) -> None:
    """The next call to ``route`` is applied, then its answer lost: a 502 or a dropped line."""
    if lost == "lost_502":
        service.bad_gateway_next(route)
    else:
        service.lose_next(route)


LOST = pytest.mark.parametrize("lost", ["lost_502", "lost_connection"], ids=["502", "dropped"])


@LOST
async def test_a_create_whose_answer_is_lost_is_adopted_not_repeated(lost: str) -> None:
    async with rig() as bench:
        _lose_next(bench.service, "POST /team_members", lost)
        record = await bench.client.create_user(ANA)
    assert bench.service.injected == {lost: 1}  # the POST was applied, its answer lost
    (stored,) = bench.fake.team_members.values()  # exactly one team member
    assert record.id == str(stored["id"])
    assert (record.user_name, record.email, record.given_name) == (
        "ana@contoso.com",
        "ana@contoso.com",
        "Ana",
    )
    assert bench.fake.calls == {"POST /team_members": 1, "GET /team_members": 1}


async def test_a_lost_create_is_adopted_when_modyo_derived_an_unset_value() -> None:
    """``None`` asks for nothing: Modyo derives ``name`` from the parts."""
    values: UserChanges = {**ANA, UserField.FORMATTED_NAME: None, UserField.EXTERNAL_ID: None}
    async with rig() as bench:
        bench.service.bad_gateway_next("POST /team_members")
        record = await bench.client.create_user(values)
    assert bench.service.injected == {"lost_502": 1}
    assert len(bench.fake.team_members) == 1
    assert record.formatted_name == "Ana Diaz"
    assert bench.fake.calls == {"POST /team_members": 1, "GET /team_members": 1}


async def test_a_group_create_whose_answer_is_lost_is_adopted() -> None:
    async with rig() as bench:
        bench.service.bad_gateway_next("POST /groups")
        record = await bench.client.create_group(
            {GroupField.DISPLAY_NAME: "Admins", GroupField.EXTERNAL_ID: "obj-1"}
        )
    assert bench.service.injected == {"lost_502": 1}
    (stored,) = bench.fake.groups.values()
    assert (record.id, record.display_name) == (str(stored["id"]), "Admins")
    assert bench.fake.calls == {"POST /groups": 1, "GET /groups": 1}


async def test_a_create_refused_with_5xx_is_sent_again_once_not_found() -> None:
    async with rig() as bench:
        bench.fake.script("POST /team_members", _down())  # the first POST gets a 5xx, unapplied
        record = await bench.client.create_user(ANA)
    assert len(bench.fake.team_members) == 1
    assert record.id == str(next(iter(bench.fake.team_members)))
    assert bench.fake.calls == {"GET /team_members": 1, "POST /team_members": 2}


async def test_a_create_never_confirmed_gives_up_without_duplicates() -> None:
    settings = make_settings(retry={"max_attempts": 2})
    async with rig(Faults(error_rate=1.0), settings=settings) as bench:
        with pytest.raises(Unavailable):
            await bench.client.create_user(ANA)
    assert bench.fake.team_members == {}


@LOST
async def test_a_delete_whose_first_answer_is_lost_still_succeeds(lost: str) -> None:
    async with rig() as bench:
        member = seed_member(bench.fake, "ana@contoso.com")
        _lose_next(bench.service, "DELETE /team_members/:id", lost)
        await bench.client.delete_user(str(member["id"]))  # the retry answers 404: done
    assert bench.service.injected == {lost: 1}
    assert bench.fake.team_members == {}
    assert bench.fake.calls == {"DELETE /team_members/:id": 2}


async def test_a_lost_membership_add_is_repeated_safely() -> None:
    async with rig() as bench:
        group_id = seed_group(bench.fake, "Admins")
        ids = bench.fake.seed_group_members(seed_group(bench.fake, "Holder"), 3)
        bench.service.bad_gateway_next("POST /groups/:id/team_members")
        await bench.client.add_members(str(group_id), [str(i) for i in ids])
    assert bench.service.injected == {"lost_502": 1}
    assert bench.fake.group_member_ids(group_id) == set(ids)
    assert bench.fake.calls == {"POST /groups/:id/team_members": 2}


# ---------------------------------------------------------------------- deadline and bounds


async def test_a_hanging_modyo_is_cut_at_the_deadline() -> None:
    async with rig(Faults(hang_rate=1.0)) as bench, asyncio.timeout(5):  # guard: never hang
        with deadline_in(0.2), pytest.raises(Unavailable) as caught:
            await bench.client.get_user("344")  # a hang never ends: only the deadline can
    assert caught.value.retry_after >= 1
    assert bench.service.injected == {"hang": 1}


async def test_no_retry_is_started_that_the_deadline_cannot_see_through() -> None:
    async with rig(Faults(throttle_rate=1.0, retry_after_seconds=1)) as bench:
        with deadline_in(0.3), pytest.raises(Unavailable) as caught:
            await bench.client.get_user("344")
    assert bench.service.injected == {"throttled": 1}  # the 1 s wait would pass the deadline
    assert caught.value.retry_after >= 1
    assert bench.clock.waits == []  # gave up instead of sleeping through Retry-After


async def test_waiting_for_a_free_slot_is_cut_at_the_deadline() -> None:
    settings = make_settings(modyo={"max_in_flight": 1})
    async with rig(settings=settings) as bench, asyncio.timeout(5):  # guard: never hang
        member = seed_member(bench.fake, "ana@contoso.com")
        bench.service.gate.clear()  # calls wait at Modyo until the gate opens
        holder = asyncio.create_task(bench.client.get_user(str(member["id"])))
        await until(lambda: bench.service.entered == 1)  # the holder has the only slot
        with deadline_in(0.05), pytest.raises(Unavailable, match="free slot"):
            await bench.client.get_user(str(member["id"]))
        assert bench.service.entered == 1
        bench.service.gate.set()
        assert (await holder).id == str(member["id"])
    assert bench.fake.calls == {"GET /team_members/:id": 1}  # the queued call never went out


async def test_a_passed_deadline_makes_no_call(bench: Rig) -> None:
    with deadline_in(-1), pytest.raises(Unavailable):
        await bench.client.get_user("344")
    assert not bench.fake.calls


async def test_in_flight_calls_are_bounded() -> None:
    settings = make_settings(modyo={"max_in_flight": 2})
    async with rig(Faults(latency_ms=30), settings=settings) as bench:
        member = seed_member(bench.fake, "ana@contoso.com")
        records = await asyncio.gather(
            *(bench.client.get_user(str(member["id"])) for _ in range(6))
        )
    assert {record.id for record in records} == {str(member["id"])}
    assert bench.fake.calls == {"GET /team_members/:id": 6}
    assert bench.service.peak_in_flight == 2  # queued behind the bound, never above it


# ---------------------------------------------------------------------- Retry-After parsing


def test_parse_retry_after_seconds() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after("0") == 0.0


class _FrozenDatetime(datetime):
    """``datetime`` whose ``now`` is a fixed instant."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _FrozenDatetime:
        return cls(2025, 5, 1, 12, 0, 0, tzinfo=tz)


def test_parse_retry_after_http_dates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "datetime", _FrozenDatetime)
    now = _FrozenDatetime.now(UTC)
    future = now + timedelta(seconds=90)
    assert parse_retry_after(format_datetime(future, usegmt=True)) == 90.0
    past = now - timedelta(hours=1)
    assert parse_retry_after(format_datetime(past, usegmt=True)) == 0.0


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "-5", "1.5", "Mon, 99 Foo 2025"])
def test_parse_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


WIRE_CASES = [
    ("GET", "/api/admin/team_members/12", (), None),
    (
        "GET",
        "/api/admin/team_members",
        (("username", "a b+é@x.com"), ("per_page", "100"), ("ids[]", "1"), ("ids[]", "2")),
        None,
    ),
    ("POST", "/api/admin/team_members", (), {"username": "é\u2028x", "n": 1, "l": [1, None]}),
    ("PUT", "/api/admin/groups/3", (), {}),
    ("DELETE", "/api/admin/groups/3/team_members/4", (), None),
    ("POST", "/api/admin/groups/3/team_members", (), None),
    ("PATCH", "/api/admin/scim/Users/a%2Fb", (), {"schemas": ["x"]}),
    ("GET", "/api/admin/scim/Users", (("filter", 'userName eq "a&b=c"'),), None),
]


@pytest.mark.parametrize("base_url", ["https://modyo.example", "http://127.0.0.1:8001/prefix"])
@pytest.mark.parametrize("media_type", ["application/json", "application/scim+json"])
async def test_each_call_is_built_as_httpxs_own_client_builds_it(
    base_url: str, media_type: str
) -> None:
    """The bridge builds its Modyo requests itself (``Requests``): each one is what
    ``httpx.AsyncClient.build_request`` makes of the same call (URL, head in order, body,
    timeouts), byte for byte."""
    from bridge import __version__
    from bridge.modyo.http import Requests

    settings = make_settings(modyo={"base_url": base_url}).modyo
    requests = Requests(settings, httpx.MockTransport(lambda _: httpx.Response(200)), media_type)
    client = httpx.AsyncClient(
        base_url=str(settings.base_url),
        headers={
            "Authorization": f"Bearer {settings.token.get_secret_value()}",
            "Accept": media_type,
            "User-Agent": f"scim-bridge/{__version__}",
        },
        timeout=httpx.Timeout(
            connect=settings.connect_timeout_seconds,
            read=settings.read_timeout_seconds,
            write=settings.read_timeout_seconds,
            pool=settings.connect_timeout_seconds,
        ),
        trust_env=False,
    )
    async with client:
        for method, path, params, body in WIRE_CASES:
            head = {"X-Request-Id": "0123456789abcdef"}
            if body is not None:
                head["Content-Type"] = media_type
            expected = client.build_request(
                method, path, params=list(params) or None, json=body, headers=head
            )
            built = requests.build(method, path, params, body, "0123456789abcdef")
            assert (built.method, str(built.url)) == (expected.method, str(expected.url))
            assert built.headers.raw == expected.headers.raw, (method, path)
            assert built.content == expected.content
            assert built.extensions == expected.extensions


@given(
    path=st.text(st.sampled_from("aZ09-._~!$&'()*+,;=:@/%2Fé ?#\\[]"), max_size=30),
    params=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=3),
)
@settings(max_examples=examples(300))
def test_a_call_url_is_httpxs_own(path: str, params: list[tuple[str, str]]) -> None:
    """The URL of each call, built without parsing what httpx would keep as it is, equals
    what ``httpx.URL`` makes of the base URL, the path and the parameters."""
    from bridge.modyo.http import Requests

    for base_url in ("https://modyo.example", "http://127.0.0.1:8001/prefix"):
        modyo = make_settings(modyo={"base_url": base_url}).modyo
        requests = Requests(modyo, httpx.MockTransport(lambda _: httpx.Response(200)))
        full = str(modyo.base_url).rstrip("/") + "/" + path.lstrip("/")
        try:
            expected = httpx.URL(full, params=params or None)
        except httpx.InvalidURL:
            with pytest.raises(httpx.InvalidURL):
                requests.url("/" + path, params)
            continue
        url = requests.url("/" + path, params)
        assert (str(url), url.raw_path, url.netloc) == (
            str(expected),
            expected.raw_path,
            expected.netloc,
        )
