"""Entra's everyday request bodies, read without building pydantic models.

Validating a PatchOp with scim2-models and applying it to the user probe is most of a user
PATCH's CPU, and validating a create is costly too (docs/performance.md, Costs the code
avoids). Entra's traffic is a few fixed shapes (docs/design/entra.md): its create
body, ``Replace``/``Add`` of one held scalar attribute, ``active`` as a boolean or
``"True"``/``"False"``, and member ``Add``/``Remove`` with a value list or
``members[value eq "id"]``. This module recognises exactly those shapes and returns what the
scim2-models path would return; for anything else it returns None and the request takes that
path. ``tests/test_fast_paths.py`` holds the two equal, so scim2-models stays the reference
for SCIM semantics. The paths recognised are those of the attributes the upstream holds
(``bridge.scim.attributes``): a body naming anything else takes the library's path, where
unheld attributes are accepted and ignored.
"""

from __future__ import annotations

import re
from typing import Any, Final

from bridge.scim.attributes import USER_PATHS, Served
from bridge.scim.group_patch import GroupPlan, MemberStep, Step
from bridge.scim.models import (
    ENTERPRISE_SCHEMA,
    PATCH_SCHEMA,
    USER_SCHEMA,
    email_syntax,
    entra_boolean,
)
from bridge.upstream import UserField

_MEMBER_FILTER: Final = re.compile(r'members\[value eq "([A-Za-z0-9._-]+)"\]', re.IGNORECASE)
_MEMBER_KEYS: Final = frozenset({"value", "$ref", "display", "type"})

_ENVELOPE_KEYS: Final = frozenset({"schemas", "meta", "roles"})

Operation = tuple[str, str, Any, bool]  # op (lower case), path, value, whether a value was sent


def _operations(body: dict[str, Any]) -> list[Operation] | None:
    """The operations of a plain PatchOp body: every one with a string path."""
    if body.keys() != {"schemas", "Operations"} or body["schemas"] != [PATCH_SCHEMA]:
        return None
    operations = body["Operations"]
    if not isinstance(operations, list) or not operations:
        return None
    plain = []
    for operation in operations:
        if not isinstance(operation, dict) or not operation.keys() <= {"op", "path", "value"}:
            return None
        op, path = operation.get("op"), operation.get("path")
        if not isinstance(op, str) or not isinstance(path, str):
            return None
        plain.append((op.lower(), path, operation.get("value"), "value" in operation))
    return plain


class FastPaths:
    """Entra's everyday bodies for one upstream's held attributes; every method answers
    exactly what the scim2-models path would, or None to defer to it."""

    def __init__(self, served: Served) -> None:
        self._served = served
        self._held = held = served.holds.user
        self._name_keys = {
            USER_PATHS[field].removeprefix("name."): field
            for field in (UserField.FORMATTED_NAME, UserField.FAMILY_NAME, UserField.GIVEN_NAME)
            if field in held
        }
        top_level = {USER_PATHS[field].split(".")[0] for field in held}
        self._create_keys = _ENVELOPE_KEYS | top_level
        self._creates = {UserField.USER_NAME, UserField.EMAIL, UserField.ACTIVE} <= held

    def user_values(self, body: dict[str, Any]) -> dict[UserField, str | bool | None] | None:
        """The values of Entra's create body: userName, one work email, name parts,
        externalId, active, an empty ``roles`` and ``meta.resourceType``; None for anything else.
        Booleans and the email are read by the same functions the models use
        (:func:`entra_boolean`, :func:`email_syntax`)."""
        if not self._creates or not body.keys() <= self._create_keys:
            return None
        if body.get("roles", []) != []:
            return None
        schemas, meta = body.get("schemas"), body.get("meta", {"resourceType": "User"})
        if not isinstance(schemas, list) or USER_SCHEMA not in schemas:
            return None
        if not set(schemas) <= {USER_SCHEMA, ENTERPRISE_SCHEMA} or meta != {"resourceType": "User"}:
            return None
        user_name, external_id = body.get("userName"), body.get("externalId")
        if not _text(user_name) or not (external_id is None or _text(external_id)):
            return None
        active = _boolean(body.get("active", True))
        email = _work_email(body.get("emails"))
        name = body.get("name", {})
        if not isinstance(active, bool) or email is None or not isinstance(name, dict):
            return None
        if not name.keys() <= self._name_keys.keys() or not all(
            isinstance(v, str) for v in name.values()
        ):
            return None
        values: dict[UserField, str | bool | None] = {
            UserField.USER_NAME: user_name,
            UserField.EMAIL: email,
            UserField.EXTERNAL_ID: external_id,
            UserField.ACTIVE: active,
        }
        for key, field in self._name_keys.items():
            values[field] = name.get(key)
        return {field: value for field, value in values.items() if field in self._held}

    def user_changes(self, body: dict[str, Any]) -> dict[UserField, str | bool | None] | None:
        """The changes of a user PATCH made only of add/replace on held scalar attributes."""
        operations = _operations(body)
        if operations is None:
            return None
        changes: dict[UserField, str | bool | None] = {}
        for op, path, value, _ in operations:
            field = self._served.user_scalars.get(path.lower())
            if field is None or op not in ("add", "replace"):
                return None
            if field is UserField.ACTIVE:
                value = _boolean(value)
                if not isinstance(value, bool):
                    return None
            elif not isinstance(value, str) or (value == "" and field is UserField.USER_NAME):
                return None
            changes[field] = value if value != "" else None
        return changes

    def group_plan(self, body: dict[str, Any]) -> GroupPlan | None:
        """The plan of a group PATCH made of member adds/removes and renames."""
        operations = _operations(body)
        if operations is None:
            return None
        plan = GroupPlan()
        for op, path, value, has_value in operations:
            lowered = path.lower()
            selected = _MEMBER_FILTER.fullmatch(path)
            if lowered == "members" and op in ("add", "remove") and has_value:
                ids = _member_ids(value)
                if ids is None:
                    return None
                plan.steps.append(MemberStep(Step.ADD if op == "add" else Step.REMOVE, ids))
            elif selected is not None and op == "remove" and not has_value:
                plan.steps.append(MemberStep(Step.REMOVE, (selected.group(1),)))
            elif (
                lowered in self._served.group_scalars
                and op in ("add", "replace")
                and isinstance(value, str)
                and value
            ):
                plan.changes[self._served.group_scalars[lowered]] = value
            else:
                return None
        return plan


def _work_email(emails: Any) -> str | None:
    """The address of ``[{"primary": true, "type": "work", "value": "…"}]``, validated."""
    if not isinstance(emails, list) or len(emails) != 1 or not isinstance(emails[0], dict):
        return None
    entry = emails[0]
    if not entry.keys() <= {"primary", "type", "value"} or entry.get("type", "work") != "work":
        return None
    if _boolean(entry.get("primary", True)) is None or not _text(entry.get("value")):
        return None
    try:
        address: str = email_syntax(entry["value"])
    except ValueError:
        return None  # the library refuses it, and says why
    return address


def _boolean(value: Any) -> bool | None:
    """A boolean as the models read it; None when it is not one (the library refuses it)."""
    try:
        read: bool | None = entra_boolean(value)
    except ValueError:
        return None
    return read


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _member_ids(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not value:
        return None
    ids = []
    for entry in value:
        if not isinstance(entry, dict) or not entry.keys() <= _MEMBER_KEYS:
            return None
        member_id, kind = entry.get("value"), entry.get("type")
        if not isinstance(member_id, str) or not member_id or kind not in (None, "User"):
            return None
        ids.append(member_id)
    return tuple(dict.fromkeys(ids))
