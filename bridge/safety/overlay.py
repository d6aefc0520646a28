"""A dry run (``modyo.dry_run``): an :class:`~bridge.upstream.Upstream` whose reads go to
Modyo and whose writes never do. Each write is checked as Modyo would check it (the object
exists, a userName, email or displayName is not taken, ignoring case), then planned
(``bridge.safety.plan``) and answered as if applied; every later read sees Modyo's answer with
the plan laid over it, so Entra's follow-up requests find what it was told it made
(docs/operator/first-cycle.md, "How a dry run answers").

- Planned objects get ids starting :data:`PLANNED_PREFIX`, which Modyo never issues.
- Listings are Modyo's, less the objects the plan deleted, then the objects it created, in
  creation order; ``total`` counts the same. While the plan deletes Modyo objects, a window
  is cut from the whole listing (up to ``scim.max_filter_scan`` objects; beyond it, from
  Modyo's window less the deleted, which may then be short).
- Memberships: Modyo's, less the members the plan removed and the objects it deleted, plus
  the members it added.
- Values are checked as far as both Modyo interfaces require (a userName and an email; a
  displayName); a value Modyo's own validation would refuse (a character its username
  alphabet lacks) is planned, and refused only when the change is applied.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final, Literal, TypeVar

from bridge.safety.calls import WriteCalls, calls_for, note
from bridge.safety.plan import Entry, Plan, PlanLog, group_entry, user_entry
from bridge.upstream import (
    Conflict,
    GroupChanges,
    GroupField,
    GroupRecord,
    MemberRecord,
    NotFound,
    Page,
    Rejected,
    TooMany,
    Unavailable,
    UnknownMembers,
    Upstream,
    UpstreamHealth,
    UserChanges,
    UserField,
    UserRecord,
)

log = logging.getLogger("bridge.safety")
R = TypeVar("R")
PLANNED_PREFIX: Final = "dryrun-"
"""Starts every planned object's id: a path-safe token Modyo never issues (integers and
UUIDs), so a planned id never reaches Modyo."""
FULL_RETRY_AFTER_SECONDS: Final = 2400.0
"""Retry-After when the plan is full: it does not empty by itself, so no sooner than
Entra's next incremental cycle (about 40 minutes)."""
SCIM_NAMES: Final = {
    UserField.USER_NAME: "userName",
    UserField.EMAIL: "email",
    UserField.EXTERNAL_ID: "externalId",
    GroupField.DISPLAY_NAME: "displayName",
}


@dataclass(frozen=True, slots=True)
class Rules:
    """How one Modyo interface stores what it is given (docs/design/modyo-contract.md)."""

    derives_formatted_name: bool
    """The REST API fills a team member's ``name`` from its first and last names when it is
    not given, and keeps a derived name following them."""
    fixed_external_id: bool
    """Modyo's SCIM server sets ``externalId`` on create only: a change is refused."""
    member_display: Literal["name", "user_name"]
    """What a group's member listing shows: the member's name (else username), or its
    userName."""


RULES: Final = {
    "rest": Rules(derives_formatted_name=True, fixed_external_id=False, member_display="name"),
    "scim": Rules(derives_formatted_name=False, fixed_external_id=True, member_display="user_name"),
}


def _planned(object_id: str) -> bool:
    return object_id.startswith(PLANNED_PREFIX)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _full_name(given: str | None, family: str | None) -> str | None:
    return " ".join(part for part in (given, family) if part) or None


