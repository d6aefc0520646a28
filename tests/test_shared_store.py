"""The idempotency store and the create locks, in this process's memory and in a real
redis-server: the same contract (bridge/store/answers.py, bridge/scim/locks.py) for both,
then what only a shared store has to do (two clients standing for two processes; a holder
that died; what Redis holds and for how long)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from prometheus_client import REGISTRY
from redis import Redis
from starlette.types import Message, Receive, Scope, Send

from bridge.config import IdempotencySettings
from bridge.edge.app import create_app
from bridge.edge.readiness import Readiness
from bridge.modyo.fake import FakeModyo, FaultyModyo, mock_transport
from bridge.scim.locks import CreateLocks, KeyedLocks
from bridge.store.answers import (
    Flight,
    IdempotencyStore,
    Lead,
    LeadResult,
    MemoryStore,
    StoredAnswer,
)
from bridge.store.errors import StoreUnavailable
from bridge.store.redis_answers import RedisStore
from bridge.store.redis_link import RedisLink, Renewal, connect
from bridge.store.redis_locks import RedisLocks
from tests import entra
from tests.harness import (
    MODYO_URL,
    PATIENT_REDIS,
    app_client,
    asgi_client,
    assert_scim_error,
    make_settings,
    no_rounds,
)
from tests.redis_servers import RedisServer, SentinelTopology
from tests.servers import logged
from tests.waits import Signal

ANSWER = StoredAnswer(
    201,
    ((b"content-type", b"application/scim+json"), (b"location", b"http://b/scim/Users/7")),
    '{"userName":"zoë@contoso.com",\n"x":"\\u0000"}'.encode(),
)
OUTCOME = LeadResult(ANSWER, delivered=False, resource="User/7")
DOWN = "shared store unreachable: writes are refused (503) until it answers"
UP = "shared store reachable again: writes are accepted"
VANISHED = "the leader of an identical request vanished; taking over"


def _link(server: RedisServer, **settings: Any) -> RedisLink:
    values = {"backend": "redis", "redis_url": server.url, **PATIENT_REDIS, **settings}
    return connect(IdempotencySettings(**values))


@contextlib.asynccontextmanager
async def _linked(server: RedisServer, **settings: Any) -> AsyncIterator[RedisLink]:
    link = _link(server, **settings)
    try:
        yield link
    finally:
        await link.close()


@pytest.fixture(params=["memory", "redis"])
async def stores(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[IdempotencyStore, IdempotencyStore]]:
    """Two handles on one store: for Redis, two clients (two processes, as far as the store
    can tell); for memory, the same object twice."""
    if request.param == "memory":
        store = MemoryStore(max_entries=10, ttl_seconds=60)
        yield store, store
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    async with _linked(server) as first, _linked(server) as second:
        yield RedisStore(first, 60, 10), RedisStore(second, 60, 10)


@pytest.fixture(params=["memory", "redis"])
async def locks(request: pytest.FixtureRequest) -> AsyncIterator[tuple[CreateLocks, CreateLocks]]:
    if request.param == "memory":
        shared = KeyedLocks()
        yield shared, shared
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    async with _linked(server) as first, _linked(server) as second:
        yield RedisLocks(first, 10), RedisLocks(second, 10)


# --------------------------------------------------------------------------- one contract


async def test_a_kept_answer_is_claimed_once_and_exactly(
    stores: tuple[IdempotencyStore, IdempotencyStore],
) -> None:
    one, other = stores
    assert await other.claim("k") is None
    await one.put("k", ANSWER, frozenset({"User/7"}))
    claims = await asyncio.gather(one.claim("k"), other.claim("k"), other.claim("k"))
    found = [kept for kept in claims if kept is not None]
    assert len(found) == 1  # two retries can never both get it
    assert found[0].answer == ANSWER and found[0].resources == frozenset({"User/7"})


async def test_another_write_to_a_resource_drops_its_kept_answers(
    stores: tuple[IdempotencyStore, IdempotencyStore],
) -> None:
    one, other = stores
    await one.put("create", ANSWER, frozenset({"User/7"}))
    await one.put("patch", ANSWER, frozenset({"User/7"}))
    await one.put("elsewhere", ANSWER, frozenset({"User/8"}))
    await other.invalidate(frozenset({"User/7"}), keep="patch")
    assert await one.claim("create") is None
    assert await one.claim("elsewhere") is not None
    await other.invalidate(frozenset({"User/7"}), keep="")  # "patch" was kept, still indexed
    assert await one.claim("patch") is None
    await other.invalidate(frozenset(), keep="")


async def test_single_flight_hands_the_outcome_to_every_waiter(
    stores: tuple[IdempotencyStore, IdempotencyStore],
) -> None:
    one, other = stores
    lead = await one.begin("k")
    assert not isinstance(lead, Flight)
    flights = [await store.begin("k") for store in (one, other, other)]
    waiting = [asyncio.ensure_future(f.outcome()) for f in flights if isinstance(f, Flight)]
    assert len(waiting) == 3
    await lead.finish(OUTCOME)
    assert await asyncio.gather(*waiting) == [OUTCOME] * 3
    assert not isinstance(await other.begin("k"), Flight)  # the flight is over


async def test_a_waiter_of_an_abandoned_lead_begins_again_and_leads(
    stores: tuple[IdempotencyStore, IdempotencyStore],
) -> None:
    one, other = stores
    lead = await one.begin("k")
    flight = await other.begin("k")
    assert isinstance(flight, Flight) and not isinstance(lead, Flight)
    waiting = asyncio.ensure_future(flight.outcome())
    await lead.abandon()
    await lead.abandon()  # once only
    assert await waiting is None
    again = await other.begin("k")
    assert not isinstance(again, Flight)
    await again.finish(OUTCOME)


async def test_a_waiter_arriving_after_the_outcome_still_gets_it(
    stores: tuple[IdempotencyStore, IdempotencyStore],
) -> None:
    one, other = stores
    lead = await one.begin("k")
    flight = await other.begin("k")
    assert isinstance(flight, Flight) and not isinstance(lead, Flight)
    await lead.finish(OUTCOME)
    assert await flight.outcome() == OUTCOME


async def test_creates_of_one_key_run_one_after_the_other(
    locks: tuple[CreateLocks, CreateLocks],
) -> None:
    one, other = locks
    order: list[str] = []
    first_holds, second_tried = Signal("the first holding its locks"), Signal("the second trying")

    async def first() -> None:
        async with one.hold("userName:Ana@Contoso.com", "email:ana@contoso.com"):
            first_holds.set()
            await second_tried.wait()
            order.append("first")

    async def second() -> None:
        await first_holds.wait()
        holding = asyncio.ensure_future(_hold(other, "email:ANA@contoso.com", order))
        await asyncio.sleep(0)
        second_tried.set()
        await holding

    await asyncio.gather(first(), second())
    assert order == ["first", "second"]
    async with one.hold("", "userName:free"), other.hold("userName:other"):
        pass  # distinct keys do not wait for each other
    async with one.hold():
        pass


async def _hold(locks: CreateLocks, key: str, order: list[str]) -> None:
    async with locks.hold(key):
        order.append("second")


# --------------------------------------------------------------------------- shared only


async def test_a_dead_leader_s_lock_expires_and_its_waiter_takes_over(
    redis_server: RedisServer,
) -> None:
    """A leader whose process died stops renewing its lock: after the lock's TTL (short
    here) the waiter gets no outcome, begins again and leads; the dead lead's late finish
    changes nothing for the new flight. The new leader's lock lives long (30 s): its
    renewals must not race a loaded machine's clock, which is not what this test is about."""
    async with _linked(redis_server) as dead, _linked(redis_server) as alive:
        leader = await RedisStore(dead, 60, 0.2).begin("k")
        assert not isinstance(leader, Flight)
        _stop_renewing(leader)
        flight = await RedisStore(alive, 60, 0.2).begin("k")
        assert isinstance(flight, Flight)
        with logged("bridge.idempotency", VANISHED) as vanished:
            assert await flight.outcome() is None
        assert vanished.is_set()
        store = RedisStore(alive, 60, 30)
        successor = await store.begin("k")
        assert not isinstance(successor, Flight)
        follower = await store.begin("k")
        assert isinstance(follower, Flight)
        await leader.finish(OUTCOME)  # too late: not the successor's lock nor flight
        assert isinstance(await store.begin("k"), Flight)
        await successor.finish(LeadResult(ANSWER, delivered=True, resource="User/7"))
        assert (await follower.outcome()) == LeadResult(ANSWER, delivered=True, resource="User/7")


