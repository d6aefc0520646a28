"""Several replicas, one truth: two real ``scim-bridge serve`` processes
sharing one real redis-server and one real ``scim-bridge fake-modyo``, driven over real HTTP.

Every Modyo write is counted at the fake (its ``/__fake__/calls``), and Modyo's final state is
read through its own REST API; a call is held at the fake (``/__fake__/hold``) to make "while
the leader is still working" a state the test reaches, not a race it hopes to win. The
processes are started once for this module (each test uses user names of its own); the
replicas reach the fake through a TCP proxy that can reset connections after the fake applied
a write (the reliability suite's chaos). The Sentinel test, and the replica killed mid-create,
get processes of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from bridge.journal import EventFilter
from bridge.journal.redis_history import RedisHistory
from tests import entra
from tests.harness import assert_scim_error
from tests.redis_servers import RedisServer, SentinelTopology
from tests.replicas import (
    CREATE,
    Background,
    FakeModyoProcess,
    ProxyThread,
    Replica,
    RoundRobin,
    abandon_create,
    leave_create,
    running,
)
from tests.waits import HANG_GUARD_SECONDS, POLL_SECONDS, eventually

WRITES = ("POST /team_members", "PUT /team_members/:id", "DELETE /team_members/:id")


LOCK_TTL_SECONDS = 2.0
"""The replicas' lock expiry (renewed every third of it by a live owner): how long a twin
waits before it looks whether a leader's process died."""


def _store(redis: RedisServer, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "redis",
        "redis_url": redis.url,
        "key_prefix": "replicas:",
        "lock_ttl_seconds": LOCK_TTL_SECONDS,
        **extra,
    }


JOURNAL_KEY = "replicas-journal-key-0123456789-abcdef"


def _journal(directory: Path, name: str) -> dict[str, dict[str, Any]]:
    """A replica's journal: its own chain in the shared directory, its history the stream."""
    journal = directory / "journal" / "journal.jsonl"
    return {"journal": {"enabled": True, "file": str(journal), "key": JOURNAL_KEY,
                        "replica": f"replica-{name}"}}  # fmt: skip


def journal_events(cluster: Cluster, replica: str) -> list[dict[str, Any]]:
    """The SCIM events of one replica's journal files, as written so far."""
    files = sorted((cluster.directory / "journal").glob(f"journal.{replica}.*.jsonl"))
    lines = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    return [line for line in lines if line["kind"] == "scim"]


@dataclass
class Cluster:
    fake: FakeModyoProcess
    proxy: ProxyThread
    redis: RedisServer
    a: Replica
    b: Replica
    c: Replica
    """A third replica, with a short lock expiry: the one killed mid-create."""
    sentinel: Background
    """A Sentinel topology (primary, replica, three sentinels) starting meanwhile."""
    directory: Path

    @property
    def replicas(self) -> list[Replica]:
        return [self.a, self.b]


