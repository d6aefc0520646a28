"""A stateful, in-memory Modyo Administration API: the executable form of
docs/design/modyo-contract.md.

It implements exactly the contract the bridge assumes (paths, payloads, statuses) plus the
quirks Modyo documents: the ``{"<plural>": [...], "meta": {...}}`` envelope, ``per_page``
silently clamped at 100, ``only[]`` trimming (a comma-joined value yields empty objects),
``{"errors": [...]}`` with 409 as the default failure status, and ``401 {}`` for a bad token.

Every membership change is O(1); listing a group's members pages over a cached snapshot, so
a 50,000-member group costs nothing per add or remove. Every call is counted in ``calls``
(keyed like ``"GET /groups/:id/team_members"``) so tests can assert upstream call counts.

No HTTP here: :meth:`FakeModyo.handle` takes a method, path, query pairs and a body, and the
adapters in ``fake.app`` and ``fake.router`` put it behind ASGI and respx.
"""

from __future__ import annotations

import hmac
import json
import random
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

API_PREFIX = "/api/admin"
DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 100
MAX_IDS_PER_MEMBERSHIP_CALL = 100
MODYO_OFFSET = timezone(timedelta(hours=-3))  # Modyo's examples carry -03:00 offsets.
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9|#@%._\-'+/]+$")  # [ROLES L23]
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+$")

Json = dict[str, Any]


JSON_MEDIA_TYPE = "application/json; charset=utf-8"


