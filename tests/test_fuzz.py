"""Hostile input never reaches a 500: property-based fuzzing of every endpoint
and method with malformed JSON, wrong types, huge and deep values, odd Unicode, hostile query
strings and hostile headers.

Every answer must be one a SCIM client can read (RFC 7644 §3.12, §8.1): never a 5xx (the
fake Modyo is healthy here), every 4xx an Error body in ``application/scim+json`` whose
``status`` is the HTTP status and whose ``detail`` speaks SCIM; every 2xx the right schema; a
401 with ``WWW-Authenticate`` for every bad credential; no CR or LF in any response header,
no request id echoed unless well-formed, a ``Location`` only as a valid absolute URL; no
secret in any answer; and the server still answers afterwards.

Every property runs in both upstream modes (``upstreams("rest", "scim")``, tests/backends.py):
in front of the REST fake and in front of the fake of Modyo's SCIM server, so what a client
sends is tried against each translation to Modyo. The runs are reproducible: the ``fuzz``
profile fixes the seed (``derandomize``) and keeps no example database, so CI tries the same
examples every time. The in-process properties drive the app over httpx's ASGI transport;
those about the wire (raw request lines and header bytes) talk raw HTTP/1.1 to uvicorn with
httptools, configured as ``serve`` runs it. The fakes are held to the same rule, addressed
directly (:class:`TestTheFakesAnswerHostileInput`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge.config import Settings
from bridge.edge.app import create_app
from bridge.modyo.fake import FakeModyo, FakeModyoScim, mock_transport
from bridge.scim.errors import MAX_DETAIL
from tests import entra, hostile
from tests.backends import Api, Backend, new_backend
from tests.harness import MODYO_TOKEN, MODYO_URL, SECOND_TOKEN, TOKEN, app_client, make_settings
from tests.properties import examples
from tests.servers import uvicorn_serving

pytestmark = pytest.mark.upstreams("rest", "scim")

settings.register_profile(
    "fuzz",
    derandomize=True,  # a fixed seed: CI tries the same examples on every run
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ: Final = settings.get_profile("fuzz")
FUZZ_A_CLASS: Final = settings(
    FUZZ, suppress_health_check=[*FUZZ.suppress_health_check, HealthCheck.differing_executors]
)
"""For properties in a parametrized class (an instance per mode); no example database to
replay from, so the executors' difference does not matter."""
EXAMPLES: Final = examples(1000)
"""Examples per property (``EXAMPLES_SCALE=20 pytest tests/test_fuzz.py`` digs deeper)."""

SECRETS: Final = (TOKEN, SECOND_TOKEN, MODYO_TOKEN)
HOST: Final = "bridge.test"
SCHEMA_URN: Final = "urn:ietf:params:scim:schemas:core:2.0:Schema"
RESOURCE_TYPE_URN: Final = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SPC_URN: Final = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
NOT_SCIM_WORDS: Final = ("Traceback", "pydantic", "validation error for", "[type=",
                         "For further information", "Input should")  # fmt: skip

# --------------------------------------------------------------------------- what a good answer is


@dataclass(frozen=True)
class Sent:
    """What a request carried that decides what its answer must be."""

    method: str
    path: str  # the decoded path under the base path, as the router sees it; OUTSIDE if not
    authorized: bool
    request_ids: tuple[bytes, ...] = ()  # the X-Request-Id values sent
    request_ids_known: bool = True  # False: the server's reading of them is its parser's


OUTSIDE: Final = "<outside the base path>"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key.lower() == name), None)


_ROUTES: Final = [  # (method, path pattern, the schema URN of a 2xx body; None: no body)
    ("GET", r"/Users", entra.LIST_URN),
    ("POST", r"/Users", entra.USER_URN),
    ("POST", r"/Users/\.search", entra.LIST_URN),
    ("GET", r"/Users/[^/]+", entra.USER_URN),
    ("PUT", r"/Users/[^/]+", entra.USER_URN),
    ("PATCH", r"/Users/[^/]+", entra.USER_URN),
    ("DELETE", r"/Users/[^/]+", None),
    ("GET", r"/Groups", entra.LIST_URN),
    ("POST", r"/Groups", entra.GROUP_URN),
    ("POST", r"/Groups/\.search", entra.LIST_URN),
    ("GET", r"/Groups/[^/]+", entra.GROUP_URN),
    ("PUT", r"/Groups/[^/]+", entra.GROUP_URN),
    ("PATCH", r"/Groups/[^/]+", None),
    ("DELETE", r"/Groups/[^/]+", None),
    ("GET", r"/ServiceProviderConfig", SPC_URN),
    ("GET", r"/ResourceTypes", entra.LIST_URN),
    ("GET", r"/ResourceTypes/[^/]+", RESOURCE_TYPE_URN),
    ("GET", r"/Schemas", entra.LIST_URN),
    ("GET", r"/Schemas/.+", SCHEMA_URN),
]


