"""``python -m bench --journal``: what the provisioning journal costs a SCIM request, side by
side in one run. Four bridges (one uvicorn worker each) against one fake Modyo answering at
once (the bridge's own CPU is then all there is to measure: the journal's share is at its
largest): the memory idempotency store with the journal off and on (its file sink, the
memory history), and the Redis store with the journal off and on (the file sink, the capped
Redis stream every replica shares), the Redis ones on a ``redis-server`` the run starts.

Measured in alternating rounds (``bench.rounds``); the table gives each figure's median over
the rounds and its spread (lowest-highest), and the journal's cost per setup: throughput lost
(%), p50 added (ms) and CPU added (µs), per round then the median; the CPU split into the
event loop's thread and the others (the journal's writer).
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.procs import Process, free_port
from bench.rounds import Runs, alternate, medians

if TYPE_CHECKING:
    from bench.rig import Bench

JOURNAL_KEY = "bench-journal-key-0123456789abcdefghij"
SETUPS: dict[str, dict[str, str]] = {
    "memory, journal off": {},
    "memory, journal on": {"journal": "on"},
    "Redis, journal off": {"redis": "on"},
    "Redis, journal on": {"redis": "on", "journal": "on"},
}
PAIRS = {"memory": ("memory, journal off", "memory, journal on"),
         "Redis": ("Redis, journal off", "Redis, journal on")}  # fmt: skip
OPS = ("create_user", "patch_user", "get_user")
TARGET_THROUGHPUT_LOSS = 0.05
TARGET_P50_MS = 0.2
BEFORE = "memory, journal on, before"
"""With ``BENCH_JOURNAL_BEFORE`` naming another source tree (an earlier commit's, e.g. from
``git archive``): that tree's bridge with the journal on, beside the others in the same run,
its cost against the same journal-off bridge ("memory, before"): a change to the journal
judged side by side."""


def setups() -> dict[str, dict[str, str]]:
    chosen = dict(SETUPS)
    before = os.environ.get("BENCH_JOURNAL_BEFORE")
    if before:
        chosen[BEFORE] = {"journal": "on", "tree": str(Path(before).resolve())}
    return chosen


def _env(bench: Bench, port: int, number: int, setup: dict[str, str], redis_url: str,
         directory: Path) -> dict[str, str]:  # fmt: skip
    env = bench.bridge_env(port)
    if setup.get("redis"):
        env |= {
            "BRIDGE_IDEMPOTENCY__BACKEND": "redis",
            "BRIDGE_IDEMPOTENCY__REDIS_URL": redis_url,
            "BRIDGE_IDEMPOTENCY__KEY_PREFIX": f"benchj{number}:",
        }
    if setup.get("tree"):  # its own tree first on sys.path, not the current directory's
        env |= {"PYTHONPATH": setup["tree"], "PYTHONSAFEPATH": "1"}
    if setup.get("journal"):
        env |= {
            "BRIDGE_JOURNAL__ENABLED": "true",
            "BRIDGE_JOURNAL__FILE": str(directory / "journal.jsonl"),
            "BRIDGE_JOURNAL__KEY": JOURNAL_KEY,
            "BRIDGE_JOURNAL__REPLICA": f"bench-{number}",
        }
    return env


def measure_journal(
    bench: Bench, data: dict[str, Any], redis_url: str, rounds: int
) -> dict[str, Any]:
    """Every op on the four setups (all running, each on its own port), ``rounds`` times."""
    ports: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-journal-", dir=".") as directory:
        chosen = setups()
        for number, (setup, options) in enumerate(chosen.items()):
            port = free_port()
            env = _env(bench, port, number, options, redis_url, Path(directory))
            process = Process(
                f"journal-{number}", ["-m", "bridge", "serve"],
                f"http://127.0.0.1:{port}/healthz", bench.log_dir, env,
            )  # fmt: skip
            bench.processes.append(process)
            bench.by_target[setup] = process
            ports[setup] = port
        runs = alternate(bench, ports, OPS, data, rounds, _show)
        lines = sum(len(path.read_bytes().splitlines()) for path in Path(directory).glob("*.jsonl"))
        for setup in chosen:
            bench.stop(bench.by_target.pop(setup))
    return summarise(runs) | {
        "rounds": rounds,
        "concurrency": bench.profile.concurrency,
        "journal_lines": lines,
        "raw": {f"{op}|{s}": r for op, by in runs.items() for s, r in by.items()},
    }


def _show(number: int, op: str, setup: str, result: dict[str, Any]) -> None:
    print(
        f"  round {number} {op:<12}{setup:<21}{result['rps']:8.1f} req/s  "
        f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
        f"cpu {result.get('cpu_us_per_request', 0):6.0f} µs",
        flush=True,
    )


def summarise(runs: Runs) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for op, by_setup in runs.items():
        for setup, results in by_setup.items():
            names = ("rps", "p50_ms", "p99_ms", "cpu_us_per_request")
            table[f"{op}|{setup}"] = medians(results, names)
    cost: dict[str, Any] = {}
    pairs_of = dict(PAIRS)
    if BEFORE in next(iter(runs.values()), {}):
        pairs_of["memory, before"] = ("memory, journal off", BEFORE)
    for store, (off, on) in pairs_of.items():
        for op, by_setup in runs.items():
            pairs = list(zip(by_setup[off], by_setup[on], strict=True))
            lost = [1 - b["rps"] / a["rps"] for a, b in pairs]
            added = [b["p50_ms"] - a["p50_ms"] for a, b in pairs]
            cpu = [
                (b.get("cpu_us_per_request") or 0) - (a.get("cpu_us_per_request") or 0)
                for a, b in pairs
            ]
            loop = [
                (b.get("loop_cpu_us_per_request") or 0) - (a.get("loop_cpu_us_per_request") or 0)
                for a, b in pairs
            ]
            cost[f"{op}|{store}"] = {
                "throughput_lost": statistics.median(lost),
                "throughput_lost_range": [min(lost), max(lost)],
                "p50_added_ms": statistics.median(added),
                "p50_added_ms_range": [min(added), max(added)],
                "cpu_added_us": statistics.median(cpu),
                "loop_cpu_added_us": statistics.median(loop),
                "threads_cpu_added_us": statistics.median(
                    [c - o for c, o in zip(cpu, loop, strict=True)]
                ),
            }
    return {"table": table, "cost": cost}


def print_journal(result: dict[str, Any]) -> None:
    print(
        f"\nJournal cost (Modyo 0 ms, concurrency {result['concurrency']}, one worker, median "
        f"of {result['rounds']} rounds, lowest-highest in brackets; "
        f"{result['journal_lines']} journal lines written)"
    )
    print(f"{'op':<12}{'setup':<21}{'req/s':>22}{'p50 ms':>22}{'p99 ms':>22}{'cpu µs':>9}")
    for key, row in result["table"].items():
        op, setup = key.split("|")
        cells = "".join(
            f"{row[n]:9.1f} ({row[f'{n}_range'][0]:.1f}-{row[f'{n}_range'][1]:.1f})".rjust(22)
            for n in ("rps", "p50_ms", "p99_ms")
        )
        print(f"{op:<12}{setup:<21}{cells}{row['cpu_us_per_request']:9.0f}")
    print(
        f"\nWhat the journal adds (on minus off, same store; targets: at most "
        f"{TARGET_THROUGHPUT_LOSS:.0%} throughput, {TARGET_P50_MS} ms p50)"
    )
    for key, row in result["cost"].items():
        op, store = key.split("|")
        low, high = row["throughput_lost_range"]
        p_low, p_high = row["p50_added_ms_range"]
        print(
            f"  {op:<12}{store:<8} throughput {-row['throughput_lost']:+6.1%} "
            f"({-high:+.1%} to {-low:+.1%})  p50 {row['p50_added_ms']:+6.3f} ms "
            f"({p_low:+.3f} to {p_high:+.3f})  cpu {row['cpu_added_us']:+5.0f} µs "
            f"(event loop {row['loop_cpu_added_us']:+4.0f}, "
            f"other threads {row['threads_cpu_added_us']:+4.0f})"
        )
