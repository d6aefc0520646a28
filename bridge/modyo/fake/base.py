"""What both fakes of Modyo share (its REST API, ``state.FakeModyo``, and its SCIM server,
``scim_state.FakeModyoScim``): the answer type, routing by path template, the bearer token,
call counting, scripted answers, the clock and the ids drawn from a seeded random source.
Each fake declares only its routes and what its Modyo answers (docs/design/modyo-contract.md).
"""

from __future__ import annotations

import hmac
import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

JSON_MEDIA_TYPE = "application/json; charset=utf-8"
MODYO_OFFSET = timezone(timedelta(hours=-3))  # Modyo's examples carry -03:00 offsets.

Handler = Callable[..., "FakeResponse"]
Route = tuple[str, str, str, Handler]
"""``(method, template, name, handler)``: ``template`` relative to the fake's prefix, with
``:name`` segments; ``name`` is the ``calls`` key (two methods may share one)."""


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


class Failure(Exception):
    """Ends a request with the given response (Rails' rescue_from, in short)."""

    def __init__(self, response: FakeResponse) -> None:
        self.response = response


@dataclass(frozen=True, slots=True)
class Matched:
    """A routed request: its ``calls`` key, its handler and the path's ``:name`` segments."""

    name: str
    handler: Handler
    args: tuple[str, ...]


class FakeBase:
    """Routing, authentication, call counting and scripted answers of one fake. Not
    thread-safe; one event loop is enough."""

    prefix: str = ""
    """The path every route is relative to (``/api/admin``, ``/api/admin/scim``)."""

    def __init__(self, token: str, *, seed: int, clock: Callable[[], float] = time.time) -> None:
        self.token = token
        self._clock = clock
        self._random = random.Random(seed)
        self.calls: Counter[str] = Counter()
        self._scripted: dict[str, list[FakeResponse]] = {}
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = []

    def _route(self, table: Sequence[Route]) -> None:
        self._routes = [
            (method, re.compile(re.sub(r":\w+", "([^/]+)", template)), name, handler)
            for method, template, name, handler in table
        ]

    # ------------------------------------------------------------------ dispatch

    def route_name(self, method: str, path: str) -> str | None:
        """The counter key of a request (``"GET /team_members/:id"``), or None if unrouted."""
        matched = self._match(method, path)
        return matched.name if matched else None

    def _match(self, method: str, path: str) -> Matched | None:
        relative = self._relative(path)
        for route_method, pattern, name, handler in self._routes:
            found = pattern.fullmatch(relative)
            if found and route_method == method:
                return Matched(name, handler, tuple(map(self._segment, found.groups())))
        return None

    def _routed_elsewhere(self, path: str) -> bool:
        """Whether some route takes ``path`` with another method (a 405, not a 404)."""
        relative = self._relative(path)
        return any(pattern.fullmatch(relative) for _, pattern, _, _ in self._routes)

    def _relative(self, path: str) -> str:
        return path[len(self.prefix) :].rstrip("/")

    def _segment(self, raw: str) -> str:
        """A ``:name`` segment as the handler takes it (as sent, unless a fake decodes it)."""
        return raw

    def _count(self, name: str) -> FakeResponse | None:
        """Count a routed call; the scripted answer to it, if any."""
        self.calls[name] += 1
        scripted = self._scripted.get(name)
        return scripted.pop(0) if scripted else None

    def _authorised(self, headers: Mapping[str, str]) -> bool:
        """Whether the request carries ``Bearer <token>`` (compared in constant time)."""
        lowered = {key.lower(): value for key, value in headers.items()}
        scheme, _, credential = lowered.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credential.encode(), self.token.encode()
        )

    # ------------------------------------------------------------------ helpers

    def _now(self) -> str:
        moment = datetime.fromtimestamp(self._clock(), tz=UTC).astimezone(MODYO_OFFSET)
        return moment.isoformat(timespec="milliseconds")

    def _new_uuid(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    # ------------------------------------------------------------------ test helpers

    def reset_calls(self) -> None:
        self.calls.clear()

    def script(self, route: str, *responses: FakeResponse) -> None:
        """Answer the next calls to ``route`` (a ``calls`` key) with ``responses``, without
        applying them: a test's way to fail one precise step."""
        self._scripted.setdefault(route, []).extend(responses)
