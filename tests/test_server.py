"""The server layer over real sockets: uvicorn with the bridge's protocols, started in
process on a free 127.0.0.1 port, the real app, the fake Modyo in process. Responses are
parsed with h11 as a client (not the server's own code); clients that misbehave write raw
bytes."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import h11
import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from bridge.edge.app import create_app
from bridge.edge.body import BodyBudget, BodyReader
from bridge.edge.protocols import MAX_HEAD_BYTES, MAX_HEADER_FIELDS, MAX_REQUEST_LINE_BYTES
from bridge.modyo.fake import FakeModyo, FaultyModyo, mock_transport
from bridge.run.server import Server, server_config
from tests import entra
from tests.harness import MODYO_URL, TOKEN, asgi_client, make_settings
from tests.servers import answer_lifespan, free_port
from tests.waits import wait_until

PARSERS = pytest.mark.parametrize("parser", ["httptools", "h11"])
SAFETY_SECONDS = 60  # a hang guard on every read: a broken server fails the test, never hangs it
# (generous: a `dev` child under coverage on a loaded 2-CPU machine takes over 10 s to start)
AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def scim_error(self, status: int, scim_type: str | None = None) -> dict[str, Any]:
        """An RFC 7644 §3.12 error with the SCIM media type, closing the connection."""
        assert self.status == status, (self.status, self.body)
        assert self.headers["content-type"] == "application/scim+json"
        body: dict[str, Any] = json.loads(self.body)
        assert body["schemas"] == [entra.ERROR_URN]
        assert body["status"] == str(status)
        assert body.get("scimType") == scim_type
        assert body["detail"]
        return body


def parse(raw: bytes, method: bytes = b"GET") -> Answer:
    """The one response in ``raw``, read by h11 as a client would."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "bridge")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    response = client.next_event()
    assert isinstance(response, h11.Response), response
    body = b""
    while True:
        event = client.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        else:
            raise AssertionError(f"incomplete response: {raw!r}")
    headers = {name.decode(): value.decode() for name, value in response.headers}
    return Answer(response.status_code, headers, body)


class Client:
    """One raw TCP connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = b""

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until_eof(self) -> bytes:
        """Everything the server sends until it closes the connection."""
        async with asyncio.timeout(SAFETY_SECONDS):
            with suppress(ConnectionResetError):
                self.buffer += await self.reader.read()
        data, self.buffer = self.buffer, b""
        return data

    async def answer(self) -> Answer:
        """The next complete response on a connection that stays open."""
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method="GET", target="/", headers=[("Host", "bridge")]))
        client.send(h11.EndOfMessage())
        events: list[Any] = []
        async with asyncio.timeout(SAFETY_SECONDS):
            while True:
                if self.buffer:  # (h11 reads b"" as the end of the connection)
                    client.receive_data(self.buffer)
                    self.buffer = b""
                while (event := client.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
                    events.append(event)
                    if isinstance(event, h11.EndOfMessage):
                        break
                if events and isinstance(events[-1], h11.EndOfMessage):
                    break
                chunk = await self.reader.read(65536)
                assert chunk, "the server closed the connection"
                self.buffer = chunk
        response = next(e for e in events if isinstance(e, h11.Response))
        body = b"".join(e.data for e in events if isinstance(e, h11.Data))
        headers = {name.decode(): value.decode() for name, value in response.headers}
        return Answer(response.status_code, headers, body)

    def close(self) -> None:
        self.writer.close()


class Served:
    """The bridge's uvicorn server on a free 127.0.0.1 port."""

    def __init__(self, port: int, server: Server) -> None:
        self.port, self.server = port, server
        self.clients: list[Client] = []

    async def connect(self) -> Client:
        client = Client(*await asyncio.open_connection("127.0.0.1", self.port))
        self.clients.append(client)
        return client

    async def request(self, raw: bytes) -> Answer:
        """Send ``raw`` on a new connection; the server's answer, once it has closed."""
        client = await self.connect()
        await client.send(raw)
        return parse(await client.until_eof())


