"""Readiness (``GET /readyz``) answers for this process alone; status (``GET /status``)
reports the dependencies every replica shares (docs/operator/health.md).

``/readyz`` is 200 once the app has started, while the probing task keeps completing rounds
(``stale`` otherwise), the server is not draining and every process gate holds (under
``server.workers``: every worker alive). Modyo and the shared store are NOT gated: every
replica shares them, so gating on them would take every replica out of the load balancer at
once, and Entra would meet a bare load-balancer error instead of the bridge's own 503 with
``Retry-After`` and the reason.

The dependencies are probed by ONE background task started in the app's lifespan, every
``server.readiness_interval_seconds``: named checks, each an async callable returning None
when the dependency answers or a short reason (``modyo_unreachable``,
``modyo_token_rejected``, ``shared_store_unreachable``). What a check reports changes only
after ``server.status_consecutive`` probes in a row agree, so one lost answer changes
nothing; each change is logged once (a failure at error level, a recovery at info) and
counted (``flaps``, ``scim_bridge_status_changes_total``). ``/status``, on the internal
listener, shows each check's state, since when, its last error in words (masked) and its
flaps; :meth:`Readiness.status_report` gives the same to an in-process caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge.config import ServerSettings
from bridge.deadline import deadline_in
from bridge.logs import mask
from bridge.metrics import STATUS_CHANGES, STATUS_PROBES, UPSTREAM_TOKEN_VALID, UPSTREAM_UP
from bridge.upstream import Upstream, UpstreamHealth

log = logging.getLogger("bridge.edge.readiness")
Check = Callable[[], Awaitable[str | None]]
"""A dependency's probe: None when it answers, else a short reason (``<check>_<what>``)."""
Gate = Callable[[], str | None]
"""A fact of this process that readiness needs: None when it holds, else the reason."""
Schedule = Callable[[], AsyncIterator[None]]
"""When rounds run: the background task runs one round per item."""
STARTING: Final = "starting"
STALE: Final = "stale"
DRAINING: Final = "draining"
OK: Final = "ok"
UNKNOWN: Final = "unknown"
"""A check's state before its first probe result."""
CHECK_FAILED: Final = "check_failed"
UNREACHABLE: Final = "unreachable"


@dataclass(slots=True)
class CheckStatus:
    """What is reported about one check, and the run of probe results that may change it."""

    name: str
    words: Mapping[str, str]
    state: str = UNKNOWN
    since: float | None = None  # wall clock, when ``state`` was reported first
    flaps: int = 0  # changes of a known state
    probes: int = 0
    failed_probes: int = 0
    last_result: str = UNKNOWN
    streak: int = 0  # probes in a row that gave ``last_result``
    last_probe_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": _iso(self.since),
            "flaps": self.flaps,
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            "last_probe": {"result": self.last_result, "at": _iso(self.last_probe_at)},
            "streak": self.streak,
            "probes": self.probes,
            "failed_probes": self.failed_probes,
        }


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


