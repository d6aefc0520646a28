"""HTTP plumbing shared by every Modyo upstream: the client, one call's attempts, and what is
known about a call whose answer never came.

Nothing here knows a Modyo path or payload (those live in the contract modules, ``rest``
and ``scim``). Every call goes through :meth:`ModyoHttp.send`: bounded in-flight calls, the
request deadline, the retry policy, metrics. A call that is not safe to repeat (a create) is
never re-sent after an unknown outcome: :class:`UnknownOutcome` hands the decision back to the
contract, which looks the object up first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, TypeVar
from urllib.parse import urlencode

import aiohttp
import httpx

from bridge import __version__, deadline, request_state
from bridge.config import ModyoSettings
from bridge.metrics import MODYO_CALLS, MODYO_IN_FLIGHT, MODYO_LATENCY, REQUEST_LIMITS
from bridge.modyo.retry import Retryable, RetryPolicy, parse_retry_after
from bridge.upstream import BadGateway, TooManyCalls, Unavailable

T = TypeVar("T")
log = logging.getLogger("bridge.modyo")
RETRIED_STATUSES: Final = frozenset({502, 503, 504})
JSON: Final = "application/json"
Params = Sequence[tuple[str, str]]


class Repeat(Enum):
    """Whether a call may be re-sent when its outcome is unknown (docs/design/modyo-contract.md)."""

    SAFE = "safe"  # reads, absolute updates, idempotent membership changes, deletes
    UNSAFE = "unsafe"  # creates: a re-send could create twice


class UnknownOutcome(Exception):
    """An UNSAFE call was sent and no usable answer came back: it may have been applied."""


@dataclass(frozen=True, slots=True)
class Answer:
    response: httpx.Response
    maybe_applied_before: bool  # an earlier attempt was sent and its outcome is unknown

    @property
    def status(self) -> int:
        return self.response.status_code


def build_transport(
    settings: ModyoSettings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncBaseTransport:
    """The one HTTP transport of an app (opened in its lifespan): ``transport`` when given (a
    test's, the in-process fake's), else ``modyo.transport``'s connection pool.

    Egress: :func:`egress_proxy`, resolved here, once; neither transport consults the
    environment again (``trust_env=False``: aiohttp would otherwise read ``~/.netrc`` and scan
    the environment in a thread on every request). TLS: :func:`tls_context`."""
    if transport is not None:
        return transport
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_connections,
    )
    proxy = egress_proxy(settings)
    ssl_context = tls_context(settings)
    if settings.transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return AiohttpTransport(proxy=proxy, client=lambda: _aiohttp_session(limits, ssl_context))
    return httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits, proxy=proxy, trust_env=False)


_PLAIN_PATH: Final = re.compile(r"(?:[A-Za-z0-9\-_~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
"""A path httpx leaves as it is: unreserved characters (no ``.``: no dot segment to remove),
the sub-delimiters, ``:``, ``@``, ``/`` and percent-escapes (RFC 3986 §3.3)."""


class Requests:
    """Builds each Modyo request as ``httpx.AsyncClient`` would (the base URL joined with the
    path, httpx's default headers plus the bridge's, the JSON body as httpx encodes it, the
    timeouts): the same bytes on the wire, with the head written out once instead of merged
    for each call; and hands it straight to the transport. The client's per-request chain
    does nothing the bridge needs: no auth flow (the token is a header), no redirects (never
    followed), no event hooks, and a cookie jar the bridge does not want: every call carries
    its bearer token and nothing an earlier answer set (docs/design/upstreams.md).

    ``media_type`` is what it accepts (``application/scim+json`` for Modyo's SCIM server,
    RFC 7644 §3.1) and the type of the JSON bodies it sends."""

    _encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
    """httpx's own JSON encoding of a request body."""

    def __init__(
        self, settings: ModyoSettings, transport: httpx.AsyncBaseTransport, media_type: str = JSON
    ) -> None:
        self.transport = transport
        text = str(settings.base_url)
        self._prefix = text if text.endswith("/") else text + "/"
        headers = httpx.AsyncClient(  # the client's default headers (Accept-Encoding...) too
            transport=transport,
            trust_env=False,
            headers={
                "Authorization": f"Bearer {settings.token.get_secret_value()}",
                "Accept": media_type,
                "User-Agent": f"scim-bridge/{__version__}",
            },
        ).headers
        base = httpx.URL(self._prefix)
        self._base = base._uri_reference  # its parts, parsed once
        self._head = [(b"Host", base.netloc), *headers.raw]
        self._content_type = (b"Content-Type", media_type.encode())
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_seconds,
            read=settings.read_timeout_seconds,
            write=settings.read_timeout_seconds,
            pool=settings.connect_timeout_seconds,
        )
        self._timeout = timeout.as_dict()

    def build(
        self, method: str, path: str, params: Params, body: Any, request_id: str | None
    ) -> httpx.Request:
        """``path`` (absolute, already percent-encoded where it must be) under the base URL;
        ``body``, if not None, sent as JSON; ``request_id`` as ``X-Request-Id``."""
        head = self._head.copy()
        if request_id is not None:
            head.append((b"X-Request-Id", request_id.encode()))
        content = b""
        if body is not None:
            content = self._encode(body).encode()
            head += (self._content_type, (b"Content-Length", str(len(content)).encode()))
        elif method in ("POST", "PUT", "PATCH"):
            head.insert(1, (b"Content-Length", b"0"))  # after Host, where httpx puts it
        request = httpx.Request(
            method,
            self.url(path, params),
            headers=head,
            stream=httpx.ByteStream(content),
            extensions={"timeout": self._timeout},
        )
        request.read()
        return request

    def url(self, path: str, params: Params) -> httpx.URL:
        """``httpx.URL(base + path, params=params)``, without parsing what it would leave as
        it is: the base URL's parts (parsed once), a path of characters it keeps (RFC 3986
        §3.3) and the query as httpx writes it (``urllib.parse.urlencode`` of its
        ``QueryParams``)."""
        full = self._base.path + path.lstrip("/")
        if not _PLAIN_PATH.fullmatch(full):
            return httpx.URL(self._prefix + path.lstrip("/"), params=list(params) or None)
        url = httpx.URL.__new__(httpx.URL)
        query = None
        if params:  # grouped by name, as httpx.QueryParams holds them
            values: dict[str, list[str]] = {}
            for name, value in params:
                values.setdefault(name, []).append(value)
            query = urlencode([(name, value) for name, held in values.items() for value in held])
        url._uri_reference = self._base._replace(path=full, query=query)
        return url

    async def send(self, request: httpx.Request) -> httpx.Response:
        """The whole answer, read (a failure while reading closes it). A body without a
        content coding is kept as read; one with a coding goes through httpx's decoding."""
        try:
            response = await self.transport.handle_async_request(request)
            response.request = request
            stream = response.stream
            if not isinstance(stream, httpx.AsyncByteStream):  # as httpx's client refuses it
                raise RuntimeError("the transport answered with a synchronous stream")
            try:
                body = b"".join([chunk async for chunk in stream])
            finally:
                await stream.aclose()
        except httpx.RequestError as exc:
            exc.request = request
            raise
        if "content-encoding" in response.headers:
            response.stream = httpx.ByteStream(body)
            response.read()
        else:  # what read() would keep, without its chain of generators for one chunk
            response._content = body
            response.is_stream_consumed = response.is_closed = True
        return response


