"""Both upstreams behind one test interface (issue 10 item 5): the SCIM-side suites run once
against the REST fake (``modyo.api = "rest"``) and once against the fake of Modyo's SCIM server
(``modyo.api = "scim"``), and state what they prove in upstream-neutral terms.

A :class:`Backend` gives a test the bridge client, seeding of users, groups and members into
the fake (no call counted), the fake's resulting state as SCIM-level facts (a user by id or
userName, its active flag, a group's members) and the calls the bridge made as *logical*
operations (``"user.create"``, ``"members.add"``...), each mapped from that fake's call log.

How a test opts in: conftest's ``backend`` fixture (and the ``scim`` client, which runs on it)
is parametrized ``rest``/``scim`` in every module marked ``pytest.mark.upstreams("rest",
"scim")``; a test about the REST contract itself (exact paths, payloads, a REST-only quirk of
the fake) is marked ``upstreams("rest")``. Every expectation that differs by mode is in ONE
place, :data:`DIFFERENCES` and :data:`COSTS` below, each row naming the row of
docs/design/upstreams.md ("REST vs SCIM upstream") or the docs/design/modyo-contract.md §9
entry that documents it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from bridge.config import Settings
from bridge.modyo.fake import FakeModyo, FakeModyoScim, Faults, FaultyModyo
from bridge.modyo.fake.scim_state import scim_error
from bridge.modyo.fake.state import FakeResponse
from bridge.modyo.scim import TOMBSTONE, TOMBSTONE_DOMAIN
from tests.conftest import MODYO_TOKEN, bridge_client
from tests.hooks import HookedModyo, VirtualClock

Api = Literal["rest", "scim"]
APIS: Final[tuple[Api, ...]] = ("rest", "scim")


# ---------------------------------------------------------------------- the differences


@dataclass(frozen=True, slots=True)
class Difference:
    """One way the two modes answer differently, with where it is documented."""

    rest: Any
    scim: Any
    documented: str

    def of(self, api: Api) -> Any:
        return self.rest if api == "rest" else self.scim


DIFFERENCES: Final[dict[str, Difference]] = {
    # What DELETE /Users/{id} leaves in Modyo: the row gone, or the row held inactive under a
    # tombstone userName and email. For SCIM clients both read as "gone" (GET 404, queries
    # empty, the userName free again).
    "user delete": Difference(
        "hard delete",
        "deactivated and tombstoned",
        'upstreams.md "DELETE user"; docs/design/modyo-contract.md §9.3 F3',
    ),
    # PATCH/PUT of externalId: applied, or 400 invalidValue before any write.
    "externalId patchable": Difference(
        True, False, 'upstreams.md "Change `externalId`"; docs/design/modyo-contract.md §9.3 F8'
    ),
    # A work-email filter: sent to Modyo's email search (one call), or evaluated by the bridge
    # over the listing (Modyo's SCIM server has no email filter).
    "email filter pushed down": Difference(
        True, False, 'upstreams.md "Query users by work email"; docs/design/modyo-contract.md §9.5'
    ),
    # GET /Users without a filter: exact windows and totalResults, or Modyo's windows less
    # the deleted (tombstoned) users in each: short pages, totalResults discounting only the
    # deleted users of the page's own window. Exact would need the whole listing per page.
    "exact listing windows": Difference(
        True, False, 'upstreams.md "List users without a filter, after deletes"; §9.3 F3'
    ),
    # Which ids reach Modyo: in both, only those of the safe alphabet (any other is 404
    # without a call, at the SCIM edge); scim sends them percent-encoded.
    "opaque ids": Difference(
        True, True, 'upstreams.md "Ids"; docs/design/modyo-contract.md §9.1 S5'
    ),
    # Group queries: Modyo searches, or the bridge reads the whole listing.
    "group filter pushed down": Difference(
        True, False, 'upstreams.md "Query groups by `displayName` / `externalId`"; §9.3 F4'
    ),
    # What a Modyo refusal of a read becomes (status -> SCIM status, scimType): REST's 400 is
    # the bridge's own fault (502), SCIM's 400 and 409 carry the client's values (§9.3 F7).
    "error mapping": Difference(
        {500: (502, None), 400: (502, None), 403: (502, None), 409: (400, "invalidValue")},
        {500: (502, None), 400: (400, "invalidValue"), 403: (502, None), 409: (409, "uniqueness")},
        'upstreams.md "Errors"; docs/design/modyo-contract.md §2 (rest), §9.3 F7 (scim)',
    ),
}


def differs(name: str, api: Api) -> Any:
    """What mode ``api`` does for the difference ``name``."""
    return DIFFERENCES[name].of(api)


COSTS: Final[dict[str, Difference]] = {
    # Logical Modyo calls per SCIM request where the modes differ (docs/design/modyo-contract.md
    # §9.5; docs/design/upstreams.md, "Modyo calls per SCIM request"). Where they are equal the
    # tests state the count once, for both.
    "user patch": Difference(
        {"user.update": 1}, {"user.read": 1, "user.update": 1}, '§9.5 "PATCH /Users/{id}"'
    ),
    "user patch of nothing held": Difference(
        {"user.read": 1}, {"user.read": 1}, '§9.5 "PATCH /Users/{id}": 1 when nothing differs'
    ),
    "entra group query": Difference(
        {"group.list": 1}, {"group.list": 1}, '§9.5 "GET /Groups?filter=displayName eq" (G<100)'
    ),
    "group rename": Difference(
        {"group.update": 1},
        {"group.list": 1, "group.update": 1, "group.read": 1},
        '§9.5 "PATCH /Groups replace displayName": ⌈G/100⌉ + 2 (the listing for uniqueness, '
        "the PATCH, the read its 204 calls for)",
    ),
    "add one member": Difference(
        {"user.list": 1, "members.add": 1},
        {"user.read": 1, "members.add": 1},
        '§9.5 "PATCH /Groups add k members"',
    ),
    "remove one member": Difference(
        {"user.list": 1, "members.remove": 1},
        {"user.read": 1, "members.remove": 1},
        '§9.5 "PATCH /Groups remove k members"',
    ),
    "add 25 members": Difference(
        {"user.list": 1, "members.add": 1},
        {"user.read": 25, "members.add": 1},
        '§9.5 "PATCH /Groups add k members": ⌈k/100⌉ + ⌈a/100⌉ / k + ⌈a/100⌉',
    ),
    "read a 250-member group": Difference(
        {"group.read": 1, "members.read": 3},
        {"group.read": 1, "members.read": 1},
        '§9.5 "GET /Groups/{id}" with members: 1 + ⌈n/100⌉ / 2',
    ),
    "delete a user in one group": Difference(
        {"user.delete": 1},
        {"user.read": 1, "members.remove": 1, "user.delete": 1},
        '§9.5 "DELETE /Users/{id}": 1 / 2 + g (Modyo drops the memberships, or the bridge does)',
    ),
    "email query": Difference(
        {"user.list": 1}, {"user.list": 1}, "§9.5: one search (rest) or one listing page (scim)"
    ),
}


def membership_lookup(api: Api, users: int) -> dict[str, int]:
    """Which groups ``users`` users are in: one search of their ids (rest), or each user's
    own ``groups`` attribute, one read per user (scim, §9.3 F5)."""
    return {"user.list": 1} if api == "rest" else {"user.read": users}


def cost(name: str, api: Api) -> dict[str, int]:
    found: dict[str, int] = COSTS[name].of(api)
    return found


# ---------------------------------------------------------------------- facts


@dataclass(frozen=True, slots=True)
class UserFact:
    """A user as the fake holds it, in SCIM terms (``None``: not held)."""

    id: str
    user_name: str
    email: str | None
    given: str | None
    family: str | None
    external_id: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class GroupFact:
    id: str
    display_name: str
    external_id: str | None
    member_ids: frozenset[str] = field(default_factory=frozenset)


class Backend:
    """One upstream mode's fake, its fault injector and the settings that select it."""

    api: Api
    fake: FakeModyo | FakeModyoScim
    modyo: FaultyModyo
    settings: Settings

    # -------------------------------------------------------------- bridge

    def client(
        self,
        modyo: FaultyModyo | None = None,
        settings: Settings | None = None,
        **options: Any,
    ) -> bridge_client:
        """The bridge in this mode in front of ``modyo`` (default: this backend's)."""
        return bridge_client(modyo or self.modyo, settings or self.settings, **options)

    def with_settings(self, **sections: dict[str, Any]) -> Settings:
        """This backend's settings with sections overridden (the mode kept)."""
        values = self.settings.model_dump()
        for name, overrides in sections.items():
            values[name] = {**values[name], **overrides}
        return Settings(**values)  # validated, as make_settings

    def faulty(
        self, faults: Faults | None = None, clock: VirtualClock | None = None
    ) -> FaultyModyo:
        """A fresh fault injector over this backend's fake."""
        if clock is None:
            return FaultyModyo(self.fake, faults)
        return FaultyModyo(self.fake, faults, clock=clock)

    def hooked(self) -> HookedModyo:
        return HookedModyo(self.fake)

    # -------------------------------------------------------------- seeding (no call counted)

    def seed_users(self, count: int, prefix: str = "seed") -> list[str]:
        """``count`` users ``<prefix><n>@example.com``; their SCIM ids."""
        raise NotImplementedError

    def seed_group(self, name: str, members: Sequence[str] = ()) -> str:
        raise NotImplementedError

    def seed_group_members(self, group_id: str, count: int, prefix: str = "bulk") -> list[str]:
        raise NotImplementedError

    # -------------------------------------------------------------- facts

    def held_users(self) -> list[UserFact]:
        """Every user the fake holds that SCIM clients can see (not deleted)."""
        raise NotImplementedError

    def user(self, user_id: str) -> UserFact | None:
        return next((user for user in self.held_users() if user.id == user_id), None)

    def users(self) -> dict[str, UserFact]:
        """Live users by userName, asserting no two share one (ignoring case)."""
        found = {user.user_name: user for user in self.held_users()}
        assert len({name.lower() for name in found}) == len(self.held_users()), "a shared userName"
        return found

    def groups(self) -> dict[str, GroupFact]:
        """Groups by displayName, asserting no two share one (ignoring case)."""
        held = self.held_groups()
        found = {group.display_name: group for group in held}
        assert len({name.lower() for name in found}) == len(held), "a shared displayName"
        return found

    def held_groups(self) -> list[GroupFact]:
        raise NotImplementedError

    def group(self, group_id: str) -> GroupFact | None:
        return next((group for group in self.held_groups() if group.id == group_id), None)

    def member_names(self) -> dict[str, set[str]]:
        """Each group's members by userName (the natural keys of a history's end state)."""
        names = {user.id: user.user_name for user in self.held_users()}
        return {
            group.display_name: {names[member] for member in group.member_ids}
            for group in self.groups().values()
        }

    def assert_deleted(self, user_id: str) -> None:
        """What a SCIM DELETE leaves in Modyo, in this mode (:data:`DIFFERENCES`)."""
        raise NotImplementedError

    # -------------------------------------------------------------- calls

    def calls(self) -> Counter[str]:
        """The Modyo calls made since the last reset, as logical operations."""
        raise NotImplementedError

    def reset_calls(self) -> None:
        self.fake.reset_calls()

    def writes(self) -> set[str]:
        """The logical operations of the calls that were not reads."""
        reads = {"user.read", "user.list", "group.read", "group.list", "members.read", "profile"}
        return {name for name in self.calls() if name not in reads}

    def route(self, operation: str) -> str:
        """The fake's route key (for ``lose_next``, ``hold_next``, ``script``)."""
        return ROUTES[self.api][operation]

    def failure(self, status: int, detail: str) -> FakeResponse:
        """An error answer in this Modyo's own form."""
        raise NotImplementedError

    def script(self, operation: str, *responses: FakeResponse) -> None:
        """Answer the next ``operation`` calls with ``responses``, not applying them."""
        self.fake.script(self.route(operation), *responses)