@pytest.fixture(scope="module")
def cluster_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Every process of this module, booting together; all stopped at the end of the module
    (also when a test or a start fails)."""
    directory = tmp_path_factory.mktemp("replicas")
    (directory / "redis").mkdir()
    redis = RedisServer(directory / "redis")
    topology = SentinelTopology(directory / "sentinel")
    sentinel = Background(topology.start)  # ~7 s of discovery, overlapping the rest
    fake = FakeModyoProcess(directory)
    try:
        redis.start()
        with ProxyThread(fake.port) as proxy:
            (directory / "journal").mkdir()
            a, b = (
                Replica(f"replica-{n}", directory, proxy.url, _store(redis), _journal(directory, n))
                for n in "ab"
            )
            c = Replica("replica-c", directory, proxy.url, _store(redis, lock_ttl_seconds=1.0))
            with running(fake, a, b, c):
                yield Cluster(fake, proxy, redis, a, b, c, sentinel, directory)
    finally:
        with contextlib.suppress(BaseException):
            sentinel.result()
        topology.stop()
        redis.stop()


@pytest.fixture
async def cluster(cluster_processes: Cluster) -> AsyncIterator[Cluster]:
    """The module's processes: Redis up, the fake without faults, holds or counts, the
    proxy resetting nothing, both replicas ready. Whatever a test held is let go after it."""
    cluster = cluster_processes
    if not cluster.redis.running:  # a failed outage test left it down
        cluster.redis.start()
    cluster.proxy.proxy.reset = lambda method, path: False
    await cluster.fake.reset()
    for replica in cluster.replicas:
        await replica.wait_ready()
    yield cluster
    await cluster.fake.release()


async def _sum(replicas: list[Replica], outcome: str) -> float:
    return sum([await replica.idempotency(outcome) for replica in replicas])


async def test_fifty_identical_creates_across_two_replicas_make_one_user(
    cluster: Cluster,
) -> None:
    """The leader's answer reached its client, so each of the 49 twins waiting on it (on
    either replica) is answered as if it came after: 409 uniqueness (RFC 7644 §3.3)."""
    fake, replicas = cluster.fake, cluster.replicas
    body = entra.user("fifty@contoso.com")
    coalesced = await _sum(replicas, "coalesced")
    await fake.hold(CREATE)
    async with cluster.a.client() as on_a, cluster.b.client() as on_b:
        sent = [
            asyncio.create_task((on_a if n % 2 else on_b).post("/Users", json=body))
            for n in range(50)
        ]
        await fake.wait_held(CREATE)

        async def all_waiting() -> bool:
            return await _sum(replicas, "coalesced") >= coalesced + 49

        await eventually(all_waiting, "49 twins waiting on the leader")
        await fake.release()
        answers = await asyncio.gather(*sent)
    assert sorted(answer.status_code for answer in answers) == [201] + [409] * 49
    for answer in answers:
        assert "x-idempotent-replay" not in answer.headers
        if answer.status_code == 409:
            assert_scim_error(answer, 409, "uniqueness")
    assert await fake.count(CREATE) == 1
    state = await fake.state()
    [member] = state.members_named("fifty@contoso.com")
    created = next(answer for answer in answers if answer.status_code == 201)
    assert created.json()["id"] == str(member["id"])


async def test_a_create_left_on_a_is_replayed_on_b(cluster: Cluster) -> None:
    """The client left replica A before its 201; Entra's retry lands on B and gets that 201
    (``X-Idempotent-Replay``), Modyo untouched; the next twin, answered now, gets 409."""
    fake, a, b = cluster.fake, cluster.a, cluster.b
    body = entra.user("left@contoso.com")
    await abandon_create(fake, a, body)
    async with b.client() as on_b, a.client() as on_a:
        retry = await on_b.post("/Users", json=body)
        twin = await on_a.post("/Users", json=body)
    assert retry.status_code == 201, retry.text
    assert retry.headers["x-idempotent-replay"] == "true"
    assert retry.json()["userName"] == "left@contoso.com"
    assert_scim_error(twin, 409, "uniqueness")
    [member] = (await fake.state()).members_named("left@contoso.com")
    assert retry.json()["id"] == str(member["id"])
    assert await fake.count(CREATE) == 2  # the first, and the delivered twin's (409)


async def test_twins_waiting_on_b_for_a_leader_whose_client_left_a(cluster: Cluster) -> None:
    """A's create is at Modyo and its client has gone; two twins (Entra's retries) wait on
    B. The first served gets the original 201 (``X-Idempotent-Replay``: it was never
    delivered), the other 409 (now it was); Modyo wrote once."""
    fake, a, b = cluster.fake, cluster.a, cluster.b
    body = entra.user("waited@contoso.com")
    coalesced = await b.idempotency("coalesced")
    await leave_create(fake, a, body)
    async with b.client() as on_b:
        twins = [asyncio.create_task(on_b.post("/Users", json=body)) for _ in range(2)]

        async def waiting() -> bool:
            return await b.idempotency("coalesced") >= coalesced + 2

        await eventually(waiting, "both twins waiting on A's create")
        await fake.release()
        answers = sorted(await asyncio.gather(*twins), key=lambda answer: answer.status_code)
    assert [answer.status_code for answer in answers] == [201, 409]
    assert answers[0].headers["x-idempotent-replay"] == "true"
    assert_scim_error(answers[1], 409, "uniqueness")
    assert await fake.count(CREATE) == 1
    [member] = (await fake.state()).members_named("waited@contoso.com")
    assert answers[0].json()["id"] == str(member["id"])


async def test_a_change_on_b_drops_the_answer_a_kept(cluster: Cluster) -> None:
    """A kept the 201 of a create whose client left; the user is then changed through B.
    The kept answer would now be stale, so B's write drops it (in Redis): the retry on A is a
    fresh create, answered 409 (RFC 7644 §3.3), not the old 201."""
    fake, a, b = cluster.fake, cluster.a, cluster.b
    body = entra.user("changed@contoso.com")
    await abandon_create(fake, a, body)
    [member] = (await fake.state()).members_named("changed@contoso.com")
    disable = entra.patch(entra.op("Replace", "active", "False"))
    async with a.client() as on_a, b.client() as on_b:
        changed = await on_b.patch(f"/Users/{member['id']}", json=disable)
        assert changed.status_code == 200, changed.text
        retry = await on_a.post("/Users", json=body)
    assert_scim_error(retry, 409, "uniqueness")
    assert "x-idempotent-replay" not in retry.headers
    [member] = (await fake.state()).members_named("changed@contoso.com")
    assert member["active"] is False


async def test_one_user_name_created_on_both_replicas_at_once_is_one_201_one_409(
    cluster: Cluster,
) -> None:
    """Creates of one userName with different bodies queue on the shared create lock: A's
    create is still at Modyo when B's arrives, so B's waits for it, then Modyo refuses it and
    B answers 409 uniqueness. Without the shared lock B's create would pass A's (held) one and
    win: A, the first, would get the 409."""
    fake, a, b = cluster.fake, cluster.a, cluster.b
    first = entra.user("race@contoso.com", given="First")
    second = entra.user("race@contoso.com", given="Second", email="race2@contoso.com")
    executed = await b.idempotency("executed")
    await fake.hold(CREATE)
    await fake.hold(CREATE)  # B's create too, should it ever reach Modyo while A's is there
    async with a.client() as on_a, b.client() as on_b:
        on_first = asyncio.create_task(on_a.post("/Users", json=first))
        await fake.wait_held(CREATE)
        on_second = asyncio.create_task(on_b.post("/Users", json=second))

        async def b_runs_it() -> bool:
            return await b.idempotency("executed") > executed

        await eventually(b_runs_it, "replica B running its create")
        await wait_for_create_lock_waiter(cluster)
        assert (await fake.calls())["held"] == {CREATE: 1}  # B's create never reached Modyo
        await fake.release()
        answers = [await on_first, await on_second]
    assert answers[0].status_code == 201, answers[0].text
    assert answers[0].json()["name"]["givenName"] == "First"
    assert_scim_error(answers[1], 409, "uniqueness")
    [member] = (await fake.state()).members_named("race@contoso.com")
    assert (member["first_name"], str(member["id"])) == ("First", answers[0].json()["id"])


async def test_a_leader_killed_mid_create_is_taken_over_by_its_twin_on_another_replica(
    cluster: Cluster,
) -> None:
    """Replica C leads a create (held at Modyo) while its twin waits on B; C is SIGKILLed.
    Nobody releases C's lock: it expires (``lock_ttl_seconds``), B's twin leads, creates, and
    gets the 201. C's own create, never applied while C lived, then reaches Modyo too late and
    is refused: one user."""
    fake, b = cluster.fake, cluster.b
    body = entra.user("killed@contoso.com")
    coalesced = await b.idempotency("coalesced")
    c = cluster.c
    await c.wait_ready()
    await fake.hold(CREATE)
    async with c.client() as on_c, b.client() as on_b:
        leader = asyncio.create_task(on_c.post("/Users", json=body))
        await fake.wait_held(CREATE)
        twin = asyncio.create_task(on_b.post("/Users", json=body))

        async def waiting() -> bool:
            return await b.idempotency("coalesced") > coalesced

        await eventually(waiting, "B's twin waiting on C's create")
        c.kill()
        with pytest.raises(httpx.HTTPError):
            await leader
        answer = await asyncio.wait_for(twin, HANG_GUARD_SECONDS)
        assert answer.status_code == 201, answer.text
        assert "x-idempotent-replay" not in answer.headers
        assert await fake.count(CREATE) == 1  # B's, passed; C's is still held
        await fake.release()
        await fake.wait_calls(CREATE, 2)
    [member] = (await fake.state()).members_named("killed@contoso.com")
    assert answer.json()["id"] == str(member["id"])


async def test_redis_down_refuses_writes_serves_reads_and_recovers_by_itself(
    cluster: Cluster,
) -> None:
    """Redis stops while a create is at Modyo: that create still gets its 201 (the write was
    done; only the store's bookkeeping after it is lost); then every write on either replica
    is 503 with Retry-After (none reaches Modyo), reads and filters are served, /status says
    why while /readyz stays 200; Redis comes back (empty) and both replicas recover without a
    restart; Modyo ends exact."""
    fake, redis = cluster.fake, cluster.redis
    async with cluster.a.client() as on_a, cluster.b.client() as on_b:
        kept = await on_a.post("/Users", json=entra.user("kept@contoso.com"))
        assert kept.status_code == 201, kept.text
        kept_url = f"/Users/{kept.json()['id']}"
        await fake.hold(CREATE)
        in_flight = asyncio.create_task(on_b.post("/Users", json=entra.user("flight@contoso.com")))
        await fake.wait_held(CREATE)
        redis.stop()
        for replica in cluster.replicas:  # reported, not gated: /readyz stays 200
            down = await replica.wait_status("shared_store", "unreachable")
            assert down["last_error"], down
            assert (await replica.ready()).status_code == 200
        await fake.release()
        flight = await in_flight  # Modyo applied it: its answer is not lost with the store
        assert flight.status_code == 201, flight.text
        writes = {on_a: [kept], on_b: [flight]}
        writes_before = {route: await fake.count(route) for route in WRITES}
        for client in (on_a, on_b):
            refused = [
                await client.post("/Users", json=entra.user("down@contoso.com")),
                await client.patch(
                    kept_url, json=entra.patch(entra.op("Replace", "active", "False"))
                ),
                await client.delete(kept_url),
            ]
            for answer in refused:
                assert_scim_error(answer, 503)
                assert int(answer.headers["retry-after"]) >= 1
            writes[client] += refused
            assert (await client.get(kept_url)).json()["userName"] == "kept@contoso.com"
            found = await client.get("/Users", params={"filter": 'userName eq "kept@contoso.com"'})
            assert found.status_code == 200 and found.json()["totalResults"] == 1
            assert (await client.get("/Users")).status_code == 200
        assert {route: await fake.count(route) for route in WRITES} == writes_before
        redis.start()
        for replica in cluster.replicas:
            await replica.wait_status("shared_store", "ok")
        created = await on_a.post("/Users", json=entra.user("down@contoso.com"))
        assert created.status_code == 201, created.text
        disable = entra.patch(entra.op("Replace", "active", "False"))
        assert (await on_b.patch(kept_url, json=disable)).status_code == 200
        writes[on_a].append(created)
    state = await fake.state()
    assert [m["active"] for m in state.members_named("kept@contoso.com")] == [False]
    assert len(state.members_named("down@contoso.com")) == 1
    assert len(state.members_named("flight@contoso.com")) == 1
    # The journal's files hold every write, the refused ones too, while the shared history
    # left out those it could not store (counted).
    for replica, answers in ((cluster.a, writes[on_a]), (cluster.b, writes[on_b])):
        wanted = {answer.headers["x-request-id"]: answer.status_code for answer in answers}

        async def written(replica: Replica = replica, wanted: dict[str, int] = wanted) -> bool:
            found = {
                e["request_id"]: e.get("status") for e in journal_events(cluster, replica.name)
            }
            return all(found.get(request_id) == status for request_id, status in wanted.items())

        await eventually(written, f"{replica.name}'s journal holds its {len(wanted)} writes")
    dropped = "scim_bridge_journal_history_dropped_total"
    assert sum([await r.metric(dropped, reason="unreachable") for r in cluster.replicas]) >= 1


async def test_a_write_refused_503_keeps_its_retry_after(cluster: Cluster) -> None:
    """Modyo throttles beyond ``retry.retry_after_cap_seconds``: the create is answered 503
    with Modyo's Retry-After, for Entra to wait it out (as a read is: test_reliability.py).
    A create lock that Redis fails is the same path (a 503 from inside the app)."""
    await cluster.fake.faults(throttle_rate=1.0, retry_after_seconds=120)
    async with cluster.a.client() as on_a:
        refused = await on_a.post("/Users", json=entra.user("throttled@contoso.com"))
        read = await on_a.get("/Users/1")
    assert_scim_error(read, 503)
    assert read.headers["retry-after"] == "120"  # a read keeps it
    assert_scim_error(refused, 503)
    assert refused.headers.get("retry-after") == "120"


async def provision(client: RoundRobin, name: str, answers: list[httpx.Response]) -> str:
    """Entra's cycle for one user: match by userName, else create. A 503 is tried again (on
    the next replica, once the poll pause has passed: Entra would wait its Retry-After); a
    409 means an earlier attempt was applied: match again. Every create's answer is kept."""
    give_up = asyncio.get_running_loop().time() + HANG_GUARD_SECONDS
    while asyncio.get_running_loop().time() < give_up:
        query = await client.request("GET", "/Users", filter=f'userName eq "{name}"')
        assert query.status_code == 200, query.text  # reads never need the store
        if query.json()["Resources"]:
            return str(query.json()["Resources"][0]["id"])
        created = await client.request("POST", "/Users", entra.user(name))
        answers.append(created)
        if created.status_code == 201:
            return str(created.json()["id"])
        assert created.status_code in (409, 503), created.text
        if created.status_code == 503:
            await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"{name} was never provisioned")


