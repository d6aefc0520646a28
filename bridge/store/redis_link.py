"""The connection to the shared Redis (redis-py's asyncio client): built from
``idempotency.redis_url`` or through Sentinel, every call bounded by the request deadline, and
the store's reachability, logged once per change and exported as a metric.

A call that fails or outlives its bound raises
:class:`~bridge.store.errors.StoreUnavailable` (the edge answers a SCIM 503 with
``Retry-After``): the
caller never proceeds without the store's guarantee. The URL is a secret (its password): it is
never logged nor part of an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from bridge import deadline
from bridge.config import IdempotencySettings
from bridge.metrics import SHARED_STORE_UP, export_shared_store_up
from bridge.store.errors import StoreUnavailable

log = logging.getLogger("bridge.idempotency")
T = TypeVar("T")


def digest(text: str) -> str:
    """What names a key in Redis: a SHA-256 hex digest (no userName, e-mail or token)."""
    return hashlib.sha256(text.encode()).hexdigest()


def connect(settings: IdempotencySettings) -> RedisLink:
    """A link to the configured Redis: the URL's, or the primary Sentinel names. No
    connection is opened until the first call."""
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_connect_timeout_seconds,
        # no socket timeout (redis-py 8 sets 5 s): every call is bounded by ``call``, and a
        # blocking wait lasts up to a lock's lifetime
        "socket_timeout": None,
        "socket_keepalive": True,
        # one quick retry on a dropped connection (a failover, an idle connection closed);
        # the deadline bounds the whole call anyway. The asyncio client's Retry class: a sync
        # one is converted by redis-py 8, with a warning
        "retry": Retry(ExponentialBackoff(cap=0.1, base=0.01), 1),
        "health_check_interval": 30,
    }
    url = settings.redis_url.get_secret_value() if settings.redis_url else None
    if not settings.redis_sentinels:
        assert url is not None  # IdempotencySettings requires it
        direct = redis.Redis.from_url(url, **options)
        return RedisLink(direct, settings.key_prefix, settings.redis_timeout_seconds)
    if url is not None:  # with sentinels, the URL gives the primary's credentials, db, TLS
        parts = urlsplit(url)
        options["password"] = parts.password
        options["username"] = parts.username or None
        options["db"] = int(parts.path[1:] or 0)
        options["ssl"] = parts.scheme == "rediss"
    sentinels = [_address(address) for address in settings.redis_sentinels]
    sentinel = Sentinel(sentinels, socket_connect_timeout=settings.redis_connect_timeout_seconds)
    service = settings.redis_sentinel_service
    assert service is not None  # IdempotencySettings requires it with sentinels
    client: redis.Redis = sentinel.master_for(service, **options)
    return RedisLink(
        client,
        settings.key_prefix,
        settings.redis_timeout_seconds,
        also_close=list(sentinel.sentinels),
    )


def _address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class Renewal:
    """``renew()`` every ``interval`` seconds until :meth:`stop`, or until it answers False
    (the lock was lost: logged). A timer, not a task, until a renewal is due: most writes
    end before the first one, and a timer costs a request less than a task to start and to
    cancel."""

    def __init__(self, interval: float, renew: Callable[[], Awaitable[bool]]) -> None:
        self.interval = interval
        self._renew = renew
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._due)

    def stop(self) -> None:
        """Not awaited: a renewal in flight is cancelled, its lock released or expiring."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()

    def _due(self) -> None:
        self._timer = None
        self._task = asyncio.create_task(self._renewing())

    async def _renewing(self) -> None:
        try:
            owned = await self._renew()
        except StoreUnavailable:
            owned = True  # logged by the link; the next renewal may reach it
        else:
            if owned:
                log.debug("lock renewed")
        if not owned:
            log.warning("a lock expired before its holder finished; another may take over")
        elif not self._stopped:
            self.start()


class RedisLink:
    """The client, its key prefix and its health. :meth:`call` runs one Redis call within the
    request's deadline and records whether Redis answered."""

    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str,
        call_seconds: float,
        also_close: list[redis.Redis] | None = None,
    ) -> None:
        export_shared_store_up()
        self.client = client
        self.prefix = key_prefix
        self.call_seconds = call_seconds
        self.reachable: bool | None = None
        self._also_close = also_close or []

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def bound(self, longest: float | None = None) -> float:
        """Seconds a call may take: what is left of the request's deadline, and at most
        ``longest`` (by default ``idempotency.redis_timeout_seconds``: a slow Redis is an
        unreachable one)."""
        left = deadline.remaining()
        cap = self.call_seconds if longest is None else longest
        return cap if left is None else min(left, cap)

    async def call(
        self, what: str, call: Callable[[], Awaitable[T]], *, within: float | None = None
    ) -> T:
        """``call()`` within :meth:`bound` (``within``: a longer cap, for blocking waits);
        a failure or a timeout is :class:`StoreUnavailable`, naming ``what``."""
        seconds = self.bound(within)
        if seconds <= 0:  # the request's deadline passed: not the store's fault
            raise StoreUnavailable(detail=f"the request deadline passed before {what}")
        try:
            async with asyncio.timeout(seconds):
                result = await call()
        except (RedisError, OSError, TimeoutError) as exc:
            self._record(False, exc)
            raise StoreUnavailable(
                detail=f"the shared idempotency store did not answer ({what})"
            ) from None
        self._record(True)
        return result

    async def check(self) -> str | None:
        """Readiness (``bridge.edge.readiness``): None when Redis answers a PING, else
        ``shared_store_unreachable``."""
        try:
            await self.call("ping", self.client.ping)
        except StoreUnavailable:
            return "shared_store_unreachable"
        return None

    async def close(self) -> None:
        await self.client.aclose()
        for client in self._also_close:
            await client.aclose()

    def _record(self, reachable: bool, failure: BaseException | None = None) -> None:
        """Once per change of state: a log line and the gauge."""
        if reachable == self.reachable:
            return
        previous, self.reachable = self.reachable, reachable
        SHARED_STORE_UP.set(1 if reachable else 0)
        if not reachable:
            log.error(
                "shared store unreachable: writes are refused (503) until it answers",
                extra={"reason": "shared_store_unreachable", "error": type(failure).__name__},
            )
        elif previous is not None:
            log.info("shared store reachable again: writes are accepted")
