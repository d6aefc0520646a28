"""Modyo's own SCIM 2.0 server (``/api/admin/scim``) as an upstream: the one module that knows
its paths, payloads, ListResponse paging and error bodies, and how the bridge fills each of its
documented gaps (docs/design/modyo-contract.md §9):

- **PATCH in RFC form only**, built here from the bridge's changes: lower-case ops, JSON
  booleans, one path per attribute, the whole ``emails`` replaced (no value path), members
  removed by ``members[value eq "id"]``; of user attributes only the four Modyo documents as
  patchable (``userName``, ``name``, ``emails``, ``active``) are sent.
- **Updates read first, then PATCH exactly what differs** (a SCIM PUT as well as a PATCH).
- **No user DELETE** (it fails, documented): the user leaves its groups, then is deactivated
  and marked deleted, its userName and email replaced by a *tombstone* (:func:`tombstone`). The
  bridge reads a tombstone as "no such user": GET answers 404, queries skip it, and the
  userName and email are free for a new user. No state is kept outside Modyo.
- **No group filters**: group queries are evaluated here over the whole group listing, and
  displayName uniqueness (which Entra relies on) is enforced here on create and rename.
- **Memberships** through the users' ``groups`` attribute (one read per named user) and group
  PATCHes of ``members``: nothing depends on the group's size.

Calls go out through :class:`bridge.modyo.http.ModyoHttp`, as REST's do; creates are never
re-sent blindly after an unknown outcome, the object is looked up and adopted first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any, Final
from urllib.parse import quote

import httpx

from bridge import request_state
from bridge.modyo.creates import FindExisting, create_once
from bridge.modyo.failures import shared_failure
from bridge.modyo.group_directory import GroupDirectory
from bridge.modyo.http import (
    Answer,
    ModyoHttp,
    Params,
    chunks,
    gather_all,
    json_object,
)
from bridge.modyo.profile import token_health
from bridge.upstream import (
    BadGateway,
    Conflict,
    GroupChanges,
    GroupField,
    GroupRecord,
    Holdings,
    MemberRecord,
    NotFound,
    Page,
    Rejected,
    TooMany,
    UpstreamError,
    UpstreamHealth,
    UserChanges,
    UserField,
    UserRecord,
)
from bridge.yielding import batches

SCIM: Final = "/api/admin/scim"  # [SCIM L32, L88]
MEDIA_TYPE: Final = "application/scim+json"  # every SCIM answer, errors included [SCIM L98]
MAX_COUNT: Final = 100  # GUESS (G3): Modyo's REST lists cap at 100 [API L541]
PAGE_CONCURRENCY: Final = 8
MEMBERS_PER_PATCH: Final = 100
NO_MEMBERS: Final = (("excludedAttributes", "members"),)

USER_URN: Final = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN: Final = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN: Final = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

TOMBSTONE: Final = "scim-bridge-deleted|"
"""How a deleted user's userName starts. ``|`` is in Modyo's username alphabet [ROLES L23] but
never in an Entra userPrincipalName, so no user Entra provisions can look deleted."""
TOMBSTONE_DOMAIN: Final = "deleted.scim-bridge.invalid"  # RFC 2606: never delivered

USER_FILTERS: Final = {UserField.USER_NAME: "userName", UserField.EXTERNAL_ID: "externalId"}
NAME_PATHS: Final = {
    UserField.GIVEN_NAME: "givenName",
    UserField.FAMILY_NAME: "familyName",
    UserField.FORMATTED_NAME: "formatted",
}

WRITES: Final = {
    "create_user": (("POST /scim/Users", "once", 1),),
    "update_user": (("PATCH /scim/Users/:id", "changed", 1),),
    "delete_user": (("PATCH /scim/Groups/:id", "groups", 1), ("PATCH /scim/Users/:id", "once", 1)),
    "create_group": (("POST /scim/Groups", "once", 1),),
    "update_group": (("PATCH /scim/Groups/:id", "once", 1),),
    "delete_group": (("DELETE /scim/Groups/:id", "once", 1),),
    "add_members": (("PATCH /scim/Groups/:id", "members", MEMBERS_PER_PATCH),),
    "remove_members": (("PATCH /scim/Groups/:id", "members", MEMBERS_PER_PATCH),),
}
"""The Modyo calls each write makes (as ``bridge.modyo.rest.WRITES``): an update PATCHes
only what ``changed``; a delete leaves each of the user's ``groups``, then tombstones."""


