"""The direct JSON rendering equals what scim2-models dumps for the same resource."""

from __future__ import annotations

import itertools

import pytest
from scim2_models import Context

from bridge.scim.mapping import group_json, group_resource, user_json, user_resource
from bridge.upstream import GroupRecord, MemberRecord, UserRecord

STAMP = "2026-11-29T03:34:39.072-03:00"


def _users() -> list[UserRecord]:
    values = itertools.product(
        (None, "ext-1"), (None, "a@b.com", "not-an-address"), (None, "Ana"), (None, "Díaz"),
        (None, "Ana Díaz"), (True, False), (None, STAMP, "garbage"),
    )  # fmt: skip
    return [
        UserRecord(
            str(n), f"user{n}", email, given, family, formatted, external, active, stamp, stamp
        )
        for n, (external, email, given, family, formatted, active, stamp) in enumerate(values)
    ]


@pytest.mark.parametrize(
    "context", [Context.RESOURCE_QUERY_RESPONSE, Context.RESOURCE_CREATION_RESPONSE]
)
def test_user_json_equals_the_scim2_models_dump(context: Context) -> None:
    for record in _users():
        location = f"https://h/scim/Users/{record.id}"
        assert user_json(record, location) == user_resource(record, location).model_dump(
            scim_ctx=context
        )


@pytest.mark.parametrize(
    "members",
    [None, [], [MemberRecord("1", "Ana"), MemberRecord("2", None)]],
)
def test_group_json_equals_the_scim2_models_dump(members: list[MemberRecord] | None) -> None:
    for record in (
        GroupRecord("7", "Sales", None, STAMP, STAMP),
        GroupRecord("8", "Ops", "obj", None, None),
    ):
        args = (record, "https://h/scim/Groups/7", members, "https://h/scim/Users")
        dumped = group_resource(*args).model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        assert group_json(*args) == dumped


def test_group_json_without_members_equals_excluding_members() -> None:
    from bridge.scim.models import GroupResponseParameters

    record = GroupRecord("7", "Sales", "obj", STAMP, STAMP)
    args = ("https://h/scim/Groups/7", [MemberRecord("1", "Ana")], "https://h/scim/Users")
    excluded = GroupResponseParameters(excluded_attributes=["members"])
    dumped = group_resource(record, *args).model_dump(
        scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=excluded
    )
    assert group_json(record, args[0], None, args[2]) == dumped
