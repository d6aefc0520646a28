"""``scim-bridge check``: does this Modyo answer the contract the bridge assumes?

A check is a list of probes per upstream (here the REST one; Modyo's own SCIM endpoint would
bring its own list), each reporting one line of one kind: ``ok``, ``warn`` (works, with a
consequence to act on), ``skip`` (not probed, and why) or ``FAIL`` (provisioning would break).
Every probe goes through the upstream itself, so the same code paths, envelopes and shape
checks as in production.

By default nothing is written: the probes that only a write can prove are listed as ``skip``.
``--write`` creates a throw-away team member and group, changes them, and always removes them
at the end: a team member this Modyo cannot delete is deactivated and renamed instead, and
anything left behind is listed.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

import httpx

from bridge.config import ModyoSettings, RetrySettings, redact_url
from bridge.deadline import deadline_in
from bridge.modyo.http import ModyoHttp
from bridge.modyo.rest import RestUpstream
from bridge.modyo.retry import RetryPolicy
from bridge.upstream import (
    Conflict,
    GroupField,
    GroupRecord,
    NotFound,
    NotSupported,
    UpstreamError,
    UserField,
    UserRecord,
)

PROBE_DEADLINE_SECONDS = 30.0
PREFIX = "scim-bridge-check"
NO_HARD_DELETE = (
    "this Modyo cannot delete team members: in Entra, remove the Delete action from the user "
    "mapping (Provisioning > Mappings > Provision Microsoft Entra ID Users > Target Object "
    "Actions), or Entra's deletes, 30 days after a soft delete, fail; deactivation still works"
)


class Kind(StrEnum):
    OK = "ok"
    WARN = "warn"  # works, with a consequence to act on
    SKIP = "skip"  # not probed
    FAIL = "FAIL"  # provisioning would break


@dataclass(frozen=True, slots=True)
class Result:
    check: str
    kind: Kind
    detail: str


Outcome = tuple[Kind, str]
S = TypeVar("S")


def ok(detail: str) -> Outcome:
    return Kind.OK, detail


def warn(detail: str) -> Outcome:
    return Kind.WARN, detail


def skip(detail: str) -> Outcome:
    return Kind.SKIP, detail


@dataclass(frozen=True, slots=True)
class Probe(Generic[S]):
    """One line of a check: ``run`` takes the upstream's probe set (its client and state)."""

    name: str
    run: Callable[[S], Awaitable[Outcome]]
    proves: str
    """What the bridge relies on that this probe shows (``check --help``)."""
    writes: bool = False
    """Only ``--write`` runs it (it creates, changes or deletes)."""
    essential: bool = False
    """When it fails, the later probes cannot tell anything (the token)."""


async def run_probes(target: S, probes: Sequence[Probe[S]], *, write: bool) -> list[Result]:
    """One result per probe, in order; a probe raising an upstream error (or an assertion
    of the contract) fails, and after an essential failure the others are skipped."""
    results: list[Result] = []
    blocked: str | None = None
    for probe in probes:
        if blocked is not None:
            outcome = skip(f"needs {blocked}")
        elif probe.writes and not write:
            outcome = skip("only --write proves it (it writes a throw-away object)")
        else:
            outcome = await _run(probe, target)
        results.append(Result(probe.name, *outcome))
        if outcome[0] is Kind.FAIL and probe.essential:
            blocked = probe.name
    return results


async def _run(probe: Probe[S], target: S) -> Outcome:
    try:
        with deadline_in(PROBE_DEADLINE_SECONDS):
            return await probe.run(target)
    except (UpstreamError, AssertionError) as exc:
        return Kind.FAIL, str(exc) or type(exc).__name__
    except httpx.HTTPError as exc:
        return Kind.FAIL, f"{type(exc).__name__}: {exc}"


