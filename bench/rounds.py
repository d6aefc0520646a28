"""Several setups measured side by side in one run: every operation on each setup in turn,
round after round, the order reversed every other round so that drift on a shared machine
weighs on all alike; then each figure's median over the rounds and its spread
(lowest-highest). ``bench.journal_ab`` and ``bench.stores`` compare their setups so."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.rig import Bench

Runs = dict[str, dict[str, list[dict[str, Any]]]]
"""Each op's results, by setup, one per round."""


def alternate(
    bench: Bench,
    ports: Mapping[str, int],
    ops: Iterable[str],
    data: dict[str, Any],
    rounds: int,
    show: Callable[[int, str, str, dict[str, Any]], None],
) -> Runs:
    """``rounds`` rounds of every op on every setup (``ports``: each setup's bridge, started
    and in ``bench.by_target`` under its name); ``show`` prints each window's result."""
    setups = list(ports)
    runs: Runs = {op: {setup: [] for setup in setups} for op in ops}
    for number in range(rounds):
        order = setups if number % 2 == 0 else setups[::-1]
        for op in runs:
            for setup in order:
                bench.bridge_port = ports[setup]
                bench.by_target["bridge"] = bench.by_target[setup]
                result = bench.measure("bridge", op, data)
                runs[op][setup].append(result)
                show(number + 1, op, setup, result)
    return runs


def medians(results: Sequence[dict[str, Any]], names: Iterable[str]) -> dict[str, Any]:
    """Each figure's median over ``results`` and its ``_range`` [lowest, highest] (a figure
    a window did not give counts as 0)."""
    row: dict[str, Any] = {}
    for name in names:
        values = [result.get(name) or 0.0 for result in results]
        row[name] = statistics.median(values)
        row[f"{name}_range"] = [min(values), max(values)]
    return row
