"""The create locks (:class:`~bridge.scim.locks.CreateLocks`) in Redis, so that two creates
of one userName, e-mail or group name on two replicas run one after the other and the second
gets Modyo's 409.

``create:D`` (``D`` the digest of the lower-cased key: no userName or e-mail in Redis) holds
its owner's token with an expiry of ``lock_ttl_seconds``, renewed while the create runs;
every key of one create is taken at once (all or none, in one script: no deadlock, one round
trip). A waiter blocks on ``free:D`` (``BLPOP``), which each release pushes to, and tries again
when woken, or when the lock's lifetime has passed (its holder's process died).

Inside an idempotent write's execution (:data:`DEFERRED` set by its lead,
``bridge.store.redis_answers``) a release is not sent as the block ends: the lead sends it
with the write's invalidation and its end, in one round trip after the answer
(:data:`RELEASE_LUA`).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Final

from bridge.store.errors import StoreUnavailable
from bridge.store.redis_link import RedisLink, Renewal, digest

# KEYS: the locks. ARGV: token, ttl (ms). nil when all were taken, else the index (1-based)
# of one already held and its remaining lifetime in ms (then none was taken).
ACQUIRE: Final = """
for i, lock in ipairs(KEYS) do
  local left = redis.call('PTTL', lock)
  if left ~= -2 then return {i, left} end
end
for _, lock in ipairs(KEYS) do redis.call('SET', lock, ARGV[1], 'PX', ARGV[2]) end
return false
"""
# Releases the locks of KEYS[first], KEYS[first + 2]..., each followed by its free list and
# owned by its own token, ARGV[token_at], ARGV[token_at + 1]...; ARGV[ttl_at] is the free
# lists' expiry (ms). The caller defines those three locals: another script includes this one
# (redis_answers.FINISH).
RELEASE_LUA: Final = """
local t = token_at
for i = first, #KEYS, 2 do
  if redis.call('GET', KEYS[i]) == ARGV[t] then
    redis.call('DEL', KEYS[i])
    redis.call('RPUSH', KEYS[i + 1], '1')
    redis.call('PEXPIRE', KEYS[i + 1], ARGV[ttl_at])
  end
  t = t + 1
end
"""
# KEYS: pairs of a lock and its free list. ARGV: ttl (ms), then each pair's token.
RELEASE: Final = "local first, ttl_at, token_at = 1, 1, 2" + RELEASE_LUA + "return 1"
# KEYS: locks. ARGV: token, ttl (ms). How many the token still owns (each extended).
RENEW: Final = """
local owned = 0
for _, lock in ipairs(KEYS) do
  if redis.call('GET', lock) == ARGV[1] then
    redis.call('PEXPIRE', lock, ARGV[2])
    owned = owned + 1
  end
end
return owned
"""


@dataclass(frozen=True, slots=True)
class Held:
    """Create locks one block holds: their keys, free lists and owner token."""

    locks: list[str]
    frees: list[str]
    token: str


DEFERRED: ContextVar[list[Held] | None] = ContextVar("scim_bridge_deferred_locks", default=None)
"""Where an execution collects the locks it held, to release them later (module docstring)."""


def release_arguments(held: list[Held], ttl_ms: int) -> tuple[list[str], list[str | int]]:
    """KEYS (pairs of a lock and its free list) and ARGV (the ttl, then each pair's token) of
    :data:`RELEASE_LUA`, for ``held``."""
    keys: list[str] = []
    args: list[str | int] = [ttl_ms]
    for block in held:
        for lock, free in zip(block.locks, block.frees, strict=True):
            keys += [lock, free]
            args.append(block.token)
    return keys, args


class RedisLocks:
    """Create locks shared through Redis (module docstring)."""

    def __init__(self, link: RedisLink, lock_ttl_seconds: float) -> None:
        self.link = link
        self.lock_ttl = lock_ttl_seconds
        self.lock_ttl_ms = max(1, round(lock_ttl_seconds * 1000))
        self._acquire = link.client.register_script(ACQUIRE)
        self._release = link.client.register_script(RELEASE)
        self._renew = link.client.register_script(RENEW)

    @asynccontextmanager
    async def hold(self, *keys: str) -> AsyncIterator[None]:
        names = sorted({digest(key.lower()) for key in keys if key})
        if not names:
            yield
            return
        locks = [self.link.key("create", name) for name in names]
        frees = [self.link.key("free", name) for name in names]
        token = secrets.token_hex(8)
        await self._take(locks, frees, token)
        renewal = Renewal(self.lock_ttl / 3, partial(self._renew_all, locks, token))
        renewal.start()
        try:
            yield
        finally:
            renewal.stop()
            held = Held(locks, frees, token)
            deferred = DEFERRED.get()
            if deferred is not None:
                deferred.append(held)
            else:
                await self.release([held])

    async def release(self, held: list[Held]) -> None:
        """Release ``held`` locks now; unreleased, they expire by themselves (the create's
        answer is not lost)."""
        keys, args = release_arguments(held, self.lock_ttl_ms)
        with contextlib.suppress(StoreUnavailable):
            await self.link.call("release", lambda: self._release(keys=keys, args=args))

    async def _take(self, locks: list[str], frees: list[str], token: str) -> None:
        args: list[str | int | bytes] = [token, self.lock_ttl_ms]
        while True:
            held = await self.link.call("lock", lambda: self._acquire(keys=locks, args=args))
            if held is None:
                return
            index, left_ms = held
            free = frees[int(index) - 1]
            # woken by the release, or when the lock has expired (its holder died)
            lifetime = self.lock_ttl if left_ms < 0 else int(left_ms) / 1000
            wait = max(0.01, min(lifetime, self.link.bound(self.lock_ttl + 1) - 0.5))
            await self.link.call(
                "lock wait",
                partial(self.link.client.blpop, [free], wait),
                within=self.lock_ttl + 1,
            )

    async def _renew_all(self, locks: list[str], token: str) -> bool:
        """Extend ``locks`` while ``token`` owns them; whether it still owns one."""
        args: list[str | int | bytes] = [token, self.lock_ttl_ms]
        owned = await self.link.call("renew", lambda: self._renew(keys=locks, args=args))
        return bool(owned)
