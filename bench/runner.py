"""``python -m bench [--quick] [--json PATH] [--modyo-api rest|scim] [--ci [--write-baseline]]``:
the bridge, side by side with its ceiling and its peer, in one run on this machine, against the
fake of Modyo's REST API or of its SCIM server (``modyo.api``); and its CPU per request relative
to a trivial endpoint's, against the committed baseline (``--ci``: that alone, judged;
docs/performance.md).

Processes (all on 127.0.0.1): ``scim-bridge fake-modyo``; ``scim-bridge serve`` (one uvicorn
worker) pointed at it; the ceiling (``bench.ceiling``: a minimal passthrough with its own HTTP
client over the same transport, no SCIM work); the peer (``scim2-server``, python-scim's
in-memory reference server); the trivial endpoint (``bench.layer``); and a load generator per
measurement (``bench.load``). Absolute figures drift on shared machines: compare the ratios,
which come from one run. A phase that finds its world other than it needs stops the run with
one line (``bench.checks``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.checks import PhaseError, expect
from bench.cpu import (
    BASELINE,
    TOLERANCE,
    baseline_record,
    load_baseline,
    over_tolerance,
    print_relative,
    relative_cpu,
)
from bench.load import user_body
from bench.procs import Process, free_port, raise_priority
from bench.stores import RedisServer, measure_stores, print_stores

SCIM_TOKEN = "bench-scim-token-0123456789-abcdefghij"
MODYO_TOKEN = "bench-modyo-token"
MODYO_AUTH = {"Authorization": f"Bearer {MODYO_TOKEN}"}  # the fake's API and control plane
OPS = ("get_user", "filter_user", "create_user", "patch_user", "add_member", "filter_group")
# per SCIM request, under docs/design/modyo-contract.md (§7 for REST, §9 for SCIM)
MIN_MODYO_CALLS = {
    "rest": {"get_user": 1, "filter_user": 1, "create_user": 1, "patch_user": 1,
             "add_member": 2, "filter_group": 1},
    # SCIM: a PATCH reads the user first (deleted users, exact diff); the 10 benchmark groups
    # fit one page of the group listing the bridge searches
    "scim": {"get_user": 1, "filter_user": 1, "create_user": 1, "patch_user": 2,
             "add_member": 2, "filter_group": 1},
}  # fmt: skip
GROUP_SIZES = (10, 1_000, 50_000)
SEEDED_USERS = 6000
BENCH_GROUPS = 10  # the groups every op's data names (add_member cycles over them)
ADD_RATE_BOUND = 5_000
"""Member adds per second no target reaches here (each is 2 calls to the one-process fake
Modyo): a measured window gets a fresh pool large enough for that rate, so every add adds a
user not yet in the group on any machine; the load generator reports a pool used up
(``exhausted``), which fails the phase instead of measuring repeated adds."""
SCAN_FILTER = (
    'userName sw "seed59" and (emails.value co "example.com" or emails.value co "example.org")'
)
"""A filter Modyo cannot search: the bridge reads and evaluates every team member (111 match:
seed59, seed590-599, seed5900-5999)."""
GROUP_COUNTS = (1_000, 10_000)  # group queries, after the groups the run already made


@dataclass(frozen=True)
class Profile:
    warmup: float
    duration: float
    concurrency: int
    levels: tuple[int, ...]
    added_latency_seconds: float
    group_repetitions: int
    scan_repetitions: int
    cpu_rounds: int  # the relative CPU section (bench/cpu.py): rounds of counted windows
    cpu_requests: int  # answers per counted window of a bridge operation
    cpu_concurrency: int = 1  # requests in flight in those windows
    warmup_requests: int = 300  # answers before a counted window starts


LOAD_TIMEOUT_SECONDS = 300  # a load window that has not ended by then fails its phase


QUICK = Profile(
    warmup=0.5,
    duration=2.0,
    concurrency=16,
    levels=(16,),
    added_latency_seconds=4.0,
    group_repetitions=9,
    scan_repetitions=5,
    cpu_rounds=2,
    cpu_requests=1_000,
)
FULL = Profile(
    warmup=1.5,
    duration=6.0,
    concurrency=16,
    levels=(1, 16, 64),
    added_latency_seconds=20.0,
    group_repetitions=31,
    scan_repetitions=15,
    cpu_rounds=4,
    cpu_requests=2_000,
)
CI = Profile(  # --ci: the relative CPU section alone
    warmup=0.5,
    duration=2.0,
    concurrency=16,
    levels=(16,),
    added_latency_seconds=0,
    group_repetitions=0,
    scan_repetitions=0,
    cpu_rounds=4,
    cpu_requests=1_000,
)


class Bench:
    def __init__(self, profile: Profile, log_dir: Path, api: str = "rest") -> None:
        self.profile = profile
        self.log_dir = log_dir
        self.api = api
        self.modyo_port, self.bridge_port = free_port(), free_port()
        self.ceiling_port, self.peer_port = free_port(), free_port()
        self.layer_port = free_port()
        self.modyo = f"http://127.0.0.1:{self.modyo_port}"
        self.processes: list[Process] = []
        self.by_target: dict[str, Process] = {}
        self.run_tag = 0
        self.fresh_users: list[dict[str, Any]] = []
        self.pools_seeded = 0
        self.phase = "start-up"  # named in a PhaseError

    # ------------------------------------------------------------------ processes

    def start_modyo(self) -> None:
        self.processes.append(
            Process(
                "fake-modyo",
                [
                    "-m",
                    "bridge",
                    "fake-modyo",
                    "--port",
                    str(self.modyo_port),
                    "--token",
                    MODYO_TOKEN,
                    "--api",
                    self.api,
                ],
                f"{self.modyo}/__fake__/calls",
                self.log_dir,
            )
        )
        self.by_target["modyo"] = self.processes[-1]

    def bridge_env(
        self, port: int, transport: str = "aiohttp", parser: str = "httptools"
    ) -> dict[str, str]:
        return {
            "BRIDGE_SERVER__PORT": str(port),
            "BRIDGE_SCIM__TOKENS": json.dumps({"bench": SCIM_TOKEN}),
            "BRIDGE_MODYO__BASE_URL": self.modyo,
            "BRIDGE_MODYO__TOKEN": MODYO_TOKEN,
            "BRIDGE_MODYO__TRANSPORT": transport,
            # one readiness probe at start-up, none in the measured windows (calls are counted)
            "BRIDGE_SERVER__READINESS_INTERVAL_SECONDS": "300",
            "BRIDGE_SERVER__READINESS_MAX_AGE_SECONDS": "600",
            "BRIDGE_MODYO__API": self.api,
            "BRIDGE_SERVER__HTTP_PARSER": parser,
        }

    def start_bridge(self, transport: str = "aiohttp", parser: str = "httptools") -> Process:
        bridge = Process(
            f"bridge-{transport}-{parser}-{self.run_tag}",
            ["-m", "bridge", "serve"],
            f"http://127.0.0.1:{self.bridge_port}/healthz",
            self.log_dir,
            self.bridge_env(self.bridge_port, transport, parser),
        )
        self.processes.append(bridge)
        self.by_target["bridge"] = bridge
        return bridge

    def start_ceiling(self) -> None:
        args = [
            "-m",
            "bench.ceiling",
            "--port",
            str(self.ceiling_port),
            "--modyo-url",
            self.modyo,
            "--token",
            MODYO_TOKEN,
            "--api",
            self.api,
        ]
        ready = f"http://127.0.0.1:{self.ceiling_port}/scim/Groups?filter=x%22x%22"
        self.by_target["ceiling"] = Process("ceiling", args, ready, self.log_dir)
        self.processes.append(self.by_target["ceiling"])

    def start_peer(self) -> None:
        args = [
            "-m",
            "scim2_server.testserver.cli",
            "--port",
            str(self.peer_port),
            "--bearer-token",
            SCIM_TOKEN,
        ]
        ready = f"http://127.0.0.1:{self.peer_port}/v2/ServiceProviderConfig"
        self.by_target["peer"] = Process("peer", args, ready, self.log_dir)
        self.processes.append(self.by_target["peer"])

    def start_layer(self, server: str, parser: str) -> Process:
        """``bench.layer``: a trivial app under plain uvicorn or the bridge's server layer."""
        args = ["-m", "bench.layer", "--port", str(self.layer_port)]
        layer = Process(
            f"layer-{server}-{parser}-{self.run_tag}",
            [*args, "--server", server, "--parser", parser],
            f"http://127.0.0.1:{self.layer_port}/healthz",
            self.log_dir,
        )
        self.processes.append(layer)
        self.by_target["layer"] = layer
        return layer

    def stop(self, process: Process | None = None) -> None:
        for each in [process] if process else list(reversed(self.processes)):
            each.stop()
            self.processes.remove(each)

    # ------------------------------------------------------------------ data

    def seed_modyo(self, users: int, groups: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
        body = {"users": users, "prefix": prefix, "groups": groups}
        answer = httpx.post(
            f"{self.modyo}/__fake__/seed", json=body, headers=MODYO_AUTH, timeout=300
        )
        expect(
            self.phase,
            answer.status_code == 201,
            f"the fake Modyo to seed {users} users and {len(groups)} groups (201)",
            f"{answer.status_code} {answer.text[:200]}",
        )
        seeded: dict[str, Any] = answer.json()
        return seeded

    def modyo_data(self) -> dict[str, Any]:
        """The known world: ``SEEDED_USERS`` team members (the scan reads them all) and
        ``BENCH_GROUPS`` empty groups; the first 1,000 users are what the ops read and write,
        the others the first fresh users for member adds."""
        groups = [{"name": f"Bench Group {n}", "members": 0} for n in range(BENCH_GROUPS)]
        seeded = self.seed_modyo(SEEDED_USERS, groups, "seed")
        users = [{"id": u["id"], "userName": u["username"]} for u in seeded["users"]]
        self.fresh_users = users[1000:]  # each add_member run takes a slice nobody added yet
        groups = [{"id": g["id"], "displayName": g["name"]} for g in seeded["groups"]]
        return {"users": users[:1000], "groups": groups}

    def fresh_pool(self, count: int) -> list[dict[str, Any]]:
        """``count`` users no group has yet: the rest of the known world's, then users seeded
        for it (which is why the scan, which needs to know how many users exist, runs first)."""
        if len(self.fresh_users) < count:
            self.pools_seeded += 1
            seeded = self.seed_modyo(max(count, 5_000), [], f"pool{self.pools_seeded}-")
            self.fresh_users += [
                {"id": u["id"], "userName": u["username"]} for u in seeded["users"]
            ]
        pool, self.fresh_users = self.fresh_users[:count], self.fresh_users[count:]
        return pool

    def pool_size(self, requests: int | None, duration: float | None) -> int:
        """Fresh users for one add_member window: one per ``BENCH_GROUPS`` adds (each user is
        added to each group once), for exactly the adds a counted window makes, or as many
        as ``ADD_RATE_BOUND`` would make in a timed one."""
        if requests is not None:  # and the answers in flight when the window closes
            adds = requests + self.profile.warmup_requests + self.profile.concurrency
        else:
            adds = int(ADD_RATE_BOUND * (self.profile.warmup + (duration or self.profile.duration)))
        return -(-adds // BENCH_GROUPS)

    def peer_data(self) -> dict[str, Any]:
        base = f"http://127.0.0.1:{self.peer_port}/v2"
        headers = {"Authorization": f"Bearer {SCIM_TOKEN}"}

        async def seed() -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
                gate = asyncio.Semaphore(8)

                async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
                    async with gate:
                        response = await client.post(path, json=body)
                        response.raise_for_status()
                        created: dict[str, Any] = response.json()
                        return created

                users = await asyncio.gather(
                    *(post("/Users", user_body(f"peer{n}@example.com")) for n in range(1500))
                )
                groups = await asyncio.gather(
                    *(
                        post(
                            "/Groups",
                            {
                                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                "displayName": f"Peer Group {n}",
                            },
                        )
                        for n in range(10)
                    )
                )
            return {
                "users": [{"id": u["id"], "userName": u["userName"]} for u in users],
                "groups": [{"id": g["id"], "displayName": g["displayName"]} for g in groups],
            }

        return asyncio.run(seed())

    # ------------------------------------------------------------------ measuring

    def measure(
        self,
        target: str,
        op: str,
        data: dict[str, Any],
        concurrency: int | None = None,
        rate: float | None = None,
        duration: float | None = None,
        requests: int | None = None,
    ) -> dict[str, Any]:
        """One window of ``op`` on ``target`` by a load-generator process (``bench.load``):
        timed (``duration``), or counted (``requests`` answers after the profile's
        ``warmup_requests``). With the server's CPU time over the whole load, per answer.
        A window whose target answered an error, or whose add_member pool ran out, fails the
        phase: its figures would not be of the operation named."""
        self.run_tag += 1
        base = self.bases()[target]
        data = dict(data)
        if op == "add_member":
            pool = self.pool_size(requests, duration)
            data["member_pool"] = self.fresh_pool(pool) if target != "peer" else data["users"]
        spec = {
            "base": base,
            "token": MODYO_TOKEN if target == "modyo" else SCIM_TOKEN,
            "op": op,
            "data": data,
            "concurrency": concurrency or self.profile.concurrency,
            "rate": rate,
            "warmup": self.profile.warmup,
            "duration": duration or self.profile.duration,
            "requests": requests,
            "warmup_requests": self.profile.warmup_requests,
            "timeout": LOAD_TIMEOUT_SECONDS,
            "tag": f"{target}{self.run_tag}",
            "modyo": self.modyo if target in ("bridge", "ceiling") else None,
            "modyo_token": MODYO_TOKEN,  # its control plane's too
        }
        what = f"{op} on {target}"
        process = self.by_target.get(target)
        cpu_before = process.cpu_seconds() if process else 0.0
        preempted_before = process.preemptions() if process else 0
        try:
            output = subprocess.run(
                [sys.executable, "-m", "bench.load"],
                input=json.dumps(spec),
                capture_output=True,
                text=True,
                timeout=LOAD_TIMEOUT_SECONDS + 30,
            )
        except subprocess.TimeoutExpired:
            raise PhaseError(
                self.phase, f"{what} to end within {LOAD_TIMEOUT_SECONDS} s", "no end"
            ) from None
        last = (output.stderr.strip().splitlines() or ["nothing on stderr"])[-1]
        expect(self.phase, output.returncode == 0, f"{what} to run", last)
        result: dict[str, Any] = json.loads(output.stdout)
        if process is not None and result["requests_with_warmup"]:
            spent = process.cpu_seconds() - cpu_before
            result["cpu_us_per_request"] = spent / result["requests_with_warmup"] * 1e6
            preempted = process.preemptions() - preempted_before
            result["preemptions_per_request"] = preempted / result["requests_with_warmup"]
        expect(
            self.phase,
            not result["exhausted"],
            f"{what}: each add a user not yet in the group ({len(data['member_pool'])} "
            f"fresh users x {BENCH_GROUPS} groups)"
            if op == "add_member"
            else what,
            f"the window wanted more adds ({result['requests_with_warmup']} answered)",
        )
        expect(
            self.phase,
            not result["errors"],
            f"{what}: no error answers",
            f"{sum(result['errors'].values())} of {result['requests']} "
            f"(by status: {result['errors']})",
        )
        return result

    def bases(self) -> dict[str, str]:
        """Where each measured target answers."""
        return {
            "bridge": f"http://127.0.0.1:{self.bridge_port}/scim",
            "ceiling": f"http://127.0.0.1:{self.ceiling_port}/scim",
            "peer": f"http://127.0.0.1:{self.peer_port}/v2",
            "modyo": self.modyo,
            "layer": f"http://127.0.0.1:{self.layer_port}",
        }

    def set_modyo_latency(self, milliseconds: float) -> None:
        httpx.put(
            f"{self.modyo}/__fake__/faults", json={"latency_ms": milliseconds}, headers=MODYO_AUTH
        ).raise_for_status()

    def modyo_calls(self) -> dict[str, int]:
        calls: dict[str, int] = httpx.get(
            f"{self.modyo}/__fake__/calls", headers=MODYO_AUTH
        ).json()["calls"]
        return calls

    def reset_modyo_calls(self) -> None:
        httpx.post(f"{self.modyo}/__fake__/reset-calls", headers=MODYO_AUTH).raise_for_status()


# ---------------------------------------------------------------------- sections


def throughput(
    bench: Bench, modyo_data: dict[str, Any], peer_data: dict[str, Any]
) -> dict[str, Any]:
    """Every op on bridge and ceiling (0 ms Modyo latency at every concurrency level, 20 ms at
    the main one) and on the peer (in memory)."""
    bench.phase = "throughput"
    results: dict[str, Any] = {}
    for latency in (0, 20):
        bench.set_modyo_latency(latency)
        for op in OPS:
            for level in bench.profile.levels if latency == 0 else (bench.profile.concurrency,):
                for target in ("bridge", "ceiling"):
                    key = f"{op}|{target}|{latency}|{level}"
                    results[key] = bench.measure(target, op, modyo_data, concurrency=level)
                    report(key, results[key])
    bench.set_modyo_latency(0)
    for op in OPS:
        key = f"{op}|peer|0|{bench.profile.concurrency}"
        results[key] = bench.measure("peer", op, peer_data)
        report(key, results[key])
    return results


def added_latency(bench: Bench, modyo_data: dict[str, Any]) -> dict[str, Any]:
    """Bridge-added latency at Entra's 25 req/s with 20 ms of Modyo latency: the bridge's
    GET /Users/{id} against a direct GET of the same team member."""
    bench.phase = "added latency"
    bench.set_modyo_latency(20)
    duration = bench.profile.added_latency_seconds
    via_bridge = bench.measure("bridge", "get_user", modyo_data, rate=25, duration=duration)
    direct_op = "modyo_get_scim_user" if bench.api == "scim" else "modyo_get_member"
    direct = bench.measure("modyo", direct_op, modyo_data, rate=25, duration=duration)
    bench.set_modyo_latency(0)
    return {
        "p50": via_bridge["p50_ms"] - direct["p50_ms"],
        "p99": via_bridge["p99_ms"] - direct["p99_ms"],
        "bridge": {k: via_bridge[k] for k in ("p50_ms", "p99_ms", "requests")},
        "direct": {k: direct[k] for k in ("p50_ms", "p99_ms", "requests")},
    }


def _members_op(op: str, ids: list[Any]) -> dict[str, Any]:
    value = [{"value": str(user_id)} for user_id in ids]
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": op, "path": "members", "value": value}],
    }


def _size_cases(insiders: list[Any], outsiders: list[Any]) -> dict[str, Any]:
    """Each case gives, for repetition n, the measured PATCH and the PATCH undoing it."""
    return {
        "add 1 member": lambda n: (
            _members_op("Add", [outsiders[n % len(outsiders)]]),
            _members_op("Remove", [outsiders[n % len(outsiders)]]),
        ),
        "remove 1 member": lambda n: (
            _members_op("Remove", [insiders[n % len(insiders)]]),
            _members_op("Add", [insiders[n % len(insiders)]]),
        ),
        "add 25 members": lambda n: (
            _members_op("Add", outsiders[:25]),
            _members_op("Remove", outsiders[:25]),
        ),
    }


def group_sizes(bench: Bench) -> list[dict[str, Any]]:
    """Issue 3's table: add one member, remove one, add 25 in one PATCH, on groups of 10,
    1,000 and 50,000 members. Each measured PATCH is undone (unmeasured) before the next."""
    bench.phase = "group sizes"
    rows = []
    base = f"http://127.0.0.1:{bench.bridge_port}/scim"
    reps = bench.profile.group_repetitions
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {SCIM_TOKEN}"}, timeout=60
    ) as client:
        for size in GROUP_SIZES:
            seeded = bench.seed_modyo(
                size, [{"name": f"Size {size}", "members": size}], f"size{size}-"
            )
            group_id = seeded["groups"][0]["id"]
            insiders = [user["id"] for user in seeded["users"]]
            outsiders = [user["id"] for user in bench.fresh_pool(25)]
            for label, case in _size_cases(insiders, outsiders).items():
                latencies, calls = [], []
                for n in range(reps):
                    measured, undo = case(n)
                    bench.reset_modyo_calls()
                    started = time.perf_counter()
                    response = client.patch(f"/Groups/{group_id}", json=measured)
                    latencies.append((time.perf_counter() - started) * 1000)
                    calls.append(sum(bench.modyo_calls().values()))
                    undone = client.patch(f"/Groups/{group_id}", json=undo)
                    for step, answer in (("the PATCH", response), ("its undo", undone)):
                        expect(
                            "group sizes",
                            answer.status_code == 204,
                            f"{label} on the group of {size}: 204 to {step}",
                            f"{answer.status_code} {answer.text[:200]}",
                        )
                latencies.sort()
                rows.append(
                    {
                        "size": size,
                        "operation": label,
                        "median_ms": statistics.median(latencies),
                        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
                        "modyo_calls": statistics.median(calls),
                    }
                )
                print(
                    f"  group of {size:>6}: {label:<16} {rows[-1]['median_ms']:7.2f} ms  "
                    f"{rows[-1]['modyo_calls']:.0f} Modyo calls",
                    flush=True,
                )
    return rows


