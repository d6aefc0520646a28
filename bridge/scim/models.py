"""The SCIM resource models the bridge reads and writes (scim2-models), and Entra's policy.

``ENTRA_POLICY`` is how scim2-models tolerates Entra's deviations from RFC 7644
(docs/design/entra.md, The two PATCH dialects): unknown attributes are accepted and dropped (an
error would be retried by Entra forever), ``Remove`` on ``members`` with a ``value`` list
removes only the listed members, and ``Replace emails[type eq "work"].value`` creates the work
email when there is none. Capitalised ``op`` values and ``"False"`` strings are accepted by
scim2-models itself.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Final

from pydantic import BeforeValidator
from scim2_models import (
    Email,
    EnterpriseUser,
    Group,
    PatchOp,
    Path,
    ResponseParameters,
    ScimFilter,
    ScimPolicy,
    User,
)

BOOLEAN_TEXTS: Final = {"true": True, "false": False}


def entra_boolean(value: Any) -> Any:
    """A SCIM boolean (RFC 7643 §2.3.2) as Entra sends one: a JSON boolean, or the strings
    ``"True"``/``"False"`` in any case (docs/design/entra.md, The two PATCH dialects). Anything else
    (``"yes"``, ``"1"``, ``"on"``, ``1``) is not what it claims to be: refused, not guessed."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in BOOLEAN_TEXTS:
        return BOOLEAN_TEXTS[value.lower()]
    raise ValueError("must be a boolean (true or false)")


def email_syntax(value: Any) -> Any:
    """An address's shape only: one ``@`` between a non-empty local part and a non-empty
    domain, no whitespace or control characters. Whether the domain is acceptable is Modyo's
    call: special-use domains (``corp.local``, ``example.test``) are real in hybrid AD forests,
    and Modyo's refusal is mapped to 400 ``invalidValue`` naming the attribute."""
    if not isinstance(value, str):
        return value  # the str annotation reports the wrong type
    local, _, domain = value.partition("@")
    if not local or not domain or "@" in domain:
        raise ValueError("must be an email address: one '@' between a name and a domain")
    if any(char.isspace() or unicodedata.category(char) in ("Cc", "Cf") for char in value):
        raise ValueError("must be an email address without spaces or control characters")
    return value


EntraBoolean = Annotated[bool | None, BeforeValidator(entra_boolean)]
EmailAddress = Annotated[str | None, BeforeValidator(email_syntax)]


class BridgeEmail(Email):
    """RFC 7643 §4.1.2 ``emails``, checked for shape only (see :func:`email_syntax`)."""

    value: EmailAddress = None
    primary: EntraBoolean = None


class BridgeUser(User[EnterpriseUser]):
    """A User with the enterprise extension (Entra sends its URN on every user; accepting it
    lets its paths resolve, and be ignored, instead of failing), Entra's booleans, and email
    addresses checked for shape only."""

    active: EntraBoolean = None
    emails: list[BridgeEmail] | None = None  # type: ignore[assignment]


ENTRA_POLICY: Final = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)

UserPatch = PatchOp[BridgeUser]
GroupPatch = PatchOp[Group]
UserFilter = ScimFilter[BridgeUser]
GroupFilter = ScimFilter[Group]
UserPath = Path[BridgeUser]
GroupPath = Path[Group]
UserResponseParameters = ResponseParameters[BridgeUser]
GroupResponseParameters = ResponseParameters[Group]

USER_SCHEMA: Final = str(User.__schema__)
ENTERPRISE_SCHEMA: Final = str(EnterpriseUser.__schema__)
GROUP_SCHEMA: Final = str(Group.__schema__)
PATCH_SCHEMA: Final = str(PatchOp.__schema__)
