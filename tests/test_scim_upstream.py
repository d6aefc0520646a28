"""ScimUpstream against the fake of Modyo's SCIM server (no other mocks): field mapping, the
exact RFC-form requests it sends, paging, every documented gap it fills, error mapping
(non-SCIM answers included), create adoption after lost answers, faults."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.config import Settings
from bridge.modyo.fake import FakeModyoScim, Faults, FaultyModyo, mock_transport
from bridge.modyo.fake.base import FakeResponse
from bridge.modyo.fake.scim_state import LIST_URN, RAILS_404, RAILS_500, scim_error
from bridge.modyo.http import ModyoHttp
from bridge.modyo.retry import RetryPolicy
from bridge.modyo.scim import MEDIA_TYPE, SCIM, TOMBSTONE, ScimUpstream, tombstone
from bridge.upstream import (
    BadGateway,
    Conflict,
    GroupField,
    NotFound,
    Rejected,
    TokenRejected,
    Unavailable,
    UserChanges,
    UserField,
    UserRecord,
)
from tests.harness import MODYO_TOKEN, MODYO_URL, make_settings
from tests.scim_mode import Recording, Sent

PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture(autouse=True)
def _quiet_retry_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="bridge.modyo")


@dataclass
class Rig:
    fake: FakeModyoScim
    service: FaultyModyo
    client: ScimUpstream
    recording: Recording

    def writes(self) -> list[Sent]:
        return self.recording.writes()

    def forget(self) -> None:
        self.recording.sent.clear()
        self.fake.reset_calls()


@asynccontextmanager
async def rig(faults: Faults | None = None, settings: Settings | None = None) -> AsyncIterator[Rig]:
    fake = FakeModyoScim(token=MODYO_TOKEN)
    service = FaultyModyo(fake, faults)
    settings = settings or make_settings()
    recording = Recording(mock_transport(service, MODYO_URL))
    http = ModyoHttp(settings.modyo, RetryPolicy(settings.retry), recording, MEDIA_TYPE)
    client = ScimUpstream(http)
    async with client.connected():
        yield Rig(fake, service, client, recording)


@pytest.fixture
async def bench() -> AsyncIterator[Rig]:
    async with rig() as built:
        yield built


ANA: UserChanges = {
    UserField.USER_NAME: "ana@contoso.com",
    UserField.EMAIL: "ana@contoso.com",
    UserField.GIVEN_NAME: "Ana",
    UserField.FAMILY_NAME: "Diaz",
    UserField.FORMATTED_NAME: "Ana Diaz",
    UserField.EXTERNAL_ID: "ext-ana",
    UserField.ACTIVE: True,
}


def person(name: str, **changes: Any) -> UserChanges:
    values: dict[UserField, Any] = {
        UserField.USER_NAME: f"{name}@contoso.com",
        UserField.EMAIL: f"{name}@contoso.com",
        UserField.ACTIVE: True,
    }
    values.update({UserField(key): value for key, value in changes.items()})
    return values


def operations(sent: Sent) -> list[dict[str, Any]]:
    return sent.operations


# ---------------------------------------------------------------------- users


async def test_create_sends_a_scim_user_and_maps_every_field_back(bench: Rig) -> None:
    record = await bench.client.create_user(ANA)
    [post] = bench.recording.sent
    assert (post.method, post.path) == ("POST", f"{SCIM}/Users")
    assert post.body == {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "ana@contoso.com",
        "name": {"givenName": "Ana", "familyName": "Diaz", "formatted": "Ana Diaz"},
        "emails": [{"value": "ana@contoso.com", "type": "work", "primary": True}],
        "active": True,
        "externalId": "ext-ana",
    }
    assert post.headers["content-type"] == MEDIA_TYPE
    assert post.headers["accept"] == MEDIA_TYPE
    stored = bench.fake.users[record.id]
    assert record == UserRecord(
        id=stored["id"],
        user_name="ana@contoso.com",
        email="ana@contoso.com",
        given_name="Ana",
        family_name="Diaz",
        formatted_name="Ana Diaz",
        external_id="ext-ana",
        active=True,
        created=stored["created"],
        last_modified=stored["lastModified"],
    )
    assert bench.fake.calls == {"POST /scim/Users": 1}


async def test_ids_are_opaque_strings_and_groups_come_back_as_group_ids(bench: Rig) -> None:
    user = await bench.client.create_user(person("bob"))
    group = await bench.client.create_group({GroupField.DISPLAY_NAME: "Sales"})
    await bench.client.add_members(group.id, [user.id])
    read = await bench.client.get_user(user.id)
    assert read.id == user.id and not read.id.isdigit()
    assert read.group_ids == {group.id}


@pytest.mark.parametrize("raw", ["", ".", ".."])
async def test_ids_a_url_would_resolve_elsewhere_are_not_found_without_a_call(
    bench: Rig, raw: str
) -> None:
    with pytest.raises(NotFound):
        await bench.client.get_user(raw)
    with pytest.raises(NotFound):
        await bench.client.get_group(raw)
    assert bench.recording.sent == []


async def test_other_ids_are_one_percent_encoded_path_segment(bench: Rig) -> None:
    with pytest.raises(NotFound):
        await bench.client.get_user("a/../b?c")
    [sent] = bench.recording.sent
    assert sent.raw_path.endswith(b"/Users/a%2F..%2Fb%3Fc")  # one segment on the wire
    with pytest.raises(NotFound):
        await bench.client.get_user("nope")


async def test_search_sends_the_documented_filters_and_finds_case_insensitively(
    bench: Rig,
) -> None:
    ana = await bench.client.create_user(ANA)
    await bench.client.create_user(person("bob", external_id='x"y'))
    bench.forget()
    assert [
        u.id for u in await bench.client.search_users(UserField.USER_NAME, "ANA@contoso.com")
    ] == [ana.id]
    assert [u.user_name for u in await bench.client.search_users(UserField.EXTERNAL_ID, 'x"y')] == [
        "bob@contoso.com"
    ]
    filters = [dict(sent.params)["filter"] for sent in bench.recording.sent]
    assert filters == ['userName eq "ANA@contoso.com"', 'externalId eq "x\\"y"']
    assert bench.fake.calls == {"GET /scim/Users": 2}
    assert UserField.EMAIL not in bench.client.holds.user_search


async def test_list_users_windows_over_startindex_and_count(bench: Rig) -> None:
    ids = bench.fake.seed_members(250)
    page = await bench.client.list_users(0, 100)
    assert (page.total, [u.id for u in page.items]) == (250, ids[:100])
    assert bench.fake.calls == {"GET /scim/Users": 1}
    bench.forget()
    page = await bench.client.list_users(230, 100)
    assert [u.id for u in page.items] == ids[230:]
    assert dict(bench.recording.sent[0].params) == {"startIndex": "231", "count": "100"}
    bench.forget()
    page = await bench.client.list_users(10, 250)  # more than one Modyo page
    assert [u.id for u in page.items] == ids[10:]
    assert bench.fake.calls == {"GET /scim/Users": 3}
    empty = await bench.client.list_users(0, 0)
    assert (empty.total, empty.items) == (250, [])


async def test_update_patches_exactly_what_differs_in_rfc_form(bench: Rig) -> None:
    user = await bench.client.create_user(ANA)
    bench.forget()
    full_replacement: UserChanges = {
        **ANA,
        UserField.GIVEN_NAME: "Anna",
        UserField.FORMATTED_NAME: None,
        UserField.EMAIL: "anna@contoso.com",
        UserField.ACTIVE: False,
    }
    record = await bench.client.update_user(user.id, full_replacement)
    [patch] = bench.writes()
    assert (patch.method, patch.path) == ("PATCH", f"{SCIM}/Users/{user.id}")
    assert patch.headers["content-type"] == MEDIA_TYPE
    assert operations(patch) == [
        {"op": "replace", "path": "name.givenName", "value": "Anna"},
        {"op": "remove", "path": "name.formatted"},
        {"op": "replace", "path": "emails",
         "value": [{"value": "anna@contoso.com", "type": "work", "primary": True}]},
        {"op": "replace", "path": "active", "value": False},
    ]  # fmt: skip
    assert (record.given_name, record.formatted_name, record.email, record.active) == (
        "Anna",
        None,
        "anna@contoso.com",
        False,
    )
    assert bench.fake.calls == {"GET /scim/Users/:id": 1, "PATCH /scim/Users/:id": 1}


async def test_an_update_that_changes_nothing_is_one_read(bench: Rig) -> None:
    user = await bench.client.create_user(ANA)
    bench.forget()
    assert await bench.client.update_user(user.id, ANA) == await bench.client.get_user(user.id)
    assert bench.writes() == []


async def test_user_name_changes_are_sent_and_uniqueness_is_a_conflict(bench: Rig) -> None:
    ana = await bench.client.create_user(ANA)
    await bench.client.create_user(person("bob"))
    renamed = await bench.client.update_user(ana.id, {UserField.USER_NAME: "ANA@contoso.com"})
    assert renamed.user_name == "ANA@contoso.com"
    with pytest.raises(Conflict) as conflict:
        await bench.client.update_user(ana.id, {UserField.USER_NAME: "bob@contoso.com"})
    assert conflict.value.field is UserField.USER_NAME


async def test_changing_external_id_is_refused_without_a_write(bench: Rig) -> None:
    user = await bench.client.create_user(ANA)
    bench.forget()
    with pytest.raises(Rejected, match="externalId"):
        await bench.client.update_user(
            user.id, {UserField.EXTERNAL_ID: "other", UserField.GIVEN_NAME: "X"}
        )
    assert bench.writes() == []
    same = await bench.client.update_user(user.id, {UserField.EXTERNAL_ID: "ext-ana"})
    assert same.external_id == "ext-ana"


async def test_a_tombstone_user_name_is_refused(bench: Rig) -> None:
    with pytest.raises(Rejected):
        await bench.client.create_user(person("x", user_name=f"{TOMBSTONE}abc|x"))
    user = await bench.client.create_user(person("y"))
    with pytest.raises(Rejected):
        await bench.client.update_user(user.id, {UserField.USER_NAME: f"{TOMBSTONE}1|y"})
    assert bench.writes()[-1].method == "POST"


async def test_delete_leaves_groups_then_deactivates_under_a_tombstone(bench: Rig) -> None:
    ana = await bench.client.create_user(ANA)
    one = await bench.client.create_group({GroupField.DISPLAY_NAME: "One"})
    two = await bench.client.create_group({GroupField.DISPLAY_NAME: "Two"})
    for group in (one, two):
        await bench.client.add_members(group.id, [ana.id])
    bench.forget()
    await bench.client.delete_user(ana.id)
    *leaves, mark = bench.writes()
    assert sorted(sent.path for sent in leaves) == sorted(
        f"{SCIM}/Groups/{g.id}" for g in (one, two)
    )
    for leave in leaves:
        assert operations(leave) == [{"op": "remove", "path": f'members[value eq "{ana.id}"]'}]
    user_name, email = tombstone(ana.id, "ana@contoso.com")
    assert operations(mark) == [
        {"op": "replace", "path": "active", "value": False},
        {"op": "replace", "path": "userName", "value": user_name},
        {"op": "replace", "path": "emails",
         "value": [{"value": email, "type": "work", "primary": True}]},
    ]  # fmt: skip
    assert bench.fake.calls == {"GET /scim/Users/:id": 1, "PATCH /scim/Groups/:id": 2,
                                "PATCH /scim/Users/:id": 1}  # fmt: skip
    stored = bench.fake.users[ana.id]  # still in Modyo, disabled, renamed
    assert (stored["active"], stored["userName"], stored["name"]["givenName"]) == (
        False,
        user_name,
        "Ana",
    )
    assert user_name.endswith("|ana@contoso.com") and email.endswith(".invalid")


async def test_a_deleted_user_is_gone_for_every_read_and_its_names_are_free(bench: Rig) -> None:
    ana = await bench.client.create_user(ANA)
    await bench.client.delete_user(ana.id)
    with pytest.raises(NotFound):
        await bench.client.get_user(ana.id)
    assert await bench.client.search_users(UserField.USER_NAME, "ana@contoso.com") == []
    assert await bench.client.search_users(UserField.EXTERNAL_ID, "ext-ana") == []
    assert await bench.client.memberships([ana.id]) == {}
    assert (await bench.client.list_users(0, 10)).items == []
    for write in (
        bench.client.delete_user(ana.id),
        bench.client.update_user(ana.id, {UserField.ACTIVE: True}),
    ):
        with pytest.raises(NotFound):
            await write
    again = await bench.client.create_user(ANA)  # Entra may create the same userName again
    assert again.id != ana.id
    assert [u.id for u in await bench.client.search_users(UserField.EXTERNAL_ID, "ext-ana")] == [
        again.id
    ]
    assert bench.fake.users[ana.id]["active"] is False


async def test_list_users_discounts_the_deleted_users_of_its_window(bench: Rig) -> None:
    users = [await bench.client.create_user(person(f"u{n}")) for n in range(4)]
    await bench.client.delete_user(users[1].id)
    page = await bench.client.list_users(0, 10)
    assert (page.total, [u.id for u in page.items]) == (3, [users[0].id, users[2].id, users[3].id])


# ---------------------------------------------------------------------- groups


async def test_group_create_checks_the_name_then_posts(bench: Rig) -> None:
    group = await bench.client.create_group(
        {GroupField.DISPLAY_NAME: "Sales", GroupField.EXTERNAL_ID: "obj-1"}
    )
    assert (group.display_name, group.external_id) == ("Sales", "obj-1")
    assert bench.fake.calls == {"GET /scim/Groups": 1, "POST /scim/Groups": 1}
    [listing, post] = bench.recording.sent
    assert dict(listing.params) == {"excludedAttributes": "members", "startIndex": "1",
                                    "count": "100"}  # fmt: skip
    assert post.body == {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                         "displayName": "Sales", "externalId": "obj-1"}  # fmt: skip


async def test_a_taken_display_name_is_a_conflict_on_create_and_rename(bench: Rig) -> None:
    await bench.client.create_group({GroupField.DISPLAY_NAME: "Sales"})
    ops = await bench.client.create_group({GroupField.DISPLAY_NAME: "Ops"})
    bench.forget()
    with pytest.raises(Conflict) as conflict:
        await bench.client.create_group({GroupField.DISPLAY_NAME: "SALES"})
    assert conflict.value.field is GroupField.DISPLAY_NAME
    with pytest.raises(Conflict):
        await bench.client.update_group(ops.id, {GroupField.DISPLAY_NAME: "sales"})
    assert bench.writes() == []
    renamed = await bench.client.update_group(ops.id, {GroupField.DISPLAY_NAME: "OPS"})
    assert renamed.display_name == "OPS"
    assert len(bench.fake.groups) == 2


async def test_rename_is_one_rfc_patch_and_external_id_cannot_change(bench: Rig) -> None:
    group = await bench.client.create_group(
        {GroupField.DISPLAY_NAME: "Sales", GroupField.EXTERNAL_ID: "obj-1"}
    )
    bench.forget()
    await bench.client.update_group(group.id, {GroupField.DISPLAY_NAME: "Sales EU"})
    [patch] = bench.writes()
    assert operations(patch) == [{"op": "replace", "path": "displayName", "value": "Sales EU"}]
    with pytest.raises(Rejected, match="externalId"):
        await bench.client.update_group(group.id, {GroupField.EXTERNAL_ID: "obj-2"})
    same = await bench.client.update_group(group.id, {GroupField.EXTERNAL_ID: "obj-1"})
    assert same.display_name == "Sales EU"


async def test_group_search_reads_the_whole_listing_and_matches_exactly_here(
    bench: Rig,
) -> None:
    for number in range(250):
        bench.fake.seed_group(f"Group {number}")
    target = bench.fake.seed_group("Target")
    bench.fake.groups[target]["externalId"] = "obj-target"
    found = await bench.client.search_groups(GroupField.DISPLAY_NAME, "target")
    assert [g.id for g in found] == [target]
    assert [
        g.id for g in await bench.client.search_groups(GroupField.EXTERNAL_ID, "obj-target")
    ] == [target]
    assert await bench.client.search_groups(GroupField.DISPLAY_NAME, "Group") == []
    assert bench.fake.calls == {"GET /scim/Groups": 2 * 3 + 3}  # ⌈251/100⌉ pages per query


async def test_delete_group_and_its_404(bench: Rig) -> None:
    group = await bench.client.create_group({GroupField.DISPLAY_NAME: "Sales"})
    await bench.client.delete_group(group.id)
    with pytest.raises(NotFound):
        await bench.client.delete_group(group.id)
    with pytest.raises(NotFound):
        await bench.client.get_group(group.id)


# ---------------------------------------------------------------------- memberships


async def test_members_are_added_and_removed_by_rfc_patches_in_chunks(bench: Rig) -> None:
    group = await bench.client.create_group({GroupField.DISPLAY_NAME: "Big"})
    ids = bench.fake.seed_members(250)
    bench.forget()
    await bench.client.add_members(group.id, ids)
    adds = bench.writes()
    assert len(adds) == 3
    assert operations(adds[0]) == [
        {"op": "add", "path": "members", "value": [{"value": i} for i in sorted(ids)[:100]]}
    ]
    assert bench.fake.group_member_ids(group.id) == set(ids)
    bench.forget()
    await bench.client.remove_members(group.id, ids[:2])
    [remove] = bench.writes()
    assert operations(remove) == [
        {"op": "remove", "path": f'members[value eq "{i}"]'} for i in sorted(ids[:2])
    ]
    assert bench.fake.group_member_ids(group.id) == set(ids[2:])
    members = await bench.client.list_members(group.id)
    assert {m.id for m in members} == set(ids[2:])
    assert {m.display for m in members} >= {"seed2@example.com"}


async def test_memberships_read_each_user_once_and_skip_unknown_ones(bench: Rig) -> None:
    ana = await bench.client.create_user(person("ana"))
    bob = await bench.client.create_user(person("bob"))
    group = await bench.client.create_group({GroupField.DISPLAY_NAME: "Sales"})
    await bench.client.add_members(group.id, [ana.id])
    bench.forget()
    found = await bench.client.memberships([ana.id, bob.id, ana.id, "nobody"])
    assert found == {ana.id: frozenset({group.id}), bob.id: frozenset()}
    assert bench.fake.calls == {"GET /scim/Users/:id": 3}


async def test_a_one_member_change_costs_the_same_at_0_and_50000_members(bench: Rig) -> None:
    empty = await bench.client.create_group({GroupField.DISPLAY_NAME: "Empty"})
    huge = await bench.client.create_group({GroupField.DISPLAY_NAME: "Huge"})
    bench.fake.seed_group_members(huge.id, 50_000)
    ana = await bench.client.create_user(person("ana"))

    async def cost(group_id: str) -> dict[str, int]:
        bench.forget()
        await bench.client.memberships([ana.id])
        await bench.client.add_members(group_id, [ana.id])
        await bench.client.memberships([ana.id])
        await bench.client.remove_members(group_id, [ana.id])
        return dict(bench.fake.calls)

    assert (
        await cost(empty.id)
        == await cost(huge.id)
        == {
            "GET /scim/Users/:id": 2,
            "PATCH /scim/Groups/:id": 2,
        }
    )
    assert len(bench.fake.group_member_ids(huge.id)) == 50_000


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (FakeResponse(500, RAILS_500, media_type="text/html"), BadGateway, "HTTP 500, not a SCIM"),
        (FakeResponse(404, RAILS_404, media_type="text/html"), BadGateway, "HTTP 404, not a SCIM"),
        (FakeResponse(404, {"error": "nope"}), BadGateway, "HTTP 404, not a SCIM"),
        (FakeResponse(200, "<html>", media_type="text/html"), BadGateway, "not JSON"),
        (FakeResponse(200, [1]), BadGateway, "not an object"),
        (FakeResponse(200, {"userName": "x"}), BadGateway, "without 'id'"),
        (scim_error(404, "gone"), NotFound, "no such object"),
        (scim_error(400, "bad value", "invalidValue"), Rejected, "bad value"),
        (scim_error(409, "oops", "mutability"), Rejected, "oops"),
        (scim_error(418, "teapot"), BadGateway, "HTTP 418: teapot"),
        (scim_error(401, "Unauthorized"), TokenRejected, "API token"),
        (FakeResponse(403, None), BadGateway, "HTTP 403"),
        (FakeResponse(500, {"errors": ["boom"]}), BadGateway, "HTTP 500"),
    ],
)
async def test_every_modyo_failure_maps_to_an_upstream_error(
    bench: Rig, answer: FakeResponse, error: type[Exception], text: str
) -> None:
    bench.fake.script("GET /scim/Users/:id", answer)
    with pytest.raises(error, match=text) as raised:
        await bench.client.get_user("some-id")
    assert MODYO_TOKEN not in str(raised.value)


async def test_modyos_own_delete_failure_is_a_bad_gateway_naming_the_status(bench: Rig) -> None:
    """The documented DELETE answer, as the fake gives it, through the same mapping."""
    ana = await bench.client.create_user(ANA)
    deleted = bench.fake.handle("DELETE", f"{SCIM}/Users/{ana.id}", headers={
        "Authorization": f"Bearer {MODYO_TOKEN}"})  # fmt: skip
    bench.fake.script("PATCH /scim/Users/:id", deleted)
    with pytest.raises(BadGateway, match="HTTP 500, not a SCIM answer"):
        await bench.client.update_user(ana.id, {UserField.ACTIVE: False})


async def test_a_malformed_list_response_is_a_bad_gateway(bench: Rig) -> None:
    bench.fake.script(
        "GET /scim/Users",
        FakeResponse(200, {"schemas": [LIST_URN], "Resources": []}, media_type=MEDIA_TYPE),
    )
    with pytest.raises(BadGateway, match="malformed ListResponse"):
        await bench.client.search_users(UserField.USER_NAME, "x")


async def test_a_genuine_duplicate_is_a_conflict_without_adoption(bench: Rig) -> None:
    await bench.client.create_user(ANA)
    bench.forget()
    with pytest.raises(Conflict) as conflict:
        await bench.client.create_user(ANA)
    assert conflict.value.field is UserField.USER_NAME
    assert bench.fake.calls == {"POST /scim/Users": 1}  # no lookup: nothing to adopt


# ---------------------------------------------------------------------- unknown outcomes


async def test_a_lost_create_answer_is_adopted_not_created_twice(bench: Rig) -> None:
    bench.service.lose_next("POST /scim/Users")
    record = await bench.client.create_user(ANA)
    assert list(bench.fake.users) == [record.id]
    assert bench.fake.calls == {"POST /scim/Users": 1, "GET /scim/Users": 1}


async def test_a_409_after_a_lost_answer_is_adopted(bench: Rig) -> None:
    """The lookup after the lost answer misses the user (Modyo not caught up), so the POST is
    re-sent and meets 409: this call may have created it, so it is looked up again."""
    bench.service.lose_next("POST /scim/Users")
    empty = {"schemas": [LIST_URN], "totalResults": 0, "Resources": []}
    bench.fake.script("GET /scim/Users", FakeResponse(200, empty, media_type=MEDIA_TYPE))
    record = await bench.client.create_user(ANA)
    assert list(bench.fake.users) == [record.id]
    assert bench.fake.calls == {"POST /scim/Users": 2, "GET /scim/Users": 2}


async def test_a_lost_answer_for_a_different_user_is_a_conflict(bench: Rig) -> None:
    await bench.client.create_user(person("ana", given_name="Other"))
    bench.service.lose_next("POST /scim/Users")
    with pytest.raises(Conflict):
        await bench.client.create_user(ANA)
    assert len(bench.fake.users) == 1


async def test_a_lost_group_create_answer_is_adopted(bench: Rig) -> None:
    bench.service.lose_next("POST /scim/Groups")
    values = {GroupField.DISPLAY_NAME: "Sales", GroupField.EXTERNAL_ID: "obj-1"}
    group = await bench.client.create_group(values)
    assert list(bench.fake.groups) == [group.id]
    assert bench.fake.calls == {"GET /scim/Groups": 2, "POST /scim/Groups": 1}


async def test_writes_converge_under_lost_answers_and_transient_errors() -> None:
    async with rig(Faults(lost_response_rate=0.3, error_rate=0.2, seed=3)) as faulty:
        ana = await faulty.client.create_user(ANA)
        group = await faulty.client.create_group({GroupField.DISPLAY_NAME: "Sales"})
        await faulty.client.add_members(group.id, [ana.id])
        await faulty.client.update_user(ana.id, {UserField.GIVEN_NAME: "Anna"})
        await faulty.client.delete_user(ana.id)
        await faulty.client.update_group(group.id, {GroupField.DISPLAY_NAME: "Sales EU"})
        assert faulty.service.injected  # faults really happened
    fake = faulty.fake
    assert len(fake.users) == 1 and len(fake.groups) == 1
    [stored] = fake.users.values()
    assert stored["userName"].startswith(TOMBSTONE) and stored["name"]["givenName"] == "Anna"
    assert fake.group_member_ids(group.id) == set()
    assert fake.groups[group.id]["displayName"] == "Sales EU"


async def test_throttling_is_waited_out_and_outages_become_unavailable() -> None:
    settings = make_settings(retry={"max_attempts": 2})
    async with rig(Faults(throttle_rate=1.0, retry_after_seconds=0), settings) as throttled:
        with pytest.raises(Unavailable):
            await throttled.client.list_users(0, 10)
        assert throttled.service.injected == {"throttled": 2}


async def test_patches_answered_204_are_read_back_except_the_delete(bench: Rig) -> None:
    ana = await bench.client.create_user(ANA)
    bench.forget()
    bench.fake.script("PATCH /scim/Users/:id", FakeResponse(204, media_type=MEDIA_TYPE))
    record = await bench.client.update_user(ana.id, {UserField.GIVEN_NAME: "X"})
    assert record.given_name == "Ana"  # scripted, so not applied: the read-back tells the truth
    assert bench.fake.calls == {"GET /scim/Users/:id": 2, "PATCH /scim/Users/:id": 1}
    bench.forget()
    bench.fake.script("PATCH /scim/Users/:id", FakeResponse(204, media_type=MEDIA_TYPE))
    await bench.client.delete_user(ana.id)  # a 204 to the tombstone PATCH is success
    assert bench.fake.calls == {"GET /scim/Users/:id": 1, "PATCH /scim/Users/:id": 1}


async def test_a_listing_that_counts_resources_it_does_not_show_is_a_bad_gateway(
    bench: Rig,
) -> None:
    """Read as "no such group", it would let a duplicate group be created."""
    bench.fake.seed_group("Sales")
    listing = {"schemas": [LIST_URN], "totalResults": 1, "Resources": []}
    bench.fake.script("GET /scim/Groups", FakeResponse(200, listing, media_type=MEDIA_TYPE))
    with pytest.raises(BadGateway, match="totalResults 1 but no Resources"):
        await bench.client.create_group({GroupField.DISPLAY_NAME: "Sales"})
    assert len(bench.fake.groups) == 1


async def test_adoption_finds_its_group_among_duplicates_made_outside_the_bridge(
    bench: Rig,
) -> None:
    bench.service.lose_next("POST /scim/Groups")
    values = {GroupField.DISPLAY_NAME: "Sales", GroupField.EXTERNAL_ID: "obj-1"}
    original = bench.fake.handle  # a console user creates "SALES" while the answer is lost

    def handle(method: str, path: str, *args: Any, **kwargs: Any) -> FakeResponse:
        response = original(method, path, *args, **kwargs)
        if method == "POST" and path.endswith("/Groups") and len(bench.fake.groups) == 1:
            bench.fake.seed_group("SALES")
        return response

    bench.fake.handle = handle  # type: ignore[method-assign]
    group = await bench.client.create_group(values)
    assert group.external_id == "obj-1" and len(bench.fake.groups) == 2