SCAN_MATCHES = 111  # SCAN_FILTER over the seeded users
MAX_FILTER_SCAN = 10_000  # the bridge's scim.max_filter_scan (its default: the bench sets none)


def scan_path(bench: Bench) -> dict[str, Any]:
    """The scan path: ``SCAN_FILTER`` over the 6,000 seeded team members, sequential requests,
    on the bridge (read every page, render and evaluate every user) and on the ceiling (read
    and decode the same pages), at 0 and 20 ms of Modyo latency. It needs the known world
    (exactly ``SEEDED_USERS`` users, within ``scim.max_filter_scan``), so it runs before
    anything creates users, and checks that it does."""
    bench.phase = "scan"
    with httpx.Client(headers={"Authorization": f"Bearer {SCIM_TOKEN}"}, timeout=60) as client:
        listing = client.get(f"{bench.bases()['bridge']}/Users", params={"count": "0"})
    expect(
        "scan",
        listing.status_code == 200 and listing.json().get("totalResults") == SEEDED_USERS,
        f"exactly the {SEEDED_USERS:,} seeded users in Modyo (the scan runs before anything "
        "creates users)",
        f"{listing.status_code}, totalResults {listing.json().get('totalResults')}"
        if listing.status_code == 200
        else f"{listing.status_code} {listing.text[:200]}",
    )
    expect(
        "scan",
        SEEDED_USERS <= MAX_FILTER_SCAN,
        f"at most scim.max_filter_scan ({MAX_FILTER_SCAN:,}) users to scan",
        f"{SEEDED_USERS:,}",
    )
    reps = bench.profile.scan_repetitions
    targets = {
        "bridge": (bench.bridge_port, "/scim/Users", {"filter": SCAN_FILTER, "count": "10"}),
        "ceiling": (bench.ceiling_port, "/scim/scan/Users", {}),
    }
    results: dict[str, Any] = {"objects": SEEDED_USERS, "filter": SCAN_FILTER}
    for latency in (0, 20):
        bench.set_modyo_latency(latency)
        for target, (port, path, params) in targets.items():
            process = bench.by_target[target]
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {SCIM_TOKEN}"},
                timeout=120,
            ) as client:
                _scanned(target, client.get(path, params=params))  # warm-up
                bench.reset_modyo_calls()
                cpu_before, latencies = process.cpu_seconds(), []
                for _ in range(reps):
                    started = time.perf_counter()
                    response = client.get(path, params=params)
                    latencies.append(time.perf_counter() - started)
                    _scanned(target, response)
                cpu = process.cpu_seconds() - cpu_before
                calls = sum(bench.modyo_calls().values()) / reps
            median = statistics.median(latencies)
            row = {
                "median_ms": median * 1000,
                "objects_per_second": SEEDED_USERS / median,
                "cpu_us_per_object": cpu / reps / SEEDED_USERS * 1e6,
                "modyo_calls": calls,
                "total_results": response.json()["totalResults"],
            }
            results[f"{target}|{latency}"] = row
            print(
                f"  scan {target:<8} Modyo {latency:>2} ms: {row['objects_per_second']:9.0f} "
                f"objects/s  median {row['median_ms']:7.1f} ms  "
                f"{row['cpu_us_per_object']:5.1f} µs CPU/object  {calls:.0f} Modyo calls",
                flush=True,
            )
        bridge, ceiling = results[f"bridge|{latency}"], results[f"ceiling|{latency}"]
        bridge["ratio_ceiling"] = bridge["objects_per_second"] / ceiling["objects_per_second"]
    bench.set_modyo_latency(0)
    return results


