"""The console's Safety page over the safety rails (docs/operator/first-cycle.md): the dry
run's plan by kind, each brake kind's threshold, count and state, and the brake's release
(a signed-in, CSRF-checked form; the admin's name is logged, never a token)."""

from __future__ import annotations

import logging

from bridge.safety import SafetyRails

log = logging.getLogger("bridge.console")


class RailsPanel:
    """:class:`~bridge.console.pages.SafetyPanel` for a process's :class:`SafetyRails`."""

    def __init__(self, rails: SafetyRails) -> None:
        self.rails = rails

    async def summary(self) -> list[tuple[str, str]]:
        rows = [("Dry run", "on: no write reaches Modyo" if self.rails.dry_run else "off")]
        rows += [(f"Planned: {kind}", str(count)) for kind, count in
                 (await self.rails.plan_summary()).items()]  # fmt: skip
        statuses = await self.rails.brake_status()
        if not statuses:
            rows.append(("Brake", "off (safety.enabled = false)"))
        for status in statuses:
            state = f"engaged since {status.engaged_since}" if status.engaged_since else "open"
            rows.append(
                (
                    f"Brake: {status.kind}",
                    f"{status.counted} of {status.limit} in {status.window_minutes:g} min, {state}",
                )
            )
        return rows

    async def release(self, admin: str) -> str:
        released = await self.rails.release()
        log.warning("brake released from the console by %s: %s", admin, released or "none held")
        if not released:
            return "The brake was not engaged: nothing to release."
        return f"Released: {', '.join(released)}. Held changes succeed on Entra's next retry."
