"""User PATCH (RFC 7644 §3.5.2, in every form Entra sends: docs/design/entra.md) turned
into the upstream changes it implies, without reading the user first.

scim2-models applies the operations, so its semantics (and Entra's tolerated deviations:
capitalised ops, ``"False"`` strings, path-less values with dotted or URN keys, filtered paths
that create the work email) are the library's. They are applied to a *probe*: a User whose
held attributes carry sentinel values. Whatever no longer holds its sentinel afterwards was
written by the PATCH; everything else is left alone upstream. One upstream write, no read.

Operations on attributes Modyo cannot hold (manager, nickName, enterprise attributes...) are
dropped before applying, accepted and logged once per attribute name: an error would make
Entra retry them forever.
"""

from __future__ import annotations

from typing import Any, Final

from scim2_models import Email, MutabilityException, Name, PatchOperation

from bridge.scim.mapping import best_email
from bridge.scim.models import ENTRA_POLICY, BridgeEmail, BridgeUser, UserPatch
from bridge.scim.pathless import expanded
from bridge.scim.unheld import HeldAttributes
from bridge.upstream import UserField

UNTOUCHED: Final = "\u2063scim-bridge:untouched"  # invisible separator: never sent by Entra
UNTOUCHED_EMAIL: Final = "untouched@sentinel.scim-bridge.internal"


def _probe() -> BridgeUser:
    return BridgeUser(
        id="probe",
        user_name=UNTOUCHED,
        external_id=UNTOUCHED,
        active=None,
        name=Name(given_name=UNTOUCHED, family_name=UNTOUCHED, formatted=UNTOUCHED),
        emails=[BridgeEmail(value=UNTOUCHED_EMAIL, type="work", primary=True)],
    )


_PROBE: Final = _probe()


def _fresh_probe() -> BridgeUser:
    """A copy of the probe: shallow copies of each level, much cheaper than a deep copy."""
    probe = _PROBE.model_copy()
    assert _PROBE.name is not None and _PROBE.emails is not None
    probe.name = _PROBE.name.model_copy()
    probe.emails = [email.model_copy() for email in _PROBE.emails]
    return probe


def user_changes(
    patch: UserPatch, holding: HeldAttributes[BridgeUser]
) -> dict[UserField, str | bool | None]:
    """The upstream changes a validated ``PatchOp[User]`` makes (empty when it changes nothing
    Modyo holds). Raises scim2-models' SCIM exceptions on values it refuses."""
    operations = expanded(patch, BridgeUser)
    kept = [part for op in operations if (part := holding.operation(op)) is not None]
    if any(_unsets_active(operation) for operation in kept):
        raise MutabilityException(
            detail="active cannot be removed: a Modyo member is active or not"
        )
    probe = _fresh_probe()
    patch.model_copy(update={"operations": kept}).patch(probe, scim_policy=ENTRA_POLICY)
    holding.note_sub_attributes(probe)  # name.middleName, emails.display...
    return _written(probe)


def _unsets_active(operation: PatchOperation[Any]) -> bool:
    """``remove active`` (or a replace with null): ``active`` is required (see /Schemas)."""
    if operation.path is None or operation.op == "add":
        return False
    binding = operation.path.resolve()
    targets = binding is not None and binding.field_name == "active"
    return targets and (operation.op == "remove" or operation.value is None)


def _written(probe: BridgeUser) -> dict[UserField, str | bool | None]:
    changes: dict[UserField, str | bool | None] = {}
    for field, value in (
        (UserField.USER_NAME, probe.user_name),
        (UserField.EXTERNAL_ID, probe.external_id),
        (UserField.GIVEN_NAME, probe.name.given_name if probe.name else None),
        (UserField.FAMILY_NAME, probe.name.family_name if probe.name else None),
        (UserField.FORMATTED_NAME, probe.name.formatted if probe.name else None),
    ):
        if value != UNTOUCHED:
            changes[field] = value or None  # "" clears, as Microsoft's gallery suite expects
    if probe.active is not None:
        changes[UserField.ACTIVE] = bool(probe.active)
    if not probe.emails:
        changes[UserField.EMAIL] = None  # every email removed
        return changes
    written = [email for email in probe.emails if email.value != UNTOUCHED_EMAIL]
    chosen = best_email(written)
    kept_old = len(written) < len(probe.emails)
    if chosen is not None and (not kept_old or _outranks_old(chosen)):
        changes[UserField.EMAIL] = str(chosen.value)
    return changes


def _outranks_old(email: Email) -> bool:
    """A new work or primary email replaces the held one; an extra "other" email does not."""
    return str(email.type or "").lower() == "work" or email.primary is True
