"""Where the brake counts (``bridge.safety.brake``): this process's memory, or the Redis every
replica shares, so a threshold is global (docs/operator/first-cycle.md, "The brake").

Per kind of change: the keys of the changes counted in the rolling window (a user's id, a
group and member pair), each with when it was counted, and whether the brake is engaged. A
reservation is one atomic step (a Lua script in Redis): drop what left the window; a change
already counted passes without counting again (a retry); else, while engaged, or when the
new changes would take the count past the limit, hold them (and engage); else count them.
Two replicas racing past a threshold together never apply more than it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from bridge.safety.shared import SharedLink

_RESERVE: Final = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local new = {}
for i = 4, #ARGV do
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then new[#new + 1] = ARGV[i] end
end
local count = redis.call('ZCARD', KEYS[1])
if #new == 0 then return {1, count, 0} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {0, count, 0} end
if count + #new > limit then
  redis.call('SET', KEYS[2], ARGV[1])
  return {0, count, 1}
end
for _, key in ipairs(new) do redis.call('ZADD', KEYS[1], ARGV[1], key) end
redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
local answer = {1, count + #new, 0}
for _, key in ipairs(new) do answer[#answer + 1] = key end
return answer
"""
_RELEASE: Final = """
local engaged = redis.call('EXISTS', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
return engaged
"""


@dataclass(frozen=True, slots=True)
class Decision:
    applied: bool
    """Go ahead: the changes are counted now (``new``), or were already."""
    count: int
    """Changes of the kind counted in the window, after this decision."""
    engaged_now: bool = False
    """This decision engaged the brake (its first hold)."""
    new: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class KindState:
    count: int
    engaged_since: float | None
    """When the brake engaged (seconds since the epoch), None when it is not engaged."""


class BrakeStore(Protocol):
    async def reserve(self, kind: str, keys: Sequence[str], limit: int) -> Decision: ...

    async def cancel(self, kind: str, keys: Sequence[str]) -> None:
        """Uncount changes that were not applied after all (Modyo refused them)."""
        ...

    async def release(self, kind: str) -> bool:
        """Disengage and empty the window of ``kind``; whether it was engaged."""
        ...

    async def state(self, kind: str) -> KindState: ...


class MemoryBrakeStore:
    """One process's counts (a single replica)."""

    def __init__(self, window_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self._window = window_seconds
        self._clock = clock
        self._counted: dict[str, dict[str, float]] = {}
        self._engaged: dict[str, float] = {}

    def _current(self, kind: str) -> dict[str, float]:
        counted = self._counted.setdefault(kind, {})
        oldest = self._clock() - self._window
        while counted:
            key, moment = next(iter(counted.items()))  # counted in time order
            if moment > oldest:
                break
            del counted[key]
        return counted

    async def reserve(self, kind: str, keys: Sequence[str], limit: int) -> Decision:
        counted = self._current(kind)
        new = tuple(key for key in dict.fromkeys(keys) if key not in counted)
        if not new:
            return Decision(True, len(counted))
        if kind in self._engaged:
            return Decision(False, len(counted))
        if len(counted) + len(new) > limit:
            self._engaged[kind] = self._clock()
            return Decision(False, len(counted), engaged_now=True)
        now = self._clock()
        counted.update(dict.fromkeys(new, now))
        return Decision(True, len(counted), new=new)

    async def cancel(self, kind: str, keys: Sequence[str]) -> None:
        counted = self._counted.get(kind, {})
        for key in keys:
            counted.pop(key, None)

    async def release(self, kind: str) -> bool:
        self._counted.pop(kind, None)
        return self._engaged.pop(kind, None) is not None

    async def state(self, kind: str) -> KindState:
        return KindState(len(self._current(kind)), self._engaged.get(kind))


class RedisBrakeStore:
    """Counts every replica shares: per kind, a sorted set of the counted keys (scored by
    when) and an engaged flag, both under ``idempotency.key_prefix``."""

    def __init__(
        self, link: SharedLink, window_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._link = link
        self._window = window_seconds
        self._clock = clock
        self._reserve = link.client.register_script(_RESERVE)
        self._release = link.client.register_script(_RELEASE)

    def _keys(self, kind: str) -> list[str]:
        return [self._link.key("brake", kind, "counted"), self._link.key("brake", kind, "engaged")]

    async def reserve(self, kind: str, keys: Sequence[str], limit: int) -> Decision:
        args = [repr(self._clock()), repr(self._window), limit, *dict.fromkeys(keys)]
        answer = await self._link.call(
            "brake reserve", lambda: self._reserve(keys=self._keys(kind), args=args)
        )
        applied, count, engaged_now, *new = answer
        return Decision(
            bool(applied), int(count), bool(engaged_now), tuple(_text(key) for key in new)
        )

    async def cancel(self, kind: str, keys: Sequence[str]) -> None:
        if keys:
            counted = self._keys(kind)[0]
            await self._link.call("brake cancel", lambda: self._link.client.zrem(counted, *keys))

    async def release(self, kind: str) -> bool:
        engaged = await self._link.call(
            "brake release", lambda: self._release(keys=self._keys(kind), args=[])
        )
        return bool(engaged)

    async def state(self, kind: str) -> KindState:
        counted, engaged = self._keys(kind)
        oldest = self._clock() - self._window

        async def read() -> tuple[int, bytes | str | None]:
            count = await self._link.client.zcount(counted, f"({oldest!r}", "+inf")
            return int(count), await self._link.client.get(engaged)

        count, since = await self._link.call("brake state", read)
        return KindState(count, None if since is None else float(_text(since)))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