ROUTES: Final[dict[Api, dict[str, str]]] = {
    "rest": {
        "user.read": "GET /team_members/:id",
        "user.list": "GET /team_members",
        "user.create": "POST /team_members",
        "user.update": "PUT /team_members/:id",
        "user.delete": "DELETE /team_members/:id",
        "group.read": "GET /groups/:id",
        "group.list": "GET /groups",
        "group.create": "POST /groups",
        "group.update": "PUT /groups/:id",
        "group.delete": "DELETE /groups/:id",
        "members.read": "GET /groups/:id/team_members",
        "members.add": "POST /groups/:id/team_members",
        "members.remove": "DELETE /groups/:id/team_members/:member_id",
        "profile": "GET /profile",
    },
    "scim": {
        "user.read": "GET /scim/Users/:id",
        "user.list": "GET /scim/Users",
        "user.create": "POST /scim/Users",
        "user.update": "PATCH /scim/Users/:id",
        "user.delete": "PATCH /scim/Users/:id",  # deactivation (F3): Modyo's DELETE fails
        "group.read": "GET /scim/Groups/:id",
        "group.list": "GET /scim/Groups",
        "group.create": "POST /scim/Groups",
        "group.update": "PATCH /scim/Groups/:id",
        "group.delete": "DELETE /scim/Groups/:id",
        "members.read": "GET /scim/Groups/:id",
        "members.add": "PATCH /scim/Groups/:id",
        "members.remove": "PATCH /scim/Groups/:id",
        "profile": "GET /profile",
    },
}