def _scanned(target: str, response: httpx.Response) -> None:
    """A scan answer of the known world: the bridge's matches, the ceiling's count."""
    wanted = SCAN_MATCHES if target == "bridge" else SEEDED_USERS
    saw = f"{response.status_code} {response.text[:200]}"
    if response.status_code == 200:
        saw = f"totalResults {response.json().get('totalResults')}"
    expect(
        "scan",
        response.status_code == 200 and response.json().get("totalResults") == wanted,
        f"the {target} to answer 200 with totalResults {wanted}",
        saw,
    )


def entra_cycle(bench: Bench) -> dict[str, Any]:
    """1,000 users, 50 groups of 40 members, as Entra's first cycle sends them: query then
    create each user, query then create each group, then member adds (10 per PATCH)."""
    bench.phase = "Entra cycle"
    base = f"http://127.0.0.1:{bench.bridge_port}/scim"
    headers = {"Authorization": f"Bearer {SCIM_TOKEN}", "Content-Type": "application/scim+json"}
    users_count, groups_count, members_per_group, batch = 1000, 50, 40, 10

    def answered(what: str, response: httpx.Response, status: int) -> httpx.Response:
        expect(
            "Entra cycle",
            response.status_code == status,
            f"{status} to {what}",
            f"{response.status_code} {response.text[:200]}",
        )
        return response

    async def cycle() -> float:
        async with httpx.AsyncClient(
            base_url=base, headers=headers, timeout=60, limits=httpx.Limits(max_connections=16)
        ) as client:
            gate = asyncio.Semaphore(16)
            ids: dict[int, str] = {}
            group_ids: dict[int, str] = {}

            async def user(n: int) -> None:
                async with gate:
                    name = f"cycle{n}@contoso.com"
                    query = {"filter": f'userName eq "{name}"'}
                    found = await client.get("/Users", params=query)
                    expect(
                        "Entra cycle",
                        answered(f"the query of {name}", found, 200).json()["totalResults"] == 0,
                        f"no user {name} before the cycle creates it",
                        found.text[:200],
                    )
                    response = await client.post("/Users", json=user_body(name))
                    ids[n] = answered(f"the create of {name}", response, 201).json()["id"]

            async def group(n: int) -> None:
                async with gate:
                    name = f"Cycle Group {n}"
                    params = {"excludedAttributes": "members", "filter": f'displayName eq "{name}"'}
                    found = await client.get("/Groups", params=params)
                    expect(
                        "Entra cycle",
                        answered(f"the query of {name}", found, 200).json()["totalResults"] == 0,
                        f"no group {name} before the cycle creates it",
                        found.text[:200],
                    )
                    created = await client.post(
                        "/Groups",
                        json={
                            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                            "displayName": name,
                        },
                    )
                    group_ids[n] = answered(f"the create of {name}", created, 201).json()["id"]

            async def members(n: int, first: int) -> None:
                async with gate:
                    value = [
                        {"value": ids[(n * 17 + first + k) % users_count]} for k in range(batch)
                    ]
                    body = {
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "Add", "path": "members", "value": value}],
                    }
                    patched = await client.patch(f"/Groups/{group_ids[n]}", json=body)
                    answered(f"a member add to {group_ids[n]}", patched, 204)

            started = time.perf_counter()
            await asyncio.gather(*(user(n) for n in range(users_count)))
            await asyncio.gather(*(group(n) for n in range(groups_count)))
            await asyncio.gather(
                *(
                    members(n, first)
                    for n in range(groups_count)
                    for first in range(0, members_per_group, batch)
                )
            )
            return time.perf_counter() - started

    bench.set_modyo_latency(20)
    bench.reset_modyo_calls()
    seconds = asyncio.run(cycle())
    calls = bench.modyo_calls()
    bench.set_modyo_latency(0)
    patches = groups_count * members_per_group // batch
    if bench.api == "scim":  # a group create also reads the listing; each member is read
        minimum = 2 * users_count + 3 * groups_count + (batch + 1) * patches
    else:
        minimum = 2 * users_count + 2 * groups_count + 2 * patches
    return {
        "seconds": seconds,
        "modyo_calls": sum(calls.values()),
        "min_modyo_calls": minimum,
        "breakdown": calls,
        "modyo_latency_ms": 20,
        "concurrency": 16,
    }


