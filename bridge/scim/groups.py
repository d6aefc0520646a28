"""``/Groups`` (RFC 7644 §3; Entra's requests R15-R22 in entra-scim-behaviour.md §2).

Membership changes cost upstream calls proportional to the members they name, never to the
group's size: the member list is read only when it is asked for, or when a PATCH replaces or
clears all members (which depends on who is in the group).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

from scim2_models import Context, Group, InvalidValueException
from starlette.requests import Request
from starlette.responses import Response

from bridge.metrics import REQUEST_LIMITS
from bridge.scim.context import ScimContext
from bridge.scim.endpoints import ResourceEndpoints
from bridge.scim.errors import PartialWrite, PayloadTooLarge, unknown_members
from bridge.scim.fast_paths import FastPaths
from bridge.scim.filters import CompiledFilter, group_filterable
from bridge.scim.group_patch import GroupPlan, MemberStep, Step, plan_group_patch
from bridge.scim.mapping import group_json, group_resource, group_values
from bridge.scim.models import GroupPatch, GroupResponseParameters
from bridge.scim.queries import Parameters, Query, query_from_url
from bridge.scim.requests import check_operations, off_loop, patch_from, resource_from
from bridge.scim.responses import ScimResponse, list_response, no_content
from bridge.upstream import (
    GroupChanges,
    GroupField,
    GroupRecord,
    MemberRecord,
    UpstreamError,
    is_safe_id,
)
from bridge.yielding import batches


class GroupEndpoints(ResourceEndpoints[GroupRecord, GroupField]):
    path = "/Groups"
    resource_type = "Group"
    parameters = GroupResponseParameters

    def __init__(self, context: ScimContext) -> None:
        super().__init__(context)
        self.holding = context.served.group
        self.held = context.served.holds.group
        self.fast = FastPaths(context.served)
        self.filterable = group_filterable(context.served)

    async def create(self, request: Request) -> Response:
        """Create (RFC 7644 §3.3): 201; a taken displayName is 409 (Entra matches groups by
        name). Members, if sent, are checked before the group is created."""
        body = await self.read_body(request)
        group = await off_loop(
            lambda: resource_from(body, self.holding, Context.RESOURCE_CREATION_REQUEST)
        )
        member_ids = set(_member_ids(group))
        self._check_members(member_ids)
        await self._require_users(member_ids)
        async with self.context.creating.hold(f"displayName:{group.display_name}"):
            record = await self.context.upstream.create_group(group_values(group, self.held))
        self.created(record.id)
        if member_ids:
            await self._write(record.id, GroupPlan(), to_add=member_ids, to_remove=set())
        members = await self.context.upstream.list_members(record.id) if member_ids else []
        body = self._render(request, record, members, Context.RESOURCE_CREATION_RESPONSE)
        return ScimResponse(body, status_code=201, headers={"Location": body["meta"]["location"]})

    async def read(self, request: Request) -> Response:
        """Read by id (RFC 7644 §3.4.1); ``excludedAttributes=members`` reads no member."""
        params = query_from_url(request, self.parameters, self.context.max_page_size).params
        record = await self.context.upstream.get_group(request.path_params["resource_id"])
        members = await self._members_if_wanted(record.id, params)
        return ScimResponse(self._render(request, record, members, params=params))

    async def answer(self, request: Request, query: Query) -> Response:
        window = query.window
        if query.filter is None:
            page = await self.context.upstream.list_groups(window.offset, window.count)
            total, records = page.total, page.items
        else:
            matched = await self.matching(query.filter)
            total, records = len(matched), matched[window.offset : window.offset + window.count]
        resources = []
        for record in records:
            members = await self._members_if_wanted(record.id, query.params)
            resources.append(self._render(request, record, members, params=query.params))
        return ScimResponse(list_response(resources, total, window.start_index))

    async def patch(self, request: Request) -> Response:
        """Modify (RFC 7644 §3.5.2): every Entra form; 204 (R18-R20). The whole PATCH is
        checked before the first write, and re-sending it converges."""
        body = await self.read_body(request)
        check_operations(body, self.context.limits.max_patch_operations)
        plan = self.fast.group_plan(body)
        if plan is None:
            plan = await off_loop(
                lambda: plan_group_patch(patch_from(body, GroupPatch), self.holding)
            )
        self._check_members(plan.touched_ids())
        group_id = request.path_params["resource_id"]
        to_add, to_remove = await self._membership_changes(group_id, plan)
        if not (plan.changes or to_add or to_remove):
            await self.context.upstream.get_group(group_id)  # nothing to write: still 404 if absent
        await self._write(group_id, plan, to_add, to_remove)
        return no_content()

    async def replace(self, request: Request) -> Response:
        """Replace (RFC 7644 §3.5.1): name, externalId and exactly the members sent."""
        body = await self.read_body(request)
        group = await off_loop(
            lambda: resource_from(body, self.holding, Context.RESOURCE_REPLACEMENT_REQUEST)
        )
        group_id = request.path_params["resource_id"]
        wanted = _member_ids(group)
        self._check_members(wanted)
        plan = GroupPlan(
            changes=group_values(group, self.held), steps=[MemberStep(Step.REPLACE, wanted)]
        )
        to_add, to_remove = await self._membership_changes(group_id, plan)
        record = await self._write(group_id, plan, to_add, to_remove)
        members = await self.context.upstream.list_members(group_id)
        return ScimResponse(
            self._render(request, record, members, Context.RESOURCE_REPLACEMENT_RESPONSE)
        )

    async def delete(self, request: Request) -> Response:
        """Delete (RFC 7644 §3.6): 204; the group's users are not deleted."""
        await self.context.upstream.delete_group(request.path_params["resource_id"])
        return no_content()

    def _check_members(self, member_ids: Collection[str]) -> None:
        """413 for a request naming more than ``scim.max_patch_members`` members, before any
        upstream call: each costs one or more (docs/operator/security.md)."""
        limit = self.context.limits.max_patch_members
        if len(member_ids) > limit:
            REQUEST_LIMITS("scim.max_patch_members").inc()
            raise PayloadTooLarge(
                detail=f"the request names {len(member_ids)} group members; at most {limit} "
                "are accepted in one request (scim.max_patch_members): send them in several"
            )

    async def _membership_changes(
        self, group_id: str, plan: GroupPlan
    ) -> tuple[set[str], set[str]]:
        """Who to add and remove, read before any write: only the users the plan names are
        looked up (one call per 100), unless it replaces or clears all members (then the
        group's list is read). Unknown users to add are a 400 naming them."""
        known: set[str] | None = None
        if plan.needs_member_list:
            current = {member.id for member in await self.context.upstream.list_members(group_id)}
        else:
            touched = {member for member in plan.touched_ids() if is_safe_id(member)}
            groups = await self.context.upstream.memberships(touched) if touched else {}
            current = {user_id for user_id, of in groups.items() if group_id in of}
            known = set(groups)
        final = plan.final_members(current)
        to_add = final - current
        await self._require_users(to_add, known)
        return to_add, current - final

    async def _require_users(self, user_ids: set[str], known: set[str] | None = None) -> None:
        """400 ``invalidValue`` naming every id that is not a Modyo user (``known``: the users
        already looked up, so no second call)."""
        if not user_ids:
            return
        if known is None:
            asked = {user_id for user_id in user_ids if is_safe_id(user_id)}
            known = set(await self.context.upstream.memberships(asked)) if asked else set()
        missing = user_ids - known
        if missing:
            raise unknown_members(missing)

    async def _write(
        self, group_id: str, plan: GroupPlan, to_add: set[str], to_remove: set[str]
    ) -> GroupRecord | None:
        """Rename, add, remove, in that order; a failure part-way names what was applied."""
        modyo = self.context.upstream
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        if plan.changes:
            steps.append((_describe(plan.changes), lambda: self._update(group_id, plan.changes)))
        if to_add:
            steps.append(
                (f"add {len(to_add)} member(s)", lambda: modyo.add_members(group_id, to_add))
            )
        if to_remove:
            label = f"remove {len(to_remove)} member(s)"
            steps.append((label, lambda: modyo.remove_members(group_id, to_remove)))
        record = None
        for done, (_, step) in enumerate(steps):
            try:
                outcome = await step()
            except UpstreamError as failure:
                if done == 0:
                    raise
                labels = [label for label, _ in steps]
                raise PartialWrite(failure, labels[:done], labels[done:]) from None
            if isinstance(outcome, GroupRecord):
                record = outcome
        return record

    async def _update(self, group_id: str, changes: GroupChanges) -> GroupRecord:
        """A rename holds the create lock of its new name: a create or another rename to the
        same name waits, then sees it taken (409), rather than both passing the check."""
        name = changes.get(GroupField.DISPLAY_NAME)
        async with self.context.creating.hold(f"displayName:{name}" if name else ""):
            return await self.context.upstream.update_group(group_id, changes)

    async def _members_if_wanted(
        self, group_id: str, params: Parameters | None
    ) -> list[MemberRecord] | None:
        return (
            await self.context.upstream.list_members(group_id) if _wants_members(params) else None
        )

    async def get(self, resource_id: str) -> GroupRecord:
        return await self.context.upstream.get_group(resource_id)

    async def search_upstream(self, field: GroupField, value: str) -> list[GroupRecord]:
        return await self.context.upstream.search_groups(field, value)

    async def scan_upstream(self, limit: int) -> list[GroupRecord]:
        return await self.context.upstream.scan_groups(limit)

    def held_value(self, record: GroupRecord, field: GroupField | None) -> str | None:
        held: dict[GroupField | None, str | None] = {
            None: record.id,
            GroupField.DISPLAY_NAME: record.display_name,
            GroupField.EXTERNAL_ID: record.external_id,
        }
        return held[field]

    async def evaluate(
        self, compiled: CompiledFilter[GroupField], candidates: list[GroupRecord]
    ) -> list[GroupRecord]:
        """Each group rendered with, as members, the users the filter names that are in it
        (their memberships: one call per 100 users), so ``members eq`` is decided without
        reading any group's member list."""
        wanted = sorted(member for member in compiled.member_ids if is_safe_id(member))
        groups_of = await self.context.upstream.memberships(wanted) if wanted and candidates else {}
        matched = []
        async for batch in batches(candidates):
            for record in batch:
                members = [
                    MemberRecord(user_id, None)
                    for user_id in wanted
                    if record.id in groups_of.get(user_id, ())
                ]
                if compiled.matches(group_json(record, "", members, "")):
                    matched.append(record)
        return matched

    def _render(
        self,
        request: Request,
        record: GroupRecord | None,
        members: list[MemberRecord] | None,
        context: Context = Context.RESOURCE_QUERY_RESPONSE,
        params: Parameters | None = None,
    ) -> dict[str, Any]:
        assert record is not None
        base = self.context.base_url(request)
        location, users = f"{base}/Groups/{record.id}", f"{base}/Users"
        if params is None or _only_members_excluded(params):
            return group_json(record, location, members, users)
        resource = group_resource(record, location, members, users)
        dumped: dict[str, Any] = resource.model_dump(scim_ctx=context, response_parameters=params)
        return dumped