WIRE: Final[dict[Api, dict[str, tuple[str, str]]]] = {
    # Each write as it crosses the wire (method, path), for a proxy that acts on requests.
    "rest": {
        "user.create": ("POST", "/api/admin/team_members"),
        "user.update": ("PUT", "/api/admin/team_members/{id}"),
        "user.delete": ("DELETE", "/api/admin/team_members/{id}"),
        "group.create": ("POST", "/api/admin/groups"),
        "group.update": ("PUT", "/api/admin/groups/{id}"),
        "group.delete": ("DELETE", "/api/admin/groups/{id}"),
        "members.add": ("POST", "/api/admin/groups/{id}/team_members"),
        "members.remove": ("DELETE", "/api/admin/groups/{id}/team_members/{member}"),
    },
    "scim": {
        "user.create": ("POST", "/api/admin/scim/Users"),
        "user.update": ("PATCH", "/api/admin/scim/Users/{id}"),
        "user.delete": ("PATCH", "/api/admin/scim/Users/{id}"),  # the tombstone PATCH (F3)
        "group.create": ("POST", "/api/admin/scim/Groups"),
        "group.update": ("PATCH", "/api/admin/scim/Groups/{id}"),
        "group.delete": ("DELETE", "/api/admin/scim/Groups/{id}"),
        "members.add": ("PATCH", "/api/admin/scim/Groups/{id}"),
        "members.remove": ("PATCH", "/api/admin/scim/Groups/{id}"),
    },
}