@asynccontextmanager
async def serving(app: Any, **server: Any) -> AsyncIterator[Served]:
    settings = make_settings(server=server)
    config = server_config(app, settings.server)
    config.load()
    uv = Server(config)
    uv.lifespan = config.lifespan_class(config)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        await uv.startup(sockets=[sock])
        await uv.on_tick(0)  # the Date header
        served = Served(sock.getsockname()[1], uv)
        try:
            yield served
        finally:
            for client in served.clients:
                client.close()
            await uv.shutdown(sockets=[sock])


@asynccontextmanager
async def bridge(modyo: FaultyModyo, **server: Any) -> AsyncIterator[Served]:
    settings = make_settings(server=server)
    app = create_app(settings, modyo_transport=mock_transport(modyo, MODYO_URL))
    async with serving(app, **server) as served:
        yield served


def head(method: bytes, target: bytes, *headers: bytes) -> bytes:
    return method + b" " + target + b" HTTP/1.1\r\nHost: bridge\r\n" + b"".join(headers) + b"\r\n"


async def routers_allow(modyo: FaultyModyo, path: str) -> set[str]:
    """The Allow the app's own router gives for ``path`` (asked with a known method)."""
    settings = make_settings()
    app = create_app(settings, modyo_transport=mock_transport(modyo, MODYO_URL))
    async with asgi_client(app, base_url="http://bridge") as client:
        response = await client.request("TRACE", path)
    assert response.status_code == 405
    return _allow(response.headers["allow"])


def _allow(value: str) -> set[str]:
    return {method.strip() for method in value.split(",")}


# ------------------------------------------------------------------------- SCIM errors


@PARSERS
@pytest.mark.parametrize("method", [b"get", b"FOO", b"PROPFIND", b"Patch"])
@pytest.mark.parametrize("path", ["/scim/Users", "/scim/Users/42", "/scim/Groups/7"])
async def test_unknown_or_lowercase_method_is_405_with_the_routers_allow(
    modyo: FaultyModyo, parser: str, method: bytes, path: str
) -> None:
    expected = await routers_allow(modyo, path)
    async with bridge(modyo, http_parser=parser) as served:
        client = await served.connect()
        await client.send(head(method, path.encode(), AUTH))
        answer = await client.answer()
    body = answer.scim_error(405)
    assert _allow(answer.headers["allow"]) == expected
    assert method.decode() in body["detail"]


