"""What a ``scim-bridge check`` probe is: one line of one kind, ``ok``, ``warn`` (works, with
a consequence to act on), ``skip`` (not probed, and why) or ``FAIL`` (provisioning would
break), run against one upstream's probe set."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Generic, TypeVar

import httpx

from bridge.deadline import deadline_in
from bridge.upstream import (
    Conflict,
    GroupField,
    GroupRecord,
    NotFound,
    Upstream,
    UpstreamError,
    UserField,
    UserRecord,
)

PROBE_DEADLINE_SECONDS = 30.0
PREFIX = "scim-bridge-check"


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
    essential: bool = False


Verdict = tuple[Kind, str]
"""What one probe found: its kind and the line's detail."""
S = TypeVar("S")
U = TypeVar("U", bound=Upstream)


class ProbeFailed(Exception):
    """What a probe saw contradicts the contract the bridge assumes (a ``FAIL`` line). Raised
    explicitly, never through ``assert``: ``python -O`` strips asserts, and every probe would
    then pass."""


def expect(condition: bool, failure: str) -> None:
    """Fail the probe with ``failure`` unless ``condition`` holds."""
    if not condition:
        raise ProbeFailed(failure)


def ok(detail: str) -> Verdict:
    return Kind.OK, detail


def warn(detail: str) -> Verdict:
    return Kind.WARN, detail


def skip(detail: str) -> Verdict:
    return Kind.SKIP, detail


@dataclass(frozen=True, slots=True)
class Probe(Generic[S]):
    """One line of a check: ``run`` takes the upstream's probe set (its client and state)."""

    name: str
    run: Callable[[S], Awaitable[Verdict]]
    proves: str
    """What the bridge relies on that this probe shows (``check --help``)."""
    writes: bool = False
    """Only ``--write`` runs it (it creates, changes or deletes)."""
    essential: bool = False
    """When it fails, the later probes cannot tell anything (the token)."""


