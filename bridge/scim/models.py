"""The SCIM resource models the bridge reads and writes (scim2-models), and Entra's policy.

``ENTRA_POLICY`` is how scim2-models tolerates Entra's deviations from RFC 7644
(entra-scim-behaviour.md §4): unknown attributes are accepted and dropped (an error would be
retried by Entra forever), ``Remove`` on ``members`` with a ``value`` list removes only the
listed members, and ``Replace emails[type eq "work"].value`` creates the work email when there
is none. Capitalised ``op`` values and ``"False"`` strings are accepted by scim2-models itself.
"""

from __future__ import annotations

from typing import Any, Final

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

BridgeUser: Final[Any] = User[EnterpriseUser]
"""Entra sends the enterprise extension URN on every user; accepting it lets its paths
resolve (and be ignored) instead of failing."""

ENTRA_POLICY: Final = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)

UserPatch: Final[Any] = PatchOp[BridgeUser]
GroupPatch: Final[Any] = PatchOp[Group]
UserFilter: Final[Any] = ScimFilter[BridgeUser]
GroupFilter: Final[Any] = ScimFilter[Group]
UserPath: Final[Any] = Path[BridgeUser]
GroupPath: Final[Any] = Path[Group]
UserResponseParameters: Final[Any] = ResponseParameters[BridgeUser]
GroupResponseParameters: Final[Any] = ResponseParameters[Group]
