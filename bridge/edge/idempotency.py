"""The idempotency cache's rule, as ASGI middleware around the SCIM router (inside
authentication).

RFC 7644's MUSTs win over replay: a create that conflicts with an existing resource gets 409
``uniqueness`` (§3.3) and a DELETE of a resource that no longer exists gets 404 (§3.6), also
when the request is an exact twin of one that just succeeded. So an answer is **replayed only
to a request whose earlier identical twin's answer never reached its client**: the client
disconnected before the answer was sent (Entra gave up waiting and will retry), or the twin is
still in flight and its client has gone. Such an answer is kept (``store.put``) for
``ttl_seconds`` and handed to the first identical retry (``store.claim``), which then gets the
original 201/204 instead of a 409/404 for its own create or delete.

Identical writes (same credential, method, path, query and canonical JSON body) arriving
together still cause one Modyo write (single-flight, ``store.begin``); each waiting twin is
answered as if it had come after the leader: a created resource makes a twin's create 409, a
deleted one makes a twin's delete 404, and any other answer is shared (a PATCH or PUT twin
would change nothing more). Errors are never kept: they may depend on a state that changes.

"Never reached its client" is what the ASGI server tells: an ``http.disconnect`` received
before the last body chunk was sent. A TCP proxy in front may hide a client's disconnect (it
keeps its own connection to the bridge open), and an answer written to the socket just before
the client vanished counts as delivered: docs/design/reliability.md states this limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from typing import Final

from scim2_models import NotFoundException, SCIMException, UniquenessException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge import request_state
from bridge.metrics import IDEMPOTENCY
from bridge.scim.errors import error_response
from bridge.store.answers import Flight, IdempotencyStore, Kept, Lead, LeadResult, StoredAnswer
from bridge.store.errors import StoreUnavailable

log = logging.getLogger("bridge.idempotency")
WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REPLAYED_HEADER: Final = (b"x-idempotent-replay", b"true")
# Headers of one exchange, not of the answer: never copied into an answer given to another
# request. Every other header the app sets is the answer's (Location, Retry-After of a 503,
# WWW-Authenticate, Allow) and goes wherever the answer goes.
_EXCHANGE_HEADERS: Final = frozenset(
    {b"date", b"server", b"x-request-id", b"connection", b"keep-alive", b"transfer-encoding"}
)
# A body's canonical form, for its key: built once (``json.dumps``/``loads`` build them per call).
_DECODER: Final = json.JSONDecoder()
_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, store: IdempotencyStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITE_METHODS
            or str(scope["path"]).endswith("/.search")  # a query sent as POST: never replayed
        ):
            await self.app(scope, receive, send)
            return
        body = await _whole_body(receive)  # complete and size-checked already (bridge/edge/body.py)
        key = _key(scope, body)
        client = _Client(receive, send)
        try:
            while True:
                begun = await self.store.start(key)  # a kept answer, else single-flight
                if isinstance(begun, Kept):
                    await self._hand_over(key, begun, client)
                    return
                if not isinstance(begun, Flight):
                    await self._lead(key, scope, body, begun, client)
                    return
                IDEMPOTENCY("coalesced").inc()
                log.debug("waiting for an identical request in flight")
                outcome = await begun.outcome()
                if outcome is not None:
                    await self._follow(key, scope, outcome, client)
                    return
                # the leader gave up without an outcome: begin again (and perhaps lead)
        finally:
            client.stop_watching()

    async def _replay(self, key: str, client: _Client) -> bool:
        """Hand a kept (undelivered) answer, if there is one, to this retry."""
        kept = await self.store.claim(key)
        if kept is None:
            return False
        await self._hand_over(key, kept, client)
        return True

    async def _hand_over(self, key: str, kept: Kept, client: _Client) -> None:
        """Deliver a claimed answer; keep it again if it is lost too."""
        IDEMPOTENCY("replayed").inc()
        serving = request_state.current()
        if serving is not None and kept.resources:  # what it wrote, for its journal event
            resource = min(kept.resources)
            serving.resource_type, _, serving.resource_id = resource.partition("/")
        if not await client.deliver(kept.answer, replayed=True):
            await self.store.put(key, kept.answer, kept.resources)

    async def _lead(self, key: str, scope: Scope, body: bytes, lead: Lead, client: _Client) -> None:
        IDEMPOTENCY("executed").inc()
        captured = _Capture()
        try:
            with lead.running():
                await self.app(scope, _body_then_disconnect(body), captured.send)
        except BaseException:
            with contextlib.suppress(StoreUnavailable):  # its locks expire anyway
                await lead.abandon()
            raise
        answer = captured.answer()
        resources = _resources()
        success = 200 <= answer.status < 300
        # The write is done: a store failure from here on must not cost its answer. Nothing
        # is asked of the store before the answer goes out (docs/design/reliability.md).
        delivered = await client.deliver(answer, replayed=False)
        serving = request_state.current()
        if not delivered and serving is not None:
            serving.undelivered_status = answer.status  # its journal event's status
        if success and not delivered:
            IDEMPOTENCY("kept_undelivered").inc()
            try:
                await self.store.put(key, answer, resources)
            except StoreUnavailable:
                _missed("keep")
            log.info(
                "answer kept for a retry: its client left before it",
                extra={"status": answer.status},
            )
        outcome = LeadResult(answer, delivered, next(iter(resources), None))
        written = resources if success else frozenset()
        try:
            await lead.finish(outcome, written)
        except StoreUnavailable:
            _missed("finish")

    async def _follow(self, key: str, scope: Scope, outcome: LeadResult, client: _Client) -> None:
        """A twin of a write that was in flight: the leader's answer if it never reached its
        client (first come, first served), else what a request after it would get."""
        if not outcome.delivered and await self._replay(key, client):
            return
        after = _after(scope["method"], outcome)
        await client.deliver(after or outcome.answer, replayed=after is None)


def _missed(what: str) -> None:
    """A store step after the write ran failed: the answer still goes out (a lock expires by
    itself; a waiting twin then begins again and gets Modyo's 409)."""
    log.warning("the shared store missed a step after a write (%s)", what)


async def _whole_body(receive: Receive) -> bytes:
    """The body, as ``bridge.edge.body`` hands it on: one message, taken as it is (no copy)."""
    message = await receive()
    if not message.get("more_body"):
        return bytes(message.get("body", b""))
    body = bytearray(message.get("body", b""))
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)


