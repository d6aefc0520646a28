"""A dry run's plan: the writes it kept from Modyo, as a log of entries every replica replays
in the same order into the same state (docs/operator/first-cycle.md, "How a dry run answers").

An entry says what a write leaves behind (a user as created or as changed, a deletion, the
members added to and removed from a group), so replaying it needs no Modyo call. The log is
this process's memory (:class:`MemoryLog`) or a Redis list every replica shares
(:class:`RedisLog`); either is bounded by ``modyo.dry_run_max_changes``, counted in changes (a
created, changed or deleted object is one, each member added or removed is one).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Protocol

from bridge.safety.shared import SharedLink
from bridge.upstream import GroupRecord, UserRecord

Entry = dict[str, Any]
PLAN_TTL_SECONDS: Final = 7 * 24 * 3600
"""A shared plan is kept this long after its last planned change (then Redis drops it)."""

_APPEND: Final = """
local weight = tonumber(redis.call('GET', KEYS[2]) or '0')
if weight + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return -1 end
redis.call('INCRBY', KEYS[2], ARGV[2])
local length = redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return length
"""
"""Append one entry unless the plan's weight would exceed its bound: atomic, so replicas
racing for the last places never exceed it together."""


class PlanLog(Protocol):
    """Where a plan's entries live, in order."""

    async def append(self, entry: Entry, weight: int, bound: int) -> bool:
        """Add ``entry`` (``weight`` changes) unless the plan would then hold more than
        ``bound`` changes; False when it would."""
        ...

    async def since(self, position: int) -> list[Entry]:
        """The entries from ``position`` (0-based) on."""
        ...


class MemoryLog:
    """This process's plan."""

    def __init__(self) -> None:
        self._entries: list[Entry] = []
        self._weight = 0

    async def append(self, entry: Entry, weight: int, bound: int) -> bool:
        if self._weight + weight > bound:
            return False
        self._weight += weight
        self._entries.append(entry)
        return True

    async def since(self, position: int) -> list[Entry]:
        return self._entries[position:]


class RedisLog:
    """A plan every replica shares: a Redis list of JSON entries and its weight, kept
    :data:`PLAN_TTL_SECONDS` after the last change."""

    def __init__(self, link: SharedLink) -> None:
        self._link = link
        self._entries = link.key("dry-run", "plan")
        self._weight = link.key("dry-run", "weight")
        self._append = link.client.register_script(_APPEND)

    async def append(self, entry: Entry, weight: int, bound: int) -> bool:
        text = json.dumps(entry, separators=(",", ":"))
        keys, args = [self._entries, self._weight], [text, weight, bound, PLAN_TTL_SECONDS]
        length = await self._link.call(
            "dry-run plan append", lambda: self._append(keys=keys, args=args)
        )
        return int(length) >= 0

    async def discard(self) -> int:
        """Drop the plan (a live bridge starting); how many entries it held."""

        async def drop() -> int:
            length = int(await self._link.client.llen(self._entries))
            await self._link.client.delete(self._entries, self._weight)
            return length

        return await self._link.call("dry-run plan discard", drop)

    async def since(self, position: int) -> list[Entry]:
        raw = await self._link.call(
            "dry-run plan read", lambda: self._link.client.lrange(self._entries, position, -1)
        )
        return [json.loads(item) for item in raw]


# ---------------------------------------------------------------------- the state


def user_entry(record: UserRecord) -> dict[str, Any]:
    fields = asdict(record)
    fields["group_ids"] = sorted(record.group_ids)
    return fields


def user_from(fields: Mapping[str, Any]) -> UserRecord:
    return UserRecord(**{**fields, "group_ids": frozenset(fields.get("group_ids") or ())})


def group_entry(record: GroupRecord) -> dict[str, Any]:
    return asdict(record)


def group_from(fields: Mapping[str, Any]) -> GroupRecord:
    return GroupRecord(**fields)