def _success_urn(method: str, path: str) -> tuple[bool, str | None]:
    """Whether ``method path`` is a route that may succeed, and the URN its body carries."""
    method = "GET" if method == "HEAD" else method
    # As the request reaches the app: dot segments removed (RFC 3986 §5.2.4, by httpx), and
    # resource names matched in any case (bridge/scim/endpoints.py CaseInsensitivePaths).
    path = _without_dot_segments(path)
    for route_method, pattern, urn in _ROUTES:
        if route_method == method and re.fullmatch(pattern + r"\n?", path, re.IGNORECASE):
            return True, urn
    return False, None


def _without_dot_segments(path: str) -> str:
    out: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if len(out) > 1:
                out.pop()
        elif part != ".":
            out.append(part)
    if path.endswith(("/..", "/.")):
        out.append("")
    return "/".join(out)


def check_answer(sent: Sent, answer: Answer) -> None:
    """Every property an answer to hostile input must have (the module's docstring)."""
    status = answer.status
    unsupported = status == 501 and sent.path.rstrip("\n") == "/.search"  # RFC 7644 §3.12
    assert 200 <= status < 500 or unsupported, f"{status} for {sent}: {answer.body[:300]!r}"
    for name, value in answer.headers:
        assert not re.search(rb"[\r\n]", name + value), f"CR/LF in header {name!r}: {value!r}"
    raw = b"\n".join([answer.body, *(value for _, value in answer.headers)])
    for secret in SECRETS:
        assert secret.encode() not in raw, f"a secret in the answer to {sent}"
    _check_request_id(sent, answer)
    location = answer.header(b"location")
    if location is not None:
        _check_location(location)
    if not sent.authorized and sent.path.startswith("/"):  # under the base path
        assert status == 401, f"{status} for a bad credential: {sent}"
        challenge = answer.header(b"www-authenticate")
        assert challenge is not None and challenge.startswith(b"Bearer ")
    if sent.path == OUTSIDE and status < 400:  # /healthz and /metrics: not SCIM
        assert status == 200 and answer.header(b"content-type") is not None
        return
    if status >= 400:
        _check_error(sent, status, answer)
    else:
        assert status < 300, f"{status} for {sent}: no redirect is built from a request"
        _check_success(sent, answer)


def _check_error(sent: Sent, status: int, answer: Answer) -> None:
    """RFC 7644 §3.12, as tests/harness.py's ``assert_scim_error`` reads it (an answer to
    HEAD has no content, RFC 9110 §9.3.2)."""
    assert answer.header(b"content-type") == b"application/scim+json", answer.headers
    if sent.method == "HEAD":
        return
    body = strict_json(answer.body)
    assert body["schemas"] == [entra.ERROR_URN], body
    assert body["status"] == str(status), body
    detail = body["detail"]
    assert isinstance(detail, str) and detail.strip(), body
    assert len(detail) <= MAX_DETAIL, f"a detail of {len(detail)} characters: {detail[:200]}"
    for words in NOT_SCIM_WORDS:
        assert words not in detail, f"{words!r} in the detail: {detail[:500]}"
    if "scimType" in body:
        assert isinstance(body["scimType"], str) and body["scimType"], body


def _check_success(sent: Sent, answer: Answer) -> None:
    routed, urn = _success_urn(sent.method, sent.path)
    assert routed, f"{answer.status} for {sent.method} {sent.path!r}, which is no route"
    expected = None if answer.status == 204 else b"application/scim+json"  # 204: no content
    assert answer.header(b"content-type") == expected, answer.headers
    if sent.method == "HEAD" or urn is None:
        assert answer.status in (200, 204), answer.status
        assert urn is not None or answer.body == b""
        return
    body = strict_json(answer.body)
    assert urn in body["schemas"], (urn, body)
    location = answer.header(b"location")
    if answer.status == 201:
        assert location is not None and body["meta"]["location"] == location.decode()
    for meta_location in re.findall(r'"location":"([^"]*)"', answer.body.decode()):
        _check_location(meta_location.encode())


