"""The PATCH fast path answers exactly what the scim2-models path answers, or defers to it."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from scim2_models import SCIMException

from bridge.modyo.rest import RestUpstream
from bridge.scim.attributes import served
from bridge.scim.fast_paths import FastPaths
from bridge.scim.group_patch import plan_group_patch
from bridge.scim.models import GroupPatch, UserPatch
from bridge.scim.requests import patch_from, resource_from
from bridge.scim.user_patch import user_changes
from tests import entra

SERVED = served(RestUpstream.holds)
FAST = FastPaths(SERVED)
fast_user_values, fast_user_changes, fast_group_plan = (
    FAST.user_values,
    FAST.user_changes,
    FAST.group_plan,
)
WORK_EMAIL = 'emails[type eq "work"].value'
USER_BODIES = [
    entra.patch(entra.op("Replace", "name.givenName", "Gina")),
    entra.patch(
        entra.op("replace", "name.familyName", "Díaz"), entra.op("Replace", "name.formatted", "G D")
    ),
    entra.patch(entra.op("Replace", "active", "False")),
    entra.patch(entra.op("Add", "active", "false")),
    entra.patch(entra.op("replace", "active", False)),
    entra.patch(entra.op("Replace", "active", "TRUE")),
    entra.patch(
        entra.op("Replace", "userName", "new@contoso.com"), entra.op("Replace", "externalId", "obj")
    ),
    entra.patch(entra.op("Replace", "externalId", "")),
    entra.patch(entra.op("Replace", "NAME.GIVENNAME", " spaced ")),
    entra.patch(
        entra.op("Replace", "name.givenName", "A"), entra.op("Replace", "name.givenName", "B")
    ),
]
USER_DEFERRED = [
    entra.patch(entra.op("Replace", WORK_EMAIL, "w@contoso.com")),  # email validation: library
    entra.patch(entra.op("Replace", "active", "yes")),
    entra.patch(entra.op("Replace", "active", "maybe")),
    entra.patch(entra.op("Remove", "name.givenName", no_value=True)),
    entra.patch(entra.op("Replace", "userName", "")),
    entra.patch(entra.op("Replace", "name.givenName", None)),
    entra.patch(entra.op("replace", value={"name.givenName": "Flag"})),
    entra.patch(entra.op("Add", "nickName", "Babs")),
    entra.patch(entra.op("Replace", "name.givenName", 5)),
    {"schemas": [entra.PATCH_URN], "Operations": []},
    {"schemas": [entra.PATCH_URN], "operations": [entra.op("Replace", "active", False)]},
    {"Operations": [entra.op("Replace", "active", False)]},
]
GROUP_BODIES = [
    entra.patch(entra.op("Add", "members", entra.members("12"))),
    entra.patch(entra.op("Add", "members", entra.members("12", "13", "12"))),
    entra.patch(entra.op("Remove", "members", entra.members("12"))),
    entra.patch(entra.op("remove", 'members[value eq "12"]', no_value=True)),
    entra.patch(
        entra.op("Replace", "displayName", "Renamed"), entra.op("replace", "externalId", "obj-9")
    ),
    entra.patch(entra.op("Add", "members", [{"value": "7", "display": "Ana", "type": "User"}])),
    entra.patch(
        entra.op("Add", "members", entra.members("1", "2")),
        entra.op("Remove", "members", entra.members("2")),
        entra.op("Replace", "DisplayName", "Both"),
    ),
]
GROUP_DEFERRED = [
    entra.patch(entra.op("Remove", "members", no_value=True)),
    entra.patch(entra.op("Replace", "members", entra.members("1"))),
    entra.patch(entra.op("add", value={"members": entra.members("1")})),
    entra.patch(entra.op("Add", "members", [{"value": "1", "type": "Group"}])),
    entra.patch(entra.op("Add", "members", ["1"])),
    entra.patch(entra.op("remove", 'members[display eq "x"]', no_value=True)),
    entra.patch(entra.op("Replace", "displayName", "")),
    entra.patch(entra.op("Remove", "displayName", no_value=True)),
]


def _library_user(body: dict[str, Any]) -> Any:
    return user_changes(patch_from(body, UserPatch), SERVED.user)


def _library_group(body: dict[str, Any]) -> Any:
    plan = plan_group_patch(patch_from(body, GroupPatch), SERVED.group)
    return plan.changes, plan.steps


@pytest.mark.parametrize("body", USER_BODIES)
def test_user_fast_path_equals_scim2_models(body: dict[str, Any]) -> None:
    fast = fast_user_changes(body)
    assert fast is not None
    assert fast == _library_user(body)


@pytest.mark.parametrize("body", USER_DEFERRED)
def test_user_fast_path_defers_what_it_does_not_know(body: dict[str, Any]) -> None:
    assert fast_user_changes(body) is None


@pytest.mark.parametrize("body", GROUP_BODIES)
def test_group_fast_path_equals_scim2_models(body: dict[str, Any]) -> None:
    fast = fast_group_plan(body)
    assert fast is not None
    assert (fast.changes, fast.steps) == _library_group(body)


@pytest.mark.parametrize("body", GROUP_DEFERRED)
def test_group_fast_path_defers_what_it_does_not_know(body: dict[str, Any]) -> None:
    assert fast_group_plan(body) is None
    with contextlib.suppress(SCIMException):  # the library path answers: a plan or an error
        _library_group(body)


def _create(user_name: str = "ana@contoso.com", **changes: Any) -> dict[str, Any]:
    body = entra.user(user_name)
    body.update(changes)
    return {key: value for key, value in body.items() if value is not _DROP}


_DROP = object()
CREATE_BODIES = [
    _create(),
    _create("Ana.Díaz@Contoso.COM"),  # pydantic normalises the domain
    _create(active=False),
    _create(active="False"),
    _create(active="true"),
    _create(externalId=_DROP),
    _create(name={"givenName": "Ana"}),
    _create(name=_DROP),
    _create(name={"givenName": "", "familyName": "Díaz", "formatted": " Ana Díaz "}),
    _create(schemas=[entra.USER_URN]),
    _create(meta=_DROP, roles=_DROP),
    _create(emails=[{"type": "work", "value": "other@contoso.com"}]),
]
CREATE_DEFERRED = [
    entra.legacy_user("legacy@contoso.com"),  # explicit nulls, malformed URN
    _create(emails=[{"type": "work", "value": "not-an-address"}]),
    _create(emails=[{"type": "home", "value": "a@contoso.com"}]),
    _create(emails=[]),
    _create(emails=_DROP),
    _create(userName=""),
    _create(externalId=""),
    _create(active="yes"),
    _create(nickName="Babs"),
    _create(roles=[{"value": "admin"}]),
    _create(name={"middleName": "X"}),
    _create(schemas=["urn:example:other"]),
]


@pytest.mark.parametrize("body", CREATE_BODIES)
def test_create_fast_path_equals_scim2_models(body: dict[str, Any]) -> None:
    from scim2_models import Context

    from bridge.scim.mapping import user_values

    fast = fast_user_values(body)
    assert fast is not None
    user = resource_from(body, SERVED.user, Context.RESOURCE_CREATION_REQUEST)
    library = user_values(user, SERVED.holds.user)
    assert fast == library


@pytest.mark.parametrize("body", CREATE_DEFERRED)
def test_create_fast_path_defers_what_it_does_not_know(body: dict[str, Any]) -> None:
    assert fast_user_values(body) is None