def group_queries(bench: Bench) -> list[dict[str, Any]]:
    """Entra's group query (R15: displayName eq, excludedAttributes=members) as the account's
    groups grow: the groups the run made so far, then 1,000 and 10,000 (sequential, Modyo 0 ms).
    The REST contract searches by name; Modyo's SCIM server has no group filter."""
    bench.phase = "group queries"
    rows = []
    base = f"http://127.0.0.1:{bench.bridge_port}/scim"
    headers = {"Authorization": f"Bearer {SCIM_TOKEN}"}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        existing = client.get("/Groups", params={"count": "0"}).json()["totalResults"]
        for target in (existing, *GROUP_COUNTS):
            current = client.get("/Groups", params={"count": "0"}).json()["totalResults"]
            wanted = [{"name": f"Query Group {n}", "members": 0} for n in range(current, target)]
            if wanted:
                bench.seed_modyo(0, wanted, "query")
            name = wanted[-1]["name"] if wanted else "Bench Group 9"
            params = {"excludedAttributes": "members", "filter": f'displayName eq "{name}"'}
            latencies, calls = [], []
            for _ in range(bench.profile.group_repetitions):
                bench.reset_modyo_calls()
                started = time.perf_counter()
                response = client.get("/Groups", params=params)
                latencies.append((time.perf_counter() - started) * 1000)
                calls.append(sum(bench.modyo_calls().values()))
                expect(
                    "group queries",
                    response.status_code == 200 and response.json()["totalResults"] == 1,
                    f"200 with totalResults 1 to the query of {name}",
                    f"{response.status_code} {response.text[:200]}",
                )
            latencies.sort()
            rows.append(
                {
                    "groups": target,
                    "median_ms": statistics.median(latencies),
                    "p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
                    "modyo_calls": statistics.median(calls),
                }
            )
            print(
                f"  {target:>6} groups: {rows[-1]['median_ms']:8.2f} ms  "
                f"{rows[-1]['modyo_calls']:.0f} Modyo calls",
                flush=True,
            )
    return rows