def egress_proxy(settings: ModyoSettings) -> httpx.Proxy | None:
    """The proxy on the way to Modyo, decided once for the client's life: ``modyo.proxy_url``
    when set; otherwise the standard variables for Modyo's scheme (``HTTPS_PROXY`` or
    ``HTTP_PROXY``, then ``ALL_PROXY``, either case) unless ``NO_PROXY`` names Modyo's host.
    ``~/.netrc`` is not read: proxy credentials go in the proxy's URL.

    As httpx's Proxy, it takes the credentials out of the URL (decoded) and each transport
    sends them as ``Proxy-Authorization: Basic``, to the proxy only (on the CONNECT of an
    https:// Modyo, on each request of an http:// one)."""
    if settings.proxy_url is not None:
        return httpx.Proxy(settings.proxy_url.get_secret_value())
    variables = urllib.request.getproxies_environment()
    url = variables.get(settings.base_url.scheme) or variables.get("all")
    if not url or urllib.request.proxy_bypass(settings.base_url.host or ""):
        return None
    return httpx.Proxy(url)


def tls_context(settings: ModyoSettings) -> ssl.SSLContext:
    """Verification against the public CAs (certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``)
    plus ``modyo.ca_file``, a bank's private CA (a TLS-inspecting proxy re-signs with it);
    ``modyo.client_cert``/``client_key`` for mTLS."""
    context = httpx.create_ssl_context(verify=settings.verify_tls)
    if settings.verify_tls and settings.ca_file is not None:
        context.load_verify_locations(cafile=settings.ca_file)
    if settings.client_cert is not None:
        context.load_cert_chain(settings.client_cert, settings.client_key)
    return context


