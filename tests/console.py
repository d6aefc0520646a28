"""The admin console under test: settings with admin tokens, journal events built by the real
builder (``JournalRecord``), a history holding them, and the console's internal app."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.types import ASGIApp

from bridge.config import Settings
from bridge.console import console_routes
from bridge.edge.app import internal_app
from bridge.edge.readiness import Readiness
from bridge.journal.history import MemoryHistory
from bridge.journal.privacy import Privacy
from bridge.journal.record import JournalRecord
from tests.harness import make_settings
from tests.servers import uvicorn_serving

ADMIN_TOKEN = "admin-console-token-0123456789-abcdefgh"
ADMIN_NAME = "ops-alice"
OTHER_ADMIN_TOKEN = "second-admin-token-9876543210-zyxwvuts"


def console_settings(**sections: dict[str, Any]) -> Settings:
    sections.setdefault("admin", {})
    sections["admin"] = {"tokens": {ADMIN_NAME: ADMIN_TOKEN}, **sections["admin"]}
    return make_settings(**sections)


def journal_event(
    request_id: str,
    operation: str = "users.create",
    outcome: str = "applied",
    *,
    name: str = "alice@contoso.com",
    minutes_ago: float = 1.0,
    status: int | None = 201,
    detail: str | None = None,
    reason: str | None = None,
    retries: int = 0,
    replica: str = "pod-a",
) -> dict[str, Any]:
    """An event as the journal writes it, with the seal's replica and sequence number."""
    moment = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    resource_type = "Group" if operation.startswith("groups") else "User"
    record = JournalRecord(
        Privacy("full", None),
        request_id=request_id,
        operation=operation,
        resource_type=resource_type,
        token="entra",
        now=lambda: moment,
    )
    record.identify(id="123", name=name, external_id="ext-" + request_id)
    record.add_change("userName" if resource_type == "User" else "displayName", None, name)
    record.add_change("active", True, False, op="replace")
    record.add_modyo_call("POST", "/api/admin/users", status or 503, 1, 12.0)
    for attempt in range(2, retries + 2):
        record.add_modyo_call("POST", "/api/admin/users", 201, attempt, 8.0)
    explained: dict[str, Any] = {}
    if outcome == "refused":
        explained = {"detail": detail or "userName is already taken", "scim_type": "uniqueness"}
    elif outcome == "failed":
        explained = {"reason": reason or "modyo_unreachable"}
    event = record.finish(outcome, status=status, **explained).wire()  # type: ignore[arg-type]
    return event | {"replica": replica, "seq": 1}


def history_of(*events: Mapping[str, Any]) -> MemoryHistory:
    """A history holding ``events``, the first given the oldest."""
    history = MemoryHistory(1000)
    for event in events:
        history.add(event)
    return history


def console_app(
    settings: Settings, history: MemoryHistory, readiness: Readiness | None = None
) -> ASGIApp:
    return internal_app(settings, console_routes(settings, history, readiness))


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "the page has a form with a CSRF token"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, token: str = ADMIN_TOKEN) -> httpx.Response:
    """The sign-in a browser makes: the form (its CSRF cookie and field), then the post."""
    form = await client.get("/console/sign-in")
    return await client.post("/console/sign-in", data={"csrf": csrf_of(form.text), "token": token})


@contextlib.contextmanager
def served(*apps: ASGIApp) -> Iterator[list[int]]:
    """``apps`` under uvicorn on 127.0.0.1 free ports, in an event loop of their own thread
    (the browser's driver blocks): yields their ports; stopped on exit."""
    handed: queue.Queue[tuple[list[int], Callable[[], None]] | BaseException] = queue.Queue()

    async def serve() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        async with contextlib.AsyncExitStack() as stack:
            ports = [await stack.enter_async_context(uvicorn_serving(app)) for app in apps]

            def stop() -> None:
                loop.call_soon_threadsafe(stopping.set)

            handed.put((ports, stop))
            async with asyncio.timeout(SERVED_SECONDS):  # the hang guard of a whole module
                await stopping.wait()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # handed to the test, which fails with it
            handed.put(exc)

    thread = threading.Thread(target=run, name="console servers", daemon=True)
    thread.start()
    started = handed.get(timeout=60)
    if isinstance(started, BaseException):
        raise started
    ports, stop = started
    try:
        yield ports
    finally:
        stop()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the servers did not stop"
        if not handed.empty():
            failure = handed.get()
            if isinstance(failure, BaseException):
                raise failure


SERVED_SECONDS = 600.0
