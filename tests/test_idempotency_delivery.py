"""How the idempotency cache hands a write's answer to its client (``_Client.deliver``):
without an event-loop pass once the disconnect watcher runs, since every pass waits behind
all the other ready requests (the ~5 ms p50 that writes lost to reads at concurrency 16,
docs/performance.md); a disconnect the server already holds still keeps the answer back."""

from __future__ import annotations

import asyncio
import gc

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.edge.idempotency import IdempotencyMiddleware
from bridge.store.answers import MemoryStore

SCOPE: Scope = {
    "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
    "scheme": "http", "path": "/scim/Users", "raw_path": b"/scim/Users", "root_path": "",
    "query_string": b"", "server": ("bridge.test", 80), "client": ("127.0.0.1", 5000),
    "headers": [(b"authorization", b"Bearer t"), (b"content-type", b"application/scim+json")],
}  # fmt: skip


def _app(*, awaits: bool, marks: list[str]) -> ASGIApp:
    """Answers 201; once it has answered, schedules a callback for the next loop pass."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if awaits:  # as a Modyo call does: the watcher starts meanwhile
            await asyncio.sleep(0)
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        asyncio.get_running_loop().call_soon(marks.append, "next loop pass")

    return app


def _connected(body: bytes, stay: asyncio.Event) -> Receive:
    """A client that sends ``body`` and stays connected until ``stay`` is set."""
    messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await stay.wait()  # unguarded: a client that stays until the test lets it go
        return {"type": "http.disconnect"}

    return receive


async def test_an_answer_is_delivered_without_waiting_for_another_loop_pass() -> None:
    marks: list[str] = []

    async def send(message: Message) -> None:
        marks.append(message["type"])

    middleware = IdempotencyMiddleware(_app(awaits=True, marks=marks), MemoryStore(10, 60))
    await middleware(SCOPE, _connected(b"{}", asyncio.Event()), send)
    await asyncio.sleep(0)
    assert marks == ["http.response.start", "http.response.body", "next loop pass"]


async def test_a_disconnect_already_received_keeps_the_answer_back_even_from_an_instant_app() -> (
    None
):
    """The app answers without awaiting anything, so the watcher has not started: it gets one
    pass to read the disconnect the server already holds, and the answer is kept, not sent."""
    marks: list[str] = []
    messages: list[Message] = [
        {"type": "http.request", "body": b"{}", "more_body": False},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        marks.append(message["type"])

    store = MemoryStore(10, 60)
    middleware = IdempotencyMiddleware(_app(awaits=False, marks=marks), store)
    await middleware(SCOPE, receive, send)
    assert "http.response.start" not in marks
    assert len(store) == 1  # kept for the retry


async def test_a_write_leaves_no_reference_cycle_for_the_garbage_collector() -> None:
    """The disconnect watcher is cancelled once the answer is out; a cancelled task keeps its
    ``CancelledError``, whose traceback holds the watcher's frame and so its client. A client
    still holding the task made a cycle per write (task, frames, the request's context) that
    only the garbage collector could free (docs/performance.md, Costs the code avoids)."""
    stay = asyncio.Event()
    middleware = IdempotencyMiddleware(_app(awaits=True, marks=[]), MemoryStore(10, 60))

    async def write(number: int) -> None:
        async def send(message: Message) -> None:
            pass

        await middleware(SCOPE, _connected(b'{"n": %d}' % number, stay), send)

    gc.collect()
    gc.disable()
    try:
        for number in range(20):
            await write(number)
        await asyncio.sleep(0)  # the cancelled watchers end
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [kind for kind in map(type, gc.garbage) if kind.__module__.startswith("bridge.")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []
