"""``python -m bench --stores``: the idempotency store's cost, in one run. The bridge with
one uvicorn worker and the memory store, one worker and Redis, two workers and Redis
(``server.workers``), against one fake Modyo answering after 20 ms and a real
``redis-server`` the run starts on a free loopback port (no persistence) and stops.

Measured in alternating rounds (``bench.rounds``); the tables give each figure's median over
the rounds and its spread (lowest-highest), and the p50 latency Redis adds to each write
(Redis one worker minus memory one worker, per round, then the median).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import redis

from bench.procs import Process, free_port, stop
from bench.rounds import Runs, alternate, medians

if TYPE_CHECKING:
    from bench.rig import Bench

SETUPS: dict[str, dict[str, str]] = {
    "1 worker, memory": {},
    "1 worker, Redis": {"BRIDGE_IDEMPOTENCY__BACKEND": "redis"},
    "2 workers, Redis": {"BRIDGE_IDEMPOTENCY__BACKEND": "redis", "BRIDGE_SERVER__WORKERS": "2"},
}
WRITES = ("create_user", "patch_user", "add_member")
WRITE_KINDS = ("POST /scim/Users", "PATCH /scim/Users/{id}", "PATCH /scim/Groups/{id}")
PHASES = ("pre", "upstream", "post", "store", "store_calls", "total")
MODYO_LATENCY_MS = 20
BEFORE = "1 worker, Redis, before"
"""With ``BENCH_STORES_BEFORE`` naming another source tree (an earlier commit's, e.g. from
``git archive``): that tree's bridge with one worker and Redis, measured in the same run as
the others, so a change to the store is judged side by side."""


def setups() -> dict[str, dict[str, str]]:
    chosen = dict(SETUPS)
    before = os.environ.get("BENCH_STORES_BEFORE")
    if before:  # its own tree first on sys.path, not the current directory's
        tree = {"PYTHONPATH": str(Path(before).resolve()), "PYTHONSAFEPATH": "1"}
        chosen[BEFORE] = SETUPS["1 worker, Redis"] | tree
    return chosen


TARGET_ADDED_P50_MS = 1.0


class RedisServer:
    """A ``redis-server`` on a free 127.0.0.1 port without persistence, up once it answers
    PING (a hang guard of 30 s)."""

    def __init__(self, log_dir: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log: IO[bytes] = (log_dir / "redis-server.log").open("wb")
        self.popen = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.popen.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server did not start; see {log_dir}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        stop(self.popen, self._log)


def worker_processes(pid: int) -> int:
    """How many processes serve: the process itself, or the workers uvicorn forked under it."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    workers = [
        child
        for child in children
        if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
    return len(workers) or 1


def measure_stores(
    bench: Bench, data: dict[str, Any], redis_url: str, ops: tuple[str, ...], rounds: int
) -> dict[str, Any]:
    """Every op on the three setups (all running, each on its own port), ``rounds`` times."""
    bench.set_modyo_latency(MODYO_LATENCY_MS)
    ports: dict[str, int] = {}
    seen: dict[str, int] = {}
    chosen = setups()
    for number, (setup, extra) in enumerate(chosen.items()):
        port = free_port()
        env = bench.bridge_env(port) | extra
        if "BRIDGE_IDEMPOTENCY__BACKEND" in extra:
            env |= {
                "BRIDGE_IDEMPOTENCY__REDIS_URL": redis_url,
                "BRIDGE_IDEMPOTENCY__KEY_PREFIX": f"bench{number}:",
            }
        # one worker: timed by bench.phases (its JSON written when the process stops)
        timed = "BRIDGE_SERVER__WORKERS" not in extra
        args = ["-m", "bench.phases", str(bench.log_dir / f"phases-{number}.json")]
        process = Process(
            f"stores-{number}", args if timed else ["-m", "bridge", "serve"],
            f"http://127.0.0.1:{port}/healthz", bench.log_dir, env,
        )  # fmt: skip
        bench.processes.append(process)
        bench.by_target[setup] = process
        ports[setup] = port
        seen[setup] = worker_processes(process.pid)
    runs = alternate(bench, ports, ops, data, rounds, _show)
    bench.set_modyo_latency(0)
    timings: dict[str, Any] = {}
    for number, setup in enumerate(chosen):
        bench.stop(bench.by_target.pop(setup))
        path = bench.log_dir / f"phases-{number}.json"
        if path.exists():
            timings[setup] = phase_medians(json.loads(path.read_text()))
    return summarise(runs, ops) | {
        "phases": timings,
        "redis_added_in_process_ms": redis_added(timings),
        "redis_added_before_in_process_ms": redis_added(timings, BEFORE),
        "redis_added_total_ms": redis_added(timings, phase="total"),
        "redis_added_before_total_ms": redis_added(timings, BEFORE, "total"),
        "workers_seen": seen,
        "rounds": rounds,
        "concurrency": bench.profile.concurrency,
        "modyo_latency_ms": MODYO_LATENCY_MS,
        "raw": {f"{op}|{s}": r for op, by in runs.items() for s, r in by.items()},
    }


def _show(number: int, op: str, setup: str, result: dict[str, Any]) -> None:
    print(
        f"  round {number} {op:<13}{setup:<18}{result['rps']:8.1f} req/s  "
        f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms",
        flush=True,
    )


