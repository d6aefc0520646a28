"""The world a benchmark run measures (``python -m bench``, ``bench.compare``): its
profiles (``--quick``, the full run, ``--ci``), the tokens and data it seeds, and
:class:`Bench`, which starts the processes (the fake Modyo, the bridge, its ceiling, its peer,
the trivial endpoint) on 127.0.0.1 and drives the load generator against them
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.checks import PhaseError, expect
from bench.load import user_body
from bench.procs import Process, free_port

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
        loop_before = process.main_thread_cpu_seconds() if process else None
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
            loop_after = process.main_thread_cpu_seconds()
            if loop_before is not None and loop_after is not None:  # the rest: other threads
                loop = loop_after - loop_before
                result["loop_cpu_us_per_request"] = loop / result["requests_with_warmup"] * 1e6
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
