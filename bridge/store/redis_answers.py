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

Every value carries a TTL: Redis holds nothing beyond ``ttl_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from functools import partial
from typing import Final

from bridge.store.answers import Flight, Kept, Lead, Outcome, StoredAnswer
from bridge.store.errors import StoreUnavailable
from bridge.store.redis_link import RedisLink, digest

log = logging.getLogger("bridge.idempotency")

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
# KEYS: the resources' sets. ARGV: the prefix of kept answers, the key to keep.
INVALIDATE: Final = """
for _, index in ipairs(KEYS) do
  for _, key in ipairs(redis.call('SMEMBERS', index)) do
    if key ~= ARGV[2] then
      redis.call('DEL', ARGV[1] .. key)
      redis.call('SREM', index, key)
    end
  end
end
return 1
"""


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
        self._invalidate = client.register_script(INVALIDATE)

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
        if not resources:
            return
        indexes = [self.link.key("res", digest(resource)) for resource in sorted(resources)]
        args: list[str | int | bytes] = [self.link.key("kept", ""), keep]
        await self.link.call("invalidate", lambda: self._invalidate(keys=indexes, args=args))

    async def begin(self, key: str) -> Lead | Flight:
        token = secrets.token_hex(8)
        lock = self.link.key("lead", key)
        holder = await self.link.call(
            "begin", lambda: self._begin(keys=[lock], args=[token, self.lock_ttl_ms])
        )
        if holder is not None:
            token = holder.decode()
            return _RedisFlight(self, lock, self.link.key("done", key, token), token)
        lead = _RedisLead(self, lock, self.link.key("done", key, token), token)
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
    lock: str
    done_key: str
    token: str
    done: bool = False
    _renewal: asyncio.Task[None] | None = field(default=None)

    def start_renewing(self) -> None:
        self._renewal = asyncio.create_task(self.store.renewing(self.lock, self.token))

    async def finish(self, outcome: Outcome) -> None:
        await self._end(_encode(outcome.answer, [], outcome.delivered, outcome.resource))

    async def abandon(self) -> None:
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
