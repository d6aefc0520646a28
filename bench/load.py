"""The load generator, run as its own process: ``python -m bench.load < spec.json``.

Closed loop (``concurrency`` workers, each sending its next request when the previous one is
answered) or open loop (``rate`` requests per second, whatever the answers), a warm-up, then a
measured window: ``warmup`` and ``duration`` seconds, or, given ``requests`` (closed loop only),
``warmup_requests`` answers and then ``requests`` answers, whatever time they take (the same
work on any machine). It prints one JSON object: requests, errors, rps, latency percentiles,
the fake Modyo's call counters for the window, and ``exhausted`` when a finite request stream
(``add_member``: each user added to each group once) ran out before the window ended.
aiohttp keeps the client cheaper than the servers it measures (~3,000 req/s on one core).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

Request = tuple[str, str, Any]  # method, path (relative to the target's base), JSON body

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def user_body(user_name: str) -> dict[str, Any]:
    """Entra's POST /Users (entra-scim-behaviour.md R5)."""
    return {
        "schemas": [USER, ENTERPRISE],
        "externalId": f"ext-{user_name}",
        "userName": user_name,
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": user_name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Bench User", "familyName": "User", "givenName": "Bench"},
        "roles": [],
    }


def requests_for(op: str, data: dict[str, Any], tag: str) -> Iterator[Request]:
    """The endless request stream of one operation, on the target's own seeded ids."""
    users, groups = data.get("users", []), data.get("groups", [])
    counter = itertools.count()
    if op == "get_user":
        for user in itertools.cycle(users):
            yield "GET", f"/Users/{user['id']}", None
    elif op == "filter_user":
        for user in itertools.cycle(users):
            yield "GET", f'/Users?filter=userName eq "{user["userName"]}"', None
    elif op == "create_user":
        for n in counter:
            yield "POST", "/Users", user_body(f"bench-{tag}-{n}@example.com")
    elif op == "patch_user":
        for user, n in zip(itertools.cycle(users), counter, strict=False):
            operation = {"op": "Replace", "path": "name.givenName", "value": f"Given {tag} {n}"}
            yield "PATCH", f"/Users/{user['id']}", {"schemas": [PATCH], "Operations": [operation]}
    elif op == "add_member":  # every request adds a user not yet in the group: finite
        pairs = ((g, u) for u in data["member_pool"] for g in groups)
        for group, user in pairs:
            value = [{"$ref": None, "value": str(user["id"])}]
            adding: dict[str, Any] = {"op": "Add", "path": "members", "value": value}
            yield "PATCH", f"/Groups/{group['id']}", {"schemas": [PATCH], "Operations": [adding]}
    elif op == "filter_group":
        for group in itertools.cycle(groups):
            query = f'displayName eq "{group["displayName"]}"'
            yield "GET", f"/Groups?excludedAttributes=members&filter={query}", None
    elif op == "layer_get":  # bench.layer: any path, the trivial app answers
        while True:
            yield "GET", "/scim/Users/2819c223-7f76-453a-919d-413861904646", None
    elif op == "layer_post":
        for n in counter:
            yield "POST", "/scim/Users", user_body(f"layer-{tag}-{n}@example.com")
    elif op == "modyo_get_member":  # the fake Modyo itself, for the added-latency baseline
        for user in itertools.cycle(users):
            yield "GET", f"/api/admin/team_members/{user['id']}", None
    elif op == "modyo_get_scim_user":  # the same, from the fake of Modyo's SCIM server
        for user in itertools.cycle(users):
            yield "GET", f"/api/admin/scim/Users/{user['id']}", None
    else:
        raise SystemExit(f"unknown op {op!r}")


class Recorder:
    def __init__(self, warmup_requests: int = 0, requests: int = 0) -> None:
        self.sent = 0
        self.measuring = False
        self.exhausted = False
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self._warmup_requests, self._requests = warmup_requests, requests
        self.warm = asyncio.Event()  # counted windows: the warm-up's answers are in
        self.full = asyncio.Event()  # counted windows: the window's answers are in

    def record(self, status: int, seconds: float) -> None:
        self.sent += 1
        if self.sent >= self._warmup_requests:
            self.warm.set()
        if not self.measuring:
            return
        if status >= 400:
            self.errors[str(status)] = self.errors.get(str(status), 0) + 1
        self.latencies.append(seconds)
        if self._requests and len(self.latencies) >= self._requests:
            self.full.set()


