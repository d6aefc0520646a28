"""Modyo's Administration REST API as an upstream: the one module that knows its team-member
and group paths, payloads, pagination envelope and error envelope (docs/design/modyo-contract.md).

Calls go out through :class:`bridge.modyo.http.ModyoHttp` (retries, deadline, in-flight
bound, metrics). Creates are never blindly re-sent after an unknown outcome: the object is
looked up by its unique key first and adopted if it is the one being created.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import (
    AsyncIterator,
    Iterable,
    Iterator,
    Mapping,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import httpx

from bridge.modyo.creates import FindExisting, create_once
from bridge.modyo.failures import shared_failure
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
    NotSupported,
    Page,
    Rejected,
    TooMany,
    UnknownMembers,
    UpstreamError,
    UpstreamHealth,
    UserChanges,
    UserField,
    UserRecord,
    is_safe_id,
)
from bridge.yielding import batches

_UUID: Final = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")

API: Final = "/api/admin"
MAX_PER_PAGE: Final = 100  # Modyo clamps per_page at 100 [API L541]
MAX_ID: Final = 2**63 - 1  # Modyo's integer ids: Rails' bigint primary keys (C13)
PAGE_CONCURRENCY: Final = 8  # pages of one listing fetched at once
STABLE_ORDER: Final = (("sort_by", "id"), ("order", "asc"))  # default updated_at DESC shifts
MEMBER_LISTING_FIELDS: Final = (("only[]", "id"), ("only[]", "username"), ("only[]", "name"))
MEMBERSHIP_FIELDS: Final = (("only[]", "id"), ("only[]", "group_ids"))

USER_ATTRIBUTES: Final = {
    UserField.USER_NAME: "username",
    UserField.EMAIL: "email",
    UserField.GIVEN_NAME: "first_name",
    UserField.FAMILY_NAME: "last_name",
    UserField.FORMATTED_NAME: "name",
    UserField.EXTERNAL_ID: "external_id",
    UserField.ACTIVE: "active",
}
GROUP_ATTRIBUTES: Final = {GroupField.DISPLAY_NAME: "name", GroupField.EXTERNAL_ID: "external_id"}
USER_SEARCH_PARAMS: Final = {
    UserField.USER_NAME: "username",
    UserField.EMAIL: "email",
    UserField.EXTERNAL_ID: "external_id",
}
GROUP_SEARCH_PARAMS: Final = {
    GroupField.DISPLAY_NAME: "name",
    GroupField.EXTERNAL_ID: "external_id",
}

WRITES: Final = {
    "create_user": (("POST /team_members", "once", 1),),
    "update_user": (("PUT /team_members/:id", "once", 1),),
    "delete_user": (("DELETE /team_members/:id", "once", 1),),
    "create_group": (("POST /groups", "once", 1),),
    "update_group": (("PUT /groups/:id", "once", 1),),
    "delete_group": (("DELETE /groups/:id", "once", 1),),
    "add_members": (("POST /groups/:id/team_members", "members", MAX_PER_PAGE),),
    "remove_members": (("DELETE /groups/:id/team_members/:member_id", "members", 1),),
}
"""The Modyo calls each write makes: (call, unit, per call), ``members`` counting the
members named (``per call`` of them per call). What a dry run records as planned
(``bridge.safety``); tests/test_safety_calls.py holds it to what the writes do."""


@dataclass(slots=True)
class Shapes:
    """Which of the answer shapes Modyo documents this Modyo was seen to use (C8, C13, §3):
    what ``scim-bridge check`` reports. None until seen."""

    ids: str | None = None  # "integer" or "uuid" (or "other")
    create_status: int | None = None
    delete_status: int | None = None
    errors: str | None = None  # "objects", "strings" or "hash"

    def saw_id(self, raw: object) -> None:
        if self.ids is None:
            text = str(raw)
            self.ids = "integer" if text.isdigit() else "uuid" if _UUID.fullmatch(text) else "other"


class RestUpstream:
    """:class:`bridge.upstream.Upstream` over the Modyo Administration REST API."""

    holds: Holdings = Holdings(
        user=frozenset(USER_ATTRIBUTES),
        group=frozenset(GROUP_ATTRIBUTES),
        user_search=frozenset(USER_SEARCH_PARAMS),
        group_search=frozenset(GROUP_SEARCH_PARAMS),
    )
    """What this contract stores and searches: exactly the fields it has a Modyo attribute
    (or search parameter) for."""

    def __init__(self, http: ModyoHttp) -> None:
        self._http = http
        self.shapes = Shapes()

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        async with self._http.connected():
            yield

    # ------------------------------------------------------------------ users

    async def get_user(self, user_id: str) -> UserRecord:
        path = f"{API}/team_members/{_modyo_id(user_id)}"
        return _user(await self._read("GET /team_members/:id", path))

    async def list_users(self, offset: int, count: int) -> Page[UserRecord]:
        total, rows = await self._window(
            "GET /team_members", f"{API}/team_members", "team_members", offset, count
        )
        if rows:
            self.shapes.saw_id(rows[0].get("id"))
        return Page(total, [_user(row) for row in rows])

    async def search_users(self, field: UserField, value: str) -> list[UserRecord]:
        params = ((USER_SEARCH_PARAMS[field], value),)
        rows = await self._collect(
            "GET /team_members", f"{API}/team_members", "team_members", params
        )
        return [_user(row) for row in rows]

    async def scan_users(self, limit: int) -> list[UserRecord]:
        rows = await self._collect(
            "GET /team_members", f"{API}/team_members", "team_members", (), limit=limit
        )
        return [_user(row) async for batch in batches(_distinct(rows)) for row in batch]

    async def create_user(self, values: UserChanges) -> UserRecord:
        return _user(
            await self._create(
                "POST /team_members",
                f"{API}/team_members",
                _payload(values, USER_ATTRIBUTES),
                find_existing=lambda: self._matching_user(values),
            )
        )

    async def update_user(self, user_id: str, changes: UserChanges) -> UserRecord:
        path = f"{API}/team_members/{_modyo_id(user_id)}"
        answer = await self._http.send(
            "PUT /team_members/:id", "PUT", path, json=_payload(changes, USER_ATTRIBUTES)
        )
        return _user(self._expect(answer, "PUT /team_members/:id", 200))

    async def delete_user(self, user_id: str) -> None:
        await self._delete("DELETE /team_members/:id", f"{API}/team_members/{_modyo_id(user_id)}")

    async def _matching_user(self, values: UserChanges) -> dict[str, Any] | None:
        """The team member holding the userName being created, if it holds all the values."""
        user_name = values.get(UserField.USER_NAME)
        if not isinstance(user_name, str):
            return None
        params = (("username", user_name),)
        rows = await self._collect(
            "GET /team_members", f"{API}/team_members", "team_members", params
        )
        for row in rows:
            if str(row.get("username", "")).lower() == user_name.lower():
                return row if _holds(row, values, USER_ATTRIBUTES) else None
        return None

    # ------------------------------------------------------------------ groups

    async def get_group(self, group_id: str) -> GroupRecord:
        return _group(await self._read("GET /groups/:id", f"{API}/groups/{_modyo_id(group_id)}"))

    async def list_groups(self, offset: int, count: int) -> Page[GroupRecord]:
        total, rows = await self._window("GET /groups", f"{API}/groups", "groups", offset, count)
        return Page(total, [_group(row) for row in rows])

    async def search_groups(self, field: GroupField, value: str) -> list[GroupRecord]:
        params = ((GROUP_SEARCH_PARAMS[field], value),)
        rows = await self._collect("GET /groups", f"{API}/groups", "groups", params)
        return [_group(row) for row in rows]

    async def scan_groups(self, limit: int) -> list[GroupRecord]:
        rows = await self._collect("GET /groups", f"{API}/groups", "groups", (), limit=limit)
        return [_group(row) async for batch in batches(_distinct(rows)) for row in batch]

    async def create_group(self, values: GroupChanges) -> GroupRecord:
        return _group(
            await self._create(
                "POST /groups",
                f"{API}/groups",
                _payload(values, GROUP_ATTRIBUTES),
                find_existing=lambda: self._matching_group(values),
            )
        )

    async def update_group(self, group_id: str, changes: GroupChanges) -> GroupRecord:
        path = f"{API}/groups/{_modyo_id(group_id)}"
        answer = await self._http.send(
            "PUT /groups/:id", "PUT", path, json=_payload(changes, GROUP_ATTRIBUTES)
        )
        return _group(self._expect(answer, "PUT /groups/:id", 200))

    async def delete_group(self, group_id: str) -> None:
        await self._delete("DELETE /groups/:id", f"{API}/groups/{_modyo_id(group_id)}")

    async def _matching_group(self, values: GroupChanges) -> dict[str, Any] | None:
        name = values.get(GroupField.DISPLAY_NAME)
        if not isinstance(name, str):
            return None
        rows = await self._collect("GET /groups", f"{API}/groups", "groups", (("name", name),))
        for row in rows:
            if str(row.get("name", "")).lower() == name.lower():
                return row if _holds(row, values, GROUP_ATTRIBUTES) else None
        return None

    # ------------------------------------------------------------------ memberships

    async def list_members(self, group_id: str) -> list[MemberRecord]:
        path = f"{API}/groups/{_modyo_id(group_id)}/team_members"
        rows = await self._collect(
            "GET /groups/:id/team_members", path, "team_members", MEMBER_LISTING_FIELDS
        )
        seen: dict[str, MemberRecord] = {}
        for row in rows:
            member = MemberRecord(
                id=str(_field(row, "id")), display=row.get("name") or row.get("username")
            )
            seen.setdefault(member.id, member)  # pages fetched concurrently may overlap
        return list(seen.values())

    async def memberships(self, user_ids: Iterable[str]) -> dict[str, frozenset[str]]:
        """The groups of each existing user: one call per 100 ids, whatever the groups' sizes
        (team members carry their ``group_ids``; ``only[]`` trims the rest)."""
        wanted = sorted({user_id for user_id in user_ids if _is_modyo_id(user_id)}, key=_sort_key)
        found: dict[str, frozenset[str]] = {}
        self._http.expect(-(-len(wanted) // MAX_PER_PAGE))
        for chunk in chunks(wanted, MAX_PER_PAGE):
            params = [("per_page", str(MAX_PER_PAGE)), *MEMBERSHIP_FIELDS]
            params += [("ids[]", user_id) for user_id in chunk]
            rows, _ = await self._page(
                "GET /team_members", f"{API}/team_members", "team_members", params
            )
            asked = set(chunk)
            for row in rows:
                user_id, groups = str(_field(row, "id")), row.get("group_ids")
                if user_id not in asked:  # an ignored filter must not read as "no such user"
                    raise BadGateway("Modyo ignored the ids[] filter of GET /team_members")
                if not isinstance(groups, list):
                    raise BadGateway("Modyo listed team members without their 'group_ids'")
                found[user_id] = frozenset(str(group) for group in groups)
        return found

    async def add_members(self, group_id: str, user_ids: Iterable[str]) -> None:
        """One call per 100 members; adding a member twice is a no-op upstream (SAFE)."""
        path = f"{API}/groups/{_modyo_id(group_id)}/team_members"
        wanted = sorted(set(user_ids), key=_sort_key)
        self._http.expect(-(-len(wanted) // MAX_PER_PAGE))
        for chunk in chunks(wanted, MAX_PER_PAGE):
            ids = [int(user_id) if user_id.isdigit() else user_id for user_id in chunk]
            answer = await self._http.send(
                "POST /groups/:id/team_members", "POST", path, json={"team_member_ids": ids}
            )
            self._expect(answer, "POST /groups/:id/team_members", 200, 201, 204)

    async def remove_members(self, group_id: str, user_ids: Iterable[str]) -> None:
        """One DELETE per member, a few at a time; 404 means "not a member": done."""
        group = _modyo_id(group_id)
        gate = asyncio.Semaphore(PAGE_CONCURRENCY)

        async def remove(user_id: str) -> None:
            async with gate:
                path = f"{API}/groups/{group}/team_members/{_modyo_id(user_id)}"
                answer = await self._http.send(
                    "DELETE /groups/:id/team_members/:member_id", "DELETE", path
                )
                if answer.status != 404:
                    self._expect(answer, "DELETE /groups/:id/team_members/:member_id", 200, 204)

        ids = sorted(set(user_ids), key=_sort_key)
        self._http.expect(len(ids))
        await gather_all(remove(user_id) for user_id in ids)

    # ------------------------------------------------------------------ profile (check, health)

    async def profile(self) -> dict[str, Any]:
        """The token owner's profile (documented [API L757-L780]); proves the token works."""
        return await self._read("GET /profile", f"{API}/profile")

    async def health(self) -> UpstreamHealth:
        return await token_health(self._http)

    # ------------------------------------------------------------------ plumbing

    async def _read(self, call: str, path: str, params: Params = ()) -> dict[str, Any]:
        answer = await self._http.send(call, "GET", path, params=params)
        return self._expect(answer, call, 200)

    async def _delete(self, call: str, path: str) -> None:
        answer = await self._http.send(call, "DELETE", path)
        if answer.status == 404 and answer.maybe_applied_before:
            return  # an earlier attempt deleted it and its answer was lost
        self._expect(answer, call, 200, 204)
        self.shapes.delete_status = answer.status

    async def _create(
        self, call: str, path: str, payload: dict[str, Any], find_existing: FindExisting
    ) -> dict[str, Any]:
        """POST without ever creating twice (:func:`bridge.modyo.creates.create_once`);
        Modyo's failure statuses (409, 422: C9) are read as :meth:`_failure` reads them."""

        def created(answer: Answer) -> dict[str, Any]:
            body = self._expect(answer, call, 200, 201)
            self.shapes.create_status = answer.status
            self.shapes.saw_id(body.get("id"))
            return body

        return await create_once(self._http, call, path, payload, find_existing, created)

    async def _window(
        self, call: str, path: str, plural: str, offset: int, count: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """``count`` rows from ``offset`` in a stable (id) order, in one or two pages."""
        if count <= 0:
            _, meta = await self._page(
                call, path, plural, [("page", "1"), ("per_page", "1"), *STABLE_ORDER]
            )
            return meta["total_entries"], []
        if count <= MAX_PER_PAGE and offset % count == 0:
            per_page, first, last = count, offset // count + 1, offset // count + 1
        else:
            per_page = MAX_PER_PAGE
            first, last = offset // per_page + 1, (offset + count - 1) // per_page + 1
        rows: list[dict[str, Any]] = []
        total = 0
        for page in range(first, last + 1):
            params = [("page", str(page)), ("per_page", str(per_page)), *STABLE_ORDER]
            page_rows, meta = await self._page(call, path, plural, params)
            rows.extend(page_rows)
            total = meta["total_entries"]
            if len(page_rows) < per_page:
                break
        skip = offset - (first - 1) * per_page
        return total, rows[skip : skip + count]

    async def _collect(
        self, call: str, path: str, plural: str, params: Params, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Every row of a listing: page 1, then the other pages a few at a time. With a
        ``limit``, a listing whose total exceeds it raises :class:`TooMany` after page 1."""
        base = [*params, ("per_page", str(MAX_PER_PAGE)), *STABLE_ORDER]
        rows, meta = await self._page(call, path, plural, [*base, ("page", "1")])
        if limit is not None and meta["total_entries"] > limit:
            raise TooMany(meta["total_entries"], limit)
        pages = meta["total_pages"]
        if pages <= 1:
            return rows
        self._http.expect(pages - 1)
        gate = asyncio.Semaphore(PAGE_CONCURRENCY)

        async def fetch(page: int) -> list[dict[str, Any]]:
            async with gate:
                page_rows, _ = await self._page(call, path, plural, [*base, ("page", str(page))])
                return page_rows

        for page_rows in await gather_all(fetch(page) for page in range(2, pages + 1)):
            rows.extend(page_rows)
        return rows

    async def _page(
        self, call: str, path: str, plural: str, params: Params
    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """One page in the documented envelope ``{plural: [...], "meta": {...}}`` [API L56-L100]."""
        body = await self._read(call, path, params)
        rows, meta = body.get(plural), body.get("meta")
        if not isinstance(rows, list) or not isinstance(meta, dict):
            raise BadGateway(f"Modyo answered {call} without the '{plural}' list and 'meta'")
        try:
            shape = {
                key: int(meta[key])
                for key in ("total_entries", "per_page", "current_page", "total_pages")
            }
        except (KeyError, TypeError, ValueError):
            raise BadGateway(f"Modyo answered {call} with an unexpected 'meta' object") from None
        if not all(isinstance(row, dict) for row in rows):
            raise BadGateway(f"Modyo answered {call} with a malformed '{plural}' list")
        return rows, shape

    def _failure(self, call: str, response: httpx.Response) -> UpstreamError:
        failure = _failure(call, response)
        if isinstance(failure, Conflict | Rejected | UnknownMembers):
            self.shapes.errors = _envelope_style(response)
        return failure

    def _expect(self, answer: Answer, call: str, *statuses: int) -> dict[str, Any]:
        if answer.status not in statuses:
            raise self._failure(call, answer.response)
        return json_object(answer, call)


# ---------------------------------------------------------------------- translation helpers


def _modyo_id(raw: str) -> str:
    """An id Modyo could have issued, safe to put in a path; anything else cannot exist."""
    if not _is_modyo_id(raw):
        raise NotFound(f"no object with id {raw!r}")
    return raw


def _is_modyo_id(raw: str) -> bool:
    """An opaque token of a path-safe alphabet (C13, :func:`bridge.upstream.is_safe_id`):
    Modyo's integer ids ("12") and the ``uuid`` its console addresses team members by
    [API L643-L656] both fit; a number past what an id column holds (2^63-1) cannot, whichever
    form this Modyo's ids take."""
    if not is_safe_id(raw):
        return False
    return not raw.isdigit() or int(raw) <= MAX_ID  # at most 64 digits (is_safe_id)


def _sort_key(raw: str) -> tuple[int, str]:
    """Integer ids in numeric order, then the others (a stable, de-duplicated call order)."""
    return (0, raw.zfill(20)) if raw.isdigit() else (1, raw)


def _distinct(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows by id, first seen kept: pages read concurrently may overlap while rows change."""
    seen: dict[Any, dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(_field(row, "id"), row)
    return list(seen.values())


def _payload(values: Mapping[Any, Any], attributes: Mapping[Any, str]) -> dict[str, Any]:
    return {attributes[key]: value for key, value in values.items()}


def _holds(
    row: Mapping[str, Any], values: Mapping[Any, Any], attributes: Mapping[Any, str]
) -> bool:
    """Whether an existing object holds every value a create asked for (``None`` asks for
    nothing: Modyo may derive it, as it derives ``name`` from the first and last names)."""
    for key, wanted in values.items():
        if wanted is None:
            continue
        held = row.get(attributes[key])
        if key is UserField.EMAIL and isinstance(wanted, str) and isinstance(held, str):
            same = held.lower() == wanted.lower()
        elif isinstance(wanted, bool) or isinstance(held, bool):
            same = wanted == held
        else:
            same = (wanted or None) == (held or None)  # "" and null both mean "unset"
        if not same:
            return False
    return True


def _field(row: Mapping[str, Any], name: str) -> Any:
    try:
        return row[name]
    except KeyError:
        raise BadGateway(f"Modyo returned an object without '{name}'") from None


def _optional_text(row: Mapping[str, Any], name: str) -> str | None:
    value = row.get(name)
    return None if value in (None, "") else str(value)


def _user(row: Mapping[str, Any]) -> UserRecord:
    return UserRecord(
        id=str(_field(row, "id")),
        user_name=str(_field(row, "username")),
        email=_optional_text(row, "email"),
        given_name=_optional_text(row, "first_name"),
        family_name=_optional_text(row, "last_name"),
        formatted_name=_optional_text(row, "name"),
        external_id=_optional_text(row, "external_id"),
        active=bool(row.get("active", True)),
        created=_optional_text(row, "created_at"),
        last_modified=_optional_text(row, "updated_at"),
        group_ids=frozenset(str(group) for group in row.get("group_ids") or ()),
    )


def _group(row: Mapping[str, Any]) -> GroupRecord:
    return GroupRecord(
        id=str(_field(row, "id")),
        display_name=str(_field(row, "name")),
        external_id=_optional_text(row, "external_id"),
        created=_optional_text(row, "created_at"),
        last_modified=_optional_text(row, "updated_at"),
    )


def _failure(call: str, response: httpx.Response) -> UpstreamError:
    """Map a Modyo failure to the bridge's vocabulary; never includes credentials."""
    status = response.status_code
    shared = shared_failure(call, response)
    if shared is not None:
        return shared
    if status == 404:
        return NotFound(f"Modyo has no such object ({call})")
    if status == 405:
        return NotSupported(f"this Modyo does not offer {call} (HTTP 405)")
    if status in (409, 422):
        return _validation_failure(call, status, response)
    return BadGateway(f"Modyo answered {call} with HTTP {status}")


def _validation_failure(call: str, status: int, response: httpx.Response) -> UpstreamError:
    """Modyo's error envelope (C8), in every documented shape: ``{"errors": [...]}`` whose
    elements are ``{field, messages, details: [{error}]}`` objects or translated strings
    (``"Username has already been taken"``), and the legacy hash
    ``{"errors": {"username": ["has already been taken"]}}`` (422 in the 2022 Swagger)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    problems = list(_problems(errors))
    if not problems:
        return Rejected(f"Modyo refused {call} (HTTP {status})")
    groups = call.startswith(("POST /groups", "PUT /groups")) and "team_members" not in call
    fields: Mapping[str, UserField | GroupField] = {
        name: field for field, name in (GROUP_ATTRIBUTES if groups else USER_ATTRIBUTES).items()
    }
    for problem in problems:
        if problem.field == "team_member_ids" and "not_found" in problem.codes:
            return UnknownMembers(problem.ids)
        if problem.taken:
            return Conflict(problem.text, field=fields.get(problem.field or ""))
    return Rejected(
        "Modyo refused the values: " + "; ".join(problem.text for problem in problems),
        field=fields.get(problems[0].field or ""),
    )


def _envelope_style(response: httpx.Response) -> str | None:
    """Which documented error envelope an answer used (C8)."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return None
    if isinstance(errors, dict):
        return "hash"
    if isinstance(errors, list) and errors:
        return "strings" if all(isinstance(e, str) for e in errors) else "objects"
    return None


@dataclass(frozen=True, slots=True)
class _Problem:
    field: str | None
    text: str
    codes: frozenset[str]
    ids: tuple[str, ...] = ()

    @property
    def taken(self) -> bool:
        """A uniqueness failure: the ``taken`` code (C12), or Rails' message for it."""
        return "taken" in self.codes or "already been taken" in self.text.lower()


def _problems(errors: object) -> Iterator[_Problem]:
    if isinstance(errors, dict):  # the legacy hash: {"username": ["has already been taken"]}
        for name, messages in errors.items():
            listed = messages if isinstance(messages, list) else [messages]
            text = "; ".join(str(message) for message in listed)
            yield _Problem(str(name), f"{name} {text}", frozenset())
        return
    if not isinstance(errors, list):
        return
    for error in errors:
        if isinstance(error, str):  # a translated message: "Username has already been taken"
            first = error.split(" ", 1)[0].lower()
            yield _Problem(first if first in _MESSAGE_FIELDS else None, error, frozenset())
        elif isinstance(error, dict):
            name = str(error.get("field") or "") or None
            details = [d for d in error.get("details") or () if isinstance(d, dict)]
            text = "; ".join(str(m) for m in error.get("messages") or ())
            yield _Problem(
                name,
                f"{name or ''} {text}".strip(),
                frozenset(str(d.get("error")) for d in details),
                tuple(str(i) for d in details for i in d.get("ids") or ()),
            )


_MESSAGE_FIELDS: Final = frozenset({"username", "email", "name"})
"""Attributes a translated message starts with (Rails' ``full_messages``)."""
