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
import sys
import tempfile
import time
from collections.abc import Callable
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
from bench.journal_ab import measure_journal, print_journal
from bench.load import user_body
from bench.procs import raise_priority
from bench.rig import (
    CI,
    FULL,
    GROUP_COUNTS,
    GROUP_SIZES,
    MIN_MODYO_CALLS,
    OPS,
    QUICK,
    SCAN_FILTER,
    SCIM_TOKEN,
    SEEDED_USERS,
    Bench,
    Profile,
)
from bench.stores import RedisServer, measure_stores, print_stores


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
    """The group-size table: add one member, remove one, add 25 in one PATCH, on groups of 10,
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


def journal_only(profile: Profile, json_path: Path | None, rounds: int) -> int:
    """``--journal``: the journal's cost alone (bench/journal_ab.py)."""
    server: RedisServer | None = None

    def body(bench: Bench) -> dict[str, Any]:
        nonlocal server
        print("starting fake Modyo and redis-server; seeding...", flush=True)
        bench.start_modyo()
        data = bench.modyo_data()
        server = RedisServer(bench.log_dir)
        bench.phase = "journal"
        return measure_journal(bench, data, server.url, rounds)

    try:
        results = run_guarded(profile, "rest", body)
    finally:
        if server is not None:
            server.stop()
    if results is None:
        return 1
    print_journal(results)
    write_json(json_path, {"journal": results})
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
        "--journal",
        action="store_true",
        help="only the journal's cost: journal off and on, with the memory store and with "
        "Redis (a redis-server of its own; Modyo at 0 ms)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of the --stores and --journal comparisons (default 3)",
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
    if args.journal:
        return journal_only(QUICK if args.quick else FULL, args.json, args.rounds)
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