def wire(api: Api, operation: str, **ids: str) -> tuple[str, str]:
    """The method and path of ``operation`` in mode ``api``, its ids filled in."""
    method, template = WIRE[api][operation]
    return method, template.format(**ids)


def write_methods(api: Api) -> frozenset[str]:
    return frozenset(method for method, _ in WIRE[api].values())


def new_backend(api: Api, settings: Settings) -> Backend:
    """A backend in mode ``api`` over a fresh fake, for a fixture that outlives a test
    (conftest's ``backend`` is built per test from its fixtures)."""
    if api == "rest":
        fake = FakeModyo(token=MODYO_TOKEN)
        return RestBackend(fake, FaultyModyo(fake), settings)
    return ScimBackend(settings)


class RestBackend(Backend):
    api = "rest"

    def __init__(self, fake: FakeModyo, modyo: FaultyModyo, settings: Settings) -> None:
        self.fake, self.rest, self.modyo, self.settings = fake, fake, modyo, settings
        self._operations = {route: name for name, route in ROUTES["rest"].items()}

    def seed_users(self, count: int, prefix: str = "seed") -> list[str]:
        created = self.rest.seed_members(count, prefix)
        return [str(self.rest.client_id("user", key)) for key in created]

    def seed_group(self, name: str, members: Sequence[str] = ()) -> str:
        key = self.rest.seed_group(name, [int(member) for member in members])
        return str(self.rest.client_id("group", key))

    def seed_group_members(self, group_id: str, count: int, prefix: str = "bulk") -> list[str]:
        created = self.rest.seed_group_members(int(group_id), count, prefix)
        return [str(self.rest.client_id("user", key)) for key in created]

    def held_users(self) -> list[UserFact]:
        return [
            UserFact(str(self.rest.external_id(row)), row["username"], row["email"],
                     row["first_name"], row["last_name"], row["external_id"], row["active"])
            for row in self.rest.team_members.values()
        ]  # fmt: skip

    def held_groups(self) -> list[GroupFact]:
        return [
            GroupFact(
                str(self.rest.external_id(row)),
                row["name"],
                row["external_id"],
                frozenset(
                    str(self.rest.client_id("user", key))
                    for key in self.rest.group_member_ids(row["id"])
                ),
            )
            for row in self.rest.groups.values()
        ]

    def assert_deleted(self, user_id: str) -> None:
        assert int(user_id) not in self.rest.team_members  # hard delete

    def calls(self) -> Counter[str]:
        return Counter({self._operations[route]: n for route, n in self.rest.calls.items()})

    def failure(self, status: int, detail: str) -> FakeResponse:
        return FakeResponse(status, {"errors": [detail]})


