"""``python -m bench.shares [--seconds S] [--ops a,b] [--json PATH] [--folded DIR]``: where the
bridge's CPU goes, operation by operation. The bridge (one worker) serves one operation at a
time from the load generator (concurrency 16, the fake Modyo answering at once) while
``py-spy record`` samples it (every thread, idle samples left out); each sample is put in one
category and the shares are printed per operation. Needs py-spy (the dev extra) and leave to
trace a child process (root, or ``kernel.yama.ptrace_scope`` 0 or 1).

A sample's category: first the purposes that any frame of its stack shows (the access log and
every other logging call; uuid request ids; Prometheus metrics), else the module of its
innermost frame, with generic standard-library frames (``re``, ``enum``, ``typing``,
``contextlib``, ``asyncio.timeouts`` ...) counted to their caller. "event loop" is time in
the loop itself (uvloop's C code: polling, socket reads and writes of the server side).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.checks import PhaseError, expect
from bench.procs import raise_priority
from bench.rig import CI, OPS, Bench

Rule = tuple[str, str]  # a file prefix as py-spy names files, and a function name prefix
PURPOSES: tuple[tuple[str, tuple[Rule, ...]], ...] = (  # any frame of the stack
    ("access log (logging)", (("logging/", ""), ("bridge/logs.py", ""))),
    ("uuid request ids", (("uuid.py", ""),)),
    ("metrics (prometheus)", (("prometheus_client/", ""), ("bridge/metrics.py", ""))),
)
MODULES: tuple[tuple[str, tuple[Rule, ...]], ...] = (  # the innermost non-generic frame
    ("aiohttp writer", (("aiohttp/http_writer.py", ""),)),
    (
        "aiohttp client (other)",
        (("aiohttp/", ""), ("multidict/", ""), ("yarl/", ""), ("aiohappyeyeballs/", "")),
    ),
    ("httpx client chain", (("httpx/", ""), ("httpx_aiohttp/", ""), ("httpcore/", ""))),
    ("JSON", (("json/", ""), ("orjson", ""))),
    (
        "pydantic / scim2-models",
        (("pydantic/", ""), ("pydantic_core/", ""), ("scim2_models/", "")),
    ),
    (
        "middleware stack",
        (
            ("starlette/middleware/", ""),
            ("starlette/_exception_handler.py", ""),
            ("uvicorn/middleware/", ""),
            ("bridge/edge/observe.py", ""),
            ("bridge/edge/forwarded.py", ""),
            ("bridge/edge/hosts.py", ""),
            ("bridge/edge/body.py", ""),
            ("bridge/edge/idempotency.py", ""),
            ("bridge/store/", ""),
            ("bridge/edge/app.py", ""),
            ("bridge/deadline.py", ""),
            ("bridge/request_state.py", ""),
            ("bridge/edge/protocols.py", "EndQuietly"),
            ("bridge/scim/auth.py", "BearerAuth"),
            ("bridge/scim/endpoints.py", "CaseInsensitivePaths"),
        ),
    ),
    ("bridge Modyo client", (("bridge/modyo/", ""),)),
    ("bridge SCIM logic", (("bridge/scim/", ""),)),
    ("Starlette routing, request, response", (("starlette/", ""),)),
    (
        "server layer (uvicorn, httptools)",
        (
            ("uvicorn/", "RequestResponseCycle.send"),
            ("uvicorn/protocols/", ""),
            ("bridge/edge/protocols.py", ""),
            ("bridge/run/server.py", ""),
        ),
    ),
    ("event loop", (("asyncio/", ""), ("uvloop/", ""), ("uvicorn/", ""), ("selectors.py", ""))),
)
GENERIC = (  # file prefixes counted to their caller
    "re/",
    "enum.py",
    "typing.py",
    "functools.py",
    "contextlib.py",
    "abc.py",
    "copy.py",
    "collections/",
    "dataclasses.py",
    "inspect.py",
    "weakref.py",
    "urllib/",
    "http/",
    "base64.py",
    "string.py",
    "ipaddress.py",
    "email/",
    "codecs.py",
    "<frozen",
    "<string>",
    "asyncio/timeouts.py",
    "asyncio/locks.py",
    "typing_extensions.py",
    "idna/",
)
OTHER = "other"
LOAD_MARGIN = 5.0  # seconds of load past the recording's (the load generator's own start-up)


def _frame(frame: str) -> tuple[str, str]:
    """``function (file:line)``, as py-spy writes a frame, as (file, function)."""
    function, _, place = frame.rpartition(" (")
    return place.rsplit(":", 1)[0], function


def _matches(frame: tuple[str, str], rules: tuple[Rule, ...]) -> bool:
    file, function = frame
    return any(file.startswith(prefix) and function.startswith(name) for prefix, name in rules)


def category(stack: list[str]) -> str:
    """The category of one sample; ``stack`` from the outermost frame to the innermost, each
    ``function (file:line)`` as py-spy writes them."""
    frames = [_frame(frame) for frame in stack]
    for name, rules in PURPOSES:
        if any(_matches(frame, rules) for frame in frames):
            return name
    for frame in reversed(frames):
        if frame[0].startswith(GENERIC):
            continue
        for name, rules in MODULES:
            if _matches(frame, rules):
                return name
        return OTHER
    return OTHER


def shares(folded: str) -> dict[str, float]:
    """Each category's share of the samples in py-spy's raw (folded) output."""
    counts: collections.Counter[str] = collections.Counter()
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames and frames[0].startswith(("process ", "thread ")):
            frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        counts[category(frames)] += int(count)
    total = sum(counts.values())
    return {name: count / total for name, count in counts.most_common()} if total else {}


def profile_op(bench: Bench, op: str, data: dict[str, Any], seconds: float) -> str:
    """py-spy's folded stacks of the bridge while the load generator runs ``op``."""
    pid = bench.by_target["bridge"].pid
    output = bench.log_dir / f"{op}.folded"
    spy = [
        *(shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    measured: dict[str, Any] = {}

    def load() -> None:  # the window outlasts the recording: every sample under load
        measured.update(bench.measure("bridge", op, data, duration=seconds + LOAD_MARGIN))

    loader = threading.Thread(target=load)
    bench.reset_modyo_calls()
    loader.start()
    give_up = time.monotonic() + 60
    while sum(bench.modyo_calls().values()) < 100:  # the load generator is sending
        expect(f"profile {op}", time.monotonic() < give_up, "load within 60 s", "none")
        time.sleep(0.05)
    recorded = subprocess.run(spy, capture_output=True, text=True, check=False)
    loader.join()
    expect(
        f"profile {op}",
        recorded.returncode == 0 and output.exists(),
        "py-spy to record the bridge (root, or ptrace allowed)",
        (recorded.stderr.strip().splitlines() or ["no output"])[-1],
    )
    return output.read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shares", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="recording per op")
    parser.add_argument("--ops", default=",".join(OPS), help="comma-separated operations")
    parser.add_argument("--json", type=Path, help="write the shares to this file")
    parser.add_argument("--folded", type=Path, help="keep py-spy's folded stacks here")
    args = parser.parse_args(argv)
    ops = [op for op in args.ops.split(",") if op]
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        parser.error(f"unknown operations {unknown}; known: {', '.join(OPS)}")
    logs = Path(tempfile.mkdtemp(prefix="scim-bridge-shares-"))
    bench = Bench(CI, logs)
    print(f"scheduling priority: {raise_priority()}", flush=True)
    table: dict[str, dict[str, float]] = {}
    try:
        bench.start_modyo()
        data = bench.modyo_data()
        bench.start_bridge()
        for op in ops:
            bench.phase = f"profile {op}"
            folded = profile_op(bench, op, data, args.seconds)
            if args.folded:
                args.folded.mkdir(parents=True, exist_ok=True)
                (args.folded / f"{op}.folded").write_text(folded)
            table[op] = shares(folded)
            print(f"  {op}: {sum(1 for _ in folded.splitlines())} stacks", flush=True)
    except PhaseError as error:
        print(f"bench.shares failed: {error}\n  process logs: {logs}", file=sys.stderr)
        return 1
    finally:
        bench.stop()
    shutil.rmtree(logs, ignore_errors=True)
    names = sorted(
        {n for row in table.values() for n in row},
        key=lambda n: -sum(row.get(n, 0) for row in table.values()),
    )
    print(f"\n{'share of CPU samples':<38}" + "".join(f"{op:>13}" for op in ops))
    for name in names:
        print(f"{name:<38}" + "".join(f"{table[op].get(name, 0):13.1%}" for op in ops))
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