def strict_json(body: bytes) -> Any:
    """JSON as RFC 8259 has it: no ``NaN`` or ``Infinity`` (Python's reader takes them)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a response: not JSON")

    return json.loads(body, parse_constant=refuse)


def _check_request_id(sent: Sent, answer: Answer) -> None:
    """The answer carries the bridge's own request id, never one a client sent (a client's
    is only logged beside it, as ``client_request_id``)."""
    echoed = answer.header(b"x-request-id")
    assert echoed is not None and re.fullmatch(rb"[0-9a-f]{16}", echoed), echoed
    if sent.request_ids_known:
        assert echoed not in sent.request_ids, (echoed, sent.request_ids)


_AUTHORITY: Final = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)(?::[0-9]{0,5})?"
)
_PATH: Final = re.compile(r"(?:/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*)*")


def _check_location(location: bytes) -> None:
    """An absolute URL (RFC 3986 §4.3) of the bridge's own: http(s), a valid authority and
    path, no query or fragment, nothing but URI characters."""
    text = location.decode("latin-1")
    parts = urlsplit(text)
    assert parts.scheme in ("http", "https"), text
    assert _AUTHORITY.fullmatch(parts.netloc), f"not a valid authority in {text!r}"
    assert _PATH.fullmatch(parts.path) and not parts.query and not parts.fragment, text


# --------------------------------------------------------------------------- the app, in process


@dataclass
class Harness:
    """The app in one upstream mode with a healthy fake Modyo, started once per mode in its
    own event loop (hypothesis runs examples synchronously), plus the ids of a real user and
    group."""

    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    backend: Backend
    user_id: str = ""
    group_id: str = ""
    errors: list[logging.LogRecord] = field(default_factory=list)

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def send(
        self,
        method: str,
        path: str,
        *,
        query: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
    ) -> Answer:
        answer: Answer = self.run(self._send(method, path, query, headers or [], body))
        return answer

    async def _send(
        self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Answer:
        target = b"/scim" + hostile.quoted(path).encode() + (b"?" + query if query else b"")
        url = httpx.URL(f"http://{HOST}/scim").copy_with(raw_path=target)
        request = self.client.build_request(method, url, content=body, headers=headers)
        response = await self.client.send(request)
        return Answer(response.status_code, list(response.headers.raw), response.content)

    def examine(self, sent: Sent, answer: Answer) -> None:
        """The answer's properties, then: the server still answers, and logged no error."""
        event(f"{answer.status}")  # --hypothesis-show-statistics: what the examples reached
        try:
            check_answer(sent, answer)
            after = self.send("GET", "/ServiceProviderConfig", headers=[_bearer(TOKEN)])
            assert after.status == 200 and SPC_URN.encode() in after.body
            assert not self.errors, [record.getMessage() for record in self.errors]
        finally:
            self.errors.clear()
            self.backend.reset_calls()  # the scim fake's call log would grow with every example

    def fill(self, path: str) -> str:
        return path.replace("{user}", self.user_id).replace("{group}", self.group_id)


