"""``scim-bridge check``: which of Modyo's interfaces does this Modyo offer, and does the one
``modyo.api`` names answer the contract the bridge assumes?

A check is a list of probes per upstream (``rest_probes``, ``scim_probes``), each reporting
one line of one kind: ``ok``, ``warn`` (works, with a consequence to act on), ``skip`` (not
probed, and why) or ``FAIL`` (provisioning would break). Every probe goes through the
upstream itself, so the same code paths, envelopes and shape checks as in production. The
configured interface is probed first; the other one follows in a second table, read-only,
so one run tells which ``modyo.api`` a Modyo can use. Only the first decides the exit status.

By default nothing is written: the probes that only a write can prove are listed as ``skip``.
``--write`` creates a throw-away user and group through the configured interface, changes
them, and always removes them at the end; anything left behind is listed.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from bridge.config import ModyoSettings, RetrySettings, redact_url
from bridge.logs import mask
from bridge.modyo.probes import Kind, Probe, Result, run_probes
from bridge.modyo.rest_probes import REST_PROBES, RestProbes
from bridge.modyo.scim_probes import SCIM_PROBES, ScimProbes
from bridge.modyo.upstreams import Api, rest_upstream, scim_upstream

PROBES: dict[Api, Sequence[Probe[Any]]] = {"rest": REST_PROBES, "scim": SCIM_PROBES}
TITLES = {"rest": "Modyo REST API (modyo.api = \"rest\")",
          "scim": "Modyo's SCIM server (modyo.api = \"scim\")"}  # fmt: skip


class ProbeSet(Protocol):
    leftovers: list[str]
    removed: list[str]

    async def clean_up(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Table:
    api: Api
    results: list[Result]
    leftovers: list[str]

    @property
    def offered(self) -> bool:
        """Whether this interface answered at all: its essential probes did not fail."""
        return not any(result.kind is Kind.FAIL and result.essential for result in self.results)

    @property
    def failed(self) -> bool:
        return any(result.kind is Kind.FAIL for result in self.results)


def explain() -> str:
    """Every probe and what it proves (``scim-bridge check --explain``)."""
    lines = []
    for api, probes in PROBES.items():
        lines.append(f"{TITLES[api]}; [--write]: proved only by check --write")
        for probe in probes:
            lines.append(f"  {probe.name}{' [--write]' if probe.writes else ''}")
            lines.append(f"      proves: {probe.proves}")
    lines.append(
        "Results: ok; warn (works, with a consequence to act on); skip (not probed, and why); "
        "FAIL (provisioning would break: exit status 1). The interface modyo.api does not name "
        "is probed read-only, and does not change the exit status."
    )
    return "\n".join(lines)


async def run_check(
    modyo: ModyoSettings,
    retry: RetrySettings,
    *,
    write: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    as_json: bool = False,
) -> int:
    """Probe both interfaces and return the exit status: 1 when a probe of the configured
    interface failed (provisioning would break), else 0. The configured interface's table is
    printed a line at a time, as each probe completes; the other's once probed. ``as_json``:
    one JSON document at the end instead (``check --json``)."""
    other: Api = "rest" if modyo.api == "scim" else "scim"
    where = f"at {modyo.base_url}"
    if modyo.proxy_url is not None:
        where += f" (through {redact_url(modyo.proxy_url.get_secret_value())})"
    title = f"{TITLES[modyo.api]} {where}"
    on_result = None
    if not as_json:
        width = max(len(probe.name) for probe in PROBES[modyo.api])
        _say(title)
        _say(f"{'CHECK'.ljust(width)}  RESULT  DETAIL")
        on_result = functools.partial(_print_row, width)
    configured = await _probe(modyo.api, modyo, retry, transport, write=write, on_result=on_result)
    also = await _probe(other, modyo, retry, transport, write=False)
    if as_json:
        _say(json.dumps({"configured": _json(configured, title), "other": _json(also, None)}))
    else:
        _print_end(configured.results, configured.leftovers)
        _say("")
        _print_other(f"{TITLES[other]}, read-only", also)
        if not configured.offered and also.offered:
            _say(f'\nthis Modyo offers the other interface: set modyo.api = "{other}"')
    return 1 if configured.failed else 0


def _json(table: Table, title: str | None) -> dict[str, Any]:
    return {
        "api": table.api,
        **({"title": title} if title else {}),
        "offered": table.offered,
        "failed": table.failed,
        "results": [
            {"check": result.check, "result": result.kind.value, "detail": mask(result.detail)}
            for result in table.results
        ],
        "left_behind": [mask(leftover) for leftover in table.leftovers],
    }


async def _probe(
    api: Api,
    modyo: ModyoSettings,
    retry: RetrySettings,
    transport: httpx.AsyncBaseTransport | None,
    *,
    write: bool,
    on_result: Callable[[Result], None] | None = None,
) -> Table:
    target: Any
    if api == "scim":
        client: Any = scim_upstream(modyo, retry, transport)
        target = ScimProbes(client)
    else:
        client = rest_upstream(modyo, retry, transport)
        target = RestProbes(client)
    probe_set: ProbeSet = target
    async with client.connected():
        try:
            results = await run_probes(target, PROBES[api], write=write, on_result=on_result)
        except asyncio.CancelledError:  # Ctrl-C: clean up, then say what was done
            await probe_set.clean_up()
            _say_interrupted(probe_set, write=write)
            raise
        await probe_set.clean_up()
    return Table(api, results, probe_set.leftovers)


def _say_interrupted(probe_set: ProbeSet, *, write: bool) -> None:
    if not write:
        _say("interrupted: nothing was written (read-only), nothing to clean up")
        return
    _say("interrupted: " + ("; ".join(probe_set.removed) or "nothing had been created yet"))
    for leftover in probe_set.leftovers:
        _say(f"left behind: {leftover}")


def _print_other(title: str, table: Table) -> None:
    if not table.offered:
        failed = next(result for result in table.results if result.kind is Kind.FAIL)
        _say(f"{title}: not offered by this Modyo ({failed.check}: {failed.detail})")
        return
    _print_table(title, table.results, table.leftovers)


def _print_table(title: str, results: list[Result], leftovers: list[str]) -> None:
    width = max(len(result.check) for result in results)
    _say(title)
    _say(f"{'CHECK'.ljust(width)}  RESULT  DETAIL")
    for result in results:
        _print_row(width, result)
    _print_end(results, leftovers)


def _print_row(width: int, result: Result) -> None:
    _say(f"{result.check.ljust(width)}  {result.kind.value:6}  {result.detail}")


def _print_end(results: list[Result], leftovers: list[str]) -> None:
    for leftover in leftovers:
        _say(f"left behind: {leftover}")
    counts = {kind: sum(result.kind is kind for result in results) for kind in Kind}
    if counts[Kind.FAIL]:
        _say(
            f"{counts[Kind.FAIL]} check(s) failed: provisioning would not work as is. Each line "
            "says what broke; `scim-bridge check --explain` says what each check proves."
        )
    elif counts[Kind.WARN]:
        _say(f"provisioning works, with {counts[Kind.WARN]} warning(s) to act on (above)")
    else:
        _say("all checks passed" + (f" ({counts[Kind.SKIP]} skipped)" if counts[Kind.SKIP] else ""))


def _say(line: str) -> None:
    """Print one line of the report. Its details quote Modyo's own words (a refusal's
    message, a proxy's reason), which may quote the request Modyo got: every secret is masked
    as in log lines (``bridge.logs.mask``)."""
    print(mask(line), flush=True)  # each line as its probe completes, even into a pipe