def _stop_renewing(lead: Lead) -> None:
    renewal = getattr(lead, "renewal", None)
    assert isinstance(renewal, Renewal)
    renewal.stop()


RENEWED_TTL_SECONDS = 1.5
"""The lock TTL of the renewal test: renewed every 0.5 s, so a renewal may come a second late
on a loaded machine and still find its lock (at 0.15 s, one 0.1 s stall lost it and the test
waited for renewals that no longer came)."""


async def test_a_live_leader_renews_its_lock_past_its_ttl(redis_server: RedisServer) -> None:
    async with _linked(redis_server) as link:
        store = RedisStore(link, 60, RENEWED_TTL_SECONDS)
        lead = await store.begin("k")
        assert not isinstance(lead, Flight)
        flight = await store.begin("k")
        assert isinstance(flight, Flight)
        waiting = asyncio.ensure_future(flight.outcome())
        with logged("bridge.idempotency", "lock renewed", times=3) as renewed:
            await renewed.wait()  # three renewals (a lost lock is not one): a TTL has passed
        assert not waiting.done()
        await lead.finish(OUTCOME)
        assert await waiting == OUTCOME


async def test_a_create_lock_of_a_dead_holder_expires(redis_server: RedisServer) -> None:
    async with _linked(redis_server) as link:
        key = "userName:dead@contoso.com"
        with Redis.from_url(redis_server.url) as raw:
            # a holder that died: its lock is there, nobody renews or releases it
            (name,) = _lock_names(link, key)
            raw.set(name, "another-process", px=200)
        async with RedisLocks(link, 10).hold(key.upper()):
            with Redis.from_url(redis_server.url) as raw:
                assert raw.get(name) != b"another-process"
        with Redis.from_url(redis_server.url) as raw:
            assert raw.get(name) is None  # released