def _member_ids(group: Group) -> tuple[str, ...]:
    """The ids of a POST/PUT body's ``members``; a member without a ``value`` is a 400
    (RFC 7643 §4.2: ``value`` is the member's id), never silently dropped."""
    ids = []
    for position, member in enumerate(group.members or ()):
        if not member.value:
            raise InvalidValueException(
                detail=f'members[{position}] needs a "value": the id of a user, as a string'
            )
        ids.append(member.value)
    return tuple(dict.fromkeys(ids))


def _wants_members(params: Parameters | None) -> bool:
    """Whether the response carries members: not when excluded, nor when other attributes
    were asked for without them (RFC 7644 §3.9)."""

    def names(paths: Iterable[object] | None) -> set[str]:
        return {str(path).lower().rsplit(":", 1)[-1].split(".")[0] for path in paths or ()}

    if params is None:
        return True
    if "members" in names(params.excluded_attributes):
        return False
    return params.attributes is None or "members" in names(params.attributes)


def _only_members_excluded(params: Parameters) -> bool:
    """``excludedAttributes=members`` alone, Entra's group read (R15, R17): rendered directly,
    as ``members`` is then absent (tests/test_mapping.py holds this equal to the models)."""
    excluded = {str(path).lower() for path in params.excluded_attributes or ()}
    return params.attributes is None and excluded <= {"members"}


def _describe(changes: dict[GroupField, str | None]) -> str:
    names = {GroupField.DISPLAY_NAME: "displayName", GroupField.EXTERNAL_ID: "externalId"}
    return "update " + " and ".join(names[field] for field in changes)