@pytest.fixture
def sentinel_replicas(cluster: Cluster) -> Iterator[tuple[SentinelTopology, list[Replica]]]:
    """Two replicas finding Redis through the module's sentinels, calling the module's fake."""
    topology: SentinelTopology = cluster.sentinel.result()
    store = {
        "backend": "redis",
        "redis_sentinels": topology.sentinels,
        "redis_sentinel_service": topology.service,
        "key_prefix": "sentinel:",
        "lock_ttl_seconds": LOCK_TTL_SECONDS,
    }
    replicas = [Replica(f"sentinel-{n}", cluster.directory, cluster.fake.url, store) for n in "ab"]
    with running(*replicas):
        yield topology, replicas


async def test_a_sentinel_failover_mid_run_loses_and_duplicates_nothing(
    cluster: Cluster, sentinel_replicas: tuple[SentinelTopology, list[Replica]]
) -> None:
    """Two replicas find Redis through three sentinels; the primary is killed while four
    Entra-like workers create users on both, and they go on until well after the replica is
    promoted. Each create is answered 201, or 503 while no primary answers
    (then 409 if that create had reached Modyo: Entra matches it); every user ends in Modyo
    once. An answer kept before the failover (its client left; the replica had copied it) is
    replayed after it."""
    fake, (topology, replicas) = cluster.fake, sentinel_replicas
    client = RoundRobin(replicas)
    answers: list[httpx.Response] = []
    promoted = asyncio.Event()
    provisioned: list[str] = []

    async def worker(number: int) -> None:
        after = 0
        for n in range(1000):
            name = f"failover{number}-{n}@contoso.com"
            await provision(client, name, answers)
            provisioned.append(name)
            after += promoted.is_set()
            if after == 5:
                return

    left = entra.user("left-before-failover@contoso.com")
    await abandon_create(fake, replicas[0], left)
    await eventually(partial(asyncio.to_thread, _replicated, topology), "the replica in sync")
    async with client:
        workers = [asyncio.create_task(worker(number)) for number in range(4)]
        await fake.wait_calls(CREATE, 12)  # the failover comes mid-run
        await asyncio.to_thread(topology.fail_over)
        promoted.set()
        await asyncio.gather(*workers)  # 5 creates each after the promotion: as no write runs
        # without the store, these prove the replicas found the promoted primary
        async with replicas[1].client() as on_b:
            retry = await on_b.post("/Users", json=left)
    assert retry.status_code == 201, retry.text  # kept on the old primary, replayed by the new
    assert retry.headers["x-idempotent-replay"] == "true"
    for answer in answers:
        if answer.status_code == 503:
            assert_scim_error(answer, 503)
            assert answer.headers["retry-after"]  # Entra waits it out
    state = await fake.state()
    state.assert_no_duplicates()
    assert sorted(name for name in state.users if name.startswith("failover")) == sorted(
        provisioned
    )
    [member] = state.members_named("left-before-failover@contoso.com")
    assert retry.json()["id"] == str(member["id"])


