"""The brake on destructive changes (``[safety]``; docs/operator/first-cycle.md, "The brake"):
an :class:`~bridge.upstream.Upstream` that counts, per rolling window, the users disabled,
users deleted, groups deleted, members removed and members added to privileged groups, and
holds every further change of a kind once its threshold is crossed: nothing goes to Modyo,
the answer is 503 with ``Retry-After`` (Entra retries in a later cycle), until an
administrator releases the brake. Other kinds keep flowing.

A change is counted when it would be applied: a disable of a user Modyo shows disabled is
not one. Whether a user is active is known without a Modyo call when a read of it passed
through here shortly before (Entra reads a user before it patches it); otherwise the user is
read once. A request naming more changes than the threshold leaves room for (a group PATCH
removing 30 members with 10 left) is held whole: nothing of it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Generic, TypeVar

from bridge.config import SafetySettings
from bridge.metrics import BRAKE_COUNTED, BRAKE_ENGAGED, BRAKE_HELD
from bridge.safety.brake_store import BrakeStore, Decision
from bridge.safety.calls import WriteCalls, calls_for, note
from bridge.upstream import (
    Conflict,
    GroupChanges,
    GroupField,
    GroupRecord,
    MemberRecord,
    NotFound,
    Page,
    Rejected,
    Unavailable,
    UnknownMembers,
    Upstream,
    UpstreamHealth,
    UserChanges,
    UserField,
    UserRecord,
)

log = logging.getLogger("bridge.safety")
T = TypeVar("T")
V = TypeVar("V")
HELD_RETRY_AFTER_SECONDS: Final = 2400.0
"""Retry-After of a held change: the brake does not release itself, so a retry is worth it
no sooner than an administrator can act; 40 minutes is Entra's incremental cycle, when it
would retry anyway (it schedules failed objects itself: docs/operator/first-cycle.md)."""
HINT_SECONDS: Final = 60.0
"""How long a user's active flag (or a group's name) seen in a read is trusted."""
MAX_HINTS: Final = 10_000
NOT_APPLIED: Final = (NotFound, Conflict, Rejected, UnknownMembers)
"""Failures after which Modyo certainly did not apply the change: it is uncounted."""
RELEASE_SIGNAL: Final = signal.SIGUSR1
"""Releases every kind of a process whose brake counts in memory (``brake release --pid``)."""


class Kind(StrEnum):
    DISABLES = "disables"
    DELETES = "deletes"
    GROUP_DELETES = "group_deletes"
    MEMBER_REMOVALS = "member_removals"
    PRIVILEGED_ADDITIONS = "privileged_additions"


WHAT: Final = {
    Kind.DISABLES: "user disables",
    Kind.DELETES: "user deletes",
    Kind.GROUP_DELETES: "group deletes",
    Kind.MEMBER_REMOVALS: "member removals",
    Kind.PRIVILEGED_ADDITIONS: "members added to privileged groups",
}


@dataclass(frozen=True, slots=True)
class KindStatus:
    """One kind of change as the status report and the console show it."""

    kind: Kind
    limit: int
    """``safety.max_<kind>``: changes applied per window before the brake engages."""
    counted: int
    """Changes counted in the current window."""
    engaged_since: str | None
    """When the brake engaged (UTC, ISO 8601); None while changes flow."""
    window_minutes: float


def _key(text: str) -> str:
    """What is counted for a change: a digest (no client value stored as given)."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Brake:
    """The thresholds of ``[safety]`` over a store of counts (memory or Redis)."""

    def __init__(self, settings: SafetySettings, store: BrakeStore) -> None:
        self.settings = settings
        self.store = store
        self.limits = {
            Kind.DISABLES: settings.max_disables,
            Kind.DELETES: settings.max_deletes,
            Kind.GROUP_DELETES: settings.max_group_deletes,
            Kind.MEMBER_REMOVALS: settings.max_member_removals,
            Kind.PRIVILEGED_ADDITIONS: settings.max_privileged_additions,
        }
        self.engaged: set[Kind] = set()
        """The kinds this process last saw held (no store call: what ``/readyz`` shows)."""
        self._holds_seen = 0
        """Holds this process has seen: a reservation sent before the latest of them may
        come back applied afterwards (answers overtake each other) without any release."""
        self._seen_at: dict[Kind, int] = {}
        privileged = settings.privileged_groups
        self.privileged_ids = frozenset(privileged)
        self.privileged_names = frozenset(name.lower() for name in privileged)

    async def reserve(self, kind: Kind, changes: Iterable[str]) -> Decision:
        limit = self.limits[kind]
        sent_after = self._holds_seen
        decision = await self.store.reserve(kind, [_key(change) for change in changes], limit)
        BRAKE_COUNTED(kind.value).set(decision.count)
        if not decision.applied:
            self._saw_held(kind)
            BRAKE_ENGAGED(kind.value).set(1)
            BRAKE_HELD(kind.value).inc()
        elif kind in self.engaged and decision.new and sent_after >= self._seen_at[kind]:
            # counted although this process had seen the brake held when it asked:
            # released elsewhere (another replica, the CLI)
            self.engaged.discard(kind)
            BRAKE_ENGAGED(kind.value).set(0)
        if decision.engaged_now:
            log.error(
                "safety brake engaged: %s reached safety.max_%s (%d per %g minutes); "
                "further %s are held (503) until an administrator releases the brake",
                WHAT[kind],
                kind.value,
                limit,
                self.settings.window_minutes,
                WHAT[kind],
                extra={"kind": kind.value, "limit": limit, "counted": decision.count},
            )
        return decision

    def _saw_held(self, kind: Kind) -> None:
        self._holds_seen += 1
        self._seen_at[kind] = self._holds_seen
        self.engaged.add(kind)

    async def cancel(self, kind: Kind, keys: tuple[str, ...]) -> None:
        """Uncount changes Modyo refused; a store failure leaves them counted (the safe side:
        they leave the window with time)."""
        try:
            await self.store.cancel(kind, keys)
        except Exception:
            log.warning("safety brake: refused changes stay counted", extra={"kind": kind.value})

    async def release(self, kind: Kind | None = None) -> list[Kind]:
        """Disengage the brake (of ``kind``, else of every kind) and start a new window: the
        held changes succeed on their next retry. The kinds that were engaged."""
        released = []
        for each in [kind] if kind is not None else list(Kind):
            if await self.store.release(each):
                released.append(each)
            self.engaged.discard(each)
            BRAKE_ENGAGED(each.value).set(0)
            BRAKE_COUNTED(each.value).set(0)
        if released:
            log.warning(
                "safety brake released: %s",
                ", ".join(WHAT[each] for each in released),
                extra={"kinds": [each.value for each in released]},
            )
        return released

    async def status(self) -> list[KindStatus]:
        """Every kind's threshold, count and state (what the status report shows)."""
        found = []
        for kind in Kind:
            state = await self.store.state(kind)
            BRAKE_COUNTED(kind.value).set(state.count)
            BRAKE_ENGAGED(kind.value).set(0 if state.engaged_since is None else 1)
            if state.engaged_since is None:
                self.engaged.discard(kind)
            else:
                self._saw_held(kind)
            since = None
            if state.engaged_since is not None:
                moment = datetime.fromtimestamp(state.engaged_since, UTC)
                since = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
            found.append(
                KindStatus(
                    kind, self.limits[kind], state.count, since, self.settings.window_minutes
                )
            )
        return found

    def held(self, kind: Kind) -> Unavailable:
        limit, window = self.limits[kind], self.settings.window_minutes
        return Unavailable(
            f"held by the safety brake: {WHAT[kind]} reached safety.max_{kind.value} ({limit} "
            f"per {window:g} minutes) and nothing was sent to Modyo; an administrator checks "
            f"the change, then releases the brake (scim-bridge brake release --kind "
            f"{kind.value}; docs/operator/first-cycle.md)",
            retry_after=HELD_RETRY_AFTER_SECONDS,
        )


