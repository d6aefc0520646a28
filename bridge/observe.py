"""Outermost ASGI middleware: request id, deadline, access log, metrics, and the last guard
that turns anything unexpected (or too slow) into a SCIM error instead of a hang or a trace."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Final

from scim2_models import SCIMException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.deadline import deadline_in
from bridge.metrics import SCIM_LATENCY, SCIM_REQUESTS
from bridge.scim.errors import InternalError, UpstreamUnavailable, error_response

log = logging.getLogger("bridge.http")
GRACE_SECONDS: Final = 1.0
"""After the deadline, upstream calls stop by themselves; this is the backstop beyond it."""
_SAFE_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_RESOURCES: Final = frozenset(
    {"Users", "Groups", "Schemas", "ResourceTypes", "ServiceProviderConfig", "healthz", "metrics"}
)


class RequestObserver:
    def __init__(self, app: ASGIApp, base_path: str, deadline_seconds: float) -> None:
        self.app = app
        self.base_path = base_path
        self.deadline_seconds = deadline_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        status = 0

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            with deadline_in(self.deadline_seconds):
                async with asyncio.timeout(self.deadline_seconds + GRACE_SECONDS):
                    await self.app(scope, receive, observed_send)
        except TimeoutError:
            if not status:
                late: SCIMException = UpstreamUnavailable(
                    detail="the request did not complete within its deadline; retry later",
                    headers={"Retry-After": "5"},
                )
                await error_response(late)(scope, receive, observed_send)
        except asyncio.CancelledError:
            # Only the server cancels a request: it is going away (a second Ctrl-C, or its
            # shutdown timeout). Entra gets a 503 to retry elsewhere or later; the server
            # layer (bridge/server.py) then ends the task quietly.
            if not status:
                leaving = UpstreamUnavailable(
                    detail="the server is shutting down; retry later",
                    headers={"Retry-After": "5"},
                )
                await error_response(leaving)(scope, receive, observed_send)
            raise
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if not status:
                failure = InternalError(detail=f"internal error (request id {request_id})")
                await error_response(failure)(scope, receive, observed_send)
        finally:
            elapsed = time.perf_counter() - started
            resource = self._resource(scope["path"])
            SCIM_REQUESTS(scope["method"], resource, str(status)).inc()
            SCIM_LATENCY(scope["method"], resource).observe(elapsed)
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )

    def _resource(self, path: str) -> str:
        relative = path[len(self.base_path) :] if path.startswith(self.base_path) else path
        first = relative.strip("/").split("/", 1)[0]
        return first if first in _RESOURCES else "other"


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _SAFE_REQUEST_ID.fullmatch(value):
            return str(value.decode())
    return uuid.uuid4().hex[:16]
