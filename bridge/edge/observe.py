"""Outermost ASGI middleware: request id, deadline, access log, metrics, and the one
last-resort error path (as ``starlette/middleware/errors.py`` is for Starlette): anything
unexpected is logged once, here, and answered as a SCIM 500 carrying the request id, so an
admin can find the log line; a request slower than its deadline is answered 503.

The access line holds what an SRE follows a request by: its id (every other line logged while
serving it carries the same one, ``bridge.logs.RequestContext``; the bridge always makes its
own, and keeps a client's ``X-Request-Id`` beside it as ``client_request_id``), the client
(after a trusted proxy's ``X-Forwarded-For``), the name of the SCIM token it presented, the
SCIM operation and resource, the status, and the Modyo calls and retries it cost. Metric
labels come from fixed sets only (``bridge.metrics.method_label``)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from typing import Final

from scim2_models import SCIMException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.deadline import deadline_in
from bridge.edge.errors import InternalError
from bridge.metrics import SCIM_LATENCY, SCIM_REQUESTS, method_label
from bridge.request_state import RequestState, serving
from bridge.scim.errors import UpstreamUnavailable, error_response

log = logging.getLogger("bridge.http")
GRACE_SECONDS: Final = 1.0
"""After the deadline, upstream calls stop by themselves; this is the backstop beyond it."""
_SAFE_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._-]{1,64}")
UNROUTED: Final = "unrouted"
MAX_LOGGED_PATH: Final = 512
"""Characters of a path the access log keeps (a request line may hold 8 KB)."""
MAX_ERROR_BODY: Final = 16_384
"""An error answer longer than this is not read for its reason (the bridge's are short)."""
MAX_REASON: Final = 512
"""Characters of an error's detail the access line keeps."""


class RequestObserver:
    def __init__(self, app: ASGIApp, deadline_seconds: float) -> None:
        self.app = app
        self.deadline_seconds = deadline_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = os.urandom(8).hex()  # 64 bits of the OS's CSPRNG, as uuid4 draws
        status = 0
        error_body = bytearray()

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            elif status >= 400 and message["type"] == "http.response.body":
                if len(error_body) <= MAX_ERROR_BODY:
                    error_body.extend(message.get("body", b"")[: MAX_ERROR_BODY + 1])
                if not message.get("more_body", False):
                    _read_error(bytes(error_body), state)
            await send(message)

        with serving(request_id) as state:
            state.client_request_id = _client_request_id(scope)
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
                # Only the server cancels a request: it is going away (a second Ctrl-C, or
                # its shutdown timeout). Entra gets a 503 to retry elsewhere or later; the
                # server layer (bridge/edge/protocols.py) then ends the task quietly.
                if not status:
                    leaving = UpstreamUnavailable(
                        detail="the server is shutting down; retry later",
                        headers={"Retry-After": "5"},
                    )
                    await error_response(leaving)(scope, receive, observed_send)
                raise
            except Exception:
                log.exception("unhandled error")
                if not status:
                    failure = InternalError(
                        detail=f"internal error; the bridge's log has the details under "
                        f"request id {request_id}"
                    )
                    await error_response(failure)(scope, receive, observed_send)
            finally:
                elapsed = time.perf_counter() - started
                operation = state.operation or UNROUTED
                method = method_label(scope["method"])
                SCIM_REQUESTS(method, operation, str(status)).inc()
                SCIM_LATENCY(method, operation).observe(elapsed)
                client = scope.get("client")
                fields = {
                    "client": client[0] if client else None,
                    "client_request_id": state.client_request_id,
                    "token": state.token_name,
                    "method": method,
                    "path": scope["path"][:MAX_LOGGED_PATH],
                    "operation": operation,
                    "resource_id": state.resource_id,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "upstream_calls": state.upstream_calls,
                    "upstream_retries": state.upstream_retries,
                    "reason": state.error_detail,
                }
                if status >= 400:  # an error answer, with its reason
                    log.warning("request", extra=fields)
                else:
                    log.info("request", extra=fields)


def _read_error(body: bytes, state: RequestState) -> None:
    """The ``scimType`` and ``detail`` of a SCIM error answer (RFC 7644 §3.12), for the access
    line and the journal; a body that is not one leaves them unset."""
    if len(body) > MAX_ERROR_BODY:
        return
    try:
        error = json.loads(body)
    except ValueError:
        return
    if isinstance(error, dict):
        detail, scim_type = error.get("detail"), error.get("scimType")
        state.error_detail = detail[:MAX_REASON] if isinstance(detail, str) else None
        state.error_type = scim_type[:64] if isinstance(scim_type, str) else None


def _client_request_id(scope: Scope) -> str | None:
    """The client's ``X-Request-Id`` when it is a plain token (its own correlation id, for
    the access log); anything else is dropped."""
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _SAFE_REQUEST_ID.fullmatch(value):
            return str(value.decode())
    return None
