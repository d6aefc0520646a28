"""The idempotency store in Redis, shared by every replica and worker: the semantics of
:class:`~bridge.store.answers.MemoryStore`, across processes.

Keys (after ``idempotency.key_prefix``; ``K`` is the request's SHA-256 key, already a digest of
token, method, path and body, and ``R`` a digest of a resource name):

- ``kept:K``: an undelivered answer, for ``ttl_seconds`` (``claim`` is ``GETDEL``: atomic);
- ``res:R``: the set of ``K`` whose kept answers wrote resource ``R``, for ``ttl_seconds``
  (``invalidate`` drops them in one script);
- ``lead:K``: single-flight, the leader's owner token with an expiry of ``lock_ttl_seconds``
  that the leader renews while it executes; only its owner releases it (compare-and-delete);
- ``done:K:T``: the outcome of token ``T``'s flight, a one-element list. Followers wait on it
  with a blocking ``BLMOVE`` of the list onto itself (nothing is consumed, so every follower
  wakes); an empty element is a lead abandoned. A follower whose wait outlasts the lock finds
  the lock gone (its process died) and answers None: it begins again.

A write costs two round trips before its answer (a create three: its create lock): ``start``
(the claim, else the lead, in one script) and ``settle`` (the invalidation, with the create
locks' release that the execution deferred, ``bridge.store.redis_locks``); the lead's
end (``finish``) follows the answer.

Every value carries a TTL: Redis holds nothing beyond ``ttl_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Final

from bridge.store.answers import Flight, Kept, Lead, Outcome, StoredAnswer
from bridge.store.errors import StoreUnavailable
from bridge.store.redis_link import RedisLink, digest
from bridge.store.redis_locks import DEFERRED, RELEASE_LUA, Held, release_arguments

log = logging.getLogger("bridge.idempotency")

# KEYS: kept, lead. ARGV: token, ttl (ms). {1, answer} when a kept answer was claimed,
# {2, holder's token} when another leads, {3} when this call took the lead: claim, else begin.
START: Final = """
local kept = redis.call('GETDEL', KEYS[1])
if kept then return {1, kept} end
local holder = redis.call('GET', KEYS[2])
if holder then return {2, holder} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {3}
"""
# KEYS: lead. ARGV: token, ttl (ms). The holder's token, or nil when this call took the lock.
BEGIN: Final = """
local holder = redis.call('GET', KEYS[1])
if holder then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
# KEYS: lead, done. ARGV: token, outcome ('' when abandoned), ttl (ms).
FINISH: Final = """
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
# KEYS: a lock. ARGV: token, ttl (ms). Extends the lock if the token still owns it.
RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: the resources' sets (ARGV[3] of them), then pairs of a create lock and its free list.
# ARGV: the prefix of kept answers, the key to keep, the number of sets, the free lists' expiry
# (ms), then each lock's token. Drops the kept answers about the resources, then releases the
# locks (redis_locks.RELEASE_LUA): a write's last step before its answer, in one round trip.
SETTLE: Final = (
    """
local n = tonumber(ARGV[3])
for i = 1, n do
  for _, key in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    if key ~= ARGV[2] then
      redis.call('DEL', ARGV[1] .. key)
      redis.call('SREM', KEYS[i], key)
    end
  end
