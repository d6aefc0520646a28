"""``python -m bench [--quick] [--json PATH] [--modyo-api rest|scim]``: the bridge, side by side
with its ceiling and its peer, in one run on this machine, against the fake of Modyo's REST API
or of its SCIM server (``modyo.api``).

Processes (all on 127.0.0.1): ``scim-bridge fake-modyo``; ``scim-bridge serve`` (one uvicorn
worker) pointed at it; the ceiling (``bench.ceiling``: a minimal passthrough with the same HTTP
client and transport, no SCIM work); the peer (``scim2-server``, python-scim's in-memory
reference server); and a load generator per measurement (``bench.load``). Absolute figures
drift on shared machines: compare the ratios, which come from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.load import user_body
from bench.procs import Process, free_port
from bench.stores import RedisServer, measure_stores, print_stores

SCIM_TOKEN = "bench-scim-token-0123456789-abcdefghij"
MODYO_TOKEN = "bench-modyo-token"
OPS = ("get_user", "filter_user", "create_user", "patch_user", "add_member", "filter_group")
MIN_MODYO_CALLS = {  # per SCIM request, under docs/modyo-contract.md (§7 for REST, §9 for SCIM)
    "rest": {"get_user": 1, "filter_user": 1, "create_user": 1, "patch_user": 1,
             "add_member": 2, "filter_group": 1},
    # SCIM: a PATCH reads the user first (deleted users, exact diff); the 10 benchmark groups
    # fit one page of the group listing the bridge searches
    "scim": {"get_user": 1, "filter_user": 1, "create_user": 1, "patch_user": 2,
             "add_member": 2, "filter_group": 1},
}  # fmt: skip
GROUP_SIZES = (10, 1_000, 50_000)
SEEDED_USERS = 6000
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


QUICK = Profile(
    warmup=0.5,
    duration=2.0,
    concurrency=16,
    levels=(16,),
    added_latency_seconds=4.0,
    group_repetitions=9,
    scan_repetitions=5,
)
FULL = Profile(
    warmup=1.5,
    duration=6.0,
    concurrency=16,
    levels=(1, 16, 64),
    added_latency_seconds=20.0,
    group_repetitions=31,
    scan_repetitions=15,
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
        seeded: dict[str, Any] = httpx.post(
            f"{self.modyo}/__fake__/seed", json=body, timeout=300
        ).json()
        return seeded

    def modyo_data(self) -> dict[str, Any]:
        seeded = self.seed_modyo(
            SEEDED_USERS, [{"name": f"Bench Group {n}", "members": 0} for n in range(10)], "seed"
        )
        users = [{"id": u["id"], "userName": u["username"]} for u in seeded["users"]]
        self.fresh_users = users[1000:]  # each add_member run takes a slice nobody added yet
        groups = [{"id": g["id"], "displayName": g["name"]} for g in seeded["groups"]]
        return {"users": users[:1000], "groups": groups}

    def fresh_pool(self, count: int) -> list[dict[str, Any]]:
        pool, self.fresh_users = self.fresh_users[:count], self.fresh_users[count:]
        if len(pool) < count:
            raise RuntimeError("the benchmark ran out of fresh users to add to groups")
        return pool

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
    ) -> dict[str, Any]:
        self.run_tag += 1
        base = self.bases()[target]
        data = dict(data)
        if op == "add_member":
            data["member_pool"] = self.fresh_pool(500) if target != "peer" else data["users"]
        spec = {
            "base": base,
            "token": MODYO_TOKEN if target == "modyo" else SCIM_TOKEN,
            "op": op,
            "data": data,
            "concurrency": concurrency or self.profile.concurrency,
            "rate": rate,
            "warmup": self.profile.warmup,
            "duration": duration or self.profile.duration,
            "tag": f"{target}{self.run_tag}",
            "modyo": self.modyo if target in ("bridge", "ceiling") else None,
        }
        process = self.by_target.get(target)
        cpu_before = process.cpu_seconds() if process else 0.0
        output = subprocess.run(
            [sys.executable, "-m", "bench.load"],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        result: dict[str, Any] = json.loads(output.stdout)
        if process is not None and result["requests_with_warmup"]:
            spent = process.cpu_seconds() - cpu_before
            result["cpu_us_per_request"] = spent / result["requests_with_warmup"] * 1e6
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
            f"{self.modyo}/__fake__/faults", json={"latency_ms": milliseconds}
        ).raise_for_status()

    def modyo_calls(self) -> dict[str, int]:
        calls: dict[str, int] = httpx.get(f"{self.modyo}/__fake__/calls").json()["calls"]
        return calls

    def reset_modyo_calls(self) -> None:
        httpx.post(f"{self.modyo}/__fake__/reset-calls").raise_for_status()


# ---------------------------------------------------------------------- sections


def throughput(
    bench: Bench, modyo_data: dict[str, Any], peer_data: dict[str, Any]
) -> dict[str, Any]:
    """Every op on bridge and ceiling (0 ms Modyo latency at every concurrency level, 20 ms at
    the main one) and on the peer (in memory)."""
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
                    assert response.status_code == 204, response.text
                    assert client.patch(f"/Groups/{group_id}", json=undo).status_code == 204
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


def scan_path(bench: Bench) -> dict[str, Any]:
    """The scan path: ``SCAN_FILTER`` over the 6,000 seeded team members, sequential requests,
    on the bridge (read every page, render and evaluate every user) and on the ceiling (read
    and decode the same pages), at 0 and 20 ms of Modyo latency. Runs before anything creates
    users, so every request scans exactly ``SEEDED_USERS``."""
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
                client.get(path, params=params).raise_for_status()  # warm-up
                bench.reset_modyo_calls()
                cpu_before, latencies = process.cpu_seconds(), []
                for _ in range(reps):
                    started = time.perf_counter()
                    response = client.get(path, params=params)
                    latencies.append(time.perf_counter() - started)
                    response.raise_for_status()
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
    assert results["bridge|0"]["total_results"] == 111, results["bridge|0"]
    return results


def entra_cycle(bench: Bench) -> dict[str, Any]:
    """1,000 users, 50 groups of 40 members, as Entra's first cycle sends them: query then
    create each user, query then create each group, then member adds (10 per PATCH)."""
    base = f"http://127.0.0.1:{bench.bridge_port}/scim"
    headers = {"Authorization": f"Bearer {SCIM_TOKEN}", "Content-Type": "application/scim+json"}
    users_count, groups_count, members_per_group, batch = 1000, 50, 40, 10

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
                    found = (
                        await client.get("/Users", params={"filter": f'userName eq "{name}"'})
                    ).json()
                    assert found["totalResults"] == 0
                    response = await client.post("/Users", json=user_body(name))
                    ids[n] = response.json()["id"]

            async def group(n: int) -> None:
                async with gate:
                    name = f"Cycle Group {n}"
                    params = {"excludedAttributes": "members", "filter": f'displayName eq "{name}"'}
                    assert (await client.get("/Groups", params=params)).json()["totalResults"] == 0
                    created = await client.post(
                        "/Groups",
                        json={
                            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                            "displayName": name,
                        },
                    )
                    group_ids[n] = created.json()["id"]

            async def members(n: int, first: int) -> None:
                async with gate:
                    value = [
                        {"value": ids[(n * 17 + first + k) % users_count]} for k in range(batch)
                    ]
                    body = {
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "Add", "path": "members", "value": value}],
                    }
                    assert (
                        await client.patch(f"/Groups/{group_ids[n]}", json=body)
                    ).status_code == 204

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
                assert response.json()["totalResults"] == 1, response.text
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


def parsers_only(profile: Profile, json_path: Path | None) -> int:
    with tempfile.TemporaryDirectory(prefix="scim-bridge-bench-") as logs:
        bench = Bench(profile, Path(logs))
        try:
            print("starting fake Modyo; seeding...", flush=True)
            bench.start_modyo()
            results = parsers(bench, bench.modyo_data())
        finally:
            bench.stop()
    print_parsers(results)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"parsers": results}, indent=2))
        print(f"results written to {json_path}")
    return 0


def stores_only(profile: Profile, json_path: Path | None, rounds: int) -> int:
    """``--stores``: the idempotency store section alone (bench/stores.py)."""
    with tempfile.TemporaryDirectory(prefix="scim-bridge-bench-") as logs:
        bench = Bench(profile, Path(logs))
        server: RedisServer | None = None
        try:
            print("starting fake Modyo and redis-server; seeding...", flush=True)
            bench.start_modyo()
            data = bench.modyo_data()
            server = RedisServer(Path(logs))
            results = measure_stores(bench, data, server.url, OPS, rounds)
        finally:
            bench.stop()
            if server is not None:
                server.stop()
    print_stores(results)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"stores": results}, indent=2))
        print(f"results written to {json_path}")
    return 0


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
    args = parser.parse_args(argv)
    if args.stores:
        return stores_only(QUICK if args.quick else FULL, args.json, args.rounds)
    if args.parsers_only:
        return parsers_only(QUICK if args.quick else FULL, args.json)
    if importlib.util.find_spec("scim2_server") is None:
        parser.error("the peer is missing: .venv/bin/pip install -r requirements/dev.txt")
    profile = QUICK if args.quick else FULL
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="scim-bridge-bench-") as logs:
        bench = Bench(profile, Path(logs), args.modyo_api)
        try:
            print("starting fake Modyo, ceiling and peer; seeding...", flush=True)
            bench.start_modyo()
            modyo_data = bench.modyo_data()
            bench.start_ceiling()
            bench.start_peer()
            peer_data = bench.peer_data()
            transport_results = transports(bench, modyo_data)
            parser_results = parsers(bench, modyo_data)
            bridge = bench.start_bridge()
            print("scan path (a filter Modyo cannot search, 6,000 users):", flush=True)
            scan = scan_path(bench)
            print("throughput (target|op|Modyo latency ms|concurrency):", flush=True)
            raw = throughput(bench, modyo_data, peer_data)
            latency = added_latency(bench, modyo_data)
            print("group sizes:", flush=True)
            sizes = group_sizes(bench)
            cycle = entra_cycle(bench)
            print("group queries:", flush=True)
            queries = group_queries(bench)
            rss = bridge.peak_rss_mb()
        finally:
            bench.stop()
    result = {
        "ops": summary(profile, raw),
        "added_latency_ms": {"p50": latency["p50"], "p99": latency["p99"]},
        "rss_mb": rss,
        "cycle": {k: cycle[k] for k in ("seconds", "modyo_calls", "min_modyo_calls")},
        "scan": scan,
        "concurrency": profile.concurrency,
        "cpu_us_per_request": cpu_per_request(profile, raw),
        "quick": args.quick,
        "added_latency_detail": latency,
        "cycle_detail": cycle,
        "transports": transport_results,
        "parsers": parser_results,
        "group_sizes": sizes,
        "group_queries": queries,
        "modyo_api": args.modyo_api,
        "raw": raw,
        "wall_seconds": time.monotonic() - started,
    }
    print_tables(result)
    print(f"\nbenchmark wall time: {result['wall_seconds']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"results written to {args.json}")
    return 0
