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
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, TypeVar

import aiohttp
import httpx

from bridge import __version__, deadline
from bridge.config import ModyoSettings
from bridge.metrics import MODYO_CALLS, MODYO_IN_FLIGHT, MODYO_LATENCY
from bridge.modyo.retry import Retryable, RetryPolicy, parse_retry_after
from bridge.upstream import Unavailable

T = TypeVar("T")
RETRIED_STATUSES: Final = frozenset({502, 503, 504})
JSON: Final = "application/json"
Params = Sequence[tuple[str, str]]


class Repeat(Enum):
    """Whether a call may be re-sent when its outcome is unknown (docs/modyo-contract.md)."""

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


def build_http_client(
    settings: ModyoSettings,
    transport: httpx.AsyncBaseTransport | None = None,
    media_type: str = JSON,
) -> httpx.AsyncClient:
    """The one async HTTP client of an app (created in its lifespan); ``media_type`` is what
    it accepts (``application/scim+json`` for Modyo's SCIM server, RFC 7644 §3.1)."""
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_connections,
    )
    if transport is None and settings.transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        ssl_context = httpx.create_ssl_context(verify=settings.verify_tls)
        transport = AiohttpTransport(client=lambda: _aiohttp_session(limits, ssl_context))
    elif transport is None:
        transport = httpx.AsyncHTTPTransport(limits=limits, verify=settings.verify_tls)
    return httpx.AsyncClient(
        base_url=str(settings.base_url),
        transport=transport,
        timeout=httpx.Timeout(
            connect=settings.connect_timeout_seconds,
            read=settings.read_timeout_seconds,
            write=settings.read_timeout_seconds,
            pool=settings.connect_timeout_seconds,
        ),
        headers={
            "Authorization": f"Bearer {settings.token.get_secret_value()}",
            "Accept": media_type,
            "User-Agent": f"scim-bridge/{__version__}",
        },
    )


def _aiohttp_session(limits: httpx.Limits, ssl_context: ssl.SSLContext) -> aiohttp.ClientSession:
    """aiohttp's session, minus its silent re-send: aiohttp sends an idempotent request
    (GET, PUT, DELETE) a second time by itself when a reused keep-alive connection is closed
    under it (``ClientSession._retry_connection``, RFC 9112 §9.3.1). The bridge never saw that
    attempt: a DELETE that Modyo applied before the connection reset then met a 404 and was
    answered 404 to Entra. Every re-send must be the bridge's own decision, made knowing an
    earlier attempt may have been applied (``Answer.maybe_applied_before``), logged and
    counted; the attribute is aiohttp's only switch for it."""
    connector = aiohttp.TCPConnector(
        limit=limits.max_connections or 0,
        keepalive_timeout=limits.keepalive_expiry,
        ssl=ssl_context,
    )
    session = aiohttp.ClientSession(connector=connector)
    session._retry_connection = False
    return session


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
        self._body_headers = {"Content-Type": media_type}
        self._in_flight = asyncio.Semaphore(settings.max_in_flight)
        self._client: httpx.AsyncClient | None = None

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        """Keep one connection pool open while the block runs."""
        async with build_http_client(self.settings, self._transport, self._media_type) as client:
            self._client = client
            try:
                yield
            finally:
                self._client = None

    async def send(
        self,
        call: str,
        method: str,
        path: str,
        *,
        params: Params = (),
        json: Any = None,
        repeat: Repeat = Repeat.SAFE,
    ) -> Answer:
        """One logical call: attempts under the retry policy, within the request deadline.

        ``call`` names the endpoint (``"GET /team_members/:id"``) in metrics and logs."""
        uncertain = False

        async def attempt() -> httpx.Response:
            nonlocal uncertain
            try:
                response = await self._attempt(call, method, path, params, json)
            except httpx.TransportError as exc:
                if never_sent(exc):  # no connection: always safe to repeat
                    raise Retryable(f"connect_error ({type(exc).__name__})") from None
                if repeat is Repeat.UNSAFE:
                    raise UnknownOutcome(call) from None
                uncertain = True
                raise Retryable(f"transport_error ({type(exc).__name__})") from None
            if response.status_code == 429:  # rejected, not applied
                raise Retryable(
                    "429 throttled",
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                )
            if response.status_code in RETRIED_STATUSES:
                if repeat is Repeat.UNSAFE:
                    raise UnknownOutcome(call)
                uncertain = True
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise Retryable(f"{response.status_code} from Modyo", retry_after=retry_after)
            return response

        try:
            response = await self.retry.run(call, attempt)
        except Retryable as failure:
            wait = failure.retry_after if failure.retry_after is not None else failure.planned_wait
            raise Unavailable(
                f"Modyo is unavailable for {call} ({failure.reason})", retry_after=max(wait, 1.0)
            ) from None
        return Answer(response, uncertain)

    async def _attempt(
        self, call: str, method: str, path: str, params: Params, json: Any
    ) -> httpx.Response:
        """One HTTP exchange, queued behind the in-flight bound, cut at the deadline."""
        assert self._client is not None, "ModyoHttp.connected() is not open"
        left = deadline.remaining()
        if left is not None and left <= 0:
            raise Unavailable(f"the request deadline passed before {call}", retry_after=1)
        sent = False
        started = time.perf_counter()
        try:
            async with (
                asyncio.timeout(left) if left is not None else nullcontext(),
                self._in_flight,
            ):
                sent = True
                MODYO_IN_FLIGHT.inc()
                try:
                    response = await self._client.request(
                        method,
                        path,
                        params=list(params) or None,
                        json=json,
                        headers=self._body_headers if json is not None else None,
                    )
                finally:
                    MODYO_IN_FLIGHT.dec()
        except TimeoutError:
            MODYO_CALLS(call, "deadline").inc()
            reason = "answer" if sent else "a free slot (modyo.max_in_flight)"
            raise Unavailable(
                f"the request deadline passed waiting for {reason} for {call}", retry_after=2
            ) from None
        except httpx.TransportError as exc:
            MODYO_CALLS(call, type(exc).__name__).inc()
            raise
        MODYO_CALLS(call, str(response.status_code)).inc()
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