def _aiohttp_session(limits: httpx.Limits, ssl_context: ssl.SSLContext) -> aiohttp.ClientSession:
    """aiohttp's session, minus its silent re-send: aiohttp sends an idempotent request
    (GET, PUT, DELETE) a second time by itself when a reused keep-alive connection is closed
    under it (``ClientSession._retry_connection``, RFC 9112 §9.3.1). The bridge never saw that
    attempt: a DELETE that Modyo applied before the connection reset then met a 404 and was
    answered 404 to Entra. Every re-send must be the bridge's own decision, made knowing an
    earlier attempt may have been applied (``Answer.maybe_applied_before``), logged and
    counted; the attribute is aiohttp's only switch for it.

    The proxy is given per request by the transport (:func:`egress_proxy`); the session never
    reads the environment (``trust_env`` off) and keeps no cookies (:class:`Requests`)."""
    connector = aiohttp.TCPConnector(
        limit=limits.max_connections or 0,
        keepalive_timeout=limits.keepalive_expiry,
        ssl=ssl_context,
    )
    session = aiohttp.ClientSession(
        connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
    )
    session._retry_connection = False
    return session


@dataclass(frozen=True, slots=True)
class ConnectFailure:
    """Why no connection to Modyo could be used, named for what it is."""

    kind: str  # the metric label: "certificate", "dns", "connection_refused", ...
    detail: str  # for the SCIM answer and the logs; never a credential
    permanent: bool  # repeating at once cannot help: fail fast instead of retrying


