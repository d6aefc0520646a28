"""Relative CPU: the bridge's CPU time per request divided by a trivial endpoint's, both
measured in the same run on the same machine, and its change against the committed baseline
(``bench/baseline.json``). docs/performance.md says what it is and why.

Req/s and even CPU µs per request follow the machine (its model, its clock, what else runs);
the ratio to a trivial request under the same server stack (``bench.layer``: a plain ASGI app
answering ``{}`` under uvicorn, uvloop and httptools, the bridge's loop and parser) mostly does
not, so one figure recorded on one machine can judge a run on another. The ceiling cannot do
that job alone: it is a proxy like the bridge, and a cost both share moves both.

How it is measured, and why (each choice made the figure steadier on a shared 2-CPU machine):

- Counted windows (``bench.load``'s ``requests``): the same work on a fast or a slow machine.
- One request in flight (``Profile.cpu_concurrency``): each request is served alone. At
  concurrency 16 the CPU per request also depends on how many requests one pass of the event
  loop serves together, which follows how fast the bridge, the fake Modyo and the load
  generator run against each other on the shared CPUs: there, the figure moved with the
  machine's load.
- Rounds: each measures the trivial endpoint, every operation on the bridge, then the trivial
  endpoint again. Disturbance only ever adds CPU to a window, so each figure is the least of
  its windows: an operation's relative CPU is its lowest CPU per request over the rounds
  divided by the trivial endpoint's lowest.
- The benchmark's processes run at the highest scheduling priority it may set
  (``bench.procs.raise_priority``); preemptions per request (the server switched out while it
  could run) are shown with the figures.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.checks import expect

if TYPE_CHECKING:
    from bench.rig import Bench

BASELINE = Path(__file__).with_name("baseline.json")
TOLERANCE = 0.20  # the CI step fails when an operation's relative CPU rises more than this
TRIVIAL_SHARE = 2  # a trivial window has this many times the answers of an operation's


def relative_cpu(bench: Bench, data: dict[str, Any], ops: tuple[str, ...]) -> dict[str, Any]:
    """Every op on the running bridge (``bench.by_target["bridge"]``) and the trivial endpoint
    (started and stopped here), in ``bench.profile.cpu_rounds`` rounds of counted windows
    (``cpu_requests`` answers each; the trivial endpoint's windows get ``TRIVIAL_SHARE`` times
    as many, being that much cheaper)."""
    bench.phase = "relative CPU"
    bench.set_modyo_latency(0)
    layer = bench.start_layer("uvicorn", "httptools")
    requests, concurrency = bench.profile.cpu_requests, bench.profile.cpu_concurrency
    trivial: list[Window] = []
    windows: dict[str, list[Window]] = {op: [] for op in ops}
    started = time.monotonic()

    def _window(target: str, op: str, data: dict[str, Any], requests: int) -> Window:
        result = bench.measure(target, op, data, concurrency=concurrency, requests=requests)
        cpu: float | None = result.get("cpu_us_per_request")
        expect(
            "relative CPU",
            cpu is not None and cpu > 0,
            f"the CPU time of {target} over {op}",
            "none (the process has no /proc entry)",
        )
        return cpu or 0.0, result.get("preemptions_per_request", 0.0)

    try:
        for number in range(bench.profile.cpu_rounds):
            trivial.append(_window("layer", "layer_get", {}, requests * TRIVIAL_SHARE))
            for op in ops:
                windows[op].append(_window("bridge", op, data, requests))
            trivial.append(_window("layer", "layer_get", {}, requests * TRIVIAL_SHARE))
            unit = min(cpu for cpu, _ in trivial[-2:])
            print(
                f"  round {number + 1}: trivial {trivial[-2][0]:.1f}/{trivial[-1][0]:.1f} µs  "
                + "  ".join(f"{op} {windows[op][-1][0] / unit:.2f}" for op in ops),
                flush=True,
            )
    finally:
        bench.stop(layer)
    unit = min(cpu for cpu, _ in trivial)
    return {
        "ops": {
            op: {
                "relative_cpu": min(cpu for cpu, _ in runs) / unit,
                "cpu_us": min(cpu for cpu, _ in runs),
                "cpu_us_windows": [cpu for cpu, _ in runs],
                "preemptions_per_request": statistics.median(p for _, p in runs),
            }
            for op, runs in windows.items()
        },
        "trivial_cpu_us": unit,
        "trivial_cpu_us_windows": [cpu for cpu, _ in trivial],
        "rounds": bench.profile.cpu_rounds,
        "requests_per_window": requests,
        "concurrency": concurrency,
        "modyo_api": bench.api,
        "seconds": time.monotonic() - started,
    }


Window = tuple[float, float]  # CPU µs per request, preemptions per request


# ---------------------------------------------------------------------- the baseline


def load_baseline(path: Path = BASELINE) -> dict[str, Any] | None:
    if not path.exists():
        return None
    baseline: dict[str, Any] = json.loads(path.read_text())
    return baseline


def changes(figures: dict[str, Any], baseline: dict[str, Any] | None) -> dict[str, float | None]:
    """Each op's relative CPU against the baseline's (+0.25: a quarter more CPU per request);
    None where the baseline has no figure for it, or is of the other upstream (``modyo.api``)."""
    recorded = _comparable(figures, baseline)
    return {
        op: row["relative_cpu"] / recorded[op]["relative_cpu"] - 1 if op in recorded else None
        for op, row in figures["ops"].items()
    }


def _comparable(figures: dict[str, Any], baseline: dict[str, Any] | None) -> dict[str, Any]:
    """The baseline's figures by op, if they are of the same upstream as ``figures``."""
    same_api = figures.get("modyo_api", "rest") == (baseline or {}).get("modyo_api", "rest")
    recorded: dict[str, Any] = (baseline or {}).get("ops", {}) if same_api else {}
    return recorded


