"""What a SCIM write asked to change, told to its journal record in SCIM's own names
(docs/reference/journal.md, "Event schema"): the attributes the bridge will set, with the
value read before when the request read the object anyway, and the members added and removed.
Nothing here calls an upstream."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, TypeVar

from starlette.requests import Request

from bridge import request_state
from bridge.journal import NOT_READ, JournalRecord
from bridge.journal.middleware import record_of
from bridge.upstream import GroupField, GroupRecord, UserField, UserRecord

T = TypeVar("T", UserRecord, GroupRecord)
USER_ATTRIBUTES: Final[Mapping[UserField, str]] = {
    UserField.USER_NAME: "userName",
    UserField.EMAIL: 'emails[type eq "work"].value',
    UserField.GIVEN_NAME: "name.givenName",
    UserField.FAMILY_NAME: "name.familyName",
    UserField.FORMATTED_NAME: "name.formatted",
    UserField.EXTERNAL_ID: "externalId",
    UserField.ACTIVE: "active",
}
"""Each held user field's SCIM attribute (RFC 7643 §4.1; bridge/scim/mapping.py)."""
GROUP_ATTRIBUTES: Final[Mapping[GroupField, str]] = {
    GroupField.DISPLAY_NAME: "displayName",
    GroupField.EXTERNAL_ID: "externalId",
}


def journal(request: Request) -> JournalRecord | None:
    """The request's record, when the journal is on and the request is a write."""
    return record_of(request.scope)


def note_user(
    record: JournalRecord,
    values: Mapping[UserField, str | bool | None],
    *,
    patch: bool = False,
    before: UserRecord | None = None,
) -> None:
    """The user attributes a create, PATCH or PUT sets; ``before``: the user as the request
    read it anyway (:func:`read_before`)."""
    held = None if before is None else _user_values(before)
    for field, value in values.items():
        if field == UserField.USER_NAME and isinstance(value, str):
            record.identify(name=value)
        elif field == UserField.EXTERNAL_ID and isinstance(value, str):
            record.identify(external_id=value)
        was = NOT_READ if held is None else held[field]
        record.add_change(USER_ATTRIBUTES[field], was, value, op=_op(patch, value))


def note_group(
    record: JournalRecord,
    values: Mapping[GroupField, str | None],
    *,
    patch: bool = False,
    before: GroupRecord | None = None,
) -> None:
    """The group attributes a create, PATCH or PUT sets."""
    for field, value in values.items():
        if field == GroupField.DISPLAY_NAME and isinstance(value, str):
            record.identify(name=value)
        elif field == GroupField.EXTERNAL_ID and isinstance(value, str):
            record.identify(external_id=value)
        was = NOT_READ if before is None else _group_value(before, field)
        record.add_change(GROUP_ATTRIBUTES[field], was, value, op=_op(patch, value))


def read_before(kind: type[T]) -> T | None:
    """The object the upstream read before writing it (``RequestState.read_before``), if it
    is of ``kind``: its values are the change's ``before``."""
    state = request_state.current()
    found = state.read_before if state is not None else None
    return found if isinstance(found, kind) else None


def note_members(record: JournalRecord, added: Iterable[str], removed: Iterable[str]) -> None:
    """Member ids added to and removed from a group, sorted (sets have no order)."""
    record.add_members(sorted(added), sorted(removed))


def _op(patch: bool, value: object) -> str | None:
    """A PATCH's operation as the bridge applies it: a cleared attribute is removed."""
    if not patch:
        return None
    return "remove" if value is None else "replace"


def _user_values(user: UserRecord) -> dict[UserField, str | bool | None]:
    """Each held field's value (built once per request, not once per field)."""
    return {
        UserField.USER_NAME: user.user_name,
        UserField.EMAIL: user.email,
        UserField.GIVEN_NAME: user.given_name,
        UserField.FAMILY_NAME: user.family_name,
        UserField.FORMATTED_NAME: user.formatted_name,
        UserField.EXTERNAL_ID: user.external_id,
        UserField.ACTIVE: user.active,
    }


def _group_value(group: GroupRecord, field: GroupField) -> str | None:
    return group.display_name if field == GroupField.DISPLAY_NAME else group.external_id
