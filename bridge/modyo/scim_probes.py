"""The probes of Modyo's own SCIM server at ``/api/admin/scim`` (``scim-bridge check``,
docs/design/modyo-contract.md §9): read-only ones, and those only ``--write`` runs with a
throw-away user and group, always removed again (the user by the bridge's deactivation,
as Modyo's SCIM DELETE does not work [SCIM L100-L102])."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from bridge.deadline import deadline_in
from bridge.modyo.probes import PROBE_DEADLINE_SECONDS, Outcome, Probe, UpstreamProbes, ok, skip
from bridge.modyo.scim import ScimUpstream
from bridge.upstream import NotFound, UpstreamError, UpstreamHealth, UserRecord


@dataclass
class ScimProbes(UpstreamProbes[ScimUpstream]):
    """The probes of Modyo's SCIM server (the shared ones, and these)."""

    # ------------------------------------------------------------------ read-only

    async def _token(self) -> Outcome:
        health = await self.client.health()
        assert health is not UpstreamHealth.TOKEN_REJECTED, "Modyo rejected the API token"
        assert health is UpstreamHealth.UP, "Modyo did not answer GET /api/admin/profile"
        return ok("the token is valid")

    async def _list_groups(self) -> Outcome:
        listed = await super()._list_groups()
        return listed[0], f"{listed[1]}; group queries read this listing (Modyo has no filter)"

    async def _group_by_id(self) -> Outcome:
        page = await self.client.list_groups(0, 1)
        if not page.items:
            return skip("the account has no group yet (--write creates one)")
        return ok(f"read group {(await self.client.get_group(page.items[0].id)).id}")

    # ------------------------------------------------------------------ writes (--write)

    async def _add_member(self) -> Outcome:
        added = await super()._add_member()
        if self._user is None or self._group is None:
            return added
        groups = await self.client.memberships([self._user.id])
        assert self._group.id in groups.get(self._user.id, frozenset()), (
            "the user does not list the group in its 'groups': member removals and membership "
            "checks rely on it (docs/design/modyo-contract.md §9, SA5)"
        )
        return ok("listed in the group, and the user lists the group")

    async def _delete_user(self) -> Outcome:
        if self._user is None:
            return skip("needs the user created above")
        await self.client.delete_user(self._user.id)
        self._user_deleted = True
        self.leftovers.append(
            f"user {self._user.id} stays in Modyo, deactivated and marked deleted (Modyo's SCIM "
            "server cannot delete users): delete it in Modyo's console if you wish"
        )
        try:
            await self.client.get_user(self._user.id)
        except NotFound:
            return ok(
                "deactivated and marked deleted (Modyo's SCIM DELETE does not work); it reads "
                "404 afterwards, and its userName can be created again"
            )
        raise AssertionError("the deleted user can still be read")

    async def remove_user(self, user: UserRecord) -> None:
        """The bridge's deletion: deactivated and marked deleted (it stays in Modyo)."""
        try:
            with deadline_in(PROBE_DEADLINE_SECONDS):
                await self.client.delete_user(user.id)
        except NotFound:
            return
        except (UpstreamError, httpx.HTTPError) as exc:
            self.leftovers.append(f"user {user.id} ({user.user_name}), not removed: {exc}")
            return
        self.leftovers.append(f"user {user.id} stays in Modyo, deactivated and marked deleted")


SCIM_PROBES: list[Probe[ScimProbes]] = [
    Probe("token accepted (GET /api/admin/profile)", ScimProbes._token,
          "the API token is valid and its owner active", essential=True),
    Probe("SCIM users listed (GET /scim/Users)", ScimProbes._list_users,
          "this Modyo offers its SCIM server, and GET /Users pages", essential=True),
    Probe("userName filter honoured (filter=userName eq)", ScimProbes._user_filter,
          "Entra's user matching searches instead of scanning every user"),
    Probe("user by id (GET /scim/Users/:id)", ScimProbes._user_by_id,
          "reads by id (GET /Users/{id})"),
    Probe("SCIM groups listed (GET /scim/Groups)", ScimProbes._list_groups,
          "GET /Groups, and group queries (evaluated by the bridge over this listing)"),
    Probe("group by id (GET /scim/Groups/:id)", ScimProbes._group_by_id, "GET /Groups/{id}"),
    Probe("create user (POST /scim/Users)", ScimProbes._create_user, "creates (POST /Users)",
          writes=True),
    Probe("duplicate user refused (POST /scim/Users)", ScimProbes._duplicate_user,
          "a repeated create is answered 409 uniqueness", writes=True),
    Probe("update user (PATCH /scim/Users/:id)", ScimProbes._update_user,
          "updates (PATCH and PUT /Users)", writes=True),
    Probe("create group (POST /scim/Groups)", ScimProbes._create_group,
          "creates (POST /Groups)", writes=True),
    Probe("add group member (PATCH /scim/Groups/:id)", ScimProbes._add_member,
          "members can be added, and users list their groups", writes=True),
    Probe("remove group member (PATCH /scim/Groups/:id)", ScimProbes._remove_member,
          "members can be removed", writes=True),
    Probe("delete group (DELETE /scim/Groups/:id)", ScimProbes._delete_group,
          "group deletes (DELETE /Groups/{id})", writes=True),
    Probe("delete user as deactivation (PATCH /scim/Users/:id)", ScimProbes._delete_user,
          "Entra's user Delete action, as deactivation", writes=True),
]  # fmt: skip
