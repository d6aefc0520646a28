"""Real servers for tests: an ASGI app under uvicorn on a free 127.0.0.1 port, and a TCP proxy
that forwards HTTP/1.1 requests and can reset a connection after forwarding one, so the
answer is lost after the upstream applied it (what a load balancer or NAT timeout does)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import uvicorn
from starlette.types import ASGIApp


@contextlib.asynccontextmanager
async def uvicorn_serving(app: ASGIApp, **options: object) -> AsyncIterator[int]:
    """Serve ``app`` on 127.0.0.1 (in this event loop) and yield its port; stopped on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", **options)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


Rule = Callable[[str, str], bool]
"""Whether to reset the connection after forwarding a request (method, path)."""


@dataclass
class ResetProxy:
    """A TCP proxy to ``upstream_port``. Requests for which ``reset`` is true are forwarded,
    their complete answer is read from the upstream (so the write was applied), and then the
    client's connection is reset (RST) instead of answered."""

    upstream_port: int
    reset: Rule = field(default=lambda method, path: False)
    forwarded: list[tuple[str, str]] = field(default_factory=list)
    resets: list[tuple[str, str]] = field(default_factory=list)
    port: int = 0

    def reset_next(self, method: str, path_prefix: str, times: int = 1) -> None:
        """Reset the next ``times`` requests whose method and path start match."""
        left = times

        def rule(m: str, p: str) -> bool:
            nonlocal left
            if left > 0 and m == method and p.startswith(path_prefix):
                left -= 1
                return True
            return False

        self.reset = rule

    def reset_share(self, share: float, seed: int, methods: frozenset[str]) -> None:
        """Reset a seeded share of the requests with these methods."""
        draws = random.Random(seed)
        self.reset = lambda m, p: m in methods and draws.random() < share

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self.port
        finally:
            server.close()
            await server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            while True:
                request = await _read_message(reader, is_request=True)
                if request is None:
                    return
                method, path = _request_line(request)
                self.forwarded.append((method, path))
                up_writer.write(request)
                await up_writer.drain()
                answer = await _read_message(up_reader, is_request=False)
                if answer is None:
                    return
                if self.reset(method, path):
                    self.resets.append((method, path))
                    _reset(writer)
                    return
                writer.write(answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            up_writer.close()
            with contextlib.suppress(ConnectionError):
                await up_writer.wait_closed()
            if not writer.is_closing():
                writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST: SO_LINGER with a zero timeout, then abort."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _read_message(reader: asyncio.StreamReader, *, is_request: bool) -> bytes | None:
    """One HTTP/1.1 message with a Content-Length body (or none); None at a clean EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        if name.strip().lower() == b"transfer-encoding":
            raise NotImplementedError("the test proxy reads Content-Length bodies only")
    body = await reader.readexactly(length) if length else b""
    return head + body


def _request_line(message: bytes) -> tuple[str, str]:
    method, target, _ = message.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    return method, target.split("?", 1)[0]


class _Seen(logging.Handler):
    def __init__(self, message: str, times: int) -> None:
        super().__init__(logging.DEBUG)
        self.message, self.left, self.event = message, times, asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == self.message:
            self.left -= 1
            if self.left <= 0:
                self.event.set()


@contextlib.contextmanager
def logged(logger: str, message: str, times: int = 1) -> Iterator[asyncio.Event]:
    """An event set once ``logger`` has logged ``message`` ``times`` times: how a test waits
    for something the server did, without sleeping."""
    target = logging.getLogger(logger)
    handler, level = _Seen(message, times), target.level
    target.addHandler(handler)
    target.setLevel(logging.DEBUG)
    try:
        yield handler.event
    finally:
        target.removeHandler(handler)
        target.setLevel(level)