def connect_failure(
    exc: BaseException, target: str, proxy: str | None = None
) -> ConnectFailure | None:
    """Name a transport error (either transport; the original error is in the chain httpx
    and httpx-aiohttp keep). ``target`` is ``host:port`` of Modyo, for errors that lack one;
    ``proxy`` that of the configured proxy, which a refused connection then names.

    Permanent, so not retried: a certificate that does not verify (a configuration error, or
    an interception: waiting does not change it), a name that does not resolve (the resolver
    already applied its own timeouts and retries, resolv.conf), a TLS handshake refused, a
    proxy refusing the tunnel (407: wrong credentials). Transient: refused connections (a
    restarting Modyo or proxy) and connect timeouts. None: not a connection failure."""
    chain = list(_chain(exc))
    for error in chain:
        if isinstance(error, aiohttp.ClientConnectorCertificateError):
            where = f"{error.host}:{error.port}"
            return _certificate(where, _verify_reason(error.certificate_error))
        if isinstance(error, ssl.SSLCertVerificationError):
            return _certificate(target, _verify_reason(error))
    for error in chain:
        if isinstance(error, aiohttp.ClientConnectorDNSError):
            return _dns(error.host, error.os_error)
        if isinstance(error, socket.gaierror):
            return _dns(target.rsplit(":", 1)[0], error)
        if isinstance(error, aiohttp.ClientHttpProxyError):
            return _proxy_refused(f"HTTP {error.status} {error.message}".strip())
        if isinstance(error, httpx.ProxyError) and str(error)[:3].isdigit():
            return _proxy_refused(f"HTTP {error}")
        if isinstance(error, aiohttp.ClientProxyConnectionError):
            where = f"the egress proxy {error.host}:{error.port}"
            return _unreachable(where, error.os_error)
    for error in chain:
        if isinstance(error, aiohttp.ClientConnectorError):
            return _unreachable(f"{error.host}:{error.port}", error.os_error)
        if isinstance(error, aiohttp.ConnectionTimeoutError):
            return _unreachable(target, TimeoutError())
        if isinstance(error, ConnectionRefusedError):
            return _unreachable(f"the egress proxy {proxy}" if proxy else target, error)
        if isinstance(error, ssl.SSLError) and _refused_handshake(error):
            return ConnectFailure(
                "tls", f"the TLS handshake with {target} failed ({error.reason})", True
            )
    if isinstance(exc, httpx.ConnectTimeout) and not any(
        isinstance(error, aiohttp.ClientError) for error in chain
    ):  # httpx's own pool (httpx-aiohttp maps every connection error to ConnectTimeout)
        return _unreachable(target, TimeoutError())
    return None


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _certificate(where: str, reason: str) -> ConnectFailure:
    return ConnectFailure(
        "certificate",
        f"the TLS certificate of {where} does not verify ({reason}); if a private CA signs "
        "it (a TLS-inspecting proxy, say), set modyo.ca_file",
        True,
    )


def _verify_reason(error: BaseException) -> str:
    message = getattr(error, "verify_message", None) or getattr(error, "reason", None)
    return str(message or error)


def _dns(host: str, error: OSError) -> ConnectFailure:
    reason = error.strerror or str(error)
    return ConnectFailure(
        "dns", f"the DNS lookup of {host} failed ({reason}): check modyo.base_url", True
    )


def _proxy_refused(answer: str) -> ConnectFailure:
    return ConnectFailure(
        "proxy_refused",
        f"the egress proxy refused the tunnel to Modyo ({answer}): check its address and "
        "credentials (modyo.proxy_url, or HTTPS_PROXY)",
        True,
    )


def _unreachable(where: str, error: OSError) -> ConnectFailure:
    if isinstance(error, ConnectionRefusedError):
        return ConnectFailure("connection_refused", f"connection refused by {where}", False)
    if isinstance(error, TimeoutError):
        return ConnectFailure(
            "connect_timeout",
            f"no connection to {where} within modyo.connect_timeout_seconds",
            False,
        )
    reason = error.strerror or type(error).__name__
    return ConnectFailure("connect_error", f"cannot connect to {where} ({reason})", False)


def _refused_handshake(error: ssl.SSLError) -> bool:
    """A handshake the server refused (no or a wrong client certificate, no common protocol):
    the request was not processed, and a repeat meets the same refusal."""
    reason = str(error.reason or "").upper()
    return any(word in reason for word in ("ALERT", "HANDSHAKE", "CERTIFICATE", "PROTOCOL"))