def transports(bench: Bench, modyo_data: dict[str, Any]) -> dict[str, Any]:
    """The same bridge with the httpx pool instead of aiohttp, to justify the default."""
    bench.phase = "transports"
    results = {}
    for transport in ("httpx", "aiohttp"):
        bridge = bench.start_bridge(transport)
        for op in ("get_user", "filter_user"):
            results[f"{op}|{transport}"] = bench.measure("bridge", op, modyo_data)
            report(f"{op}|bridge-{transport}", results[f"{op}|{transport}"])
        bench.stop(bridge)
    return results


PARSER_OPS = ("get_user", "filter_user", "create_user", "patch_user")
LAYERS = (("uvicorn", "httptools"), ("bridge", "httptools"), ("uvicorn", "h11"), ("bridge", "h11"))


def parsers(bench: Bench, modyo_data: dict[str, Any]) -> dict[str, Any]:
    """The bridge under httptools (the default; h11 re-reads only the requests httptools
    refuses) and under h11 alone; then the server layer alone (a trivial app under plain
    uvicorn and under the bridge's protocols and BodyReader), whose CPU per request is the
    layer's own cost. Two rounds each, ABBA, so drift on a shared machine weighs on both
    alike; each figure is the mean of its two windows."""
    bench.phase = "parsers"
    windows: dict[str, list[dict[str, Any]]] = {}
    for parser in ("httptools", "h11", "h11", "httptools"):
        bridge = bench.start_bridge(parser=parser)
        for op in PARSER_OPS:
            result = bench.measure("bridge", op, modyo_data)
            windows.setdefault(f"{op}|{parser}", []).append(result)
            report(f"{op}|bridge-{parser}", result)
        bench.stop(bridge)
    for server, parser in (*LAYERS, *reversed(LAYERS)):
        layer = bench.start_layer(server, parser)
        for op in ("layer_get", "layer_post"):
            result = bench.measure("layer", op, {})
            windows.setdefault(f"{op}|{server}-{parser}", []).append(result)
            report(f"{op}|{server}-{parser}", result)
        bench.stop(layer)
    results: dict[str, Any] = {}
    for key, runs in windows.items():
        results[key] = {
            name: statistics.mean(run[name] or 0 for run in runs)
            for name in ("rps", "p50_ms", "p99_ms", "cpu_us_per_request")
        } | {"errors": sum(sum(run["errors"].values()) for run in runs)}
    for op in PARSER_OPS:
        results[f"{op}|h11÷httptools"] = (
            results[f"{op}|h11"]["rps"] / results[f"{op}|httptools"]["rps"]
        )
    return results


