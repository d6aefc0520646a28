"""Readiness, ``GET /readyz``: can this bridge serve SCIM right now?

``/healthz`` (liveness) only says the process answers; a bridge whose Modyo token was revoked,
or whose Modyo is unreachable, stays alive while every SCIM request fails. Readiness says so:
named checks (the upstream's probe; a shared store's later), each an async callable returning
None when ready or a short reason (``modyo_unreachable``, ``modyo_token_rejected``), are run by
ONE background task started in the app's lifespan, every ``server.readiness_interval_seconds``.
``/readyz`` only reads their cached results, so it never calls Modyo and never waits: 200 when
every check passed in the last ``server.readiness_max_age_seconds``, else 503 with the reason
(``starting`` before the first round completed, ``stale`` if rounds stopped completing).
Each check's change of state is logged once, at error level, not once per probe or request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge.deadline import deadline_in
from bridge.metrics import UPSTREAM_TOKEN_VALID, UPSTREAM_UP
from bridge.upstream import Upstream, UpstreamHealth

log = logging.getLogger("bridge.edge.readiness")
Check = Callable[[], Awaitable[str | None]]
"""A readiness check: None when ready, else a short reason (``<check>_<what>``)."""
Schedule = Callable[[], AsyncIterator[None]]
"""When rounds run: the background task runs one round per item."""
STARTING: Final = "starting"
STALE: Final = "stale"
_NEVER_RAN: Final = object()


class Readiness:
    """The checks, their last results, and the one task refreshing them."""

    def __init__(
        self,
        interval_seconds: float,
        max_age_seconds: float,
        *,
        schedule: Schedule | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval_seconds
        self.max_age = max_age_seconds
        self._schedule = schedule or self._every_interval
        self._clock = clock
        self._checks: dict[str, Check] = {}
        self._results: dict[str, str | object | None] = {}
        self._completed_at: float | None = None
        self._round: asyncio.Future[None] | None = None
        self.warnings: list[str] = []
        """Known weaknesses that do not make the bridge unready (``modyo_plaintext``), listed
        in every ``/readyz`` answer."""
        self._details: list[Callable[[], Mapping[str, object]]] = []

    def detail(self, fields: Callable[[], Mapping[str, object]]) -> None:
        """Fields every ``/readyz`` answer carries besides its verdict (``{"dry_run":
        true}``), read when it answers."""
        self._details.append(fields)

    def add(self, name: str, check: Check) -> None:
        """Register a check (``readiness.add("modyo", upstream_check(upstream))``)."""
        self._checks[name] = check
        self._results[name] = _NEVER_RAN

    def reason(self) -> str | None:
        """None when ready, else why not (the first failing check's reason)."""
        if self._completed_at is None:
            return STARTING
        if self._clock() - self._completed_at > self.max_age:
            return STALE
        for result in self._results.values():
            if isinstance(result, str):
                return result
        return None

    async def refresh(self) -> None:
        """Run one round of every check (concurrently). A round already in flight is joined,
        never doubled: at most one probe of each check runs at any time."""
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(self._run_round())
        await asyncio.shield(self._round)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The background task, for the app's lifespan. On exit it stops, and so does a round
        in flight: a probe must not outlive the connections it uses (nor log their closing
        as an outage)."""
        task = asyncio.create_task(self._refreshing(), name="scim-bridge readiness")
        try:
            yield
        finally:
            stopping: list[asyncio.Future[None]] = [task]
            if self._round is not None:
                stopping.append(self._round)
            for pending in stopping:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending

    async def endpoint(self, request: Request) -> Response:
        """``GET /readyz``: the cached verdict; no authentication, no upstream call."""
        reason = self.reason()
        headers = {"Cache-Control": "no-store"}
        noted: dict[str, object] = {"warnings": self.warnings} if self.warnings else {}
        noted.update(item for fields in self._details for item in fields().items())
        if reason is None:
            return JSONResponse({"status": "ready", **noted}, headers=headers)
        body = {"status": "unready", "reason": reason, **noted}
        return JSONResponse(body, 503, headers=headers)

    async def _every_interval(self) -> AsyncIterator[None]:
        while True:
            yield
            await asyncio.sleep(self.interval)

    async def _refreshing(self) -> None:
        async for _ in self._schedule():
            await self.refresh()

    async def _run_round(self) -> None:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(name) for name in names))
        for name, result in zip(names, results, strict=True):
            self._record(name, result)
        self._completed_at = self._clock()

    async def _run(self, name: str) -> str | None:
        """One check, cut after one interval (a check's own deadline should end it first)."""
        try:
            with deadline_in(self.interval):
                async with asyncio.timeout(self.interval):
                    return await self._checks[name]()
        except TimeoutError:
            return f"{name}_unreachable"
        except Exception:
            if self._results[name] != f"{name}_check_failed":  # once per change, as below
                log.exception("readiness check %r failed unexpectedly", name)
            return f"{name}_check_failed"

    def _record(self, name: str, result: str | None) -> None:
        previous = self._results[name]
        self._results[name] = result
        if result == previous:
            return
        if result is not None:
            log.error(
                "not ready: %s (SCIM requests fail until it recovers)",
                result,
                extra={"check": name, "reason": result},
            )
        elif previous is not _NEVER_RAN:  # good news: info, not an alarm
            log.info(
                "ready again: %s recovered from %s",
                name,
                previous,
                extra={"check": name, "reason": None, "previous_reason": previous},
            )
        else:
            log.info("ready: %s answers", name, extra={"check": name})


def upstream_check(upstream: Upstream, name: str) -> Check:
    """The upstream's probe as a check (reasons ``<name>_unreachable``,
    ``<name>_token_rejected``), keeping ``scim_bridge_upstream_up`` and
    ``scim_bridge_upstream_token_valid`` up to date (the latter unchanged while unreachable:
    nothing new is known about the token then)."""

    async def check() -> str | None:
        health = await upstream.health()
        UPSTREAM_UP.set(health is not UpstreamHealth.UNREACHABLE)
        if health is not UpstreamHealth.UNREACHABLE:
            UPSTREAM_TOKEN_VALID.set(health is UpstreamHealth.UP)
        return None if health is UpstreamHealth.UP else f"{name}_{health.value}"

    return check