@PARSERS
async def test_a_100_kb_request_line_is_414(modyo: FaultyModyo, parser: str) -> None:
    async with bridge(modyo, http_parser=parser) as served:
        answer = await served.request(head(b"GET", b"/scim/Users?filter=" + b"a" * 100_000))
        answer.scim_error(414)
        assert answer.headers["connection"] == "close"
        # The same line, arriving in pieces and never finished.
        client = await served.connect()
        await client.send(b"GET /scim/Users?filter=")
        for _ in range(MAX_REQUEST_LINE_BYTES // 1000 + 1):
            await client.send(b"a" * 1000)
        parse(await client.until_eof()).scim_error(414)


@PARSERS
@pytest.mark.parametrize(
    "headers",
    [
        [b"X-Big: " + b"a" * 100_000 + b"\r\n"],
        [b"X-Big: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\n"],
        [b"X-Field-%d: v\r\n" % n for n in range(MAX_HEADER_FIELDS + 1)],
    ],
    ids=["100 KB header", "just over the head limit", "too many fields"],
)
async def test_oversized_header_section_is_431(
    modyo: FaultyModyo, parser: str, headers: list[bytes]
) -> None:
    async with bridge(modyo, http_parser=parser) as served:
        answer = await served.request(head(b"GET", b"/healthz", *headers))
    answer.scim_error(431)


@PARSERS
async def test_a_header_section_that_keeps_growing_is_431(modyo: FaultyModyo, parser: str) -> None:
    async with bridge(modyo, http_parser=parser) as served:
        client = await served.connect()
        await client.send(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\nX-Big: ")
        for _ in range(MAX_HEAD_BYTES // 1000 + 1):
            await client.send(b"a" * 1000)
        parse(await client.until_eof()).scim_error(431)


@PARSERS
async def test_headers_within_the_limits_are_served(modyo: FaultyModyo, parser: str) -> None:
    fields = [b"X-Field-%d: v\r\n" % n for n in range(MAX_HEADER_FIELDS - 2)]
    async with bridge(modyo, http_parser=parser) as served:
        client = await served.connect()
        await client.send(head(b"GET", b"/healthz", b"X-Big: " + b"a" * 8000 + b"\r\n"))
        assert (await client.answer()).status == 200
        await client.send(head(b"GET", b"/healthz", *fields))
        assert (await client.answer()).status == 200


@PARSERS
@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x01\x02 not http\r\n\r\n",
        bytes.fromhex("160301007a0100007603035f") + bytes(100),  # a TLS ClientHello
        b"GET /scim/Us ers HTTP/1.1\r\nHost: bridge\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: bridge\r\nBad Header: " + TOKEN.encode() + b"\r\n\r\n",
        b"POST /scim/Users HTTP/1.1\r\nHost: bridge\r\nContent-Length: ten\r\n\r\n",
        b"POST /scim/Users HTTP/1.1\r\nHost: bridge\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["garbage", "TLS handshake", "space in target", "bad header", "bad length", "bad chunk"],
)
async def test_malformed_requests_are_400_invalid_syntax(
    modyo: FaultyModyo, parser: str, raw: bytes
) -> None:
    async with bridge(modyo, http_parser=parser) as served:
        answer = await served.request(raw)
    body = answer.scim_error(400, "invalidSyntax")
    assert TOKEN not in body["detail"]  # the reason never quotes the request's bytes


@PARSERS
async def test_http_2_prior_knowledge_is_505(modyo: FaultyModyo, parser: str) -> None:
    async with bridge(modyo, http_parser=parser) as served:
        answer = await served.request(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    answer.scim_error(505)


@PARSERS
async def test_a_bad_request_after_a_good_one_on_the_same_connection(
    modyo: FaultyModyo, parser: str
) -> None:
    """The good one is answered by the app; the unknown method after it gets the router's
    405 (httptools hands the connection to h11 from that request's first byte)."""
    async with bridge(modyo, http_parser=parser) as served:
        client = await served.connect()
        await client.send(head(b"GET", b"/healthz"))
        assert (await client.answer()).status == 200
        await client.send(head(b"FOO", b"/healthz"))
        answer = await client.answer()
        answer.scim_error(405)
        assert _allow(answer.headers["allow"]) == {"GET", "HEAD"}
        await client.send(head(b"GET", b"/healthz"))  # the connection is still served
        assert (await client.answer()).status == 200


# ------------------------------------------------------------------------- connections


async def trickle(client: Client, data: bytes) -> None:
    """A slowloris client: a byte at a time, paced, until the server hangs up. The pause
    shapes the client's behaviour; the test synchronises on the server's answer."""
    with suppress(ConnectionError):
        for byte in data:
            await client.send(bytes([byte]))
            await asyncio.sleep(0.01)


@PARSERS
async def test_a_head_trickling_in_gets_408_at_the_header_timeout(
    modyo: FaultyModyo, parser: str
) -> None:
    async with bridge(modyo, http_parser=parser, header_timeout_seconds=0.2) as served:
        client = await served.connect()
        sender = asyncio.create_task(
            trickle(client, b"GET /healthz HTTP/1.1\r\nHost: bridge\r\nX-Slow: " + b"a" * 10_000)
        )
        answer = parse(await client.until_eof())
        sender.cancel()
    body = answer.scim_error(408)
    assert "head" in body["detail"]
    assert answer.headers["connection"] == "close"


@PARSERS
async def test_a_silent_connection_is_closed_without_a_word(
    modyo: FaultyModyo, parser: str
) -> None:
    async with bridge(modyo, http_parser=parser, header_timeout_seconds=0.2) as served:
        client = await served.connect()
        assert await client.until_eof() == b""


@PARSERS
async def test_idle_keep_alive_obeys_its_own_timeout_not_the_header_timeout(
    modyo: FaultyModyo, parser: str
) -> None:
    """An idle kept connection outlives a header timeout (another client's 408 shows one
    has passed) and is reused; once idle past the keep-alive timeout, it is closed."""
    async with bridge(
        modyo, http_parser=parser, header_timeout_seconds=0.2, keepalive_timeout_seconds=5
    ) as served:
        kept = await served.connect()
        await kept.send(head(b"GET", b"/healthz"))
        assert (await kept.answer()).status == 200
        slow = await served.connect()
        await slow.send(b"GET /healthz HTTP/1.1\r\n")
        parse(await slow.until_eof()).scim_error(408)
        await kept.send(head(b"GET", b"/healthz"))
        assert (await kept.answer()).status == 200
    async with bridge(modyo, http_parser=parser, keepalive_timeout_seconds=0.2) as served:
        kept = await served.connect()
        await kept.send(head(b"GET", b"/healthz"))
        assert (await kept.answer()).status == 200
        assert await kept.until_eof() == b""  # closed by the server, nothing said


@PARSERS
async def test_over_max_connections_is_a_scim_503_and_healthz_answers_after(
    modyo: FaultyModyo, parser: str
) -> None:
    async with bridge(modyo, http_parser=parser, max_connections=4) as served:
        flood = [await served.connect() for _ in range(4)]
        for client in flood:  # each admitted (answered), then held open
            await client.send(head(b"GET", b"/healthz"))
            assert (await client.answer()).status == 200
        for _ in range(3):
            refused = await served.request(head(b"GET", b"/healthz"))
            refused.scim_error(503)
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.headers["connection"] == "close"
        for client in flood:  # the flood stops
            await client.send(head(b"GET", b"/healthz", b"Connection: close\r\n"))
            assert parse(await client.until_eof()).status == 200
        assert (
            await served.request(head(b"GET", b"/healthz", b"Connection: close\r\n"))
        ).status == 200


@PARSERS
async def test_a_silent_flood_is_refused_then_released_by_the_header_timeout(
    modyo: FaultyModyo, parser: str
) -> None:
    """Connections that never send a byte hold a slot only until the header timeout."""
    async with bridge(
        modyo, http_parser=parser, max_connections=8, header_timeout_seconds=0.3
    ) as served:
        flood = [await served.connect() for _ in range(20)]
        outcomes = [await client.until_eof() for client in flood]
        refusals = [parse(raw) for raw in outcomes if raw]
        assert refusals and outcomes.count(b"") >= 8  # admitted ones are closed unanswered
        for refusal in refusals:
            refusal.scim_error(503)
        assert (
            await served.request(head(b"GET", b"/healthz", b"Connection: close\r\n"))
        ).status == 200


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")
@pytest.mark.parametrize(("hard", "soft_after"), [(4096, 512 + 256), (300, 300)])
def test_the_open_files_limit_is_raised_for_max_connections(hard: int, soft_after: int) -> None:
    """A container's 256- or 1,024-file soft limit would make accept() fail before
    max_connections is reached; the bridge raises it, up to the hard limit, or says so."""
    import resource

    current_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if current_hard != resource.RLIM_INFINITY and current_hard < hard:
        pytest.skip(f"the hard limit here is {current_hard}")
    probe = (
        "import resource; from bridge.run.server import ensure_file_descriptors; "
        "ensure_file_descriptors(512); print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
    )
    assert int(done.stdout) == soft_after
    assert ("raise it" in done.stderr) is (soft_after < 512 + 256)


# ------------------------------------------------------------------------- bodies


@PARSERS
async def test_a_slow_body_is_408_not_a_503_blaming_modyo(modyo: FaultyModyo, parser: str) -> None:
    payload = json.dumps(entra.user("slow@contoso.com")).encode()
    async with bridge(modyo, http_parser=parser, body_timeout_seconds=0.2) as served:
        client = await served.connect()
        length = b"Content-Length: %d\r\n" % len(payload)
        await client.send(head(b"POST", b"/scim/Users", AUTH, length) + payload[:10])
        answer = parse(await client.until_eof(), b"POST")
    body = answer.scim_error(408)
    assert "body" in body["detail"] and "Modyo" not in body["detail"]
    assert answer.headers["connection"] == "close"
    assert isinstance(modyo.fake, FakeModyo) and modyo.fake.team_members == {}


@PARSERS
async def test_a_declared_oversized_body_is_413_before_a_byte_of_it(
    modyo: FaultyModyo, parser: str
) -> None:
    async with bridge(modyo, http_parser=parser, max_body_bytes=4096) as served:
        client = await served.connect()
        await client.send(head(b"POST", b"/scim/Users", AUTH, b"Content-Length: 1000000\r\n"))
        answer = await client.answer()  # answered although no body byte was sent
        answer.scim_error(413)
        # The rest of the body is read and dropped; the connection then serves again.
        await client.send(b" " * 1_000_000 + head(b"GET", b"/healthz"))
        assert (await client.answer()).status == 200


@PARSERS
async def test_a_chunked_body_over_the_cap_is_413(modyo: FaultyModyo, parser: str) -> None:
    chunk = b"400\r\n" + b" " * 1024 + b"\r\n"
    async with bridge(modyo, http_parser=parser, max_body_bytes=4096) as served:
        client = await served.connect()
        await client.send(head(b"POST", b"/scim/Users", AUTH, b"Transfer-Encoding: chunked\r\n"))
        await client.send(chunk * 6 + b"0\r\n\r\n")
        (await client.answer()).scim_error(413)


@PARSERS
async def test_a_body_never_finished_after_an_early_answer_is_dropped_within_the_body_timeout(
    modyo: FaultyModyo, parser: str
) -> None:
    """401 goes out before the body; a client that then trickles the body is cut off."""
    async with bridge(modyo, http_parser=parser, body_timeout_seconds=0.2) as served:
        client = await served.connect()
        await client.send(head(b"POST", b"/healthz", b"Content-Length: 100000\r\n"))
        (await client.answer()).scim_error(405)
        sender = asyncio.create_task(trickle(client, b" " * 100_000))
        assert await client.until_eof() == b""
        sender.cancel()


async def test_the_body_is_read_once_and_disconnects_still_reach_the_app(
    modyo: FaultyModyo,
) -> None:
    """Behind BodyReader the app gets the whole body in one message; its next receive()
    is the server's own, which reports the client going away."""
    seen: list[Message] = []
    gone = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        seen.append(await receive())
        seen.append(await receive())
        gone.set()

    settings = make_settings(server={"max_body_bytes": 100_000})
    reader = BodyReader(app, settings.server, BodyBudget(settings.server.max_buffered_body_bytes))
    async with serving(reader, max_body_bytes=100_000) as served:
        client = await served.connect()
        await client.send(head(b"POST", b"/x", b"Content-Length: 60000\r\n"))
        for _ in range(6):
            await client.send(b"x" * 10_000)
        client.writer.transport.abort()  # the client goes away
        async with asyncio.timeout(SAFETY_SECONDS):
            await gone.wait()
    assert seen[0] == {"type": "http.request", "body": b"x" * 60_000, "more_body": False}
    assert seen[1] == {"type": "http.disconnect"}


# ------------------------------------------------------------------------- writes


@asynccontextmanager
async def counted_writes(port: int) -> AsyncIterator[list[bytes]]:
    """Every ``write`` the server makes on its connections from port ``port`` (asyncio's
    socket transport, this test's event loop), in order."""
    from asyncio import selector_events

    writes: list[bytes] = []
    transport_class: Any = getattr(selector_events, "_SelectorSocketTransport")  # noqa: B009
    write = transport_class.write

    def counted(transport: Any, data: bytes) -> None:
        if transport.get_extra_info("sockname")[1] == port:
            writes.append(bytes(data))
        write(transport, data)

    transport_class.write = counted
    try:
        yield writes
    finally:
        transport_class.write = write


async def test_an_answer_leaves_in_one_write(modyo: FaultyModyo) -> None:
    """The head of an answer goes out with its body, one system call per answer instead of
    two (a read with a Modyo call, an authentication failure, a create, on one connection)."""
    user = json.dumps(entra.user("one.write@example.com")).encode()
    async with bridge(modyo) as served, counted_writes(served.port) as writes:
        client = await served.connect()
        await client.send(head(b"GET", b"/scim/Users?count=1", AUTH))
        assert (await client.answer()).status == 200
        await client.send(head(b"GET", b"/scim/Users"))
        assert (await client.answer()).status == 401
        length = f"Content-Length: {len(user)}\r\n".encode()
        await client.send(head(b"POST", b"/scim/Users", AUTH, length) + user)
        created = await client.answer()
    assert created.status == 201, created.body
    assert len(writes) == 3
    assert all(write.startswith(b"HTTP/1.1 ") for write in writes)


async def test_a_head_sent_before_a_slow_body_still_goes_out_first(modyo: FaultyModyo) -> None:
    """An app that starts its answer and finishes it later: the head leaves at the event
    loop's next pass (held no longer), the body after it."""
    body_now = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async with asyncio.timeout(SAFETY_SECONDS):
            await body_now.wait()
        await send({"type": "http.response.body", "body": b"ok"})

    async with serving(app) as served, counted_writes(served.port) as writes:
        client = await served.connect()
        await client.send(head(b"GET", b"/x"))
        async with asyncio.timeout(SAFETY_SECONDS):
            head_bytes = await client.reader.readuntil(b"\r\n\r\n")
        assert head_bytes.startswith(b"HTTP/1.1 200 ")
        body_now.set()
        async with asyncio.timeout(SAFETY_SECONDS):
            assert await client.reader.readexactly(2) == b"ok"
    assert len(writes) == 2


# ------------------------------------------------------------------------- shutdown


def _lines(stream: Any) -> tuple[queue.Queue[str], threading.Thread]:
    """The process's output lines, read by a thread (so waiting for one can be bounded)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return lines, reader


def _wait_for(
    lines: queue.Queue[str], text: str, seen: list[str], guard: float = SAFETY_SECONDS
) -> None:
    while True:
        line = lines.get(timeout=guard)
        seen.append(line)
        if text in line:
            return


def test_a_second_ctrl_c_answers_in_flight_requests_503_without_a_traceback() -> None:
    port = free_port()
    token = "sigint-test-token-0123456789-abcdefgh"
    internal = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["BRIDGE_INTERNAL__PORT"] = str(internal)  # its /metrics
    command = [sys.executable, "-m", "bridge", "dev", "--port", str(port), "--token", token]
    process = subprocess.Popen(
        [*command, "--hang-rate", "1"],  # Modyo never answers: the request stays in flight
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    seen: list[str] = []
    try:
        assert process.stdout is not None
        lines, reader = _lines(process.stdout)
        # the SCIM listener; a cold start (imports, two listeners) on a loaded machine is slow
        _wait_for(lines, f"Uvicorn running on http://127.0.0.1:{port}", seen, guard=60)
        in_flight = socket.create_connection(("127.0.0.1", port), timeout=SAFETY_SECONDS)
        in_flight.sendall(
            f"GET /scim/Users/1 HTTP/1.1\r\nHost: bridge\r\nAuthorization: Bearer {token}"
            "\r\n\r\n".encode()
        )
        metrics = f"http://127.0.0.1:{internal}/metrics"
        wait_until(  # the request has reached the fake Modyo, which hangs
            lambda: "scim_bridge_modyo_in_flight 1.0" in httpx.get(metrics).text,
            "the request in flight at Modyo",
        )
        process.send_signal(signal.SIGINT)
        _wait_for(lines, "Waiting for connections to close", seen)
        process.send_signal(signal.SIGINT)
        raw = b""
        while chunk := in_flight.recv(65536):
            raw += chunk
        in_flight.close()
        assert process.wait(timeout=SAFETY_SECONDS) == 130
        reader.join(timeout=SAFETY_SECONDS)  # the output's end
        while not lines.empty():
            seen.append(lines.get())
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    answer = parse(raw)
    body = answer.scim_error(503)
    assert "shutting down" in body["detail"]
    assert int(answer.headers["retry-after"]) >= 1
    output = "".join(seen)
    assert "Traceback" not in output and "Exception in ASGI application" not in output, output


def test_serving_freezes_start_up_objects_and_collects_the_young_generation_less_often() -> None:
    """``settle_heap``, which ``serve`` and every worker run before serving (in a process of
    its own: it changes the garbage collector of the process that runs it)."""
    code = (
        "import gc; from bridge.run.server import settle_heap; settle_heap(); "
        "print(gc.get_threshold()[0], gc.get_freeze_count() > 0)"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert shown.stdout.split() == ["10000", "True"]
