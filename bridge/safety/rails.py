"""The safety rails of one app, built from its settings around the upstream it serves: a dry
run (``modyo.dry_run``) or the brake (``[safety]``), and what the status report, the console
and the edge ask of them (docs/operator/first-cycle.md).

In a dry run there is no brake: nothing reaches Modyo, and the plan (``journal report
--planned``) shows every change the brake would weigh.
"""

from __future__ import annotations

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

DRY_RUN_HEADER: Final = (b"x-scim-bridge-dry-run", b"true")


@dataclass(slots=True)
class SafetyRails:
    """What wraps the upstream, and the functions the status report and console call."""

    upstream: Upstream
    """The upstream the SCIM side calls: the dry run, the brake, or the plain upstream."""
    overlay: DryRunUpstream | None = None
    brake: Brake | None = None

    @property
    def dry_run(self) -> bool:
        return self.overlay is not None

    def status_fields(self) -> dict[str, Any]:
        """What ``/readyz`` (and the status report) carry, without a store call:
        ``{"dry_run": bool}``, and with the brake on, ``"brake"``: the kinds this process
        last saw held (``brake_status()`` asks the shared store). Readiness stays up while
        the brake holds: other changes flow."""
        fields: dict[str, Any] = {"dry_run": self.dry_run}
        if self.brake is not None:
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
    if not safety.enabled:
        return SafetyRails(upstream)
    window = safety.window_minutes * 60
    store: BrakeStore = MemoryBrakeStore(window) if link is None else RedisBrakeStore(link, window)
    brake = Brake(safety, store)
    wrapped = BrakeUpstream(upstream, brake, calls, release_signal=link is None)
    return SafetyRails(wrapped, brake=brake)


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
