"""The interface the SCIM side calls, in the bridge's own vocabulary.

The SCIM side (``bridge.scim``) never sees a Modyo URL or payload, and the Modyo side
(``bridge.modyo``) never builds a SCIM error: they meet here. Two upstreams implement
:class:`Upstream`: Modyo's REST API (``bridge.modyo.rest``) and Modyo's own SCIM endpoint at
``/api/admin/scim`` (``bridge.modyo.scim``); nothing on the SCIM side depends on which.

Identifiers are opaque strings of one safe alphabet (:func:`is_safe_id`): the SCIM side asks
no upstream about any other, and an upstream that cannot parse one answers ``NotFound``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Generic, Protocol, TypeVar

T = TypeVar("T")
SAFE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,63}")


def is_safe_id(raw: str) -> bool:
    """Whether ``raw`` can be a resource's id: an opaque token of a path-safe alphabet, at
    most 64 characters (docs/design/modyo-contract.md C13). Modyo's integer ids and the uuids its
    console and its SCIM server use fit; a ``/``, ``?``, ``#``, ``%``, ``..``, a control
    character (CR, LF) or a longer text cannot, in either ``modyo.api``, so no such text is
    ever put in a Modyo URL."""
    return SAFE_ID.fullmatch(raw) is not None and ".." not in raw


class UserField(StrEnum):
    """The user attributes an upstream may hold (their SCIM names: ``bridge.scim.mapping``)."""

    USER_NAME = "user_name"
    EMAIL = "email"
    GIVEN_NAME = "given_name"
    FAMILY_NAME = "family_name"
    FORMATTED_NAME = "formatted_name"
    EXTERNAL_ID = "external_id"
    ACTIVE = "active"


class GroupField(StrEnum):
    """The group attributes an upstream holds."""

    DISPLAY_NAME = "display_name"
    EXTERNAL_ID = "external_id"


@dataclass(frozen=True, slots=True)
class Holdings:
    """What an upstream can store. Declared once, by the upstream; the SCIM side derives
    ``/Schemas``, validation, the fast paths and the unheld-attribute filter from it."""

    user: frozenset[UserField]
    group: frozenset[GroupField]
    user_search: frozenset[UserField] = frozenset()
    """Fields ``search_users`` looks up (the upstream searches on them)."""
    group_search: frozenset[GroupField] = frozenset()


UserChanges = Mapping[UserField, str | bool | None]
"""Attributes to set; ``None`` clears one. Absent keys are left alone."""

GroupChanges = Mapping[GroupField, str | None]


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    user_name: str
    email: str | None
    given_name: str | None
    family_name: str | None
    formatted_name: str | None
    external_id: str | None
    active: bool
    created: str | None
    last_modified: str | None
    group_ids: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class GroupRecord:
    id: str
    display_name: str
    external_id: str | None
    created: str | None
    last_modified: str | None


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A member as listed in a group: enough for SCIM ``members.value`` and ``display``."""

    id: str
    display: str | None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One window of a listing: ``total`` matching objects, of which ``items`` were asked for."""

    total: int
    items: list[T]


class UpstreamError(Exception):
    """Base of every failure an upstream reports; ``detail`` is safe to show a client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(UpstreamError):
    """The object does not exist (or the id is not one the upstream could ever issue)."""


class Conflict(UpstreamError):
    """A uniqueness rule was violated; ``field`` names the attribute when known."""

    def __init__(self, detail: str, field: UserField | GroupField | None = None) -> None:
        super().__init__(detail)
        self.field = field


class Rejected(UpstreamError):
    """The upstream refused the values (validation); the client must change its request.
    ``field`` names the attribute when known."""

    def __init__(self, detail: str, field: UserField | GroupField | None = None) -> None:
        super().__init__(detail)
        self.field = field


class UnknownMembers(UpstreamError):
    """Some user ids given as group members do not exist upstream."""

    def __init__(self, ids: Iterable[str]) -> None:
        self.ids = sorted(ids)
        super().__init__("no such user: " + ", ".join(self.ids))


class Unavailable(UpstreamError):
    """Transient: the upstream is overloaded, down, or slower than the deadline allows.

    ``retry_after`` is the number of seconds after which a retry is sensible.
    """

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


