"""Pure translation between SCIM resources and the bridge's upstream records (no I/O).

Which SCIM attribute carries which upstream field is declared in ``bridge.scim.attributes``;
this module renders records as SCIM resources (RFC 7643 §4) and reads the upstream values out
of validated ones. Fields an upstream does not hold are None in its records, so they are
simply absent from what is rendered.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from scim2_models import Email, Group, GroupMember, Meta, Name

from bridge.scim.models import GROUP_SCHEMA, USER_SCHEMA, BridgeEmail, BridgeUser
from bridge.upstream import GroupField, GroupRecord, MemberRecord, UserField, UserRecord


def user_resource(record: UserRecord, location: str) -> BridgeUser:
    """A SCIM User (RFC 7643 §4.1) from a team member; disabled users keep ``active: false``."""
    # model_construct: what Modyo holds is rendered as held, never re-validated (an address
    # Modyo accepted but email-validator would not must still be readable).
    name = None
    if record.given_name or record.family_name or record.formatted_name:
        name = Name.model_construct(
            given_name=record.given_name,
            family_name=record.family_name,
            formatted=record.formatted_name,
        )
    emails = None
    if record.email:
        emails = [
            BridgeEmail.model_construct(value=record.email, type=Email.Type.work, primary=True)
        ]
    return BridgeUser.model_construct(
        schemas=[USER_SCHEMA],
        id=record.id,
        external_id=record.external_id,
        user_name=record.user_name,
        name=name,
        active=record.active,
        emails=emails,
        meta=_meta("User", record.created, record.last_modified, location),
    )


def user_json(record: UserRecord, location: str) -> dict[str, Any]:
    """The JSON of :func:`user_resource`, built directly: what scim2-models dumps for it in
    a response with no ``attributes`` parameter (tests hold the two equal). Rendering through
    the models is most of a GET's CPU (docs/performance.md, Costs the code avoids)."""
    body: dict[str, Any] = {"schemas": [USER_SCHEMA], "id": record.id}
    if record.external_id is not None:
        body["externalId"] = record.external_id
    body["meta"] = _meta_json("User", record.created, record.last_modified, location)
    body["userName"] = record.user_name
    name = {
        key: value
        for key, value in (
            ("formatted", record.formatted_name),
            ("familyName", record.family_name),
            ("givenName", record.given_name),
        )
        if value is not None
    }
    if name:
        body["name"] = name
    body["active"] = record.active
    if record.email:
        body["emails"] = [{"value": record.email, "type": "work", "primary": True}]
    return body


def group_json(
    record: GroupRecord, location: str, members: list[MemberRecord] | None, users_location: str
) -> dict[str, Any]:
    """The JSON of :func:`group_resource`, built directly (as :func:`user_json`)."""
    body: dict[str, Any] = {"schemas": [GROUP_SCHEMA], "id": record.id}
    if record.external_id is not None:
        body["externalId"] = record.external_id
    body["meta"] = _meta_json("Group", record.created, record.last_modified, location)
    body["displayName"] = record.display_name
    if members:
        body["members"] = [
            {"value": m.id, "$ref": f"{users_location}/{m.id}", "type": "User"}
            | ({"display": m.display} if m.display is not None else {})
            for m in members
        ]
    return body


def _meta_json(
    resource_type: str, created: str | None, modified: str | None, location: str
) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceType": resource_type}
    for key, text in (("created", created), ("lastModified", modified)):
        moment = _timestamp(text)
        if moment is not None:
            meta[key] = moment.isoformat()
    meta["location"] = location
    return meta


def _meta(resource_type: str, created: str | None, modified: str | None, location: str) -> Meta:
    return Meta.model_construct(
        resource_type=resource_type,
        created=_timestamp(created),
        last_modified=_timestamp(modified),
        location=location,
    )


def _timestamp(text: str | None) -> datetime | None:
    """Modyo's ``2019-07-09T17:15:14.000-03:00`` (offset kept: RFC 7643 §2.3.5 dateTime)."""
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def best_email(emails: Iterable[Email] | None) -> Email | None:
    """The one email Modyo holds: the work email, else the primary one, else the first."""
    entries = [email for email in emails or () if email.value]
    for email in entries:
        if str(email.type or "").lower() == "work":
            return email
    for email in entries:
        if email.primary is True:
            return email
    return entries[0] if entries else None


def _email_value(emails: Iterable[Email] | None) -> str | None:
    chosen = best_email(emails)
    return None if chosen is None else str(chosen.value)


def user_values(user: BridgeUser, held: frozenset[UserField]) -> dict[UserField, str | bool | None]:
    """Every held attribute of a SCIM User (POST, PUT): absent ones are cleared."""
    name = user.name
    values: dict[UserField, str | bool | None] = {
        UserField.USER_NAME: user.user_name,
        UserField.EMAIL: _email_value(user.emails),
        UserField.GIVEN_NAME: name.given_name if name else None,
        UserField.FAMILY_NAME: name.family_name if name else None,
        UserField.FORMATTED_NAME: name.formatted if name else None,
        UserField.EXTERNAL_ID: user.external_id,
        UserField.ACTIVE: True if user.active is None else bool(user.active),
    }
    return {field: value for field, value in values.items() if field in held}


def group_resource(
    record: GroupRecord, location: str, members: list[MemberRecord] | None, users_location: str
) -> Group:
    """A SCIM Group (RFC 7643 §4.2); ``members`` None when they were excluded (not read)."""
    return Group.model_construct(
        schemas=[GROUP_SCHEMA],
        id=record.id,
        external_id=record.external_id,
        display_name=record.display_name,
        members=None
        if members is None
        else [
            GroupMember.model_construct(
                value=member.id,
                ref=f"{users_location}/{member.id}",  # type: ignore[arg-type]
                display=member.display,
                type="User",
            )
            for member in members
        ],
        meta=_meta("Group", record.created, record.last_modified, location),
    )


def group_values(group: Group, held: frozenset[GroupField]) -> dict[GroupField, str | None]:
    values = {
        GroupField.DISPLAY_NAME: group.display_name,
        GroupField.EXTERNAL_ID: group.external_id,
    }
    return {field: value for field, value in values.items() if field in held}
