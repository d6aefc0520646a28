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

A write costs one round trip before its answer (a create two: its create lock): ``start``
(the claim, else the lead, in one script). Its other round trip follows the answer:
``finish``, one script that drops the kept answers about what it wrote, releases the create
locks the execution deferred (``bridge.store.redis_locks``) and ends the flight
(docs/design/reliability.md, "Shared store").

Every value carries a TTL: Redis holds nothing beyond ``ttl_seconds``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Final

from bridge.store.answers import Flight, Kept, Lead, LeadResult, StoredAnswer
from bridge.store.redis_link import RedisLink, Renewal, digest
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
# KEYS: a lock. ARGV: token, ttl (ms). Extends the lock if the token still owns it.
RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Drops the kept answers about resources but one key's: the resources' sets are KEYS[at]...
# (ARGV[3] of them; the caller defines ``at``); ARGV: the prefix of kept answers, the key to
# keep, the number of sets.
INVALIDATE_LUA: Final = """
local n = tonumber(ARGV[3])
for i = at, at + n - 1 do
  for _, key in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    if key ~= ARGV[2] then
      redis.call('DEL', ARGV[1] .. key)
      redis.call('SREM', KEYS[i], key)
    end
  end
end
"""
INVALIDATE: Final = "local at = 1" + INVALIDATE_LUA + "return 1"
# A lead's end, in one round trip after its answer. KEYS: the lead, its done list, the
# resources' sets, then pairs of a create lock and its free list. ARGV: as INVALIDATE's, then
# the ttl (ms: the done list's and the free lists' expiry), the lead's token, the outcome (''
# when abandoned), then each create lock's token. The invalidation, the create locks' release
# (redis_locks.RELEASE_LUA), the outcome pushed for the waiting twins, and the lead released
# if the token still owns it.
FINISH: Final = (
    "local at = 3"
    + INVALIDATE_LUA
    + "local first, ttl_at, token_at = n + 3, 4, 7"
    + RELEASE_LUA
    + """
redis.call('RPUSH', KEYS[2], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if redis.call('GET', KEYS[1]) == ARGV[5] then redis.call('DEL', KEYS[1]) end
return 1
"""
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
        """Drop the kept answers about ``resources`` but ``keep``'s: one round trip, none
        when there are none."""
        if not resources:
            return
        keys = [self.link.key("res", digest(resource)) for resource in sorted(resources)]
        args: list[str | int] = [self.link.key("kept", ""), keep, len(keys)]
        await self.link.call("invalidate", lambda: self._invalidate(keys=keys, args=args))

    async def end(
        self, lead: _RedisLead, written: frozenset[str], held: list[Held], payload: bytes
    ) -> None:
        """A lead's end (:data:`FINISH`): one round trip."""
        indexes = [self.link.key("res", digest(resource)) for resource in sorted(written)]
        locks, tokens = release_arguments(held, self.lock_ttl_ms)
        keys = [lead.lock, lead.done_key, *indexes, *locks]
        args: list[str | int | bytes] = [
            self.link.key("kept", ""), lead.key, len(indexes), *tokens[:1], lead.token,
            payload, *tokens[1:],
        ]  # fmt: skip
        await self.link.call("finish", lambda: self.finish_script(keys=keys, args=args))

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
        lead.renewal = Renewal(self.lock_ttl / 3, partial(self.renew, lock, token))
        lead.renewal.start()
        return lead

    async def renew(self, lock: str, token: str) -> bool:
        """Extend ``lock`` while ``token`` owns it; whether it still does."""
        renewed = await self.link.call(
            "renew", lambda: self._renew(keys=[lock], args=[token, self.lock_ttl_ms])
        )
        return bool(renewed)


@dataclass(slots=True)
class _RedisLead:
    store: RedisStore
    key: str
    lock: str
    done_key: str
    token: str
    done: bool = False
    renewal: Renewal | None = None
    deferred: list[Held] = field(default_factory=list)
    """The create locks the execution held, released by :meth:`finish`."""

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        reset = DEFERRED.set(self.deferred)
        try:
            yield
        finally:
            DEFERRED.reset(reset)

    async def finish(self, outcome: LeadResult, written: frozenset[str] = frozenset()) -> None:
        payload = _encode(outcome.answer, [], outcome.delivered, outcome.resource)
        await self._end(written, payload)

    async def abandon(self) -> None:
        await self._end(frozenset(), b"")

    async def _end(self, written: frozenset[str], payload: bytes) -> None:
        if self.done:
            return
        self.done = True
        if self.renewal is not None:
            self.renewal.stop()
        held, self.deferred = self.deferred, []
        await self.store.end(self, written, held, payload)


@dataclass(frozen=True, slots=True)
class _RedisFlight(Flight):
    store: RedisStore
    lock: str
    done: str
    token: str

    async def outcome(self) -> LeadResult | None:
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


def _outcome(value: bytes) -> LeadResult | None:
    if not value:
        return None  # the lead was abandoned
    answer, meta = _decode(value)
    resource = meta.get("w")
    return LeadResult(answer, bool(meta.get("d")), None if resource is None else str(resource))
