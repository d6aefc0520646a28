"""The hardened HTTP/1.1 protocols under the ASGI app: uvicorn's, configured for Entra, load
balancers and abuse.

Parsing. httptools (llhttp, in C) parses every request: h11, pure Python, costs more CPU per
request (docs/performance.md, Costs the code avoids). A request whose head httptools
refuses (a lowercase or unknown method, say) is handed, bytes and all, to h11 on the same
connection: h11 accepts any method token, so the app's router answers 405 with the ``Allow``
of the path, and what h11 refuses too gets a 400 ``invalidSyntax`` naming the problem.
``server.http_parser = "h11"`` uses h11 alone.

Every answer the server layer gives itself is a SCIM error (RFC 7644 §3.12) with
``Connection: close``:

- 400 ``invalidSyntax``: not HTTP/1.x (garbage, a TLS handshake on the plain port...);
- 408: no complete request head within ``server.header_timeout_seconds`` (RFC 9110 §15.5.9);
- 414: request line over :data:`MAX_REQUEST_LINE_BYTES` (RFC 9110 §15.5.15, RFC 9112 §3);
- 431: head over :data:`MAX_HEAD_BYTES` or :data:`MAX_HEADER_FIELDS` fields (RFC 6585 §5);
- 501: a transfer coding it does not implement (RFC 9112 §6.1);
- 505: an HTTP version other than 1.0 and 1.1 (RFC 9110 §15.6.6);
- 503 + ``Retry-After``: ``server.max_connections`` are open; answered at once, then closed.

Connections. Idle keep-alive connections close after ``server.keepalive_timeout_seconds``
(uvicorn's ``timeout_keep_alive``). A request head must be complete within
``server.header_timeout_seconds`` of the connection opening, or of its first byte on a kept
connection: a silent connection is closed without a word, a partial head gets 408. When an
answer goes out before its request body has arrived (413, 401...), the rest of the body is
read and dropped for at most ``server.body_timeout_seconds``. ``server.max_connections`` is
enforced here, at connection time: uvicorn's ``limit_concurrency`` answers in plain text and
only once a request head has arrived, so connections that never send a byte would hold file
descriptors unbounded. The server layer closes gracefully: answer, half-close, drop what
still comes in, close on the client's EOF or after :data:`CLOSE_LINGER_SECONDS`; closing
with unread input would reset the connection, and the client could lose the answer.

Listeners. The SCIM listener (``server.*``) and the internal one (``[internal]``: metrics)
run these protocols each with its own ``max_connections``, so a flood of one cannot take the
file descriptors of the other. TLS (``tls_cert_file``) is done here too, after admission: a
handshake holds one of ``max_connections`` and must end within the header timeout, which
then runs on for the request head; over the cap a TLS connection is closed unanswered (an
answer would need a handshake). The certificate comes from ``bridge.edge.tls``, re-read when its
files change. docs/operator/listeners.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar, Final

import h11
import httptools
from scim2_models import InvalidSyntaxException, SCIMException
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bridge.edge.errors import (
    HeaderFieldsTooLarge,
    NotImplementedByServer,
    RequestTimeout,
    ServerBusy,
    UriTooLong,
    VersionNotSupported,
)
from bridge.edge.tls import TlsFiles
from bridge.scim.errors import error_response

if TYPE_CHECKING:
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.server import ServerState

log = logging.getLogger("bridge.edge.protocols")
_H11_LOG = logging.getLogger("bridge.edge.protocols.h11")
_H11_LOG.setLevel(logging.ERROR)

MAX_REQUEST_LINE_BYTES: Final = 8192
"""RFC 9112 §3 asks every server to take request lines of at least 8,000 octets."""
MAX_HEAD_BYTES: Final = 16384
"""Request line and header fields together (h11's default; Node.js uses the same)."""
MAX_HEADER_FIELDS: Final = 100
CLOSE_LINGER_SECONDS: Final = 1.0
MAX_REFUSING: Final = 64
"""Refused connections lingering at once; beyond, a refused connection is closed unanswered."""
REFUSAL_RETRY_AFTER: Final = "5"
LOG_INTERVAL_SECONDS: Final = 10.0


# ---------------------------------------------------------------------------- answers


def _answer_bytes(error: SCIMException, default_headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A complete HTTP/1.1 response holding the SCIM error, closing the connection."""
    response = error_response(error)
    status = response.status_code
    head = [b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode())]
    for name, value in [*default_headers, *response.raw_headers, (b"connection", b"close")]:
        head.append(name + b": " + value)
    return b"\r\n".join(head) + b"\r\n\r\n" + response.body


class _Rejections:
    """What the server layer turned away, logged at most every LOG_INTERVAL_SECONDS (a flood
    of refusals must not become a flood of log lines)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._flush: asyncio.TimerHandle | None = None

    def note(self, loop: asyncio.AbstractEventLoop, reason: str) -> None:
        if self._flush is None:
            log.warning("turned away: %s", reason)
            self._flush = loop.call_later(LOG_INTERVAL_SECONDS, self._log)
        else:
            self.counts[reason] += 1

    def _log(self) -> None:
        self._flush = None
        if self.counts:
            log.warning(
                "turned away in the last %g s",
                LOG_INTERVAL_SECONDS,
                extra={"counts": dict(self.counts)},
            )
            self.counts.clear()


@dataclass(slots=True)
class _Context:
    """What the connections of one server share."""

    header_timeout: float
    body_timeout: float
    max_connections: int
    tls: TlsFiles | None = None
    fallback: type[ScimH11Protocol] | None = None
    refused: set[asyncio.Transport] = field(default_factory=set)  # answered 503, closing
    handshaking: set[_Guarded] = field(default_factory=set)  # admitted, TLS under way
    rejections: _Rejections = field(default_factory=_Rejections)
    refusal: bytes = field(  # rendered once: refusals come in floods (no Date: RFC 9110 §6.6.1)
        default_factory=lambda: _answer_bytes(
            ServerBusy(
                detail="too many connections are open; retry later",
                headers={"Retry-After": REFUSAL_RETRY_AFTER},
            ),
            (),
        )
    )


class _TooLarge(Exception):
    """Raised from a parser callback: the head breaks a size limit."""

    def __init__(self, error: SCIMException) -> None:
        super().__init__(error.detail)
        self.error = error


def _too_long_line() -> UriTooLong:
    return UriTooLong(detail=f"the request line exceeds {MAX_REQUEST_LINE_BYTES} bytes")


def _too_large_head(fields: int | None = None) -> HeaderFieldsTooLarge:
    if fields is not None:
        detail = f"the request has {fields} header fields; at most {MAX_HEADER_FIELDS}"
    else:
        detail = f"the request header fields exceed {MAX_HEAD_BYTES} bytes"
    return HeaderFieldsTooLarge(detail=detail)


def _invalid(reason: object) -> InvalidSyntaxException:
    return InvalidSyntaxException(detail=f"the request is not valid HTTP/1.1: {reason}")


# ---------------------------------------------------------------------------- connections


if TYPE_CHECKING:

    class _Uvicorn(asyncio.Protocol):
        """What :class:`_Guarded` uses of uvicorn's protocol classes, which it precedes."""

        transport: asyncio.Transport
        loop: asyncio.AbstractEventLoop
        connections: set[Any]
        server_state: ServerState
        flow: FlowControl
        timeout_keep_alive: int
        timeout_keep_alive_task: asyncio.TimerHandle | None

        def connection_made(self, transport: asyncio.Transport) -> None: ...  # type: ignore[override]
        def shutdown(self) -> None: ...
        def timeout_keep_alive_handler(self) -> None: ...
        def _unset_keepalive_if_required(self) -> None: ...
else:
    _Uvicorn = object


class _Guarded(_Uvicorn):
    """Connection limits shared by both protocols: admission, head timer, graceful close;
    the connection's start, loss and shutdown around uvicorn's."""

    context: ClassVar[_Context]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self._admitted(transport):
            return
        if self.context.tls is not None:
            self._secure(transport, super().connection_made)
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard_lost()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self._discarding:  # answered already, closing
            self.transport.close()
            return
        super().shutdown()

    def _guard_init(self) -> None:
        self._refused = False
        self._discarding = False
        self._head_started = False  # a byte of the current request head has arrived
        self._head_deadline = 0.0
        self._head_timer: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._body_linger: asyncio.TimerHandle | None = None
        self._handshaking: asyncio.Task[None] | None = None  # TLS listeners: the handshake

    def _admitted(self, transport: asyncio.Transport) -> bool:
        """Admit the connection, or answer 503 and close it (over ``max_connections``,
        counting those still in their TLS handshake; over TLS the refusal is closing at
        once: an answer would need a handshake first)."""
        context = self.context
        handshaking = len(context.handshaking)
        if len(self.connections) + handshaking < context.max_connections or (
            sum(not c.transport.is_closing() for c in self.connections) + handshaking
            < context.max_connections
        ):
            return True
        self.transport = transport
        self._refused = True
        self._discarding = True
        context.rejections.note(self.loop, f"{context.max_connections} connections open")
        if len(context.refused) >= MAX_REFUSING or context.tls is not None:
            transport.close()
            return False
        context.refused.add(transport)
        transport.write(context.refusal)
        self._close_gracefully()
        return False

    def _secure(self, raw: asyncio.Transport, connect: Callable[[asyncio.Transport], None]) -> None:
        """An admitted connection of a TLS listener: the handshake first, counted among the
        connections and bounded by the header timer (which then runs on for the head), then
        uvicorn's ``connect`` with the TLS transport."""
        self.transport = raw
        self.context.handshaking.add(self)
        self._arm_head_timer()
        self._handshaking = self.loop.create_task(self._handshake(raw, connect))

    async def _handshake(
        self, raw: asyncio.Transport, connect: Callable[[asyncio.Transport], None]
    ) -> None:
        context = self.context
        if context.tls is None:  # only TLS listeners get here
            raise RuntimeError("a TLS handshake on a plain listener")
        handover = _Handover()
        try:
            secure = await self.loop.start_tls(
                raw,
                handover,
                context.tls.current(),
                server_side=True,
                ssl_handshake_timeout=context.header_timeout,
            )
        except OSError as exc:  # ssl.SSLError, a reset, the handshake timeout
            self._cancel_timers()
            raw.close()
            reason = getattr(exc, "reason", None) or type(exc).__name__
            context.rejections.note(self.loop, f"TLS handshake failed ({reason})")
            return
        finally:
            context.handshaking.discard(self)
        if secure is None or secure.is_closing():  # closed during the handshake (its timer)
            self._cancel_timers()
            return
        secure.set_protocol(self)
        connect(secure)
        handover.hand_to(self)

    def _arm_head_timer(self, deadline: float | None = None) -> None:
        self._head_deadline = deadline or self.loop.time() + self.context.header_timeout
        self._head_timer = self.loop.call_at(self._head_deadline, self._head_timed_out)

    def _head_complete(self) -> None:
        self._head_started = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if not self._head_started:  # never said a word: nobody to answer
            self.transport.close()
            return
        timeout = self.context.header_timeout
        self._answer(
            RequestTimeout(detail=f"the request head did not arrive within {timeout:g} seconds"),
            "408 request head too slow",
        )

    def _answer(self, error: SCIMException, reason: str) -> None:
        """Answer the SCIM error and close the connection gracefully."""
        self.context.rejections.note(self.loop, reason)
        self.transport.write(_answer_bytes(error, self.server_state.default_headers))
        self._close_gracefully()

    def _close_gracefully(self) -> None:
        self._discarding = True
        self._cancel_timers()
        if self.flow is not None:
            self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger = self.loop.call_later(CLOSE_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def _start_body_linger(self) -> None:
        """Answered before the body arrived: drop the rest, within the body timeout."""
        self._unset_keepalive_if_required()
        self._body_linger = self.loop.call_later(self.context.body_timeout, self.transport.close)

    def _end_body_linger(self) -> None:
        """The dropped body is complete: the connection is idle, kept alive as usual."""
        if self._body_linger is not None:
            self._body_linger.cancel()
            self._body_linger = None
        if not self.transport.is_closing():
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def _cancel_timers(self) -> None:
        self._unset_keepalive_if_required()
        for timer in (self._head_timer, self._linger, self._body_linger):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._linger = self._body_linger = None

    def _guard_lost(self) -> None:
        self._cancel_timers()
        if self._refused:
            self.context.refused.discard(self.transport)


class _Handover(asyncio.Protocol):
    """The protocol of a TLS connection between the end of its handshake and the start of
    HTTP's: asyncio reads on at once (a request may come with the client's last handshake
    message), so what arrives is held, then handed to the HTTP protocol."""

    def __init__(self) -> None:
        self.target: asyncio.Protocol | None = None
        self.held = bytearray()
        self.ended = False
        self.lost = False

    def data_received(self, data: bytes) -> None:
        if self.target is not None:
            self.target.data_received(data)
        else:
            self.held += data

    def eof_received(self) -> bool | None:
        if self.target is not None:
            return self.target.eof_received()
        self.ended = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.target is not None:
            self.target.connection_lost(exc)
        else:
            self.lost = True

    def hand_to(self, protocol: asyncio.Protocol) -> None:
        self.target = protocol
        if self.held:
            protocol.data_received(bytes(self.held))
            self.held.clear()
        if self.ended:
            protocol.eof_received()
        if self.lost:
            protocol.connection_lost(None)


class ScimHttpToolsProtocol(_Guarded, HttpToolsProtocol):
    """uvicorn's httptools protocol with the bridge's limits and SCIM answers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard_init()
        self._fresh = True  # the next byte starts a request
        self._in_head = False
        self._ended_in_chunk = False  # a request ended inside the chunk being parsed
        self._head_size = 0
        self._head_chunks: list[bytes] | None = []  # None: where the head began is unknown

    def _idle(self) -> bool:
        return (self.cycle is None or self.cycle.response_complete) and self._body_linger is None

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        self._unset_keepalive_if_required()
        if self._fresh:
            self._head_chunks, self._head_size = [data], len(data)
        elif self._in_head:
            self._head_size += len(data)
            if self._head_chunks is not None:
                self._head_chunks.append(data)
        self._ended_in_chunk = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():  # never: websockets are off
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)
            return
        if self._discarding or self.transport.is_closing():
            return
        if self._in_head:
            if len(self.url) > MAX_REQUEST_LINE_BYTES:
                self._refuse_head(_too_long_line())
                return
            if self._head_size > MAX_HEAD_BYTES:
                self._refuse_head(_too_large_head())
                return
        if (  # bytes of a head that is not complete (a whole head in one chunk needs no timer)
            self._head_timer is None and self.timeout_keep_alive_task is None and self._idle()
        ):
            self._arm_head_timer()

    # parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._ended_in_chunk:  # pipelined behind a request in the same chunk
            self._head_chunks, self._head_size = None, 0
        self._fresh = False
        self._in_head = True
        self._head_started = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_chunks = None
        self._head_complete()
        if len(self.url) > MAX_REQUEST_LINE_BYTES:
            raise _TooLarge(_too_long_line())
        if len(self.headers) > MAX_HEADER_FIELDS:
            raise _TooLarge(_too_large_head(len(self.headers)))
        if (self._head_size == 0 or self._head_size > MAX_HEAD_BYTES) and sum(
            len(name) + len(value) for name, value in self.headers
        ) + len(self.url) > MAX_HEAD_BYTES:
            raise _TooLarge(_too_large_head())
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.scope is self.scope:  # this request's
            self.cycle.transport = _OneWrite(self.transport, self.loop)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._fresh = True
        self._ended_in_chunk = True
        super().on_message_complete()
        if self._body_linger is not None:
            self._end_body_linger()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or self.pipeline:
            return
        if self.cycle.more_body:
            self._start_body_linger()
        elif self._in_head and self._head_timer is None:  # a pipelined head is under way
            self._unset_keepalive_if_required()
            self._arm_head_timer()

    # failures

    def _parse_failed(self, exc: httptools.HttpParserError) -> None:
        cause = exc.__context__
        too_large = cause.error if isinstance(cause, _TooLarge) else None
        in_flight = self.cycle is not None and not self.cycle.response_complete
        if self._in_head or self._fresh or too_large is not None:  # a request head
            if in_flight:  # pipelined behind a request still being answered
                self._discarding = True
                self.cycle.keep_alive = False  # close once that answer is out
                return
            if too_large is None and self._head_chunks is not None and not self._ended_in_chunk:
                self._hand_over(b"".join(self._head_chunks))
                return
            self._refuse_head(too_large or _invalid(exc))
            return
        if in_flight and not self.cycle.response_started:  # a malformed body
            self.cycle.disconnected = True
            self.cycle.message_event.set()
            self._answer(_invalid(exc), "400 malformed body")
            return
        self.transport.close()

    def _refuse_head(self, error: SCIMException) -> None:
        self._answer(error, f"{error.status} {type(error).__name__}")

    def _hand_over(self, head: bytes) -> None:
        """Re-parse the request with h11, on the same connection."""
        fallback = self.context.fallback
        assert fallback is not None
        deadline = self._head_deadline if self._head_timer is not None else None
        self._cancel_timers()
        self.connections.discard(self)
        successor = fallback(
            config=self.config,
            server_state=self.server_state,
            app_state=self.app_state,
            _loop=self.loop,
        )
        self.transport.set_protocol(successor)
        successor.take_over(self.transport, head, deadline)


class _OneWrite:
    """The transport as one response sees it: the head uvicorn writes on
    ``http.response.start`` is held until the body's first write and sent with it, so that
    an answer leaves in one system call instead of two; held at most until the event loop's
    next pass, and written before anything else is done with the transport."""

    __slots__ = ("_first", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._first = True

    def write(self, data: bytes) -> None:
        if self._first:
            self._first = False
            self._held = data
            self._loop.call_soon(self.flush)
            return
        if self._held is not None:
            data, self._held = self._held + data, None
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.write(held)

    def __getattr__(self, name: str) -> Any:  # close, is_closing...: after the held bytes
        self.flush()
        return getattr(self._transport, name)


class _Connection(h11.Connection):
    """h11's connection with the bridge's head limits; keeps why it refused a request."""

    refusal: SCIMException | None = None
    failure: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.failure = exc
            raise
        if type(event) is h11.Request:
            if event.http_version not in (b"1.1", b"1.0"):
                version = event.http_version.decode("ascii", "replace")
                served = "only HTTP/1.1 (and 1.0) is served"
                self.refusal = VersionNotSupported(detail=f"HTTP/{version}: {served}")
            elif len(event.target) > MAX_REQUEST_LINE_BYTES:
                self.refusal = _too_long_line()
            elif len(event.headers) > MAX_HEADER_FIELDS:
                self.refusal = _too_large_head(len(event.headers))
            elif sum(len(name) + len(value) for name, value in event.headers) > MAX_HEAD_BYTES:
                self.refusal = _too_large_head()
            if self.refusal is not None:
                raise h11.RemoteProtocolError(self.refusal.detail, self.refusal.status)
        return event


class ScimH11Protocol(_Guarded, H11Protocol):
    """uvicorn's h11 protocol with the bridge's limits and SCIM answers."""

    conn: _Connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _Connection(
            h11.SERVER, self.config.h11_max_incomplete_event_size or MAX_HEAD_BYTES
        )
        self._guard_init()
        self._line_seen = False  # a line break in the current head: the request line is done
        self._head_size = 0  # bytes of the current head so far
        self.logger = _H11_LOG  # its refusals are logged by _Rejections, not one by one

    def take_over(self, transport: asyncio.Transport, head: bytes, deadline: float | None) -> None:
        """Continue a connection httptools started, from the first byte of its current head."""
        H11Protocol.connection_made(self, transport)  # admitted already
        self._arm_head_timer(deadline)
        self.data_received(head)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        waiting = self.conn.their_state is h11.IDLE
        if waiting:
            self._head_started = True
            self._head_size += len(data)
            self._line_seen = self._line_seen or b"\n" in data
        super().data_received(data)
        if self.transport.is_closing() or self._discarding:
            return
        state = self.conn.their_state
        if waiting and state is not h11.IDLE:
            self._head_complete()
            self._line_seen, self._head_size = False, 0
        elif waiting and not self._line_seen and self._head_size > MAX_REQUEST_LINE_BYTES:
            self._answer(_too_long_line(), "414 UriTooLong")  # and still no end in sight
        elif waiting and self._head_timer is None and self.timeout_keep_alive_task is None:
            self._arm_head_timer()  # a head under way (a whole head in one chunk needs none)
        if self._body_linger is not None and state is h11.IDLE:
            self._end_body_linger()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.SEND_BODY:
            self._start_body_linger()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to anything h11 refuses, in SCIM form and with h11's reason."""
        if self.cycle is not None and not self.cycle.response_complete:
            if self.cycle.response_started:
                self.transport.close()
                return
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        error = self.conn.refusal or self._h11_refusal(self.conn.failure)
        self._answer(error, f"{error.status} {type(error).__name__}")

    def _h11_refusal(self, failure: h11.RemoteProtocolError | None) -> SCIMException:
        if failure is None:
            return _invalid("unreadable request")
        if failure.error_status_hint == 431:  # h11's buffer overflowed inside the head
            return _too_large_head() if self._line_seen else _too_long_line()
        if failure.error_status_hint == 501:
            return NotImplementedByServer(detail=f"{_reason(failure)}; send Content-Length instead")
        return _invalid(_reason(failure))


def _reason(failure: h11.RemoteProtocolError) -> str:
    """h11's reason without the bytes it quotes (a header line may hold a token)."""
    text = str(failure)
    for quote in (": bytearray(", ": b'", ': b"'):
        text = text.split(quote, 1)[0]
    return text


class EndQuietly:
    """Outermost ASGI layer: a request the server cancels while going away (a second Ctrl-C)
    ends without uvicorn's traceback and plain-text 500. ``RequestObserver`` has already
    answered it 503 with ``Retry-After``; the task is the server's, nobody awaits it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if scope["type"] != "http":
                raise


def listener_protocols(
    header_timeout: float, body_timeout: float, max_connections: int, tls: TlsFiles | None
) -> tuple[type[ScimH11Protocol], type[ScimHttpToolsProtocol]]:
    """The two protocol classes of one listener, sharing its connection cap, timeouts and TLS
    (httptools hands what it refuses to the h11 one)."""
    context = _Context(
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        max_connections=max_connections,
        tls=tls,
    )

    class H11(ScimH11Protocol):
        pass

    class HttpTools(ScimHttpToolsProtocol):
        pass

    H11.context = HttpTools.context = context
    context.fallback = H11
    return H11, HttpTools


def close_unadmitted(protocol: object) -> None:
    """At shutdown: close a listener's connections that hold no request, those refused
    (answered 503, lingering) and those still in their TLS handshake."""
    context: _Context | None = getattr(protocol, "context", None)
    for refused in list(context.refused if context else ()):
        refused.close()
    for handshaking in list(context.handshaking if context else ()):
        handshaking.transport.close()
