"""The create locks (:class:`~bridge.scim.locks.CreateLocks`) in Redis, so that two creates
of one userName, e-mail or group name on two replicas run one after the other and the second
gets Modyo's 409.

``create:D`` (``D`` the digest of the lower-cased key: no userName or e-mail in Redis) holds
its owner's token with an expiry of ``lock_ttl_seconds``, renewed while the create runs;
every key of one create is taken at once (all or none, in one script: no deadlock, one round
trip). A waiter blocks on ``free:D`` (``BLPOP``), which each release pushes to, and tries again
when woken, or when the lock's lifetime has passed (its holder's process died).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Final

from bridge.store.errors import StoreUnavailable
from bridge.store.redis_link import RedisLink, digest

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
# KEYS: locks, then their free lists. ARGV: token, ttl (ms), number of locks.
RELEASE: Final = """
local n = tonumber(ARGV[3])
for i = 1, n do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    redis.call('RPUSH', KEYS[n + i], '1')
    redis.call('PEXPIRE', KEYS[n + i], ARGV[2])
  end
end
return 1
"""
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
        renewal = asyncio.create_task(self._renewing(locks, token))
        try:
            yield
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            args: list[str | int | bytes] = [token, self.lock_ttl_ms, len(locks)]
            # unreleased, the locks expire by themselves: the create's answer is not lost
            with contextlib.suppress(StoreUnavailable):
                await self.link.call(
                    "release", lambda: self._release(keys=[*locks, *frees], args=args)
                )

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

    async def _renewing(self, locks: list[str], token: str) -> None:
        args: list[str | int | bytes] = [token, self.lock_ttl_ms]
        while True:
            await asyncio.sleep(self.lock_ttl / 3)
            with contextlib.suppress(StoreUnavailable):  # logged by the link
                await self.link.call("renew", lambda: self._renew(keys=locks, args=args))
