"""``python -m bench.phases OUT``: ``scim-bridge serve`` (one worker) timing where each
request's wall time goes, written to ``OUT`` (JSON) when the process is stopped (SIGTERM).

Phases of a request, from its arrival at the server layer to its last body byte sent:
``pre`` (until the first Modyo call starts), ``upstream`` (the Modyo exchanges), ``post``
(from the last Modyo answer), ``store`` (the part of ``pre`` and ``post`` spent in calls to
the shared idempotency store, Redis) and ``store_calls`` (how many). Wall time, not CPU: a
phase includes the event-loop passes it waits for, which is where concurrency shows.
Differences between setups in one run are what to read; the instrumentation costs a few µs a
request.
"""

from __future__ import annotations

import contextvars
import json
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

T = TypeVar("T")
Marks = list[tuple[str, float]]
_CURRENT: contextvars.ContextVar[Marks | None] = contextvars.ContextVar("phases", default=None)
_records: dict[str, list[Marks]] = defaultdict(list)


def _mark(name: str) -> None:
    marks = _CURRENT.get()
    if marks is not None:
        marks.append((name, time.perf_counter()))


def _timed(app: ASGIApp) -> ASGIApp:
    async def timed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        marks: Marks = [("start", time.perf_counter())]
        _CURRENT.set(marks)

        async def timed_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                marks.append(("end", time.perf_counter()))

        await app(scope, receive, timed_send)
        path = str(scope["path"])
        kind = (
            f"{scope['method']} {path.rsplit('/', 1)[0] + '/{id}' if path.count('/') > 2 else path}"
        )
        _records[kind].append(marks)

    return timed


def _between(marks: Marks, first: str, then: str) -> float:
    starts = [t for name, t in marks if name == first]
    ends = [t for name, t in marks if name == then]
    return sum(end - start for start, end in zip(starts, ends, strict=False))


def phases(marks: Marks) -> dict[str, float] | None:
    """One request's phases in ms, or None if it did not complete or made no Modyo call.
    What runs after the answer was sent (a store step) costs the client nothing: left out."""
    names = [name for name, _ in marks]
    if "end" not in names:
        return None
    marks = marks[: names.index("end") + 1]
    calls = [t for name, t in marks if name in ("modyo", "modyo_end")]
    if not calls:
        return None
    start, end = marks[0][1], marks[-1][1]
    return {
        "pre": (calls[0] - start) * 1000,
        "upstream": _between(marks, "modyo", "modyo_end") * 1000,
        "post": (end - calls[-1]) * 1000,
        "store": _between(marks, "store", "store_end") * 1000,
        "store_calls": sum(1 for name, _ in marks if name == "store"),
        "total": (end - start) * 1000,
    }


def _instrument() -> None:
    from bridge.run import server
    from bridge.store import redis_link

    request = httpx.AsyncClient.request

    async def timed_request(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> httpx.Response:
        _mark("modyo")
        try:
            return await request(self, *args, **kwargs)
        finally:
            _mark("modyo_end")

    httpx.AsyncClient.request = timed_request  # type: ignore[method-assign]
    call = redis_link.RedisLink.call

    async def timed_call(
        self: redis_link.RedisLink, what: str, step: Callable[[], Awaitable[T]], **kwargs: Any
    ) -> T:
        _mark("store")
        try:
            return await call(self, what, step, **kwargs)
        finally:
            _mark("store_end")

    redis_link.RedisLink.call = timed_call  # type: ignore[method-assign, assignment]
    config = server.server_config
    server.server_config = lambda app, settings: config(_timed(app), settings)  # type: ignore[assignment]


def main() -> None:
    out = sys.argv[1]

    dumped = False

    def dump(*_: object) -> None:
        nonlocal dumped
        if dumped:
            return
        dumped = True
        summary = {kind: [p for m in runs if (p := phases(m))] for kind, runs in _records.items()}
        with open(out, "w") as file:
            json.dump(summary, file)
        sys.exit(0)

    signal.signal(signal.SIGTERM, dump)  # uvicorn restores it and raises SIGTERM once stopped
    _instrument()
    from bridge.run.cli import main as bridge_main

    try:
        bridge_main(["serve"])
    finally:
        dump()


if __name__ == "__main__":
    main()