class ModyoHttp:
    """Sends Modyo calls for one app: open it with :meth:`connected` for the app's lifetime.

    ``media_type`` is the one the contract speaks: accepted, and the type of JSON bodies."""

    def __init__(
        self,
        settings: ModyoSettings,
        retry: RetryPolicy,
        transport: httpx.AsyncBaseTransport | None = None,
        media_type: str = JSON,
    ) -> None:
        self.settings = settings
        self.retry = retry
        self._transport = transport
        self._media_type = media_type
        self._in_flight = asyncio.Semaphore(settings.max_in_flight)
        self._requests: Requests | None = None
        self._target = f"{settings.base_url.host}:{settings.base_url.port}"
        proxy = egress_proxy(settings)
        self._proxy = f"{proxy.url.host}:{proxy.url.port}" if proxy is not None else None

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        """Keep one connection pool open while the block runs."""
        async with build_transport(self.settings, self._transport) as transport:
            self._requests = Requests(self.settings, transport, self._media_type)
            try:
                yield
            finally:
                self._requests = None

    def expect(self, calls: int) -> None:
        """Refuse (:class:`TooManyCalls`) before a run of ``calls`` calls that would take the
        request being served past ``modyo.max_calls_per_request``: a contract announces each
        fan-out (a listing's pages, a call per member) before its first call, so a request
        over the budget is refused before it writes, not part-way."""
        serving = request_state.current()
        budget = self.settings.max_calls_per_request
        if serving is not None and serving.upstream_budget_used + calls > budget:
            REQUEST_LIMITS("modyo.max_calls_per_request").inc()
            raise TooManyCalls(serving.upstream_budget_used + calls, budget)

    async def send(
        self,
        call: str,
        method: str,
        path: str,
        *,
        params: Params = (),
        json: Any = None,
        repeat: Repeat = Repeat.SAFE,
        retried: bool = True,
    ) -> Answer:
        """One logical call: attempts under the retry policy, within the request deadline
        and the request's budget of calls (:meth:`expect`).

        ``call`` names the endpoint (``"GET /team_members/:id"``) in metrics and logs.
        ``retried=False`` (a health probe): one attempt, whatever status it gets answered."""
        self.expect(1)
        serving = request_state.current()
        if serving is not None:
            serving.upstream_budget_used += 1
        uncertain = False
        tries = 0

        async def attempt() -> httpx.Response:
            nonlocal uncertain, tries
            tries += 1
            try:
                response = await self._attempt(call, method, path, params, json, tries)
            except httpx.TransportError as exc:
                failure = connect_failure(exc, self._target, self._proxy)
                if failure is not None and failure.permanent:  # and never sent
                    raise BadGateway(
                        f"Modyo cannot be reached for {call}: {failure.detail}"
                    ) from None
                if never_sent(exc):  # no connection: always safe to repeat
                    if failure is not None:
                        raise Retryable(failure.detail, kind=failure.kind) from None
                    raise Retryable(
                        f"connect_error ({type(exc).__name__})", kind="connect_error"
                    ) from None
                if repeat is Repeat.UNSAFE:
                    raise UnknownOutcome(call) from None
                uncertain = True
                raise Retryable(
                    f"transport_error ({type(exc).__name__})", kind="transport_error"
                ) from None
            if response.status_code == 407:  # a forward proxy's answer, for http:// Modyo
                raise BadGateway(
                    f"Modyo cannot be reached for {call}: "
                    + _proxy_refused("HTTP 407 Proxy Authentication Required").detail
                )
            if not retried:
                return response
            if response.status_code == 429:  # rejected, not applied
                raise Retryable(
                    "429 throttled",
                    kind="429",
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                )
            if response.status_code in RETRIED_STATUSES:
                if repeat is Repeat.UNSAFE:
                    raise UnknownOutcome(call)
                uncertain = True
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise Retryable(
                    f"{response.status_code} from Modyo",
                    kind=str(response.status_code),
                    retry_after=retry_after,
                )
            return response

        try:
            response = await (self.retry.run(call, attempt) if retried else attempt())
        except Retryable as failure:
            wait = failure.retry_after if failure.retry_after is not None else failure.planned_wait
            raise Unavailable(
                f"Modyo is unavailable for {call} ({failure.reason})", retry_after=max(wait, 1.0)
            ) from None
        return Answer(response, uncertain)

    async def _attempt(
        self, call: str, method: str, path: str, params: Params, json: Any, attempt: int = 1
    ) -> httpx.Response:
        """One HTTP exchange, queued behind the in-flight bound, cut at the deadline; counted
        in the request's state, kept there for the journal (the call's name, its status,
        attempt and duration) and, at debug level, logged (never a body or a header)."""
        requests = self._requests
        if requests is None:  # a caller outside ``connected()``: a bug, not a state
            raise RuntimeError("ModyoHttp.connected() is not open")
        left = deadline.remaining()
        if left is not None and left <= 0:
            raise Unavailable(f"the request deadline passed before {call}", retry_after=1)
        serving = request_state.current()
        request_id = serving.request_id if serving is not None else None
        request = requests.build(method, path, params, json, request_id)
        sent = False
        outcome = "deadline"
        started = time.perf_counter()
        try:
            async with (
                asyncio.timeout(left) if left is not None else nullcontext(),
                self._in_flight,
            ):
                sent = True
                if serving is not None:
                    serving.upstream_calls += 1
                MODYO_IN_FLIGHT.inc()
                try:
                    response = await requests.send(request)
                finally:
                    MODYO_IN_FLIGHT.dec()
            outcome = str(response.status_code)
        except TimeoutError:
            MODYO_CALLS(call, outcome).inc()
            reason = "answer" if sent else "a free slot (modyo.max_in_flight)"
            raise Unavailable(
                f"the request deadline passed waiting for {reason} for {call}", retry_after=2
            ) from None
        except httpx.TransportError as exc:
            failure = connect_failure(exc, self._target, self._proxy)
            outcome = failure.kind if failure is not None else type(exc).__name__
            MODYO_CALLS(call, outcome).inc()
            raise
        finally:
            if sent:
                elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
                if serving is not None:
                    status: int | str = int(outcome) if outcome.isdigit() else outcome
                    serving.add_upstream_call(call, status, attempt, elapsed_ms)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(
                        "Modyo call",
                        extra={"call": call, "status": outcome, "duration_ms": elapsed_ms},
                    )
        MODYO_CALLS(call, outcome).inc()
        MODYO_LATENCY(call).observe(time.perf_counter() - started)
        return response


