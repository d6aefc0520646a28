"""The app's own CPU per write, in process: ``python -m bench.app_cpu [--requests N]
[--rounds R] [--profile-out FILE]``.

No sockets and no server: ASGI messages handed straight to the app built by
``bridge.edge.app.create_app`` (the fake Modyo under httpx in the same process, the settings
``python -m bench`` gives the bridge otherwise), so the figure is the app's work plus the fake's,
which is the same in every variant. As ``scim-bridge serve`` runs it: uvloop, start-up objects
frozen out of the garbage collector and its young-generation threshold raised
(``bridge.run.server.settle_heap``). Each round measures a user create and a user PATCH with
the idempotency cache on and off, in alternating order; each figure is the least over the
rounds (disturbance only adds CPU). docs/performance.md, "The latest figures", quotes it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any

from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp, Message

from bench.load import PATCH, user_body
from bridge.config import Settings
from bridge.edge.app import create_app
from bridge.edge.readiness import Readiness
from bridge.modyo.fake import FakeModyo, FaultyModyo, mock_transport
from bridge.run.server import settle_heap

TOKEN = "bench-app-cpu-token-0123456789-abcdef"
MODYO_URL = "http://localhost:9"
MODYO_TOKEN = "bench-app-cpu-modyo-token"


def settings(idempotency: bool) -> Settings:
    return Settings(
        server={"allowed_hosts": ["*"]},
        scim={"tokens": {"bench": TOKEN}},
        modyo={"base_url": MODYO_URL, "token": MODYO_TOKEN},
        idempotency={"enabled": idempotency},
    )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's, as ``serve`` runs (asyncio's where uvloop is missing: Windows)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _no_rounds() -> Any:
    return
    yield


class Driver:
    """One app, and the ASGI exchanges of one request at a time, as uvicorn makes them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.counter = itertools.count()

    async def request(self, method: str, path: str, body: Any) -> int:
        raw = json.dumps(body).encode() if body is not None else b""
        headers = [
            (b"host", b"bridge.test"),
            (b"authorization", f"Bearer {TOKEN}".encode()),
            (b"content-type", b"application/scim+json"),
            (b"content-length", str(len(raw)).encode()),
        ]
        path, _, query = path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        done = asyncio.Event()
        status = 0
        sent_body = False

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await done.wait()  # as uvicorn: the next message only once the exchange is over
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif not message.get("more_body"):
                done.set()

        await self.app(scope, receive, send)
        return status


async def _measure(
    step: Callable[[], Coroutine[Any, Any, int]], requests: int, expected: int
) -> float:
    """CPU µs per request over ``requests`` sequential requests (after a short warm-up)."""
    for _ in range(20):
        await step()
    started = time.process_time()
    for _ in range(requests):
        status = await step()
        if status != expected:
            raise SystemExit(f"unexpected status {status} (expected {expected})")
    return (time.process_time() - started) / requests * 1e6


async def run(requests: int, rounds: int) -> dict[str, float]:
    best: dict[str, float] = {}
    apps = {}
    stacks = []
    for enabled in (True, False):
        service = FakeModyo(token=MODYO_TOKEN)
        ids = [str(member) for member in service.seed_members(50)]
        fake = FaultyModyo(service)
        config = settings(enabled)
        readiness = Readiness(
            config.server.readiness_interval_seconds,
            config.server.readiness_max_age_seconds,
            schedule=_no_rounds,
        )
        app = create_app(
            config, modyo_transport=mock_transport(fake, MODYO_URL), readiness=readiness
        )
        manager = LifespanManager(app)
        await manager.__aenter__()
        stacks.append(manager)
        apps["on" if enabled else "off"] = (Driver(manager.app), ids)
    tag = itertools.count()
    settle_heap()
    try:
        for number in range(rounds):
            order = ["on", "off"] if number % 2 == 0 else ["off", "on"]
            for variant in order:
                driver, ids = apps[variant]
                users = itertools.cycle(ids)

                async def create(driver: Driver = driver) -> int:
                    name = f"app-cpu-{next(tag)}@example.com"
                    return await driver.request("POST", "/scim/Users", user_body(name))

                async def patch(driver: Driver = driver, users: Any = users) -> int:
                    operation = {"op": "Replace", "path": "name.givenName", "value": "G"}
                    patch_body = {"schemas": [PATCH], "Operations": [operation]}
                    return await driver.request("PATCH", f"/scim/Users/{next(users)}", patch_body)

                for op, step, expected in (("create", create, 201), ("patch", patch, 200)):
                    gc.collect()
                    cpu = await _measure(step, requests, expected)
                    name = f"{op} idempotency {variant}"
                    best[name] = min(best.get(name, cpu), cpu)
    finally:
        for manager in stacks:
            await manager.__aexit__(None, None, None)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        best = runner.run(run(args.requests, args.rounds))
    for name, cpu in sorted(best.items()):
        print(f"{name:28} {cpu:8.1f} µs/request")
    for op in ("create", "patch"):
        cost = best[f"{op} idempotency on"] - best[f"{op} idempotency off"]
        print(f"{op}: the idempotency cache costs {cost:.1f} µs/request")


if __name__ == "__main__":
    main()
