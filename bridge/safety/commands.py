"""What ``scim-bridge brake status | release`` do against the brake's shared counts in Redis,
apart from parsing their arguments and connecting (``bridge.run.cli``); exit status 0 when done,
2 when the command cannot run (docs/operator/first-cycle.md, "Release the brake")."""

from __future__ import annotations

from typing import IO

from bridge.config import SafetySettings
from bridge.safety.brake import WHAT, Brake, Kind, KindStatus
from bridge.safety.brake_store import RedisBrakeStore
from bridge.safety.shared import SharedLink


def shared_brake(link: SharedLink, settings: SafetySettings) -> Brake:
    return Brake(settings, RedisBrakeStore(link, settings.window_minutes * 60))


async def release_command(
    link: SharedLink, settings: SafetySettings, kind: str | None, out: IO[str]
) -> int:
    """Release the brake every replica shares (of ``kind``, else of every kind)."""
    brake = shared_brake(link, settings)
    released = await brake.release(None if kind is None else Kind(kind))
    if released:
        names = ", ".join(f"{each.value} ({WHAT[each]})" for each in released)
        print(f"released: {names}; held changes succeed when Entra retries them", file=out)
    else:
        which = f"for {kind}" if kind else "for any kind"
        print(f"the brake was not engaged {which}; its window starts again", file=out)
    return 0


async def status_command(link: SharedLink, settings: SafetySettings, out: IO[str]) -> int:
    for line in status_lines(await shared_brake(link, settings).status()):
        print(line, file=out)
    return 0


def status_lines(statuses: list[KindStatus]) -> list[str]:
    """One line per kind: its count against its threshold, and whether changes flow."""
    return [
        f"{status.kind.value}: {status.counted} of {status.limit} per "
        f"{status.window_minutes:g} minutes; "
        + (f"ENGAGED since {status.engaged_since}" if status.engaged_since else "flowing")
        for status in statuses
    ]
