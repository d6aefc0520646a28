"""Group PATCH (RFC 7644 §3.5.2; Entra's forms in docs/design/entra.md, Groups) turned
into a plan: attribute changes plus membership steps, with no upstream call.

Membership steps are read from the operations themselves, never by applying them to the whole
member list, so a one-member change costs the same at 10 members and at 50,000:

- ``Add members`` with one or many values                         -> add those ids
- ``Remove members`` with a value list (Entra's default form)      -> remove only those ids
- ``remove members[value eq "id"]`` (the aadOptscim062020 form)    -> remove that id
- ``Remove members`` with no value (RFC 7644 §3.5.2.2)             -> remove every member
- ``Replace members`` (or a path-less replace with ``members``)    -> exactly these members

Other attributes (displayName, externalId) go through scim2-models on a probe, as for users.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from scim2_models import (
    Group,
    InvalidFilterException,
    InvalidPathException,
    InvalidValueException,
    PatchOperation,
)
from scim2_models.path import CompareOperator, Comparison, FilterNode, LogicalExpr, LogicalOperator

from bridge.scim.models import ENTRA_POLICY, GroupPatch, GroupPath
from bridge.scim.pathless import expanded
from bridge.scim.unheld import HeldAttributes
from bridge.upstream import GroupField

UNTOUCHED: Final = "\u2063scim-bridge:untouched"


class Step(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    CLEAR = "clear"
    REPLACE = "replace"


@dataclass(frozen=True, slots=True)
class MemberStep:
    kind: Step
    ids: tuple[str, ...] = ()


@dataclass(slots=True)
class GroupPlan:
    changes: dict[GroupField, str | None] = field(default_factory=dict)
    steps: list[MemberStep] = field(default_factory=list)

    @property
    def needs_member_list(self) -> bool:
        """Only "remove all" and "replace" depend on who is in the group now."""
        return any(step.kind in (Step.CLEAR, Step.REPLACE) for step in self.steps)

    def touched_ids(self) -> set[str]:
        return {member_id for step in self.steps for member_id in step.ids}

    def final_members(self, current: set[str]) -> set[str]:
        """Apply the steps, in order, to ``current`` (all members, or the touched ones)."""
        members = set(current)
        for step in self.steps:
            if step.kind is Step.ADD:
                members |= set(step.ids)
            elif step.kind is Step.REMOVE:
                members -= set(step.ids)
            elif step.kind is Step.CLEAR:
                members.clear()
            else:
                members = set(step.ids)
        return members


def plan_group_patch(patch: GroupPatch, holding: HeldAttributes[Group]) -> GroupPlan:
    """Read a validated ``PatchOp[Group]``; raises SCIM exceptions for forms it cannot honour."""
    plan = GroupPlan()
    other_operations = []
    for operation in expanded(patch, Group):
        if operation.path is not None and _targets_members(operation.path):
            plan.steps.append(_member_step(operation))
        else:
            other_operations.append(operation)
    if other_operations:
        plan.changes = _attribute_changes(patch, other_operations, holding)
    return plan


def _targets_members(path: GroupPath) -> bool:
    binding = path.resolve()
    return binding is not None and binding.field_name == "members"


def _member_step(operation: PatchOperation[Group]) -> MemberStep:
    path = operation.path
    assert path is not None
    binding = path.resolve()
    if binding is not None and binding.sub_field_name is not None:
        raise InvalidPathException(
            detail=f"'{path}': change members as a whole (members, or members[value eq \"id\"])"
        )
    if path.value_filter is not None:
        if operation.op != "remove":
            raise InvalidPathException(
                detail=f"'{path}': a member filter is only supported in remove"
            )
        return MemberStep(Step.REMOVE, _filtered_ids(path.value_filter))
    if operation.op == "add":
        return MemberStep(Step.ADD, _ids(operation.value))
    if operation.op == "remove":
        if operation.value is None:
            return MemberStep(Step.CLEAR)
        return MemberStep(Step.REMOVE, _ids(operation.value))
    if operation.value in (None, []):
        return MemberStep(Step.CLEAR)
    return MemberStep(Step.REPLACE, _ids(operation.value))


def _ids(value: Any) -> tuple[str, ...]:
    """Member ids from ``[{"value": "id", "$ref": ..., "type": "User"}, ...]`` (or one object)."""
    entries = value if isinstance(value, list) else [value]
    ids = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise InvalidValueException(
                detail='each member must be an object like {"value": "<id>"}'
            )
        fields = {str(key).lower(): item for key, item in entry.items()}
        member_id = fields.get("value")
        if not isinstance(member_id, str) or member_id == "":
            raise InvalidValueException(
                detail='each member needs a "value": the id of a user, as a string'
            )
        if str(fields.get("type") or "User").lower() != "user":
            raise InvalidValueException(detail=f"member {member_id}: Modyo groups hold users only")
        ids.append(str(member_id))
    return tuple(dict.fromkeys(ids))


def _filtered_ids(node: FilterNode) -> tuple[str, ...]:
    """Ids from ``value eq "id"``, possibly several joined by ``or``."""
    terms = (
        node.terms if isinstance(node, LogicalExpr) and node.op == LogicalOperator.or_ else (node,)
    )
    ids = []
    for term in terms:
        if (
            not isinstance(term, Comparison)
            or term.attr_path.attr.lower() != "value"
            or term.attr_path.sub_attr is not None
            or term.op != CompareOperator.eq
            or not isinstance(term.value, str | int)
        ):
            raise InvalidFilterException(
                detail=f"unsupported member filter '{node}': use members[value eq \"<id>\"]"
            )
        ids.append(str(term.value))
    return tuple(dict.fromkeys(ids))


def _attribute_changes(
    patch: GroupPatch, operations: list[PatchOperation[Group]], holding: HeldAttributes[Group]
) -> dict[GroupField, str | None]:
    probe = Group(id="probe", display_name=UNTOUCHED, external_id=UNTOUCHED)
    kept = [part for op in operations if (part := holding.operation(op)) is not None]
    patch.model_copy(update={"operations": kept}).patch(probe, scim_policy=ENTRA_POLICY)
    changes: dict[GroupField, str | None] = {}
    if probe.display_name != UNTOUCHED:
        changes[GroupField.DISPLAY_NAME] = probe.display_name
    if probe.external_id != UNTOUCHED:
        changes[GroupField.EXTERNAL_ID] = probe.external_id or None
    return changes
