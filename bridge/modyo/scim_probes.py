"""The probes of Modyo's own SCIM server at ``/api/admin/scim`` (``scim-bridge check``,
docs/modyo-contract.md §9): read-only ones, and those only ``--write`` runs with a
throw-away user and group, always removed again (the user by the bridge's deactivation,
as Modyo's SCIM DELETE does not work [SCIM L100-L102])."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import httpx

from bridge.deadline import deadline_in
from bridge.modyo.probes import PREFIX, PROBE_DEADLINE_SECONDS, Outcome, Probe, ok, skip
from bridge.modyo.scim import ScimUpstream
from bridge.upstream import (
    Conflict,
    GroupField,
    GroupRecord,
    NotFound,
    UpstreamError,
    UpstreamHealth,
    UserField,
    UserRecord,
)


@dataclass
class ScimProbes:
    """The probes of Modyo's SCIM server, and what a ``--write`` run left behind."""

    client: ScimUpstream
    suffix: str = field(default_factory=lambda: secrets.token_hex(6))
    leftovers: list[str] = field(default_factory=list)
    _user: UserRecord | None = None
    _group: GroupRecord | None = None
    _user_deleted: bool = False
    _group_deleted: bool = False

    @property
    def name(self) -> str:
        return f"{PREFIX}-{self.suffix}"

    # ------------------------------------------------------------------ read-only

    async def _token(self) -> Outcome:
        health = await self.client.health()
        assert health is not UpstreamHealth.TOKEN_REJECTED, "Modyo rejected the API token"
        assert health is UpstreamHealth.UP, "Modyo did not answer GET /api/admin/profile"
        return ok("the token is valid")

    async def _list_users(self) -> Outcome:
        page = await self.client.list_users(0, 1)
        return ok(f"{page.total} user(s)")

    async def _user_filter(self) -> Outcome:
        found = await self.client.search_users(UserField.USER_NAME, self.name)
        assert not found, (
            f"a search for a non-existent userName returned {len(found)} user(s): the "
            "filter is ignored, and Entra would match the wrong user"
        )
        return ok("no match for a random userName, as expected")

    async def _user_by_id(self) -> Outcome:
        page = await self.client.list_users(0, 1)
        if not page.items:
            return skip("the account has no user yet (--write creates one)")
        return ok(f"read user {(await self.client.get_user(page.items[0].id)).id}")

    async def _list_groups(self) -> Outcome:
        page = await self.client.list_groups(0, 1)
        return ok(f"{page.total} group(s); group queries read this listing (Modyo has no filter)")

    async def _group_by_id(self) -> Outcome:
        page = await self.client.list_groups(0, 1)
        if not page.items:
            return skip("the account has no group yet (--write creates one)")
        return ok(f"read group {(await self.client.get_group(page.items[0].id)).id}")

    # ------------------------------------------------------------------ writes (--write)

    async def _create_user(self) -> Outcome:
        self._user = await self.client.create_user(
            {UserField.USER_NAME: self.name, UserField.EMAIL: f"{self.name}@example.com",
             UserField.GIVEN_NAME: "Check", UserField.ACTIVE: False}
        )  # fmt: skip
        return ok(f"created user {self._user.id} ({self.name}, inactive)")

    async def _duplicate_user(self) -> Outcome:
        if self._user is None:
            return skip("needs the user created above")
        try:
            await self.client.create_user(
                {UserField.USER_NAME: self.name, UserField.EMAIL: f"{self.name}@example.com"}
            )
        except Conflict as conflict:
            return ok(f"refused as a uniqueness failure ({conflict.detail})")
        raise AssertionError("a second create of the same userName was not refused")

    async def _update_user(self) -> Outcome:
        if self._user is None:
            return skip("needs the user created above")
        updated = await self.client.update_user(self._user.id, {UserField.FAMILY_NAME: "Probe"})
        assert updated.family_name == "Probe", "PATCH /Users/:id did not change name.familyName"
        return ok("changed name.familyName")

    async def _create_group(self) -> Outcome:
        self._group = await self.client.create_group({GroupField.DISPLAY_NAME: self.name})
        return ok(f"created group {self._group.id} ({self.name})")

    async def _add_member(self) -> Outcome:
        if self._user is None or self._group is None:
            return skip("needs the user and group created above")
        await self.client.add_members(self._group.id, [self._user.id])
        listed = {member.id for member in await self.client.list_members(self._group.id)}
        assert self._user.id in listed, "the added member is not listed in the group"
        groups = await self.client.memberships([self._user.id])
        assert self._group.id in groups.get(self._user.id, frozenset()), (
            "the user does not list the group in its 'groups': member removals and membership "
            "checks rely on it (docs/modyo-contract.md §9, SA5)"
        )
        return ok("listed in the group, and the user lists the group")

    async def _remove_member(self) -> Outcome:
        if self._user is None or self._group is None:
            return skip("needs the user and group created above")
        await self.client.remove_members(self._group.id, [self._user.id])
        listed = {member.id for member in await self.client.list_members(self._group.id)}
        assert self._user.id not in listed, "the removed member is still listed"
        return ok("no longer listed")

    async def _delete_group(self) -> Outcome:
        if self._group is None:
            return skip("needs the group created above")
        await self.client.delete_group(self._group.id)
        self._group_deleted = True
        try:
            await self.client.get_group(self._group.id)
        except NotFound:
            return ok("deleted; it reads 404 afterwards")
        raise AssertionError("the deleted group can still be read")

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

    async def clean_up(self) -> None:
        """Remove whatever a ``--write`` run created and still exists, whatever failed."""
        for kind, record, done, remove in (
            ("group", self._group, self._group_deleted, self.client.delete_group),
            ("user", self._user, self._user_deleted, self.client.delete_user),
        ):
            if record is None or done:
                continue
            try:
                with deadline_in(PROBE_DEADLINE_SECONDS):
                    await remove(record.id)
            except NotFound:
                continue
            except (UpstreamError, httpx.HTTPError) as exc:
                self.leftovers.append(f"{kind} {record.id} ({self.name}), not removed: {exc}")
                continue
            if kind == "user":
                self.leftovers.append(
                    f"user {record.id} stays in Modyo, deactivated and marked deleted"
                )


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