def print_parsers(rows: dict[str, Any]) -> None:
    print("\nHTTP parser (bridge, same run, mean of 2 windows each; CPU µs per request)")
    print(f"{'op':<13}{'httptools':>11}{'cpu µs':>8}{'h11':>9}{'cpu µs':>8}{'h11÷ht':>8}")
    for op in PARSER_OPS:
        fast, slow = rows[f"{op}|httptools"], rows[f"{op}|h11"]
        print(
            f"{op:<13}{fast['rps']:11.0f}{fast['cpu_us_per_request']:8.0f}"
            f"{slow['rps']:9.0f}{slow['cpu_us_per_request']:8.0f}"
            f"{rows[f'{op}|h11÷httptools']:8.2f}"
        )
    print("Server layer alone (trivial app; CPU µs per request, req/s)")
    for op in ("layer_get", "layer_post"):
        cells = []
        for server, parser in LAYERS:
            row = rows[f"{op}|{server}-{parser}"]
            cells.append(f"{server}-{parser} {row['cpu_us_per_request']:.0f} ({row['rps']:.0f})")
        print(f"  {op:<11}" + "  ".join(cells))


# ---------------------------------------------------------------------- output


def report(key: str, result: dict[str, Any]) -> None:
    errors = f" errors={result['errors']}" if result["errors"] else ""
    calls = "" if result["modyo_calls"] is None else f" modyo_calls={result['modyo_calls']:.2f}"
    print(
        f"  {key:<32} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:6.2f} ms  "
        f"p99 {result['p99_ms']:7.2f} ms{calls}{errors}",
        flush=True,
    )


def summary(profile: Profile, raw: dict[str, Any]) -> dict[str, Any]:
    level = profile.concurrency
    ops = {}
    for op in OPS:
        bridge = raw[f"{op}|bridge|0|{level}"]
        ceiling = raw[f"{op}|ceiling|0|{level}"]
        peer = raw[f"{op}|peer|0|{level}"]
        ops[op] = {
            "bridge_rps": bridge["rps"],
            "ceiling_rps": ceiling["rps"],
            "peer_rps": peer["rps"],
            "ratio_ceiling": bridge["rps"] / ceiling["rps"],
            "ratio_peer": bridge["rps"] / peer["rps"],
            "p50_ms": bridge["p50_ms"],
            "p95_ms": bridge["p95_ms"],
            "p99_ms": bridge["p99_ms"],
            "modyo_calls": bridge["modyo_calls"],
        }
    return ops


def cpu_per_request(profile: Profile, raw: dict[str, Any]) -> dict[str, Any]:
    """CPU time each server spent per request (µs): the ratio behind the throughput ratio."""
    level = profile.concurrency
    return {
        op: {
            target: raw[f"{op}|{target}|0|{level}"].get("cpu_us_per_request")
            for target in ("bridge", "ceiling", "peer")
        }
        for op in OPS
    }


