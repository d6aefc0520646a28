"""What a ``scim-bridge check`` probe is: one line of one kind, ``ok``, ``warn`` (works, with
a consequence to act on), ``skip`` (not probed, and why) or ``FAIL`` (provisioning would
break), run against one upstream's probe set."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

import httpx

from bridge.deadline import deadline_in
from bridge.upstream import UpstreamError

PROBE_DEADLINE_SECONDS = 30.0
PREFIX = "scim-bridge-check"


class Kind(StrEnum):
    OK = "ok"
    WARN = "warn"  # works, with a consequence to act on
    SKIP = "skip"  # not probed
    FAIL = "FAIL"  # provisioning would break


@dataclass(frozen=True, slots=True)
class Result:
    check: str
    kind: Kind
    detail: str
    essential: bool = False


Outcome = tuple[Kind, str]
S = TypeVar("S")


def ok(detail: str) -> Outcome:
    return Kind.OK, detail


def warn(detail: str) -> Outcome:
    return Kind.WARN, detail


def skip(detail: str) -> Outcome:
    return Kind.SKIP, detail


@dataclass(frozen=True, slots=True)
class Probe(Generic[S]):
    """One line of a check: ``run`` takes the upstream's probe set (its client and state)."""

    name: str
    run: Callable[[S], Awaitable[Outcome]]
    proves: str
    """What the bridge relies on that this probe shows (``check --help``)."""
    writes: bool = False
    """Only ``--write`` runs it (it creates, changes or deletes)."""
    essential: bool = False
    """When it fails, the later probes cannot tell anything (the token)."""


async def run_probes(target: S, probes: Sequence[Probe[S]], *, write: bool) -> list[Result]:
    """One result per probe, in order; a probe raising an upstream error (or an assertion
    of the contract) fails, and after an essential failure the others are skipped."""
    results: list[Result] = []
    blocked: str | None = None
    for probe in probes:
        if blocked is not None:
            outcome = skip(f"needs {blocked}")
        elif probe.writes and not write:
            outcome = skip("only --write proves it (it writes a throw-away object)")
        else:
            outcome = await _run(probe, target)
        results.append(Result(probe.name, *outcome, essential=probe.essential))
        if outcome[0] is Kind.FAIL and probe.essential:
            blocked = probe.name
    return results


async def _run(probe: Probe[S], target: S) -> Outcome:
    try:
        with deadline_in(PROBE_DEADLINE_SECONDS):
            return await probe.run(target)
    except (UpstreamError, AssertionError) as exc:
        return Kind.FAIL, str(exc) or type(exc).__name__
    except httpx.HTTPError as exc:
        return Kind.FAIL, f"{type(exc).__name__}: {exc}"
