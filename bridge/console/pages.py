"""The console's pages and form actions (docs/operator/console.md): sign-in and sign-out,
Overview, Activity (with an event's page and the CSV and JSON-lines export), Errors, Charts,
Configuration, and the Safety slot. Every page but sign-in needs a session; every form post
carries a CSRF token; nothing here ever holds an admin or SCIM token's value.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route, Router

from bridge.config import Settings
from bridge.console import charts, csrf, events, provenance, status
from bridge.console.forms import FormRefused, read_form
from bridge.console.headers import SecurityHeaders
from bridge.console.session import COOKIE, Session, Sessions
from bridge.edge.readiness import Readiness
from bridge.journal.export import COLUMNS, _cell, row
from bridge.journal.history import EventFilter, History, HistoryUnavailable
from bridge.scim.auth import FailureThrottle

log = logging.getLogger("bridge.console")
PREFIX: Final = "/console"
HERE: Final = Path(__file__).parent
REPLICA_MINUTES: Final = 10
"""The Overview lists the replicas whose events the history holds from these last minutes."""


class SafetyPanel(Protocol):
    """The slot of the dry-run plan and the brake (the Safety page): rows to show, and the
    brake's release, a form action like any other (CSRF-checked, signed in)."""

    async def summary(self) -> list[tuple[str, str]]: ...

    async def release(self, admin: str) -> str: ...