def phase_medians(by_kind: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Each request kind's median phases (ms) over every request the setup served."""
    return {
        kind: {"requests": len(rows)}
        | {name: statistics.median(row[name] for row in rows) for name in PHASES}
        | {"pre+post": statistics.median(row["pre"] + row["post"] for row in rows)}
        for kind, rows in by_kind.items()
        if rows
    }


def redis_added(
    timings: dict[str, Any], setup: str = "1 worker, Redis", phase: str = "pre+post"
) -> dict[str, float]:
    """Per write kind: a phase's median with Redis minus with memory (``pre+post``: the time
    around the Modyo calls; ``total``: arrival to answer, the Modyo calls included)."""
    memory, shared = timings.get("1 worker, memory"), timings.get(setup)
    if not memory or not shared:
        return {}
    return {
        kind: shared[kind][phase] - memory[kind][phase]
        for kind in WRITE_KINDS
        if kind in memory and kind in shared
    }


def summarise(runs: Runs, ops: tuple[str, ...]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for op in ops:
        for setup, results in runs[op].items():
            row = medians(results, ("rps", "p50_ms", "p99_ms"))
            row["errors"] = sum(sum(r["errors"].values()) for r in results)
            row["modyo_calls"] = statistics.median(r["modyo_calls"] or 0 for r in results)
            cpu = [
                r.get("cpu_us_per_request") for r in results
            ]  # one process: a pool parent tells nothing
            row["cpu_us"] = statistics.median(c or 0 for c in cpu) if "1 worker" in setup else None
            table[f"{op}|{setup}"] = row
    added: dict[str, Any] = {}
    memory, shared = "1 worker, memory", "1 worker, Redis"
    for op in WRITES:
        if op not in ops:
            continue
        deltas = [
            r["p50_ms"] - m["p50_ms"]
            for r, m in zip(runs[op][shared], runs[op][memory], strict=True)
        ]
        added[op] = {"p50_ms": statistics.median(deltas), "range": [min(deltas), max(deltas)]}
    cpu_added = {
        op: table[f"{op}|{shared}"]["cpu_us"] - table[f"{op}|{memory}"]["cpu_us"]
        for op in WRITES
        if op in ops
    }
    return {"table": table, "redis_added_p50_ms": added, "redis_added_cpu_us": cpu_added}


def print_stores(result: dict[str, Any]) -> None:
    print(
        f"\nIdempotency store (Modyo {MODYO_LATENCY_MS} ms, concurrency {result['concurrency']}, "
        f"median of {result['rounds']} rounds, lowest-highest in brackets; workers seen: "
        + ", ".join(f"{k} {v}" for k, v in result["workers_seen"].items())
        + ")"
    )
    print(
        f"{'op':<13}{'setup':<18}{'req/s':>22}{'p50 ms':>22}{'p99 ms':>22}{'calls':>7}{'cpu µs':>8}"
    )
    for key, row in result["table"].items():
        op, setup = key.split("|")
        cells = "".join(
            f"{row[name]:9.1f} ({row[f'{name}_range'][0]:.1f}-{row[f'{name}_range'][1]:.1f})".rjust(
                22
            )
            for name in ("rps", "p50_ms", "p99_ms")
        )
        errors = f"  errors={row['errors']}" if row["errors"] else ""
        cpu = "" if row["cpu_us"] is None else f"{row['cpu_us']:8.0f}"
        print(f"{op:<13}{setup:<18}{cells}{row['modyo_calls']:7.2f}{cpu}{errors}")
    print("\nWhere a request's time goes (1 worker, bench.phases; median ms over every request)")
    print(f"{'request':<26}{'setup':<18}" + "".join(f"{n:>12}" for n in (*PHASES, "pre+post")))
    for setup, kinds in result["phases"].items():
        for kind, row in sorted(kinds.items()):
            cells = "".join(f"{row[n]:12.2f}" for n in (*PHASES, "pre+post"))
            print(f"{kind:<26}{setup:<18}{cells}")
    print(
        f"Redis-added time inside the bridge (target <= {TARGET_ADDED_P50_MS} ms at p50), "
        "around the Modyo calls (pre+post) and from arrival to answer (total):"
    )
    before = result.get("redis_added_before_in_process_ms") or {}
    total, total_before = result["redis_added_total_ms"], result["redis_added_before_total_ms"]
    for kind, added in result["redis_added_in_process_ms"].items():
        then = f"  (before: {before[kind]:+6.2f} ms)" if kind in before else ""
        whole = f"   total {total[kind]:+6.2f} ms" if kind in total else ""
        whole += f"  (before: {total_before[kind]:+6.2f} ms)" if kind in total_before else ""
        print(f"  {kind:<26}pre+post {added:+6.2f} ms{then}{whole}")
    cpu_added: dict[str, float] = result.get("redis_added_cpu_us") or {}
    if cpu_added:
        print("CPU per request Redis adds (1 worker; the bound when the bridge is CPU-bound):")
        for op, micros in cpu_added.items():
            print(f"  {op:<13}{micros:+6.0f} µs")
    print("p50 latency Redis adds to writes, as the client saw it (1 worker):")
    for op, added in result["redis_added_p50_ms"].items():
        low, high = added["range"]
        print(f"  {op:<13}{added['p50_ms']:+6.2f} ms ({low:+.2f} to {high:+.2f})")
