"""Real servers for tests: an ASGI app under uvicorn on a free 127.0.0.1 port (plain or TLS with
a test CA), a TCP proxy that forwards HTTP/1.1 requests and can reset a connection after
forwarding one, so the answer is lost after the upstream applied it (what a load balancer or
NAT timeout does), and an egress HTTP proxy (CONNECT tunnels and absolute-form forwarding,
optionally demanding credentials), as a bank's."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import trustme
import uvicorn
from starlette.types import ASGIApp, Receive, Send

from tests.waits import Signal


@contextlib.asynccontextmanager
async def uvicorn_serving(app: ASGIApp, **options: object) -> AsyncIterator[int]:
    """Serve ``app`` on 127.0.0.1 (in this event loop) and yield its port; stopped on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    options.setdefault("proxy_headers", False)  # as ``serve``: the bridge reads X-Forwarded-*
    options.setdefault("lifespan", "on")
    config = uvicorn.Config(app, log_config=None, access_log=False, **options)  # type: ignore[arg-type]
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


@contextlib.asynccontextmanager
async def tls_serving(
    app: ASGIApp, ca: trustme.CA, directory: Path, **options: object
) -> AsyncIterator[int]:
    """``app`` over HTTPS, with a certificate for 127.0.0.1 and localhost issued by ``ca``."""
    server_pem = directory / "server.pem"
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(server_pem)
    async with uvicorn_serving(app, ssl_certfile=str(server_pem), **options) as port:
        yield port


async def answer_lifespan(receive: Receive, send: Send) -> None:
    """The ASGI lifespan protocol of an app with nothing to start or stop (a test's own app
    served by uvicorn)."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


def free_port() -> int:
    """A port nothing listens on (bound, then released) for a server a test starts, drawn
    below the kernel's ephemeral range: a port of that range, once released, may be taken by
    any outgoing connection (the suite opens thousands) before the server binds it."""
    low, _ = _ephemeral_range()
    if low <= 16384:  # a machine whose ephemeral range leaves little below it
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(200):
        port = _ports.randrange(1024 + 8192, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port found below the ephemeral range ({low})")


_ports = random.SystemRandom()  # two workers drawing alike would collide


def _ephemeral_range() -> tuple[int, int]:
    """The ports outgoing connections are given (Linux's ip_local_port_range)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low, high = (int(word) for word in text.split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


@dataclass
class EgressProxy:
    """An HTTP proxy on 127.0.0.1: ``CONNECT host:port`` tunnels (https:// targets) and
    absolute-form requests (``GET http://host/path``, http:// targets) forwarded. With
    ``credentials`` (``"user:password"``) it answers 407 to a request without them."""

    credentials: str | None = None
    tunnels: list[str] = field(default_factory=list)
    forwarded: list[str] = field(default_factory=list)
    refused: int = 0
    port: int = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Yields the proxy's URL (without credentials)."""
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{self.port}"
        finally:
            server.close()
            await server.wait_closed()

    def _authorised(self, head: bytes) -> bool:
        if self.credentials is None:
            return True
        expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
        return _header(head, "proxy-authorization") == expected

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (request := await _read_message(reader, is_request=True)) is not None:
                method, target, _ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
                if not self._authorised(request):
                    self.refused += 1
                    writer.write(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="egress"\r\n'
                        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    await writer.drain()
                    return
                if method == "CONNECT":
                    await self._tunnel(target, reader, writer)
                    return
                await self._forward(method, target, request, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            if not writer.is_closing():
                writer.close()

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self.tunnels.append(target)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def _forward(
        self, method: str, target: str, request: bytes, writer: asyncio.StreamWriter
    ) -> None:
        url = urlsplit(target)
        self.forwarded.append(target)
        head, body = request.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        path = url.path + (f"?{url.query}" if url.query else "")
        kept = [line for line in lines[1:] if not line.lower().startswith(b"proxy-")]
        origin = b"\r\n".join([f"{method} {path} HTTP/1.1".encode(), *kept])
        up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port or 80)
        try:
            up_writer.write(origin + b"\r\n\r\n" + body)
            await up_writer.drain()
            answer = await _read_message(up_reader, is_request=False)
            if answer is not None:
                writer.write(answer)
                await writer.drain()
        finally:
            up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _header(message: bytes, name: str) -> str | None:
    for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.encode():
            return value.strip().decode("latin-1")
    return None


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
    def __init__(self, logger: str, message: str, times: int) -> None:
        super().__init__(logging.DEBUG)
        self.message, self.left = message, times
        self.event = Signal(f"{logger} logging {message!r} {times} times")

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == self.message:
            self.left -= 1
            if self.left <= 0:
                self.event.set()


@contextlib.contextmanager
def logged(logger: str, message: str, times: int = 1) -> Iterator[Signal]:
    """A signal set once ``logger`` has logged ``message`` ``times`` times: how a test waits
    for something the server did, without sleeping (and fails, naming it, if it never does)."""
    target = logging.getLogger(logger)
    handler, level = _Seen(logger, message, times), target.level
    target.addHandler(handler)
    target.setLevel(logging.DEBUG)
    try:
        yield handler.event
    finally:
        target.removeHandler(handler)
        target.setLevel(level)
