"""What a fake Modyo offers the fault injector, the control plane and the adapters: the REST
fake (``state.FakeModyo``) and the SCIM fake (``scim_state.FakeModyoScim``) both provide it, so
faults, ``/__fake__/`` and the respx and ASGI adapters serve either one unchanged."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from bridge.modyo.fake.base import FakeResponse


class FakeService(Protocol):
    token: str
    """The API token it accepts (tests revoke it)."""

    calls: Counter[str]
    """Routed requests by route name (``"GET /team_members/:id"``), scripted ones included."""

    def route_name(self, method: str, path: str) -> str | None: ...

    def handle(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> FakeResponse: ...

    def reset_calls(self) -> None: ...

    def script(self, route: str, *responses: FakeResponse) -> None: ...

    def seed_members(self, count: int, prefix: str = "seed") -> Sequence[Any]:
        """Create ``count`` users without counting calls; their ids."""
        ...

    def seed_group(self, name: str, members: Sequence[Any] = ()) -> Any:
        """Create a group holding ``members`` without counting calls; its id."""
        ...

    def client_id(self, kind: str, key: Any) -> Any:
        """The id a client uses for a seeded ``user`` or ``group``."""
        ...

    def user_name(self, member_id: Any) -> str: ...
