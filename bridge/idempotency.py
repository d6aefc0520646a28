"""The idempotency cache: a retried or duplicated write never reaches Modyo twice.

Two identical writes (same token, method, path and canonical JSON body) within the TTL get the
same answer: the first is executed, a later one replays the stored answer, and concurrent ones
are coalesced into the single upstream operation in flight (single-flight). Only answers that
are safe to replay are stored: 2xx. An error may depend on a state that changes (a member that
will exist, Modyo back from an outage), so it is never replayed.

A stored answer is tied to the resource it wrote (``User/12``, or the one a create made).
Any other write to one of them invalidates it, so "disable, enable, disable" executes three
times, and a create replayed after its user was deleted creates again.

``IdempotencyStore`` is the storage interface; :class:`MemoryStore` keeps entries in this
process, bounded by ``max_entries`` (oldest evicted first) and ``ttl_seconds``. A shared store
(Redis, say) would implement the same three methods for several replicas; single-flight then
needs a shared lock too, which is why the bridge runs as one instance for now.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge import request_state
from bridge.metrics import IDEMPOTENCY
from bridge.scim.errors import PayloadTooLarge, error_response

WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REPLAYED_HEADER: Final = (b"x-idempotent-replay", b"true")
_KEPT_HEADERS: Final = frozenset({b"content-type", b"location", b"content-length"})


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


@dataclass(slots=True)
class _Entry:
    answer: StoredAnswer
    expires: float
    resources: frozenset[str] = field(default_factory=frozenset)


class IdempotencyStore(Protocol):
    """Where answers live. Keys are opaque digests; ``resources`` name what an answer wrote
    (``User/12``)."""

    async def get(self, key: str) -> StoredAnswer | None: ...

    async def put(self, key: str, answer: StoredAnswer, resources: frozenset[str]) -> None: ...

    async def invalidate(self, resources: frozenset[str], keep: str) -> None: ...


class MemoryStore:
    """An in-process store: at most ``max_entries`` answers, each for ``ttl_seconds``."""

    def __init__(
        self, max_entries: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_resource: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> StoredAnswer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            self._drop(key)
            return None
        return entry.answer

    async def put(self, key: str, answer: StoredAnswer, resources: frozenset[str]) -> None:
        self._drop(key)
        self._expire()
        while len(self._entries) >= self.max_entries:
            self._drop(next(iter(self._entries)))  # oldest first
        self._entries[key] = _Entry(answer, self._clock() + self.ttl_seconds, resources)
        for resource in resources:
            self._by_resource.setdefault(resource, set()).add(key)

    async def invalidate(self, resources: frozenset[str], keep: str) -> None:
        for resource in resources:
            for key in list(self._by_resource.get(resource, ())):
                if key != keep:
                    self._drop(key)

    def _expire(self) -> None:
        """Entries are kept in insertion order with one TTL, so expired ones are at the front."""
        now = self._clock()
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.expires > now:
                return
            self._drop(key)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for resource in entry.resources:
            keys = self._by_resource.get(resource)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_resource[resource]


class IdempotencyMiddleware:
    """ASGI middleware around the SCIM router (inside authentication)."""

    def __init__(self, app: ASGIApp, store: IdempotencyStore, max_body_bytes: int) -> None:
        self.app = app
        self.store = store
        self.max_body_bytes = max_body_bytes
        self._in_flight: dict[str, asyncio.Future[StoredAnswer]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITE_METHODS
            or str(scope["path"]).endswith("/.search")  # a query sent as POST: never replayed
        ):
            await self.app(scope, receive, send)
            return
        body = await self._read_body(receive)
        if body is None:
            too_large = PayloadTooLarge(detail=f"request body exceeds {self.max_body_bytes} bytes")
            await error_response(too_large)(scope, receive, send)
            return
        key = _key(scope, body)
        stored = await self.store.get(key)
        if stored is not None:
            IDEMPOTENCY("replayed").inc()
            await _send_answer(stored, send, replayed=True)
            return
        running = self._in_flight.get(key)
        if running is not None:
            IDEMPOTENCY("coalesced").inc()
            await _send_answer(await asyncio.shield(running), send, replayed=True)
            return
        IDEMPOTENCY("executed").inc()
        await self._execute(key, scope, body, send)

    async def _execute(self, key: str, scope: Scope, body: bytes, send: Send) -> None:
        future: asyncio.Future[StoredAnswer] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        captured = _Capture(send)
        try:
            await self.app(scope, _replay(body), captured.send)
            answer = captured.answer()
            if 200 <= answer.status < 300:
                resources = _resources()
                await self.store.invalidate(resources, keep=key)
                await self.store.put(key, answer, resources)
            future.set_result(answer)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs "never retrieved"
            raise
        finally:
            del self._in_flight[key]

    async def _read_body(self, receive: Receive) -> bytes | None:
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                return None
            if not message.get("more_body"):
                return bytes(body)


class _Capture:
    """Passes a response through while keeping a copy of it."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
        await self._send(message)

    def answer(self) -> StoredAnswer:
        kept = tuple((name, value) for name, value in self.headers if name.lower() in _KEPT_HEADERS)
        return StoredAnswer(self.status, kept, bytes(self.body))


async def _send_answer(answer: StoredAnswer, send: Send, replayed: bool) -> None:
    headers = list(answer.headers) + ([REPLAYED_HEADER] if replayed else [])
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _key(scope: Scope, body: bytes) -> str:
    """SHA-256 of the credential, method, path and canonical body: the raw token never lives
    in the cache, and ``{"a":1,"b":2}`` equals ``{ "b": 2, "a": 1 }``."""
    credential = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            credential = value
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    digest = hashlib.sha256()
    method, path = scope["method"].encode(), _path(scope).encode()
    for part in (credential, method, path, scope["query_string"], canonical):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def _path(scope: Scope) -> str:
    return str(scope.get("root_path", "")) + str(scope["path"])


def _resources() -> frozenset[str]:
    """The resource an answer wrote, as routing recorded it (``User/12``; a create records
    the one it made)."""
    state = request_state.current()
    if state is None or state.resource_type is None or state.resource_id is None:
        return frozenset()
    return frozenset({f"{state.resource_type}/{state.resource_id}"})
