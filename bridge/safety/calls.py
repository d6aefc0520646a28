"""What a write kept from Modyo would have cost, and how a request says so: the Modyo calls a
write makes (declared by each upstream: ``bridge.modyo.rest.WRITES``, ``.scim.WRITES``) and
the note the safety rails leave in the request's state, which the journal turns into an event
with outcome ``planned`` or ``held`` and those calls (docs/reference/journal.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final, Literal

from bridge import request_state
from bridge.journal.event import Outcome
from bridge.journal.middleware import withheld_outcome
from bridge.journal.record import JournalRecord
from bridge.request_state import RequestState

Withheld = Literal["planned", "held"]
WriteCalls = Mapping[str, tuple[tuple[str, str, int], ...]]
"""By ``Upstream`` write method: ``(call, unit, per call)``; ``call`` is ``"METHOD /path"``,
``unit`` is ``once``, ``changed`` (once if anything differs), ``members`` (one call per
``per call`` members) or ``groups`` (one per group the user is in)."""
NO_CALLS: Final[WriteCalls] = {}


def calls_for(
    table: WriteCalls, write: str, *, members: int = 0, groups: int = 0, changed: bool = True
) -> list[tuple[str, str]]:
    """The calls (method, path template) ``write`` makes; an unknown write, none."""
    found: list[tuple[str, str]] = []
    for call, unit, per_call in table.get(write, ()):
        if unit == "members":
            times = math.ceil(members / max(per_call, 1))
        elif unit == "groups":
            times = groups
        elif unit == "changed":
            times = 1 if changed else 0
        else:
            times = 1
        method, _, path = call.partition(" ")
        found += [(method, path)] * times
    return found


def note(outcome: Withheld, calls: list[tuple[str, str]]) -> None:
    """Record in the request being served that a write was ``planned`` or ``held``, with
    the calls it would have made (nothing outside a request)."""
    state = request_state.current()
    if state is None:
        return
    if state.withheld != "held":  # a held write decides the request's outcome
        state.withheld = outcome
    state.withheld_calls.extend(calls)


def journal_outcome(record: JournalRecord, state: RequestState | None) -> Outcome | None:
    """For the journal: the outcome of a request whose writes the rails withheld, with the
    calls they kept from Modyo added to ``record``; None otherwise (the journal's own rule,
    ``bridge.journal.middleware.withheld_outcome``)."""
    return withheld_outcome(record, state)
