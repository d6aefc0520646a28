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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from bridge.config import ModyoSettings, RetrySettings, redact_url
from bridge.logs import mask
from bridge.modyo.probes import Kind, Probe, Result, run_probes
from bridge.modyo.rest_probes import REST_PROBES, RestProbes
from bridge.modyo.scim_probes import SCIM_PROBES, ScimProbes
from bridge.modyo.upstreams import Api, rest_upstream, scim_upstream

TITLES = {"rest": "Modyo REST API (modyo.api = \"rest\")",
          "scim": "Modyo's SCIM server (modyo.api = \"scim\")"}  # fmt: skip


class ProbeSet(Protocol):
    leftovers: list[str]

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
    for api, probes in (("rest", REST_PROBES), ("scim", SCIM_PROBES)):
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
) -> int:
    """Probe both interfaces, print two tables, and return the exit status: 1 when a probe of
    the configured interface failed (provisioning would break), else 0."""
    other: Api = "rest" if modyo.api == "scim" else "scim"
    configured = await _probe(modyo.api, modyo, retry, transport, write=write)
    also = await _probe(other, modyo, retry, transport, write=False)
    where = f"at {modyo.base_url}"
    if modyo.proxy_url is not None:
        where += f" (through {redact_url(modyo.proxy_url.get_secret_value())})"
    _print_table(f"{TITLES[modyo.api]} {where}", configured.results, configured.leftovers)
    _say("")
    _print_other(f"{TITLES[other]}, read-only", also)
    if not configured.offered and also.offered:
        _say(f'\nthis Modyo offers the other interface: set modyo.api = "{other}"')
    return 1 if configured.failed else 0


async def _probe(
    api: Api,
    modyo: ModyoSettings,
    retry: RetrySettings,
    transport: httpx.AsyncBaseTransport | None,
    *,
    write: bool,
) -> Table:
    target: Any
    probes: Sequence[Probe[Any]]
    if api == "scim":
        client: Any = scim_upstream(modyo, retry, transport)
        target, probes = ScimProbes(client), SCIM_PROBES
    else:
        client = rest_upstream(modyo, retry, transport)
        target, probes = RestProbes(client), REST_PROBES
    probe_set: ProbeSet = target
    async with client.connected():
        try:
            results = await run_probes(target, probes, write=write)
        finally:
            await probe_set.clean_up()
    return Table(api, results, probe_set.leftovers)


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
        _say(f"{result.check.ljust(width)}  {result.kind.value:6}  {result.detail}")
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
    print(mask(line))