def _lock_names(link: RedisLink, *keys: str) -> list[str]:
    from bridge.store.redis_link import digest

    return [link.key("create", digest(key.lower())) for key in keys]


async def test_redis_holds_digests_with_ttls_and_no_token(redis_server: RedisServer) -> None:
    """Every key is a digest under the prefix and expires; a kept User answer costs what
    docs/operator/high-availability.md says (measured with MEMORY USAGE)."""
    async with _linked(redis_server, key_prefix="bank-a:") as link:
        store = RedisStore(link, 600, 10)
        key = "a" * 64  # a request key is a SHA-256 hex digest
        await store.put(key, ANSWER, frozenset({"User/7"}))
        lead = await store.begin("b" * 64)
        flight = await store.begin("b" * 64)
        assert isinstance(flight, Flight) and not isinstance(lead, Flight)
        await lead.finish(OUTCOME)
        async with RedisLocks(link, 10).hold("userName:zoë@contoso.com"):
            with Redis.from_url(redis_server.url) as raw:
                names = [name.decode() for name in raw.keys("*")]
                assert names and all(name.startswith("bank-a:") for name in names)
                assert all(0 < raw.pttl(name) <= 600_000 for name in names)
                dump = b"".join(raw.dump(name) or b"" for name in names) + "".join(names).encode()
                assert b"contoso" not in "".join(names).encode()
                assert "zoë" not in "".join(names)
                kept = raw.memory_usage(f"bank-a:kept:{key}")
                assert kept is not None and kept < 2 * len(ANSWER.body) + 400
        assert b"Bearer" not in dump


async def test_an_unreachable_redis_is_a_503_and_logged_once(redis_server: RedisServer) -> None:
    async with _linked(redis_server) as link:
        store = RedisStore(link, 60, 10)
        assert await link.check() is None
        redis_server.stop()
        with (
            logged("bridge.idempotency", DOWN) as down,
            logged("bridge.idempotency", DOWN, times=2) as twice,
        ):
            for _ in range(3):
                with pytest.raises(StoreUnavailable) as refused:
                    await store.claim("k")
        assert down.is_set() and not twice.is_set()
        assert refused.value.retry_after == 2
        assert await link.check() == "shared_store_unreachable"
        redis_server.start()
        with logged("bridge.idempotency", UP) as up:
            assert await link.check() is None
            await store.claim("k")
            assert up.is_set()