def _replicated(topology: SentinelTopology) -> bool:
    """Whether the replica has applied everything the primary has (replication is
    asynchronous: a failover loses what it had not copied yet)."""
    import redis

    with (
        redis.Redis.from_url(topology.primary.url) as primary,
        redis.Redis.from_url(topology.replica.url) as replica,
    ):
        written = int(primary.info("replication")["master_repl_offset"])
        return int(replica.info("replication")["slave_repl_offset"]) >= written


async def test_a_provisioning_history_across_two_replicas_under_resets_ends_exact(
    cluster: Cluster,
) -> None:
    """tests/test_resets.py's history (users created, half disabled, groups with members
    added and removed, a third of users and groups deleted) while the proxy resets 5% of the
    write connections to Modyo after Modyo applied them, sent round-robin over the two
    replicas: Entra re-sends what got a 5xx, which so lands on the other replica."""
    cluster.proxy.proxy.reset_share(0.05, seed=11, methods=frozenset({"POST", "PUT", "DELETE"}))
    gate = asyncio.Semaphore(8)
    users_n, groups_n, per_group = 120, 6, 20

    async with RoundRobin(cluster.replicas) as client:

        async def send(method: str, url: str, body: object = None) -> httpx.Response:
            async with gate:
                for _ in range(20):
                    response = await client.request(method, url, body)
                    if response.status_code < 500:
                        return response
                raise AssertionError(f"{method} {url}: {response.text}")

        async def user(n: int) -> str:
            created = await send("POST", "/Users", entra.user(f"history{n}@contoso.com"))
            assert created.status_code == 201, created.text
            user_id = str(created.json()["id"])
            if n % 2:
                disable = entra.patch(entra.op("Replace", "active", "False"))
                assert (await send("PATCH", f"/Users/{user_id}", disable)).status_code == 200
            return user_id

        users = await asyncio.gather(*(user(n) for n in range(users_n)))
        groups = []
        for g in range(groups_n):
            created = await send("POST", "/Groups", entra.group(f"History {g}"))
            assert created.status_code == 201, created.text
            groups.append(str(created.json()["id"]))
        expected: dict[str, set[str]] = {}
        for g, group_id in enumerate(groups):
            members = users[g * per_group : (g + 1) * per_group]
            add = entra.patch(entra.op("Add", "members", entra.members(*members)))
            assert (await send("PATCH", f"/Groups/{group_id}", add)).status_code == 204
            remove = entra.patch(entra.op("Remove", "members", entra.members(*members[:5])))
            assert (await send("PATCH", f"/Groups/{group_id}", remove)).status_code == 204
            expected[f"History {g}"] = set(members[5:])
        deleted = set(users[::3])
        await asyncio.gather(*(send("DELETE", f"/Users/{user_id}") for user_id in deleted))
        for group_id in groups[::3]:
            assert (await send("DELETE", f"/Groups/{group_id}")).status_code == 204

    assert len(cluster.proxy.proxy.resets) > 10  # the faults really happened
    state = await cluster.fake.state()
    state.assert_no_duplicates()
    names = {user_id: f"history{n}@contoso.com" for n, user_id in enumerate(users)}
    history = {name for name in state.users if name.startswith("history")}
    assert history == {names[user_id] for user_id in users if user_id not in deleted}
    for n, user_id in enumerate(users):
        if user_id not in deleted:
            [member] = state.members_named(names[user_id])
            assert member["active"] is (n % 2 == 0)
    kept = {name: ids for g, (name, ids) in enumerate(expected.items()) if g % 3}
    assert {name: ms for name, ms in state.groups.items() if name.startswith("History")} == {
        name: {names[user_id] for user_id in ids - deleted} for name, ids in kept.items()
    }