TOKEN_REJECTED_RETRY_SECONDS: Final = 60
"""``Retry-After`` while Modyo rejects the bridge's token: only an operator fixes that."""


class TokenRejected(Unavailable):
    """The upstream rejected the bridge's credentials (HTTP 401). The client can change
    nothing, and an operator replacing ``modyo.token`` ends it: answered 503 with
    ``Retry-After`` and the reason, which Entra retries later (docs/operator/health.md)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retry_after=TOKEN_REJECTED_RETRY_SECONDS)


class BadGateway(UpstreamError):
    """The upstream answered something the bridge cannot use (unexpected status or shape)."""


class NotSupported(BadGateway):
    """The upstream does not offer this operation at all (a Modyo without hard delete)."""


class UpstreamHealth(StrEnum):
    """What a readiness probe of the upstream found (``Upstream.health``)."""

    UP = "up"
    TOKEN_REJECTED = "token_rejected"  # noqa: S105 (a state): it refused the credentials
    UNREACHABLE = "unreachable"  # no usable answer: down, unreachable, failing, misconfigured


class TooManyCalls(UpstreamError):
    """The request would need more upstream calls than ``modyo.max_calls_per_request``:
    raised before the calls that would pass the budget are sent."""

    def __init__(self, needed: int, budget: int) -> None:
        super().__init__(
            f"this request would need more than {budget} Modyo calls "
            "(modyo.max_calls_per_request); split it into smaller ones"
        )
        self.needed = needed
        self.budget = budget


class TooMany(UpstreamError):
    """A full listing holds more than the ``limit`` the caller will read: raised once the
    total is known (the first page), before any further page is read."""

    def __init__(self, total: int, limit: int) -> None:
        super().__init__(f"{total} objects, more than the limit of {limit}")
        self.total = total
        self.limit = limit


class Upstream(Protocol):
    """Users, groups and memberships, as the SCIM side needs them.

    ``search_*`` return *candidates*: a superset of the exact matches (the SCIM side evaluates
    the filter itself), usually tiny because the upstream searched on the given field.
    ``scan_*`` return every object, for the filters no search can narrow (the SCIM side
    evaluates them over the whole listing, bounded by ``scim.max_filter_scan``).
    """

    holds: Holdings

    def connected(self) -> AbstractAsyncContextManager[None]:
        """Keep the upstream's connections open while the app runs (its lifespan)."""
        ...

    async def health(self) -> UpstreamHealth:
        """One cheap probe of the upstream and of the bridge's credentials, for readiness:
        a single attempt under its own short deadline, never retried; never raises."""
        ...

    async def get_user(self, user_id: str) -> UserRecord: ...

    async def list_users(self, offset: int, count: int) -> Page[UserRecord]: ...

    async def search_users(self, field: UserField, value: str) -> list[UserRecord]: ...

    async def scan_users(self, limit: int) -> list[UserRecord]:
        """Every user, in a stable order, if there are at most ``limit``; otherwise raise
        :class:`TooMany` as soon as the total is known, without reading the rest."""
        ...

    async def create_user(self, values: UserChanges) -> UserRecord: ...

    async def update_user(self, user_id: str, changes: UserChanges) -> UserRecord: ...

    async def delete_user(self, user_id: str) -> None: ...

    async def get_group(self, group_id: str) -> GroupRecord: ...

    async def list_groups(self, offset: int, count: int) -> Page[GroupRecord]: ...

    async def search_groups(self, field: GroupField, value: str) -> list[GroupRecord]: ...

    async def scan_groups(self, limit: int) -> list[GroupRecord]:
        """Every group (without members), as :meth:`scan_users`."""
        ...

    async def create_group(self, values: GroupChanges) -> GroupRecord: ...

    async def update_group(self, group_id: str, changes: GroupChanges) -> GroupRecord: ...

    async def delete_group(self, group_id: str) -> None: ...

    async def list_members(self, group_id: str) -> list[MemberRecord]: ...

    async def memberships(self, user_ids: Iterable[str]) -> dict[str, frozenset[str]]:
        """The group ids of each of ``user_ids`` that exists (absent keys: no such user)."""
        ...

    async def add_members(self, group_id: str, user_ids: Iterable[str]) -> None: ...

    async def remove_members(self, group_id: str, user_ids: Iterable[str]) -> None: ...