class DryRunUpstream:
    """:class:`~bridge.upstream.Upstream` over ``inner``: its reads, with the plan laid over
    them; no write of ``inner`` is ever called."""

    def __init__(
        self,
        inner: Upstream,
        plan_log: PlanLog,
        *,
        api: str,
        calls: WriteCalls,
        max_changes: int,
        max_scan: int,
        new_id: Callable[[], str] = lambda: PLANNED_PREFIX + uuid.uuid4().hex,
        now: Callable[[], str] = _now,
    ) -> None:
        self.holds = inner.holds
        self._inner = inner
        self._log = plan_log
        self._rules = RULES.get(api, RULES["rest"])
        self._calls = calls
        self._max_changes = max_changes
        self._max_scan = max_scan
        self._new_id = new_id
        self._now = now
        self._plan = Plan()
        self._reading = asyncio.Lock()

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        async with self._inner.connected():
            log.warning(
                "DRY RUN: reads go to Modyo, no write does; writes are planned and answered "
                "as if applied (modyo.dry_run; docs/operator/first-cycle.md)",
                extra={"dry_run": True},
            )
            yield

    async def health(self) -> UpstreamHealth:
        return await self._inner.health()

    async def summary(self) -> dict[str, int]:
        """The changes planned so far, by kind (``users created``...): for the status report
        and the console."""
        return dict(sorted((await self._state()).counts.items()))

    async def entries(self) -> list[Entry]:
        """Every planned change, in order (what ``bridge.safety.report`` names)."""
        return await self._log.since(0)

    # ------------------------------------------------------------------ users

    async def get_user(self, user_id: str) -> UserRecord:
        plan = await self._state()
        record = await self._user(plan, user_id)
        return replace(record, group_ids=plan.groups_of(record.id, record.group_ids))

    async def search_users(self, field: UserField, value: str) -> list[UserRecord]:
        plan = await self._state()
        found: dict[str, UserRecord] = {}
        for record in await self._inner.search_users(field, value):
            if not plan.user_gone(record.id):
                found[record.id] = self._laid_over(plan, record)
        wanted = value.lower()
        for user_id, record in plan.users.items():
            held = getattr(record, field.value)
            if user_id not in found and isinstance(held, str) and held.lower() == wanted:
                found[user_id] = self._from_plan(plan, record)
        return list(found.values())

    async def scan_users(self, limit: int) -> list[UserRecord]:
        plan = await self._state()
        deleted = len(plan.deleted_users)
        created = [plan.users[user_id] for user_id in plan.created_users]
        try:
            rows = await self._inner.scan_users(limit + deleted)
        except TooMany as too_many:
            raise TooMany(max(too_many.total - deleted, 0) + len(created), limit) from None
        users = [self._laid_over(plan, row) for row in rows if not plan.user_gone(row.id)]
        users += [self._from_plan(plan, record) for record in created]
        if len(users) > limit:
            raise TooMany(len(users), limit)
        return users

    async def list_users(self, offset: int, count: int) -> Page[UserRecord]:
        plan = await self._state()
        if plan.deleted_users:
            try:
                everyone = await self.scan_users(self._max_scan)
            except TooMany:
                pass  # too many to cut exactly: Modyo's window, less the deleted
            else:
                return Page(len(everyone), everyone[offset : offset + count])
        page = await self._inner.list_users(offset, count)
        items = [self._laid_over(plan, row) for row in page.items if not plan.user_gone(row.id)]
        created = [self._from_plan(plan, plan.users[user_id]) for user_id in plan.created_users]
        return _appended(page.total - len(plan.deleted_users), items, created, offset, count)

    async def create_user(self, values: UserChanges) -> UserRecord:
        plan = await self._state()
        user_name, email = values.get(UserField.USER_NAME), values.get(UserField.EMAIL)
        _require_text(UserField.USER_NAME, user_name)
        _require_text(UserField.EMAIL, email)
        await self._require_free_user(plan, UserField.USER_NAME, str(user_name), owner=None)
        await self._require_free_user(plan, UserField.EMAIL, str(email), owner=None)
        given, family = (
            _text(values.get(UserField.GIVEN_NAME)),
            _text(values.get(UserField.FAMILY_NAME)),
        )
        formatted = _text(values.get(UserField.FORMATTED_NAME))
        if formatted is None and self._rules.derives_formatted_name:
            formatted = _full_name(given, family)
        now = self._now()
        record = UserRecord(
            id=self._new_id(),
            user_name=str(user_name),
            email=str(email),
            given_name=given,
            family_name=family,
            formatted_name=formatted,
            external_id=_text(values.get(UserField.EXTERNAL_ID)),
            active=values.get(UserField.ACTIVE, True) is not False,
            created=now,
            last_modified=now,
        )
        entry = {"op": "user-create", "user": user_entry(record)}
        await self._write(entry, 1, calls_for(self._calls, "create_user"))
        return record

    async def update_user(self, user_id: str, changes: UserChanges) -> UserRecord:
        plan = await self._state()
        before = await self._user(plan, user_id)
        if (
            self._rules.fixed_external_id
            and UserField.EXTERNAL_ID in changes
            and _text(changes[UserField.EXTERNAL_ID]) != before.external_id
        ):
            raise Rejected(
                "this Modyo sets a User's externalId only when it is created and cannot "
                "change it (dry run)",
                field=UserField.EXTERNAL_ID,
            )
        after = self._changed_user(before, changes)
        _require_text(UserField.USER_NAME, after.user_name)
        _require_text(UserField.EMAIL, after.email)
        for field in (UserField.USER_NAME, UserField.EMAIL):
            if field in changes:
                await self._require_free_user(
                    plan, field, str(getattr(after, field.value)), user_id
                )
        changed = _attributes(before) != _attributes(after)
        after = replace(after, last_modified=self._now())
        entry = {"op": "user-update", "before": user_entry(before), "user": user_entry(after)}
        await self._write(entry, 1, calls_for(self._calls, "update_user", changed=changed))
        return replace(after, group_ids=plan.groups_of(user_id, after.group_ids))

    async def delete_user(self, user_id: str) -> None:
        plan = await self._state()
        record = await self._user(plan, user_id)
        groups = plan.groups_of(user_id, record.group_ids)
        calls = calls_for(self._calls, "delete_user", groups=len(groups))
        entry = {"op": "user-delete", "id": user_id, "name": record.user_name}
        await self._write(entry, 1, calls)

    # ------------------------------------------------------------------ groups

    async def get_group(self, group_id: str) -> GroupRecord:
        return await self._group(await self._state(), group_id)

    async def search_groups(self, field: GroupField, value: str) -> list[GroupRecord]:
        plan = await self._state()
        found: dict[str, GroupRecord] = {}
        for record in await self._inner.search_groups(field, value):
            if not plan.group_gone(record.id):
                found[record.id] = plan.groups.get(record.id, record)
        wanted = value.lower()
        for group_id, record in plan.groups.items():
            held = getattr(record, field.value)
            if group_id not in found and isinstance(held, str) and held.lower() == wanted:
                found[group_id] = record
        return list(found.values())

    async def scan_groups(self, limit: int) -> list[GroupRecord]:
        plan = await self._state()
        deleted = len(plan.deleted_groups)
        created = [plan.groups[group_id] for group_id in plan.created_groups]
        try:
            rows = await self._inner.scan_groups(limit + deleted)
        except TooMany as too_many:
            raise TooMany(max(too_many.total - deleted, 0) + len(created), limit) from None
        groups = [plan.groups.get(row.id, row) for row in rows if not plan.group_gone(row.id)]
        groups += created
        if len(groups) > limit:
            raise TooMany(len(groups), limit)
        return groups

    async def list_groups(self, offset: int, count: int) -> Page[GroupRecord]:
        plan = await self._state()
        if plan.deleted_groups:
            try:
                everyone = await self.scan_groups(self._max_scan)
            except TooMany:
                pass
            else:
                return Page(len(everyone), everyone[offset : offset + count])
        page = await self._inner.list_groups(offset, count)
        items = [plan.groups.get(r.id, r) for r in page.items if not plan.group_gone(r.id)]
        created = [plan.groups[group_id] for group_id in plan.created_groups]
        return _appended(page.total - len(plan.deleted_groups), items, created, offset, count)

    async def create_group(self, values: GroupChanges) -> GroupRecord:
        plan = await self._state()
        name = values.get(GroupField.DISPLAY_NAME)
        if not isinstance(name, str) or not name.strip():
            raise Rejected("a group needs a displayName", field=GroupField.DISPLAY_NAME)
        await self._require_free_group(plan, name, owner=None)
        now = self._now()
        record = GroupRecord(
            id=self._new_id(),
            display_name=name,
            external_id=_text(values.get(GroupField.EXTERNAL_ID)),
            created=now,
            last_modified=now,
        )
        entry = {"op": "group-create", "group": group_entry(record)}
        await self._write(entry, 1, calls_for(self._calls, "create_group"))
        return record

    async def update_group(self, group_id: str, changes: GroupChanges) -> GroupRecord:
        plan = await self._state()
        before = await self._group(plan, group_id)
        external_id = _text(changes.get(GroupField.EXTERNAL_ID, before.external_id))
        if self._rules.fixed_external_id and external_id != before.external_id:
            raise Rejected(
                "this Modyo sets a Group's externalId only when it is created and cannot "
                "change it (dry run)",
                field=GroupField.EXTERNAL_ID,
            )
        name = changes.get(GroupField.DISPLAY_NAME, before.display_name)
        if not isinstance(name, str) or not name.strip():
            raise Rejected("a group needs a displayName", field=GroupField.DISPLAY_NAME)
        if GroupField.DISPLAY_NAME in changes:
            await self._require_free_group(plan, name, owner=group_id)
        after = replace(
            before, display_name=name, external_id=external_id, last_modified=self._now()
        )
        entry = {"op": "group-update", "before": group_entry(before), "group": group_entry(after)}
        await self._write(entry, 1, calls_for(self._calls, "update_group"))
        return after

    async def delete_group(self, group_id: str) -> None:
        plan = await self._state()
        record = await self._group(plan, group_id)
        calls = calls_for(self._calls, "delete_group")
        entry = {"op": "group-delete", "id": group_id, "name": record.display_name}
        await self._write(entry, 1, calls)

    # ------------------------------------------------------------------ memberships

    async def list_members(self, group_id: str) -> list[MemberRecord]:
        plan = await self._state()
        await self._group(plan, group_id)
        listed = [] if group_id in plan.created_groups else await self._inner.list_members(group_id)
        removed = plan.removed.get(group_id, set())
        members: dict[str, MemberRecord] = {}
        for member in listed:
            if not plan.user_gone(member.id) and member.id not in removed:
                members[member.id] = member
        for user_id in plan.added.get(group_id, {}):
            members.setdefault(user_id, MemberRecord(user_id, None))
        for user_id in members.keys() & plan.users.keys():
            members[user_id] = MemberRecord(user_id, self._display(plan.users[user_id]))
        return list(members.values())

    async def memberships(self, user_ids: Iterable[str]) -> dict[str, frozenset[str]]:
        plan = await self._state()
        found: dict[str, frozenset[str]] = {}
        in_modyo: list[str] = []
        for user_id in set(user_ids):
            if user_id in plan.created_users:
                found[user_id] = plan.groups_of(user_id, ())
            elif not (plan.user_gone(user_id) or _planned(user_id)):
                in_modyo.append(user_id)
        if in_modyo:
            for user_id, groups in (await self._inner.memberships(in_modyo)).items():
                found[user_id] = plan.groups_of(user_id, groups)
        return found

    async def add_members(self, group_id: str, user_ids: Iterable[str]) -> None:
        plan = await self._state()
        await self._group(plan, group_id)
        wanted = sorted(set(user_ids))
        missing = set(wanted) - set(await self.memberships(wanted))
        if missing:
            raise UnknownMembers(missing)
        calls = calls_for(self._calls, "add_members", members=len(wanted))
        entry = {"op": "members", "group": group_id, "add": wanted, "remove": []}
        await self._write(entry, len(wanted), calls)

    async def remove_members(self, group_id: str, user_ids: Iterable[str]) -> None:
        plan = await self._state()
        await self._group(plan, group_id)
        gone = sorted(set(user_ids))
        calls = calls_for(self._calls, "remove_members", members=len(gone))
        entry = {"op": "members", "group": group_id, "add": [], "remove": gone}
        await self._write(entry, len(gone), calls)

    # ------------------------------------------------------------------ plumbing

    async def _state(self) -> Plan:
        """The plan, brought up to date with the entries other replicas added."""
        async with self._reading:
            self._plan.apply(await self._log.since(self._plan.position))
        return self._plan

    async def _write(self, entry: Entry, weight: int, calls: list[tuple[str, str]]) -> None:
        entry["at"] = self._now()
        if not await self._log.append(entry, weight, self._max_changes):
            raise Unavailable(
                f"dry run: the plan holds the most changes modyo.dry_run_max_changes allows "
                f"({self._max_changes}); nothing was planned. Read the plan, then restart the "
                "dry run or raise the setting",
                retry_after=FULL_RETRY_AFTER_SECONDS,
            )
        await self._state()
        note("planned", calls)

    async def _user(self, plan: Plan, user_id: str) -> UserRecord:
        """The user as the plan leaves it, its ``group_ids`` those Modyo shows."""
        if plan.user_gone(user_id):
            raise NotFound(f"no user {user_id!r} (deleted in the dry run)")
        if user_id in plan.created_users:
            return plan.users[user_id]
        if _planned(user_id):
            raise NotFound(f"no user {user_id!r}")
        record = await self._inner.get_user(user_id)
        return self._laid_over(plan, record, adjust=False)

    async def _group(self, plan: Plan, group_id: str) -> GroupRecord:
        if plan.group_gone(group_id):
            raise NotFound(f"no group {group_id!r} (deleted in the dry run)")
        if group_id in plan.groups:
            if group_id not in plan.created_groups:
                await self._inner.get_group(group_id)  # still in Modyo
            return plan.groups[group_id]
        if _planned(group_id):
            raise NotFound(f"no group {group_id!r}")
        return await self._inner.get_group(group_id)

    def _laid_over(self, plan: Plan, record: UserRecord, adjust: bool = True) -> UserRecord:
        """A Modyo user with the plan's values; its groups adjusted by the plan (``adjust``)
        or as Modyo shows them."""
        planned = plan.users.get(record.id, record)
        groups = plan.groups_of(record.id, record.group_ids) if adjust else record.group_ids
        return replace(planned, group_ids=groups)

    def _from_plan(self, plan: Plan, record: UserRecord) -> UserRecord:
        return replace(record, group_ids=plan.groups_of(record.id, record.group_ids))

    def _changed_user(self, before: UserRecord, changes: UserChanges) -> UserRecord:
        values = {field.value: getattr(before, field.value) for field in UserField}
        for field, value in changes.items():
            values[field.value] = bool(value) if field is UserField.ACTIVE else _text(value)
        if self._rules.derives_formatted_name:
            name_field, parts = (
                UserField.FORMATTED_NAME,
                (UserField.GIVEN_NAME, UserField.FAMILY_NAME),
            )
            derived_before = before.formatted_name == _full_name(
                before.given_name, before.family_name
            )
            if name_field not in changes and derived_before and any(p in changes for p in parts):
                values[name_field.value] = None
            if not values[name_field.value]:
                values[name_field.value] = _full_name(
                    values[UserField.GIVEN_NAME.value], values[UserField.FAMILY_NAME.value]
                )
        return replace(before, **values)

    def _display(self, record: UserRecord) -> str | None:
        if self._rules.member_display == "name":
            return record.formatted_name or record.user_name
        return record.user_name

    async def _require_free_user(
        self, plan: Plan, field: UserField, value: str, owner: str | None
    ) -> None:
        """409 when another user, in Modyo or in the plan, holds ``value`` (ignoring case).
        Modyo is asked where it can search the field; otherwise only the plan is."""
        if field in self.holds.user_search:
            candidates = await self.search_users(field, value)
        else:
            candidates = [self._from_plan(plan, record) for record in plan.users.values()]
        for record in candidates:
            held = getattr(record, field.value)
            if record.id != owner and isinstance(held, str) and held.lower() == value.lower():
                raise Conflict(
                    f"{SCIM_NAMES[field]} is already taken (dry run: in Modyo or in the plan)",
                    field=field,
                )

    async def _require_free_group(self, plan: Plan, name: str, owner: str | None) -> None:
        for record in await self.search_groups(GroupField.DISPLAY_NAME, name):
            if record.id != owner and record.display_name.lower() == name.lower():
                raise Conflict(
                    f"group {record.id} is named {record.display_name!r} (dry run: in Modyo "
                    "or in the plan)",
                    field=GroupField.DISPLAY_NAME,
                )


def _appended(
    modyo_total: int, items: list[R], created: list[R], offset: int, count: int
) -> Page[R]:
    """Modyo's window, then the created objects that fall in it (they follow Modyo's)."""
    start, end = max(0, offset - modyo_total), max(0, offset + count - modyo_total)
    return Page(max(modyo_total, 0) + len(created), (items + created[start:end])[: max(count, 0)])


def _text(value: object) -> str | None:
    return None if value in (None, "") else str(value)


def _require_text(field: UserField, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise Rejected(f"a user needs {'a' if field is UserField.USER_NAME else 'an'} "
                       f"{SCIM_NAMES[field]}", field=field)  # fmt: skip


def _attributes(record: UserRecord) -> tuple[object, ...]:
    return tuple(getattr(record, field.value) for field in UserField)
