"""What the safety rails need of the Redis that replicas share (``idempotency.backend =
"redis"``): the link the app already holds (``bridge.store.redis_link.RedisLink``),
named here by what it offers, so this package depends on no layer above it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class SharedLink(Protocol):
    """A Redis client, its key prefix, and calls bounded by the request's deadline (a
    failure is the SCIM 503 the idempotency store already answers with)."""

    client: Any

    def key(self, *parts: str) -> str: ...

    async def call(
        self, what: str, call: Callable[[], Awaitable[T]], *, within: float | None = None
    ) -> T: ...