@dataclass
class RestProbes:
    """The probes of the Modyo REST upstream, and what a ``--write`` run left behind."""

    client: RestUpstream
    suffix: str = field(default_factory=lambda: secrets.token_hex(6))
    leftovers: list[str] = field(default_factory=list)
    _user: UserRecord | None = None
    _group: GroupRecord | None = None
    _user_deleted: bool = False
    _group_deleted: bool = False
    _no_hard_delete: bool = False

    @property
    def name(self) -> str:
        return f"{PREFIX}-{self.suffix}"

    # ------------------------------------------------------------------ read-only

    async def _profile(self) -> Outcome:
        profile = await self.client.profile()
        owner = profile.get("username") or profile.get("email") or profile.get("id")
        return ok(f"token owner: {owner}")

    async def _list_users(self) -> Outcome:
        page = await self.client.list_users(0, 1)
        return ok(f"{page.total} team member(s)")

    async def _user_filter(self) -> Outcome:
        found = await self.client.search_users(UserField.USER_NAME, self.name)
        assert not found, (
            f"a search for a non-existent username returned {len(found)} team member(s): "
            "the filter is ignored, every userName lookup would scan all members"
        )
        return ok("no match for a random username, as expected")

    async def _user_by_id(self) -> Outcome:
        page = await self.client.list_users(0, 1)
        if not page.items:
            return skip("the account has no team member yet (--write creates one)")
        user = await self.client.get_user(page.items[0].id)
        return ok(f"read team member {user.id}")

    async def _memberships(self) -> Outcome:
        page = await self.client.list_users(0, 1)
        if not page.items:
            return skip("the account has no team member yet (--write creates one)")
        user_id = page.items[0].id
        groups = await self.client.memberships([user_id])
        assert user_id in groups, "a lookup by ids[] did not return the team member"
        return ok(f"team member {user_id} is in {len(groups[user_id])} group(s)")

    async def _list_groups(self) -> Outcome:
        page = await self.client.list_groups(0, 1)
        return ok(f"{page.total} group(s)")

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

    # ------------------------------------------------------------------ writes (--write)

    async def _create_user(self) -> Outcome:
        self._user = await self.client.create_user(
            {UserField.USER_NAME: self.name, UserField.EMAIL: f"{self.name}@example.com",
             UserField.GIVEN_NAME: "Check", UserField.ACTIVE: False}
        )  # fmt: skip
        return ok(f"created team member {self._user.id} ({self.name}, inactive)")

    async def _duplicate_user(self) -> Outcome:
        if self._user is None:
            return skip("needs the team member created above")
        try:
            await self.client.create_user(
                {UserField.USER_NAME: self.name, UserField.EMAIL: f"{self.name}@example.com"}
            )
        except Conflict as conflict:
            return ok(f"recognised as a uniqueness failure ({conflict.detail})")
        raise AssertionError(
            "a second create of the same username was not refused as taken: Entra's "
            "repeated creates would not get 409"
        )

    async def _shapes(self) -> Outcome:
        seen = self.client.shapes
        parts = [
            f"ids {seen.ids or 'not seen (no team member listed)'}",
            f"creates {seen.create_status or 'not seen (--write)'}",
            f"deletes {seen.delete_status or 'not seen (--write)'}",
            f"error envelope {seen.errors or 'not seen (--write)'}",
        ]
        return ok("; ".join(parts) + ": each handled (docs C8, C13)")

    async def _update_user(self) -> Outcome:
        if self._user is None:
            return skip("needs the team member created above")
        updated = await self.client.update_user(self._user.id, {UserField.FAMILY_NAME: "Probe"})
        assert updated.family_name == "Probe", "PUT /team_members/:id did not update last_name"
        return ok("changed last_name")

    async def _create_group(self) -> Outcome:
        self._group = await self.client.create_group({GroupField.DISPLAY_NAME: self.name})
        return ok(f"created group {self._group.id} ({self.name})")

    async def _add_member(self) -> Outcome:
        if self._user is None or self._group is None:
            return skip("needs the team member and group created above")
        await self.client.add_members(self._group.id, [self._user.id])
        listed = {member.id for member in await self.client.list_members(self._group.id)}
        assert self._user.id in listed, "the added member is not listed in the group"
        return ok("the member is listed in the group")

    async def _remove_member(self) -> Outcome:
        if self._user is None or self._group is None:
            return skip("needs the team member and group created above")
        await self.client.remove_members(self._group.id, [self._user.id])
        listed = {member.id for member in await self.client.list_members(self._group.id)}
        assert self._user.id not in listed, "the removed member is still listed"
        return ok("the member is no longer listed")

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

    async def clean_up(self) -> None:
        """Remove whatever a ``--write`` run created and still exists, whatever failed; a team
        member that cannot be deleted is deactivated and renamed. What remains is listed."""
        if self._group is not None and not self._group_deleted:
            await self._remove_group(self._group)
        if self._user is not None and not self._user_deleted:
            await self._remove_user(self._user)

    async def _remove_group(self, group: GroupRecord) -> None:
        try:
            with deadline_in(PROBE_DEADLINE_SECONDS):
                await self.client.delete_group(group.id)
        except NotFound:
            pass
        except (UpstreamError, httpx.HTTPError) as exc:
            self.leftovers.append(f"group {group.id} ({group.display_name}), not deleted: {exc}")

    async def _remove_user(self, user: UserRecord) -> None:
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
          "the listing envelope and paging that GET /Users uses"),
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


