"""The safety rails of one app, built from its settings around the upstream it serves: a dry
run (``modyo.dry_run``) or the brake (``[safety]``), and what the status report, the console
and the edge ask of them (docs/operator/first-cycle.md).

In a dry run there is no brake: nothing reaches Modyo, and the plan (``journal report
--planned``) shows every change the brake would weigh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.config import Settings
from bridge.metrics import DRY_RUN
from bridge.safety.brake import Brake, BrakeUpstream, Kind, KindStatus
from bridge.safety.brake_store import BrakeStore, MemoryBrakeStore, RedisBrakeStore
from bridge.safety.calls import WriteCalls
from bridge.safety.overlay import DryRunUpstream
from bridge.safety.plan import MemoryLog, PlanLog, RedisLog
from bridge.safety.report import plan_report
from bridge.safety.shared import SharedLink
from bridge.upstream import Upstream

log = logging.getLogger("bridge.safety")
DRY_RUN_HEADER: Final = (b"x-scim-bridge-dry-run", b"true")


@dataclass(slots=True)
class SafetyRails:
    """What wraps the upstream, and the functions the status report and console call."""

    upstream: Upstream
    """The upstream the SCIM side calls: the dry run, the brake, or the plain upstream."""
    overlay: DryRunUpstream | None = None
    brake: Brake | None = None
    stale_plan: RedisLog | None = None
    """A live bridge's handle on the plan a dry run may have left in the shared store."""

    @property
    def dry_run(self) -> bool:
        return self.overlay is not None

    def status_fields(self) -> dict[str, Any]:
        """What ``/readyz`` (and the status report) add, without a store call and only when
        it matters: ``"dry_run": true`` in a dry run; ``"brake"``: the kinds this process
        last saw held (``brake_status()`` asks the shared store). Readiness stays up while
        the brake holds: other changes flow."""
        fields: dict[str, Any] = {"dry_run": True} if self.dry_run else {}
        if self.brake is not None and self.brake.engaged:
            fields["brake"] = sorted(kind.value for kind in self.brake.engaged)
        return fields

    async def plan_summary(self) -> dict[str, int]:
        """The changes a dry run has planned, by kind (``users created``...); empty when
        not a dry run."""
        return {} if self.overlay is None else await self.overlay.summary()

    async def plan_report(self) -> dict[str, Any]:
        """The plan as ``journal report --planned --format json`` prints it (each object
        named, members per group): plain data for the console; empty when not a dry run."""
        if self.overlay is None:
            return {}
        return plan_report(await self.overlay.entries()).wire()

    @asynccontextmanager
    async def running(self, interval_seconds: float) -> AsyncIterator[None]:
        """While the app runs: discard a stale shared plan (``started``), then keep this
        process's view of the brake (``status_fields``, the gauges) current with the store,
        where another replica or ``brake release`` may change it, every interval."""
        await self.started()
        if self.brake is None:
            yield
            return
        task = asyncio.create_task(self._refreshing(self.brake, interval_seconds))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @staticmethod
    async def _refreshing(brake: Brake, interval_seconds: float) -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await brake.status()
            except Exception:  # the shared store's readiness check reports it
                log.debug("safety brake: the store did not answer a refresh", exc_info=True)

    async def started(self) -> None:
        """At start-up: a live bridge discards a shared dry-run plan (going live ends the
        rehearsal; a later dry run starts from Modyo as it then is), saying so."""
        if self.stale_plan is None:
            return
        try:
            discarded = await self.stale_plan.discard()
        except Exception:  # Redis down at start: the shared store's check says so
            log.warning("could not look for a dry run's plan to discard: Redis did not answer")
            return
        if discarded:
            log.warning(
                "a dry run's plan of %d planned write(s) was discarded: modyo.dry_run is off, "
                "so writes now reach Modyo",
                discarded,
                extra={"planned": discarded},
            )

    async def brake_status(self) -> list[KindStatus]:
        """Each kind's threshold, count and state; empty when the brake is off."""
        return [] if self.brake is None else await self.brake.status()

    async def release(self, kind: str | None = None) -> list[str]:
        """Release the brake (of ``kind``, else every kind): the console's form calls it.
        The kinds that were engaged; ``ValueError`` for an unknown kind."""
        if self.brake is None:
            return []
        chosen = None if kind is None else Kind(kind)
        return [each.value for each in await self.brake.release(chosen)]


def safety_rails(
    settings: Settings, upstream: Upstream, link: SharedLink | None, calls: WriteCalls
) -> SafetyRails:
    """The rails ``settings`` ask for around ``upstream``; state shared through ``link``
    (the Redis of ``idempotency.backend = "redis"``) when there is one, else in memory."""
    modyo = settings.modyo
    DRY_RUN.set(1 if modyo.dry_run else 0)
    if modyo.dry_run:
        plan_log: PlanLog = MemoryLog() if link is None else RedisLog(link)
        overlay = DryRunUpstream(
            upstream,
            plan_log,
            api=modyo.api,
            calls=calls,
            max_changes=modyo.dry_run_max_changes,
            max_scan=settings.scim.max_filter_scan,
        )
        return SafetyRails(overlay, overlay=overlay)
    safety = settings.safety
    stale_plan = None if link is None else RedisLog(link)
    if not safety.enabled:
        return SafetyRails(upstream, stale_plan=stale_plan)
    window = safety.window_minutes * 60
    store: BrakeStore = MemoryBrakeStore(window) if link is None else RedisBrakeStore(link, window)
    brake = Brake(safety, store)
    wrapped = BrakeUpstream(upstream, brake, calls, release_signal=link is None)
    return SafetyRails(wrapped, brake=brake, stale_plan=stale_plan)


class SafetyEdge:
    """Outermost ASGI middleware: in a dry run, every answer says so
    (``X-Scim-Bridge-Dry-Run: true``), so no one mistakes a rehearsal for provisioning.
    ``rails`` is how the app's other parts (and tests) reach the rails."""

    def __init__(self, app: ASGIApp, rails: SafetyRails) -> None:
        self.app = app
        self.rails = rails

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.rails.dry_run:
            await self.app(scope, receive, send)
            return

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), DRY_RUN_HEADER]
            await send(message)

        await self.app(scope, receive, marked)
