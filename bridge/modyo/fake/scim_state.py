"""A stateful, in-memory Modyo SCIM 2.0 server (``/api/admin/scim``): Modyo's own SCIM
endpoint, documented gaps included (docs/design/modyo-contract.md §9).

Documented [SCIM L86-L102] (modyo-admin-api.md §1, §2a, §4, §5.2) and reproduced exactly:

- ``GET/POST /Users``, ``GET/PATCH /Users/:id``; ``GET/POST /Groups``,
  ``GET/PATCH/DELETE /Groups/:id``; ``GET /Schemas`` (User and Group core schemas).
- ``DELETE /Users/:id``: the route exists, but it fails with a generic error that is not a
  SCIM answer (here Rails' HTML 500 page) and the user is unchanged.
- Only two filters, on users: ``userName eq "…"`` and ``externalId eq "…"``.
- User PATCH applies ``userName``, ``name``, ``emails`` and ``active`` only; any other
  attribute is ignored silently.
- Every SCIM answer, errors included, is ``application/scim+json``.
- The same bearer token as the Admin API.

GUESSES (nothing documented; each is the RFC's reading unless said otherwise):

- No ``PUT``, no ``/ServiceProviderConfig``, no ``/ResourceTypes``: unlisted routes answer
  Rails' HTML 404 page (not SCIM).
- Any other user filter is refused (400 ``invalidFilter``); a filter on ``/Groups`` is ignored
  and every group is listed (G4's risk: an ignored filter reads as a match).
- ListResponse as RFC 7644 §3.4.2: ``startIndex`` 1-based (below 1 means 1), ``count``
  default and maximum 100, clamped silently (G3); ``count=0`` gives ``totalResults`` only.
  Listings are in creation order.
- Ids are opaque strings, here UUIDs (G2: Modyo's documented examples are Microsoft's).
- Statuses (G15): 201 on create, 200 with the user on user PATCH, 204 on group PATCH and
  group DELETE; a bad token 401; an unknown id 404; all as RFC 7644 §3.12 errors.
- ``userName`` and the email are unique ignoring case (409 ``uniqueness``, G7); a group's
  ``displayName`` is not unique (why Entra creates duplicates without the bridge).
- A user needs a ``userName`` in Modyo's username alphabet [ROLES L23] and an email
  [SCIM L82] (400 ``invalidValue``); ``active`` must be a JSON boolean.
- PATCH is strict RFC 7644 §3.5.2: ``op`` is exactly ``add``, ``remove`` or ``replace``
  (else 400 ``invalidSyntax``), and ``remove`` of ``members`` without a filter removes every
  member (even when Entra's legacy value list is attached). Strict on purpose: the tests then
  prove the bridge sends RFC form, which a lenient server accepts too.
- Users carry ``groups`` (RFC 7643 §4.1.2, readOnly), the groups they are members of; group
  members carry ``value`` and ``display`` (the user's ``userName``).
- ``excludedAttributes=members`` is honoured on group reads and listings (RFC 7644 §3.9).
- Group PATCH applies ``displayName`` and ``members`` (add, remove ``members[value eq "id"]``,
  replace); others, ``externalId`` included, are ignored. Unknown member ids: 400
  ``invalidValue``, nothing applied.

Every routed request is counted in ``calls`` (``"PATCH /scim/Groups/:id"``...); a group of
50,000 members costs O(1) per membership change and is rendered only when it is read.
"""

from __future__ import annotations

import hmac
import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any
from urllib.parse import unquote

from bridge.modyo.fake.state import EMAIL_PATTERN, MODYO_OFFSET, USERNAME_PATTERN, FakeResponse

SCIM_PREFIX = "/api/admin/scim"
PROFILE_PATH = "/api/admin/profile"
PROFILE = {"id": 1, "username": "scim-admin", "email": "scim-admin@example.com", "active": True}
SCIM_MEDIA_TYPE = "application/scim+json; charset=utf-8"
HTML_MEDIA_TYPE = "text/html; charset=utf-8"
MAX_COUNT = 100
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SCHEMA_URN = "urn:ietf:params:scim:schemas:core:2.0:Schema"
PATCHABLE = ("username", "name", "emails", "active")  # [SCIM L93]