class _Errors(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


def _settings() -> Settings:
    """The tests' settings, with the failed-authentication throttle out of the way: the
    suite sends bad credentials by the thousand from one address, and checks each is a 401
    (the throttle's 429 has tests of its own, tests/test_hostile_network.py)."""
    return make_settings(scim={"auth_failures_per_minute": 1_000_000})


@pytest.fixture(scope="module")
def harness(api: Api) -> Iterator[Harness]:
    loop = asyncio.new_event_loop()
    backend = new_backend(api, _settings())
    app = create_app(backend.settings, modyo_transport=mock_transport(backend.modyo, MODYO_URL))

    @contextlib.asynccontextmanager
    async def started() -> AsyncIterator[httpx.AsyncClient]:
        async with app_client(
            app, token=None, base_url="http://testserver", read_seconds=60
        ) as client:
            yield client

    context = started()
    client = loop.run_until_complete(context.__aenter__())
    harness = Harness(loop, client, backend)
    user = harness.send(
        "POST", "/Users", headers=_json_headers(), body=_dumps(entra.user("fuzz@contoso.com"))
    )
    group = harness.send(
        "POST", "/Groups", headers=_json_headers(), body=_dumps(entra.group("Fuzzers"))
    )
    harness.user_id, harness.group_id = json.loads(user.body)["id"], json.loads(group.body)["id"]
    handler = _Errors(harness.errors)
    logging.getLogger("bridge").addHandler(handler)
    try:
        yield harness
    finally:
        logging.getLogger("bridge").removeHandler(handler)
        loop.run_until_complete(context.__aexit__(None, None, None))
        loop.close()


def decoded(path: str) -> str:
    """The path the router sees for ``path`` (what the server decodes)."""
    return unquote(hostile.quoted(path))


def _ids(request_id: bytes | None) -> tuple[bytes, ...]:
    return () if request_id is None else (request_id,)


def _bearer(token: str) -> tuple[bytes, bytes]:
    return (b"authorization", f"Bearer {token}".encode())


def _json_headers() -> list[tuple[bytes, bytes]]:
    return [_bearer(TOKEN), (b"content-type", b"application/scim+json")]


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


# --------------------------------------------------------------------------- properties, in process


@settings(FUZZ, max_examples=EXAMPLES)
@given(
    endpoint=hostile.endpoints(),
    query=hostile.queries(),
    content_type=st.sampled_from(hostile.CONTENT_TYPES),
    request_id=hostile.REQUEST_IDS,
    headers=hostile.extra_headers(),
    data=st.data(),
)
def test_any_request_to_any_endpoint_is_a_scim_answer(
    harness: Harness,
    endpoint: tuple[str, str],
    query: bytes,
    content_type: bytes,
    request_id: bytes | None,
    headers: list[tuple[bytes, bytes]],
    data: st.DataObject,
) -> None:
    """Every route and method (and unknown ones, on odd paths), with any query string, any
    body (Entra's mutated, random JSON, bytes) and hostile headers."""
    method, path = endpoint[0], harness.fill(endpoint[1])
    body = data.draw(hostile.any_bodies(harness.user_id))
    sent = [_bearer(TOKEN), (b"content-type", content_type), *headers]
    if request_id is not None:
        sent.append((b"x-request-id", request_id))
    answer = harness.send(method, path, query=query, headers=sent, body=body or b"")
    harness.examine(Sent(method.upper(), decoded(path), True, _ids(request_id)), answer)


@settings(FUZZ, max_examples=EXAMPLES)
@given(write=st.sampled_from(hostile.WRITES), data=st.data())
def test_mutated_entra_bodies_are_answered_in_scim_form(
    harness: Harness, write: tuple[str, str, str], data: st.DataObject
) -> None:
    """Entra's own bodies with types swapped, keys removed, renamed or added, values huge,
    deep or in odd Unicode, then damaged as text: past the envelope, into the fast paths,
    the models, PATCH planning and the upstream write."""
    method, template, kind = write
    original = data.draw(hostile.entra_body(kind, harness.user_id))
    body = data.draw(hostile.encoded(data.draw(hostile.mutated(original))))
    path = harness.fill(template)
    answer = harness.send(method, path, headers=_json_headers(), body=body)
    harness.examine(Sent(method, decoded(path), authorized=True), answer)


@settings(FUZZ, max_examples=EXAMPLES)
@given(
    method=st.sampled_from(hostile.METHODS),
    path=hostile.paths(),
    credential=hostile.credentials(),
    body=st.none() | hostile.json_values.flatmap(hostile.encoded),
)
def test_every_bad_credential_is_a_scim_401(
    harness: Harness, method: str, path: str, credential: bytes | None, body: bytes | None
) -> None:
    """Missing, empty, wrong scheme, huge, random: 401 with ``WWW-Authenticate``, on every
    path under the base path, whatever the method and body; the credential never echoed."""
    path = harness.fill(path)
    headers = [] if credential is None else [(b"authorization", credential)]
    answer = harness.send(method, path, headers=headers, body=body or b"")
    presented = (credential or b"").removeprefix(b"Bearer ").strip()
    assert len(presented) < 12 or presented not in answer.body
    harness.examine(Sent(method.upper(), decoded(path), authorized=False), answer)


@settings(FUZZ, max_examples=EXAMPLES)
@given(
    host=st.sampled_from(hostile.HOSTS) | hostile.HEADER_BYTES | hostile.VALID_HOSTS,
    request_id=hostile.REQUEST_IDS,
    request=st.sampled_from([("POST", "/Users"), ("POST", "/Groups"), ("GET", "/Users/{user}"),
                             ("GET", "/ServiceProviderConfig"), ("GET", "/Schemas"),
                             ("GET", "/Groups")]),
    serial=st.integers(0, 10**9),
)  # fmt: skip
def test_hostile_hosts_and_request_ids_never_shape_a_header(
    harness: Harness, host: bytes, request_id: bytes | None, request: tuple[str, str], serial: int
) -> None:
    """The answers that build URLs (a create's ``Location``, every ``meta.location``) from
    whatever ``Host`` arrives, and the request id echoed or not."""
    method, path = request[0], harness.fill(request[1])
    body = {
        "/Users": entra.user(f"host-{serial}@contoso.com"),
        "/Groups": entra.group(f"h{serial}"),
    }
    headers = [*_json_headers(), (b"host", host)]
    if request_id is not None:
        headers.append((b"x-request-id", request_id))
    content = _dumps(body[path]) if method == "POST" else b""
    answer = harness.send(method, path, headers=headers, body=content)
    harness.examine(Sent(method, decoded(path), True, _ids(request_id)), answer)


_QUERIES: Final = hostile.queries()
_SEARCHES: Final = hostile.search_requests()


@settings(FUZZ, max_examples=EXAMPLES)
@given(path=st.sampled_from(hostile.SEARCHED), data=st.data())
def test_hostile_queries_are_answered_in_scim_form(
    harness: Harness, path: str, data: st.DataObject
) -> None:
    """Filters with random tokens and hostile quoting, ``startIndex``/``count`` extremes and
    ``attributes``/``excludedAttributes`` garbage: in the URL of a GET, or as a SearchRequest
    body (RFC 7644 §3.4.3). (Only the one sent is drawn: drawing is most of an example's
    cost.)"""
    path = harness.fill(path)
    if path.endswith("/.search"):
        body = _dumps(data.draw(_SEARCHES))
        answer = harness.send("POST", path, headers=_json_headers(), body=body)
        harness.examine(Sent("POST", path, authorized=True), answer)
    else:
        query = data.draw(_QUERIES)
        answer = harness.send("GET", path, query=query, headers=[_bearer(TOKEN)])
        harness.examine(Sent("GET", path, authorized=True), answer)


# ------------------------------------------------------------------------- properties, on the wire


@dataclass
class Wire:
    """The bridge under uvicorn with httptools and trusted proxy headers, as ``serve`` runs
    it, on a free 127.0.0.1 port; requests are raw bytes, one connection each."""

    harness: Harness
    port: int

    def exchange(self, request: bytes) -> bytes:
        return bytes(self.harness.run(self._exchange(request)))

    async def _exchange(self, request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        received = bytearray()
        try:
            writer.write(request)
            await writer.drain()
            while chunk := await reader.read(65536):  # every request says Connection: close
                received += chunk
        except ConnectionError:
            pass  # the server may reset a connection it refused: what it sent first counts
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        return bytes(received)

    def still_serving(self) -> None:
        answer = parse_wire(self.exchange(_raw(b"GET", b"/scim/ServiceProviderConfig", [])))
        assert answer is not None and answer.status == 200, answer
        assert not self.harness.errors, [r.getMessage() for r in self.harness.errors]


UVICORN_REFUSAL: Final = b"Invalid HTTP request received."
"""What uvicorn answers, in plain text, to what its parser refuses: it never reaches the app."""


def parse_wire(raw: bytes) -> Answer | None:
    """A response as it arrived, split only on CRLF: a CR or LF inside a header line stays
    in it, where :func:`check_answer` finds it. None when nothing came back."""
    if not raw:
        return None
    head, separator, body = raw.partition(b"\r\n\r\n")
    assert separator, f"no end of the header section in {raw[:300]!r}"
    status_line, *lines = head.split(b"\r\n")
    assert re.fullmatch(rb"HTTP/1\.1 [0-9]{3} [^\r\n]*", status_line), status_line
    headers = []
    for line in lines:
        name, colon, value = line.partition(b":")
        assert colon and re.fullmatch(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name), line
        headers.append((name.lower(), value.strip(b" \t")))
    return Answer(int(status_line.split(b" ")[1]), headers, body)


def _raw(
    method: bytes,
    target: bytes,
    lines: list[bytes],
    body: bytes = b"",
    version: bytes = b"HTTP/1.1",
) -> bytes:
    head = [
        method + b" " + target + b" " + version,
        b"Host: " + HOST.encode(),
        b"Authorization: Bearer " + TOKEN.encode(),
        *lines,
        b"Content-Length: " + str(len(body)).encode(),
        b"Connection: close",
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@pytest.fixture(scope="module")
def wire(harness: Harness) -> Iterator[Wire]:
    backend = harness.backend
    app = create_app(backend.settings, modyo_transport=mock_transport(backend.modyo, MODYO_URL))
    serving = uvicorn_serving(
        app, http="httptools", proxy_headers=True, forwarded_allow_ips="127.0.0.1",
        server_header=False,
    )  # fmt: skip
    port = harness.run(serving.__aenter__())
    try:
        yield Wire(harness, port)
    finally:
        harness.run(serving.__aexit__(None, None, None))


@settings(FUZZ, max_examples=EXAMPLES)
@given(
    method=hostile.mostly(hostile.METHOD_TOKENS, hostile.BROKEN_METHODS),
    target=hostile.targets(),
    lines=hostile.header_lines(),
    body=st.none() | hostile.json_values.flatmap(hostile.encoded).filter(lambda b: len(b) < 16_384),
    version=hostile.mostly(hostile.VERSIONS, hostile.BROKEN_VERSIONS),
)
def test_raw_requests_over_a_real_socket(
    wire: Wire,
    method: bytes,
    target: bytes,
    lines: list[bytes],
    body: bytes | None,
    version: bytes,
) -> None:
    """Request lines and header bytes no HTTP client library would send, to uvicorn with
    httptools: what its parser refuses is its own plain 400 (the app never sees it); every
    other answer has all the properties, CR and LF never reach a response header, and the
    server answers the next connection."""
    target = wire.harness.fill(target.decode("latin-1")).encode("latin-1")
    raw = _raw(method, target, lines, body or b"", version)
    answer = parse_wire(wire.exchange(raw))
    try:
        if answer is None or answer.body == UVICORN_REFUSAL:
            event("refused by uvicorn" if answer else "connection closed")
            if answer is not None:
                assert answer.status == 400
                assert not [h for h in answer.headers if h[0] == b"x-injected"]
        else:
            event(f"{answer.status}")
            check_answer(_wire_sent(method, target, lines), answer)
            assert not [h for h in answer.headers if h[0] == b"x-injected"]
        wire.still_serving()
    finally:
        wire.harness.errors.clear()


def _wire_sent(method: bytes, target: bytes, lines: list[bytes]) -> Sent:
    """What the app saw of a raw request: uvicorn's reading of its target, and its request
    id when the only X-Request-Id line was clean."""
    path = urlsplit(target.decode("latin-1")).path
    path = unquote(path).removeprefix("/scim") if path.startswith("/scim/") else OUTSIDE
    ids = [line for line in lines if line.lower().startswith(b"x-request-id:")]
    values = tuple(line.partition(b":")[2].strip(b" \t") for line in ids)
    known = not any(re.search(rb"[\r\n\x00]", line) or line[:1] in b" \t" for line in lines)
    return Sent(method.decode("latin-1"), path, True, values, request_ids_known=known)


# ------------------------------------------------------------------ the fakes of Modyo, directly


@dataclass(frozen=True)
class FakeTarget:
    """A fresh fake of one upstream (the same seeded ids every time), what to send it, and
    what an answer of it must be: the bridge's rule holds for the fakes too (a 5xx or an
    exception there reaches the bridge as a 500 and a traceback, where a server would
    answer)."""

    fake: FakeModyo | FakeModyoScim
    prefix: str
    user: str
    group: str
    listings: tuple[str, ...]
    paging_keys: tuple[str, ...]
    id_routes: tuple[tuple[str, str], ...]
    writes: tuple[tuple[str, str, Any], ...]

    @classmethod
    def of(cls, api: Api) -> FakeTarget:
        if api == "rest":
            rest = FakeModyo(token=MODYO_TOKEN)
            user = rest.seed_members(2)[0]
            group = rest.seed_group("Team", [user])
            member = {
                "username": "a@contoso.com",
                "email": "a@contoso.com",
                "first_name": "A",
                "last_name": "B",
                "name": "A B",
                "external_id": "x",
                "active": True,
            }
            return cls(
                rest,
                "/api/admin",
                str(user),
                str(group),
                ("/team_members", "/groups", "/groups/{group}/team_members"),
                (
                    "page",
                    "per_page",
                    "paginate",
                    "sort_by",
                    "order",
                    "only[]",
                    "ids[]",
                    "username",
                    "email",
                    "external_id",
                    "name",
                ),
                (
                    ("GET", "/team_members/{id}"),
                    ("PUT", "/team_members/{id}"),
                    ("DELETE", "/team_members/{id}"),
                    ("GET", "/groups/{id}"),
                    ("PUT", "/groups/{id}"),
                    ("DELETE", "/groups/{id}"),
                    ("GET", "/groups/{id}/team_members"),
                    ("DELETE", "/groups/{group}/team_members/{id}"),
                ),
                (
                    ("POST", "/team_members", member),
                    ("PUT", "/team_members/{user}", member),
                    ("POST", "/groups", {"name": "G", "external_id": "x"}),
                    ("PUT", "/groups/{group}", {"name": "H"}),
                    ("POST", "/groups/{group}/team_members", {"team_member_ids": [user]}),
                ),
            )
        scim = FakeModyoScim(token=MODYO_TOKEN)
        user_id = scim.seed_members(2)[0]
        group_id = scim.seed_group("Team", [user_id])
        members = [{"value": user_id}]
        patch = entra.patch(
            {"op": "replace", "path": "displayName", "value": "H"},
            {"op": "add", "path": "members", "value": members},
            {"op": "remove", "path": f'members[value eq "{user_id}"]'},
            {"op": "replace", "value": {"userName": "b@contoso.com", "active": False}},
        )
        return cls(scim, "/api/admin/scim", user_id, group_id,
                   ("/Users", "/Groups", "/Schemas"),
                   ("startIndex", "count", "filter", "excludedAttributes", "attributes"),
                   (("GET", "/Users/{id}"), ("PATCH", "/Users/{id}"), ("DELETE", "/Users/{id}"),
                    ("GET", "/Groups/{id}"), ("PATCH", "/Groups/{id}"),
                    ("DELETE", "/Groups/{id}")),
                   (("POST", "/Users", entra.user("a@contoso.com")),
                    ("PATCH", "/Users/{user}", patch),
                    ("POST", "/Groups", {**entra.group("G"), "members": members}),
                    ("PATCH", "/Groups/{group}", patch)))  # fmt: skip

    def fill(self, path: str) -> str:
        return self.prefix + path.replace("{user}", self.user).replace("{group}", self.group)

    def check(
        self, method: str, path: str, query: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> int:
        """The fake answers (an exception here is a server's traceback), never with a 5xx
        but the documented failure of Modyo's ``DELETE /scim/Users/:id`` [SCIM L100-L102],
        in JSON a parser reads (no ``NaN``) and, from the SCIM server, in SCIM's error form."""
        headers = {"Authorization": f"Bearer {MODYO_TOKEN}"}
        response = self.fake.handle(method, path, query or [], body, headers)
        content = response.content()
        documented = self.fake.route_name(method, path) == "DELETE /scim/Users/:id"
        assert response.status < 500 or documented, (method, path, query, body[:200], content)
        answer: Any = strict_json(content) if "json" in response.media_type and content else {}
        if response.status >= 400 and response.media_type.startswith("application/scim+json"):
            assert answer["schemas"] == [entra.ERROR_URN], answer
            assert answer["status"] == str(response.status), answer
        return response.status


_DEEP: Final = b"[" * 100_000 + b"]" * 100_000
FOUND: Final[dict[str, list[tuple[str, str, list[tuple[str, str]], bytes]]]] = {
    # What the properties below found: each was an exception in the fake (ValueError from
    # int() past 4,300 digits or of "--5", islice past sys.maxsize, RecursionError in the
    # JSON parser, JSONDecodeError of an escape, TypeError of a PatchOp's schemas).
    "rest": [
        ("GET", "/team_members", [("page", "9" * 5000)], b""),
        ("GET", "/team_members", [("per_page", "--5")], b""),
        ("GET", "/team_members", [("ids[]", "9" * 5000)], b""),
        ("GET", "/team_members/" + "9" * 5000, [], b""),
        ("POST", "/team_members", [], _DEEP),
    ],
    "scim": [
        ("GET", "/Users", [("startIndex", "9223372036854775709")], b""),
        ("GET", "/Groups", [("startIndex", "9" * 5000), ("count", "9" * 5000)], b""),
        ("GET", "/Users", [("filter", 'userName eq "\\q"')], b""),
        ("PATCH", "/Groups/{group}", [],
         _dumps(entra.patch({"op": "remove", "path": 'members[value eq "\\q"]'}))),
        ("PATCH", "/Users/{user}", [], _dumps({"schemas": 5, "Operations": []})),
        ("POST", "/Users", [], _DEEP),
    ],
}  # fmt: skip


@dataclass(frozen=True)
class FakeDraws:
    """What the properties draw for one fake: built once per mode (building strategies per
    example costs more than the example), as the seeded fakes' ids never change."""

    query: st.SearchStrategy[list[tuple[str, str]]]
    listing: st.SearchStrategy[str]
    id_route: st.SearchStrategy[tuple[str, str]]
    id: st.SearchStrategy[str]
    write: st.SearchStrategy[tuple[str, str, Any]]


@functools.cache
def fake_draws(api: Api) -> FakeDraws:
    target = FakeTarget.of(api)
    keys = st.sampled_from(target.paging_keys) | hostile.odd_text
    values = hostile.NUMBER_TEXTS | hostile.FAKE_FILTERS | hostile.odd_text
    return FakeDraws(
        query=st.lists(st.tuples(keys, values), max_size=5),
        listing=st.sampled_from(target.listings),
        id_route=st.sampled_from(target.id_routes),
        id=hostile.ODD_IDS | st.sampled_from([target.user, target.group]),
        write=st.sampled_from(target.writes),
    )


_AS_SENT: Final = st.sampled_from([hostile.quoted, lambda text: quote(text, safe="%")])
"""An id as a client puts it in a path: percent-encoded, a ``%`` kept (or a ``/`` too)."""


class TestTheFakesAnswerHostileInput:
    """Hostile paging, ids and bodies thrown at each fake directly, whatever the bridge
    would send: a fake that fails on what a real server answers would hide the bridge's
    own handling of that answer."""

    def test_the_inputs_the_fakes_failed_on(self, api: Api) -> None:
        target = FakeTarget.of(api)
        for method, path, query, body in FOUND[api]:
            target.check(method, target.fill(path), query, body)

    @settings(FUZZ_A_CLASS, max_examples=EXAMPLES)
    @given(data=st.data())
    def test_hostile_paging(self, api: Api, data: st.DataObject) -> None:
        target, draws = FakeTarget.of(api), fake_draws(api)
        path = target.fill(data.draw(draws.listing))
        event(f"{target.check('GET', path, data.draw(draws.query))}")

    @settings(FUZZ_A_CLASS, max_examples=EXAMPLES)
    @given(data=st.data())
    def test_hostile_ids(self, api: Api, data: st.DataObject) -> None:
        target, draws = FakeTarget.of(api), fake_draws(api)
        method, template = data.draw(draws.id_route)
        raw = data.draw(draws.id).encode("utf-8", "surrogatepass")
        path = target.fill(template).replace("{id}", data.draw(_AS_SENT)(raw.decode("latin-1")))
        body = data.draw(draws.write)[2] if method in ("PUT", "PATCH") else {}
        event(f"{target.check(method, path, body=_dumps(body) if body else b'')}")

    @settings(FUZZ_A_CLASS, max_examples=EXAMPLES)
    @given(data=st.data())
    def test_hostile_bodies(self, api: Api, data: st.DataObject) -> None:
        target, draws = FakeTarget.of(api), fake_draws(api)
        method, template, original = data.draw(draws.write)
        body = data.draw(hostile.encoded(data.draw(hostile.mutated(original))))
        event(f"{target.check(method, target.fill(template), body=body)}")