def print_tables(result: dict[str, Any]) -> None:
    print(
        "\nThroughput at concurrency {c}, Modyo latency 0 ms, modyo.api = {api} (ratios from "
        "this run)".format(c=result["concurrency"], api=result["modyo_api"])
    )
    print(
        f"{'op':<13}{'bridge':>9}{'ceiling':>9}{'peer':>8}{'÷ceil':>7}{'÷peer':>7}{'p50':>8}{'p95':>8}"
        f"{'p99':>8}{'calls':>7}{'min':>5}{'cpu µs':>9}{'ceil µs':>9}"
    )
    for op, row in result["ops"].items():
        print(
            f"{op:<13}{row['bridge_rps']:9.0f}{row['ceiling_rps']:9.0f}{row['peer_rps']:8.0f}"
            f"{row['ratio_ceiling']:7.2f}{row['ratio_peer']:7.2f}{row['p50_ms']:8.2f}{row['p95_ms']:8.2f}"
            f"{row['p99_ms']:8.2f}{row['modyo_calls']:7.2f}{MIN_MODYO_CALLS[result['modyo_api']][op]:5}"
            f"{result['cpu_us_per_request'][op]['bridge'] or 0:9.0f}"
            f"{result['cpu_us_per_request'][op]['ceiling'] or 0:9.0f}"
        )
    print("\nWith 20 ms of Modyo latency (bridge ÷ ceiling)")
    for op in OPS:
        bridge, ceiling = (
            result["raw"][f"{op}|bridge|20|{result['concurrency']}"],
            result["raw"][f"{op}|ceiling|20|{result['concurrency']}"],
        )
        ratio = bridge["rps"] / ceiling["rps"]
        print(
            f"{op:<13}{bridge['rps']:9.0f}{ceiling['rps']:9.0f}{ratio:7.2f}"
            f"   p99 {bridge['p99_ms']:6.1f} vs {ceiling['p99_ms']:6.1f} ms"
        )
    added = result["added_latency_ms"]
    print(
        "\nBridge-added latency at 25 req/s, Modyo 20 ms: "
        f"p50 {added['p50']:.2f} ms, p99 {added['p99']:.2f} ms"
    )
    print(f"Bridge peak RSS: {result['rss_mb']:.1f} MB")
    cycle = result["cycle"]
    print(
        "Entra-style cycle (1,000 users, 50 groups x 40 members, Modyo 20 ms, 16 in flight): "
        f"{cycle['seconds']:.1f} s, {cycle['modyo_calls']} Modyo calls "
        f"(minimum {cycle['min_modyo_calls']})"
    )
    scan = result["scan"]
    for latency in (0, 20):
        bridge, ceiling = scan[f"bridge|{latency}"], scan[f"ceiling|{latency}"]
        print(
            f"Scan path ({scan['objects']:,} users, Modyo {latency} ms): bridge "
            f"{bridge['objects_per_second']:,.0f} objects/s ({bridge['median_ms']:.0f} ms per "
            f"request, {bridge['cpu_us_per_object']:.1f} µs CPU per object), ceiling "
            f"{ceiling['objects_per_second']:,.0f} ({ceiling['cpu_us_per_object']:.1f} µs): "
            f"÷ ceiling {bridge['ratio_ceiling']:.2f}, {bridge['modyo_calls']:.0f} Modyo calls"
        )
    print(
        "\nTransport (bridge, same run): "
        + ", ".join(f"{key} {row['rps']:.0f} req/s" for key, row in result["transports"].items())
    )
    print_parsers(result["parsers"])
    print("\nGroup membership changes by group size (sequential, Modyo latency 0 ms)")
    print(f"{'members':>8}  {'operation':<18}{'median':>9}{'p95':>9}{'calls':>7}")
    for row in result["group_sizes"]:
        print(
            f"{row['size']:>8}  {row['operation']:<18}{row['median_ms']:8.2f}ms"
            f"{row['p95_ms']:7.2f}ms{row['modyo_calls']:7.0f}"
        )
    print("\nEntra group query (displayName eq) by number of groups (sequential, Modyo 0 ms)")
    print(f"{'groups':>8}{'median':>9}{'p95':>9}{'calls':>7}")
    for row in result["group_queries"]:
        print(
            f"{row['groups']:>8}{row['median_ms']:8.2f}ms{row['p95_ms']:7.2f}ms"
            f"{row['modyo_calls']:7.0f}"
        )


def run_guarded(
    profile: Profile, api: str, body: Callable[[Bench], dict[str, Any]]
) -> dict[str, Any] | None:
    """``body`` on a fresh Bench; its processes stopped whatever happens. A phase that fails
    prints one line (the phase, what it expected, what it saw) and the directory where the
    processes' logs are kept; the result is then None. Logs of a run that ends are removed."""
    logs = Path(tempfile.mkdtemp(prefix="scim-bridge-bench-"))
    bench = Bench(profile, logs, api)
    print(f"scheduling priority: {raise_priority()}", flush=True)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        result = body(bench)
    except PhaseError as error:
        print(f"\nbench failed: {error}\n  process logs: {logs}", file=sys.stderr, flush=True)
        return None
    except (httpx.HTTPError, OSError, RuntimeError, ValueError, KeyError) as error:
        print(
            f"\nbench failed: phase {bench.phase}: {type(error).__name__}: {error}\n"
            f"  process logs: {logs}",
            file=sys.stderr,
            flush=True,
        )
        return None
    finally:
        bench.stop()
    shutil.rmtree(logs, ignore_errors=True)
    return result


def _terminated(number: int, frame: object) -> None:
    """SIGTERM: leave through the ``finally`` blocks, which stop every process started."""
    raise SystemExit(128 + number)


def write_json(path: Path | None, result: dict[str, Any]) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))
        print(f"results written to {path}")


def parsers_only(profile: Profile, json_path: Path | None) -> int:
    def body(bench: Bench) -> dict[str, Any]:
        print("starting fake Modyo; seeding...", flush=True)
        bench.start_modyo()
        return parsers(bench, bench.modyo_data())

    results = run_guarded(profile, "rest", body)
    if results is None:
        return 1
    print_parsers(results)
    write_json(json_path, {"parsers": results})
    return 0


def stores_only(profile: Profile, json_path: Path | None, rounds: int) -> int:
    """``--stores``: the idempotency store section alone (bench/stores.py)."""
    server: RedisServer | None = None

    def body(bench: Bench) -> dict[str, Any]:
        nonlocal server
        print("starting fake Modyo and redis-server; seeding...", flush=True)
        bench.start_modyo()
        data = bench.modyo_data()
        server = RedisServer(bench.log_dir)
        bench.phase = "stores"
        return measure_stores(bench, data, server.url, OPS, rounds)

    try:
        results = run_guarded(profile, "rest", body)
    finally:
        if server is not None:
            server.stop()
    if results is None:
        return 1
    print_stores(results)
    write_json(json_path, {"stores": results})
    return 0