class LoggedScim(FakeModyoScim):
    """The SCIM fake, each routed call also logged with its query and body: a group PATCH is
    a rename or a membership change depending on its operations."""

    def __init__(self, token: str = MODYO_TOKEN, clock: Callable[[], float] = time.time) -> None:
        super().__init__(token=token, clock=clock)
        self.log: list[tuple[str, list[tuple[str, str]], Any]] = []
        self.scripted_operations: dict[str, list[FakeResponse]] = {}

    def script_operation(self, operation: str, *responses: FakeResponse) -> None:
        """Answer the next calls that are ``operation`` (a logical one: a group PATCH that
        adds members, not the rename before it) with ``responses``, without applying them."""
        self.scripted_operations.setdefault(operation, []).extend(responses)

    def handle(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> FakeResponse:
        pairs = list(query)
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        route = self.route_name(method, path)
        if route is not None and self._authorised(headers or {}):
            for operation in _scim_operations(route, pairs, payload):
                if self.scripted_operations.get(operation):
                    self.calls[route] += 1
                    self.log.append((route, pairs, payload))
                    return self.scripted_operations[operation].pop(0)
        before = sum(self.calls.values())
        response = super().handle(method, path, pairs, body, headers)
        if route is not None and sum(self.calls.values()) > before:  # routed (and counted)
            self.log.append((route, pairs, payload))
        return response

    def reset_calls(self) -> None:
        super().reset_calls()
        self.log.clear()


def _scim_operations(route: str, query: list[tuple[str, str]], payload: Any) -> list[str]:
    """The logical operations of one call to Modyo's SCIM server."""
    if route == "GET /scim/Groups/:id":
        excluded = any(k == "excludedAttributes" and "members" in v for k, v in query)
        return ["group.read" if excluded else "members.read"]
    if route == "PATCH /scim/Users/:id":
        ops = payload.get("Operations", []) if isinstance(payload, dict) else []
        deleting = any(
            op.get("path") == "userName" and str(op.get("value", "")).startswith(TOMBSTONE)
            for op in ops
            if isinstance(op, dict)
        )
        return ["user.delete" if deleting else "user.update"]
    if route == "PATCH /scim/Groups/:id":
        ops = payload.get("Operations", []) if isinstance(payload, dict) else []
        found: list[str] = []
        for op in ops if isinstance(ops, list) else []:
            path = str(op.get("path") or "") if isinstance(op, dict) else ""
            if path.startswith("members") and op.get("op") == "remove":
                name = "members.remove"
            elif path.startswith("members"):
                name = "members.add"
            else:
                name = "group.update"
            if name not in found:
                found.append(name)
        return found or ["group.update"]
    return [_SCIM_OPERATIONS[route]]


_SHARED = frozenset({"user.delete", "members.read", "members.add", "members.remove"})
_SCIM_OPERATIONS: Final = {
    **{route: name for name, route in ROUTES["scim"].items() if name not in _SHARED},
    "DELETE /scim/Users/:id": "user.hard-delete",  # never sent: it fails (F3)
    "GET /scim/Schemas": "schemas",  # never sent: discovery is the bridge's own (F6)
}


class ScimBackend(Backend):
    api = "scim"

    def __init__(self, settings: Settings, fake: LoggedScim | None = None) -> None:
        self.scim = fake or LoggedScim()
        self.fake = self.scim
        self.modyo = FaultyModyo(self.scim)
        self.settings = settings.model_copy(
            update={"modyo": settings.modyo.model_copy(update={"api": "scim"})}
        )

    def seed_users(self, count: int, prefix: str = "seed") -> list[str]:
        return self.scim.seed_members(count, prefix)

    def seed_group(self, name: str, members: Sequence[str] = ()) -> str:
        return self.scim.seed_group(name, members)

    def seed_group_members(self, group_id: str, count: int, prefix: str = "bulk") -> list[str]:
        return self.scim.seed_group_members(group_id, count, prefix)

    def held_users(self) -> list[UserFact]:
        return [
            UserFact(row["id"], row["userName"], row["email"], row["name"].get("givenName"),
                     row["name"].get("familyName"), row["externalId"], row["active"])
            for row in self.scim.users.values()
            if not row["userName"].startswith(TOMBSTONE)
        ]  # fmt: skip

    def held_groups(self) -> list[GroupFact]:
        return [
            GroupFact(row["id"], row["displayName"], row["externalId"],
                      frozenset(self.scim.group_member_ids(row["id"])))
            for row in self.scim.groups.values()
        ]  # fmt: skip

    def assert_deleted(self, user_id: str) -> None:
        """Deactivated and tombstoned (F3), in no group; still held in Modyo."""
        row = self.scim.users[user_id]
        assert row["active"] is False
        assert row["userName"].startswith(TOMBSTONE), row["userName"]
        assert row["email"].endswith(f"@{TOMBSTONE_DOMAIN}")
        assert all(user_id not in self.scim.group_member_ids(gid) for gid in self.scim.groups)

    def calls(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for route, query, payload in self.scim.log:
            found.update(_scim_operations(route, query, payload))
        return found

    def failure(self, status: int, detail: str) -> FakeResponse:
        return scim_error(status, detail)

    def script(self, operation: str, *responses: FakeResponse) -> None:
        self.scim.script_operation(operation, *responses)