class Readiness:
    """The process gates, the reported checks, and the one task probing the checks."""

    def __init__(
        self,
        interval_seconds: float,
        max_age_seconds: float,
        *,
        consecutive: int = 1,
        schedule: Schedule | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval = interval_seconds
        self.max_age = max_age_seconds
        self.consecutive = consecutive
        self._schedule = schedule or self._every_interval
        self._clock = clock
        self._wall = wall_clock
        self._checks: dict[str, Check] = {}
        self._status: dict[str, CheckStatus] = {}
        self._gates: dict[str, Gate] = {}
        self._started_at: float | None = None
        self._completed_at: float | None = None
        self._round: asyncio.Future[None] | None = None
        self._on_start: list[Callable[[], None]] = []
        self._on_round: list[Callable[[dict[str, Any]], None]] = []
        self.rounds = 0
        """Rounds completed (tests and the console wait on it)."""
        self.draining = False
        self.warnings: list[str] = []
        """Known weaknesses that do not make the bridge unready (``modyo_plaintext``), listed
        in every ``/readyz`` and ``/status`` answer."""
        self._details: list[Callable[[], Mapping[str, object]]] = []

    def detail(self, fields: Callable[[], Mapping[str, object]]) -> None:
        """Fields every ``/readyz`` answer carries besides its verdict (``{"dry_run":
        true}``), read when it answers."""
        self._details.append(fields)

    @classmethod
    def from_settings(cls, server: ServerSettings) -> Readiness:
        return cls(
            server.readiness_interval_seconds,
            server.readiness_max_age_seconds,
            consecutive=server.status_consecutive,
        )

    def add(self, name: str, check: Check, words: Mapping[str, str] | None = None) -> None:
        """Report a dependency (``readiness.add("modyo", upstream_check(upstream, "modyo"))``);
        ``words`` say each failing state in words, for ``/status``'s ``last_error``."""
        self._checks[name] = check
        self._status[name] = CheckStatus(name, words or {})

    def add_gate(self, name: str, gate: Gate) -> None:
        """A fact of this process ``/readyz`` needs (``workers``: every worker alive)."""
        self._gates[name] = gate

    def when_started(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the app has started (its lifespan entered)."""
        self._on_start.append(callback)

    def after_each_round(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback`` with :meth:`status_report` after every round (the workers'
        supervisor gathers them this way)."""
        self._on_round.append(callback)

    def drain(self) -> None:
        """The server is stopping: ``/readyz`` answers 503 ``draining`` from now on."""
        self.draining = True

    def reason(self) -> str | None:
        """None when this process can serve, else why not."""
        if self._started_at is None:
            return STARTING
        if self.draining:
            return DRAINING
        last = self._completed_at if self._completed_at is not None else self._started_at
        if self._clock() - last > self.max_age:
            return STALE
        for gate in self._gates.values():
            reason = gate()
            if reason is not None:
                return reason
        return None

    def state(self, name: str) -> str:
        """What is reported about check ``name`` (``ok``, ``unreachable``...)."""
        return self._status[name].state

    def status_report(self) -> dict[str, Any]:
        """``/status``'s body: readiness, then every check as reported."""
        reason = self.reason()
        ready: dict[str, Any] = {"status": "ready" if reason is None else "unready"}
        if reason is not None:
            ready["reason"] = reason
        return {
            "readiness": ready,
            "checks": {name: status.as_dict() for name, status in self._status.items()},
            "rounds": self.rounds,
            "consecutive": self.consecutive,
            "interval_seconds": self.interval,
            "warnings": list(self.warnings),
        }

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
        self._started_at = self._clock()
        for callback in self._on_start:
            callback()
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
        """``GET /readyz``: this process's verdict; no authentication, no dependency call."""
        reason = self.reason()
        headers = {"Cache-Control": "no-store"}
        noted: dict[str, object] = {"warnings": self.warnings} if self.warnings else {}
        noted.update(item for fields in self._details for item in fields().items())
        if reason is None:
            return JSONResponse({"status": "ready", **noted}, headers=headers)
        body = {"status": "unready", "reason": reason, **noted}
        return JSONResponse(body, 503, headers=headers)

    async def status_endpoint(self, request: Request) -> Response:
        """``GET /status`` (internal listener): :meth:`status_report`; no dependency call."""
        return JSONResponse(self.status_report(), headers={"Cache-Control": "no-store"})

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
        for name, (result, error) in zip(names, results, strict=True):
            self._record(self._status[name], result, error)
        self._completed_at = self._clock()
        self.rounds += 1
        if self._on_round:
            report = self.status_report()
            for callback in self._on_round:
                callback(report)

    async def _run(self, name: str) -> tuple[str, str | None]:
        """One check, cut after one interval (a check's own deadline should end it first):
        its result (``ok`` or the failing state) and the error in words."""
        status = self._status[name]
        try:
            with deadline_in(self.interval):
                async with asyncio.timeout(self.interval):
                    reason = await self._checks[name]()
        except TimeoutError:
            return UNREACHABLE, f"no answer within {self.interval:g} s"
        except Exception as exc:
            if status.last_result != CHECK_FAILED:  # once per change, as below
                log.exception("status check %r failed unexpectedly", name)
            return CHECK_FAILED, mask(f"the check itself failed: {type(exc).__name__}: {exc}")
        if reason is None:
            return OK, None
        state = reason.removeprefix(f"{name}_")
        return state, status.words.get(state, state.replace("_", " "))

    def _record(self, status: CheckStatus, result: str, error: str | None) -> None:
        """One probe result: counted; the reported state changes after ``consecutive`` equal
        results in a row (at once from ``unknown``: nothing was reported yet)."""
        now = self._wall()
        status.probes += 1
        status.last_probe_at = now
        STATUS_PROBES(status.name, result).inc()
        if result != OK:
            status.failed_probes += 1
            status.last_error, status.last_error_at = error, now
        if result == status.last_result:
            status.streak += 1
        else:
            status.last_result, status.streak = result, 1
        if result == status.state:
            return
        if status.state != UNKNOWN and status.streak < self.consecutive:
            return
        previous, status.state, status.since = status.state, result, now
        if previous != UNKNOWN:
            status.flaps += 1
            STATUS_CHANGES(status.name).inc()
        name = status.name
        if result != OK:
            log.error(
                "%s %s: %s (SCIM requests that need it answer 503 until it recovers; "
                "/readyz is unaffected)",
                name,
                result,
                error,
                extra={"check": name, "state": result, "previous_state": previous},
            )
        elif previous == UNKNOWN:
            log.info("%s ok", name, extra={"check": name, "state": result})
        else:
            log.info(
                "%s ok again after %s",
                name,
                previous,
                extra={"check": name, "state": result, "previous_state": previous},
            )


MODYO_WORDS: Final = {
    "unreachable": "no usable answer from Modyo to GET /api/admin/profile (refused, reset, "
    "timed out, TLS or DNS failure, or a 5xx)",
    "token_rejected": "Modyo answered 401 or 403 to GET /api/admin/profile: it rejects the "
    "bridge's token (modyo.token revoked, or its owner deactivated)",
}
STORE_WORDS: Final = {"unreachable": "the shared store (Redis) did not answer a PING"}


def upstream_check(upstream: Upstream, name: str) -> Check:
    """The upstream's probe as a check (reasons ``<name>_unreachable``,
    ``<name>_token_rejected``), keeping ``scim_bridge_upstream_up`` and
    ``scim_bridge_upstream_token_valid`` at the last probe's result (the latter unchanged
    while unreachable: nothing new is known about the token then)."""

    async def check() -> str | None:
        health = await upstream.health()
        UPSTREAM_UP.set(health is not UpstreamHealth.UNREACHABLE)
        if health is not UpstreamHealth.UNREACHABLE:
            UPSTREAM_TOKEN_VALID.set(health is UpstreamHealth.UP)
        return None if health is UpstreamHealth.UP else f"{name}_{health.value}"

    return check