@dataclass(slots=True)
class FakeResponse:
    status: int
    body: Any = None  # JSON-serialisable, text (sent as is), or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = JSON_MEDIA_TYPE

    def content(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


class _Failure(Exception):
    """Ends a request with the given response (Rails' rescue_from, in short)."""

    def __init__(self, response: FakeResponse) -> None:
        self.response = response


def _errors(status: int, *errors: Any) -> _Failure:
    return _Failure(FakeResponse(status, {"errors": list(errors)}))


def _field_error(name: str, message: str, code: str, **extra: Any) -> Json:
    return {"field": name, "messages": [message], "details": [{"error": code, **extra}]}


NOT_FOUND = FakeResponse(404, {})


@dataclass(frozen=True, slots=True)
class Variant:
    """How a given Modyo answers, among the shapes its documentation allows
    (modyo-admin-api.md §3.5, §5.1; docs/design/modyo-contract.md C8, C13):

    - ``errors``: ``objects`` (the draft's ``{"field", "messages", "details"}``), ``strings``
      (translated messages, ``"Username has already been taken"``), or ``hash`` (the 2022
      Swagger's ``{"errors": {"username": ["has already been taken"]}}``, answered 422);
    - ``create_status``: 201, or 200;
    - ``delete_status``: 204, or 200 with ``{}`` (the 2022 Swagger);
    - ``uuid_ids``: objects are addressed, and listed, by their ``uuid`` instead of the
      integer ``id`` (as Modyo's admin console addresses team members).
    """

    errors: str = "objects"
    create_status: int = 201
    delete_status: int = 204
    uuid_ids: bool = False

    def __post_init__(self) -> None:
        if self.errors not in ("objects", "strings", "hash"):
            raise ValueError("errors must be objects, strings or hash")
        if self.create_status not in (200, 201) or self.delete_status not in (200, 204):
            raise ValueError("create_status is 200 or 201; delete_status is 200 or 204")

    def deleted(self) -> FakeResponse:
        return FakeResponse(204) if self.delete_status == 204 else FakeResponse(200, {})

    def styled(self, response: FakeResponse) -> FakeResponse:
        """An ``{"errors": [objects]}`` failure in this variant's envelope."""
        errors = response.body.get("errors") if isinstance(response.body, dict) else None
        if self.errors == "objects" or not isinstance(errors, list):
            return response
        objects = [error for error in errors if isinstance(error, dict)]
        if self.errors == "hash":
            by_field: dict[str, list[str]] = {}
            for error in objects:
                by_field.setdefault(error["field"], []).extend(error["messages"])
            return FakeResponse(422, {"errors": by_field})
        texts = [_full_message(error) for error in objects]
        return FakeResponse(response.status, {"errors": texts})


def _full_message(error: Json) -> str:
    """Rails' ``full_messages``: ``username`` + ``has already been taken``."""
    field = str(error["field"]).replace("_", " ").capitalize()
    message = "; ".join(error["messages"])
    return message if message.lower().startswith(field.lower()) else f"{field} {message}"


@dataclass(slots=True)
class _Query:
    """Query-string pairs with Rails' reading of ``name[]`` repeated keys."""

    pairs: list[tuple[str, str]]

    def one(self, name: str) -> str | None:
        for key, value in self.pairs:
            if key == name:
                return value
        return None

    def many(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == f"{name}[]"]


class FakeModyo:
    """The fake's state and its request handler. Not thread-safe; one event loop is enough."""

    OWNER = {"id": 1, "uuid": "00000000-0000-4000-8000-000000000001", "username": "scim-admin"}

    def __init__(
        self,
        token: str = "fake-modyo-token",
        *,
        seed: int = 0,
        first_id: int = 344,
        clock: Callable[[], float] = time.time,
        delete_team_members: bool = True,
        ignore_filters: bool = False,
        variant: Variant | None = None,
    ) -> None:
        self.token = token
        self.variant = variant or Variant()
        self._by_uuid: dict[str, int] = {}
        self.delete_team_members = delete_team_members
        self.ignore_filters = ignore_filters  # a Modyo that silently ignores search params
        self._clock = clock
        self._random = random.Random(seed)
        self._next_member_id = first_id
        self._next_group_id = first_id // 20 + 1
        self.team_members: dict[int, Json] = {}
        self.groups: dict[int, Json] = {}
        self._member_by_username: dict[str, int] = {}
        self._member_by_email: dict[str, int] = {}
        self._group_by_name: dict[str, int] = {}
        self._group_members: dict[int, dict[int, None]] = {}
        self._member_groups: dict[int, set[int]] = {}
        self._member_snapshots: dict[int, list[int]] = {}
        self.calls: Counter[str] = Counter()
        self._scripted: dict[str, list[FakeResponse]] = {}
        table: list[tuple[str, str, str, Callable[..., FakeResponse]]] = [
            ("GET", "/profile", "GET /profile", self._profile),
            ("GET", "/team_members", "GET /team_members", self._list_members),
            ("POST", "/team_members", "POST /team_members", self._create_member),
            ("GET", "/team_members/:id", "GET /team_members/:id", self._show_member),
            ("PUT", "/team_members/:id", "PUT /team_members/:id", self._update_member),
            ("PATCH", "/team_members/:id", "PUT /team_members/:id", self._update_member),
            ("DELETE", "/team_members/:id", "DELETE /team_members/:id", self._delete_member),
            ("GET", "/groups", "GET /groups", self._list_groups),
            ("POST", "/groups", "POST /groups", self._create_group),
            ("GET", "/groups/:id", "GET /groups/:id", self._show_group),
            ("PUT", "/groups/:id", "PUT /groups/:id", self._update_group),
            ("PATCH", "/groups/:id", "PUT /groups/:id", self._update_group),
            ("DELETE", "/groups/:id", "DELETE /groups/:id", self._delete_group),
            ("GET", "/groups/:id/team_members", "GET /groups/:id/team_members",
             self._list_group_members),
            ("POST", "/groups/:id/team_members", "POST /groups/:id/team_members",
             self._add_group_members),
            ("DELETE", "/groups/:id/team_members/:member_id",
             "DELETE /groups/:id/team_members/:member_id", self._remove_group_member),
        ]  # fmt: skip
        self._routes = [
            (method, re.compile(re.sub(r":\w+", "([^/]+)", template)), name, handler)
            for method, template, name, handler in table
        ]

    # ------------------------------------------------------------------ dispatch

    def route_name(self, method: str, path: str) -> str | None:
        """The counter key of a request (``"GET /team_members/:id"``), or None if unrouted."""
        matched = self._match(method, path)
        return matched[0] if matched else None

    def handle(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> FakeResponse:
        """Answer one request as Modyo would, counting it."""
        if not path.startswith(API_PREFIX):
            return FakeResponse(404, {"errors": ["Not found"]})
        if not self._authorised(headers or {}):
            return FakeResponse(401, {})
        matched = self._match(method, path)
        if matched is None:
            return self._unrouted(method, path)
        name, handler, args = matched
        self.calls[name] += 1
        if self._scripted.get(name):
            return self._scripted[name].pop(0)
        try:
            payload = _json_body(body) if method in ("POST", "PUT", "PATCH") else {}
            return handler(*args, query=_Query(list(query)), payload=payload)
        except _Failure as failure:
            return self.variant.styled(failure.response)

    def _match(
        self, method: str, path: str
    ) -> tuple[str, Callable[..., FakeResponse], tuple[str, ...]] | None:
        relative = path[len(API_PREFIX) :].rstrip("/")
        for route_method, pattern, name, handler in self._routes:
            found = pattern.fullmatch(relative)
            if found and route_method == method:
                return name, handler, found.groups()
        return None

    def _unrouted(self, method: str, path: str) -> FakeResponse:
        relative = path[len(API_PREFIX) :].rstrip("/")
        if any(pattern.fullmatch(relative) for _, pattern, _, _ in self._routes):
            return FakeResponse(405, {"errors": [f"{method} is not allowed here"]})
        return FakeResponse(404, {"errors": ["Not found"]})

    def _authorised(self, headers: Mapping[str, str]) -> bool:
        lowered = {key.lower(): value for key, value in headers.items()}
        supplied = lowered.get("authorization", "")
        scheme, _, credential = supplied.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credential.encode(), self.token.encode())

    # ------------------------------------------------------------------ helpers

    def _now(self) -> str:
        moment = datetime.fromtimestamp(self._clock(), tz=UTC).astimezone(MODYO_OFFSET)
        return moment.isoformat(timespec="milliseconds")

    def _new_uuid(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def _lookup(self, table: dict[int, Json], raw_id: str) -> Json:
        found = table.get(self._resolve(raw_id) or 0)
        if found is None:
            raise _Failure(NOT_FOUND)
        return found

    def _resolve(self, raw: Any) -> int | None:
        """The internal key of an id as a client sends it (the variant decides its form)."""
        if self.variant.uuid_ids:
            return self._by_uuid.get(raw) if isinstance(raw, str) else None
        return _as_id(raw)

    def external_id(self, row: Json) -> int | str:
        """The id clients see for a row: its integer ``id``, or its ``uuid``."""
        return str(row["uuid"]) if self.variant.uuid_ids else int(row["id"])

    def _external_ids(self, table: dict[int, Json], keys: Iterable[int]) -> list[int | str]:
        return [self.external_id(table[key]) for key in sorted(keys)]

    def _page(
        self, plural: str, rows: list[Json], query: _Query, view: Callable[[Json], Json]
    ) -> FakeResponse:
        """One page of ``rows`` in the documented envelope, each row of the page shown through
        ``view`` (only those: a page costs its size, not the table's, as a database's would)."""
        page, per_page = _page_params(query)
        window = rows[(page - 1) * per_page : page * per_page]
        shown = [_only(view(row), query) for row in window]
        return _envelope(plural, shown, len(rows), page, per_page)

    @staticmethod
    def _sorted(rows: list[Json], query: _Query, allowed: set[str]) -> list[Json]:
        """Default order ``updated_at DESC``; unknown sort_by/order values are ignored."""
        key = query.one("sort_by")
        key = key if key in allowed else "updated_at"
        descending = (query.one("order") or ("desc" if key == "updated_at" else "asc")) != "asc"
        if key == "id" and not descending:
            return rows  # tables iterate in id order
        return sorted(rows, key=lambda row: (row[key] or "", row["id"]), reverse=descending)

    # ------------------------------------------------------------------ profile

    def _profile(self, *, query: _Query, payload: Json) -> FakeResponse:
        return FakeResponse(
            200,
            {
                **self.OWNER,
                "email": "scim-admin@example.com",
                "first_name": "SCIM",
                "last_name": "Bridge",
                "name": "SCIM Bridge",
                "lang": "en",
            },
        )

    # ------------------------------------------------------------------ team members

    def _member_view(self, member: Json) -> Json:
        groups = self._external_ids(self.groups, self._member_groups.get(member["id"], ()))
        return {**member, "id": self.external_id(member), "group_ids": groups}

    def _list_members(self, *, query: _Query, payload: Json) -> FakeResponse:
        rows = self._filter_members(query)
        rows = self._sorted(rows, query, {"id", "username", "email", "created_at", "updated_at"})
        return self._page("team_members", rows, query, self._member_view)

    def _filter_members(self, query: _Query) -> list[Json]:
        candidates: Iterable[Json] = self.team_members.values()
        if self.ignore_filters:
            query = _Query([pair for pair in query.pairs if pair[0] not in _SEARCH_PARAMS])
        username = query.one("username")
        email = query.one("email")
        external_id = query.one("external_id")
        ids = query.many("ids")
        if username is not None:
            found = self._member_by_username.get(username.lower())
            candidates = [self.team_members[found]] if found is not None else []
        if email is not None:
            found = self._member_by_email.get(email.lower())
            selected = {found} if found is not None else set()
            candidates = [row for row in candidates if row["id"] in selected]
        if ids:
            wanted = {key for raw in ids if (key := self._resolve(raw)) is not None}
            if username is None and email is None:
                candidates = [
                    self.team_members[i] for i in sorted(wanted) if i in self.team_members
                ]
            else:
                candidates = [row for row in candidates if row["id"] in wanted]
        if external_id is not None:
            candidates = [row for row in candidates if row["external_id"] == external_id]
        return list(candidates)

    def _show_member(self, raw_id: str, *, query: _Query, payload: Json) -> FakeResponse:
        return FakeResponse(
            200, _only(self._member_view(self._lookup(self.team_members, raw_id)), query)
        )

    def _create_member(self, *, query: _Query, payload: Json) -> FakeResponse:
        values = _permitted(payload, MEMBER_ATTRIBUTES)
        values.setdefault("active", True)
        self._validate_member(values, current_id=None)
        member_id = self._next_member_id
        self._next_member_id += self._random.randint(1, 3)
        now = self._now()
        member: Json = {
            "id": member_id,
            "uuid": self._new_uuid(),
            "username": values["username"],
            "email": values["email"],
            "first_name": values.get("first_name"),
            "last_name": values.get("last_name"),
            "name": values.get("name") or _full_name(values),
            "external_id": values.get("external_id"),
            "active": values["active"],
            "lang": "en",
            "time_zone": "Santiago",
            "last_login_at": None,
            "created_at": now,
            "updated_at": now,
        }
        self.team_members[member_id] = member
        self._by_uuid[member["uuid"]] = member_id
        self._index_member(member)
        return FakeResponse(self.variant.create_status, self._member_view(member))

    def _update_member(self, raw_id: str, *, query: _Query, payload: Json) -> FakeResponse:
        member = self._lookup(self.team_members, raw_id)
        values = _permitted(payload, MEMBER_ATTRIBUTES)
        merged = {**member, **values}
        self._validate_member(merged, current_id=member["id"])
        parts_changed = bool({"first_name", "last_name"} & values.keys())
        if "name" not in values and parts_changed and member["name"] == _full_name(member):
            merged["name"] = _full_name(merged)  # a derived name follows its parts
        if merged.get("name") in (None, ""):
            merged["name"] = _full_name(merged)
        self._unindex_member(member)
        member.update(merged, updated_at=self._now())
        self._index_member(member)
        return FakeResponse(200, self._member_view(member))

    def _delete_member(self, raw_id: str, *, query: _Query, payload: Json) -> FakeResponse:
        if not self.delete_team_members:  # a Modyo without the assumed hard delete
            return FakeResponse(405, {"errors": ["DELETE is not allowed here"]})
        member = self._lookup(self.team_members, raw_id)
        member_id = member["id"]
        for group_id in self._member_groups.pop(member_id, set()):
            self._group_members[group_id].pop(member_id, None)
            self._member_snapshots.pop(group_id, None)
        self._unindex_member(member)
        del self.team_members[member_id]
        self._by_uuid.pop(member["uuid"], None)
        return self.variant.deleted()

    def _index_member(self, member: Json) -> None:
        self._member_by_username[member["username"].lower()] = member["id"]
        if member["email"]:
            self._member_by_email[member["email"].lower()] = member["id"]

    def _unindex_member(self, member: Json) -> None:
        self._member_by_username.pop(member["username"].lower(), None)
        if member["email"]:
            self._member_by_email.pop(member["email"].lower(), None)

    def _validate_member(self, values: Json, current_id: int | None) -> None:
        problems: list[Json] = []
        for name in ("username", "email"):
            if values.get(name) is None or str(values[name]).strip() == "":
                problems.append(_field_error(name, f"{name.capitalize()} can't be blank", "blank"))
        for name in ("username", "email", "first_name", "last_name", "name", "external_id"):
            if values.get(name) is not None and not isinstance(values[name], str):
                raise _errors(422, _field_error(name, "is invalid", "invalid"))
        if not isinstance(values.get("active"), bool):
            raise _errors(422, _field_error("active", "is invalid", "invalid"))
        username, email = values.get("username"), values.get("email")
        if username and not USERNAME_PATTERN.fullmatch(username):
            problems.append(_field_error("username", "is invalid", "invalid"))
        if email and not EMAIL_PATTERN.fullmatch(email):
            problems.append(_field_error("email", "is invalid", "invalid"))
        taken = (
            ("username", self._member_by_username, username),
            ("email", self._member_by_email, email),
        )
        for name, index, value in taken:
            holder = index.get(value.lower()) if isinstance(value, str) else None
            if holder is not None and holder != current_id:
                problems.append(_field_error(name, "has already been taken", "taken"))
        if problems:
            raise _errors(409, *problems)

    # ------------------------------------------------------------------ groups

    def _group_view(self, group: Json) -> Json:
        count = len(self._group_members[group["id"]])
        return {**group, "id": self.external_id(group), "admin_users_count": count}

    def _list_groups(self, *, query: _Query, payload: Json) -> FakeResponse:
        rows: list[Json] = list(self.groups.values())
        if self.ignore_filters:
            query = _Query([pair for pair in query.pairs if pair[0] not in _SEARCH_PARAMS])
        name = query.one("name")
        if name is not None:
            found = self._group_by_name.get(name.lower())
            rows = [self.groups[found]] if found is not None else []
        external_id = query.one("external_id")
        if external_id is not None:
            rows = [row for row in rows if row["external_id"] == external_id]
        rows = self._sorted(rows, query, {"id", "name", "created_at", "updated_at"})
        return self._page("groups", rows, query, self._group_view)

    def _show_group(self, raw_id: str, *, query: _Query, payload: Json) -> FakeResponse:
        return FakeResponse(200, _only(self._group_view(self._lookup(self.groups, raw_id)), query))

    def _create_group(self, *, query: _Query, payload: Json) -> FakeResponse:
        values = _permitted(payload, GROUP_ATTRIBUTES)
        self._validate_group(values, current_id=None)
        group_id = self._next_group_id
        self._next_group_id += self._random.randint(1, 2)
        now = self._now()
        group: Json = {
            "id": group_id,
            "uuid": self._new_uuid(),
            "name": values["name"],
            "external_id": values.get("external_id"),
            "created_at": now,
            "updated_at": now,
        }
        self.groups[group_id] = group
        self._by_uuid[group["uuid"]] = group_id
        self._group_by_name[group["name"].lower()] = group_id
        self._group_members[group_id] = {}
        return FakeResponse(self.variant.create_status, self._group_view(group))

    def _update_group(self, raw_id: str, *, query: _Query, payload: Json) -> FakeResponse:
        group = self._lookup(self.groups, raw_id)
        values = _permitted(payload, GROUP_ATTRIBUTES)
        merged = {**group, **values}
        self._validate_group(merged, current_id=group["id"])
        del self._group_by_name[group["name"].lower()]
        group.update(merged, updated_at=self._now())
        self._group_by_name[group["name"].lower()] = group["id"]
        return FakeResponse(200, self._group_view(group))

    def _delete_group(self, raw_id: str, *, query: _Query, payload: Json) -> FakeResponse:
        group = self._lookup(self.groups, raw_id)
        group_id = group["id"]
        for member_id in self._group_members.pop(group_id):
            self._member_groups[member_id].discard(group_id)
        self._member_snapshots.pop(group_id, None)
        del self._group_by_name[group["name"].lower()]
        del self.groups[group_id]
        self._by_uuid.pop(group["uuid"], None)
        return self.variant.deleted()

    def _validate_group(self, values: Json, current_id: int | None) -> None:
        name = values.get("name")
        if values.get("external_id") is not None and not isinstance(values["external_id"], str):
            raise _errors(422, _field_error("external_id", "is invalid", "invalid"))
        if name is not None and not isinstance(name, str):
            raise _errors(422, _field_error("name", "is invalid", "invalid"))
        if name is None or name.strip() == "":
            raise _errors(409, _field_error("name", "Name can't be blank", "blank"))
        holder = self._group_by_name.get(name.lower())
        if holder is not None and holder != current_id:
            raise _errors(409, _field_error("name", "has already been taken", "taken"))

    # ------------------------------------------------------------------ memberships

    def _list_group_members(self, raw_id: str, *, query: _Query, payload: Json) -> FakeResponse:
        """Members in id order, paged over a snapshot rebuilt only after a membership change."""
        group_id = self._lookup(self.groups, raw_id)["id"]
        snapshot = self._member_snapshots.get(group_id)
        if snapshot is None:
            snapshot = self._member_snapshots[group_id] = sorted(self._group_members[group_id])
        page, per_page = _page_params(query)
        window = snapshot[(page - 1) * per_page : page * per_page]
        rows = [_only(self._member_view(self.team_members[i]), query) for i in window]
        return _envelope("team_members", rows, len(snapshot), page, per_page)

    def _add_group_members(self, raw_id: str, *, query: _Query, payload: Json) -> FakeResponse:
        group_id = self._lookup(self.groups, raw_id)["id"]
        raw_ids = payload.get("team_member_ids")
        if not isinstance(raw_ids, list) or not raw_ids:
            raise _errors(
                422, _field_error("team_member_ids", "must be a non-empty list", "invalid")
            )
        if len(raw_ids) > MAX_IDS_PER_MEMBERSHIP_CALL:
            raise _errors(
                422, _field_error("team_member_ids", "at most 100 ids per request", "too_long")
            )
        wanted = [self._resolve(raw) for raw in raw_ids]
        unknown = sorted({i for i in wanted if i is None or i not in self.team_members}, key=str)
        if unknown:
            shown = [
                raw
                for raw in raw_ids
                if self._resolve(raw) is None or self._resolve(raw) not in self.team_members
            ]
            raise _errors(
                409,
                _field_error(
                    "team_member_ids",
                    "contains unknown team members: " + ", ".join(str(raw) for raw in shown),
                    "not_found",
                    ids=shown,
                ),
            )
        members = self._group_members[group_id]
        changed = False
        for member_id in wanted:
            assert member_id is not None
            if member_id not in members:
                members[member_id] = None
                self._member_groups.setdefault(member_id, set()).add(group_id)
                changed = True
        if changed:
            self._member_snapshots.pop(group_id, None)
        return FakeResponse(204)

    def _remove_group_member(
        self, raw_id: str, raw_member_id: str, *, query: _Query, payload: Json
    ) -> FakeResponse:
        group_id = self._lookup(self.groups, raw_id)["id"]
        member_id = self._resolve(raw_member_id)
        members = self._group_members[group_id]
        if member_id is None or member_id not in members:
            return NOT_FOUND
        del members[member_id]
        self._member_groups[member_id].discard(group_id)
        self._member_snapshots.pop(group_id, None)
        return FakeResponse(204)

    # ------------------------------------------------------------------ test helpers

    def client_id(self, kind: str, key: int) -> int | str:
        """The id a client uses for a seeded ``user`` or ``group`` (the variant's form)."""
        return self.external_id((self.team_members if kind == "user" else self.groups)[key])

    def user_name(self, member_id: int) -> str:
        """A seeded member's username (the control plane's seed answer)."""
        name: str = self.team_members[member_id]["username"]
        return name

    def group_member_ids(self, group_id: int) -> set[int]:
        """The members of a group, for assertions (not part of the HTTP contract)."""
        return set(self._group_members[group_id])

    def seed_members(self, count: int, prefix: str = "seed") -> list[int]:
        """Create ``count`` team members directly (no call counted): fixtures and benchmarks."""
        created = []
        for number in range(count):
            address = f"{prefix}{number}@example.com"
            response = self._create_member(
                query=_Query([]), payload={"username": address, "email": address}
            )
            created.append(self._by_uuid[response.body["uuid"]])
        return created

    def seed_group(self, name: str, members: Sequence[int] = ()) -> int:
        """Create a group holding ``members`` directly (no call counted)."""
        created = self._create_group(query=_Query([]), payload={"name": name})
        group_id = self._by_uuid[created.body["uuid"]]
        self._put_members(group_id, members)
        return group_id

    def seed_group_members(self, group_id: int, count: int, prefix: str = "bulk") -> list[int]:
        """Create ``count`` team members and put them in a group, without counting calls."""
        created = self.seed_members(count, prefix)
        self._put_members(group_id, created)
        return created

    def _put_members(self, group_id: int, member_ids: Sequence[int]) -> None:
        members = self._group_members[group_id]
        for member_id in member_ids:
            members[member_id] = None
            self._member_groups.setdefault(member_id, set()).add(group_id)
        self._member_snapshots.pop(group_id, None)

    def reset_calls(self) -> None:
        self.calls.clear()

    def script(self, route: str, *responses: FakeResponse) -> None:
        """Answer the next calls to ``route`` (a ``calls`` key) with ``responses``, without
        applying them: a test's way to fail one precise step."""
        self._scripted.setdefault(route, []).extend(responses)


_SEARCH_PARAMS = frozenset({"username", "email", "external_id", "name"})
MEMBER_ATTRIBUTES = (
    "username",
    "email",
    "first_name",
    "last_name",
    "name",
    "external_id",
    "active",
)
GROUP_ATTRIBUTES = ("name", "external_id")


def _permitted(payload: Json, names: tuple[str, ...]) -> Json:
    """Rails strong parameters: unpermitted keys are dropped silently."""
    return {name: payload[name] for name in names if name in payload}


def _json_body(body: bytes) -> Json:
    if not body:
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        raise _errors(422, "Body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise _errors(422, "Body must be a JSON object")
    return parsed


def _page_params(query: _Query) -> tuple[int, int]:
    """page/per_page with Modyo's silent clamps [API L537-L549]: bad values fall back to
    page 1 and 10 per page, ``paginate=false`` means 100, and more than 100 means 100."""
    per_page = _positive_int(query.one("per_page"), DEFAULT_PER_PAGE)
    if query.one("paginate") == "false":
        per_page = MAX_PER_PAGE
    return _positive_int(query.one("page"), 1), min(per_page, MAX_PER_PAGE)


def _envelope(plural: str, rows: list[Json], total: int, page: int, per_page: int) -> FakeResponse:
    meta = {
        "total_entries": total,
        "per_page": per_page,
        "current_page": page,
        "total_pages": (total + per_page - 1) // per_page,
    }
    return FakeResponse(200, {plural: rows, "meta": meta})


def _positive_int(raw: str | None, default: int) -> int:
    """A decimal above 0, else ``default``; one of more digits than a 64-bit integer holds is
    past every page (as a database's offset: an empty page, never an error)."""
    found = _DECIMAL.fullmatch(raw.strip()) if raw is not None else None
    if found is None:
        return default
    if len(found.group(2)) > MAX_ID_DIGITS:
        return default if found.group(1) else sys.maxsize
    value = int(found.group(0))
    return value if value > 0 else default


_DECIMAL = re.compile(r"(-?)([0-9]+)")
MAX_ID_DIGITS = len(str(2**63 - 1))  # Modyo's ids are 64-bit integers (Rails' bigint keys)


def _as_id(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and raw[0] != "0":
        # canonical decimal only: "012" names nothing, nor does a number no id column holds
        return int(raw) if len(raw) <= MAX_ID_DIGITS else None
    return None


def _only(row: Json, query: _Query) -> Json:
    """``only[]`` trims attributes; unknown names are dropped (a comma-joined value keeps none)."""
    wanted = query.many("only")
    if not wanted:
        return row
    return {key: row[key] for key in wanted if key in row}


def _full_name(values: Mapping[str, Any]) -> str:
    return " ".join(part for part in (values.get("first_name"), values.get("last_name")) if part)