@dataclass
class Plan:
    """The state a plan's entries leave, replayed in log order.

    ``users`` and ``groups`` hold every object the plan created or changed, as the plan
    leaves it (a changed Modyo object keeps the group ids Modyo showed when it was planned);
    ``deleted_*`` the Modyo objects it deleted; ``added`` and ``removed`` the members it
    added to and removed from each group (a user or group created in the plan is never
    "removed": it is forgotten). ``counts`` tallies the planned changes by kind."""

    users: dict[str, UserRecord] = field(default_factory=dict)
    created_users: dict[str, None] = field(default_factory=dict)
    deleted_users: set[str] = field(default_factory=set)
    groups: dict[str, GroupRecord] = field(default_factory=dict)
    created_groups: dict[str, None] = field(default_factory=dict)
    deleted_groups: set[str] = field(default_factory=set)
    added: dict[str, dict[str, None]] = field(default_factory=dict)
    removed: dict[str, set[str]] = field(default_factory=dict)
    joined: dict[str, set[str]] = field(default_factory=dict)
    """User -> the groups the plan added it to (``added`` read the other way)."""
    left: dict[str, set[str]] = field(default_factory=dict)
    """User -> the groups the plan removed it from."""
    counts: Counter[str] = field(default_factory=Counter)
    position: int = 0
    """Entries applied so far."""

    def apply(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            getattr(self, "_" + entry["op"].replace("-", "_"))(entry)
            self.position += 1

    # -------------------------------------------------------------- what the plan says

    def user_gone(self, user_id: str) -> bool:
        return user_id in self.deleted_users

    def group_gone(self, group_id: str) -> bool:
        return group_id in self.deleted_groups

    def groups_of(self, user_id: str, modyo_groups: Iterable[str]) -> frozenset[str]:
        """The groups ``user_id`` is in once the plan applies, from those Modyo shows."""
        left = self.left.get(user_id, set())
        kept = {g for g in modyo_groups if g not in left and g not in self.deleted_groups}
        return frozenset(kept | self.joined.get(user_id, set()))

    # -------------------------------------------------------------- entries

    def _user_create(self, entry: Entry) -> None:
        record = user_from(entry["user"])
        self.users[record.id] = record
        self.created_users[record.id] = None
        self.counts["users created"] += 1

    def _user_update(self, entry: Entry) -> None:
        before, after = user_from(entry["before"]), user_from(entry["user"])
        self.users[after.id] = after
        if before.active and not after.active:
            self.counts["users disabled"] += 1
        elif after.active and not before.active:
            self.counts["users re-enabled"] += 1
        if _differs(before, after, exclude=("active", "last_modified", "group_ids")):
            self.counts["users updated"] += 1

    def _user_delete(self, entry: Entry) -> None:
        user_id = entry["id"]
        self.users.pop(user_id, None)
        if user_id in self.created_users:
            del self.created_users[user_id]
        else:
            self.deleted_users.add(user_id)
        for group_id in self.joined.pop(user_id, set()):
            self.added.get(group_id, {}).pop(user_id, None)
        for group_id in self.left.pop(user_id, set()):
            self.removed.get(group_id, set()).discard(user_id)
        self.counts["users deleted"] += 1

    def _group_create(self, entry: Entry) -> None:
        record = group_from(entry["group"])
        self.groups[record.id] = record
        self.created_groups[record.id] = None
        self.counts["groups created"] += 1

    def _group_update(self, entry: Entry) -> None:
        before, after = group_from(entry["before"]), group_from(entry["group"])
        self.groups[after.id] = after
        if before.display_name != after.display_name:
            self.counts["groups renamed"] += 1
        if before.external_id != after.external_id:
            self.counts["groups updated"] += 1

    def _group_delete(self, entry: Entry) -> None:
        group_id = entry["id"]
        self.groups.pop(group_id, None)
        if group_id in self.created_groups:
            del self.created_groups[group_id]
        else:
            self.deleted_groups.add(group_id)
        for user_id in self.added.pop(group_id, {}):
            self.joined.get(user_id, set()).discard(group_id)
        for user_id in self.removed.pop(group_id, set()):
            self.left.get(user_id, set()).discard(group_id)
        self.counts["groups deleted"] += 1

    def _members(self, entry: Entry) -> None:
        group_id = entry["group"]
        added, removed = (
            self.added.setdefault(group_id, {}),
            self.removed.setdefault(group_id, set()),
        )
        for user_id in entry["add"]:
            added[user_id] = None
            removed.discard(user_id)
            self.joined.setdefault(user_id, set()).add(group_id)
            self.left.get(user_id, set()).discard(group_id)
        for user_id in entry["remove"]:
            added.pop(user_id, None)
            self.joined.get(user_id, set()).discard(group_id)
            if user_id not in self.created_users and group_id not in self.created_groups:
                removed.add(user_id)
                self.left.setdefault(user_id, set()).add(group_id)
        self.counts["members added"] += len(entry["add"])
        self.counts["members removed"] += len(entry["remove"])


def _differs(before: object, after: object, exclude: tuple[str, ...]) -> bool:
    left, right = asdict(before), asdict(after)  # type: ignore[call-overload]
    return any(left[name] != right[name] for name in left if name not in exclude)
