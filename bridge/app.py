"""The ASGI application: routes, middleware, error handlers and the Modyo client's lifespan.

Data flows one way: request -> SCIM parse/validate -> plan -> upstream calls -> SCIM response.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from pydantic import ValidationError
from scim2_models import NotFoundException, SCIMException
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.types import ASGIApp

from bridge.body import BodyReader
from bridge.config import Settings
from bridge.idempotency import IdempotencyMiddleware, MemoryStore
from bridge.metrics import metrics_endpoint
from bridge.modyo.client import ModyoClient, build_http_client
from bridge.modyo.retry import RetryPolicy
from bridge.observe import RequestObserver
from bridge.scim.auth import BearerAuth
from bridge.scim.discovery import DiscoveryEndpoints
from bridge.scim.errors import (
    InternalError,
    MethodNotAllowed,
    PartialWrite,
    error_response,
    from_upstream,
    from_validation,
)
from bridge.scim.groups import GroupEndpoints
from bridge.scim.site import ScimSite
from bridge.scim.users import UserEndpoints
from bridge.upstream import Upstream, UpstreamError

log = logging.getLogger("bridge.app")


def create_app(
    settings: Settings,
    *,
    upstream: Upstream | None = None,
    modyo_transport: httpx.AsyncBaseTransport | None = None,
) -> ASGIApp:
    """Build the bridge. ``upstream`` replaces the Modyo client entirely; ``modyo_transport``
    keeps the real client but sends its HTTP elsewhere (the in-process fake Modyo)."""
    site = ScimSite(
        max_body_bytes=settings.server.max_body_bytes,
        max_page_size=settings.scim.max_page_size,
        public_url=str(settings.server.public_url) if settings.server.public_url else None,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if upstream is not None:
            site.upstream = upstream
            yield
            return
        async with build_http_client(settings.modyo, modyo_transport) as http:
            site.upstream = ModyoClient(
                http, RetryPolicy(settings.retry), settings.modyo.max_in_flight
            )
            yield

    scim = Router(
        routes=[
            *UserEndpoints(site).routes(),
            *GroupEndpoints(site).routes(),
            *DiscoveryEndpoints(site).routes(),
        ]
    )
    scim_app: ASGIApp = scim
    if settings.idempotency.enabled:
        store = MemoryStore(settings.idempotency.max_entries, settings.idempotency.ttl_seconds)
        scim_app = IdempotencyMiddleware(scim, store, settings.server.max_body_bytes)
    tokens = [token.get_secret_value() for token in settings.scim.tokens]
    routes: list[Route | Mount] = [Route("/healthz", healthz, methods=["GET"])]
    if settings.server.metrics_enabled:
        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    scim_edge = BodyReader(BearerAuth(scim_app, tokens), settings.server)  # bodies read once
    routes.append(Mount(settings.server.base_path, app=scim_edge))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            SCIMException: _scim_error,
            UpstreamError: _upstream_error,
            PartialWrite: _partial_write,
            ValidationError: _validation_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )
    return RequestObserver(app, settings.server.base_path, settings.scim.request_deadline_seconds)


async def healthz(request: Request) -> Response:
    """Liveness for orchestrators: no authentication, no Modyo call."""
    return JSONResponse({"status": "ok"})


def _resource_of(request: Request) -> str:
    return "Group" if "/Groups" in request.url.path else "User"


async def _scim_error(request: Request, exc: Any) -> Response:
    return error_response(exc)


async def _upstream_error(request: Request, exc: Any) -> Response:
    return error_response(from_upstream(exc, resource=_resource_of(request)))


async def _partial_write(request: Request, exc: Any) -> Response:
    return error_response(exc.to_scim(_resource_of(request)))


async def _validation_error(request: Request, exc: Any) -> Response:
    return error_response(from_validation(exc))


async def _http_error(request: Request, exc: Any) -> Response:
    """Routing errors, in SCIM form: 404 for unknown endpoints, 405 with ``Allow``."""
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        detail = f"{request.method} is not allowed here; allowed: {allowed}"
        return error_response(MethodNotAllowed(detail=detail, headers=exc.headers))
    if exc.status_code == 404:
        return error_response(NotFoundException(detail=f"no SCIM endpoint at {request.url.path}"))
    return error_response(InternalError(detail=str(exc.detail)))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unexpected error", exc_info=exc)
    return error_response(InternalError(detail="internal error; the bridge's log has the details"))