@pytest.mark.parametrize("bound", ["request deadline", "redis_timeout_seconds"])
async def test_a_slow_redis_is_an_unreachable_one(redis_server: RedisServer, bound: str) -> None:
    """A Redis that accepts the connection and never answers (paused with SIGSTOP) is cut at
    the call's bound: the request's deadline, or outside any request (a renewal, a readiness
    round) ``idempotency.redis_timeout_seconds``."""
    from bridge.deadline import deadline_in

    setting = {"redis_timeout_seconds": 0.2} if bound == "redis_timeout_seconds" else {}
    within_deadline = deadline_in(0.2) if bound == "request deadline" else contextlib.nullcontext()
    async with _linked(redis_server, **setting) as link:
        assert link.bound() == (0.2 if setting else 60)  # the setting, not a constant
        store = RedisStore(link, 60, 10)
        await store.claim("k")  # connected
        with _paused(redis_server), pytest.raises(StoreUnavailable), within_deadline:
            await store.claim("k")
        assert await link.check() is None


@contextlib.contextmanager
def _paused(server: RedisServer) -> Iterator[None]:
    process = server._process
    assert process is not None
    import signal

    process.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.process.send_signal(signal.SIGCONT)


async def test_a_sentinel_managed_redis_is_found_and_followed(
    redis_sentinel: SentinelTopology,
) -> None:
    settings = IdempotencySettings(
        backend="redis",
        redis_sentinels=redis_sentinel.sentinels,
        redis_sentinel_service=redis_sentinel.service,
    )
    link = connect(settings)
    try:
        store = RedisStore(link, 60, 10)
        await store.put("k", ANSWER, frozenset())
        redis_sentinel.fail_over()
        with contextlib.suppress(StoreUnavailable):
            await store.claim("k")  # the connection to the dead primary may be lost: refused
        await store.put("k2", ANSWER, frozenset())  # the new primary, named by the sentinels
        kept = await store.claim("k2")
        assert kept is not None and kept.answer == ANSWER
    finally:
        await link.close()


async def test_aioredis_is_the_client() -> None:
    link = connect(IdempotencySettings(backend="redis", redis_url="rediss://:pw@h:6380/3"))
    assert isinstance(link.client, aioredis.Redis)
    kwargs = link.client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == (
        "h",
        6380,
        3,
        "pw",
    )
    await link.close()


# --------------------------------------------------------------------------- the bridge


async def test_while_redis_is_down_writes_are_503_reads_work_and_it_recovers(
    redis_server: RedisServer, fake: FakeModyo
) -> None:
    """Redis stopped: every write is a SCIM 503 with Retry-After and Modyo never sees it
    (no write without the guarantee), reads are served, /status says why and /readyz stays
    200 (every replica shares the store); Redis back (empty, as after a restart without
    persistence): writes work again, nothing to restart."""
    settings = make_settings(idempotency={"backend": "redis", "redis_url": redis_server.url})
    readiness = Readiness(5.0, 15.0, schedule=no_rounds)
    app = create_app(
        settings, modyo_transport=mock_transport(FaultyModyo(fake), MODYO_URL), readiness=readiness
    )
    async with app_client(app) as scim:
        ada = await scim.post("/Users", json=entra.user("ada@contoso.com"))
        assert ada.status_code == 201
        await readiness.refresh()
        assert (await _readyz(scim)).status_code == 200
        redis_server.stop()
        refused_before = _sample("scim_bridge_shared_store_refused_writes_total") or 0
        fake.reset_calls()
        writes = [
            await scim.post("/Users", json=entra.user("bob@contoso.com")),
            await scim.patch(
                f"/Users/{ada.json()['id']}",
                json=entra.patch(entra.op("Replace", "active", "False")),
            ),
            await scim.delete(f"/Users/{ada.json()['id']}"),
        ]
        for refused in writes:
            error = assert_scim_error(refused, 503)
            assert refused.headers["Retry-After"] == "2"
            assert "shared idempotency store" in error["detail"]
            assert redis_server.url not in refused.text
        assert not [call for call in fake.calls if not call.startswith("GET")]
        assert _sample("scim_bridge_shared_store_refused_writes_total") == refused_before + 3
        assert _sample("scim_bridge_shared_store_up") == 0
        read = await scim.get(f"/Users/{ada.json()['id']}")
        assert read.status_code == 200 and read.json()["active"] is True
        assert (
            await scim.get("/Users", params={"filter": 'userName eq "ada@contoso.com"'})
        ).json()["totalResults"] == 1
        await readiness.refresh()
        assert (await _readyz(scim)).status_code == 200
        assert readiness.state("shared_store") == "unreachable"
        report = readiness.status_report()["checks"]["shared_store"]
        assert report["last_error"] == "the shared store (Redis) did not answer a PING"

        redis_server.start()
        await readiness.refresh()
        assert readiness.state("shared_store") == "ok"
        assert (await _readyz(scim)).status_code == 200
        bob = await scim.post("/Users", json=entra.user("bob@contoso.com"))
        assert bob.status_code == 201 and _sample("scim_bridge_shared_store_up") == 1
        assert_scim_error(
            await scim.post("/Users", json=entra.user("bob@contoso.com")), 409, "uniqueness"
        )
    assert sorted(m["username"] for m in fake.team_members.values()) == [
        "ada@contoso.com",
        "bob@contoso.com",
    ]