def _after(method: str, outcome: LeadResult) -> StoredAnswer | None:
    """The answer RFC 7644 gives a write arriving after the leader's success, when it differs
    from the leader's own: 409 for a create (§3.3), 404 for a delete (§3.6)."""
    answer = outcome.answer
    if not 200 <= answer.status < 300 or outcome.resource is None:
        return None
    resource_type, _, resource_id = outcome.resource.partition("/")
    error: SCIMException
    if method == "POST" and answer.status == 201:
        error = UniquenessException(
            detail=f"a {resource_type} with these attributes already exists: {resource_type} "
            f"{resource_id} was created by an identical request"
        )
    elif method == "DELETE":
        error = NotFoundException(
            detail=f"{resource_type} not found: it was deleted by an identical request"
        )
    else:
        return None
    response = error_response(error)
    return StoredAnswer(response.status_code, tuple(response.raw_headers), bytes(response.body))


class _Client:
    """The requesting client: whether it is still there, and delivering an answer to it.

    A watcher task waits on the server's ``receive`` for ``http.disconnect``: the body has
    been read, so the next message comes only when the client goes (or, after the answer,
    when the server considers the exchange complete, which is why watching stops first)."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._send = send
        self.gone = False
        self._watching = False
        self._watcher: asyncio.Task[None] | None = asyncio.create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        self._watching = True
        message = await receive()
        if message["type"] == "http.disconnect":
            self.gone = True
            IDEMPOTENCY("client_gone").inc()
            log.debug("the client left before its answer")

    def stop_watching(self) -> None:
        """A cancelled watcher records nothing more, even if the server's message is already
        on its way to it (its next step raises ``CancelledError``): no need to await it.

        The client lets go of it: a cancelled task keeps its ``CancelledError``, whose
        traceback holds the watcher's frame and so this client; holding the task as well
        would leave a reference cycle (task, frames, the request's context) per write for
        the garbage collector to find (docs/performance.md, Costs the code avoids)."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    async def deliver(self, answer: StoredAnswer, *, replayed: bool) -> bool:
        """Send ``answer`` unless the client has gone; whether it was sent.

        No event-loop pass in the common case: each pass waits behind every other ready
        request (docs/performance.md, Costs the code avoids),
        and an answer is as good as delivered once the watcher has seen no disconnect. Only
        a watcher that has not started yet (the app answered without awaiting anything) is
        given one pass, to read a disconnect the server already holds."""
        if not self._watching:
            await asyncio.sleep(0)
        if self.gone:
            return False
        self.stop_watching()
        serving = request_state.current()
        if replayed and serving is not None:
            serving.replayed = True  # its journal event: "replayed", not a write of its own
        headers = list(answer.headers) + ([REPLAYED_HEADER] if replayed else [])
        await self._send(
            {"type": "http.response.start", "status": answer.status, "headers": headers}
        )
        await self._send({"type": "http.response.body", "body": answer.body})
        return True


class _Capture:
    """Keeps the response the app sends, to deliver it once its fate is known."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    def answer(self) -> StoredAnswer:
        kept = tuple(
            (name, value) for name, value in self.headers if name.lower() not in _EXCHANGE_HEADERS
        )
        return StoredAnswer(self.status, kept, bytes(self.body))


def _body_then_disconnect(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _key(scope: Scope, body: bytes) -> str:
    """SHA-256 of the credential, method, path, query and canonical body, each preceded by its
    length (so no two requests' parts run into the same bytes): the raw token never lives in
    the cache, and ``{"a":1,"b":2}`` equals ``{ "b": 2, "a": 1 }``."""
    credential = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            credential = value
    try:
        canonical = _CANONICAL.encode(_DECODER.decode(body.decode())).encode()
    except (ValueError, RecursionError):  # not UTF-8 JSON: its bytes as they came
        canonical = body
    digest = hashlib.sha256()
    method, path = scope["method"].encode(), _path(scope).encode()
    for part in (credential, method, path, scope["query_string"], canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
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
