"""The probes of Modyo's Administration REST API (``scim-bridge check``,
docs/design/modyo-contract.md §6): read-only ones, and those only ``--write`` runs with a
throw-away team member and group, always removed again (a member this Modyo cannot delete is
deactivated and renamed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import httpx

from bridge.deadline import deadline_in
from bridge.modyo.probes import (
    PREFIX,
    PROBE_DEADLINE_SECONDS,
    Outcome,
    Probe,
    UpstreamProbes,
    ok,
    skip,
    warn,
)
from bridge.modyo.rest import RestUpstream
from bridge.upstream import GroupField, NotFound, NotSupported, UpstreamError, UserField, UserRecord

NO_HARD_DELETE = (
    "this Modyo cannot delete team members: in Entra, remove the Delete action from the user "
    "mapping (Provisioning > Mappings > Provision Microsoft Entra ID Users > Target Object "
    "Actions), or Entra's deletes, 30 days after a soft delete, fail; deactivation still works"
)


@dataclass
class RestProbes(UpstreamProbes[RestUpstream]):
    """The probes of the Modyo REST upstream (the shared ones, and these)."""

    noun: ClassVar[str] = "team member"
    _no_hard_delete: bool = False

    # ------------------------------------------------------------------ read-only

    async def _profile(self) -> Outcome:
        profile = await self.client.profile()
        owner = profile.get("username") or profile.get("email") or profile.get("id")
        return ok(f"token owner: {owner}")

    async def _memberships(self) -> Outcome:
        page = await self.client.list_users(0, 1)
        if not page.items:
            return skip("the account has no team member yet (--write creates one)")
        user_id = page.items[0].id
        groups = await self.client.memberships([user_id])
        assert user_id in groups, "a lookup by ids[] did not return the team member"
        return ok(f"team member {user_id} is in {len(groups[user_id])} group(s)")

    async def _group_filter(self) -> Outcome:
        found = await self.client.search_groups(GroupField.DISPLAY_NAME, self.name)
        assert not found, (
            f"a search for a non-existent group name returned {len(found)} group(s): "
            "the filter is ignored"
        )
        return ok("no match for a random name, as expected")

    async def _group_members(self) -> Outcome:
        page = await self.client.list_groups(0, 1)
        if not page.items:
            return skip("the account has no group yet (--write creates one)")
        members = await self.client.list_members(page.items[0].id)
        return ok(f"group {page.items[0].id} has {len(members)} member(s)")

    async def _shapes(self) -> Outcome:
        seen = self.client.shapes
        parts = [
            f"ids {seen.ids or 'not seen (no team member listed)'}",
            f"creates {seen.create_status or 'not seen (--write)'}",
            f"deletes {seen.delete_status or 'not seen (--write)'}",
            f"error envelope {seen.errors or 'not seen (--write)'}",
        ]
        return ok("; ".join(parts) + ": each handled (docs C8, C13)")

    # ------------------------------------------------------------------ writes (--write)

    async def _delete_user(self) -> Outcome:
        if self._user is None:
            return skip("needs the team member created above")
        if not await self._deleted(self._user.id):
            return warn(NO_HARD_DELETE)
        self._user_deleted = True
        try:
            await self.client.get_user(self._user.id)
        except NotFound:
            return ok("deleted; it reads 404 afterwards")
        raise AssertionError("the deleted team member can still be read")

    async def _deleted(self, user_id: str) -> bool:
        """Delete the team member; False when this Modyo cannot: a 405, or a 404 for a member
        that still exists (what a Rails app without the route answers)."""
        if self._no_hard_delete:
            return False
        try:
            await self.client.delete_user(user_id)
            return True
        except NotSupported:
            pass
        except NotFound:
            try:
                await self.client.get_user(user_id)
            except NotFound:
                return True
        self._no_hard_delete = True
        return False

    async def remove_user(self, user: UserRecord) -> None:
        """Delete it; a team member this Modyo cannot delete is deactivated and renamed."""
        renamed = f"{PREFIX}-leftover-{self.suffix}"
        try:
            with deadline_in(PROBE_DEADLINE_SECONDS):
                if await self._deleted(user.id):
                    return
                await self.client.update_user(
                    user.id,
                    {UserField.ACTIVE: False, UserField.USER_NAME: renamed,
                     UserField.EMAIL: f"{renamed}@example.com",
                     UserField.GIVEN_NAME: "scim-bridge check", UserField.FAMILY_NAME: "leftover"},
                )  # fmt: skip
        except (UpstreamError, httpx.HTTPError) as exc:
            self.leftovers.append(f"team member {user.id} ({user.user_name}), not removed: {exc}")
            return
        self.leftovers.append(
            f"team member {user.id}, deactivated and renamed {renamed} (this Modyo cannot "
            "delete team members): delete it in Modyo's console if you can"
        )


REST_PROBES: list[Probe[RestProbes]] = [
    Probe("token accepted (GET /api/admin/profile)", RestProbes._profile,
          "the API token is valid and its owner active", essential=True),
    Probe("list team members (GET /team_members)", RestProbes._list_users,
          "this Modyo offers the REST API, with the listing envelope and paging that "
          "GET /Users uses", essential=True),
    Probe("team member filter honoured (?username=)", RestProbes._user_filter,
          "userName lookups search instead of scanning every member"),
    Probe("team member by id (GET /team_members/:id)", RestProbes._user_by_id,
          "reads by id (GET /Users/{id})"),
    Probe("team members carry group_ids (?ids[]=)", RestProbes._memberships,
          "membership lookups whose cost does not grow with the group"),
    Probe("list groups (GET /groups)", RestProbes._list_groups, "GET /Groups"),
    Probe("group filter honoured (?name=)", RestProbes._group_filter,
          "displayName lookups search instead of scanning every group"),
    Probe("group members (GET /groups/:id/team_members)", RestProbes._group_members,
          "a group's members can be read"),
    Probe("create team member (POST /team_members)", RestProbes._create_user,
          "creates (POST /Users)", writes=True),
    Probe("duplicate team member refused as taken (POST /team_members)",
          RestProbes._duplicate_user, "a repeated create is answered 409 uniqueness",
          writes=True),
    Probe("update team member (PUT /team_members/:id)", RestProbes._update_user,
          "updates (PATCH and PUT /Users, deactivation included)", writes=True),
    Probe("create group (POST /groups)", RestProbes._create_group, "creates (POST /Groups)",
          writes=True),
    Probe("add group member (POST /groups/:id/team_members)", RestProbes._add_member,
          "members can be added", writes=True),
    Probe("remove group member (DELETE /groups/:id/team_members/:id)",
          RestProbes._remove_member, "members can be removed", writes=True),
    Probe("delete group (DELETE /groups/:id)", RestProbes._delete_group,
          "group deletes (DELETE /Groups/{id})", writes=True),
    Probe("hard delete team member (DELETE /team_members/:id)", RestProbes._delete_user,
          "Entra's user Delete action (DELETE /Users/{id}); a warning when missing",
          writes=True),
    Probe("answer shapes seen", RestProbes._shapes,
          "which of Modyo's documented answer shapes this Modyo uses (ids, statuses, "
          "error envelope); all are handled"),
]  # fmt: skip