RAILS_404 = "<!DOCTYPE html><html><body><h1>The page you were looking for doesn't exist.</h1>"
RAILS_500 = "<!DOCTYPE html><html><body><h1>We're sorry, but something went wrong.</h1>"

_FILTER = re.compile(r'^\s*(userName|externalId)\s+eq\s+("(?:[^"\\]|\\.)*")\s*$', re.IGNORECASE)
_MEMBER_FILTER = re.compile(r'^members\[\s*value\s+eq\s+("(?:[^"\\]|\\.)*")\s*\]$', re.IGNORECASE)
_WORK_EMAIL = re.compile(r'^emails\[\s*type\s+eq\s+"work"\s*\]\.value$', re.IGNORECASE)

Json = dict[str, Any]


def scim_error(status: int, detail: str, scim_type: str | None = None) -> FakeResponse:
    """An RFC 7644 §3.12 error in ``application/scim+json``."""
    body: Json = {"schemas": [ERROR_URN], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return FakeResponse(status, body, media_type=SCIM_MEDIA_TYPE)


def _scim(status: int, body: Any = None) -> FakeResponse:
    return FakeResponse(status, body, media_type=SCIM_MEDIA_TYPE)


class _Failure(Exception):
    def __init__(self, response: FakeResponse) -> None:
        self.response = response


def _fail(status: int, detail: str, scim_type: str | None = None) -> _Failure:
    return _Failure(scim_error(status, detail, scim_type))


NOT_FOUND_PAGE = FakeResponse(404, RAILS_404, media_type=HTML_MEDIA_TYPE)


@dataclass(slots=True)
class _Query:
    pairs: list[tuple[str, str]]

    def one(self, name: str) -> str | None:
        for key, value in self.pairs:
            if key.lower() == name.lower():
                return value
        return None


class FakeModyoScim:
    """The SCIM server's state and request handler (one event loop; not thread-safe)."""

    def __init__(
        self,
        token: str = "fake-modyo-token",
        *,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self._clock = clock
        self._random = random.Random(seed)
        self.users: dict[str, Json] = {}
        self.groups: dict[str, Json] = {}
        self._user_by_name: dict[str, str] = {}
        self._user_by_email: dict[str, str] = {}
        self._group_members: dict[str, dict[str, None]] = {}
        self._user_groups: dict[str, dict[str, None]] = {}
        self.calls: Counter[str] = Counter()
        self._scripted: dict[str, list[FakeResponse]] = {}
        table: list[tuple[str, str, Callable[..., FakeResponse]]] = [
            ("GET", "/Users", self._list_users),
            ("POST", "/Users", self._create_user),
            ("GET", "/Users/:id", self._show_user),
            ("PATCH", "/Users/:id", self._patch_user),
            ("DELETE", "/Users/:id", self._delete_user),
            ("GET", "/Groups", self._list_groups),
            ("POST", "/Groups", self._create_group),
            ("GET", "/Groups/:id", self._show_group),
            ("PATCH", "/Groups/:id", self._patch_group),
            ("DELETE", "/Groups/:id", self._delete_group),
            ("GET", "/Schemas", self._schemas),
        ]
        self._routes = [
            (method, re.compile(template.replace(":id", "([^/]+)")),
             f"{method} /scim{template}", handler)
            for method, template, handler in table
        ]  # fmt: skip

    # ------------------------------------------------------------------ dispatch

    def route_name(self, method: str, path: str) -> str | None:
        if method == "GET" and path == PROFILE_PATH:
            return "GET /profile"
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
        """Answer one request as Modyo's SCIM server would, counting it (``path`` as sent:
        an id is one percent-encoded segment). Beside the SCIM server, the token owner's
        ``GET /api/admin/profile`` [API L757-L780], which the same token reaches."""
        if method == "GET" and path == PROFILE_PATH:
            if not self._authorised(headers or {}):
                return FakeResponse(401, {})
            self.calls["GET /profile"] += 1
            return FakeResponse(200, dict(PROFILE))
        if not (path == SCIM_PREFIX or path.startswith(SCIM_PREFIX + "/")):
            return NOT_FOUND_PAGE
        if not self._authorised(headers or {}):
            return scim_error(401, "Unauthorized")
        matched = self._match(method, path)
        if matched is None:
            return NOT_FOUND_PAGE
        name, handler, args = matched
        self.calls[name] += 1
        if self._scripted.get(name):
            return self._scripted[name].pop(0)
        try:
            payload = _json_body(body) if method in ("POST", "PATCH") else {}
            return handler(*args, query=_Query(list(query)), payload=payload)
        except _Failure as failure:
            return failure.response

    def _match(
        self, method: str, path: str
    ) -> tuple[str, Callable[..., FakeResponse], tuple[str, ...]] | None:
        relative = path[len(SCIM_PREFIX) :].rstrip("/")
        for route_method, pattern, name, handler in self._routes:
            found = pattern.fullmatch(relative)
            if found and route_method == method:
                return name, handler, tuple(unquote(part) for part in found.groups())
        return None

    def _authorised(self, headers: Mapping[str, str]) -> bool:
        lowered = {key.lower(): value for key, value in headers.items()}
        scheme, _, credential = lowered.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credential.encode(), self.token.encode()
        )

    # ------------------------------------------------------------------ helpers

    def _now(self) -> str:
        moment = datetime.fromtimestamp(self._clock(), tz=UTC).astimezone(MODYO_OFFSET)
        return moment.isoformat(timespec="milliseconds")

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def _list(
        self, rows: Iterable[Json], total: int, query: _Query, render: Callable[[Json], Json]
    ) -> FakeResponse:
        """One window of ``rows``; only the rows in it are rendered. A window past the end is
        an empty page, however far (a database's offset, not an error)."""
        start = max(1, _int(query.one("startIndex"), 1))
        count = min(MAX_COUNT, max(0, _int(query.one("count"), MAX_COUNT)))
        first = min(start - 1, total)
        page = [render(row) for row in islice(rows, first, first + count)] if count else []
        return _scim(
            200,
            {
                "schemas": [LIST_URN],
                "totalResults": total,
                "itemsPerPage": len(page),
                "startIndex": start,
                "Resources": page,
            },
        )

    # ------------------------------------------------------------------ users

    def _user_view(self, user: Json) -> Json:
        view: Json = {"schemas": [USER_URN], "id": user["id"]}
        if user["externalId"] is not None:
            view["externalId"] = user["externalId"]
        view["userName"] = user["userName"]
        if user["name"]:
            view["name"] = dict(user["name"])
        if user["email"]:
            view["emails"] = [{"value": user["email"], "type": "work", "primary": True}]
        view["active"] = user["active"]
        groups = self._user_groups.get(user["id"], {})
        if groups:
            view["groups"] = [
                {"value": gid, "display": self.groups[gid]["displayName"], "type": "direct"}
                for gid in groups
            ]
        view["meta"] = {
            "resourceType": "User",
            "created": user["created"],
            "lastModified": user["lastModified"],
            "location": f"{SCIM_PREFIX}/Users/{user['id']}",
        }
        return view

    def _list_users(self, *, query: _Query, payload: Json) -> FakeResponse:
        text = query.one("filter")
        if text is None:
            return self._list(self.users.values(), len(self.users), query, self._user_view)
        attribute, value = _user_filter(text)
        if attribute == "username":
            found = self._user_by_name.get(value.lower())
            rows = [self.users[found]] if found is not None else []
        else:
            rows = [user for user in self.users.values() if user["externalId"] == value]
        return self._list(rows, len(rows), query, self._user_view)

    def _user_or_404(self, user_id: str) -> Json:
        user = self.users.get(user_id)
        if user is None:
            raise _fail(404, f"User {user_id} not found")
        return user

    def _show_user(self, user_id: str, *, query: _Query, payload: Json) -> FakeResponse:
        return _scim(200, self._user_view(self._user_or_404(user_id)))

    def _create_user(self, *, query: _Query, payload: Json) -> FakeResponse:
        user: Json = {"userName": None, "externalId": None, "name": {}, "email": None}
        user["active"] = True
        for key, value in payload.items():
            _apply_user_value(user, key.lower(), value, create=True)
        self._validate_user(user, current_id=None)
        now = self._now()
        user.update(id=self._new_id(), created=now, lastModified=now)
        self._store_user(user)
        return _scim(201, self._user_view(user))

    def _patch_user(self, user_id: str, *, query: _Query, payload: Json) -> FakeResponse:
        current = self._user_or_404(user_id)
        user = {**current, "name": dict(current["name"])}
        for operation in _operations(payload):
            op, path, value = operation
            if path is None:
                if op == "remove" or not isinstance(value, dict):
                    raise _fail(400, "add/replace without a path needs an object", "invalidSyntax")
                for key, item in value.items():
                    _apply_user_value(user, key.lower(), item, create=False)
            elif op == "remove":
                _remove_user_value(user, path)
            else:
                _apply_user_path(user, path, value, add=op == "add")
        self._validate_user(user, current_id=user_id)
        self._unindex_user(current)
        current.update(user, lastModified=self._now())
        self._index_user(current)
        return _scim(200, self._user_view(current))

    def _delete_user(self, user_id: str, *, query: _Query, payload: Json) -> FakeResponse:
        """Documented [SCIM L100-L102]: a generic, non-SCIM error; nothing changes."""
        return FakeResponse(500, RAILS_500, media_type=HTML_MEDIA_TYPE)

    def _validate_user(self, user: Json, current_id: str | None) -> None:
        name, email = user["userName"], user["email"]
        if not isinstance(name, str) or not name.strip():
            raise _fail(400, "userName is required", "invalidValue")
        if not USERNAME_PATTERN.fullmatch(name):
            raise _fail(
                400, f"userName {name!r} has characters Modyo does not allow", "invalidValue"
            )
        if not isinstance(email, str) or not EMAIL_PATTERN.fullmatch(email):
            raise _fail(400, "a valid email is required", "invalidValue")
        if not isinstance(user["active"], bool):
            raise _fail(400, "active must be a boolean", "invalidValue")
        for attribute, index, value in (
            ("userName", self._user_by_name, name),
            ("email", self._user_by_email, email),
        ):
            holder = index.get(value.lower())
            if holder is not None and holder != current_id:
                raise _fail(409, f"{attribute} has already been taken", "uniqueness")

    def _store_user(self, user: Json) -> None:
        self.users[user["id"]] = user
        self._index_user(user)

    def _index_user(self, user: Json) -> None:
        self._user_by_name[user["userName"].lower()] = user["id"]
        self._user_by_email[user["email"].lower()] = user["id"]

    def _unindex_user(self, user: Json) -> None:
        self._user_by_name.pop(user["userName"].lower(), None)
        self._user_by_email.pop(user["email"].lower(), None)

    # ------------------------------------------------------------------ groups

    def _group_view(self, group: Json, query: _Query) -> Json:
        view: Json = {"schemas": [GROUP_URN], "id": group["id"]}
        if group["externalId"] is not None:
            view["externalId"] = group["externalId"]
        view["displayName"] = group["displayName"]
        excluded = {
            name.strip().lower() for name in (query.one("excludedAttributes") or "").split(",")
        }
        if "members" not in excluded:
            view["members"] = [
                {"value": uid, "display": self.users[uid]["userName"], "type": "User"}
                for uid in self._group_members[group["id"]]
            ]
        view["meta"] = {
            "resourceType": "Group",
            "created": group["created"],
            "lastModified": group["lastModified"],
            "location": f"{SCIM_PREFIX}/Groups/{group['id']}",
        }
        return view

    def _list_groups(self, *, query: _Query, payload: Json) -> FakeResponse:
        """Any ``filter`` is ignored (GUESS, G4): every group is listed."""
        return self._list(
            self.groups.values(), len(self.groups), query, lambda g: self._group_view(g, query)
        )

    def _group_or_404(self, group_id: str) -> Json:
        group = self.groups.get(group_id)
        if group is None:
            raise _fail(404, f"Group {group_id} not found")
        return group

    def _show_group(self, group_id: str, *, query: _Query, payload: Json) -> FakeResponse:
        return _scim(200, self._group_view(self._group_or_404(group_id), query))

    def _create_group(self, *, query: _Query, payload: Json) -> FakeResponse:
        fields = {key.lower(): value for key, value in payload.items()}
        name, external_id = fields.get("displayname"), fields.get("externalid")
        if not isinstance(name, str) or not name.strip():
            raise _fail(400, "displayName is required", "invalidValue")
        if external_id is not None and not isinstance(external_id, str):
            raise _fail(400, "externalId must be a string", "invalidValue")
        members = self._known_members(fields.get("members") or [])
        now = self._now()
        group: Json = {"id": self._new_id(), "displayName": name, "externalId": external_id,
                       "created": now, "lastModified": now}  # fmt: skip
        self.groups[group["id"]] = group
        self._group_members[group["id"]] = {}
        self._put_members(group["id"], members)
        return _scim(201, self._group_view(group, query))

    def _patch_group(self, group_id: str, *, query: _Query, payload: Json) -> FakeResponse:
        """Applied all at once, or not at all; O(members changed), not O(group size), except
        a replace or removal of all members."""
        group = self._group_or_404(group_id)
        name = group["displayName"]
        delta = _MemberDelta()
        for op, path, value in _operations(payload):
            if path is None:
                if op == "remove" or not isinstance(value, dict):
                    raise _fail(400, "add/replace without a path needs an object", "invalidSyntax")
                changes = {key.lower(): item for key, item in value.items()}
                if "displayname" in changes:
                    name = _display_name(changes["displayname"])
                if "members" in changes:
                    delta.put(self._known_members(changes["members"]), replace=op == "replace")
                continue
            lowered = path.lower()
            selected = _MEMBER_FILTER.fullmatch(path)
            if lowered == "displayname" and op != "remove":
                name = _display_name(value)
            elif selected is not None and op == "remove":
                delta.remove(_json_string(selected.group(1), "invalidPath"))
            elif lowered == "members" and op == "remove":
                delta.put([], replace=True)  # RFC 7644 §3.5.2.2: no filter, every member goes
            elif lowered == "members":
                delta.put(self._known_members(value), replace=op == "replace")
            # anything else (externalId included) is ignored
        group.update(displayName=name, lastModified=self._now())
        if delta.replaced:
            self._set_members(group_id, delta.added)
        else:
            self._drop_members(group_id, delta.removed)
            self._put_members(group_id, delta.added)
        return _scim(204)

    def _delete_group(self, group_id: str, *, query: _Query, payload: Json) -> FakeResponse:
        self._group_or_404(group_id)
        self._set_members(group_id, {})
        del self._group_members[group_id]
        del self.groups[group_id]
        return _scim(204)

    def _known_members(self, value: Any) -> list[str]:
        entries = value if isinstance(value, list) else [value]
        ids = []
        for entry in entries:
            member = entry.get("value") if isinstance(entry, dict) else None
            if not isinstance(member, str) or member not in self.users:
                raise _fail(400, f"member {member!r} is not a user", "invalidValue")
            ids.append(member)
        return ids

    def _put_members(self, group_id: str, user_ids: Iterable[str]) -> None:
        members = self._group_members[group_id]
        for user_id in user_ids:
            members[user_id] = None
            self._user_groups.setdefault(user_id, {})[group_id] = None

    def _drop_members(self, group_id: str, user_ids: Iterable[str]) -> None:
        members = self._group_members[group_id]
        for user_id in user_ids:
            if user_id in members:
                del members[user_id]
                self._user_groups[user_id].pop(group_id, None)

    def _set_members(self, group_id: str, wanted: dict[str, None]) -> None:
        """Make the members exactly ``wanted``: O(changes), whatever the group's size."""
        members = self._group_members[group_id]
        for user_id in [uid for uid in members if uid not in wanted]:
            del members[user_id]
            self._user_groups[user_id].pop(group_id, None)
        self._put_members(group_id, [uid for uid in wanted if uid not in members])

    # ------------------------------------------------------------------ discovery

    def _schemas(self, *, query: _Query, payload: Json) -> FakeResponse:
        """Documented [SCIM L96]: the User and Group core schemas (attributes abridged)."""
        resources = [
            {"schemas": [SCHEMA_URN], "id": USER_URN, "name": "User",
             "attributes": [{"name": n} for n in ("userName", "name", "emails", "active",
                                                   "externalId", "groups")]},
            {"schemas": [SCHEMA_URN], "id": GROUP_URN, "name": "Group",
             "attributes": [{"name": n} for n in ("displayName", "externalId", "members")]},
        ]  # fmt: skip
        return self._list(resources, len(resources), query, lambda schema: schema)

    # ------------------------------------------------------------------ test helpers

    def seed_members(self, count: int, prefix: str = "seed") -> list[str]:
        """Create ``count`` users directly (no call counted): fixtures and benchmarks."""
        created = []
        now = self._now()
        for number in range(count):
            address = f"{prefix}{number}@example.com"
            user: Json = {"id": self._new_id(), "userName": address, "externalId": None,
                          "name": {}, "email": address, "active": True,
                          "created": now, "lastModified": now}  # fmt: skip
            self._validate_user(user, current_id=None)
            self._store_user(user)
            created.append(user["id"])
        return created

    def seed_group(self, name: str, members: Sequence[str] = ()) -> str:
        """Create a group holding ``members`` directly (no call counted)."""
        response = self._create_group(query=_Query([]), payload={"displayName": name})
        group_id: str = response.body["id"]
        self._put_members(group_id, members)
        return group_id

    def seed_group_members(self, group_id: str, count: int, prefix: str = "bulk") -> list[str]:
        created = self.seed_members(count, prefix)
        self._put_members(group_id, created)
        return created

    def client_id(self, kind: str, key: str) -> str:
        """The id a client uses for a seeded object: its SCIM id."""
        return key

    def user_name(self, member_id: str) -> str:
        name: str = self.users[member_id]["userName"]
        return name

    def group_member_ids(self, group_id: str) -> set[str]:
        return set(self._group_members[group_id])

    def reset_calls(self) -> None:
        self.calls.clear()

    def script(self, route: str, *responses: FakeResponse) -> None:
        """Answer the next calls to ``route`` (a ``calls`` key) with ``responses``, without
        applying them."""
        self._scripted.setdefault(route, []).extend(responses)


@dataclass(slots=True)
class _MemberDelta:
    """A group PATCH's membership operations, in order, as a change to the current members
    (or, after a replace, as the whole new set)."""

    added: dict[str, None] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    replaced: bool = False

    def put(self, user_ids: Iterable[str], *, replace: bool) -> None:
        if replace:
            self.added, self.removed, self.replaced = {}, set(), True
        for user_id in user_ids:
            self.added[user_id] = None
            self.removed.discard(user_id)

    def remove(self, user_id: str) -> None:
        self.added.pop(user_id, None)
        if not self.replaced:
            self.removed.add(user_id)


# ---------------------------------------------------------------------- request reading


def _json_body(body: bytes) -> Json:
    if not body:
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        raise _fail(400, "the body is not valid JSON", "invalidSyntax") from None
    if not isinstance(parsed, dict):
        raise _fail(400, "the body must be a JSON object", "invalidSyntax")
    return parsed


def _int(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        return default


def _user_filter(text: str) -> tuple[str, str]:
    """The two documented filters [SCIM L92]; anything else is refused (GUESS)."""
    found = _FILTER.fullmatch(text)
    if found is None:
        raise _fail(400, "only userName eq and externalId eq filters are supported",
                    "invalidFilter")  # fmt: skip
    return found.group(1).lower(), _json_string(found.group(2), "invalidFilter")


def _json_string(quoted: str, scim_type: str) -> str:
    """A filter's quoted value, read as JSON reads a string (an escape it does not know is
    the client's error, a 400)."""
    try:
        return str(json.loads(quoted))
    except ValueError:
        raise _fail(400, f"{quoted} is not a valid string", scim_type) from None


def _operations(payload: Json) -> list[tuple[str, str | None, Any]]:
    """A PatchOp's operations, strictly as RFC 7644 §3.5.2 writes them."""
    schemas = payload.get("schemas")
    if not isinstance(schemas, list) or PATCH_URN not in schemas:
        raise _fail(400, "a PatchOp must carry the PatchOp schema", "invalidSyntax")
    operations = payload.get("Operations")
    if not isinstance(operations, list) or not operations:
        raise _fail(400, "a PatchOp needs Operations", "invalidSyntax")
    read = []
    for operation in operations:
        if not isinstance(operation, dict) or operation.get("op") not in (
            "add",
            "remove",
            "replace",
        ):
            raise _fail(400, "op must be add, remove or replace", "invalidSyntax")
        path = operation.get("path")
        if path is not None and not isinstance(path, str):
            raise _fail(400, "path must be a string", "invalidPath")
        if operation["op"] != "remove" and "value" not in operation:
            raise _fail(400, "add and replace need a value", "invalidSyntax")
        read.append((operation["op"], path, operation.get("value")))
    return read


def _display_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(400, "displayName must be a non-empty string", "invalidValue")
    return value


def _one_email(value: Any) -> str | None:
    """Modyo holds one email: the work one, else the primary one, else the first (GUESS)."""
    entries = [entry for entry in (value if isinstance(value, list) else [value])
               if isinstance(entry, dict) and entry.get("value")]  # fmt: skip
    for test in (lambda e: e.get("type") == "work", lambda e: e.get("primary") is True, bool):
        for entry in entries:
            if test(entry):
                email = entry["value"]
                return email if isinstance(email, str) else None
    return None


def _apply_user_value(user: Json, key: str, value: Any, *, create: bool) -> None:
    """One top-level attribute of a create body or a path-less PATCH value."""
    if not create and key not in PATCHABLE:
        return  # documented: PATCH applies userName, name, emails and active only
    if key == "username":
        user["userName"] = value
    elif key == "externalid" and create:
        if value is not None and not isinstance(value, str):
            raise _fail(400, "externalId must be a string", "invalidValue")
        user["externalId"] = value
    elif key == "name":
        if value is not None and not isinstance(value, dict):
            raise _fail(400, "name must be an object", "invalidValue")
        user["name"] = _name(value or {})
    elif key == "emails":
        user["email"] = _one_email(value)
    elif key == "active":
        user["active"] = value


def _name(value: Mapping[str, Any]) -> dict[str, str]:
    name = {}
    for key, item in value.items():
        canonical = {"givenname": "givenName", "familyname": "familyName",
                     "formatted": "formatted"}.get(key.lower())  # fmt: skip
        if canonical is None:
            continue
        if item is not None and not isinstance(item, str):
            raise _fail(400, f"name.{canonical} must be a string", "invalidValue")
        if item:
            name[canonical] = item
    return name


def _apply_user_path(user: Json, path: str, value: Any, *, add: bool) -> None:
    lowered = path.lower()
    if lowered.startswith("name."):
        merged = {**user["name"], path[5:]: value}
        user["name"] = _name(merged)
    elif lowered == "name" and add and isinstance(value, dict):
        user["name"] = _name({**user["name"], **value})
    elif _WORK_EMAIL.fullmatch(path):
        user["email"] = value
    else:
        _apply_user_value(user, lowered, value, create=False)


def _remove_user_value(user: Json, path: str) -> None:
    lowered = path.lower()
    if lowered.startswith("name."):
        user["name"] = _name({key: item for key, item in user["name"].items()
                              if key.lower() != lowered[5:]})  # fmt: skip
    elif lowered == "name":
        user["name"] = {}
    elif lowered in ("username", "emails", "active") or _WORK_EMAIL.fullmatch(path):
        raise _fail(400, f"{path} is required", "mutability")