def explain() -> str:
    """Every probe and what it proves (``scim-bridge check --explain``)."""
    lines = ["Modyo REST API (modyo.base_url); [--write]: proved only by check --write"]
    for probe in REST_PROBES:
        lines.append(f"  {probe.name}{' [--write]' if probe.writes else ''}")
        lines.append(f"      proves: {probe.proves}")
    lines.append(
        "Results: ok; warn (works, with a consequence to act on); skip (not probed, and why); "
        "FAIL (provisioning would break: exit status 1)."
    )
    return "\n".join(lines)


async def run_check(
    modyo: ModyoSettings,
    retry: RetrySettings,
    *,
    write: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """Probe, print a table, and return the exit status: 1 when a probe failed (provisioning
    would break), else 0 (warnings and skips included)."""
    client = RestUpstream(ModyoHttp(modyo, RetryPolicy(retry), transport))
    rest = RestProbes(client)
    async with client.connected():
        try:
            results = await run_probes(rest, REST_PROBES, write=write)
        finally:
            await rest.clean_up()
    title = f"Modyo REST API at {modyo.base_url}"
    if modyo.proxy_url is not None:
        title += f" (through {redact_url(modyo.proxy_url.get_secret_value())})"
    _print_table(title, results, rest.leftovers)
    return 1 if any(result.kind is Kind.FAIL for result in results) else 0


def _print_table(title: str, results: list[Result], leftovers: list[str]) -> None:
    width = max(len(result.check) for result in results)
    print(title)
    print(f"{'CHECK'.ljust(width)}  RESULT  DETAIL")
    for result in results:
        print(f"{result.check.ljust(width)}  {result.kind.value:6}  {result.detail}")
    for leftover in leftovers:
        print(f"left behind: {leftover}")
    counts = {kind: sum(result.kind is kind for result in results) for kind in Kind}
    if counts[Kind.FAIL]:
        print(
            f"{counts[Kind.FAIL]} check(s) failed: provisioning would not work as is. Each line "
            "says what broke; `scim-bridge check --explain` says what each check proves."
        )
    elif counts[Kind.WARN]:
        print(f"provisioning works, with {counts[Kind.WARN]} warning(s) to act on (above)")
    else:
        print(
            "all checks passed" + (f" ({counts[Kind.SKIP]} skipped)" if counts[Kind.SKIP] else "")
        )