async def send(
    session: aiohttp.ClientSession, spec: dict[str, Any], request: Request, recorder: Recorder
) -> None:
    method, path, body = request
    started = time.perf_counter()
    try:
        async with session.request(method, spec["base"] + path, json=body) as response:
            await response.read()
            status = response.status
    except aiohttp.ClientError:
        status = 599
    recorder.record(status, time.perf_counter() - started)


async def modyo_counters(
    session: aiohttp.ClientSession, modyo: str | None, reset: bool
) -> dict[str, Any]:
    if not modyo:
        return {}
    if reset:
        async with session.post(f"{modyo}/__fake__/reset-calls") as response:
            await response.read()
        return {}
    async with session.get(f"{modyo}/__fake__/calls") as response:
        result: dict[str, Any] = await response.json()
        return result


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    stream = requests_for(spec["op"], spec["data"], spec.get("tag", "t"))
    counted = bool(spec.get("requests"))
    recorder = Recorder(spec.get("warmup_requests", 0), spec.get("requests", 0))
    headers = {"Content-Type": "application/scim+json"}
    if spec.get("token"):
        headers["Authorization"] = f"Bearer {spec['token']}"
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with (
        aiohttp.ClientSession(headers=headers, connector=connector) as session,
        aiohttp.ClientSession(  # the fake Modyo's control plane takes its token
            headers={"Authorization": f"Bearer {spec.get('modyo_token', '')}"}
        ) as control,
    ):
        loop = open_loop if spec.get("rate") else closed_loop
        stop = asyncio.Event()

        async def window() -> tuple[float, dict[str, Any]]:
            await (recorder.warm.wait() if counted else asyncio.sleep(spec["warmup"]))
            await modyo_counters(control, spec.get("modyo"), reset=True)
            recorder.measuring = True
            started = time.perf_counter()
            await (recorder.full.wait() if counted else asyncio.sleep(spec["duration"]))
            recorder.measuring = False
            elapsed = time.perf_counter() - started
            counters = await modyo_counters(control, spec.get("modyo"), reset=False)
            stop.set()
            return elapsed, counters

        async def ended() -> None:  # a finite stream ran out: the window cannot complete
            await loop(session, spec, stream, recorder, stop)
            if not stop.is_set():
                recorder.exhausted = True
                recorder.warm.set()
                recorder.full.set()

        (elapsed, counters), _ = await asyncio.wait_for(
            asyncio.gather(window(), ended()), spec.get("timeout", 600)
        )
    return summarise(recorder, elapsed, counters)


async def closed_loop(
    session: aiohttp.ClientSession,
    spec: dict[str, Any],
    stream: Iterator[Request],
    recorder: Recorder,
    stop: asyncio.Event,
) -> None:
    async def worker() -> None:
        while not stop.is_set():
            request = next(stream, None)
            if request is None:
                return
            await send(session, spec, request, recorder)

    await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))


async def open_loop(
    session: aiohttp.ClientSession,
    spec: dict[str, Any],
    stream: Iterator[Request],
    recorder: Recorder,
    stop: asyncio.Event,
) -> None:
    interval = 1.0 / spec["rate"]
    pending: set[asyncio.Task[None]] = set()
    next_at = time.perf_counter()
    while not stop.is_set():
        request = next(stream, None)
        if request is None:
            break
        task = asyncio.create_task(send(session, spec, request, recorder))
        pending.add(task)
        task.add_done_callback(pending.discard)
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    await asyncio.gather(*pending)


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def summarise(recorder: Recorder, elapsed: float, counters: dict[str, Any]) -> dict[str, Any]:
    values = sorted(recorder.latencies)
    total = counters.get("total")
    return {
        "requests": len(values),
        "requests_with_warmup": recorder.sent,
        "errors": recorder.errors,
        "rps": len(values) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(values, 0.50) * 1000,
        "p95_ms": percentile(values, 0.95) * 1000,
        "p99_ms": percentile(values, 0.99) * 1000,
        "modyo_calls": (total / len(values)) if total is not None and values else None,
        "modyo_breakdown": counters.get("calls"),
        "exhausted": recorder.exhausted,
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(args[0] if args else sys.stdin.read())
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        result = runner(run(spec))
    except TimeoutError:
        raise SystemExit(
            f"bench.load: {spec['op']} on {spec['base']} did not end within "
            f"{spec.get('timeout', 600)} s"
        ) from None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
