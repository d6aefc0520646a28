"""``python -m bench.compare --baseline DIR``: this checkout's bridge against another
checkout's (``DIR``, e.g. a ``git worktree`` of the previous ``main``), side by side in one
run, on the same fake Modyo and data: the before/after figures a change is judged by.

Each round measures every operation on both bridges, alternating which goes first, at
concurrency 16 with Modyo answering at once (where the bridge's own CPU decides) or after
``--modyo-latency-ms``; the medians of the rounds and their ratio (after ÷ before) are
printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.procs import Process, free_port
from bench.rig import FULL, MODYO_TOKEN, OPS, QUICK, SCIM_TOKEN, Bench, Profile


class Comparison(Bench):
    def __init__(self, profile: Profile, log_dir: Path, baseline: Path) -> None:
        super().__init__(profile, log_dir)
        self.baseline = baseline
        self.baseline_port = free_port()

    def bases(self) -> dict[str, str]:
        return super().bases() | {"baseline": f"http://127.0.0.1:{self.baseline_port}/scim"}

    def baseline_tokens(self) -> str:
        """``scim.tokens`` in the form the other checkout reads: a table of named tokens, or
        the plain list that checkouts before named tokens took."""
        example = (self.baseline / "config.example.toml").read_text()
        if "[scim.tokens]" in example:
            return json.dumps({"bench": SCIM_TOKEN})
        return json.dumps([SCIM_TOKEN])

    def start_baseline(self) -> None:
        env = {
            "PYTHONPATH": str(self.baseline),
            "BRIDGE_SERVER__PORT": str(self.baseline_port),
            "BRIDGE_SCIM__TOKENS": self.baseline_tokens(),
            "BRIDGE_MODYO__BASE_URL": self.modyo,
            "BRIDGE_MODYO__TOKEN": MODYO_TOKEN,
        }
        ready = f"http://127.0.0.1:{self.baseline_port}/healthz"
        process = Process(
            "baseline", ["-m", "bridge", "serve"], ready, self.log_dir, env, cwd=self.baseline
        )
        self.processes.append(process)
        self.by_target["baseline"] = process


def compare(bench: Comparison, rounds: int, latency_ms: float = 0) -> dict[str, Any]:
    data = bench.modyo_data()
    bench.set_modyo_latency(latency_ms)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        op: {"baseline": [], "bridge": []} for op in OPS
    }
    for number in range(rounds):
        for op in OPS:
            order = ("baseline", "bridge") if number % 2 == 0 else ("bridge", "baseline")
            for target in order:
                runs[op][target].append(bench.measure(target, op, data))
    table = {}
    for op, by_target in runs.items():
        row = {}
        for target, results in by_target.items():
            row[target] = {
                "rps": statistics.median(r["rps"] for r in results),
                "p50_ms": statistics.median(r["p50_ms"] for r in results),
                "p99_ms": statistics.median(r["p99_ms"] for r in results),
                "errors": sum(sum(r["errors"].values()) for r in results),
            }
        row["ratio"] = row["bridge"]["rps"] / row["baseline"]["rps"]
        table[op] = row
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("--baseline", type=Path, required=True, help="the other checkout")
    parser.add_argument("--quick", action="store_true", help="short windows")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--modyo-latency-ms",
        type=float,
        default=0,
        help="Modyo's latency per call (default 0: where the bridge's own CPU decides; 20 for "
        "a realistic Modyo, where event-loop waits show)",
    )
    parser.add_argument("--json", type=Path, help="write the results to this file")
    args = parser.parse_args(argv)
    if not (args.baseline / "bridge" / "__init__.py").exists():
        parser.error(f"{args.baseline} is not a scim-bridge checkout")
    with tempfile.TemporaryDirectory(prefix="scim-bridge-compare-") as logs:
        bench = Comparison(QUICK if args.quick else FULL, Path(logs), args.baseline.resolve())
        try:
            bench.start_modyo()
            bench.start_bridge()
            bench.start_baseline()
            table = compare(bench, args.rounds, args.modyo_latency_ms)
        finally:
            bench.stop()
    header = f"{'op':<13}{'before':>9}{'after':>9}{'after÷before':>14}"
    print(f"\n{header}{'p50 b/a ms':>14}{'p99 b/a ms':>16}")
    for op, row in table.items():
        before, after = row["baseline"], row["bridge"]
        print(
            f"{op:<13}{before['rps']:9.0f}{after['rps']:9.0f}{row['ratio']:14.2f}"
            f"{before['p50_ms']:7.2f}/{after['p50_ms']:<6.2f}{before['p99_ms']:8.2f}/{after['p99_ms']:<7.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
