"""The group directory of the ``scim`` upstream: Modyo's SCIM server has no group filter, so
an Entra group query (``displayName eq``, ``externalId eq``) would read the whole listing
(⌈groups/100⌉ calls). The directory holds the listing's groups (id, displayName, externalId,
meta) by displayName and externalId, in this process (:class:`MemoryGroupDirectory`) or in
the Redis every replica shares (``bridge.modyo.redis_directory``), and
:class:`bridge.modyo.scim.ScimUpstream` answers queries from it (docs/design/upstreams.md,
Group queries at scale):

- a group it holds and saw in Modyo within ``max_age`` is answered without a call; an older
  one is read again (one call) and answered as Modyo has it now;
- a name it does not hold is absent if its last full pass over the listing is younger than
  ``max_age``; otherwise the query reads the pass's next page (one call), so a group created
  or renamed behind the bridge's back is found within one pass;
- every complete listing the bridge reads (a create's or a rename's uniqueness check, which
  stays exact) rebuilds it, and the bridge's own writes update it;
- bounded: an account with more groups than ``size`` has no directory (each query reads the
  listing, as without it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from bridge.upstream import GroupField, GroupRecord


@dataclass(frozen=True, slots=True)
class Listed:
    """A group as Modyo showed it, and when (the directory's clock)."""

    record: GroupRecord
    seen: float


@dataclass(frozen=True, slots=True)
class Pass:
    """Where the directory's refresh stands."""

    complete_at: float | None
    """When its last full pass over the listing ended; None: it holds nothing yet."""
    cursor: int
    """The listing's next page to read (``startIndex``, 1-based)."""


def key(field: GroupField, value: str) -> str:
    """What a group is found by: its displayName or externalId, ignoring case (as Entra
    matches; the SCIM side then filters exactly)."""
    return f"{field.value}:{value.lower()}"


def keys(record: GroupRecord) -> list[str]:
    found = [key(GroupField.DISPLAY_NAME, record.display_name)]
    if record.external_id:
        found.append(key(GroupField.EXTERNAL_ID, record.external_id))
    return found


class GroupDirectory(Protocol):
    size: int
    """Most groups it holds (a documented setting, ``modyo.group_directory_size``)."""

    async def find(self, field: GroupField, value: str) -> tuple[Pass, list[Listed]]:
        """Where the refresh stands, and the groups held under ``value``."""
        ...

    async def rebuild(self, records: list[GroupRecord], now: float) -> None:
        """The whole listing, just read: a full pass (more than :attr:`size`: emptied)."""
        ...

    async def refresh(self, records: list[GroupRecord], cursor: int, now: float) -> None:
        """A page of the pass, just read; ``cursor`` is the next page (1: the pass ended,
        and the groups it did not see are dropped)."""
        ...

    async def put(self, record: GroupRecord, now: float) -> None:
        """A group as Modyo just showed it (the bridge's own write, or a read)."""
        ...

    async def drop(self, group_id: str) -> None: ...


@dataclass(slots=True)
class MemoryGroupDirectory:
    """In this process (``idempotency.backend = "memory"``)."""

    size: int
    _groups: dict[str, Listed] = field(default_factory=dict)
    _by_key: dict[str, set[str]] = field(default_factory=dict)
    _pass: Pass = field(default_factory=lambda: Pass(None, 1))
    _pass_started: float = 0.0

    def __len__(self) -> int:
        return len(self._groups)

    async def find(self, field: GroupField, value: str) -> tuple[Pass, list[Listed]]:
        ids = self._by_key.get(key(field, value), set())
        return self._pass, [self._groups[group_id] for group_id in sorted(ids)]

    async def rebuild(self, records: list[GroupRecord], now: float) -> None:
        self._groups.clear()
        self._by_key.clear()
        if len(records) > self.size:
            self._pass = Pass(None, 1)
            return
        for record in records:
            self._put(record, now)
        self._pass, self._pass_started = Pass(now, 1), now

    async def refresh(self, records: list[GroupRecord], cursor: int, now: float) -> None:
        if self._pass.complete_at is None:
            return  # nothing to refresh: the next query rebuilds it
        for record in records:
            await self.put(record, now)
        if self._pass.complete_at is None:
            return  # it outgrew its size
        if cursor > 1:
            self._pass = Pass(self._pass.complete_at, cursor)
            return
        for group_id in [i for i, g in self._groups.items() if g.seen < self._pass_started]:
            await self.drop(group_id)  # not in the listing any more
        self._pass, self._pass_started = Pass(now, 1), now

    async def put(self, record: GroupRecord, now: float) -> None:
        if self._pass.complete_at is None:
            return
        if record.id not in self._groups and len(self._groups) >= self.size:
            self._groups.clear()  # too many: no directory, until a listing fits
            self._by_key.clear()
            self._pass = Pass(None, 1)
            return
        await self.drop(record.id)
        self._put(record, now)

    async def drop(self, group_id: str) -> None:
        listed = self._groups.pop(group_id, None)
        if listed is None:
            return
        for found in keys(listed.record):
            ids = self._by_key.get(found)
            if ids is not None:
                ids.discard(group_id)
                if not ids:
                    del self._by_key[found]

    def _put(self, record: GroupRecord, now: float) -> None:
        self._groups[record.id] = Listed(record, now)
        for found in keys(record):
            self._by_key.setdefault(found, set()).add(record.id)
