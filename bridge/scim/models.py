"""The SCIM resource models the bridge reads and writes (scim2-models), and Entra's policy.

``ENTRA_POLICY`` is how scim2-models tolerates Entra's deviations from RFC 7644
(entra-scim-behaviour.md §4): unknown attributes are accepted and dropped (an error would be
retried by Entra forever), ``Remove`` on ``members`` with a ``value`` list removes only the
listed members, and ``Replace emails[type eq "work"].value`` creates the work email when there
is none. Capitalised ``op`` values and ``"False"`` strings are accepted by scim2-models itself.
"""

from __future__ import annotations

from typing import Final

from scim2_models import (
    EnterpriseUser,
    Group,
    PatchOp,
    Path,
    ResponseParameters,
    ScimFilter,
    ScimPolicy,
    User,
)

BridgeUser = User[EnterpriseUser]
"""Entra sends the enterprise extension URN on every user; accepting it lets its paths
resolve (and be ignored) instead of failing."""

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