async def run_probes(
    target: S,
    probes: Sequence[Probe[S]],
    *,
    write: bool,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """One result per probe, in order, each also handed to ``on_result`` as it completes; a
    probe raising an upstream error (or :class:`ProbeFailed`) fails, and after an essential
    failure the others are skipped."""
    results: list[Result] = []
    blocked: str | None = None
    for probe in probes:
        if blocked is not None:
            verdict = skip(f"needs {blocked}")
        elif probe.writes and not write:
            verdict = skip("only --write proves it (it writes a throw-away object)")
        else:
            verdict = await _run(probe, target)
        results.append(Result(probe.name, *verdict, essential=probe.essential))
        if on_result is not None:
            on_result(results[-1])
        if verdict[0] is Kind.FAIL and probe.essential:
            blocked = probe.name
    return results


async def _run(probe: Probe[S], target: S) -> Verdict:
    try:
        with deadline_in(PROBE_DEADLINE_SECONDS):
            return await probe.run(target)
    except (UpstreamError, ProbeFailed) as exc:
        return Kind.FAIL, str(exc) or type(exc).__name__
    except httpx.HTTPError as exc:
        return Kind.FAIL, f"{type(exc).__name__}: {exc}"


@dataclass
class UpstreamProbes(Generic[U]):
    """The probes every Modyo interface shares, through the upstream interface itself: the
    listings, a userName search, reads by id and a ``--write`` cycle with a throw-away user
    and group (what it left behind is listed). ``noun`` is what the interface calls a user."""

    client: U
    suffix: str = field(default_factory=lambda: secrets.token_hex(6))
    leftovers: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    """What :meth:`clean_up` removed (said when ``check`` is interrupted)."""
    _user: UserRecord | None = None
    _group: GroupRecord | None = None
    _user_deleted: bool = False
    _group_deleted: bool = False
    noun: ClassVar[str] = "user"

    @property
    def name(self) -> str:
        return f"{PREFIX}-{self.suffix}"

    # ------------------------------------------------------------------ read-only

    async def _list_users(self) -> Verdict:
        page = await self.client.list_users(0, 1)
        return ok(f"{page.total} {self.noun}(s)")

    async def _user_filter(self) -> Verdict:
        found = await self.client.search_users(UserField.USER_NAME, self.name)
        expect(
            not found,
            f"a search for a non-existent userName returned {len(found)} {self.noun}(s): the "
            "filter is ignored, and Entra would match the wrong user or scan every one",
        )
        return ok("no match for a random userName, as expected")

    async def _user_by_id(self) -> Verdict:
        page = await self.client.list_users(0, 1)
        if not page.items:
            return skip(f"the account has no {self.noun} yet (--write creates one)")
        return ok(f"read {self.noun} {(await self.client.get_user(page.items[0].id)).id}")

    async def _list_groups(self) -> Verdict:
        page = await self.client.list_groups(0, 1)
        return ok(f"{page.total} group(s)")

    # ------------------------------------------------------------------ writes (--write)

    async def _create_user(self) -> Verdict:
        self._user = await self.client.create_user(
            {UserField.USER_NAME: self.name, UserField.EMAIL: f"{self.name}@example.com",
             UserField.GIVEN_NAME: "Check", UserField.ACTIVE: False}
        )  # fmt: skip
        return ok(f"created {self.noun} {self._user.id} ({self.name}, inactive)")

    async def _duplicate_user(self) -> Verdict:
        if self._user is None:
            return skip(f"needs the {self.noun} created above")
        try:
            await self.client.create_user(
                {UserField.USER_NAME: self.name, UserField.EMAIL: f"{self.name}@example.com"}
            )
        except Conflict as conflict:
            return ok(f"recognised as a uniqueness failure ({conflict.detail})")
        raise ProbeFailed(
            "a second create of the same userName was not refused as taken: Entra's repeated "
            "creates would not get 409"
        )

    async def _update_user(self) -> Verdict:
        if self._user is None:
            return skip(f"needs the {self.noun} created above")
        updated = await self.client.update_user(self._user.id, {UserField.FAMILY_NAME: "Probe"})
        expect(updated.family_name == "Probe", f"the {self.noun}'s family name did not change")
        return ok("changed the family name")

    async def _create_group(self) -> Verdict:
        self._group = await self.client.create_group({GroupField.DISPLAY_NAME: self.name})
        return ok(f"created group {self._group.id} ({self.name})")

    async def _add_member(self) -> Verdict:
        if self._user is None or self._group is None:
            return skip(f"needs the {self.noun} and group created above")
        await self.client.add_members(self._group.id, [self._user.id])
        listed = {member.id for member in await self.client.list_members(self._group.id)}
        expect(self._user.id in listed, "the added member is not listed in the group")
        return ok("the member is listed in the group")

    async def _remove_member(self) -> Verdict:
        if self._user is None or self._group is None:
            return skip(f"needs the {self.noun} and group created above")
        await self.client.remove_members(self._group.id, [self._user.id])
        listed = {member.id for member in await self.client.list_members(self._group.id)}
        expect(self._user.id not in listed, "the removed member is still listed")
        return ok("the member is no longer listed")

    async def _delete_group(self) -> Verdict:
        if self._group is None:
            return skip("needs the group created above")
        await self.client.delete_group(self._group.id)
        self._group_deleted = True
        try:
            await self.client.get_group(self._group.id)
        except NotFound:
            return ok("deleted; it reads 404 afterwards")
        raise ProbeFailed("the deleted group can still be read")

    # ------------------------------------------------------------------ clean-up

    async def clean_up(self) -> None:
        """Remove whatever a ``--write`` run created and still exists, whatever failed."""
        if self._group is not None and not self._group_deleted:
            try:
                with deadline_in(PROBE_DEADLINE_SECONDS):
                    await self.client.delete_group(self._group.id)
                self.removed.append(f"deleted group {self._group.id} ({self._group.display_name})")
            except NotFound:
                pass
            except (UpstreamError, httpx.HTTPError) as exc:
                self.leftovers.append(
                    f"group {self._group.id} ({self._group.display_name}), not deleted: {exc}"
                )
        if self._user is not None and not self._user_deleted:
            await self.remove_user(self._user)

    async def remove_user(self, user: UserRecord) -> None:
        """The interface's way of removing the throw-away user."""
        raise NotImplementedError