def over_tolerance(figures: dict[str, Any], baseline: dict[str, Any] | None) -> list[str]:
    """The ops whose relative CPU rose more than ``TOLERANCE`` over the baseline."""
    return [
        op
        for op, change in changes(figures, baseline).items()
        if change is not None and change > TOLERANCE
    ]


def print_relative(figures: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    print(
        f"\nRelative CPU (bridge CPU per request ÷ a trivial uvicorn request's, same run; trivial: "
        f"{figures['trivial_cpu_us']:.1f} µs; {figures['requests_per_window']:,} answers per "
        f"window, {figures['rounds']} round(s), concurrency {figures['concurrency']}, "
        "Modyo 0 ms)"
    )
    if baseline is None:
        print(f"  no baseline ({BASELINE.name}): python -m bench --ci --write-baseline records one")
    elif baseline.get("modyo_api", "rest") != figures.get("modyo_api", "rest"):
        print(f"  the baseline is of modyo.api = {baseline.get('modyo_api', 'rest')}: not compared")
    else:
        print(
            f"  baseline: {baseline['recorded']}, commit {baseline['commit'][:10]}, "
            f"{baseline['machine']['cpu']} x{baseline['machine']['cpus']}, trivial "
            f"{baseline['trivial_cpu_us']:.1f} µs"
        )
    print(f"{'op':<13}{'cpu µs':>9}{'preempt':>9}{'relative':>10}{'baseline':>10}{'change':>9}")
    recorded = _comparable(figures, baseline)
    for op, change in changes(figures, baseline).items():
        row = figures["ops"][op]
        before = f"{recorded[op]['relative_cpu']:10.2f}" if op in recorded else f"{'-':>10}"
        after = f"{change:+9.0%}" if change is not None else f"{'-':>9}"
        flag = f"  over +{TOLERANCE:.0%}" if change is not None and change > TOLERANCE else ""
        print(
            f"{op:<13}{row['cpu_us']:9.0f}{row['preemptions_per_request']:9.2f}"
            f"{row['relative_cpu']:10.2f}{before}{after}{flag}"
        )


def baseline_record(figures: dict[str, Any]) -> dict[str, Any]:
    """What ``--write-baseline`` commits: the figures, and what they were measured on."""
    return {
        "recorded": datetime.now(UTC).strftime("%Y-%m-%d"),
        "commit": _git("rev-parse", "HEAD"),
        "bridge_tree": _git("rev-parse", "HEAD:bridge"),
        "machine": machine(),
        "modyo_api": figures["modyo_api"],
        "trivial_cpu_us": round(figures["trivial_cpu_us"], 2),
        "requests_per_window": figures["requests_per_window"],
        "rounds": figures["rounds"],
        "ops": {
            op: {"relative_cpu": round(row["relative_cpu"], 3), "cpu_us": round(row["cpu_us"], 1)}
            for op, row in figures["ops"].items()
        },
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent, check=False
    )
    return done.stdout.strip() or "unknown"