def ci(json_path: Path | None, write_baseline: bool) -> int:
    """``--ci``: the relative CPU of every op (bench/cpu.py) against ``bench/baseline.json``;
    exit 1 when one rose more than ``TOLERANCE`` (or there is no baseline to judge by).
    ``--write-baseline`` records this run's figures as the baseline instead."""

    def body(bench: Bench) -> dict[str, Any]:
        print("starting fake Modyo and the bridge; seeding...", flush=True)
        bench.start_modyo()
        data = bench.modyo_data()
        bench.start_bridge()
        print("relative CPU (counted windows, Modyo 0 ms):", flush=True)
        return relative_cpu(bench, data, OPS)

    started = time.monotonic()
    figures = run_guarded(CI, "rest", body)
    if figures is None:
        return 1
    baseline = load_baseline()
    print_relative(figures, baseline)
    print(f"\nbenchmark wall time: {time.monotonic() - started:.0f} s")
    write_json(json_path, {"relative_cpu": figures})
    if write_baseline:
        BASELINE.write_text(json.dumps(baseline_record(figures), indent=2) + "\n")
        print(f"baseline written to {BASELINE}")
        return 0
    if baseline is None:
        print(f"bench --ci: no baseline to judge by ({BASELINE})", file=sys.stderr)
        return 1
    over = over_tolerance(figures, baseline)
    if over:
        print(
            f"bench --ci: relative CPU per request rose more than {TOLERANCE:.0%} over the "
            f"baseline for: {', '.join(over)}",
            file=sys.stderr,
        )
        return 1
    print(f"bench --ci: every op within +{TOLERANCE:.0%} of the baseline")
    return 0


def full_run(bench: Bench) -> dict[str, Any]:
    """Every section, in an order that keeps each one's world known: the scan first (it must
    read exactly the seeded users); then the relative CPU, on a bridge and a fake Modyo as
    fresh as ``--ci``'s, so that the baseline judges both alike (measured after the
    throughput windows, the writes' figures came out 20-35% above ``--ci``'s); then the other
    sections on the run's main bridge, then those that start bridges of their own."""
    print("starting fake Modyo, ceiling and peer; seeding...", flush=True)
    bench.start_modyo()
    modyo_data = bench.modyo_data()
    bench.start_ceiling()
    bench.start_peer()
    bench.phase = "peer seeding"
    peer_data = bench.peer_data()
    bridge = bench.start_bridge()
    print("scan path (a filter Modyo cannot search, 6,000 users):", flush=True)
    scan = scan_path(bench)
    print("relative CPU (counted windows, Modyo 0 ms):", flush=True)
    relative = relative_cpu(bench, modyo_data, OPS)
    print("throughput (target|op|Modyo latency ms|concurrency):", flush=True)
    raw = throughput(bench, modyo_data, peer_data)
    latency = added_latency(bench, modyo_data)
    print("group sizes:", flush=True)
    sizes = group_sizes(bench)
    cycle = entra_cycle(bench)
    print("group queries:", flush=True)
    queries = group_queries(bench)
    rss = bridge.peak_rss_mb()
    bench.stop(bridge)
    print("transports and HTTP parsers (bridges of their own):", flush=True)
    transport_results = transports(bench, modyo_data)
    parser_results = parsers(bench, modyo_data)
    profile = bench.profile
    return {
        "ops": summary(profile, raw),
        "relative_cpu": relative,
        "added_latency_ms": {"p50": latency["p50"], "p99": latency["p99"]},
        "rss_mb": rss,
        "cycle": {k: cycle[k] for k in ("seconds", "modyo_calls", "min_modyo_calls")},
        "scan": scan,
        "concurrency": profile.concurrency,
        "cpu_us_per_request": cpu_per_request(profile, raw),
        "quick": profile is QUICK,
        "added_latency_detail": latency,
        "cycle_detail": cycle,
        "transports": transport_results,
        "parsers": parser_results,
        "group_sizes": sizes,
        "group_queries": queries,
        "modyo_api": bench.api,
        "raw": raw,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short windows: under 3 minutes")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument(
        "--modyo-api",
        choices=["rest", "scim"],
        default="rest",
        help="benchmark against the fake REST API or the fake SCIM server (modyo.api)",
    )
    parser.add_argument(
        "--parsers-only",
        action="store_true",
        help="only the HTTP parser comparison (httptools against h11)",
    )
    parser.add_argument(
        "--stores",
        action="store_true",
        help="only the idempotency store comparison: 1 worker memory, 1 worker Redis, "
        "2 workers Redis (a redis-server of its own; Modyo at 20 ms)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the --stores comparison (default 3)"
    )
    parser.add_argument(
        "--ci",
        action="store_true",
        help="only the relative CPU per request of every op, judged against "
        f"bench/{BASELINE.name}: exit 1 when one rose more than {TOLERANCE * 100:.0f}%%",
    )
    parser.add_argument(
        "--write-baseline",
        action="store_true",
        help=f"with --ci: record this run's figures in bench/{BASELINE.name}",
    )
    args = parser.parse_args(argv)
    if args.write_baseline and not args.ci:
        parser.error("--write-baseline goes with --ci")
    if args.ci:
        return ci(args.json, args.write_baseline)
    if args.stores:
        return stores_only(QUICK if args.quick else FULL, args.json, args.rounds)
    if args.parsers_only:
        return parsers_only(QUICK if args.quick else FULL, args.json)
    if importlib.util.find_spec("scim2_server") is None:
        parser.error("the peer is missing: .venv/bin/pip install -r requirements/dev.txt")
    started = time.monotonic()
    result = run_guarded(QUICK if args.quick else FULL, args.modyo_api, full_run)
    if result is None:
        return 1
    result["wall_seconds"] = time.monotonic() - started
    print_tables(result)
    print_relative(result["relative_cpu"], load_baseline())
    print(f"\nbenchmark wall time: {result['wall_seconds']:.0f} s")
    write_json(args.json, result)
    return 0