async def _readyz(scim: httpx.AsyncClient) -> httpx.Response:
    return await scim.get("http://bridge.test/readyz")


def _sample(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


async def test_round_trips_per_write(redis_server: RedisServer, fake: FakeModyo) -> None:
    """What a write costs in Redis round trips (docs/operator/high-availability.md), counted as
    the client sends them: before its answer a PATCH or DELETE one (the claim-or-lead script),
    a create two (its create lock); after the answer one (the lead's end: invalidation, create
    locks' release, outcome); a read none."""
    link = _link(redis_server)
    sent: list[str] = []
    command = link.client.execute_command

    async def counted(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return await command(*args, **options)  # type: ignore[no-untyped-call]

    link.client.execute_command = counted  # type: ignore[method-assign]
    original_pipeline = link.client.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = original_pipeline(*args, **kwargs)
        execute = pipe.execute

        async def counted_execute(*a: Any, **k: Any) -> Any:
            sent.append("PIPELINE")
            return await execute(*a, **k)

        pipe.execute = counted_execute  # type: ignore[method-assign]
        return pipe

    link.client.pipeline = pipeline  # type: ignore[method-assign]
    settings = make_settings(idempotency={"backend": "redis", "redis_url": redis_server.url})
    transport = mock_transport(FaultyModyo(fake), MODYO_URL)
    app = create_app(
        settings, modyo_transport=transport, readiness=Readiness(5, 15, schedule=no_rounds),
        shared_store=link,
    )  # fmt: skip
    async with LifespanManager(app) as manager:

        async def marked(scope: Scope, receive: Receive, send: Send) -> None:
            async def answering(message: Message) -> None:
                if message["type"] == "http.response.start":
                    sent.append("ANSWER")
                await send(message)

            await manager.app(scope, receive, answering)

        async with asgi_client(marked) as scim:
            # the first use of each script loads it (EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA)
            patch = entra.patch(entra.op("Replace", "active", "False"))
            warm = await scim.post("/Users", json=entra.user("warm@contoso.com"))
            await scim.patch(f"/Users/{warm.json()['id']}", json=patch)
            sent.clear()
            created = await scim.post("/Users", json=entra.user("rt@contoso.com"))
            assert created.status_code == 201
            assert sent == ["EVALSHA", "EVALSHA", "ANSWER", "EVALSHA"]
            sent.clear()
            location = f"/Users/{created.json()['id']}"
            assert (await scim.get(location)).status_code == 200
            assert sent == ["ANSWER"]
            sent.clear()
            assert (await scim.patch(location, json=patch)).status_code == 200
            assert sent == ["EVALSHA", "ANSWER", "EVALSHA"]
            sent.clear()
            assert (await scim.delete(location)).status_code == 204
            assert sent == ["EVALSHA", "ANSWER", "EVALSHA"]
