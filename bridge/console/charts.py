"""The Charts page: journaled requests, failures and Modyo retries per minute over the last
hours, as small SVG bar charts drawn on the server (no script; the CSP allows none)
(docs/operator/console.md, "Charts").

A retry is a Modyo call attempt after the first (``attempt > 1`` in an event's calls).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from markupsafe import Markup, escape

from bridge.console.events import FAILED
from bridge.journal.history import event_time

WIDTH: Final = 720
HEIGHT: Final = 120
AXIS: Final = 16


@dataclass(frozen=True, slots=True)
class Series:
    title: str
    counts: list[int]
    """One per minute, oldest first."""

    @property
    def total(self) -> int:
        return sum(self.counts)


async def per_minute(
    events: AsyncIterator[Mapping[str, Any]], hours: int, now: datetime | None = None
) -> tuple[datetime, list[Series]]:
    """The first minute of the charts and the three series, counted from ``events`` (the
    history since then, in any order)."""
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    minutes = hours * 60
    start = now - timedelta(minutes=minutes - 1)
    requests, failures, retries = [0] * minutes, [0] * minutes, [0] * minutes
    async for event in events:
        moment = event_time(event)
        if moment is None:
            continue
        slot = int((moment - start).total_seconds() // 60)
        if not 0 <= slot < minutes:
            continue
        requests[slot] += 1
        if event.get("outcome") in FAILED:
            failures[slot] += 1
        calls = event.get("modyo_calls")
        if isinstance(calls, list):
            retries[slot] += sum(
                1
                for call in calls
                if isinstance(call, Mapping)
                and isinstance(call.get("attempt"), int)
                and call["attempt"] > 1
            )
    return start, [
        Series("Journaled requests", requests),
        Series("Failed or refused", failures),
        Series("Modyo retries", retries),
    ]


def svg(series: Series, start: datetime, css_class: str) -> Markup:
    """A bar per minute, scaled to the busiest minute, with the time at both ends."""
    count = len(series.counts)
    peak = max(series.counts, default=0) or 1
    bar = WIDTH / max(count, 1)
    plot = HEIGHT - AXIS
    bars = []
    for index, value in enumerate(series.counts):
        if value:
            height = max(1.0, plot * value / peak)
            bars.append(
                f'<rect x="{index * bar:.2f}" y="{plot - height:.2f}" '
                f'width="{max(bar - 0.5, 0.5):.2f}" height="{height:.2f}">'
                f"<title>{(start + timedelta(minutes=index)):%H:%M} UTC: {value}</title></rect>"
            )
    end = start + timedelta(minutes=count - 1)
    label = escape(f"{series.title} per minute, {start:%H:%M} to {end:%H:%M} UTC, peak {peak}")
    return Markup(  # noqa: S704 (numbers and escaped text only)
        f'<svg class="chart {escape(css_class)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg">'
        f'<line class="axis" x1="0" y1="{plot}" x2="{WIDTH}" y2="{plot}"/>'
        f"{''.join(bars)}"
        f'<text x="0" y="{HEIGHT - 2}">{start:%H:%M}</text>'
        f'<text x="{WIDTH}" y="{HEIGHT - 2}" text-anchor="end">{end:%H:%M} UTC</text>'
        f'<text x="{WIDTH}" y="12" text-anchor="end">peak {peak}/min</text>'
        "</svg>"
    )
