"""The ASGI application: routes, middleware, error handlers and the upstream's lifespan.

Data flows one way: request -> SCIM parse/validate -> plan -> upstream calls -> SCIM response.
Layers, outermost first: a trusted proxy's forwarded headers, the observer (request id,
deadline, access log, metrics, the last-resort error answer), the Host check (RFC 9112 §3.2),
the known-error handlers, then the router; around the SCIM endpoints, in order: the allowed
hosts, authentication (from the head: no body byte is read before it), the body reader, the
idempotency cache (docs/operator/security.md).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import httpx
from pydantic import ValidationError
from scim2_models import NotFoundException, SCIMException
from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge import request_state
from bridge.config import Settings
from bridge.edge.body import BodyBudget, BodyReader
from bridge.edge.errors import InternalError, MethodNotAllowed, SharedStoreUnavailable
from bridge.edge.forwarded import ForwardedHeaders
from bridge.edge.hosts import AllowedHosts, HostCheck
from bridge.edge.idempotency import IdempotencyMiddleware
from bridge.edge.observe import RequestObserver
from bridge.edge.readiness import MODYO_WORDS, STORE_WORDS, Readiness, upstream_check
from bridge.journal import Journal, replica_name
from bridge.journal.middleware import Handler, JournalMiddleware
from bridge.journal.redis_history import RedisHistory
from bridge.metrics import MODYO_INSECURE, SHARED_STORE_REFUSED, metrics_endpoint
from bridge.modyo.redis_directory import RedisGroupDirectory
from bridge.modyo.scim import ScimUpstream
from bridge.modyo.upstreams import modyo_upstream, write_calls
from bridge.safety import SafetyEdge, safety_rails
from bridge.scim.auth import BearerAuth, FailureThrottle
from bridge.scim.context import Limits, ScimContext
from bridge.scim.discovery import DiscoveryEndpoints
from bridge.scim.endpoints import CaseInsensitivePaths, Endpoint, method_route
from bridge.scim.errors import PartialWrite, error_response, from_upstream, from_validation
from bridge.scim.groups import GroupEndpoints
from bridge.scim.users import UserEndpoints
from bridge.store.answers import IdempotencyStore, MemoryStore
from bridge.store.errors import StoreUnavailable
from bridge.store.redis_answers import RedisStore
from bridge.store.redis_link import RedisLink, connect
from bridge.store.redis_locks import RedisLocks
from bridge.upstream import Upstream, UpstreamError

log = logging.getLogger("bridge.edge.app")


def create_app(
    settings: Settings,
    *,
    upstream: Upstream | None = None,
    modyo_transport: httpx.AsyncBaseTransport | None = None,
    readiness: Readiness | None = None,
    shared_store: RedisLink | None = None,
    journal: Journal | None = None,
    worker_pid: int | None = None,
) -> SafetyEdge:
    """Build the bridge. ``upstream`` replaces the Modyo upstream entirely; ``modyo_transport``
    keeps the real one (``modyo.api``) but sends its HTTP elsewhere (the in-process fake);
    ``readiness`` replaces the probing schedule of the settings (tests drive it);
    ``shared_store`` replaces the link to the Redis of ``idempotency.backend = "redis"``;
    ``journal`` the journal of ``journal.enabled`` (``worker_pid``: a worker of
    ``server.workers``, whose chain is its own)."""
    if upstream is None:
        upstream = modyo_upstream(
            settings.modyo.api, settings.modyo, settings.retry, modyo_transport
        )
    idempotency = settings.idempotency
    link = shared_store
    if link is None and idempotency.backend == "redis":
        link = connect(idempotency)
    rails = safety_rails(settings, upstream, link, write_calls(settings.modyo.api))
    upstream = rails.upstream
    if readiness is None:
        readiness = Readiness.from_settings(settings.server)
    readiness.add("modyo", upstream_check(upstream, "modyo"), MODYO_WORDS)
    readiness.detail(rails.status_fields)
    insecure = settings.modyo.insecure
    readiness.warnings = [f"modyo_{what}" for what in insecure]
    MODYO_INSECURE.set(1 if insecure else 0)
    store: IdempotencyStore = MemoryStore(idempotency.max_entries, idempotency.ttl_seconds)
    scim_settings = settings.scim
    context = ScimContext(
        upstream=upstream,
        max_page_size=scim_settings.max_page_size,
        max_filter_scan=scim_settings.max_filter_scan,
        public_url=str(settings.server.public_url) if settings.server.public_url else None,
        limits=Limits(
            max_filter_length=scim_settings.max_filter_length,
            max_filter_comparisons=scim_settings.max_filter_comparisons,
            max_patch_members=scim_settings.max_patch_members,
            max_patch_operations=scim_settings.max_patch_operations,
            max_json_values=scim_settings.max_json_values,
        ),
    )
    if link is not None:
        store = RedisStore(link, idempotency.ttl_seconds, idempotency.lock_ttl_seconds)
        context.creating = RedisLocks(link, idempotency.lock_ttl_seconds)
        if isinstance(upstream, ScimUpstream) and upstream.directory is not None:
            upstream.directory = RedisGroupDirectory(link, upstream.directory.size)
        readiness.add("shared_store", link.check, STORE_WORDS)
    connected = upstream.connected
    if journal is None:
        journal = journal_for(settings, link, worker_pid)
    journaling = journal.running() if journal is not None else contextlib.nullcontext()

    @asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        if insecure:
            _warn_insecure(settings, insecure)
        try:
            interval = settings.server.readiness_interval_seconds
            async with journaling, connected(), readiness.running(), rails.running(interval):
                yield
        finally:
            if link is not None:
                await link.close()

    scim_routes = [
        *UserEndpoints(context).routes(),
        *GroupEndpoints(context).routes(),
        *DiscoveryEndpoints(context).routes(),
    ]
    # a 404 in SCIM form, not a redirect built from the request:
    scim: ASGIApp = Router(routes=scim_routes, redirect_slashes=False)
    if idempotency.enabled:
        scim = IdempotencyMiddleware(scim, store)
    scim = CaseInsensitivePaths(scim, scim_routes)
    tokens = {name: token.get_secret_value() for name, token in scim_settings.tokens.items()}
    throttle = FailureThrottle(
        scim_settings.auth_failures_per_minute, scim_settings.auth_throttle_clients
    )
    routes: list[Route | Mount] = [
        method_route("/healthz", None, GET=("healthz", healthz)),
        method_route("/readyz", None, GET=("readyz", readiness.endpoint)),
    ]
    server = settings.server
    scim = BodyReader(scim, server, BodyBudget(server.max_buffered_body_bytes))  # read once
    if journal is not None:  # its errors answered inside it, so that it sees them
        scim = JournalMiddleware(scim, journal, HANDLERS)
    scim = BearerAuth(scim, tokens, throttle)  # from the head, before any body byte
    scim = AllowedHosts(scim, None if server.public_url else server.url_hosts())
    routes.append(_Mount(server.base_path, app=scim))
    handled = ExceptionMiddleware(
        Router(routes=routes, lifespan=lifespan, redirect_slashes=False), handlers=HANDLERS
    )
    observed = RequestObserver(HostCheck(_Routed(handled)), settings.scim.request_deadline_seconds)
    return SafetyEdge(ForwardedHeaders(observed, settings.server.forwarded_allow_ips), rails)


def journal_for(
    settings: Settings, link: RedisLink | None, worker_pid: int | None = None
) -> Journal | None:
    """The journal of ``journal.enabled``: its recent history in the Redis stream every
    replica shares when the idempotency store is Redis (``link``), else in this process's
    memory (docs/reference/journal.md, "Recent history")."""
    if not settings.journal.enabled:
        return None
    history = None
    if link is not None:
        size = settings.journal.history_size
        history = RedisHistory(link.client, link.key("journal"), size, link.call_seconds)
    replica = replica_name(settings.journal.replica, worker_pid)
    return Journal(settings.journal, replica=replica, history=history)


def _warn_insecure(settings: Settings, insecure: tuple[str, ...]) -> None:
    """Once per start: what ``modyo.allow_insecure`` lets through (docs/operator/listeners.md)."""
    url = settings.modyo.base_url
    risks = {
        "plaintext": "travels in plaintext (modyo.base_url is http://)",
        "unverified_tls": "goes to whoever presents a certificate (modyo.verify_tls = false)",
    }
    log.warning(
        "modyo.allow_insecure: the Modyo token, and every user's data, %s to %s:%s; anyone "
        "on that path can read or change them",
        " and ".join(risks[what] for what in insecure),
        url.host,
        url.port,
        extra={"insecure": list(insecure)},
    )


class _Mount(Mount):
    """Every path under the base path, including one holding a line break (``%0A``), which
    Starlette's ``.*`` would not match: such a request would be answered 404 before its
    token was checked, instead of 401."""

    def __init__(self, path: str, app: ASGIApp) -> None:
        super().__init__(path, app=app)
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)


class _Routed:
    """Marks the scope as served by an app, as Starlette's application does: its routing then
    raises 404 and 405 as HTTPException, which the handlers answer in SCIM form, instead of
    answering them in plain text."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        await self.app(scope, receive, send)