def never_sent(exc: httpx.TransportError) -> bool:
    """Whether the request surely never reached Modyo (no connection was made).

    httpx raises ConnectError or ConnectTimeout for that. httpx-aiohttp maps *every* aiohttp
    connection error to ConnectTimeout, a server that drops the connection after reading the
    request included, so there the original aiohttp error decides: only ClientConnectorError
    (the connection could not be opened) means "never sent".
    """
    if not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return False
    cause = exc.__cause__
    if cause is None or not isinstance(cause, aiohttp.ClientError):
        return True
    return isinstance(cause, aiohttp.ClientConnectorError)


def json_object(answer: Answer, call: str) -> dict[str, Any]:
    """An answer's body as the JSON object a contract expects (``{}`` for no body); anything
    else is an answer the bridge cannot use (502)."""
    if answer.status == 204 or not answer.response.content:
        return {}
    try:
        body = answer.response.json()
    except ValueError:
        raise BadGateway(f"Modyo answered {call} with a body that is not JSON") from None
    if not isinstance(body, dict):
        raise BadGateway(f"Modyo answered {call} with a JSON {type(body).__name__}, not an object")
    return body


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """``items`` in runs of at most ``size`` (Modyo's per-call limits)."""
    return (items[start : start + size] for start in range(0, len(items), size))


async def gather_all(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently; if one fails, cancel the others and raise its error (itself, not the
    ExceptionGroup a TaskGroup raises: callers map UpstreamError to SCIM answers)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_awaited(awaitable)) for awaitable in awaitables]
    except BaseExceptionGroup as grouped:
        first: BaseException = grouped
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [task.result() for task in tasks]


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable
