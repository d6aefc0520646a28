"""The SCIM attributes the bridge serves, derived from what the upstream holds.

The upstream declares the fields it can store (:class:`bridge.upstream.Holdings`). This module
names each field's SCIM attribute once (:data:`USER_PATHS`, :data:`GROUP_PATHS`: the mapping
table of docs/operator/connect-entra.md and of Modyo's Azure guide) and derives from the two
everything the SCIM side needs, as scim2-server registers its schemas once and feeds validation
and discovery from them:

- the attributes kept before validation, the rest accepted and ignored (:class:`HeldAttributes`);
- what ``/Schemas`` advertises (RFC 7643 §7);
- the paths Entra's fast paths may write;
- the attributes a filter may look up upstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Final

from scim2_models import Group

from bridge.scim.models import BridgeUser, GroupPath, UserPath
from bridge.scim.unheld import HeldAttributes
from bridge.upstream import GroupField, Holdings, UserField

USER_PATHS: Final[Mapping[UserField, str]] = {
    UserField.USER_NAME: "userName",  # userPrincipalName
    UserField.EMAIL: "emails.value",  # mail, as emails[type eq "work"].value
    UserField.GIVEN_NAME: "name.givenName",  # givenName
    UserField.FAMILY_NAME: "name.familyName",  # surname
    UserField.FORMATTED_NAME: "name.formatted",  # Join(" ", givenName, surname)
    UserField.EXTERNAL_ID: "externalId",  # objectId
    UserField.ACTIVE: "active",  # Switch([IsSoftDeleted], , "False", "True", "True", "False")
}
GROUP_PATHS: Final[Mapping[GroupField, str]] = {
    GroupField.DISPLAY_NAME: "displayName",
    GroupField.EXTERNAL_ID: "externalId",  # objectId
}
EMAIL_COMPANIONS: Final = ("emails.type", "emails.primary")
"""Sub-attributes of the one email an upstream holds: accepted, and rendered as the work
email, which is the primary one (as Microsoft's create-user response shows it)."""
MEMBER_PATHS: Final = ("members.value", "members.$ref", "members.display", "members.type")
"""Memberships are part of every upstream (the Upstream interface), so always served."""

SchemaKeep = Mapping[str, frozenset[str] | None]
"""Top-level SCIM attribute -> the sub-attributes advertised (None: a simple attribute)."""


@dataclass(frozen=True, slots=True)
class Served:
    """Everything the SCIM side derives from one :class:`Holdings`."""

    holds: Holdings
    user: HeldAttributes[BridgeUser]
    group: HeldAttributes[Group]
    user_schema: SchemaKeep
    group_schema: SchemaKeep
    user_scalars: Mapping[str, UserField]
    """Lower-cased paths of held single-valued user attributes (what a fast PATCH writes)."""
    group_scalars: Mapping[str, GroupField]
    user_terms: Mapping[tuple[str, str | None], UserField]
    """(attribute, sub-attribute), lower case, that a user filter can look up upstream."""
    group_terms: Mapping[tuple[str, str | None], GroupField]


@cache
def served(holds: Holdings) -> Served:
    """Derive what the SCIM side serves for an upstream (computed once per Holdings)."""
    user_paths = [USER_PATHS[field] for field in USER_PATHS if field in holds.user]
    group_paths = [GROUP_PATHS[field] for field in GROUP_PATHS if field in holds.group]
    held_email = UserField.EMAIL in holds.user
    return Served(
        holds=holds,
        user=HeldAttributes(
            "User",
            BridgeUser,
            UserPath,
            _model_fields(UserPath, [*user_paths, *(EMAIL_COMPANIONS if held_email else ())]),
        ),
        group=HeldAttributes("Group", Group, GroupPath, _model_fields(GroupPath, [*group_paths,
                                                                          *MEMBER_PATHS])),
        user_schema=_schema_keep([*user_paths, *(EMAIL_COMPANIONS if held_email else ())]),
        group_schema=_schema_keep([*group_paths, *MEMBER_PATHS]),
        user_scalars={
            USER_PATHS[field].lower(): field
            for field in USER_PATHS
            if field in holds.user and field is not UserField.EMAIL
        },
        group_scalars={GROUP_PATHS[field].lower(): field for field in holds.group},
        user_terms={
            **{_term(USER_PATHS[field]): field for field in holds.user & holds.user_search},
            **({("emails", None): UserField.EMAIL} if UserField.EMAIL in holds.user_search else {}),
        },
        group_terms={_term(GROUP_PATHS[field]): field
                     for field in holds.group & holds.group_search},
    )  # fmt: skip


def _model_fields(
    path_class: type[UserPath] | type[GroupPath], paths: list[str]
) -> frozenset[tuple[str, str | None]]:
    """(field, sub-field) of the scim2-models model for each SCIM path, and its parent."""
    pairs: set[tuple[str, str | None]] = set()
    for text in paths:
        binding = path_class(text).resolve()
        assert binding is not None, text
        pairs.add((binding.field_name, None))
        if binding.sub_field_name is not None:
            pairs.add((binding.field_name, binding.sub_field_name))
    return frozenset(pairs)  # fmt: skip


def _schema_keep(paths: list[str]) -> SchemaKeep:
    keep: dict[str, set[str] | None] = {}
    for text in paths:
        attribute, _, sub = text.partition(".")
        if sub:
            subs = keep.get(attribute) or set()
            subs.add(sub)
            keep[attribute] = subs
        else:
            keep.setdefault(attribute, None)
    return {name: None if subs is None else frozenset(subs) for name, subs in keep.items()}


def _term(path: str) -> tuple[str, str | None]:
    attribute, _, sub = path.lower().partition(".")
    return attribute, sub or None
