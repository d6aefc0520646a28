"""The journal in the request flow: ASGI middleware inside authentication that opens a SCIM
write's record, lets the endpoints fill it (``scope["state"]["journal"]``), and emits its
event once the answer is known: every write, and a read only when it failed
(docs/reference/journal.md, "Outcomes").

The outcome comes from what the request did: ``planned`` or ``held`` when it says so
(``RequestState.withheld``), ``replayed`` when the idempotency cache answered it, ``refused``
for a SCIM error below 500 other than 429 (the client must change its request), ``failed``
for a 5xx or 429 answer or no answer at all (the bridge or Modyo could not do it),
``applied`` otherwise. The SCIM error's ``scimType`` and ``detail`` are read by the
observer from the answer (``bridge.edge.observe``).

An error raised inside it is answered here, by its handler, so that the event has the answer's
status: the work of an exception middleware, done only when there is an exception (a layer of
its own cost every journaled request a pass through it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge import deadline, request_state
from bridge.journal.event import Outcome
from bridge.journal.journal import Journal
from bridge.journal.record import JournalRecord
from bridge.metrics import JOURNAL_DROPPED
from bridge.request_state import RequestState

log = logging.getLogger("bridge.journal")
WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
STATE_KEY: Final = "journal"
_MARKED: Final = frozenset({"planned", "held"})
_VERBS: Final = {"POST": "create", "PATCH": "patch", "PUT": "replace", "DELETE": "delete"}
"""A replayed write's operation, by method (its resource known from the kept answer)."""


def record_of(scope: MutableMapping[str, Any]) -> JournalRecord | None:
    """The record of the request being served, if the journal is on and it is a write."""
    state = scope.get("state")
    record = state.get(STATE_KEY) if isinstance(state, dict) else None
    return record if isinstance(record, JournalRecord) else None


Handler = Callable[[Request, Exception], Awaitable[Response]]
"""An error's answer, as Starlette's exception handlers take it (``bridge.edge.app.HANDLERS``)."""


class JournalMiddleware:
    def __init__(
        self, app: ASGIApp, journal: Journal, handlers: Mapping[Any, Handler] | None = None
    ) -> None:
        """``handlers``: the answer to an error, by its class (or an HTTPException's status),
        as Starlette's ``ExceptionMiddleware`` takes them."""
        self.app = app
        self.journal = journal
        self.handlers: dict[Any, Handler] = dict(handlers or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = request_state.current()
        if scope["type"] != "http" or state is None:
            await self.app(scope, receive, send)
            return
        record = None
        if scope["method"] in WRITE_METHODS and not str(scope["path"]).endswith("/.search"):
            record = self._open(state, str(scope["method"]))
            scope.setdefault("state", {})[STATE_KEY] = record
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        interrupted: str | None = None
        try:
            try:
                await self.app(scope, receive, sending)
            except Exception as exc:
                handler = None if status else self._handler(exc)
                if handler is None:
                    raise
                response = await handler(Request(scope, receive, sending), exc)
                await response(scope, receive, sending)
                exc.__traceback__ = None  # a reused instance would grow its traceback
        except asyncio.CancelledError:
            left = deadline.remaining()
            interrupted = (
                "the request did not complete within its deadline"
                if left is not None and left <= 0
                else "the request was cancelled (the server is shutting down)"
            )
            raise
        except Exception as exc:
            interrupted = f"internal error ({type(exc).__name__}); the bridge's log has it"
            raise
        finally:
            try:
                self._finish(state, record, str(scope["method"]), status, interrupted)
            except Exception:  # the journal is a witness: it never fails a request
                JOURNAL_DROPPED("build_error").inc()
                log.exception("a journal event could not be built")

    def _handler(self, exc: Exception) -> Handler | None:
        """The handler of ``exc``, as Starlette looks it up: an HTTPException's status, then
        the nearest class."""
        if isinstance(exc, HTTPException) and exc.status_code in self.handlers:
            return self.handlers[exc.status_code]
        for kind in type(exc).__mro__:
            if kind in self.handlers:
                return self.handlers[kind]
        return None

    def _open(self, state: RequestState, method: str) -> JournalRecord:
        return self.journal.record(
            request_id=state.request_id,
            operation=state.operation or method.lower(),
            resource_type=state.resource_type,
            client_request_id=state.client_request_id,
            token=state.token_name,
        )

    def _finish(
        self,
        state: RequestState,
        record: JournalRecord | None,
        method: str,
        status: int,
        interrupted: str | None,
    ) -> None:
        """Emit the event (never raising into the request: the journal is a witness)."""
        if not status and interrupted is None and state.undelivered_status is not None:
            status = state.undelivered_status  # done; its client left before the answer
        failed = interrupted is not None or not status or status >= 500 or status == 429
        if record is None:  # a read: journaled when it failed
            if not (failed or status >= 400):
                return
            record = self._open(state, method)
        if state.operation is not None:
            record.routed(state.operation, state.resource_type)
        elif state.resource_type is not None and method in _VERBS:  # answered before routing
            operation = f"{state.resource_type.lower()}s.{_VERBS[method]}"
            record.routed(operation, state.resource_type)
        if state.resource_id is not None:
            record.identify(id=state.resource_id)
        record.add_upstream_calls(state.modyo_calls, state.modyo_calls_left_out)
        if (withheld := withheld_outcome(record, state)) is not None:
            event = record.finish_wire(withheld, status=status or None)
        elif state.replayed:
            event = record.finish_wire("replayed", status=status or None)
        elif failed:
            reason = interrupted or state.error_detail or f"answered {status or 'nothing'}"
            event = record.finish_wire("failed", status=status or None, reason=reason)
            state.error_detail = event["reason"]
        elif status >= 400:
            event = record.finish_wire(
                "refused",
                status=status,
                scim_type=state.error_type,
                detail=state.error_detail or f"answered {status}",
            )
            state.error_detail = event["error"]["detail"]
        else:
            event = record.finish_wire("applied", status=status)
        self.journal.emit_wire(event)


def withheld_outcome(record: JournalRecord, state: RequestState | None) -> Outcome | None:
    """A request whose writes the safety rails kept from Modyo (``RequestState.withheld``):
    its outcome, ``planned`` or ``held``, with the calls it would have made added to
    ``record`` (no attempt made); None for any other request."""
    if state is None or state.withheld not in _MARKED:
        return None
    outcome: Outcome = "planned" if state.withheld == "planned" else "held"
    for method, path in state.withheld_calls:
        record.add_modyo_call(method, path, outcome, 1, 0)
    return outcome