def internal_app(
    settings: Settings,
    mounted: Sequence[BaseRoute] = (),
    status: Endpoint | None = None,
) -> ASGIApp:
    """The internal listener's app (``[internal]``): ``/metrics`` (``server.metrics_enabled``),
    ``/status`` (the dependencies as reported: ``Readiness.status_endpoint``, or the workers'
    supervisor's) and whatever else ``mounted`` holds (a ``Mount`` of an admin console, say),
    reachable by the scraper and the operators on the internal network only, never through
    the ingress Entra uses; the SCIM endpoints are not there (docs/operator/listeners.md,
    docs/operator/health.md)."""
    routes: list[BaseRoute] = []
    if settings.server.metrics_enabled:
        routes.append(method_route("/metrics", None, GET=("metrics", metrics_endpoint)))
    if status is not None:
        routes.append(method_route("/status", None, GET=("status", status)))
    routes.extend(mounted)
    return _Routed(  # 404 and 405 in SCIM form, as on the SCIM listener
        ExceptionMiddleware(
            Router(routes=routes, redirect_slashes=False), handlers={HTTPException: _http_error}
        )
    )


async def healthz(request: Request) -> Response:
    """Liveness for orchestrators: no authentication, no Modyo call (readiness: ``/readyz``)."""
    return JSONResponse({"status": "ok"})