def console_routes(
    settings: Settings,
    history: History,
    readiness: Readiness | None = None,
    safety: SafetyPanel | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> list[BaseRoute]:
    """What the internal listener mounts (``bridge.edge.app.internal_app``): ``/`` saying where
    the console is, or that it is off (no ``admin.tokens``), and the console under
    :data:`PREFIX`."""
    if not settings.admin.tokens:
        return [Route("/", _console_off, methods=["GET"])]
    console = Console(settings, history, readiness, safety, environ, clock)
    return [Route("/", _to_console, methods=["GET"]), Mount(PREFIX, app=console.app())]


async def _to_console(request: Request) -> Response:
    return RedirectResponse(PREFIX + "/", 303)


async def _console_off(request: Request) -> Response:
    return Response(
        "The admin console is off: set admin.tokens to turn it on (docs/operator/console.md).\n",
        media_type="text/plain",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


class Console:
    def __init__(
        self,
        settings: Settings,
        history: History,
        readiness: Readiness | None,
        safety: SafetyPanel | None,
        environ: Mapping[str, str] | None,
        clock: Callable[[], float],
    ) -> None:
        admin = settings.admin
        self.settings = settings
        self.history = history
        self.readiness = readiness
        self.safety = safety
        self.sessions = Sessions(admin.tokens, admin.session_minutes, clock)
        every = b"".join(
            hashlib.sha256(token.get_secret_value().encode()).digest()
            for _, token in sorted(admin.tokens.items())
        )
        self.sign_in = csrf.SignInTokens(hmac.new(every, b"sign-in", hashlib.sha256).digest())
        self.throttle = FailureThrottle(admin.sign_in_failures_per_minute, 10_000)
        self.most = settings.journal.history_size
        self.started = time.monotonic()
        self.configuration = provenance.rows(settings, environ)
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        self.templates.filters["duration"] = status.duration
        self.templates.filters["pretty"] = lambda value: json.dumps(
            value, indent=2, ensure_ascii=False, sort_keys=True
        )

    def app(self) -> SecurityHeaders:
        routes = [
            Route("/", self.overview, methods=["GET"]),
            Route("/sign-in", self.sign_in_page, methods=["GET"]),
            Route("/sign-in", self.sign_in_post, methods=["POST"]),
            Route("/sign-out", self.sign_out, methods=["POST"]),
            Route("/activity", self.activity, methods=["GET"]),
            Route("/activity.csv", self.export_csv, methods=["GET"]),
            Route("/activity.jsonl", self.export_jsonl, methods=["GET"]),
            Route("/events/{request_id}", self.event, methods=["GET"]),
            Route("/errors", self.errors, methods=["GET"]),
            Route("/charts", self.charts, methods=["GET"]),
            Route("/configuration", self.configuration_page, methods=["GET"]),
            Route("/safety", self.safety_page, methods=["GET"]),
            Route("/safety/release", self.safety_release, methods=["POST"]),
            Route("/console.css", self.stylesheet, methods=["GET"]),
        ]
        return SecurityHeaders(Router(routes=routes, redirect_slashes=False))

    # -- rendering and sessions

    def render(
        self,
        request: Request,
        name: str,
        session: Session | None,
        status_code: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        html = self.templates.get_template(name).render(
            prefix=PREFIX,
            admin=session.admin if session else None,
            csrf_token=csrf.for_session(session) if session else "",
            page=name.removesuffix(".html"),
            **values,
        )
        return HTMLResponse(html, status_code)

    def session(self, request: Request) -> Session | None:
        return self.sessions.check(request.cookies.get(COOKIE))

    def _secure(self, request: Request) -> bool:
        return request.url.scheme == "https"

    def _to_sign_in(self) -> Response:
        return RedirectResponse(PREFIX + "/sign-in", 303)

    # -- sign-in, sign-out

    async def sign_in_page(
        self, request: Request, problem: str | None = None, status_code: int = 200
    ) -> Response:
        if problem is None and self.session(request) is not None:
            return RedirectResponse(PREFIX + "/", 303)
        cookie, token = self.sign_in.issue()
        response = self.render(
            request, "sign_in.html", None, status_code, sign_in_token=token, problem=problem
        )
        response.set_cookie(
            csrf.SIGN_IN_COOKIE,
            cookie,
            max_age=3600,
            path=PREFIX + "/sign-in",
            secure=self._secure(request),
            httponly=True,
            samesite="strict",
        )
        return response

    async def sign_in_post(self, request: Request) -> Response:
        client = request.client.host if request.client else None
        wait = self.throttle.retry_after(client)
        if wait is not None:
            response = await self.sign_in_page(
                request, "Too many failed sign-ins from your address: wait a minute.", 429
            )
            response.headers["Retry-After"] = str(max(1, int(wait) + 1))
            return response
        try:
            form = await read_form(request)
        except FormRefused as refused:
            return Response(refused.detail, refused.status, media_type="text/plain")
        if not self.sign_in.valid(request.cookies.get(csrf.SIGN_IN_COOKIE), form.get(csrf.FIELD)):
            log.warning("console sign-in refused: missing or wrong CSRF token")
            return await self.sign_in_page(
                request, "The form expired or did not come from this console: try again.", 403
            )
        admin = self.sessions.admin_for(form.get("token", ""))
        if admin is None:
            self.throttle.failed(client)
            log.warning("console sign-in refused: not an admin token", extra={"client": client})
            return await self.sign_in_page(request, "That is not an admin token.", 401)
        cookie, _ = self.sessions.issue(admin)
        log.info("console sign-in: %s", admin, extra={"admin": admin})
        response = RedirectResponse(PREFIX + "/", 303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=self.sessions.seconds,
            path=PREFIX,
            secure=self._secure(request),
            httponly=True,
            samesite="strict",
        )
        response.delete_cookie(csrf.SIGN_IN_COOKIE, path=PREFIX + "/sign-in")
        return response

    async def _checked_post(self, request: Request) -> tuple[Session | None, Response | None]:
        """The session of a signed-in form post whose CSRF token is right, or the answer."""
        session = self.session(request)
        if session is None:
            return None, self._to_sign_in()
        try:
            form = await read_form(request)
        except FormRefused as refused:
            return None, Response(refused.detail, refused.status, media_type="text/plain")
        if not csrf.session_valid(session, form.get(csrf.FIELD)):
            log.warning(
                "console form refused: missing or wrong CSRF token", extra={"admin": session.admin}
            )
            return None, self.render(
                request,
                "message.html",
                session,
                403,
                title="Refused",
                message="The form did not carry this session's CSRF token: reload and retry.",
            )
        return session, None

    async def sign_out(self, request: Request) -> Response:
        session, refused = await self._checked_post(request)
        if refused is not None:
            return refused
        assert session is not None
        log.info("console sign-out: %s", session.admin, extra={"admin": session.admin})
        response = self._to_sign_in()
        response.delete_cookie(
            COOKIE, path=PREFIX, secure=self._secure(request), httponly=True, samesite="strict"
        )
        return response

    # -- pages

    async def overview(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self._to_sign_in()
        facts = status.overview(self.settings, self.readiness, self.started, await self._replicas())
        return self.render(request, "overview.html", session, facts=facts)

    async def _replicas(self) -> list[str]:
        since = datetime.now(UTC) - timedelta(minutes=REPLICA_MINUTES)
        seen: set[str] = set()
        try:
            async for event in events.scan(self.history, EventFilter(since=since), 1000):
                replica = event.get("replica")
                if isinstance(replica, str) and len(seen) < 64:
                    seen.add(replica)
        except HistoryUnavailable:
            return []
        return sorted(seen)

    async def activity(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self._to_sign_in()
        query = events.parse(request.query_params)
        problem = None
        found: list[dict[str, Any]] = []
        cursor = None
        try:
            page = await self.history.query(
                query.where(), self.settings.admin.page_size, query.cursor
            )
            found, cursor = page.events, page.cursor
        except ValueError:
            problem = "That page link is not valid any more: showing the newest events."
            page = await self.history.query(query.where(), self.settings.admin.page_size)
            found, cursor = page.events, page.cursor
        except HistoryUnavailable:
            problem = "The shared history did not answer: try again in a moment."
        return self.render(
            request,
            "activity.html",
            session,
            query=query,
            events=found,
            problem=problem,
            outcomes=events.OUTCOMES,
            resource_types=events.RESOURCE_TYPES,
            next_page=f"?{urlencode(query.params(cursor))}" if cursor else None,
            filters=urlencode(query.params()),
        )

    async def event(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self._to_sign_in()
        request_id = request.path_params["request_id"]
        found = None
        if events.REQUEST_ID.fullmatch(request_id):
            try:
                found = await events.find(self.history, request_id, self.most)
            except HistoryUnavailable:
                found = None
        if found is None:
            return self.render(
                request,
                "message.html",
                session,
                404,
                title="No such event",
                message="No event with that request id is in the recent history.",
            )
        return self.render(request, "event.html", session, event=found)

    async def export_csv(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self._to_sign_in()
        where = events.parse(request.query_params).where()
        log.info("console export (csv): %s", session.admin, extra={"admin": session.admin})

        async def lines() -> AsyncIterator[str]:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(COLUMNS)
            async for event in events.scan(self.history, where, self.most):
                writer.writerow([_cell(value) for value in row(event)])
                if buffer.tell() > 65_536:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
            yield buffer.getvalue()

        return StreamingResponse(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{_export_name("csv")}"'},
        )

    async def export_jsonl(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self._to_sign_in()
        where = events.parse(request.query_params).where()
        log.info("console export (jsonl): %s", session.admin, extra={"admin": session.admin})

        async def lines() -> AsyncIterator[bytes]:
            async for event in events.scan(self.history, where, self.most):
                yield json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

        return StreamingResponse(
            lines(),
            media_type="application/jsonl",
            headers={"Content-Disposition": f'attachment; filename="{_export_name("jsonl")}"'},
        )

    async def errors(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self._to_sign_in()
        problem = None
        groups: list[events.ErrorGroup] = []
        left_out = 0
        try:
            groups, left_out = await events.error_groups(self.history, self.most)
        except HistoryUnavailable:
            problem = "The shared history did not answer: try again in a moment."
        return self.render(
            request, "errors.html", session, groups=groups, left_out=left_out, problem=problem
        )

    async def charts(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self._to_sign_in()
        hours = self.settings.admin.chart_hours
        since = datetime.now(UTC) - timedelta(hours=hours)
        problem = None
        try:
            start, series = await charts.per_minute(
                events.scan(self.history, EventFilter(since=since), self.most), hours
            )
        except HistoryUnavailable:
            problem = "The shared history did not answer: try again in a moment."
            start, series = await charts.per_minute(_nothing(), hours)
        drawn = [
            (one, charts.svg(one, start, css))
            for one, css in zip(series, ("requests", "failures", "retries"), strict=True)
        ]
        return self.render(
            request, "charts.html", session, charts=drawn, hours=hours, problem=problem
        )

    async def configuration_page(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self._to_sign_in()
        return self.render(request, "configuration.html", session, rows=self.configuration)

    async def safety_page(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self._to_sign_in()
        rows = await self.safety.summary() if self.safety is not None else None
        return self.render(request, "safety.html", session, rows=rows, message=None)

    async def safety_release(self, request: Request) -> Response:
        session, refused = await self._checked_post(request)
        if refused is not None:
            return refused
        assert session is not None
        if self.safety is None:
            return self.render(
                request,
                "message.html",
                session,
                404,
                title="Not available",
                message="This bridge has no brake to release.",
            )
        log.warning("console: brake released by %s", session.admin, extra={"admin": session.admin})
        message = await self.safety.release(session.admin)
        rows = await self.safety.summary()
        return self.render(request, "safety.html", session, rows=rows, message=message)

    async def stylesheet(self, request: Request) -> Response:
        return FileResponse(HERE / "static" / "console.css", media_type="text/css")


async def _nothing() -> AsyncIterator[dict[str, Any]]:
    return
    yield


def _export_name(extension: str) -> str:
    return f"scim-bridge-events-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{extension}"
