"""``scim-bridge check``: does this Modyo answer the contract the bridge assumes?

Every probe goes through :class:`RestUpstream` (so the same code paths, envelopes and shape
checks as in production) and reports one line. Read-only by default; ``--write`` creates,
changes and deletes a throw-away team member and group to prove the write endpoints.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from bridge.config import Settings
from bridge.deadline import deadline_in
from bridge.modyo.http import ModyoHttp
from bridge.modyo.rest import RestUpstream
from bridge.modyo.retry import RetryPolicy
from bridge.upstream import GroupField, NotFound, UpstreamError, UserField

PROBE_DEADLINE_SECONDS = 30.0
UNUSED_ID = "999999999999"  # a valid id no account reaches: DELETE on it deletes nothing


@dataclass(frozen=True, slots=True)
class Result:
    check: str
    ok: bool
    detail: str


class ContractProbe:
    def __init__(self, client: RestUpstream) -> None:
        self.client = client
        self.results: list[Result] = []
        self._suffix = secrets.token_hex(6)

    async def run(self, write: bool) -> list[Result]:
        await self._probe("token accepted (GET /api/admin/profile)", self._profile)
        if not self.results[-1].ok:
            return self.results  # nothing else can work without a valid token
        await self._probe("list team members (GET /team_members)", self._list_users)
        await self._probe("team member filter honoured (?username=)", self._user_filter)
        await self._probe("team member by id (GET /team_members/:id)", self._user_by_id)
        await self._probe("team members carry group_ids (?ids[]=)", self._memberships)
        await self._probe("list groups (GET /groups)", self._list_groups)
        await self._probe("group filter honoured (?name=)", self._group_filter)
        await self._probe("group members (GET /groups/:id/team_members)", self._group_members)
        await self._probe(
            "team member hard delete route (DELETE /team_members/:id)", self._delete_route
        )
        if write:
            await self._probe("write cycle (create, update, members, delete)", self._write_cycle)
        return self.results

    async def _probe(self, name: str, probe: Callable[[], Awaitable[str]]) -> None:
        try:
            with deadline_in(PROBE_DEADLINE_SECONDS):
                detail = await probe()
            self.results.append(Result(name, True, detail))
        except (UpstreamError, AssertionError) as exc:
            self.results.append(Result(name, False, str(exc) or type(exc).__name__))
        except httpx.HTTPError as exc:
            self.results.append(Result(name, False, f"{type(exc).__name__}: {exc}"))

    async def _profile(self) -> str:
        profile = await self.client.profile()
        return (
            f"token owner: {profile.get('username') or profile.get('email') or profile.get('id')}"
        )

    async def _list_users(self) -> str:
        page = await self.client.list_users(0, 1)
        return f"{page.total} team member(s)"

    async def _user_filter(self) -> str:
        found = await self.client.search_users(
            UserField.USER_NAME, f"scim-bridge-check-{self._suffix}"
        )
        assert not found, (
            f"a search for a non-existent username returned {len(found)} team member(s): "
            "the filter is ignored, every userName lookup would scan all members"
        )
        return "no match for a random username, as expected"

    async def _user_by_id(self) -> str:
        page = await self.client.list_users(0, 1)
        if not page.items:
            return "skipped: the account has no team member yet"
        user = await self.client.get_user(page.items[0].id)
        return f"read team member {user.id}"

    async def _memberships(self) -> str:
        page = await self.client.list_users(0, 1)
        if not page.items:
            return "skipped: the account has no team member yet"
        groups = await self.client.memberships([page.items[0].id])
        assert page.items[0].id in groups, "a lookup by ids[] did not return the team member"
        return f"team member {page.items[0].id} is in {len(groups[page.items[0].id])} group(s)"

    async def _list_groups(self) -> str:
        page = await self.client.list_groups(0, 1)
        return f"{page.total} group(s)"

    async def _group_filter(self) -> str:
        found = await self.client.search_groups(
            GroupField.DISPLAY_NAME, f"scim-bridge-check-{self._suffix}"
        )
        assert not found, (
            f"a search for a non-existent group name returned {len(found)} group(s): "
            "the filter is ignored"
        )
        return "no match for a random name, as expected"

    async def _group_members(self) -> str:
        page = await self.client.list_groups(0, 1)
        if not page.items:
            return "skipped: the account has no group yet"
        members = await self.client.list_members(page.items[0].id)
        return f"group {page.items[0].id} has {len(members)} member(s)"

    async def _delete_route(self) -> str:
        """Read-only, a 405 proves the route is missing; a 404 is only consistent with it
        (a Rails app without the route answers 404 too): ``--write`` proves it."""
        try:
            await self.client.delete_user(UNUSED_ID)
        except NotFound:
            return "404 for an unknown id, consistent with the route (--write proves it)"
        raise AssertionError(f"DELETE /team_members/{UNUSED_ID} did not answer 404")

    async def _write_cycle(self) -> str:
        name = f"scim-bridge-check-{self._suffix}"
        user = await self.client.create_user(
            {UserField.USER_NAME: name, UserField.EMAIL: f"{name}@example.com",
             UserField.GIVEN_NAME: "Check", UserField.ACTIVE: False}
        )  # fmt: skip
        try:
            updated = await self.client.update_user(user.id, {UserField.FAMILY_NAME: "Probe"})
            assert updated.family_name == "Probe", "PUT /team_members/:id did not update last_name"
            group = await self.client.create_group({GroupField.DISPLAY_NAME: name})
            try:
                await self.client.add_members(group.id, [user.id])
                listed = {member.id for member in await self.client.list_members(group.id)}
                assert user.id in listed, "the added member is not listed in the group"
                await self.client.remove_members(group.id, [user.id])
                listed = {member.id for member in await self.client.list_members(group.id)}
                assert user.id not in listed, "the removed member is still listed"
            finally:
                await self.client.delete_group(group.id)
        finally:
            await self.client.delete_user(user.id)
        try:
            await self.client.get_user(user.id)
        except NotFound:
            return "created, updated, grouped, ungrouped and deleted a throw-away member"
        raise AssertionError("the deleted team member can still be read")


async def run_check(
    settings: Settings, *, write: bool = False, transport: httpx.AsyncBaseTransport | None = None
) -> int:
    """Probe, print a table, and return the exit status (0 when everything matches)."""
    client = RestUpstream(ModyoHttp(settings.modyo, RetryPolicy(settings.retry), transport))
    async with client.connected():
        results = await ContractProbe(client).run(write)
    _print_table(results, str(settings.modyo.base_url))
    return 0 if all(result.ok for result in results) else 1


def _print_table(results: list[Result], base_url: str) -> None:
    width = max(len(result.check) for result in results)
    print(f"Modyo at {base_url}")
    print(f"{'CHECK'.ljust(width)}  RESULT  DETAIL")
    for result in results:
        print(f"{result.check.ljust(width)}  {'ok' if result.ok else 'FAIL':6}  {result.detail}")
    failed = sum(not result.ok for result in results)
    print(
        "all checks passed"
        if not failed
        else f"{failed} check(s) failed: see docs/modyo-contract.md"
    )