end
local first, ttl_at, token_at = n + 1, 4, 5"""
    + RELEASE_LUA
    + "return 1"
)


class RedisStore:
    """:class:`~bridge.store.answers.IdempotencyStore` in Redis (module docstring)."""

    def __init__(self, link: RedisLink, ttl_seconds: float, lock_ttl_seconds: float) -> None:
        self.link = link
        self.ttl_ms = max(1, round(ttl_seconds * 1000))
        self.lock_ttl = lock_ttl_seconds
        client = link.client
        self._begin = client.register_script(BEGIN)
        self.finish_script = client.register_script(FINISH)
        self._renew = client.register_script(RENEW)
        self._start = client.register_script(START)
        self._settle = client.register_script(SETTLE)

    @property
    def lock_ttl_ms(self) -> int:
        return max(1, round(self.lock_ttl * 1000))

    async def claim(self, key: str) -> Kept | None:
        kept = self.link.key("kept", key)
        value = await self.link.call("claim", partial(self.link.client.getdel, kept))
        return None if value is None else _kept(_bytes(value))

    async def put(self, key: str, answer: StoredAnswer, resources: frozenset[str]) -> None:
        async def put() -> None:
            async with self.link.client.pipeline(transaction=True) as pipe:
                value = _encode(answer, sorted(resources))
                pipe.set(self.link.key("kept", key), value, px=self.ttl_ms)
                for resource in resources:
                    index = self.link.key("res", digest(resource))
                    pipe.sadd(index, key)
                    pipe.pexpire(index, self.ttl_ms)
                await pipe.execute()

        await self.link.call("put", put)

    async def invalidate(self, resources: frozenset[str], keep: str) -> None:
        await self.settle(resources, keep, [])

    async def settle(self, resources: frozenset[str], keep: str, held: list[Held]) -> None:
        """Drop the kept answers about ``resources`` but ``keep``'s, and release ``held``
        create locks: one round trip, none when there is nothing to do."""
        if not resources and not held:
            return
        indexes = [self.link.key("res", digest(resource)) for resource in sorted(resources)]
        locks, tokens = release_arguments(held, self.lock_ttl_ms)
        keys = [*indexes, *locks]
        args = [self.link.key("kept", ""), keep, len(indexes), *tokens]
        await self.link.call("settle", lambda: self._settle(keys=keys, args=args))

    async def begin(self, key: str) -> Lead | Flight:
        token = secrets.token_hex(8)
        lock = self.link.key("lead", key)
        holder = await self.link.call(
            "begin", lambda: self._begin(keys=[lock], args=[token, self.lock_ttl_ms])
        )
        return self._begun(key, token, holder)

    async def start(self, key: str) -> Kept | Lead | Flight:
        token = secrets.token_hex(8)
        keys = [self.link.key("kept", key), self.link.key("lead", key)]
        started = await self.link.call(
            "start", lambda: self._start(keys=keys, args=[token, self.lock_ttl_ms])
        )
        if started[0] == 1:
            return _kept(_bytes(started[1]))
        return self._begun(key, token, started[1] if started[0] == 2 else None)

    def _begun(self, key: str, token: str, holder: bytes | None) -> Lead | Flight:
        """A flight if ``holder`` (another's token) leads, else this call's lead."""
        lock = self.link.key("lead", key)
        if holder is not None:
            token = holder.decode()
            return _RedisFlight(self, lock, self.link.key("done", key, token), token)
        lead = _RedisLead(self, key, lock, self.link.key("done", key, token), token)
        lead.start_renewing()
        return lead

    async def renew(self, lock: str, token: str) -> bool:
        """Extend ``lock`` while ``token`` owns it; whether it still does."""
        renewed = await self.link.call(
            "renew", lambda: self._renew(keys=[lock], args=[token, self.lock_ttl_ms])
        )
        return bool(renewed)

    async def renewing(self, lock: str, token: str) -> None:
        """Keep ``lock`` alive (every third of its TTL) until cancelled or lost."""
        while True:
            await asyncio.sleep(self.lock_ttl / 3)
            try:
                if not await self.renew(lock, token):
                    log.warning("a lock expired before its holder finished; another may take over")
                    return
                log.debug("lock renewed")
            except StoreUnavailable:
                continue  # logged by the link; the next renewal may reach it


@dataclass(slots=True)
class _RedisLead:
    store: RedisStore
    key: str
    lock: str
    done_key: str
    token: str
    done: bool = False
    _renewal: asyncio.Task[None] | None = field(default=None)
    deferred: list[Held] = field(default_factory=list)
    """The create locks the execution held, released by :meth:`settle`."""

    def start_renewing(self) -> None:
        self._renewal = asyncio.create_task(self.store.renewing(self.lock, self.token))

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        reset = DEFERRED.set(self.deferred)
        try:
            yield
        finally:
            DEFERRED.reset(reset)

    async def settle(self, resources: frozenset[str]) -> None:
        held, self.deferred = self.deferred, []
        await self.store.settle(resources, self.key, held)

    async def finish(self, outcome: Outcome) -> None:
        await self._end(_encode(outcome.answer, [], outcome.delivered, outcome.resource))

    async def abandon(self) -> None:
        with contextlib.suppress(StoreUnavailable):  # they expire by themselves
            await self.settle(frozenset())
        await self._end(b"")

    async def _end(self, payload: bytes) -> None:
        if self.done:
            return
        self.done = True
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
        store, keys = self.store, [self.lock, self.done_key]
        args: list[str | int | bytes] = [self.token, payload, store.lock_ttl_ms]
        await store.link.call("finish", lambda: store.finish_script(keys=keys, args=args))


@dataclass(frozen=True, slots=True)
class _RedisFlight:
    store: RedisStore
    lock: str
    done: str
    token: str

    async def outcome(self) -> Outcome | None:
        store, link, done = self.store, self.store.link, self.done
        client = link.client
        while True:
            wait = max(0.01, min(store.lock_ttl, link.bound(store.lock_ttl + 1) - 0.5))
            value = await link.call(
                "wait",
                partial(client.blmove, done, done, wait, "LEFT", "LEFT"),  # type: ignore[arg-type]
                within=store.lock_ttl + 1,
            )
            if value is not None:
                return _outcome(_bytes(value))
            # no outcome within a lock's lifetime: is the leader still alive?
            async with client.pipeline(transaction=False) as pipe:
                pipe.get(self.lock)
                pipe.lindex(done, 0)
                holder, value = await link.call("wait", pipe.execute)
            if value is not None:
                return _outcome(value)
            if holder is None or holder.decode() != self.token:
                log.info("the leader of an identical request vanished; taking over")
                return None


def _encode(
    answer: StoredAnswer,
    resources: list[str],
    delivered: bool | None = None,
    resource: str | None = None,
) -> bytes:
    """A JSON line of metadata, then the body's bytes as they are (no re-encoding)."""
    meta: dict[str, object] = {
        "s": answer.status,
        "h": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in answer.headers],
    }
    if resources:
        meta["r"] = resources
    if delivered is not None:
        meta["d"] = delivered
        meta["w"] = resource
    return json.dumps(meta, separators=(",", ":")).encode() + b"\n" + answer.body


def _decode(value: bytes) -> tuple[StoredAnswer, dict[str, object]]:
    line, _, body = value.partition(b"\n")
    meta = json.loads(line)
    headers = tuple((name.encode("latin-1"), text.encode("latin-1")) for name, text in meta["h"])
    return StoredAnswer(int(meta["s"]), headers, body), meta


def _bytes(value: bytes | str) -> bytes:
    """What the client answers (it does not decode responses)."""
    return value if isinstance(value, bytes) else value.encode()


def _kept(value: bytes) -> Kept:
    answer, meta = _decode(value)
    resources = meta.get("r", [])
    assert isinstance(resources, list)
    return Kept(answer, frozenset(str(resource) for resource in resources))


def _outcome(value: bytes) -> Outcome | None:
    if not value:
        return None  # the lead was abandoned
    answer, meta = _decode(value)
    resource = meta.get("w")
    return Outcome(answer, bool(meta.get("d")), None if resource is None else str(resource))