class _Hints(Generic[V]):
    """What recent reads showed, by id, for a short while (bounded, oldest dropped first)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._seen: OrderedDict[str, tuple[V, float]] = OrderedDict()

    def remember(self, key: str, value: V) -> None:
        self._seen[key] = (value, self._clock() + HINT_SECONDS)
        self._seen.move_to_end(key)
        while len(self._seen) > MAX_HINTS:
            self._seen.popitem(last=False)

    def recall(self, key: str) -> V | None:
        found = self._seen.get(key)
        if found is None or found[1] < self._clock():
            return None
        return found[0]


class BrakeUpstream:
    """:class:`~bridge.upstream.Upstream` over ``inner`` with the brake on its destructive
    writes; reads pass through (and leave hints)."""

    def __init__(
        self,
        inner: Upstream,
        brake: Brake,
        calls: WriteCalls,
        *,
        release_signal: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.holds = inner.holds
        self.brake = brake
        self._inner = inner
        self._calls = calls
        self._release_signal = release_signal
        self._active = _Hints[bool](clock)
        self._names = _Hints[str](clock)
        self._releasing: set[asyncio.Task[list[Kind]]] = set()

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        async with self._inner.connected():
            installed = self._release_signal and self._listen_for_release()
            try:
                yield
            finally:
                if installed:
                    asyncio.get_running_loop().remove_signal_handler(RELEASE_SIGNAL)

    def _listen_for_release(self) -> bool:
        """SIGUSR1 releases every kind (a brake counting in this process's memory)."""

        def release() -> None:
            task = asyncio.ensure_future(self.brake.release())
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

        try:
            asyncio.get_running_loop().add_signal_handler(RELEASE_SIGNAL, release)
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
            return False
        return True

    async def health(self) -> UpstreamHealth:
        return await self._inner.health()

    # ------------------------------------------------------------------ reads (hints)

    def _seen_user(self, record: UserRecord) -> UserRecord:
        self._active.remember(record.id, record.active)
        return record

    def _seen_group(self, record: GroupRecord) -> GroupRecord:
        self._names.remember(record.id, record.display_name)
        return record

    async def get_user(self, user_id: str) -> UserRecord:
        return self._seen_user(await self._inner.get_user(user_id))

    async def list_users(self, offset: int, count: int) -> Page[UserRecord]:
        page = await self._inner.list_users(offset, count)
        return Page(page.total, [self._seen_user(record) for record in page.items])

    async def search_users(self, field: UserField, value: str) -> list[UserRecord]:
        return [self._seen_user(r) for r in await self._inner.search_users(field, value)]

    async def scan_users(self, limit: int) -> list[UserRecord]:
        return [self._seen_user(record) for record in await self._inner.scan_users(limit)]

    async def get_group(self, group_id: str) -> GroupRecord:
        return self._seen_group(await self._inner.get_group(group_id))

    async def list_groups(self, offset: int, count: int) -> Page[GroupRecord]:
        page = await self._inner.list_groups(offset, count)
        return Page(page.total, [self._seen_group(record) for record in page.items])

    async def search_groups(self, field: GroupField, value: str) -> list[GroupRecord]:
        return [self._seen_group(r) for r in await self._inner.search_groups(field, value)]

    async def scan_groups(self, limit: int) -> list[GroupRecord]:
        return [self._seen_group(record) for record in await self._inner.scan_groups(limit)]

    async def list_members(self, group_id: str) -> list[MemberRecord]:
        return await self._inner.list_members(group_id)

    async def memberships(self, user_ids: Iterable[str]) -> dict[str, frozenset[str]]:
        return await self._inner.memberships(user_ids)

    # ------------------------------------------------------------------ writes

    async def create_user(self, values: UserChanges) -> UserRecord:
        return self._seen_user(await self._inner.create_user(values))

    async def update_user(self, user_id: str, changes: UserChanges) -> UserRecord:
        update = self._inner.update_user
        if changes.get(UserField.ACTIVE) is False and await self._is_active(user_id):
            calls = calls_for(self._calls, "update_user")
            record = await self._guarded(
                Kind.DISABLES, [user_id], calls, lambda: update(user_id, changes)
            )
        else:
            record = await update(user_id, changes)
        return self._seen_user(record)

    async def delete_user(self, user_id: str) -> None:
        calls = calls_for(self._calls, "delete_user")
        delete = self._inner.delete_user
        await self._guarded(Kind.DELETES, [user_id], calls, lambda: delete(user_id))

    async def create_group(self, values: GroupChanges) -> GroupRecord:
        return self._seen_group(await self._inner.create_group(values))

    async def update_group(self, group_id: str, changes: GroupChanges) -> GroupRecord:
        return self._seen_group(await self._inner.update_group(group_id, changes))

    async def delete_group(self, group_id: str) -> None:
        calls = calls_for(self._calls, "delete_group")
        delete = self._inner.delete_group
        await self._guarded(Kind.GROUP_DELETES, [group_id], calls, lambda: delete(group_id))

    async def add_members(self, group_id: str, user_ids: Iterable[str]) -> None:
        wanted = sorted(set(user_ids))
        add = self._inner.add_members
        if not await self._privileged(group_id):
            await add(group_id, wanted)
            return
        pairs = [f"{group_id}\n{user_id}" for user_id in wanted]
        calls = calls_for(self._calls, "add_members", members=len(wanted))
        await self._guarded(Kind.PRIVILEGED_ADDITIONS, pairs, calls, lambda: add(group_id, wanted))

    async def remove_members(self, group_id: str, user_ids: Iterable[str]) -> None:
        gone = sorted(set(user_ids))
        pairs = [f"{group_id}\n{user_id}" for user_id in gone]
        calls = calls_for(self._calls, "remove_members", members=len(gone))
        remove = self._inner.remove_members
        await self._guarded(Kind.MEMBER_REMOVALS, pairs, calls, lambda: remove(group_id, gone))

    # ------------------------------------------------------------------ plumbing

    async def _guarded(
        self,
        kind: Kind,
        changes: list[str],
        calls: list[tuple[str, str]],
        write: Callable[[], Awaitable[T]],
    ) -> T:
        """``write()`` if the brake lets its changes through; else held: nothing is written,
        the request notes it, and the answer is 503."""
        decision = await self.brake.reserve(kind, [f"{kind.value}\n{change}" for change in changes])
        if not decision.applied:
            note("held", calls)
            raise self.brake.held(kind)
        try:
            return await write()
        except NOT_APPLIED:
            if decision.new:
                await self.brake.cancel(kind, decision.new)
            raise

    async def _is_active(self, user_id: str) -> bool:
        """Whether the user is active now: a recent read's word, else one read (an unknown
        user is not "active": the update answers 404 by itself)."""
        seen = self._active.recall(user_id)
        if seen is not None:
            return seen
        with contextlib.suppress(NotFound):
            return (await self.get_user(user_id)).active
        return False

    async def _privileged(self, group_id: str) -> bool:
        brake = self.brake
        if not brake.privileged_ids:
            return False
        if group_id in brake.privileged_ids:
            return True
        name = self._names.recall(group_id)
        if name is None:
            try:
                name = (await self.get_group(group_id)).display_name
            except NotFound:
                return False  # the write answers 404 by itself
        return name.lower() in brake.privileged_names