def _resource_type() -> str:
    """The resource type routing resolved for this request (``User`` when none applies)."""
    state = request_state.current()
    return (state.resource_type if state else None) or "User"


async def _scim_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SCIMException)
    return error_response(exc)


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    """A write refused for want of the shared store (counted: an alert can watch it)."""
    assert isinstance(exc, StoreUnavailable)
    SHARED_STORE_REFUSED.inc()
    return error_response(SharedStoreUnavailable(detail=exc.detail, retry_after=exc.retry_after))


async def _upstream_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UpstreamError)
    return error_response(from_upstream(exc, resource=_resource_type()))


async def _partial_write(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PartialWrite)
    return error_response(exc.to_scim(_resource_type()))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    return error_response(from_validation(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing errors, in SCIM form: 404 for unknown endpoints, 405 with ``Allow``."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        detail = f"{request.method} is not allowed here; allowed: {allowed}"
        return error_response(MethodNotAllowed(detail=detail, headers=exc.headers))
    if exc.status_code == 404:
        return error_response(NotFoundException(detail=f"no SCIM endpoint at {request.url.path}"))
    return error_response(InternalError(detail=str(exc.detail)))


HANDLERS: dict[type[Exception] | int, Handler] = {
    StoreUnavailable: _store_unavailable,
    SCIMException: _scim_error,
    UpstreamError: _upstream_error,
    PartialWrite: _partial_write,
    ValidationError: _validation_error,
    HTTPException: _http_error,
}
"""Known errors answered in SCIM form (RFC 7644 §3.12), by class."""