def tombstone(user_id: str, user_name: str) -> tuple[str, str]:
    """The userName and email a deleted user gets: unique (a digest of its id, which Modyo
    issued once), the same on every attempt (so the PATCH is safe to repeat), and keeping the
    old userName readable for an administrator."""
    digest = hashlib.sha256(user_id.encode()).hexdigest()[:16]
    return f"{TOMBSTONE}{digest}|{user_name}", f"{digest}@{TOMBSTONE_DOMAIN}"


class ScimUpstream:
    """:class:`bridge.upstream.Upstream` over Modyo's SCIM 2.0 server."""

    holds: Holdings = Holdings(
        user=frozenset(UserField),
        group=frozenset(GroupField),
        user_search=frozenset(USER_FILTERS),
        group_search=frozenset(GroupField),
    )
    """Every field: Modyo's SCIM User and Group hold them all [API L118-L128]. ``externalId``
    is set on create and searchable (``externalId eq`` [SCIM L92]) but not patchable
    [SCIM L93], so changing it is refused (400) rather than silently dropped; Entra maps it
    from ``objectId``, which never changes. Users are searched by Modyo's two documented
    filters; groups by the bridge itself, over the listing."""

    def __init__(
        self,
        http: ModyoHttp,
        directory: GroupDirectory | None = None,
        max_age_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self.directory = directory
        """Where group queries are answered from (bridge/modyo/group_directory.py); None:
        each reads the whole listing."""
        self._max_age = max_age_seconds
        self.clock = clock  # wall time: replicas share what the directory saw, and when

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        async with self._http.connected():
            yield

    async def health(self) -> UpstreamHealth:
        return await token_health(self._http)

    # ------------------------------------------------------------------ users

    async def get_user(self, user_id: str) -> UserRecord:
        return _user(await self._live_user(user_id))

    async def list_users(self, offset: int, count: int) -> Page[UserRecord]:
        """A window of Modyo's listing without its deleted users: a page may hold fewer than
        ``count``, and ``total`` discounts only the deleted users of this window."""
        total, rows = await self._window("GET /scim/Users", f"{SCIM}/Users", offset, count)
        live = [row for row in rows if not _deleted(row)]
        return Page(total - (len(rows) - len(live)), [_user(row) for row in live])

    async def scan_users(self, limit: int) -> list[UserRecord]:
        rows = await self._collect("GET /scim/Users", f"{SCIM}/Users", limit=limit)
        return [_user(row) async for batch in batches(rows) for row in batch if not _deleted(row)]

    async def search_users(self, field: UserField, value: str) -> list[UserRecord]:
        text = f"{USER_FILTERS[field]} eq {json.dumps(value, ensure_ascii=False)}"
        rows = await self._collect("GET /scim/Users", f"{SCIM}/Users", (("filter", text),))
        return [_user(row) for row in rows if not _deleted(row)]

    async def create_user(self, values: UserChanges) -> UserRecord:
        _refuse_tombstone_names(values)
        row = await self._create(
            "POST /scim/Users",
            f"{SCIM}/Users",
            _user_payload(values),
            find_existing=lambda: self._matching_user(values),
        )
        return _user(row)

    async def update_user(self, user_id: str, changes: UserChanges) -> UserRecord:
        """Read, then PATCH exactly the attributes that differ (none: no write)."""
        _refuse_tombstone_names(changes)
        current = _user(await self._live_user(user_id))
        _read_before(current)
        operations = _user_operations(current, changes)
        if not operations:
            return current
        body = await self._patch_user(user_id, operations)
        return _user(body or await self._live_user(user_id))

    async def delete_user(self, user_id: str) -> None:
        """Modyo's DELETE fails [SCIM L100-L102], so: leave every group, then deactivate
        and mark deleted in one PATCH (safe to repeat). A failure part-way leaves the user
        readable, and re-sending the DELETE finishes it."""
        current = _user(await self._live_user(user_id))
        self._http.expect(len(current.group_ids) + 1)
        await gather_all(self._leave(group_id, user_id) for group_id in sorted(current.group_ids))
        user_name, email = tombstone(current.id, current.user_name)
        await self._patch_user(
            user_id,
            [
                {"op": "replace", "path": "active", "value": False},
                {"op": "replace", "path": "userName", "value": user_name},
                {"op": "replace", "path": "emails", "value": _emails(email)},
            ],
        )

    async def _leave(self, group_id: str, user_id: str) -> None:
        with suppress(NotFound):  # the group is gone: nothing to leave
            await self.remove_members(group_id, [user_id])

    async def _live_user(self, user_id: str) -> dict[str, Any]:
        row = await self._read("GET /scim/Users/:id", f"{SCIM}/Users/{_path_id(user_id)}")
        if _deleted(row):
            raise NotFound(f"no user {user_id!r} (deleted)")
        return row

    async def _patch_user(self, user_id: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        """The user as the PATCH answered it (``{}`` after a 204)."""
        call, path = "PATCH /scim/Users/:id", f"{SCIM}/Users/{_path_id(user_id)}"
        answer = await self._http.send(call, "PATCH", path, json=_patch_op(operations))
        return self._expect(answer, call, 200, 204)

    async def _matching_user(self, values: UserChanges) -> dict[str, Any] | None:
        """The user holding the userName being created, if it holds all the values."""
        user_name = values.get(UserField.USER_NAME)
        if not isinstance(user_name, str):
            return None
        text = f"userName eq {json.dumps(user_name, ensure_ascii=False)}"
        for row in await self._collect("GET /scim/Users", f"{SCIM}/Users", (("filter", text),)):
            record = _user(row)
            if not _deleted(row) and record.user_name.lower() == user_name.lower():
                return row if _user_holds(record, values) else None
        return None

    # ------------------------------------------------------------------ groups

    async def get_group(self, group_id: str) -> GroupRecord:
        path = f"{SCIM}/Groups/{_path_id(group_id)}"
        return _group(await self._read("GET /scim/Groups/:id", path, NO_MEMBERS))

    async def list_groups(self, offset: int, count: int) -> Page[GroupRecord]:
        total, rows = await self._window(
            "GET /scim/Groups", f"{SCIM}/Groups", offset, count, NO_MEMBERS
        )
        return Page(total, [_group(row) for row in rows])

    async def search_groups(self, field: GroupField, value: str) -> list[GroupRecord]:
        """Modyo documents no group filter, and ignoring one would list every group as a
        match (G4): the groups are matched here, ignoring case (a superset of SCIM's
        matching, which the SCIM side then applies exactly), from the group directory (at
        most one call once it holds the listing) or the whole listing (⌈groups/100⌉ calls)."""
        directory = self.directory
        if directory is None:
            return _named(await self._all_groups(), field, value)
        now = self.clock()
        state, held = await directory.find(field, value)
        if state.complete_at is None:
            return _named(await self._all_groups(), field, value)
        found: list[GroupRecord] = []
        for listed in held:
            if now - listed.seen <= self._max_age:
                found.append(listed.record)
                continue
            try:  # seen too long ago: as Modyo has it now
                record = await self.get_group(listed.record.id)
            except NotFound:
                await directory.drop(listed.record.id)
                continue
            await directory.put(record, now)
            found.extend(_named([record], field, value))
        if found or held or now - state.complete_at <= self._max_age:
            return found  # (held but all read again and changed: the query had its call)
        # the directory's absence is too old to trust: the pass's next page
        params = [*NO_MEMBERS, ("startIndex", str(state.cursor)), ("count", str(MAX_COUNT))]
        total, rows = await self._page("GET /scim/Groups", f"{SCIM}/Groups", params)
        page = [_group(row) for row in rows]
        cursor = state.cursor + len(rows)
        await directory.refresh(page, cursor if rows and cursor <= total else 1, now)
        return _named(page, field, value)

    async def _all_groups(self) -> list[GroupRecord]:
        """The whole listing (⌈groups/100⌉ calls), which rebuilds the directory."""
        rows = await self._collect("GET /scim/Groups", f"{SCIM}/Groups", NO_MEMBERS)
        records = [_group(row) for row in rows]
        if self.directory is not None:
            await self.directory.rebuild(records, self.clock())
        return records

    async def scan_groups(self, limit: int) -> list[GroupRecord]:
        rows = await self._collect("GET /scim/Groups", f"{SCIM}/Groups", NO_MEMBERS, limit=limit)
        return [_group(row) async for batch in batches(rows) for row in batch]

    async def create_group(self, values: GroupChanges) -> GroupRecord:
        """displayName must be unique (Entra matches on it; Modyo does not enforce it)."""
        name = values.get(GroupField.DISPLAY_NAME)
        if isinstance(name, str):
            await self._require_free_name(name, owner=None)
        payload: dict[str, Any] = {"schemas": [GROUP_URN], "displayName": name}
        if values.get(GroupField.EXTERNAL_ID):
            payload["externalId"] = values[GroupField.EXTERNAL_ID]
        row = await self._create(
            "POST /scim/Groups",
            f"{SCIM}/Groups",
            payload,
            find_existing=lambda: self._matching_group(values),
        )
        return await self._held(_group(row))

    async def _held(self, record: GroupRecord) -> GroupRecord:
        """``record``, just written, also in the directory."""
        if self.directory is not None:
            await self.directory.put(record, self.clock())
        return record

    async def update_group(self, group_id: str, changes: GroupChanges) -> GroupRecord:
        operations: list[dict[str, Any]] = []
        current: GroupRecord | None = None
        if GroupField.EXTERNAL_ID in changes:
            current = await self.get_group(group_id)
            _read_before(current)
            if (changes[GroupField.EXTERNAL_ID] or None) != current.external_id:
                raise _immutable("Group")
        if GroupField.DISPLAY_NAME in changes:
            name = changes[GroupField.DISPLAY_NAME]
            if not name:
                raise Rejected("a group needs a displayName")
            await self._require_free_name(name, owner=group_id)
            operations.append({"op": "replace", "path": "displayName", "value": name})
        if not operations:
            return current or await self.get_group(group_id)
        call, path = "PATCH /scim/Groups/:id", f"{SCIM}/Groups/{_path_id(group_id)}"
        answer = await self._http.send(call, "PATCH", path, json=_patch_op(operations))
        body = self._expect(answer, call, 200, 204)
        return await self._held(_group(body) if body else await self.get_group(group_id))

    async def delete_group(self, group_id: str) -> None:
        call = "DELETE /scim/Groups/:id"
        answer = await self._http.send(call, "DELETE", f"{SCIM}/Groups/{_path_id(group_id)}")
        # a 404 after an attempt that may have been applied: it deleted it, its answer lost
        if answer.status != 404 or not answer.maybe_applied_before:
            self._expect(answer, call, 200, 204)
        if self.directory is not None:
            await self.directory.drop(group_id)

    async def _require_free_name(self, name: str, owner: str | None) -> None:
        """409 if another group holds ``name`` (ignoring case, as Entra's matching does), in
        the whole listing: exact, whatever the directory holds."""
        for group in _named(await self._all_groups(), GroupField.DISPLAY_NAME, name):
            if group.id != owner:
                raise Conflict(f"group {group.id} is named {group.display_name!r}",
                               field=GroupField.DISPLAY_NAME)  # fmt: skip

    async def _matching_group(self, values: GroupChanges) -> dict[str, Any] | None:
        """After an unknown outcome: the group just created, or 409 if another group took
        the name meanwhile (re-sending would create a duplicate Modyo does not refuse)."""
        name = values.get(GroupField.DISPLAY_NAME)
        if not isinstance(name, str):
            return None
        named = _named(await self._all_groups(), GroupField.DISPLAY_NAME, name)
        for group in named:
            if (values.get(GroupField.EXTERNAL_ID) or None) == group.external_id:
                return _group_row(group)
        if named:
            raise Conflict(f"group {named[0].id} is named {named[0].display_name!r}",
                           field=GroupField.DISPLAY_NAME)  # fmt: skip
        return None

    # ------------------------------------------------------------------ memberships

    async def list_members(self, group_id: str) -> list[MemberRecord]:
        path = f"{SCIM}/Groups/{_path_id(group_id)}"
        body = await self._read("GET /scim/Groups/:id", path)
        members = body.get("members") or []
        if not isinstance(members, list):
            raise BadGateway("Modyo answered GET /scim/Groups/:id with malformed 'members'")
        seen: dict[str, MemberRecord] = {}
        for member in members:
            if not isinstance(member, dict) or member.get("value") in (None, ""):
                raise BadGateway("Modyo listed a group member without its 'value'")
            display = member.get("display")
            record = MemberRecord(str(member["value"]), None if display is None else str(display))
            seen.setdefault(record.id, record)
        return list(seen.values())

    async def memberships(self, user_ids: Iterable[str]) -> dict[str, frozenset[str]]:
        """Each existing user's groups, from its ``groups`` attribute (RFC 7643 §4.1.2): one
        read per user, a few at a time, whatever the groups' sizes."""
        gate = asyncio.Semaphore(PAGE_CONCURRENCY)

        async def read(user_id: str) -> tuple[str, frozenset[str]] | None:
            async with gate:
                try:
                    return user_id, (await self.get_user(user_id)).group_ids
                except NotFound:
                    return None

        ids = sorted(set(user_ids))
        self._http.expect(len(ids))
        found = await gather_all(read(user_id) for user_id in ids)
        return dict(pair for pair in found if pair is not None)

    async def add_members(self, group_id: str, user_ids: Iterable[str]) -> None:
        """One PATCH ``add members`` per 100 ids; adding a member twice changes nothing."""
        ids = sorted(set(user_ids))
        self._http.expect(-(-len(ids) // MEMBERS_PER_PATCH))
        for chunk in chunks(ids, MEMBERS_PER_PATCH):
            value = [{"value": user_id} for user_id in chunk]
            await self._patch_group(group_id, [{"op": "add", "path": "members", "value": value}])

    async def remove_members(self, group_id: str, user_ids: Iterable[str]) -> None:
        """One PATCH per 100 ids, each removed by ``members[value eq "id"]`` (RFC 7644
        §3.5.2.2): a ``remove`` of ``members`` without a filter would empty the group."""
        ids = sorted(set(user_ids))
        self._http.expect(-(-len(ids) // MEMBERS_PER_PATCH))
        for chunk in chunks(ids, MEMBERS_PER_PATCH):
            operations = [
                {
                    "op": "remove",
                    "path": f"members[value eq {json.dumps(user_id, ensure_ascii=False)}]",
                }
                for user_id in chunk
            ]
            await self._patch_group(group_id, operations)

    async def _patch_group(self, group_id: str, operations: list[dict[str, Any]]) -> None:
        call, path = "PATCH /scim/Groups/:id", f"{SCIM}/Groups/{_path_id(group_id)}"
        answer = await self._http.send(call, "PATCH", path, json=_patch_op(operations))
        self._expect(answer, call, 200, 204)

    # ------------------------------------------------------------------ plumbing

    async def _read(self, call: str, path: str, params: Params = ()) -> dict[str, Any]:
        answer = await self._http.send(call, "GET", path, params=params)
        return self._expect(answer, call, 200)

    async def _create(
        self, call: str, path: str, payload: dict[str, Any], find_existing: FindExisting
    ) -> dict[str, Any]:
        """POST without ever creating twice (:func:`bridge.modyo.creates.create_once`)."""
        return await create_once(
            self._http,
            call,
            path,
            payload,
            find_existing,
            lambda answer: self._expect(answer, call, 201, 200),
        )

    async def _window(
        self, call: str, path: str, offset: int, count: int, extra: Params = ()
    ) -> tuple[int, list[dict[str, Any]]]:
        """``count`` resources from ``offset`` (``startIndex`` is 1-based), in pages of at
        most :data:`MAX_COUNT`; Modyo may answer fewer per page than asked."""
        if count <= 0:
            total, _ = await self._page(call, path, [*extra, ("startIndex", "1"), ("count", "0")])
            return total, []
        rows: list[dict[str, Any]] = []
        start, total = offset + 1, 0
        while len(rows) < count:
            asked = min(MAX_COUNT, count - len(rows))
            params = [*extra, ("startIndex", str(start)), ("count", str(asked))]
            total, page = await self._page(call, path, params)
            rows.extend(page)
            start += len(page)
            if not page or start > total:
                break
        return total, rows[:count]

    async def _collect(
        self, call: str, path: str, extra: Params = (), limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Every resource of a listing: the first page, then the rest a few pages at a time,
        in the page size Modyo answered with. With a ``limit``, a listing whose total exceeds
        it raises :class:`TooMany` after the first page."""
        total, first = await self._page(
            call, path, [*extra, ("startIndex", "1"), ("count", str(MAX_COUNT))]
        )
        if limit is not None and total > limit:
            raise TooMany(total, limit)
        if total > 0 and not first:  # read as "none", a group would be created twice
            raise BadGateway(f"Modyo answered {call} with totalResults {total} but no Resources")
        if len(first) >= total:
            return first
        step, gate = len(first), asyncio.Semaphore(PAGE_CONCURRENCY)
        self._http.expect(len(range(1 + step, total + 1, step)))

        async def fetch(start: int) -> list[dict[str, Any]]:
            async with gate:
                params = [*extra, ("startIndex", str(start)), ("count", str(step))]
                return (await self._page(call, path, params))[1]

        pages = await gather_all(fetch(start) for start in range(1 + step, total + 1, step))
        seen = {str(row.get("id")): row for row in first}
        for page in pages:  # pages read while objects change may overlap
            seen.update((str(row.get("id")), row) for row in page)
        return list(seen.values())

    async def _page(self, call: str, path: str, params: Params) -> tuple[int, list[dict[str, Any]]]:
        """One ListResponse (RFC 7644 §3.4.2, GUESS G3): ``totalResults`` and ``Resources``."""
        body = await self._read(call, path, params)
        total, resources = body.get("totalResults"), body.get("Resources", [])
        if (
            not isinstance(total, int)
            or isinstance(total, bool)
            or not isinstance(resources, list)
            or not all(isinstance(row, dict) for row in resources)
        ):
            raise BadGateway(f"Modyo answered {call} with a malformed ListResponse")
        return total, resources

    def _expect(self, answer: Answer, call: str, *statuses: int) -> dict[str, Any]:
        if answer.status not in statuses:
            raise _failure(call, answer.response)
        return json_object(answer, call)


# ---------------------------------------------------------------------- requests


def _named(groups: Iterable[GroupRecord], field: GroupField, value: str) -> list[GroupRecord]:
    """The groups whose ``field`` is ``value``, ignoring case."""
    wanted = value.lower()
    if field is GroupField.DISPLAY_NAME:
        return [group for group in groups if group.display_name.lower() == wanted]
    return [group for group in groups if (group.external_id or "").lower() == wanted]


def _path_id(raw: str) -> str:
    """An opaque id as one path segment (G2): percent-encoded, and never ``.`` or ``..``
    (which a URL would resolve to another path)."""
    if raw in ("", ".", ".."):
        raise NotFound(f"no object with id {raw!r}")
    return quote(raw, safe="")


def _patch_op(operations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schemas": [PATCH_URN], "Operations": operations}


def _emails(email: str) -> list[dict[str, Any]]:
    return [{"value": email, "type": "work", "primary": True}]


def _user_payload(values: UserChanges) -> dict[str, Any]:
    """A SCIM User (RFC 7643 §4.1) as Modyo's guide maps Entra's attributes [SCIM L54-L63]."""
    payload: dict[str, Any] = {"schemas": [USER_URN], "userName": values.get(UserField.USER_NAME)}
    name = {path: values[field] for field, path in NAME_PATHS.items() if values.get(field)}
    if name:
        payload["name"] = name
    email = values.get(UserField.EMAIL)
    if isinstance(email, str) and email:
        payload["emails"] = _emails(email)
    payload["active"] = values.get(UserField.ACTIVE, True) is not False
    if values.get(UserField.EXTERNAL_ID):
        payload["externalId"] = values[UserField.EXTERNAL_ID]
    return payload


def _user_operations(current: UserRecord, changes: UserChanges) -> list[dict[str, Any]]:
    """RFC 7644 §3.5.2 operations for the attributes that differ from ``current``; only the
    four Modyo documents as patchable [SCIM L93]."""
    operations: list[dict[str, Any]] = []
    external_id = changes.get(UserField.EXTERNAL_ID, current.external_id)
    if (external_id or None) != current.external_id:
        raise _immutable("User")
    if UserField.USER_NAME in changes and changes[UserField.USER_NAME] != current.user_name:
        if not changes[UserField.USER_NAME]:
            raise Rejected("a user needs a userName")
        operations.append(
            {"op": "replace", "path": "userName", "value": changes[UserField.USER_NAME]}
        )
    for field, sub in NAME_PATHS.items():
        if field in changes and (changes[field] or None) != getattr(current, field.value):
            wanted = changes[field]
            operations.append(
                {"op": "replace", "path": f"name.{sub}", "value": wanted}
                if wanted
                else {"op": "remove", "path": f"name.{sub}"}
            )
    if UserField.EMAIL in changes and (changes[UserField.EMAIL] or None) != current.email:
        email = changes[UserField.EMAIL]
        operations.append(
            {"op": "replace", "path": "emails", "value": _emails(email)}
            if isinstance(email, str) and email
            else {"op": "remove", "path": "emails"}
        )
    if UserField.ACTIVE in changes and bool(changes[UserField.ACTIVE]) != current.active:
        operations.append(
            {"op": "replace", "path": "active", "value": bool(changes[UserField.ACTIVE])}
        )
    return operations


def _refuse_tombstone_names(values: UserChanges) -> None:
    name = values.get(UserField.USER_NAME)
    if isinstance(name, str) and name.lower().startswith(TOMBSTONE):
        raise Rejected(f"a userName cannot start with {TOMBSTONE!r}: it marks deleted users")


def _immutable(resource: str) -> Rejected:
    return Rejected(
        f"Modyo's SCIM server sets a {resource}'s externalId only when it is created and "
        "cannot change it; map externalId from an attribute that never changes (objectId)"
    )


# ---------------------------------------------------------------------- answers


def _deleted(row: Mapping[str, Any]) -> bool:
    """Whether a user is one the bridge deleted (its userName is a tombstone)."""
    name = row.get("userName")
    return isinstance(name, str) and name.lower().startswith(TOMBSTONE)


def _text(row: Mapping[str, Any], name: str) -> str | None:
    value = row.get(name)
    return None if value in (None, "") else str(value)


def _object(row: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = row.get(name)
    return value if isinstance(value, dict) else {}


def _required(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if value in (None, "") or isinstance(value, dict | list | bool):
        raise BadGateway(f"Modyo returned a SCIM resource without '{name}'")
    return str(value)


def _active(value: Any) -> bool:
    if isinstance(value, str):  # lenient with the string form Entra itself sends
        return value.strip().lower() != "false"
    return value is not False


def _email(row: Mapping[str, Any]) -> str | None:
    """The work email, else the primary one, else the first (Modyo holds one)."""
    emails = [e for e in row.get("emails") or () if isinstance(e, dict) and e.get("value")]
    for entry in emails:
        if str(entry.get("type") or "").lower() == "work":
            return str(entry["value"])
    for entry in emails:
        if entry.get("primary") is True:
            return str(entry["value"])
    return str(emails[0]["value"]) if emails else None


def _user(row: Mapping[str, Any]) -> UserRecord:
    name, meta = _object(row, "name"), _object(row, "meta")
    groups = row.get("groups") or []
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and g.get("value") not in (None, "") for g in groups
    ):
        raise BadGateway("Modyo returned a user with malformed 'groups'")
    return UserRecord(
        id=_required(row, "id"),
        user_name=_required(row, "userName"),
        email=_email(row),
        given_name=_text(name, "givenName"),
        family_name=_text(name, "familyName"),
        formatted_name=_text(name, "formatted"),
        external_id=_text(row, "externalId"),
        active=_active(row.get("active", True)),
        created=_text(meta, "created"),
        last_modified=_text(meta, "lastModified"),
        group_ids=frozenset(str(group["value"]) for group in groups),
    )


def _user_holds(record: UserRecord, values: UserChanges) -> bool:
    """Whether an existing user holds every value a create asked for (``None`` asks for
    nothing)."""
    for field, wanted in values.items():
        if wanted is None:
            continue
        held = getattr(record, field.value)
        if field in (UserField.EMAIL, UserField.USER_NAME):
            same = str(held or "").lower() == str(wanted).lower()
        elif isinstance(wanted, bool) or isinstance(held, bool):
            same = wanted == held
        else:
            same = (wanted or None) == (held or None)
        if not same:
            return False
    return True


def _group(row: Mapping[str, Any]) -> GroupRecord:
    meta = _object(row, "meta")
    return GroupRecord(
        id=_required(row, "id"),
        display_name=_required(row, "displayName"),
        external_id=_text(row, "externalId"),
        created=_text(meta, "created"),
        last_modified=_text(meta, "lastModified"),
    )


def _group_row(group: GroupRecord) -> dict[str, Any]:
    return {
        "id": group.id,
        "displayName": group.display_name,
        "externalId": group.external_id,
        "meta": {"created": group.created, "lastModified": group.last_modified},
    }


def _scim_error(response: httpx.Response) -> dict[str, Any] | None:
    """The RFC 7644 §3.12 error body of a SCIM answer (GUESS: Modyo's shape is undocumented
    [SCIM L98]), or None when the answer is not SCIM (not ``application/scim+json``, or not
    a JSON object), as Modyo's own DELETE failure is [SCIM L100-L102]."""
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != MEDIA_TYPE:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _failure(call: str, response: httpx.Response) -> UpstreamError:
    """Map a Modyo SCIM failure to the bridge's vocabulary (the same errors as REST's);
    never includes credentials."""
    status = response.status_code
    shared = shared_failure(call, response)
    if shared is not None:
        return shared
    error = _scim_error(response)
    if error is None:
        return BadGateway(f"Modyo answered {call} with HTTP {status}, not a SCIM answer")
    detail = str(error.get("detail") or f"HTTP {status}")
    scim_type = str(error.get("scimType") or "")
    if status == 404:
        return NotFound(f"Modyo has no such object ({call})")
    if status == 409 and scim_type in ("", "uniqueness"):
        return Conflict(detail, field=_conflict_field(detail, call))
    if status in (400, 409, 413, 422):
        return Rejected(f"Modyo refused {call}: {detail}")
    return BadGateway(f"Modyo answered {call} with HTTP {status}: {detail}")


def _conflict_field(detail: str, call: str) -> UserField | GroupField | None:
    lowered = detail.lower()
    if "/groups" in call.lower():
        return GroupField.DISPLAY_NAME if "displayname" in lowered else None
    if "username" in lowered:
        return UserField.USER_NAME
    if "email" in lowered:
        return UserField.EMAIL
    return None


def _read_before(current: UserRecord | GroupRecord) -> None:
    """What the request's journal event gives as the values before its change (read for the
    write, never for the journal alone)."""
    serving = request_state.current()
    if serving is not None:
        serving.read_before = current