async def wait_for_create_lock_waiter(cluster: Cluster) -> None:
    """Until Redis reports a client blocked (B's create, waiting for A's lock to go)."""

    async def blocked() -> bool:
        return await asyncio.to_thread(_blocked_clients, cluster.redis) >= 1

    await eventually(blocked, "a replica waiting on Redis for a create lock")


def _blocked_clients(server: RedisServer) -> int:
    import redis

    with redis.Redis.from_url(server.url) as client:
        return int(client.info("clients")["blocked_clients"])


async def test_an_event_written_through_a_is_listed_by_the_history_b_reads(
    cluster: Cluster,
) -> None:
    """Each replica keeps its own chain (file), and both feed the one capped Redis stream the
    consoles read: what was written through A is listed from it, as through B, by
    ``RedisHistory.query``, the class each replica's console reads with."""
    async with cluster.a.client() as on_a, cluster.b.client() as on_b:
        through_a = await on_a.post("/Users", json=entra.user("journal-a@contoso.com"))
        through_b = await on_b.delete("/Users/no-such-user")
    assert through_a.status_code == 201, through_a.text
    assert_scim_error(through_b, 404)
    client = aioredis.from_url(cluster.redis.url)
    history = RedisHistory(client, "replicas:journal", 10_000, HANG_GUARD_SECONDS)
    try:
        found: dict[str, dict[str, Any]] = {}

        async def listed() -> bool:
            page = await history.query(EventFilter(), limit=200)
            found.update({event["request_id"]: event for event in page.events})
            return all(answer.headers["x-request-id"] in found for answer in (through_a, through_b))

        await eventually(listed, "both replicas' events in the shared history")
    finally:
        await client.aclose()
    from_a, from_b = (found[answer.headers["x-request-id"]] for answer in (through_a, through_b))
    assert (from_a["replica"], from_a["outcome"], from_a["resource"]["name"]) == (
        "replica-a", "applied", "journal-a@contoso.com"
    )  # fmt: skip
    assert (from_b["replica"], from_b["outcome"], from_b["status"]) == ("replica-b", "refused", 404)
